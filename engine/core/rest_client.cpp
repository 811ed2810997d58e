// Sending a REST request: the dry-run hook, auth hooks, the retry loop around each try,
// streaming of line-delimited bodies.
#include <hoist/rest.hpp>
#include <hoist/json.hpp>

#include <algorithm>
#include <chrono>

namespace hoist::rest {
namespace {

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool retryable_status(const RetryPolicy& p, long status) {
  return std::find(p.statuses.begin(), p.statuses.end(), status) != p.statuses.end();
}

// A retryable status whose body the API's parser gives a code no retry mends (Kubernetes'
// 500 for a field the schema lacks: the same answer however often it is asked): the body
// decides, not the status alone.
bool permanent(const Api& api, const HttpResponse& resp) {
  if (!api.parse_error) return false;
  RemoteError remote = api.parse_error(resp);
  return remote.code && !default_retryable(*remote.code);
}

PlanStep step_of(const Request& req) {
  PlanStep step{req.http.method, req.http.url, req.action, nullptr, req.plan_fields};
  if (!req.http.body.empty()) {
    auto j = hoist::parse_json_or_discarded(req.http.body);
    step.body = j.is_discarded() ? nlohmann::json(req.http.body) : std::move(j);
  }
  return step;
}

// What a streamed transfer saw: the status and headers up front, lines as they came.
struct Stream {
  long status = 0;
  Headers headers;
  LineBuffer lines;
  std::string error_body;  // a non-2xx body, kept for the error
  bool delivered = false, stopped = false;
  std::weak_ptr<Transfer> transfer;
};

constexpr std::size_t kErrorBodyLimit = 64 << 10;

// Wires req's on_line into the transfer's on_headers/on_data.
void stream_into(HttpRequest& h, const std::shared_ptr<Stream>& st,
                 std::function<bool(std::string_view)> on_line, boost::asio::io_context& io) {
  h.on_headers = [st](long status, const Headers& headers) {
    st->status = status;
    st->headers = headers;
  };
  h.on_data = [st, on_line = std::move(on_line), &io](std::string_view piece) {
    if (st->stopped) return true;
    if (st->status < 200 || st->status > 299) {
      if (st->error_body.size() < kErrorBodyLimit)
        st->error_body.append(piece.substr(0, kErrorBodyLimit - st->error_body.size()));
      return true;
    }
    auto counted = [&](std::string_view line) {
      st->delivered = true;
      return on_line(line);
    };
    if (!st->lines.feed(piece, counted)) {
      st->stopped = true;
      boost::asio::post(io, [w = st->transfer] {
        if (auto t = w.lock()) t->cancel();
      });
    }
    return true;
  };
}

}  // namespace

// ------------------------------------------------------------------ send

Task<Response> Client::send(ContextPtr ctx, Request req) const {
  ctx->check();
  if (ctx->options.dry_run && is_mutating(req.http.method) && !req.safe) {
    plan(ctx, step_of(req));
    Response r;
    r.planned = true;
    co_return r;
  }
  Response out;
  bool renewed = false;
  std::optional<Error> failed;  // thrown after the loop: the loop must not retry it
  Attempt attempt = [this, ctx, &req, &out, &renewed, &failed](int, bool last) {
    return try_once(ctx, req, out, renewed, last, failed);
  };
  OnRetry on_retry = [this, ctx, &req](int n, const Retry& why, double delay) {
    ctx->emit("debug", api_.name + ".retry", req.what + ": " + why.reason + ", retrying",
              {{"attempt", n}, {"delay", delay}, {"url", redact_url(req.http.url)}});
  };
  co_await retry_loop(ctx, ctx->options.retry, attempt, on_retry);
  if (failed) throw *failed;
  co_return out;
}

Task<std::optional<Retry>> Client::try_once(ContextPtr ctx, const Request& req, Response& out, bool& renewed,
                                            bool last, std::optional<Error>& failed) const {
  HttpRequest h = req.http;
  h.timeout = req.timeout.value_or(ctx->options.timeout);
  if (req.authorization) {
    std::string auth = co_await req.authorization();
    if (!auth.empty()) h.headers.emplace_back("Authorization", auth);
  }
  std::shared_ptr<Stream> st;
  if (req.on_line) {
    st = std::make_shared<Stream>();
    stream_into(h, st, req.on_line, ctx->io);
  }
  ++out.attempts;
  auto result = co_await await_op<HttpResponse>(ctx, [&](Completion<HttpResponse> done) -> OperationPtr {
    auto t = http_.request(std::move(h), std::move(done));
    if (st) st->transfer = t;
    return t;
  });
  ctx->check();

  if (st && (st->stopped || (st->delivered && !result.ok()))) {
    // the consumer stopped, or the stream broke after lines went out: no retry can take them back
    if (!st->stopped) {
      const Error& e = result.error();
      failed = Error(e.code(), req.what + ": the stream broke off: " + e.message(), e.retryable(),
                     {{"url", redact_url(req.http.url)}, {"cause", e.to_json()}});
      co_return std::nullopt;
    }
    static_cast<HttpResponse&>(out) = HttpResponse{st->status, st->headers, "", req.http.url, 0};
    co_return std::nullopt;
  }
  if (!result.ok()) {
    const Error& e = result.error();
    if (e.code() == Code::cancelled) ctx->check();
    bool transient = ctx->options.retry.connection_errors && e.retryable();
    if (transient && !last) co_return Retry{e.message(), std::nullopt, false};
    nlohmann::json details = e.details();
    details["method"] = req.http.method;
    details["url"] = redact_url(req.http.url);
    details["attempts"] = out.attempts;
    failed = Error(e.code(), req.what + ": " + url_host(req.http.url) + " unreachable: " + e.message(),
                   e.retryable(), details);
    co_return std::nullopt;
  }
  static_cast<HttpResponse&>(out) = std::move(result.value());
  if (st) {
    if (out.status >= 200 && out.status <= 299) st->lines.finish(req.on_line);
    else out.body = std::move(st->error_body);
  }
  if (out.status == 401 && !renewed && req.renew && req.renew(out)) {
    renewed = true;
    co_return Retry{"HTTP 401, credentials renewed", std::nullopt, true};
  }
  if (!last && retryable_status(ctx->options.retry, out.status) && !permanent(api_, out))
    co_return Retry{"HTTP " + std::to_string(out.status), parse_retry_after(out.header("retry-after"), now_unix()),
                    false};
  co_return std::nullopt;
}

// ------------------------------------------------------------------ streaming

bool LineBuffer::feed(std::string_view piece, const std::function<bool(std::string_view)>& on_line) {
  while (!piece.empty()) {
    auto nl = piece.find('\n');
    if (nl == std::string_view::npos) {
      pending_.append(piece);
      return true;
    }
    std::string_view line = piece.substr(0, nl);
    piece.remove_prefix(nl + 1);
    std::string joined;
    if (!pending_.empty()) {
      joined = std::move(pending_) + std::string(line);
      pending_.clear();
      line = joined;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!on_line(line)) return false;
  }
  return true;
}

bool LineBuffer::finish(const std::function<bool(std::string_view)>& on_line) {
  if (pending_.empty()) return true;
  std::string last = std::exchange(pending_, {});
  if (last.back() == '\r') last.pop_back();
  return on_line(last);
}

}  // namespace hoist::rest
