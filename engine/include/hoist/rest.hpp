#pragma once
// The REST layer every remote API client is built on (registry, Azure Resource Manager,
// Kubernetes): a call's context with cancellation, one retry loop, HTTP status to error
// mapping that keeps the remote's words and request ids, pagination, line streaming, and the
// dry-run hook that turns a mutating request into a plan step. Calls are Asio coroutines on
// the engine's loop (HttpClient underneath). See docs/rest.md.
#include <hoist/error.hpp>
#include <hoist/events.hpp>
#include <hoist/http.hpp>
#include <hoist/operation.hpp>

// GCC 12 flags asio's coroutine frame allocator (operator new/delete of awaitable_frame_base)
// as mismatched at the end of every coroutine: a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hoist::rest {

template <class T>
using Task = boost::asio::awaitable<T>;

// ------------------------------------------------------------------ policy

struct RetryPolicy {
  int attempts = 4;              // tries per request (1 = no retry)
  double backoff = 0.2;          // first delay, seconds; doubles each try, with jitter
  double max_backoff = 10;       // cap of the computed delay
  double max_retry_after = 300;  // cap of a server's Retry-After
  std::vector<long> statuses = {408, 429, 500, 502, 503, 504};
  bool connection_errors = true;  // refused, reset, DNS, TLS, timeout
};

// Per call. Domains extend it with their own fields (registry::CallOptions).
struct Options {
  RetryPolicy retry;
  double timeout = 300;  // seconds per request (a stream: its whole life); 0 = none
  bool dry_run = false;  // mutating requests become plan steps
};

// Delay before the try after `attempt` (1-based): the server's Retry-After (capped) when it
// gave one, else exponential backoff with jitter in [half, full] (no thundering herd).
double backoff_delay(const RetryPolicy& policy, int attempt, std::optional<double> retry_after);

// ------------------------------------------------------------------ plan (dry-run)

struct PlanStep {
  std::string method, url, action;  // url: secrets and signatures masked
  nlohmann::json body = nullptr;    // JSON when the body is JSON, else text; secrets masked
  nlohmann::json fields = nlohmann::json::object();  // what the domain adds (digest, size)
};
// {method, url, action?, body?, ...fields}
nlohmann::json to_json(const PlanStep& step);

// ------------------------------------------------------------------ context

// One public call: what it has in flight (so cancel() reaches every transfer and timer), its
// options, the plan it collects in dry-run, and where its events go.
class Context {
 public:
  Context(boost::asio::io_context& io, Options options, EventBus* events = nullptr,
          std::shared_ptr<const Secrets> secrets = nullptr);
  virtual ~Context() = default;
  Context(const Context&) = delete;

  boost::asio::io_context& io;
  Options options;
  EventBus* events;                        // may be null
  std::shared_ptr<const Secrets> secrets;  // masks plan bodies; events->secrets() by default
  std::vector<PlanStep> plan;

  void track(const std::shared_ptr<Operation>& op);
  void cancel();                   // the caller gave up
  void abort(const Error& error);  // one part failed: stop the others, keep its error
  void check() const;              // throws cancelled, or the abort's error
  bool cancelled() const { return cancelled_; }
  bool stopped() const { return cancelled_ || aborted_.has_value(); }
  void emit(std::string level, std::string kind, std::string message,
            nlohmann::json fields = nlohmann::json::object()) const;

 private:
  bool cancelled_ = false;
  std::optional<Error> aborted_;
  std::vector<std::weak_ptr<Operation>> inflight_;
};
using ContextPtr = std::shared_ptr<Context>;

// The one dry-run hook: records a step in ctx->plan and emits it as an event of kind "plan"
// (which a pipeline collects into its plan). Masks the body's registered secrets.
void plan(const ContextPtr& ctx, PlanStep step);
bool is_mutating(std::string_view method);  // POST, PUT, PATCH, DELETE

Task<void> sleep_for(ContextPtr ctx, double seconds);
// Runs fn(0..n-1) with at most `limit` at once; the first error aborts the context's other
// transfers and is rethrown once every worker has stopped.
Task<void> for_each_bounded(ContextPtr ctx, std::size_t n, std::size_t limit,
                            std::function<Task<void>(std::size_t)> fn);

// ------------------------------------------------------------------ the retry loop

struct Retry {
  std::string reason;                 // for the retry event
  std::optional<double> retry_after;  // the server's wish, seconds
  bool free = false;  // not a failure (a 401 answered with fresh credentials): no count, no delay
};
// One try: n is 1-based; `last` says no retry may follow. Returns nullopt when done (the
// result is left where the caller's closure put it) or the reason to try again. A retryable
// Error thrown by a try that is not the last is retried too.
using Attempt = std::function<Task<std::optional<Retry>>(int n, bool last)>;
using OnRetry = std::function<void(int n, const Retry& why, double delay)>;
Task<void> retry_loop(ContextPtr ctx, RetryPolicy policy, Attempt attempt, OnRetry on_retry = {});

// ------------------------------------------------------------------ requests and errors

// What the remote said about a failure, in its own words.
struct RemoteError {
  std::string message;       // "" = nothing useful in the body
  std::optional<Code> code;  // when the body says more than the status
  nlohmann::json details = nlohmann::json::object();  // merged into the error's details
};
using ErrorParser = std::function<RemoteError(const HttpResponse&)>;
// {error: {code, message}} (ARM, OData), {error, error_description} (OAuth2 token
// endpoints), {message, reason} (Kubernetes Status and most others).
RemoteError default_error_parser(const HttpResponse& response);

// What one remote API's answers look like; shared by every call to it.
struct Api {
  std::string name = "http";  // event kinds: "<name>.retry"
  // Kept in an error's details.request_ids, when the response has them.
  std::vector<std::string> request_id_headers = {
      "x-ms-request-id", "x-ms-correlation-request-id", "x-request-id", "audit-id",
      "docker-distribution-api-version"};
  ErrorParser parse_error;  // default_error_parser when empty
};

struct Request {
  HttpRequest http;  // method, url, headers, body, TLS; timeout comes from `timeout`
  std::string what;  // names the call in messages: "resolve 127.0.0.1:5000/app:v1"
  std::optional<double> timeout;  // default: the context's
  bool safe = false;  // a POST/PUT/PATCH/DELETE that changes nothing (a query): sent in dry-run
  std::string action;  // the plan step's name ("put_manifest")
  nlohmann::json plan_fields = nlohmann::json::object();
  // The Authorization header for each try ("" = none).
  std::function<Task<std::string>()> authorization;
  // A 401 arrived: true when credentials were renewed and one more try (free) makes sense.
  std::function<bool(const HttpResponse&)> renew;
  // Streaming: each complete line of a 2xx body as it arrives (a line split across chunks is
  // joined); return false to stop the stream. Runs on the loop: must not block. The
  // response's body then stays empty (an error status keeps its body, not streamed).
  std::function<bool(std::string_view line)> on_line;
};

struct Response : HttpResponse {
  bool planned = false;  // dry-run: recorded as a plan step, not sent
  int attempts = 0;
};

class Client {
 public:
  Client(HttpClient& http, Api api) : http_(http), api_(std::move(api)) {}

  // Sends with the context's retry policy and the request's auth hooks. Returns the final
  // response, whatever its status; throws the transport error once retries are spent, and
  // cancelled when the context is. In dry-run a mutating request is planned, not sent.
  Task<Response> send(ContextPtr ctx, Request req) const;

  // The structured error for a response: code from the status (or the remote's body), the
  // remote's own message, status, method, url and request ids in details.
  Error status_error(const HttpResponse& response, const Request& req) const;

  HttpClient& http() const { return http_; }
  const Api& api() const { return api_; }

 private:
  Task<std::optional<Retry>> try_once(ContextPtr ctx, const Request& req, Response& out, bool& renewed,
                                      bool last, std::optional<Error>& failed) const;
  HttpClient& http_;
  Api api_;
};

// ------------------------------------------------------------------ pagination

// Where the next page is, from the URL just fetched, its response and its JSON body ("" = that
// was the last page).
using NextPage = std::function<std::string(const std::string& url, const HttpResponse& response,
                                           const nlohmann::json& body)>;
NextPage next_by_link();  // Link: <...>; rel="next" (registries, GitHub); relative or absolute
NextPage next_by_field(std::string json_pointer = "/nextLink");  // ARM: an absolute URL
NextPage next_by_continue();  // Kubernetes: metadata.continue, sent back as ?continue=

// GETs `first` and each next page (each must be 200 with a JSON object) and hands every body to
// on_page, until the last page or on_page returns false. A page URL seen twice fails.
Task<void> paginate(const Client& client, ContextPtr ctx, Request first, NextPage next,
                    std::function<bool(nlohmann::json& page)> on_page);

// Splits a byte stream into lines ("\n", a trailing "\r" dropped).
class LineBuffer {
 public:
  // Calls on_line for each complete line; false when on_line asked to stop.
  bool feed(std::string_view piece, const std::function<bool(std::string_view)>& on_line);
  bool finish(const std::function<bool(std::string_view)>& on_line);  // a last unterminated line

 private:
  std::string pending_;
};

// ------------------------------------------------------------------ header grammars and urls

// One challenge of a WWW-Authenticate header (RFC 7235): scheme plus parameters (names
// lower-cased), or a token68.
struct Challenge {
  std::string scheme;  // lower-cased: "basic", "bearer"
  std::map<std::string, std::string> params;
  std::string token68;
  std::string param(const std::string& name) const;
};
std::vector<Challenge> parse_www_authenticate(std::string_view header);
// Where a Link header's rel="next" points ("" if none), as written (maybe relative).
std::string parse_link_next(std::string_view header);
// Retry-After (RFC 9110) as seconds from now_unix: delta-seconds or an HTTP-date (a date in
// the past is 0). nullopt when absent or malformed.
std::optional<double> parse_retry_after(std::string_view value, double now_unix);

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string url_encode(std::string_view text);
// An application/x-www-form-urlencoded body (OAuth2 token requests); empty values are left out.
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);
// `ref` against `base`: absolute URLs as they are, "/path" on base's origin, else relative to
// base's directory.
std::string resolve_url(std::string_view base, std::string_view ref);
// host[:port] of a URL, without userinfo.
std::string url_host(std::string_view url);
// The URL with query parameter `name` set to `value` (url-encoded), replacing any.
std::string with_query(std::string_view url, std::string_view name, std::string_view value);

// ------------------------------------------------------------------ coroutine plumbing

// Awaits any engine operation started as start(Completion<T>) -> OperationPtr; the context
// tracks it, so cancel() aborts it. The completion is posted: the coroutine never resumes
// inside a libcurl callback.
template <class T, class Start>
Task<Outcome<T>> await_op(ContextPtr ctx, Start start) {
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

namespace detail {
// Owns `body` for as long as the coroutine it returns runs: a lambda coroutine's captures
// live in the lambda object, which must outlive its frame.
template <class T, class C>
Task<T> run_owned(std::function<Task<T>(std::shared_ptr<C>)> body, std::shared_ptr<C> ctx) {
  co_return co_await body(ctx);
}
}  // namespace detail

// Starts body(ctx) on the context's loop; `done` gets its value or its Error (cancelled once
// the returned operation is cancelled). C is Context or a domain's subclass of it.
template <class T, class C>
OperationPtr spawn(std::shared_ptr<C> ctx, std::function<Task<T>(std::shared_ptr<C>)> body,
                   Completion<T> done) {
  boost::asio::co_spawn(ctx->io, detail::run_owned<T, C>(std::move(body), ctx),
                        [ctx, done = std::move(done)](std::exception_ptr e, T value) {
                          if (!e) return done(std::move(value));
                          try {
                            std::rethrow_exception(e);
                          } catch (const Error& err) {
                            done(ctx->cancelled() ? Error(Code::cancelled, "cancelled") : err);
                          } catch (const std::exception& err) {
                            done(Error(Code::internal, err.what()));
                          }
                        });
  return std::make_shared<FunctionOperation>([ctx] { ctx->cancel(); });
}

}  // namespace hoist::rest
