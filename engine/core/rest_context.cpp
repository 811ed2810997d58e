// The REST layer's call context: cancellation of everything a call has in flight, waiting,
// bounded fan-out, the one retry loop, and the dry-run hook.
#include <hoist/rest.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace hoist::rest {

namespace asio = boost::asio;

// ------------------------------------------------------------------ context

Context::Context(asio::io_context& io, Options options, EventBus* events,
                 std::shared_ptr<const Secrets> secrets)
    : io(io), options(std::move(options)), events(events), secrets(std::move(secrets)) {
  if (!this->secrets && events) this->secrets = events->secrets();
}

void Context::track(const std::shared_ptr<Operation>& op) {
  std::erase_if(inflight_, [](const std::weak_ptr<Operation>& w) { return w.expired(); });
  inflight_.push_back(op);
}

void Context::cancel() {
  cancelled_ = true;
  for (auto& w : std::exchange(inflight_, {}))
    if (auto op = w.lock()) op->cancel();
}

void Context::abort(const Error& error) {
  if (!aborted_) aborted_ = error;
  for (auto& w : std::exchange(inflight_, {}))
    if (auto op = w.lock()) op->cancel();
}

void Context::check() const {
  if (cancelled_) throw Error(Code::cancelled, "cancelled");
  if (aborted_) throw *aborted_;
}

void Context::emit(std::string level, std::string kind, std::string message, nlohmann::json fields) const {
  if (!events) return;
  if (!fields.is_object()) fields = nlohmann::json::object();
  events->emit(Event{0, std::move(level), std::move(kind), std::move(message), std::move(fields)});
}

// ------------------------------------------------------------------ plan

bool is_mutating(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

nlohmann::json to_json(const PlanStep& s) {
  nlohmann::json j = {{"method", s.method}, {"url", s.url}};
  if (!s.action.empty()) j["action"] = s.action;
  if (!s.body.is_null()) j["body"] = s.body;
  if (s.fields.is_object())
    for (auto& [k, v] : s.fields.items()) j[k] = v;
  return j;
}

void plan(const ContextPtr& ctx, PlanStep step) {
  step.url = redact_url(step.url);
  if (ctx->secrets) {
    step.url = ctx->secrets->scrub(step.url);
    scrub_json(*ctx->secrets, step.body);
    scrub_json(*ctx->secrets, step.fields);
  }
  ctx->emit("info", "plan", "would " + step.method + " " + step.url, to_json(step));
  ctx->plan.push_back(std::move(step));
}

// ------------------------------------------------------------------ waiting

Task<void> sleep_for(ContextPtr ctx, double seconds) {
  ctx->check();
  auto timer = std::make_shared<asio::steady_timer>(ctx->io);
  timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(std::max(seconds, 0.0))));
  // held here: the context tracks it weakly, and a temporary would be gone before cancel()
  auto stop = std::make_shared<FunctionOperation>([timer] { timer->cancel(); });
  ctx->track(stop);
  co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  ctx->check();
}

Task<void> for_each_bounded(ContextPtr ctx, std::size_t n, std::size_t limit,
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
        ctx->abort(error_of(e));
      }
      if (--g->running == 0) g->wake.cancel();
    });
  }
  if (g->running > 0) co_await g->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  if (g->first) std::rethrow_exception(g->first);
}

// ------------------------------------------------------------------ retries

double backoff_delay(const RetryPolicy& p, int attempt, std::optional<double> retry_after) {
  if (retry_after) return std::clamp(*retry_after, 0.0, p.max_retry_after);
  static thread_local std::mt19937 rng{std::random_device{}()};
  double base = p.backoff * std::pow(2.0, std::clamp(attempt - 1, 0, 60));
  base = std::min(base, p.max_backoff);
  return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

Task<void> retry_loop(ContextPtr ctx, RetryPolicy policy, Attempt attempt, OnRetry on_retry) {
  int n = 0;
  while (true) {
    ctx->check();
    ++n;
    bool last = n >= std::max(policy.attempts, 1);
    std::optional<Retry> again;
    std::optional<Error> failed;
    try {
      again = co_await attempt(n, last);
    } catch (const Error& e) {
      if (!e.retryable() || last || ctx->stopped()) throw;
      failed = e;  // no co_await inside a handler: retried below
    }
    if (failed) again = Retry{failed->message(), std::nullopt, false};
    if (!again) co_return;
    if (again->free) {
      --n;
      continue;
    }
    if (last) co_return;  // a try told it was the last must not ask for more: take its result
    double delay = backoff_delay(policy, n, again->retry_after);
    if (on_retry) on_retry(n, *again, delay);
    co_await sleep_for(ctx, delay);
  }
}

}  // namespace hoist::rest
