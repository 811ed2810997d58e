// Watch: list, then stream changes from the list's resourceVersion; a stream that ends or
// drops reconnects from the last version seen (bookmarks keep it fresh); 410 Gone (an HTTP
// status or an ERROR event, "too old resource version") relists. Events wait in a bounded
// queue until next() takes them; a consumer that falls too far behind fails the watch rather
// than grow memory without bound.
#include "k8s/watch.hpp"

#include <hoist/json.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace hoist::k8s {

nlohmann::json WatchEvent::to_json() const {
  nlohmann::json obj = object ? *object : nlohmann::json::object();
  if (type == "LIST") {
    obj["items"] = nlohmann::json::array();
    for (const auto& item : items) obj["items"].push_back(*item);
  }
  return {{"type", type}, {"object", std::move(obj)}};
}

}  // namespace hoist::k8s

namespace hoist::k8s::detail {

using nlohmann::json;
namespace asio = boost::asio;

// ------------------------------------------------------------------ events

WatchEvent take_event(json ev) {
  WatchEvent out;
  out.type = ev.value("type", "");
  json obj = ev.contains("object") ? std::move(ev["object"]) : json::object();
  if (out.type == "LIST" && obj.is_object() && obj.contains("items") && obj["items"].is_array()) {
    out.items.reserve(obj["items"].size());
    for (auto& item : obj["items"]) out.items.push_back(std::make_shared<const json>(std::move(item)));
    obj.erase("items");
  }
  out.object = std::make_shared<const json>(std::move(obj));
  return out;
}

// ------------------------------------------------------------------ Mailbox

OperationPtr Mailbox::next(double timeout, Completion<std::optional<WatchEvent>> done) {
  if (waiter_) {
    post(done, Error(Code::invalid_argument, "k8s watch: next() is already waiting"));
    return nullptr;
  }
  if (!queue_.empty() || error_ || ended_) {
    deliver(std::move(done));
    return nullptr;
  }
  waiter_ = std::move(done);
  std::weak_ptr<Mailbox> weak = weak_from_this();
  if (timeout > 0) {
    timer_ = std::make_shared<asio::steady_timer>(io_);
    timer_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout)));
    timer_->async_wait([weak, t = timer_](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->timer_ != t || !self->waiter_) return;
      self->post(std::exchange(self->waiter_, nullptr), std::optional<WatchEvent>());
    });
  }
  return std::make_shared<FunctionOperation>([weak] {
    if (auto self = weak.lock(); self && self->waiter_)
      self->post(std::exchange(self->waiter_, nullptr), Error(Code::cancelled, "cancelled"));
  });
}

bool Mailbox::push(WatchEvent ev) {
  if (error_ || ended_) return false;
  if (queue_.size() >= max_queued_) {
    fail(Error(Code::internal, "k8s watch: " + std::to_string(queue_.size()) +
                                   " events not taken: the consumer is too slow (max_queued)"));
    return false;
  }
  queue_.push_back(std::move(ev));
  wake();
  return true;
}

void Mailbox::fail(Error e) {
  if (!error_ && !ended_) error_ = std::move(e);
  wake();
}

void Mailbox::end(bool closed) {
  if (closed) closed_ = true;
  ended_ = true;
  wake();
}

void Mailbox::wake() {
  if (waiter_ && (!queue_.empty() || error_ || ended_)) deliver(std::exchange(waiter_, nullptr));
}

void Mailbox::deliver(Completion<std::optional<WatchEvent>> done) {
  timer_.reset();
  if (closed_) queue_.clear();  // its owner is done with it
  if (!queue_.empty()) {
    std::optional<WatchEvent> ev = std::move(queue_.front());
    queue_.pop_front();
    return post(std::move(done), std::move(ev));
  }
  if (error_ && !closed_) return post(std::move(done), *error_);
  post(std::move(done), Error(Code::cancelled, closed_ ? "k8s watch: closed" : "k8s watch: ended"));
}

void Mailbox::post(Completion<std::optional<WatchEvent>> done, Outcome<std::optional<WatchEvent>> out) {
  asio::post(io_, [done = std::move(done), out = std::move(out)]() mutable { done(std::move(out)); });
}

// ------------------------------------------------------------------ Stream

Stream::Stream(std::shared_ptr<ClientImpl> client, Target t, WatchOptions o, CallOptions call, Consumer consumer)
    : client_(std::move(client)), target_(std::move(t)), options_(std::move(o)),
      ctx_(std::make_shared<CallCtx>(client_->io(), call, client_->events(), client_->secrets())),
      consumer_(std::move(consumer)), rv_(options_.resource_version) {}

Stream::~Stream() { ctx_->cancel(); }

void Stream::start() {
  auto self = shared_from_this();
  asio::co_spawn(client_->io(), run(self), [self](std::exception_ptr e) {
    self->finish(e ? std::optional<Error>(error_of(e)) : std::nullopt);
  });
}

Task<void> Stream::run(std::shared_ptr<Stream> self) { co_await self->loop(); }

void Stream::close() {
  if (closed_) return;
  closed_ = true;
  ctx_->cancel();
}

void Stream::finish(std::optional<Error> e) {
  if (finished_ || closed_) return;
  finished_ = true;
  if (!e) e = error_;
  if (consumer_.on_end) consumer_.on_end(std::move(e));
}

bool Stream::emit(json ev) {
  if (stopped_ || closed_) return false;
  if (!consumer_.on_event(std::move(ev))) stopped_ = true;
  return !stopped_;
}

Task<void> Stream::relist(const std::string& what) {
  ListOptions lo = options_;
  json list = co_await client_->list(ctx_, target_, lo);
  rv_ = list["metadata"].value("resourceVersion", "");
  emit({{"type", "LIST"}, {"object", std::move(list)}});
  ctx_->emit("debug", "k8s.watch", what, {{"resource_version", rv_}});
}

Task<void> Stream::loop() {
  Resource res;
  std::string path = co_await client_->collection(ctx_, target_, &res);
  if (rv_.empty()) co_await relist("listed " + res.name);
  int failures = 0;
  while (!closed_ && !stopped_) {
    gone_ = false;
    std::size_t before = received_;
    std::string url = path + "?watch=1&resourceVersion=" + rest::url_encode(rv_) +
                      (options_.bookmarks ? "&allowWatchBookmarks=true" : "") +
                      "&timeoutSeconds=" + std::to_string(std::max(options_.timeout_seconds, 1));
    if (!options_.label_selector.empty()) url += "&labelSelector=" + rest::url_encode(options_.label_selector);
    if (!options_.field_selector.empty()) url += "&fieldSelector=" + rest::url_encode(options_.field_selector);
    auto req = client_->request(ctx_, "GET", url, "watch " + res.name);
    req.timeout = options_.timeout_seconds + 30.0;  // the server ends it first
    std::weak_ptr<Stream> weak = weak_from_this();
    req.on_line = [weak](std::string_view line) {
      auto self = weak.lock();
      return self && self->on_line(line);
    };
    std::optional<Error> broke;
    rest::Response resp;
    try {
      co_await client_->ready(ctx_, req);
      resp = co_await client_->rest().send(ctx_, req);
    } catch (const Error& e) {
      if (closed_ || ctx_->cancelled()) co_return;
      broke = e;  // handled below: no co_await inside a handler
    }
    if (error_ || stopped_) co_return;  // the stream said so (ERROR event) or the consumer gave up
    if (broke) {
      if (!broke->retryable() && broke->code() != Code::unavailable && broke->code() != Code::timeout) throw *broke;
      if (received_ == before && ++failures >= std::max(ctx_->options.retry.attempts, 1)) throw *broke;
    } else if (resp.status == 410) {
      gone_ = true;
    } else if (resp.status < 200 || resp.status > 299) {
      throw client_->rest().status_error(resp, req);
    }
    if (received_ > before) failures = 0;
    if (gone_) {
      ++relists_;
      co_await relist("resourceVersion " + rv_ + " expired (410 Gone): relisted");
      continue;
    }
    ++reconnects_;
    ctx_->emit("debug", "k8s.watch", "watch " + res.name + " reconnects from resourceVersion " + rv_,
               {{"resource_version", rv_}, {"reason", broke ? broke->message() : "stream ended"}});
    if (failures > 0 || (broke && received_ == before))
      co_await rest::sleep_for(ctx_, rest::backoff_delay(ctx_->options.retry, std::max(failures, 1), std::nullopt));
  }
}

// One line of the stream: an event {type, object}. Returns false to end the stream.
bool Stream::on_line(std::string_view line) {
  if (line.empty()) return true;
  json ev = parse_json_or_discarded(line);
  if (!ev.is_object() || !ev.contains("type")) {
    error_ = Error(Code::internal, "k8s watch: the server sent a line that is not an event", {{"line", std::string(line.substr(0, 256))}});
    return false;
  }
  ++received_;
  std::string type = ev.value("type", "");
  const json& obj = ev.contains("object") ? ev["object"] : json();
  if (type == "ERROR") {
    long code = obj.is_object() ? obj.value("code", 0L) : 0L;
    if (code == 410 || (obj.is_object() && (obj.value("reason", "") == "Expired" || obj.value("reason", "") == "Gone"))) {
      gone_ = true;
      return false;
    }
    error_ = Error(code ? code_for_http_status(code) : Code::internal,
                   "k8s watch: " + (obj.is_object() ? obj.value("message", std::string("error event")) : std::string("error event")),
                   {{"status", obj}});
    return false;
  }
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()) {
    std::string rv = obj["metadata"].value("resourceVersion", "");
    if (!rv.empty()) rv_ = rv;
  }
  return emit(std::move(ev));
}

// ------------------------------------------------------------------ a plain watch

namespace {

class PlainWatch : public Watch {
 public:
  PlainWatch(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call)
      : box_(std::make_shared<Mailbox>(client->io(), o.max_queued)) {
    std::weak_ptr<Mailbox> weak = box_;
    Stream::Consumer consumer{
        [weak](json ev) {
          auto box = weak.lock();
          return box && box->push(take_event(std::move(ev)));
        },
        [weak](std::optional<Error> e) {
          if (auto box = weak.lock()) e ? box->fail(std::move(*e)) : box->end(false);
        }};
    stream_ = std::make_shared<Stream>(client, std::move(t), std::move(o), std::move(call), std::move(consumer));
    stream_->start();
  }
  ~PlainWatch() override { stream_->close(); }

  OperationPtr next(double timeout, Completion<std::optional<WatchEvent>> done) override {
    return box_->next(timeout, std::move(done));
  }
  void close() override {
    stream_->close();
    box_->end(true);
  }
  std::string resource_version() const override { return stream_->resource_version(); }
  int reconnects() const override { return stream_->reconnects(); }
  int relists() const override { return stream_->relists(); }

 private:
  std::shared_ptr<Mailbox> box_;
  std::shared_ptr<Stream> stream_;
};

}  // namespace

std::shared_ptr<Watch> ClientImpl::watch(Target t, WatchOptions o, CallOptions call) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  if (o.shared) return shared_watch(self, std::move(t), std::move(o), std::move(call));
  return std::make_shared<PlainWatch>(self, std::move(t), std::move(o), std::move(call));
}

}  // namespace hoist::k8s::detail
