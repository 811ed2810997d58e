// The registry client's plumbing: calls as coroutines with cancellation, sending a request
// with auth and retries, and turning a registry's answer into a structured error.
#include "registry/internal.hpp"

#include <boost/asio/as_tuple.hpp>

#include <cmath>
#include <cstdlib>
#include <random>
#include <sstream>

namespace hoist::registry::detail {

namespace asio = boost::asio;

// ------------------------------------------------------------------ call context

void CallCtx::track(const std::shared_ptr<Operation>& op) {
  std::erase_if(inflight, [](const std::weak_ptr<Operation>& w) { return w.expired(); });
  inflight.push_back(op);
}

void CallCtx::cancel() {
  cancelled = true;
  for (auto& w : std::exchange(inflight, {}))
    if (auto op = w.lock()) op->cancel();
}

void CallCtx::abort(const Error& error) {
  if (!aborted) aborted = error;
  for (auto& w : std::exchange(inflight, {}))
    if (auto op = w.lock()) op->cancel();
}

void CallCtx::check() const {
  if (cancelled) throw Error(Code::cancelled, "cancelled");
  if (aborted) throw *aborted;
}

Task<Outcome<HttpResponse>> http_await(Ctx ctx, HttpClient& http, HttpRequest req) {
  co_return co_await await_op<HttpResponse>(ctx, [&](Completion<HttpResponse> done) -> OperationPtr {
    return http.request(std::move(req), std::move(done));
  });
}

Task<void> sleep_for(Ctx ctx, double seconds) {
  ctx->check();
  auto timer = std::make_shared<asio::steady_timer>(ctx->io);
  timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds)));
  ctx->track(std::make_shared<FunctionOperation>([timer] { timer->cancel(); }));
  co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  ctx->check();
}

Task<void> for_each_bounded(Ctx ctx, std::size_t n, std::size_t limit,
                            std::function<Task<void>(std::size_t)> fn) {
  struct Group {
    explicit Group(asio::io_context& io) : wake(io) {}
    std::size_t next = 0, running = 0;
    std::exception_ptr first;
    asio::steady_timer wake;
  };
  auto g = std::make_shared<Group>(ctx->io);
  g->wake.expires_at(std::chrono::steady_clock::time_point::max());
  auto worker = [](std::shared_ptr<Group> g, std::size_t n,
                   std::function<Task<void>(std::size_t)> fn) -> Task<void> {
    while (!g->first && g->next < n) co_await fn(g->next++);
  };
  std::size_t workers = std::min(n, std::max<std::size_t>(limit, 1));
  for (std::size_t w = 0; w < workers; ++w) {
    ++g->running;
    asio::co_spawn(ctx->io, worker(g, n, fn), [g, ctx](std::exception_ptr e) {
      if (e && !g->first) {
        g->first = e;
        try {
          std::rethrow_exception(e);
        } catch (const Error& err) {
          ctx->abort(err);
        } catch (const std::exception& err) {
          ctx->abort(Error(Code::internal, err.what()));
        }
      }
      if (--g->running == 0) g->wake.cancel();
    });
  }
  if (g->running > 0) co_await g->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  if (g->first) std::rethrow_exception(g->first);
}

// ------------------------------------------------------------------ urls and errors

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string absolute_url(const Endpoint& ep, const std::string& target) {
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) return target;
  return ep.base + (target.empty() || target.front() != '/' ? "/" : "") + target;
}

std::string repo_scope(const std::string& repository, const std::string& actions) {
  return "repository:" + repository + ":" + actions;
}

Error status_error(const HttpResponse& resp, const Req& req, const Endpoint& ep) {
  // 405: the registry does not allow the operation (deletes disabled, read-only mirror)
  Code code = resp.status == 405 ? Code::forbidden : code_for_http_status(resp.status);
  nlohmann::json details = {{"status", resp.status},
                            {"method", req.method},
                            {"url", redact_url(absolute_url(ep, req.target))},
                            {"registry", ep.registry}};
  std::string remote;
  auto body = nlohmann::json::parse(resp.body, nullptr, false);
  if (!body.is_discarded() && body.is_object() && body.contains("errors") && body["errors"].is_array()) {
    details["errors"] = body["errors"];
    for (auto& e : body["errors"]) {
      if (!e.is_object()) continue;
      std::string m = e.value("message", "");
      std::string c = e.value("code", "");
      if (!remote.empty()) remote += "; ";
      remote += m.empty() ? c : c.empty() ? m : m + " (" + c + ")";
    }
  } else if (!body.is_discarded() && body.is_object() && body.contains("error")) {
    details["error"] = body["error"];  // token servers: {"error": ..., "error_description": ...}
    remote = body["error"].is_string() ? body["error"].get<std::string>() : body["error"].dump();
  } else if (!resp.body.empty()) {
    details["body"] = resp.body.substr(0, 2048);
  }
  if (remote.empty()) {
    if (resp.status == 401) remote = "authentication required";
    else if (resp.status == 403) remote = "access denied";
    else if (resp.status == 404) remote = "not found";
    else remote = "unexpected answer";
  }
  std::string msg = req.what + ": " + remote + " (HTTP " + std::to_string(resp.status) + " from " +
                    ep.registry + ")";
  if (resp.status == 401)
    msg += "; give credentials with registry.login{}, options.auth or docker login";
  return Error(code, msg, details);
}

void throw_status(const HttpResponse& resp, const Req& req, const Endpoint& ep) {
  throw status_error(resp, req, ep);
}

Error digest_mismatch(const std::string& what, const std::string& expected, const std::string& actual) {
  return Error(Code::internal,
               what + ": content does not match its digest (expected " + expected + ", got " + actual + ")",
               false,
               {{"reason", "digest_mismatch"}, {"expected", expected}, {"actual", actual}});
}

// ------------------------------------------------------------------ client basics

ClientImpl::ClientImpl(asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
                       EventBus* events, ClientOptions options)
    : io_(io), http_(http), secrets_(std::move(secrets)), events_(events), options_(std::move(options)) {
  if (const char* env = std::getenv("HOIST_INSECURE_REGISTRIES")) {
    std::stringstream ss(env);
    for (std::string item; std::getline(ss, item, ',');) {
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (!item.empty()) options_.insecure_registries.push_back(item);
    }
  }
}

Endpoint ClientImpl::endpoint(const Ctx& ctx, const std::string& registry) const {
  Reference r;
  r.registry = registry;
  std::string host = r.host();
  // like docker: plain HTTP on loopback and for registries the user calls insecure
  bool plain = is_loopback_host(host);
  const std::vector<std::string>* lists[] = {&options_.insecure_registries, &ctx->opts.insecure_registries};
  for (const auto* list : lists)
    for (const auto& h : *list)
      if (h == registry || h == host) plain = true;
  return Endpoint{registry, (plain ? "http://" : "https://") + host};
}

double ClientImpl::backoff_delay(const Ctx& ctx, int attempt, const HttpResponse* resp) const {
  if (resp) {
    auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (auto ra = parse_retry_after(resp->header("retry-after"), now))
      return std::min(*ra, 300.0);  // honour the registry, within reason
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  double base = ctx->opts.backoff * std::pow(2.0, attempt - 1);
  base = std::min(base, ctx->opts.max_backoff);
  return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);  // jitter: no herd
}

Task<HttpResponse> ClientImpl::send(Ctx ctx, Endpoint ep, Req req) {
  bool reauthed = false;
  int attempt = 0;
  while (true) {
    ctx->check();
    HttpRequest h;
    h.method = req.method;
    h.url = absolute_url(ep, req.target);
    h.headers = req.headers;
    h.body = req.body;
    h.timeout = ctx->opts.timeout;
    std::string auth = co_await authorization(ctx, ep, req.scopes);
    if (!auth.empty()) h.headers.emplace_back("Authorization", auth);
    auto out = co_await http_await(ctx, http_, std::move(h));
    ++attempt;
    if (!out.ok()) {
      const Error& e = out.error();
      if (e.code() == Code::cancelled) ctx->check();
      if (e.retryable() && attempt < ctx->opts.attempts) {
        co_await sleep_for(ctx, backoff_delay(ctx, attempt, nullptr));
        continue;
      }
      nlohmann::json details = e.details();
      details["method"] = req.method;
      details["url"] = redact_url(absolute_url(ep, req.target));
      details["registry"] = ep.registry;
      details["attempts"] = attempt;
      throw Error(e.code(), req.what + ": " + ep.registry + " unreachable: " + e.message(), e.retryable(), details);
    }
    HttpResponse& r = out.value();
    if (r.status == 401 && !reauthed && !r.header("www-authenticate").empty()) {
      reauthed = true;
      on_unauthorized(ep, r);
      --attempt;  // the first answer of a registry is often a 401: not a failure
      continue;
    }
    bool transient = r.status == 429 || (r.status >= 500 && r.status != 501 && r.status != 505);
    if (transient && attempt < ctx->opts.attempts) {
      emit("debug", "registry.retry", req.what + ": HTTP " + std::to_string(r.status) + ", retrying",
           {{"attempt", attempt}, {"url", absolute_url(ep, req.target)}});
      co_await sleep_for(ctx, backoff_delay(ctx, attempt, &r));
      continue;
    }
    co_return std::move(r);
  }
}

void ClientImpl::plan(const Ctx& ctx, PlanStep step) {
  emit("info", "plan", "would " + step.method + " " + step.url, to_json(step));
  ctx->plan.push_back(std::move(step));
}

void ClientImpl::emit(std::string level, std::string kind, std::string message, nlohmann::json fields) {
  if (!events_) return;
  if (!fields.is_object()) fields = nlohmann::json::object();
  events_->emit(Event{0, std::move(level), std::move(kind), std::move(message), std::move(fields)});
}

}  // namespace hoist::registry::detail

namespace hoist::registry {

std::shared_ptr<Client> Client::create(boost::asio::io_context& io, HttpClient& http,
                                       std::shared_ptr<Secrets> secrets, EventBus* events,
                                       ClientOptions options) {
  return std::make_shared<detail::ClientImpl>(io, http, std::move(secrets), events, std::move(options));
}

}  // namespace hoist::registry
