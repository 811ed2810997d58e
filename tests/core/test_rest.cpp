// The REST layer (hoist/rest.hpp) against a small scripted HTTP/1.1 server on 127.0.0.1,
// running on the test's own loop: retries and Retry-After, the caps, cancellation mid
// backoff, status mapping, pagination, streaming and the dry-run hook.
#include <doctest/doctest.h>
#include <hoist/rest.hpp>

#include "tests/support/scripted_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <boost/asio/detached.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using hoist::Code;
using hoist::HttpClient;
using hoist::HttpResponse;
using hoist::Outcome;
using namespace hoist::rest;
using Clock = std::chrono::steady_clock;

using hoist::testing::Reply;
using hoist::testing::Seen;
using hoist::testing::Server;

// A loop, an HTTP client, a server, and events collected as they are emitted.
struct Fixture {
  asio::io_context io;
  HttpClient http{io};
  Server server{io};
  std::shared_ptr<hoist::Secrets> secrets = std::make_shared<hoist::Secrets>();
  hoist::EventBus events{secrets};
  std::vector<hoist::Event> seen_events;
  Client client{http, Api{"test"}};

  Fixture() {
    events.add_sink(hoist::make_callback_sink([this](const hoist::Event& e) { seen_events.push_back(e); }));
  }
  ContextPtr ctx(Options o = {}) {
    o.retry.backoff = 0.001;  // fast unless a case says otherwise
    return std::make_shared<Context>(io, o, &events);
  }
  Request get(const std::string& target, std::string what = "test call") {
    Request r;
    r.http.url = server.url(target);
    r.what = std::move(what);
    return r;
  }
  // Runs body(ctx) to its end (or 20 s); the operation is kept so a case can cancel it.
  template <class T>
  Outcome<T> run(ContextPtr ctx, std::function<Task<T>(ContextPtr)> body,
                 std::function<void(const hoist::OperationPtr&)> meanwhile = {}) {
    std::optional<Outcome<T>> out;
    auto op = spawn<T, Context>(ctx, body, [&](Outcome<T> o) { out.emplace(std::move(o)); });
    if (meanwhile) meanwhile(op);
    auto deadline = Clock::now() + std::chrono::seconds(20);
    io.restart();
    while (!out && Clock::now() < deadline) io.run_one_for(std::chrono::milliseconds(20));
    REQUIRE_MESSAGE(out.has_value(), "the call did not finish in 20 s");
    return std::move(*out);
  }
  Outcome<Response> send(ContextPtr ctx, Request req) {
    return run<Response>(ctx, [this, req](ContextPtr c) { return client.send(c, req); });
  }
  std::vector<std::string> kinds() const {
    std::vector<std::string> k;
    for (auto& e : seen_events) k.push_back(e.kind);
    return k;
  }
};

// Upper bounds in these tests tell "returned at once" from "waited out the 100 s sleep or
// the long Retry-After it should not have": a generous bound, not a speed (no test asserts a
// time; loaded CI machines take seconds for what takes milliseconds here).
constexpr double kHang = 30;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string http_date(std::time_t t) {
  char buf[64];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// Fails `n` times with `status` (and headers), then answers 200.
std::function<Reply(const Seen&)> fail_then_ok(int n, int status, hoist::Headers headers = {}) {
  auto count = std::make_shared<int>(0);
  return [=](const Seen&) {
    if ((*count)++ < n) return Reply{status, headers, R"({"message":"busy"})"};
    return Reply{200, {}, R"({"ok":true})"};
  };
}

}  // namespace

TEST_CASE("rest: retryable statuses are retried with backoff, and a retry event says so") {
  struct Row { int status; bool retried; };
  for (auto row : {Row{408, true}, Row{429, true}, Row{500, true}, Row{502, true}, Row{503, true},
                   Row{504, true}, Row{400, false}, Row{401, false}, Row{404, false}, Row{409, false},
                   Row{501, false}, Row{505, false}}) {
    CAPTURE(row.status);
    Fixture f;
    f.server.handler = fail_then_ok(2, row.status);
    auto r = f.send(f.ctx(), f.get("/x"));
    REQUIRE(r.ok());
    CHECK(r->status == (row.retried ? 200 : row.status));  // not retried: the caller gets the answer
    CHECK(f.server.seen.size() == (row.retried ? 3u : 1u));
    CHECK(r->attempts == static_cast<int>(f.server.seen.size()));
    auto kinds = f.kinds();
    CHECK(std::count(kinds.begin(), kinds.end(), "test.retry") == (row.retried ? 2 : 0));
  }
}

TEST_CASE("rest: which statuses are retried is the caller's choice") {
  Fixture f;
  f.server.handler = fail_then_ok(1, 409);
  Options o;
  o.retry.statuses = {409};
  auto r = f.send(f.ctx(o), f.get("/x"));
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(f.server.seen.size() == 2);
}

TEST_CASE("rest: Retry-After in seconds is honoured") {
  Fixture f;
  f.server.handler = fail_then_ok(1, 429, {{"Retry-After", "1"}});
  auto start = Clock::now();
  auto r = f.send(f.ctx(), f.get("/x"));
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(seconds_since(start) >= 0.95);  // the backoff alone would be a millisecond
  CHECK(seconds_since(start) < kHang);
}

TEST_CASE("rest: Retry-After as an HTTP-date is honoured") {
  Fixture f;
  // two whole seconds ahead: the date has a one second resolution, so the wait is 1-2 s
  std::time_t at = std::time(nullptr) + 2;
  f.server.handler = fail_then_ok(1, 503, {{"Retry-After", http_date(at)}});
  auto start = Clock::now();
  auto r = f.send(f.ctx(), f.get("/x"));
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(seconds_since(start) >= 0.9);
  CHECK(seconds_since(start) < kHang);
}

TEST_CASE("rest: attempts and delays are capped") {
  Fixture f;
  f.server.handler = [](const Seen&) { return Reply{503, {{"Retry-After", "3600"}}, R"({"message":"down"})"}; };
  Options o;
  o.retry.attempts = 3;
  o.retry.max_retry_after = 0.05;  // the server's hour becomes 50 ms
  auto ctx = f.ctx(o);
  auto start = Clock::now();
  auto req = f.get("/x", "get x");
  auto r = f.send(ctx, req);
  REQUIRE(r.ok());
  CHECK(r->status == 503);  // the last answer, for the caller to judge
  CHECK(r->attempts == 3);
  CHECK(f.server.seen.size() == 3);
  CHECK(seconds_since(start) < kHang);
  auto e = f.client.status_error(r.value(), req);
  CHECK(e.code() == Code::unavailable);
  CHECK(e.retryable());
  CHECK(e.message().find("get x: down (HTTP 503 from 127.0.0.1:") == 0);

  // the computed backoff is capped too, and jittered within [half, full]
  RetryPolicy p;
  p.backoff = 0.5;
  p.max_backoff = 3;
  for (int i = 0; i < 20; ++i) {
    CHECK(backoff_delay(p, 1, std::nullopt) >= 0.25);
    CHECK(backoff_delay(p, 1, std::nullopt) <= 0.5);
    CHECK(backoff_delay(p, 3, std::nullopt) >= 1.0);
    CHECK(backoff_delay(p, 3, std::nullopt) <= 2.0);
    CHECK(backoff_delay(p, 40, std::nullopt) <= 3.0);
  }
  CHECK(backoff_delay(p, 1, 7.0) == 7);
  CHECK(backoff_delay(p, 1, 100000.0) == 300);
}

TEST_CASE("rest: connection errors are retried, then reported naming the host") {
  Fixture f;
  tcp::acceptor quiet(f.io);  // bound, so nobody else takes the port, but not listening
  quiet.open(tcp::v4());
  quiet.bind({asio::ip::make_address("127.0.0.1"), 0});
  Request req;
  req.http.url = "http://127.0.0.1:" + std::to_string(quiet.local_endpoint().port()) + "/x";
  req.what = "get x";
  Options o;
  o.retry.attempts = 3;
  auto r = f.send(f.ctx(o), req);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::unavailable);
  CHECK(r.error().message().find("get x: 127.0.0.1:") == 0);
  CHECK(r.error().message().find("unreachable") != std::string::npos);
  CHECK(r.error().details()["attempts"] == 3);

  o.retry.connection_errors = false;
  auto once = f.send(f.ctx(o), req);
  REQUIRE_FALSE(once.ok());
  CHECK(once.error().details()["attempts"] == 1);
}

TEST_CASE("rest: cancelling a call mid backoff ends it at once") {
  Fixture f;
  f.server.handler = [](const Seen&) { return Reply{503, {{"Retry-After", "300"}}, ""}; };
  auto ctx = f.ctx();
  auto start = Clock::now();
  asio::steady_timer later(f.io);
  auto r = f.run<Response>(
      ctx, [&](ContextPtr c) { return f.client.send(c, f.get("/x")); },
      [&](const hoist::OperationPtr& op) {
        later.expires_after(std::chrono::milliseconds(200));
        later.async_wait([op](boost::system::error_code) { op->cancel(); });
      });
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::cancelled);
  CHECK(seconds_since(start) < kHang);
  CHECK(f.server.seen.size() == 1);
}

TEST_CASE("rest: a 401 renews credentials once, without counting a try") {
  Fixture f;
  f.server.handler = [](const Seen& s) {
    auto it = s.headers.find("authorization");
    bool fresh = it != s.headers.end() && it->second == "Bearer fresh";
    return fresh ? Reply{200, {}, "{}"} : Reply{401, {{"WWW-Authenticate", "Bearer realm=\"x\""}}, ""};
  };
  auto token = std::make_shared<std::string>("stale");
  auto req = f.get("/x");
  req.authorization = [token]() -> Task<std::string> { co_return "Bearer " + *token; };
  req.renew = [token](const HttpResponse& r) {
    *token = "fresh";
    return !r.header("www-authenticate").empty();
  };
  Options o;
  o.retry.attempts = 1;
  auto r = f.send(f.ctx(o), req);
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(f.server.seen.size() == 2);

  *token = "stale";  // renewing does not help: the second 401 is the answer
  req.renew = [](const HttpResponse&) { return true; };
  auto denied = f.send(f.ctx(o), req);
  REQUIRE(denied.ok());
  CHECK(denied->status == 401);
}

TEST_CASE("rest: HTTP status to error code") {
  asio::io_context io;
  HttpClient http(io);
  Client client(http, Api{});
  Request req;
  req.http.url = "https://api.example/things/1";
  req.what = "get thing 1";
  struct Row { long status; Code code; };
  for (auto row : {Row{400, Code::invalid_argument}, Row{401, Code::unauthorized}, Row{403, Code::forbidden},
                   Row{404, Code::not_found}, Row{408, Code::timeout}, Row{409, Code::conflict},
                   Row{412, Code::conflict}, Row{422, Code::invalid_argument}, Row{429, Code::throttled},
                   Row{500, Code::unavailable}, Row{502, Code::unavailable}, Row{503, Code::unavailable},
                   Row{504, Code::timeout}}) {
    CAPTURE(row.status);
    HttpResponse r;
    r.status = row.status;
    auto e = client.status_error(r, req);
    CHECK(e.code() == row.code);
    CHECK(e.details()["status"] == row.status);
    CHECK(e.details()["method"] == "GET");
    CHECK(e.message().find("get thing 1: ") == 0);
  }
}

TEST_CASE("rest: errors keep the remote's message and request ids, whatever the body's shape") {
  Fixture f;
  struct Row { const char* name; std::string body; const char* message; };
  for (auto row : {
           Row{"ARM", R"({"error":{"code":"ResourceGroupNotFound","message":"Resource group 'rg' could not be found."}})",
               "Resource group 'rg' could not be found. (ResourceGroupNotFound)"},
           Row{"Kubernetes Status", R"({"kind":"Status","status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","code":404})",
               "deployments.apps \"web\" not found (NotFound)"},
           Row{"OAuth2", R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret."})",
               "AADSTS7000215: Invalid client secret. (invalid_client)"},
           Row{"plain text", "<html>gone</html>", "not found"},
       }) {
    CAPTURE(row.name);
    f.server.handler = [&](const Seen&) {
      return Reply{404, {{"x-ms-request-id", "req-1"}, {"x-ms-correlation-request-id", "corr-2"}, {"Audit-Id", "aud-3"}},
                   row.body};
    };
    auto req = f.get("/things/web", "get web");
    auto r = f.send(f.ctx(), req);
    REQUIRE(r.ok());
    auto e = f.client.status_error(r.value(), req);
    CHECK(e.code() == Code::not_found);
    CHECK(e.message() == std::string("get web: ") + row.message + " (HTTP 404 from " +
                             url_host(f.server.url("")) + ")");
    CHECK(e.details()["request_ids"]["x-ms-request-id"] == "req-1");
    CHECK(e.details()["request_ids"]["x-ms-correlation-request-id"] == "corr-2");
    CHECK(e.details()["request_ids"]["audit-id"] == "aud-3");
    CHECK(e.details()["url"] == f.server.url("/things/web"));
    if (std::string(row.name) == "plain text") CHECK(e.details()["body"] == "<html>gone</html>");
  }
}

TEST_CASE("rest: a domain parses its own error body, and may say better than the status") {
  Api api{"k8s"};
  api.request_id_headers = {"x-my-id"};
  api.parse_error = [](const HttpResponse& r) {
    RemoteError e;
    auto j = nlohmann::json::parse(r.body);
    e.message = j["message"].get<std::string>();
    if (j["reason"] == "AlreadyExists") e.code = Code::conflict;
    e.details["causes"] = j["details"]["causes"];
    return e;
  };
  asio::io_context io;
  HttpClient http(io);
  Client client(http, api);
  HttpResponse r;
  r.status = 400;  // what a server says with a reason that means more
  r.headers = {{"x-my-id", "abc"}};
  r.body = R"({"message":"pods \"p\" already exists","reason":"AlreadyExists","details":{"causes":[{"field":"name"}]}})";
  Request req;
  req.http.method = "POST";
  req.http.url = "https://k/api/v1/namespaces/d/pods";
  req.what = "create pod p";
  auto e = client.status_error(r, req);
  CHECK(e.code() == Code::conflict);
  CHECK(e.message() == "create pod p: pods \"p\" already exists (HTTP 400 from k)");
  CHECK(e.details()["causes"][0]["field"] == "name");
  CHECK(e.details()["request_ids"]["x-my-id"] == "abc");
}

TEST_CASE("rest: pagination by Link rel=next, nextLink and continue") {
  struct Row { const char* name; NextPage next; std::function<Reply(const Seen&)> pages; };
  auto page = [](std::vector<std::string> items, hoist::Headers h, nlohmann::json extra) {
    nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
    j["items"] = items;
    return Reply{200, std::move(h), j.dump()};
  };
  Fixture f;
  std::string base = f.server.url("");
  std::vector<Row> rows{
      {"Link (relative)", next_by_link(),
       [&](const Seen& s) {
         if (s.target == "/items?n=2") return page({"a", "b"}, {{"Link", R"(</items?n=2&last=b>; rel="next")"}}, nullptr);
         return page({"c"}, {}, nullptr);
       }},
      {"nextLink (absolute)", next_by_field(),
       [&](const Seen& s) {
         if (s.target == "/items?n=2") return page({"a", "b"}, {}, {{"nextLink", base + "/items?n=2&skiptoken=x"}});
         return page({"c"}, {}, {{"nextLink", nullptr}});
       }},
      {"Kubernetes continue", next_by_continue(),
       [&](const Seen& s) {
         if (s.target == "/items?n=2") return page({"a", "b"}, {}, {{"metadata", {{"continue", "tok 1"}}}});
         CHECK(s.target == "/items?n=2&continue=tok%201");
         return page({"c"}, {}, {{"metadata", {{"continue", ""}}}});
       }},
  };
  for (auto& row : rows) {
    CAPTURE(row.name);
    f.server.seen.clear();
    f.server.handler = row.pages;
    std::vector<std::string> got;
    auto r = f.run<bool>(f.ctx(), [&](ContextPtr c) -> Task<bool> {
      co_await paginate(f.client, c, f.get("/items?n=2"), row.next, [&](nlohmann::json& p) {
        for (auto& i : p["items"]) got.push_back(i);
        return true;
      });
      co_return true;
    });
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().what()));
    CHECK(got == std::vector<std::string>{"a", "b", "c"});
    CHECK(f.server.seen.size() == 2);
  }

  // a page pointing back at itself is a loop, not an endless walk
  f.server.handler = [](const Seen&) { return Reply{200, {{"Link", "</items?n=2>; rel=next"}}, "{}"}; };
  auto loop = f.run<bool>(f.ctx(), [&](ContextPtr c) -> Task<bool> {
    co_await paginate(f.client, c, f.get("/items?n=2", "list items"), next_by_link(),
                      [](nlohmann::json&) { return true; });
    co_return true;
  });
  REQUIRE_FALSE(loop.ok());
  CHECK(loop.error().message() == "list items: the server's pagination loops");
}

TEST_CASE("rest: streamed lines arrive as they come, joined across chunks") {
  Fixture f;
  f.server.handler = [](const Seen&) {
    Reply r;
    r.chunks = {"a\nb", "c\n", "d\r\n{\"x\":", "1}\n", "tail"};
    r.gap = 0.1;
    return r;
  };
  std::vector<std::string> lines;
  std::vector<double> when;
  auto start = Clock::now();
  auto req = f.get("/watch");
  req.on_line = [&](std::string_view l) {
    lines.emplace_back(l);
    when.push_back(seconds_since(start));
    return true;
  };
  auto r = f.send(f.ctx(), req);
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body.empty());
  CHECK(lines == std::vector<std::string>{"a", "bc", "d", "{\"x\":1}", "tail"});
  REQUIRE(when.size() == 5);
  CHECK(when.back() - when.front() >= 0.25);  // the first line did not wait for the end

  // the consumer stops the stream: the call ends at once, not when the server would
  f.server.handler = [](const Seen&) {
    Reply r;
    for (int i = 0; i < 50; ++i) r.chunks.push_back("event " + std::to_string(i) + "\n");
    r.gap = 1;  // all 50 would take 50 s: more than kHang
    return r;
  };
  lines.clear();
  req.on_line = [&](std::string_view l) {
    lines.emplace_back(l);
    return lines.size() < 2;
  };
  start = Clock::now();
  auto stopped = f.send(f.ctx(), req);
  REQUIRE(stopped.ok());
  CHECK(stopped->status == 200);
  CHECK(lines.size() == 2);
  CHECK(seconds_since(start) < kHang);

  // an error status is not streamed: its body stays for the error
  f.server.handler = [](const Seen&) {
    Reply r{410, {}, ""};
    r.chunks = {R"({"kind":"Status","message":"too old resource version","reason":"Expired"})"};
    return r;
  };
  lines.clear();
  auto gone = f.send(f.ctx(), req);
  REQUIRE(gone.ok());
  CHECK(gone->status == 410);
  CHECK(lines.empty());
  CHECK(f.client.status_error(gone.value(), req).message().find("too old resource version (Expired)") !=
        std::string::npos);
}

TEST_CASE("rest: LineBuffer") {
  LineBuffer b;
  std::vector<std::string> out;
  auto keep = [&](std::string_view l) {
    out.emplace_back(l);
    return true;
  };
  CHECK(b.feed("", keep));
  CHECK(b.feed("x", keep));
  CHECK(b.feed("y\r", keep));
  CHECK(b.feed("\n\nz", keep));
  CHECK(b.finish(keep));
  CHECK(b.finish(keep));
  CHECK(out == std::vector<std::string>{"xy", "", "z"});
}

TEST_CASE("rest: dry-run records mutating requests as plan steps and sends nothing") {
  Fixture f;
  f.server.handler = [](const Seen&) { return Reply{200, {}, R"({"read":true})"}; };
  Options o;
  o.dry_run = true;
  auto ctx = f.ctx(o);
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
    CAPTURE(method);
    auto req = f.get("/things/1");
    req.http.method = method;
    req.http.body = R"({"name":"thing"})";
    req.action = "change_thing";
    req.plan_fields = {{"digest", "sha256:abc"}};
    auto r = f.send(ctx, req);
    REQUIRE(r.ok());
    CHECK(r->planned);
    CHECK(r->attempts == 0);
  }
  CHECK(f.server.seen.empty());
  REQUIRE(ctx->plan.size() == 4);
  auto step = to_json(ctx->plan[1]);
  CHECK(step == nlohmann::json{{"method", "PUT"}, {"url", f.server.url("/things/1")}, {"action", "change_thing"},
                               {"body", {{"name", "thing"}}}, {"digest", "sha256:abc"}});
  int plans = 0;
  for (auto& e : f.seen_events)
    if (e.kind == "plan") {
      ++plans;
      CHECK(e.message.find("would ") == 0);
    }
  CHECK(plans == 4);

  // reads go out in dry-run, and so does a mutating method marked safe (a query)
  auto read = f.send(ctx, f.get("/things"));
  REQUIRE(read.ok());
  CHECK_FALSE(read->planned);
  auto query = f.get("/query");
  query.http.method = "POST";
  query.safe = true;
  auto q = f.send(ctx, query);
  REQUIRE(q.ok());
  CHECK_FALSE(q->planned);
  CHECK(f.server.seen.size() == 2);
  CHECK(ctx->plan.size() == 4);

  // not in dry-run: sent
  auto real = f.get("/things/1");
  real.http.method = "PUT";
  auto sent = f.send(f.ctx(), real);
  REQUIRE(sent.ok());
  CHECK_FALSE(sent->planned);
  CHECK(f.server.seen.size() == 3);
}

TEST_CASE("rest: a plan step masks registered secrets in its body and URL") {
  Fixture f;
  f.secrets->add("s3cr3t-value");
  Options o;
  o.dry_run = true;
  auto ctx = f.ctx(o);
  auto req = f.get("/apps/web?sig=abcdef&api-version=1");
  req.http.method = "PUT";
  req.http.body = R"({"password":"s3cr3t-value","env":[{"name":"TOKEN","value":"Bearer s3cr3t-value"}],)"
                  R"("s3cr3t-value":1})";
  REQUIRE(f.send(ctx, req).ok());
  auto text = to_json(ctx->plan.at(0)).dump();
  CHECK(text.find("s3cr3t") == std::string::npos);
  CHECK(text.find("abcdef") == std::string::npos);
  CHECK(ctx->plan[0].body["env"][0]["value"] == "Bearer ***");
  CHECK(ctx->plan[0].url.find("api-version=1") != std::string::npos);

  auto form = f.get("/login");
  form.http.method = "POST";
  form.http.body = "user=me&password=s3cr3t-value";
  REQUIRE(f.send(ctx, form).ok());
  CHECK(ctx->plan.at(1).body == "user=me&password=***");
  for (auto& e : f.seen_events) CHECK(e.to_json().dump().find("s3cr3t") == std::string::npos);
}
