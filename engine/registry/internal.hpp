#pragma once
// Private to engine/registry: the client's state and the coroutine plumbing its files share.
// Calls are Asio coroutines on the engine's loop; each call has a CallCtx whose cancel()
// aborts every transfer and timer it has in flight.
#include <hoist/registry.hpp>

// GCC 12 flags asio's coroutine frame allocator (operator new/delete of awaitable_frame_base)
// as mismatched at the end of every coroutine: a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace hoist::registry::detail {

template <class T>
using Task = boost::asio::awaitable<T>;

// One public call: its options, what it has in flight, the plan it collects in dry-run.
struct CallCtx {
  CallCtx(boost::asio::io_context& io, CallOptions o) : io(io), opts(std::move(o)) {}
  boost::asio::io_context& io;
  CallOptions opts;
  bool cancelled = false;
  std::optional<Error> aborted;  // a sibling failed: stop everything else, keep its error
  std::vector<std::weak_ptr<Operation>> inflight;
  std::vector<PlanStep> plan;

  void track(const std::shared_ptr<Operation>& op);
  void cancel();                   // the caller gave up
  void abort(const Error& error);  // one part failed: stop the others
  void check() const;              // throws once cancel() or abort() ran
};
using Ctx = std::shared_ptr<CallCtx>;

// Awaits one HTTP transfer; never throws for HTTP statuses, returns transport errors.
Task<Outcome<HttpResponse>> http_await(Ctx ctx, HttpClient& http, HttpRequest req);
Task<void> sleep_for(Ctx ctx, double seconds);
// Runs fn(0..n-1) with at most `limit` at once; the first error cancels the call's other
// transfers and is rethrown once every worker has stopped.
Task<void> for_each_bounded(Ctx ctx, std::size_t n, std::size_t limit,
                            std::function<Task<void>(std::size_t)> fn);

struct Endpoint {
  std::string registry;  // "127.0.0.1:5000", "docker.io"
  std::string base;      // "http://127.0.0.1:5000"
};

// One request to a registry. `target` is a path ("/v2/...") or an absolute URL (upload
// Locations). `scopes` are the token scopes it needs ("repository:app:pull,push").
struct Req {
  std::string method = "GET";
  std::string target;
  Headers headers;
  std::string body;
  std::vector<std::string> scopes;
  std::string what;  // for error messages: "resolve 127.0.0.1:5000/app:v1"
};

std::string url_encode(std::string_view s);
std::string absolute_url(const Endpoint& ep, const std::string& target);
std::string repo_scope(const std::string& repository, const std::string& actions);

// Builds the error for a registry response (the registry's errors[] kept in details).
Error status_error(const HttpResponse& resp, const Req& req, const Endpoint& ep);
[[noreturn]] void throw_status(const HttpResponse& resp, const Req& req, const Endpoint& ep);
Error digest_mismatch(const std::string& what, const std::string& expected, const std::string& actual);

struct CachedToken {
  std::string token;
  std::chrono::steady_clock::time_point expires;
};

class ClientImpl : public Client {
 public:
  ClientImpl(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
             EventBus* events, ClientOptions options);

  void login(const std::string& registry, Credentials credentials) override;
  void logout(const std::string& registry) override;
  OperationPtr resolve(Reference image, CallOptions o, Completion<Resolved> done) override;
  OperationPtr exists(Reference image, CallOptions o, Completion<bool> done) override;
  OperationPtr tags(Reference repository, int page_size, int limit, CallOptions o,
                    Completion<std::vector<std::string>> done) override;
  OperationPtr catalog(std::string registry, int page_size, int limit, CallOptions o,
                       Completion<std::vector<std::string>> done) override;
  OperationPtr manifest(Reference image, CallOptions o, Completion<Manifest> done) override;
  OperationPtr remove(Reference image, CallOptions o, Completion<CopyResult> done) override;
  OperationPtr copy(Reference from, Reference to, CallOptions o, Completion<CopyResult> done) override;
  OperationPtr retag(Reference image, std::string tag, CallOptions o,
                     Completion<CopyResult> done) override;

  // ---- shared by the registry files
  boost::asio::io_context& io() { return io_; }
  HttpClient& http() { return http_; }
  Endpoint endpoint(const Ctx& ctx, const std::string& registry) const;

  // Sends with auth (challenge, token, one re-auth on 401) and retries (429, 5xx,
  // connection errors) per ctx->opts. Returns any final HTTP status; throws transport errors.
  Task<HttpResponse> send(Ctx ctx, Endpoint ep, Req req);
  // The Authorization header for a request needing `scopes` ("" = none known yet).
  Task<std::string> authorization(Ctx ctx, Endpoint ep, std::vector<std::string> scopes);
  // Records a 401's challenge and drops cached tokens so the next authorization() renews.
  void on_unauthorized(const Endpoint& ep, const HttpResponse& resp);
  double backoff_delay(const Ctx& ctx, int attempt, const HttpResponse* resp) const;

  Task<Resolved> do_resolve(Ctx ctx, Reference image);
  Task<Manifest> get_manifest(Ctx ctx, Endpoint ep, std::string repository, std::string target,
                              std::vector<std::string> scopes, std::string what);
  // get_manifest, except that in dry-run a missing source is not an error (an earlier
  // planned step may be what would create it): nullopt, and a warning in the plan.
  Task<std::optional<Manifest>> planned_source(Ctx ctx, Endpoint ep, std::string repository,
                                               std::string target, std::vector<std::string> scopes,
                                               std::string what);
  Task<CopyResult> do_copy(Ctx ctx, Reference from, Reference to);
  // Streams one blob from `src` to an upload `location` on `dst` (bytes hashed on the way).
  Task<std::int64_t> stream_blob(Ctx ctx, Endpoint src, std::string src_repo, Endpoint dst,
                                 std::vector<std::string> dst_scopes, std::string location,
                                 Descriptor blob);

  void plan(const Ctx& ctx, PlanStep step);
  void emit(std::string level, std::string kind, std::string message, nlohmann::json fields = {});

  template <class T>
  OperationPtr start(CallOptions o, std::function<Task<T>(Ctx)> body, Completion<T> done);

 private:
  Task<Credentials> credentials_for(Ctx ctx, std::string registry);
  Task<Credentials> from_helper(Ctx ctx, std::string helper, std::string registry);
  Task<std::string> bearer_token(Ctx ctx, Endpoint ep, Challenge ch, std::vector<std::string> scopes,
                                 Credentials creds);
  Task<std::string> acr_refresh_token(Ctx ctx, Endpoint ep, Challenge ch, Credentials creds);
  Task<nlohmann::json> token_request(Ctx ctx, HttpRequest req, std::string what);
  void remember(const Credentials& c);

  boost::asio::io_context& io_;
  HttpClient& http_;
  std::shared_ptr<Secrets> secrets_;
  EventBus* events_;
  ClientOptions options_;
  std::map<std::string, Credentials> logins_;
  std::map<std::string, Credentials> configured_;   // from config.json / helpers, per run
  std::map<std::string, Challenge> challenges_;     // what each registry asked for
  std::map<std::string, CachedToken> tokens_;       // registry|who|scopes
  std::map<std::string, std::string> refresh_tokens_;  // registry|who -> ACR refresh token
};

}  // namespace hoist::registry::detail

// ------------------------------------------------------------------ template definitions

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace hoist::registry::detail {

// Awaits any engine operation started as start(Completion<T>) -> OperationPtr. The
// completion is posted, so the coroutine never resumes inside a libcurl callback.
template <class T, class Start>
Task<Outcome<T>> await_op(Ctx ctx, Start start) {
  ctx->check();
  auto* io = &ctx->io;
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                                 void(Outcome<T>)>(
      [&](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto op = start([h, io](Outcome<T> out) {
          boost::asio::post(*io, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
        if (op) ctx->track(op);
      },
      boost::asio::use_awaitable);
}

// Owns `body` for as long as the coroutine it returns runs: a lambda coroutine's captures
// live in the lambda object, which must outlive its frame.
template <class T>
Task<T> run_owned(std::function<Task<T>(Ctx)> body, Ctx ctx) {
  co_return co_await body(ctx);
}

template <class T>
OperationPtr ClientImpl::start(CallOptions o, std::function<Task<T>(Ctx)> body, Completion<T> done) {
  auto ctx = std::make_shared<CallCtx>(io_, std::move(o));
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  boost::asio::co_spawn(io_, run_owned<T>(std::move(body), ctx),
                        [self, ctx, done = std::move(done)](std::exception_ptr e, T value) {
                          if (!e) return done(std::move(value));
                          try {
                            std::rethrow_exception(e);
                          } catch (const Error& err) {
                            done(ctx->cancelled ? Error(Code::cancelled, "cancelled") : err);
                          } catch (const std::exception& err) {
                            done(Error(Code::internal, err.what()));
                          }
                        });
  return std::make_shared<FunctionOperation>([ctx] { ctx->cancel(); });
}

}  // namespace hoist::registry::detail
