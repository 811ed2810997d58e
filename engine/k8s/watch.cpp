// Watch: list, then stream changes from the list's resourceVersion; a stream that ends or
// drops reconnects from the last version seen (bookmarks keep it fresh); 410 Gone (an HTTP
// status or an ERROR event, "too old resource version") relists. Events wait in a bounded
// queue until next() takes them; a consumer that falls too far behind fails the watch rather
// than grow memory without bound.
#include "k8s/internal.hpp"

#include <hoist/json.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <deque>

namespace hoist::k8s::detail {

using nlohmann::json;
namespace asio = boost::asio;

namespace {

class WatchImpl : public Watch, public std::enable_shared_from_this<WatchImpl> {
 public:
  WatchImpl(std::shared_ptr<ClientImpl> client, Target t, WatchOptions o, CallOptions call)
      : client_(std::move(client)), target_(std::move(t)), options_(std::move(o)),
        ctx_(std::make_shared<CallCtx>(client_->io(), call, client_->events(), client_->secrets())),
        rv_(options_.resource_version) {}

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(client_->io(), run(self), [self](std::exception_ptr e) {
      if (!e) return self->finish(std::nullopt);
      try {
        std::rethrow_exception(e);
      } catch (const Error& err) {
        self->finish(err);
      } catch (const std::exception& err) {
        self->finish(Error(Code::internal, err.what()));
      }
    });
  }

  OperationPtr next(double timeout, Completion<json> done) override {
    if (waiter_) {
      post(done, Error(Code::invalid_argument, "k8s watch: next() is already waiting"));
      return nullptr;
    }
    if (!queue_.empty() || error_ || closed_) {
      deliver(std::move(done));
      return nullptr;
    }
    waiter_ = std::move(done);
    std::weak_ptr<WatchImpl> weak = weak_from_this();
    if (timeout > 0) {
      timer_ = std::make_shared<asio::steady_timer>(client_->io());
      timer_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout)));
      timer_->async_wait([weak, t = timer_](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || self->timer_ != t || !self->waiter_) return;
        self->post(std::exchange(self->waiter_, nullptr), json(nullptr));
      });
    }
    return std::make_shared<FunctionOperation>([weak] {
      if (auto self = weak.lock(); self && self->waiter_)
        self->post(std::exchange(self->waiter_, nullptr), Error(Code::cancelled, "cancelled"));
    });
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    ctx_->cancel();
    wake();
  }

  std::string resource_version() const override { return rv_; }
  int reconnects() const override { return reconnects_; }
  int relists() const override { return relists_; }
  ~WatchImpl() override { ctx_->cancel(); }

 private:
  static Task<void> run(std::shared_ptr<WatchImpl> self) { co_await self->loop(); }

  Task<void> relist(const std::string& what) {
    ListOptions lo = options_;
    json list = co_await client_->list(ctx_, target_, lo);
    rv_ = list["metadata"].value("resourceVersion", "");
    push({{"type", "LIST"}, {"object", std::move(list)}});
    ctx_->emit("debug", "k8s.watch", what, {{"resource_version", rv_}});
  }

  Task<void> loop() {
    Resource res;
    std::string path = co_await client_->collection(ctx_, target_, &res);
    if (rv_.empty()) co_await relist("listed " + res.name);
    int failures = 0;
    while (!closed_) {
      gone_ = false;
      std::size_t before = received_;
      std::string url = path + "?watch=1&resourceVersion=" + rest::url_encode(rv_) +
                        (options_.bookmarks ? "&allowWatchBookmarks=true" : "") +
                        "&timeoutSeconds=" + std::to_string(std::max(options_.timeout_seconds, 1));
      if (!options_.label_selector.empty()) url += "&labelSelector=" + rest::url_encode(options_.label_selector);
      if (!options_.field_selector.empty()) url += "&fieldSelector=" + rest::url_encode(options_.field_selector);
      auto req = client_->request(ctx_, "GET", url, "watch " + res.name);
      req.timeout = options_.timeout_seconds + 30.0;  // the server ends it first
      std::weak_ptr<WatchImpl> weak = weak_from_this();
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
      if (error_) co_return;  // the stream said so (ERROR event) or the consumer fell behind
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
  bool on_line(std::string_view line) {
    if (line.empty()) return true;
    json ev = parse_json_or_discarded(line);
    if (!ev.is_object() || !ev.contains("type")) {
      error_ = Error(Code::internal, "k8s watch: the server sent a line that is not an event", {{"line", std::string(line.substr(0, 256))}});
      wake();
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
      wake();
      return false;
    }
    if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()) {
      std::string rv = obj["metadata"].value("resourceVersion", "");
      if (!rv.empty()) rv_ = rv;
    }
    return push(std::move(ev));
  }

  bool push(json ev) {
    if (queue_.size() >= options_.max_queued) {
      error_ = Error(Code::internal, "k8s watch: " + std::to_string(queue_.size()) +
                                        " events not taken: the consumer is too slow (max_queued)");
      wake();
      return false;
    }
    queue_.push_back(std::move(ev));
    wake();
    return true;
  }

  void finish(std::optional<Error> e) {
    if (e && !error_ && !closed_) error_ = *e;
    done_ = true;
    wake();
  }

  void wake() {
    if (waiter_ && (!queue_.empty() || error_ || closed_ || done_)) deliver(std::exchange(waiter_, nullptr));
  }

  void deliver(Completion<json> done) {
    timer_.reset();
    if (!queue_.empty()) {
      json ev = std::move(queue_.front());
      queue_.pop_front();
      return post(std::move(done), std::move(ev));
    }
    if (error_) return post(std::move(done), *error_);
    post(std::move(done), Error(Code::cancelled, closed_ ? "k8s watch: closed" : "k8s watch: ended"));
  }

  void post(Completion<json> done, Outcome<json> out) {
    asio::post(client_->io(), [done = std::move(done), out = std::move(out)]() mutable { done(std::move(out)); });
  }

  std::shared_ptr<ClientImpl> client_;
  Target target_;
  WatchOptions options_;
  std::shared_ptr<CallCtx> ctx_;
  std::string rv_;
  std::deque<json> queue_;
  Completion<json> waiter_;
  std::shared_ptr<asio::steady_timer> timer_;
  std::optional<Error> error_;
  bool closed_ = false, done_ = false, gone_ = false;
  std::size_t received_ = 0;
  int reconnects_ = 0, relists_ = 0;
};

}  // namespace

std::shared_ptr<Watch> ClientImpl::watch(Target t, WatchOptions o, CallOptions call) {
  auto w = std::make_shared<WatchImpl>(std::static_pointer_cast<ClientImpl>(shared_from_this()), std::move(t), std::move(o),
                                       std::move(call));
  w->start();
  return w;
}

}  // namespace hoist::k8s::detail
