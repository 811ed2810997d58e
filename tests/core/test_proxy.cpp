// hoist proxy: relays both ways, switches upstream under load without a failed connection,
// keeps open connections on their upstream, reloads from the state file, runs detached.
#include <doctest/doctest.h>
#include <hoist/proxy.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace proxy = hoist::proxy;
using namespace std::chrono_literals;

// An upstream that answers every line with "<tag>:<line>\n" and closes when the client does.
class TagServer {
 public:
  explicit TagServer(std::string tag)
      : tag_(std::move(tag)), io_(std::make_unique<asio::io_context>()),
        acceptor_(std::make_unique<tcp::acceptor>(*io_, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0})),
        port_(acceptor_->local_endpoint().port()) {
    accept();
    thread_ = std::thread([this] { io_->run(); });
  }
  ~TagServer() { stop(); }
  // Closes the port and every open connection, as a stopped container does.
  void stop() {
    if (stopped_.exchange(true)) return;
    asio::post(*io_, [this] {
      acceptor_->close();
      io_->stop();
    });
    thread_.join();
    acceptor_.reset();
    io_.reset();  // destroys the pending handlers, and with them the connections
  }
  proxy::Endpoint endpoint() const { return {"127.0.0.1", port_}; }

 private:
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(tcp::socket s, std::string tag) : sock(std::move(s)), tag(std::move(tag)) {}
    void read() {
      auto self = shared_from_this();
      asio::async_read_until(sock, buf, '\n', [self](boost::system::error_code ec, std::size_t n) {
        if (ec) return;
        std::string line(asio::buffers_begin(self->buf.data()), asio::buffers_begin(self->buf.data()) + n);
        self->buf.consume(n);
        self->out = self->tag + ":" + line;
        asio::async_write(self->sock, asio::buffer(self->out), [self](boost::system::error_code ec, std::size_t) {
          if (!ec) self->read();
        });
      });
    }
    tcp::socket sock;
    std::string tag, out;
    asio::streambuf buf;
  };
  void accept() {
    acceptor_->async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      std::make_shared<Conn>(std::move(s), tag_)->read();
      accept();
    });
  }
  std::string tag_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::uint16_t port_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

// One request on a new connection: the answer ("A:hello\n"), or "" when it failed.
std::string request(std::uint16_t port, const std::string& line = "hello") {
  try {
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(s, asio::buffer(line + "\n"));
    asio::streambuf buf;
    asio::read_until(s, buf, '\n');
    return std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
  } catch (const std::exception&) {
    return "";
  }
}

// The proxy on its own thread.
struct Running {
  explicit Running(proxy::Options o) : server(std::move(o)), thread([this] { server.run(); }) {}
  ~Running() {
    server.stop();
    thread.join();
  }
  proxy::Server server;
  std::thread thread;
};

proxy::Options options_for(const proxy::Endpoint& upstream, std::string state_file = "") {
  proxy::Options o;
  o.listen = {"127.0.0.1", 0};
  o.upstream = upstream;
  o.state_file = std::move(state_file);
  o.name = "test";
  o.drain_timeout = 2s;
  o.log = false;
  return o;
}

std::string temp_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("hoist-proxy-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST_CASE("proxy endpoints parse and reject bad text") {
  CHECK(proxy::Endpoint::parse("127.0.0.1:8080").port == 8080);
  CHECK(proxy::Endpoint::parse("[::1]:81").host == "::1");
  CHECK(proxy::Endpoint::parse("[::1]:81").str() == "[::1]:81");
  for (const char* bad : {"127.0.0.1", "localhost:80", "127.0.0.1:x", "127.0.0.1:70000", ":80", "[::1]80"}) {
    CAPTURE(bad);
    try {
      proxy::Endpoint::parse(bad, "--listen");
      FAIL("accepted");
    } catch (const hoist::Error& e) {
      CHECK(e.code() == hoist::Code::invalid_argument);
      CHECK(e.message().find("--listen") != std::string::npos);
    }
  }
}

TEST_CASE("proxy relays both directions and several requests on one connection") {
  TagServer a("A");
  Running p(options_for(a.endpoint()));
  CHECK(request(p.server.port()) == "A:hello\n");

  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), p.server.port()});
  asio::streambuf buf;
  for (std::string word : {"one", "two"}) {
    asio::write(s, asio::buffer(word + "\n"));
    auto n = asio::read_until(s, buf, '\n');
    std::string got(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n);
    buf.consume(n);
    CHECK(got == "A:" + word + "\n");
  }
}

TEST_CASE("proxy switches upstream under load without a failed connection") {
  TagServer a("A"), b("B");
  Running p(options_for(a.endpoint()));
  std::atomic<bool> done{false};
  std::atomic<int> failed{0}, total{0};
  std::mutex mu;
  std::vector<std::string> answers;  // in completion order, across threads
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&] {
      while (!done) {
        auto got = request(p.server.port());
        ++total;
        if (got.empty()) ++failed;
        std::lock_guard lock(mu);
        answers.push_back(got.substr(0, 1));
      }
    });
  std::this_thread::sleep_for(300ms);
  p.server.set_upstream(b.endpoint());
  std::this_thread::sleep_for(300ms);  // connections accepted before the switch finish on A (drain)
  a.stop();                            // the old upstream goes away, as a replaced container does
  std::this_thread::sleep_for(300ms);
  done = true;
  for (auto& t : clients) t.join();
  MESSAGE("requests: " << total.load() << ", failed: " << failed.load());
  CHECK(total > 40);
  CHECK(failed == 0);
  CHECK(answers.front() == "A");
  CHECK(answers.back() == "B");
  CHECK(p.server.stats().switches == 1);
  CHECK(p.server.stats().upstream_failed == 0);
}

TEST_CASE("an open connection keeps its upstream after a switch") {
  TagServer a("A"), b("B");
  Running p(options_for(a.endpoint()));
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), p.server.port()});
  asio::write(s, asio::buffer(std::string("before\n")));
  asio::streambuf buf;
  asio::read_until(s, buf, '\n');
  buf.consume(buf.size());
  p.server.set_upstream(b.endpoint());
  for (int i = 0; i < 100 && p.server.upstream() != b.endpoint(); ++i) std::this_thread::sleep_for(5ms);
  CHECK(request(p.server.port()) == "B:hello\n");
  asio::write(s, asio::buffer(std::string("after\n")));
  auto n = asio::read_until(s, buf, '\n');
  CHECK(std::string(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n) == "A:after\n");
}

TEST_CASE("an unreachable upstream closes the client connection and is counted") {
  proxy::Endpoint nowhere;
  {
    TagServer gone("X");
    nowhere = gone.endpoint();
  }  // port now closed
  Running p(options_for(nowhere));
  CHECK(request(p.server.port()).empty());
  for (int i = 0; i < 100 && p.server.stats().upstream_failed == 0; ++i) std::this_thread::sleep_for(5ms);
  CHECK(p.server.stats().upstream_failed == 1);
}

TEST_CASE("a taken listen port is a conflict") {
  TagServer a("A");
  auto o = options_for(a.endpoint());
  o.listen = a.endpoint();
  try {
    proxy::Server s(o);
    FAIL("bound a taken port");
  } catch (const hoist::Error& e) {
    CHECK(e.code() == hoist::Code::conflict);
    CHECK(e.message().find(a.endpoint().str()) != std::string::npos);
  }
}

TEST_CASE("reload takes the upstream from the state file and acknowledges it") {
  TagServer a("A"), b("B");
  auto state = temp_dir() + "/reload.json";
  Running p(options_for(a.endpoint(), state));
  auto s = proxy::read_state(state);
  REQUIRE(s);
  CHECK((*s)["pid"] == static_cast<int>(getpid()));
  CHECK((*s)["applied"] == a.endpoint().str());
  CHECK((*s)["listen"] == "127.0.0.1:" + std::to_string(p.server.port()));

  (*s)["upstream"] = b.endpoint().str();
  (*s)["request"] = "t1";
  proxy::write_state(state, *s);
  p.server.reload();
  for (int i = 0; i < 200 && proxy::read_state(state)->value("ack", "") != "t1"; ++i) std::this_thread::sleep_for(5ms);
  auto after = proxy::read_state(state);
  CHECK(after->value("ack", "") == "t1");
  CHECK(after->value("applied", "") == b.endpoint().str());
  CHECK(request(p.server.port()) == "B:hello\n");

  (*after)["upstream"] = "not an address";
  (*after)["request"] = "t2";
  proxy::write_state(state, *after);
  p.server.reload();
  for (int i = 0; i < 200 && proxy::read_state(state)->value("ack", "") != "t2"; ++i) std::this_thread::sleep_for(5ms);
  CHECK(proxy::read_state(state)->value("error", "").find("not an address") != std::string::npos);
  CHECK(request(p.server.port()) == "B:hello\n");  // a bad upstream changes nothing
}

TEST_CASE("hoist proxy --detach outlives its caller, switches and stops") {
  TagServer a("A"), b("B");
  auto state = temp_dir() + "/detached.json";
  std::filesystem::remove(state);
  std::string cmd = std::string(HOIST_BINARY) + " proxy --listen 127.0.0.1:0 --upstream " + a.endpoint().str() +
                    " --state " + state + " --name detached --detach > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);  // returns once the daemon listens
  auto st = proxy::status(state);
  REQUIRE(st["running"] == true);
  CHECK(st["pid"] != static_cast<int>(getpid()));
  auto port = proxy::Endpoint::parse(st["listen"].get<std::string>()).port;
  CHECK(request(port) == "A:hello\n");

  // A second proxy on the same state file is refused while the first runs.
  CHECK(std::system((std::string(HOIST_BINARY) + " proxy --listen 127.0.0.1:0 --upstream " + a.endpoint().str() +
                     " --state " + state + " --detach > /dev/null 2>&1").c_str()) != 0);

  auto switched = proxy::switch_upstream(state, b.endpoint(), 5s);
  CHECK(switched["applied"] == b.endpoint().str());
  CHECK(request(port) == "B:hello\n");

  CHECK(proxy::stop(state, 5s));
  CHECK_FALSE(std::filesystem::exists(state));
  CHECK(request(port).empty());
  CHECK_FALSE(proxy::stop(state, 1s));
  try {
    proxy::switch_upstream(state, a.endpoint(), 1s);
    FAIL("switched a stopped proxy");
  } catch (const hoist::Error& e) {
    CHECK(e.code() == hoist::Code::not_found);
  }
}
