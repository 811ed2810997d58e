#pragma once
// Private to engine/k8s: the two halves of a watch. A Stream lists, then streams changes
// from the list's resourceVersion, reconnecting and relisting, and hands each event to its
// consumer; a Mailbox holds events until next() takes them. A plain watch is one Stream
// feeding one Mailbox (watch.cpp). A shared watch is one Stream per (client, resource,
// namespace) feeding a Hub that keeps the objects it saw and fans each change out to the
// Mailboxes of the watches that subscribed, filtered by their selectors (shared_watch.cpp).
#include "k8s/internal.hpp"

#include <deque>
#include <functional>

namespace hoist::k8s::detail {

class Mailbox : public std::enable_shared_from_this<Mailbox> {
 public:
  Mailbox(boost::asio::io_context& io, std::size_t max_queued) : io_(io), max_queued_(max_queued) {}
  // See Watch::next.
  OperationPtr next(double timeout, Completion<std::optional<WatchEvent>> done);
  // Queues an event; false (the mailbox failed) when max_queued events wait already.
  bool push(WatchEvent ev);
  // Events queued before are still delivered first; the first error wins.
  void fail(Error e);
  // No more events: "k8s watch: closed" (its owner closed it) or "k8s watch: ended".
  void end(bool closed);
  bool failed() const { return error_.has_value(); }

 private:
  void wake();
  void deliver(Completion<std::optional<WatchEvent>> done);
  void post(Completion<std::optional<WatchEvent>> done, Outcome<std::optional<WatchEvent>> out);

  boost::asio::io_context& io_;
  std::size_t max_queued_;
  std::deque<WatchEvent> queue_;
  Completion<std::optional<WatchEvent>> waiter_;
  std::shared_ptr<boost::asio::steady_timer> timer_;
  std::optional<Error> error_;
  bool ended_ = false, closed_ = false;
};

// A server's event ({type, object}; LIST {type, object: {..., items}}) taken apart, nothing copied.
WatchEvent take_event(nlohmann::json ev);

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  struct Consumer {
    std::function<bool(nlohmann::json)> on_event;      // false: stop the stream
    std::function<void(std::optional<Error>)> on_end;  // once, unless closed first
  };
  Stream(std::shared_ptr<ClientImpl> client, Target t, WatchOptions o, CallOptions call, Consumer consumer);
  ~Stream();
  void start();
  void close();
  const std::string& resource_version() const { return rv_; }
  int reconnects() const { return reconnects_; }
  int relists() const { return relists_; }

 private:
  static Task<void> run(std::shared_ptr<Stream> self);
  Task<void> loop();
  Task<void> relist(const std::string& what);
  bool on_line(std::string_view line);
  bool emit(nlohmann::json ev);
  void finish(std::optional<Error> e);

  std::shared_ptr<ClientImpl> client_;
  Target target_;
  WatchOptions options_;
  std::shared_ptr<CallCtx> ctx_;
  Consumer consumer_;
  std::string rv_;
  std::optional<Error> error_;
  bool closed_ = false, stopped_ = false, gone_ = false, finished_ = false;
  std::size_t received_ = 0;
  int reconnects_ = 0, relists_ = 0;
};

}  // namespace hoist::k8s::detail
