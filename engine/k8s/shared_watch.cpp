// Shared watches: one namespace-wide stream per (client, resource, namespace), opened by the
// first watch that asks for it and closed with the last, its events fanned out to each watch
// through that watch's selectors. Every stream costs a connection (and a TLS session): fifty
// rollouts in one namespace need four streams, not two hundred. The hub keeps the objects the
// stream has shown (an informer's store), so a watch that joins later starts from a LIST of
// the matching ones without a request of its own; a relist after 410 Gone reaches every watch
// as a new LIST, and a stream's failure fails every watch on it.
#include "k8s/watch.hpp"

#include <boost/asio/co_spawn.hpp>

#include <algorithm>

namespace hoist::k8s::detail {

using nlohmann::json;
namespace asio = boost::asio;

class Subscriber;

class Hub : public std::enable_shared_from_this<Hub> {
 public:
  Hub(const std::shared_ptr<ClientImpl>& client, std::string key) : client_(client), key_(std::move(key)) {}
  ~Hub();
  void open(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call);
  void join(Subscriber* s);
  void leave(Subscriber* s);
  bool failed() const { return error_.has_value(); }
  const Stream& stream() const { return *stream_; }

 private:
  bool on_event(WatchEvent ev);
  void on_end(std::optional<Error> e);
  WatchEvent list_for(const Subscriber& s) const;
  void forget();

  std::weak_ptr<ClientImpl> client_;
  std::string key_;
  std::shared_ptr<Stream> stream_;
  std::vector<Subscriber*> subs_;  // each leaves before it goes
  std::map<std::string, std::shared_ptr<const json>> store_;  // "namespace/name" -> the object as last seen
  json list_head_ = json::object();  // the list's apiVersion and kind
  bool listed_ = false;
  std::optional<Error> error_;
};

class Subscriber : public Watch, public std::enable_shared_from_this<Subscriber> {
 public:
  Subscriber(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call)
      : client_(client), target_(std::move(t)), options_(std::move(o)), call_(std::move(call)),
        selector_(Selector::parse(options_.label_selector, options_.field_selector)),
        box_(std::make_shared<Mailbox>(client->io(), options_.max_queued)),
        ctx_(std::make_shared<CallCtx>(client->io(), call_, client->events(), client->secrets())) {}
  ~Subscriber() override {
    ctx_->cancel();
    leave();
  }

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(client_->io(), run(self), [self](std::exception_ptr e) {
      if (e) self->fail(error_of(e));
    });
  }

  OperationPtr next(double timeout, Completion<std::optional<WatchEvent>> done) override {
    return box_->next(timeout, std::move(done));
  }
  void close() override {
    closed_ = true;
    ctx_->cancel();
    leave();
    box_->end(true);
  }
  std::string resource_version() const override { return hub_ ? hub_->stream().resource_version() : ""; }
  int reconnects() const override { return hub_ ? hub_->stream().reconnects() : 0; }
  int relists() const override { return hub_ ? hub_->stream().relists() : 0; }

  bool selects(const json& object) const { return selector_.matches(object); }
  bool failed() const { return box_->failed(); }
  void deliver(WatchEvent ev) { box_->push(std::move(ev)); }  // false: the mailbox failed itself
  void fail(const Error& e) { box_->fail(e); }

 private:
  // Resolves the resource (discovery is cached per client), then joins its hub.
  static Task<void> run(std::shared_ptr<Subscriber> self) {
    std::string key = co_await self->client_->collection(self->ctx_, self->target_);
    if (self->closed_) co_return;
    auto& hubs = self->client_->hubs();
    std::shared_ptr<Hub> hub;
    if (auto it = hubs.find(key); it != hubs.end()) hub = it->second.lock();
    if (!hub || hub->failed()) {
      hub = std::make_shared<Hub>(self->client_, key);
      hubs[key] = hub;
      WatchOptions whole = self->options_;  // the namespace-wide stream: the selectors are ours
      whole.label_selector.clear();
      whole.field_selector.clear();
      whole.shared = false;
      hub->open(self->client_, self->target_, std::move(whole), self->call_);
    }
    self->hub_ = hub;
    hub->join(self.get());
  }

  void leave() {
    if (auto hub = std::exchange(hub_, nullptr)) hub->leave(this);
  }

  std::shared_ptr<ClientImpl> client_;
  Target target_;
  WatchOptions options_;
  CallOptions call_;
  Selector selector_;
  std::shared_ptr<Mailbox> box_;
  std::shared_ptr<CallCtx> ctx_;
  std::shared_ptr<Hub> hub_;
  bool closed_ = false;
};

// ------------------------------------------------------------------ Hub

namespace {
std::string store_key(const json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  const json& m = object["metadata"];
  return m.value("namespace", "") + "/" + m.value("name", "");
}
}  // namespace

Hub::~Hub() {
  if (stream_) stream_->close();
  forget();
}

void Hub::open(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call) {
  std::weak_ptr<Hub> weak = weak_from_this();
  Stream::Consumer consumer{
      [weak](json ev) {
        auto hub = weak.lock();
        return hub && hub->on_event(take_event(std::move(ev)));
      },
      [weak](std::optional<Error> e) {
        if (auto hub = weak.lock()) hub->on_end(std::move(e));
      }};
  stream_ = std::make_shared<Stream>(client, std::move(t), std::move(o), std::move(call), std::move(consumer));
  stream_->start();
}

void Hub::join(Subscriber* s) {
  subs_.push_back(s);
  if (error_) return s->fail(*error_);
  if (listed_) s->deliver(list_for(*s));
}

void Hub::leave(Subscriber* s) {
  subs_.erase(std::remove(subs_.begin(), subs_.end(), s), subs_.end());
  if (!subs_.empty()) return;
  stream_->close();
  forget();
}

// Drops the client's entry for this hub (unless a newer hub took the key).
void Hub::forget() {
  auto client = client_.lock();
  if (!client) return;
  auto& hubs = client->hubs();
  auto it = hubs.find(key_);
  if (it == hubs.end()) return;
  auto current = it->second.lock();
  if (!current || current.get() == this) hubs.erase(it);
}

WatchEvent Hub::list_for(const Subscriber& s) const {
  WatchEvent list{"LIST", nullptr, {}};
  json head = list_head_;
  head["metadata"] = {{"resourceVersion", stream_->resource_version()}};
  list.object = std::make_shared<const json>(std::move(head));
  for (const auto& [key, object] : store_)
    if (s.selects(*object)) list.items.push_back(object);
  return list;
}

// Keeps the store and tells each watch what changed for it: a filtered watch on the server
// sends ADDED when an object comes to match its selector and DELETED when it stops matching;
// so do we. The object itself is shared, not copied.
bool Hub::on_event(WatchEvent ev) {
  if (ev.type == "BOOKMARK") return true;  // the stream keeps the resourceVersion
  if (ev.type == "LIST") {
    store_.clear();
    list_head_ = {{"apiVersion", ev.object->value("apiVersion", "")}, {"kind", ev.object->value("kind", "")}};
    for (auto& item : ev.items) {
      std::string key = store_key(*item);
      store_[key] = std::move(item);
    }
    listed_ = true;
    for (Subscriber* s : subs_)
      if (!s->failed()) s->deliver(list_for(*s));
    return true;
  }
  std::string key = store_key(*ev.object);
  auto old = store_.find(key);
  bool deleted = ev.type == "DELETED";
  for (Subscriber* s : subs_) {
    if (s->failed()) continue;
    bool was = old != store_.end() && s->selects(*old->second);
    bool is = s->selects(*ev.object);
    if (deleted) {
      if (was || is) s->deliver(ev);
    } else if (is) {
      s->deliver(was ? ev : WatchEvent{"ADDED", ev.object, {}});
    } else if (was) {
      s->deliver(WatchEvent{"DELETED", ev.object, {}});
    }
  }
  if (deleted) {
    if (old != store_.end()) store_.erase(old);
  } else {
    store_[key] = ev.object;
  }
  return true;
}

void Hub::on_end(std::optional<Error> e) {
  error_ = e ? std::move(*e) : Error(Code::cancelled, "k8s watch: ended");
  forget();  // a watch that comes later opens a new stream
  for (Subscriber* s : subs_) s->fail(*error_);
}

// ------------------------------------------------------------------ entry points

std::shared_ptr<Watch> shared_watch(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call) {
  if (!o.resource_version.empty())
    throw Error(Code::invalid_argument, "k8s watch: a shared watch starts from the shared stream's state: resource_version '" +
                                            o.resource_version + "' cannot be given");
  auto w = std::make_shared<Subscriber>(client, std::move(t), std::move(o), std::move(call));
  w->start();
  return w;
}

int ClientImpl::shared_streams() const {
  int n = 0;
  for (const auto& [key, hub] : hubs_)
    if (auto h = hub.lock(); h && !h->failed()) ++n;
  return n;
}

}  // namespace hoist::k8s::detail
