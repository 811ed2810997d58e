// HttpClient against tests/servers/http_test_server.py on 127.0.0.1.
#include <doctest/doctest.h>
#include <hoist/http.hpp>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <utility>
#include <string>
#include <vector>

namespace {

using hoist::Code;
using hoist::HttpClient;
using hoist::HttpRequest;
using hoist::HttpResponse;
using hoist::Outcome;
using Clock = std::chrono::steady_clock;

// The python test server, started once for all cases; it exits when our end of its stdin
// closes (so a crashed test run leaves no server behind) or after its lifetime.
class TestServer {
 public:
  explicit TestServer(std::vector<std::string> extra = {}) {
    int in[2], out[2];
    REQUIRE(pipe(in) == 0);
    REQUIRE(pipe(out) == 0);
    std::vector<std::string> args{"python3", HOIST_SOURCE_DIR "/tests/servers/http_test_server.py",
                                  "--exit-on-stdin-eof", "--lifetime", "300"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("python3", argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
    close(out[0]);
    REQUIRE_MESSAGE(!line.empty(), "http_test_server.py did not start");
    port = std::stoi(line);
    base = "http://127.0.0.1:" + std::to_string(port);
  }
  ~TestServer() {
    close(stdin_);
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  int port = 0;
  std::string base;

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
};

TestServer& server() {
  static TestServer s;
  return s;
}

// Runs the loop until `done` or a deadline (a hung test fails instead of hanging).
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done, double seconds = 20) {
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  io.restart();
  while (!done() && Clock::now() < deadline) io.run_one_for(std::chrono::milliseconds(20));
  return done();
}

Outcome<HttpResponse> fetch(HttpClient& http, boost::asio::io_context& io, HttpRequest req) {
  std::optional<Outcome<HttpResponse>> result;
  http.request(std::move(req), [&](Outcome<HttpResponse> r) { result.emplace(std::move(r)); });
  REQUIRE(run_until(io, [&] { return result.has_value(); }));
  return std::move(*result);
}

HttpRequest get(const std::string& url) {
  HttpRequest r;
  r.url = url;
  return r;
}

nlohmann::json json_of(const Outcome<HttpResponse>& r) {
  REQUIRE_MESSAGE(r.ok(), std::string(r.ok() ? "" : r.error().what()));
  return nlohmann::json::parse(r.value().body);
}

int closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);  // nothing listens there now
  return ntohs(a.sin_port);
}

struct EnvGuard {  // sets env vars for one case, restores them after
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  void set(const std::string& k, const char* v) {
    const char* old = std::getenv(k.c_str());
    saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    v ? setenv(k.c_str(), v, 1) : unsetenv(k.c_str());
  }
  ~EnvGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it)
      it->second ? setenv(it->first.c_str(), it->second->c_str(), 1) : unsetenv(it->first.c_str());
  }
};

}  // namespace

TEST_CASE("http: GET returns status, lower-cased headers and body") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto req = get(server().base + "/echo?x=1");
  req.headers = {{"X-Custom", "yes"}, {"Accept", "application/json"}};
  auto r = fetch(http, io, req);
  auto j = json_of(r);
  CHECK(r->status == 200);
  CHECK(r->header("Content-Type") == "application/json");
  CHECK(r->header("content-length") == std::to_string(r->body.size()));
  for (auto& [k, v] : r->headers)
    for (char c : k) CHECK_FALSE((c >= 'A' && c <= 'Z'));
  CHECK(j["headers"]["x-custom"] == "yes");
  CHECK(j["headers"]["user-agent"].get<std::string>().starts_with("hoist/"));
  CHECK_FALSE(j["headers"].contains("expect"));
  CHECK(j["query"]["x"] == "1");
  CHECK(r->effective_url == server().base + "/echo?x=1");
  CHECK(r->duration > 0);
  CHECK(&HttpClient::for_loop(io) == &http);  // one client per loop
}

TEST_CASE("http: methods and bodies") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  struct Row { const char* method; std::string body; const char* seen; };
  for (auto row : {Row{"POST", "hello", "POST"}, Row{"PUT", "data", "PUT"}, Row{"PATCH", "{}", "PATCH"},
                   Row{"DELETE", "", "DELETE"}, Row{"post", "", "POST"}, Row{"GET", "", "GET"}}) {
    CAPTURE(row.method);
    auto req = get(server().base + "/echo");
    req.method = row.method;
    req.body = row.body;
    auto j = json_of(fetch(http, io, req));
    CHECK(j["method"] == row.seen);
    CHECK(j["body"] == row.body);
    if (std::string(row.seen) == "POST") CHECK(j["headers"]["content-length"] == std::to_string(row.body.size()));
    CHECK_FALSE(j["headers"].contains("content-type"));  // no form-urlencoded default
  }
  auto head = get(server().base + "/json");
  head.method = "HEAD";
  auto r = fetch(http, io, head);
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body.empty());
}

TEST_CASE("http: any status is a response, not an error") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  for (int code : {201, 204, 301, 400, 401, 404, 429, 500, 503}) {
    auto req = get(server().base + "/status/" + std::to_string(code));
    req.follow_redirects = false;
    CAPTURE(code);
    auto r = fetch(http, io, req);
    REQUIRE_MESSAGE(r.ok(), std::string(r.ok() ? "" : r.error().what()));
    CHECK(r->status == code);
  }
}

TEST_CASE("http: transport errors map to codes") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);

  SUBCASE("connection refused is unavailable and retryable, with the URL in details") {
    auto url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x?sig=SECRETSIG";
    auto r = fetch(http, io, get(url));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::unavailable);
    CHECK(r.error().retryable());
    CHECK(r.error().details()["url"].get<std::string>().find("/x?sig=***") != std::string::npos);
    CHECK(r.error().details()["curl_message"].get<std::string>().find("onnect") != std::string::npos);
  }
  SUBCASE("a slow server hits the timeout") {
    auto req = get(server().base + "/slow?delay=3");
    req.timeout = 0.3;
    auto started = Clock::now();
    auto r = fetch(http, io, req);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::timeout);
    CHECK(std::chrono::duration<double>(Clock::now() - started).count() < 2.5);
  }
  SUBCASE("bad options are invalid_argument, reported on the loop") {
    for (auto [method, header_value] : {std::pair{"GE T", "ok"}, std::pair{"GET", "a\r\nInjected: 1"}}) {
      auto req = get(server().base + "/echo");
      req.method = method;
      req.headers = {{"X-H", header_value}};
      bool called = false;
      std::optional<Outcome<HttpResponse>> result;
      http.request(req, [&](Outcome<HttpResponse> r) { called = true; result.emplace(std::move(r)); });
      CHECK_FALSE(called);  // never re-entrant
      REQUIRE(run_until(io, [&] { return called; }));
      CHECK(result->error().code() == Code::invalid_argument);
    }
    auto r = fetch(http, io, get("ftp://127.0.0.1/x"));
    CHECK(r.error().code() == Code::invalid_argument);
  }
}

TEST_CASE("http: cancel ends the transfer at once with cancelled") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  int calls = 0;
  std::optional<Outcome<HttpResponse>> result;
  auto t = http.request(get(server().base + "/slow?delay=5"), [&](Outcome<HttpResponse> r) {
    ++calls;
    result.emplace(std::move(r));
  });
  run_until(io, [] { return false; }, 0.1);  // let it connect
  auto started = Clock::now();
  t->cancel();
  t->cancel();  // twice is harmless
  REQUIRE(run_until(io, [&] { return calls > 0; }));
  CHECK(std::chrono::duration<double>(Clock::now() - started).count() < 0.5);
  CHECK(result->error().code() == Code::cancelled);
  run_until(io, [] { return false; }, 0.1);
  CHECK(calls == 1);
  // the client goes on working
  CHECK(fetch(http, io, get(server().base + "/json"))->status == 200);
}

TEST_CASE("http: requests, cancels and resumes from inside callbacks are deferred safely") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  std::optional<Outcome<HttpResponse>> inner, outer, cancelled;
  std::shared_ptr<hoist::Transfer> self;
  std::size_t outer_bytes = 0;
  bool inner_started = false;
  auto req = get(server().base + "/download?size=200000");
  req.on_data = [&](std::string_view piece) {
    outer_bytes += piece.size();
    if (!std::exchange(inner_started, true))  // a new request from inside curl's write callback
      http.request(get(server().base + "/json"), [&](Outcome<HttpResponse> r) { inner.emplace(std::move(r)); });
    return true;
  };
  http.request(req, [&](Outcome<HttpResponse> r) { outer.emplace(std::move(r)); });
  auto slow = get(server().base + "/download?size=5000000");
  slow.on_data = [&](std::string_view) {
    self->cancel();  // cancelling itself from its own callback
    return true;
  };
  self = http.request(slow, [&](Outcome<HttpResponse> r) { cancelled.emplace(std::move(r)); });
  REQUIRE(run_until(io, [&] { return inner && outer && cancelled; }));
  CHECK(inner->value().status == 200);
  CHECK(outer->value().status == 200);
  CHECK(outer_bytes == 200000);
  CHECK(cancelled->error().code() == Code::cancelled);
}

TEST_CASE("http: a loop that goes away with transfers in flight") {
  std::shared_ptr<hoist::Transfer> t;
  bool called = false;
  {
    boost::asio::io_context io;
    t = HttpClient::for_loop(io).request(get(server().base + "/slow?delay=2"),
                                         [&](Outcome<HttpResponse>) { called = true; });
    run_until(io, [] { return false; }, 0.1);
  }  // the client goes with its io_context: no completion, no crash
  t->cancel();
  t->resume();
  CHECK_FALSE(called);
}

TEST_CASE("http: connections are reused") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto a = json_of(fetch(http, io, get(server().base + "/echo")));
  auto b = json_of(fetch(http, io, get(server().base + "/echo")));
  CHECK(a["peer"] == b["peer"]);  // same client port: same connection
}

TEST_CASE("http: redirects are followed; Authorization stays with the first host") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  SUBCASE("to another port") {
    auto req = get(server().base + "/redirect-other?path=/echo");
    req.headers = {{"Authorization", "Bearer s3cr3t-token"}};
    auto r = fetch(http, io, req);
    auto j = json_of(r);
    CHECK(r->status == 200);
    CHECK_FALSE(j["headers"].contains("authorization"));
    CHECK(r->effective_url.find(server().base) == std::string::npos);
    CHECK(r->header("location").empty());  // headers of the final response only
  }
  SUBCASE("to another host name") {
    auto req = get(server().base + "/redirect?to=" + "http://localhost:" + std::to_string(server().port) + "/echo");
    req.headers = {{"Authorization", "Bearer s3cr3t-token"}};
    auto j = json_of(fetch(http, io, req));
    CHECK_FALSE(j["headers"].contains("authorization"));
  }
  SUBCASE("on the same host it is kept, and the redirect's body is not seen") {
    auto req = get(server().base + "/redirect?to=/echo");
    req.headers = {{"Authorization", "Bearer s3cr3t-token"}};
    auto r = fetch(http, io, req);
    auto j = json_of(r);
    CHECK(j["headers"]["authorization"] == "Bearer s3cr3t-token");
    CHECK(r->body.find("must not be seen") == std::string::npos);
    CHECK(r->header("x-redirect").empty());
  }
  SUBCASE("not followed when asked") {
    auto req = get(server().base + "/redirect?to=/echo");
    req.follow_redirects = false;
    auto r = fetch(http, io, req);
    CHECK(r->status == 302);
    CHECK(r->header("location") == "/echo");
  }
}

TEST_CASE("http: a 100 Continue does not leak into the final headers") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto req = get(server().base + "/echo");
  req.method = "POST";
  req.body = "body";
  req.headers = {{"Expect", "100-continue"}};
  int header_calls = 0;
  req.on_headers = [&](long status, const hoist::Headers&) {
    ++header_calls;
    CHECK(status == 200);
  };
  auto r = fetch(http, io, req);
  auto j = json_of(r);
  CHECK(j["body"] == "body");
  CHECK(header_calls == 1);
  int content_types = 0;
  for (auto& [k, v] : r->headers) content_types += k == "content-type";
  CHECK(content_types == 1);
}

TEST_CASE("http: chunked responses and streamed downloads") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto r = fetch(http, io, get(server().base + "/chunked?n=4"));
  CHECK(r->body == "chunk-0\nchunk-1\nchunk-2\nchunk-3\n");

  auto req = get(server().base + "/download?size=3000000");
  std::size_t got = 0, pieces = 0;
  long seen_status = 0;
  std::string length;
  req.on_headers = [&](long status, const hoist::Headers& h) {
    CHECK(got == 0);
    seen_status = status;
    for (auto& [k, v] : h)
      if (k == "content-length") length = v;
  };
  req.on_data = [&](std::string_view piece) {
    got += piece.size();
    ++pieces;
    return true;
  };
  auto d = fetch(http, io, req);
  REQUIRE(d.ok());
  CHECK(seen_status == 200);
  CHECK(length == "3000000");
  CHECK(got == 3000000);
  CHECK(pieces > 1);
  CHECK(d->body.empty());
}

TEST_CASE("http: a 50 MB body streams from a GET into a PUT through a bounded buffer") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  const std::size_t size = 50 * 1024 * 1024, capacity = 256 * 1024;
  for (bool chunked : {false, true}) {
    CAPTURE(chunked);
    auto pipe = std::make_shared<hoist::BodyPipe>(capacity);
    auto get_req = get(server().base + "/download?size=" + std::to_string(size));
    HttpRequest put_req = get(server().base + "/upload");
    put_req.method = "PUT";
    put_req.body_size = chunked ? -1 : static_cast<std::int64_t>(size);
    put_req.timeout = get_req.timeout = 120;
    pipe->connect(get_req, put_req);
    std::optional<Outcome<HttpResponse>> got, put;
    pipe->source = http.request(get_req, [&, pipe](Outcome<HttpResponse> r) {
      pipe->source_done(r);
      got.emplace(std::move(r));
    });
    pipe->sink = http.request(put_req, [&, pipe](Outcome<HttpResponse> r) {
      pipe->sink_done(r);
      put.emplace(std::move(r));
    });
    REQUIRE(run_until(io, [&] { return got && put; }, 120));
    REQUIRE_MESSAGE(got->ok(), got->error().what());
    REQUIRE_MESSAGE(put->ok(), put->error().what());
    auto j = nlohmann::json::parse(put->value().body);
    CHECK(j["size"] == size);
    CHECK(j["chunked"] == chunked);
    CHECK(j["sha256"] == got->value().header("x-checksum"));
    CHECK(pipe->pauses() > 0);                              // the source really waited
    CHECK(pipe->max_buffered() <= capacity + 64 * 1024);  // at most one piece over
    MESSAGE("pipe: " << pipe->pauses() << " source pauses, max buffered " << pipe->max_buffered());
  }
}

TEST_CASE("http: a failing source cancels the sink") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto pipe = std::make_shared<hoist::BodyPipe>(1024);
  auto get_req = get(server().base + "/status/404");
  HttpRequest put_req = get(server().base + "/upload");
  put_req.method = "PUT";
  pipe->connect(get_req, put_req);
  std::optional<Outcome<HttpResponse>> got, put;
  pipe->source = http.request(get_req, [&, pipe](auto r) { pipe->source_done(r); got.emplace(std::move(r)); });
  pipe->sink = http.request(put_req, [&, pipe](auto r) { pipe->sink_done(r); put.emplace(std::move(r)); });
  REQUIRE(run_until(io, [&] { return got && put; }));
  CHECK(got->value().status == 404);
  REQUIRE_FALSE(put->ok());
  CHECK(put->error().code() == Code::cancelled);
}

TEST_CASE("http: 100 concurrent requests overlap on one loop") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  REQUIRE(fetch(http, io, [] { auto r = get(server().base + "/stats/reset"); r.method = "POST"; return r; }())->status == 200);
  int done = 0, ok = 0;
  auto started = Clock::now();
  for (int i = 0; i < 100; ++i)
    http.request(get(server().base + "/slow?delay=0.2"), [&](Outcome<HttpResponse> r) {
      ++done;
      ok += r.ok() && r->status == 200;
    });
  REQUIRE(run_until(io, [&] { return done == 100; }, 30));
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  CHECK(ok == 100);
  auto stats = json_of(fetch(http, io, get(server().base + "/stats")));
  MESSAGE("100 requests x 0.2 s: " << took << " s, server saw " << stats["max_active"] << " at once");
  CHECK(stats["count"] == 100);
  CHECK(stats["max_active"].get<int>() >= 50);
}

TEST_CASE("http: proxies from the environment") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto proxy = server().base;
  auto dead = "http://127.0.0.1:" + std::to_string(closed_port());
  for (auto var : {"http_proxy", "HTTP_PROXY"}) {
    CAPTURE(var);
    EnvGuard env;
    for (auto v : {"http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"})
      env.set(v, nullptr);
    env.set(var, proxy.c_str());
    // the proxy (our server) receives the absolute-form request line
    auto j = json_of(fetch(http, io, get("http://proxied.invalid/echo")));
    CHECK(j["request_line"] == "GET http://proxied.invalid/echo HTTP/1.1");
  }
  for (auto var : {"no_proxy", "NO_PROXY"}) {
    CAPTURE(var);
    EnvGuard env;
    for (auto v : {"http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"})
      env.set(v, nullptr);
    env.set("http_proxy", dead.c_str());  // would fail if used
    env.set(var, "127.0.0.1");
    auto j = json_of(fetch(http, io, get(server().base + "/echo")));
    CHECK(j["request_line"] == "GET /echo HTTP/1.1");
  }
  {
    EnvGuard env;
    for (auto v : {"http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"})
      env.set(v, nullptr);
    env.set("HTTP_PROXY", dead.c_str());
    auto r = fetch(http, io, get("http://proxied.invalid/echo"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::unavailable);  // the dead proxy was really used
  }
}

TEST_CASE("http: against a local Azure emulator, a cloud host name outside the proxy is refused") {
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto dead = "http://127.0.0.1:" + std::to_string(closed_port());
  auto clean = [](EnvGuard& env) {
    for (auto v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                   "ALL_PROXY"})
      env.set(v, nullptr);
    env.set("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://127.0.0.1:5010");
  };
  {  // no proxy: refused before any DNS look-up, naming the variable
    EnvGuard env;
    clean(env);
    auto r = fetch(http, io, get("https://web--v2.example.azurecontainerapps.io/health"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::invalid_argument);
    CHECK(std::string(r.error().what()).find("HTTPS_PROXY is not set") != std::string::npos);
    CHECK(std::string(r.error().what()).find("web--v2.example.azurecontainerapps.io") != std::string::npos);
  }
  {  // NO_PROXY covering the name sends it past the proxy: refused too
    EnvGuard env;
    clean(env);
    env.set("HTTPS_PROXY", dead.c_str());
    env.set("NO_PROXY", "127.0.0.1,.azurewebsites.net");
    auto r = fetch(http, io, get("https://app.azurewebsites.net/"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::invalid_argument);
    CHECK(std::string(r.error().what()).find("NO_PROXY sends app.azurewebsites.net past the proxy") !=
          std::string::npos);
  }
  {  // with the proxy: sent to it (a dead one here, so unavailable, not refused)
    EnvGuard env;
    clean(env);
    env.set("HTTP_PROXY", dead.c_str());
    auto r = fetch(http, io, get("http://web.westeurope.azurecontainer.io/"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::unavailable);
  }
  {  // local hosts and a non-loopback Resource Manager are none of its business
    EnvGuard env;
    clean(env);
    CHECK(fetch(http, io, get(server().base + "/echo")).ok());
    env.set("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://management.azure.com");
    env.set("HTTPS_PROXY", dead.c_str());
    auto r = fetch(http, io, get("https://web.azurecontainerapps.io/"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::unavailable);  // the (dead) proxy was used, nothing refused
  }
}

TEST_CASE("http: unix socket") {
  auto dir = std::filesystem::temp_directory_path() / ("hoist-http-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto sock = (dir / "s.sock").string();
  TestServer unix_server({"--unix", sock});
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto req = get("http://localhost/echo");
  req.unix_socket = sock;
  auto j = json_of(fetch(http, io, req));
  CHECK(j["path"] == "/echo");
  std::filesystem::remove_all(dir);
}

TEST_CASE("http: TLS verification, cacert, insecure and client certificates") {
  if (std::system("command -v openssl >/dev/null") != 0) {
    MESSAGE("skipped: openssl not found (needed to make test certificates)");
    return;
  }
  auto dir = std::filesystem::temp_directory_path() / ("hoist-tls-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto d = dir.string();
  auto cmd = "cd " + d + " && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 1 2>/dev/null && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ckey.pem -out ccert.pem "
             "-subj /CN=hoist-client -days 1 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  TestServer tls({"--tls-cert", d + "/cert.pem", "--tls-key", d + "/key.pem", "--tls-client-ca",
                  d + "/ccert.pem"});
  boost::asio::io_context io;
  auto& http = HttpClient::for_loop(io);
  auto info = json_of(fetch(http, io, get(tls.base + "/info")));
  auto url = "https://127.0.0.1:" + std::to_string(info["tls_port"].get<int>()) + "/echo";

  auto untrusted = fetch(http, io, get(url));
  REQUIRE_FALSE(untrusted.ok());
  CHECK(untrusted.error().code() == Code::unavailable);

  auto insecure = get(url);
  insecure.insecure = true;
  CHECK(json_of(fetch(http, io, insecure))["path"] == "/echo");

  auto trusted = get(url);
  trusted.cacert = d + "/cert.pem";
  CHECK(json_of(fetch(http, io, trusted))["client_cert"].is_null());

  {  // no cacert: the usual variables name the bundle, CURL_CA_BUNDLE before SSL_CERT_FILE
    EnvGuard env;
    auto cert = d + "/cert.pem", missing = d + "/missing.pem";
    env.set("CURL_CA_BUNDLE", nullptr);
    env.set("SSL_CERT_FILE", cert.c_str());
    CHECK(json_of(fetch(http, io, get(url)))["path"] == "/echo");
    env.set("CURL_CA_BUNDLE", cert.c_str());
    env.set("SSL_CERT_FILE", missing.c_str());
    CHECK(json_of(fetch(http, io, get(url)))["path"] == "/echo");
    env.set("CURL_CA_BUNDLE", nullptr);
    env.set("SSL_CERT_FILE", nullptr);
    CHECK_FALSE(fetch(http, io, get(url)).ok());
  }

  trusted.client_cert = d + "/ccert.pem";
  trusted.client_key = d + "/ckey.pem";
  CHECK(json_of(fetch(http, io, trusted))["client_cert"] == "hoist-client");

  {  // HTTPS through a proxy: a CONNECT tunnel, from HTTPS_PROXY or https_proxy
    for (auto var : {"HTTPS_PROXY", "https_proxy"}) {
      CAPTURE(var);
      EnvGuard env;
      for (auto v : {"https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"})
        env.set(v, nullptr);
      env.set(var, tls.base.c_str());
      auto before = json_of(fetch(http, io, get(tls.base + "/proxy-stats")))["connects"].get<int>();
      auto via = get(url);
      via.cacert = d + "/cert.pem";
      via.headers = {{"Connection", "close"}};  // a fresh connection, so a fresh tunnel
      CHECK(json_of(fetch(http, io, via))["path"] == "/echo");
      auto after = json_of(fetch(http, io, get(tls.base + "/proxy-stats")));
      CHECK(after["connects"].get<int>() == before + 1);
      CHECK(after["last"] == "127.0.0.1:" + std::to_string(info["tls_port"].get<int>()));
    }
  }

  auto bad_ca = get(url);
  bad_ca.cacert = d + "/missing.pem";
  auto r = fetch(http, io, bad_ca);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::invalid_argument);
  std::filesystem::remove_all(dir);
}

TEST_CASE("http: redact_url masks secret-looking parts") {
  using hoist::redact_url;
  CHECK(redact_url("https://a.blob/x?sv=2020&sig=abc%2B&se=1") == "https://a.blob/x?sv=2020&sig=***&se=1");
  CHECK(redact_url("https://s3/x?X-Amz-Signature=ff&X-Amz-Credential=k&a=b#f") ==
        "https://s3/x?X-Amz-Signature=***&X-Amz-Credential=***&a=b#f");
  CHECK(redact_url("http://user:pw@host:1/p?access_token=t") == "http://user:***@host:1/p?access_token=***");
  CHECK(redact_url("http://host/p") == "http://host/p");
  CHECK(redact_url("http://host/p?flag&x=") == "http://host/p?flag&x=");
}
