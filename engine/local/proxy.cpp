// hoist proxy: a TCP front on one Asio loop (see hoist/proxy.hpp for the protocol).
#include <hoist/proxy.hpp>
#include <hoist/strings.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <unordered_set>

namespace hoist::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace fs = std::filesystem;

namespace {

std::string utc_now() { return text::utc_now("%Y-%m-%dT%H:%M:%SZ"); }

// One line on stderr (the log file when detached).
void log_line(const Options& o, const std::string& message) {
  if (!o.log) return;
  const std::string& name = o.name;
  std::cerr << utc_now() << " hoist proxy " << (name.empty() ? "-" : name) << ": " << message << std::endl;
}

tcp::endpoint to_asio(const Endpoint& e) { return {asio::ip::make_address(e.host), e.port}; }

}  // namespace

// ---------------------------------------------------------------- Endpoint

std::string Endpoint::str() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Endpoint Endpoint::parse(std::string_view text, std::string_view what) {
  auto bad = [&](const std::string& why) -> Error {
    return Error(Code::invalid_argument,
                 std::string(what) + " '" + std::string(text) + "' " + why + " (expected HOST:PORT, e.g. 127.0.0.1:8080)");
  };
  std::string host, port;
  if (text.starts_with('[')) {
    auto close = text.find("]:");
    if (close == std::string_view::npos) throw bad("has no port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) throw bad("has no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (ec) throw bad("needs a numeric IP address as host");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw bad("has a bad port");
  int n = std::stoi(port);
  if (n > 65535) throw bad("has a port above 65535");
  return Endpoint{host, static_cast<std::uint16_t>(n)};
}

// ---------------------------------------------------------------- state file

std::optional<nlohmann::json> read_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw Error(Code::invalid_argument, "proxy state file " + path + " is not a JSON object");
  return j;
}

void write_state(const std::string& path, const nlohmann::json& state) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  // A unique temporary name: the switcher and the proxy may both write (never at once).
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." +
                    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(Code::internal, "cannot write proxy state " + tmp + ": " + std::strerror(errno));
  std::string text = state.dump(2) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(Code::internal, "cannot write proxy state " + path + ": " + std::strerror(err));
  }
}

bool proxy_alive(int pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(stat, line)) {  // "pid (comm) S ..." : a zombie is not serving
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') return false;
  }
  // The pid may have been reused since the state file was written.
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string args((std::istreambuf_iterator<char>(cmd)), {});
  return args.find(std::string("proxy\0", 6)) != std::string::npos;
}

// ---------------------------------------------------------------- Server

namespace {
struct Session;
}

struct Server::Impl {
  explicit Impl(Options o) : opt(std::move(o)), acceptor(io), signals(io), drain_timer(io) {}

  Options opt;
  std::unordered_set<Session*> sessions;  // declared before io: io dies first, sessions last
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::steady_timer drain_timer;
  std::uint16_t bound_port = 0;
  bool stopping = false;

  mutable std::mutex mu;  // guards upstream for readers on other threads
  Endpoint upstream;
  std::atomic<std::uint64_t> accepted{0}, upstream_failed{0}, active{0}, switches{0};

  Endpoint current() const {
    std::lock_guard lock(mu);
    return upstream;
  }
  void apply(const Endpoint& e);
  void accept();
  void do_reload();
  void do_stop();
  void write_own_state(nlohmann::json state);
  void on_session_end();
};

namespace {

// One client connection spliced to one upstream connection, both directions.
struct Session : std::enable_shared_from_this<Session> {
  Session(Server::Impl* impl, tcp::socket s)
      : impl(impl), client(std::move(s)), upstream(impl->io), timer(impl->io) {
    impl->sessions.insert(this);
    ++impl->active;
  }
  ~Session() {
    impl->sessions.erase(this);
    --impl->active;
    impl->on_session_end();
  }

  void start(const Endpoint& target) {
    auto self = shared_from_this();
    timer.expires_after(impl->opt.connect_timeout);
    timer.async_wait([self](boost::system::error_code ec) {
      if (!ec) self->upstream.close();  // aborts the connect below
    });
    upstream.async_connect(to_asio(target), [self, target](boost::system::error_code ec) {
      self->timer.cancel();
      if (ec) {
        ++self->impl->upstream_failed;
        log_line(self->impl->opt, "cannot reach upstream " + target.str() + ": " + ec.message());
        self->close();
        return;
      }
      boost::system::error_code ignored;
      self->client.set_option(tcp::no_delay(true), ignored);
      self->upstream.set_option(tcp::no_delay(true), ignored);
      self->pump(self->client, self->upstream, self->up_buf);
      self->pump(self->upstream, self->client, self->down_buf);
    });
  }

  // Copies from -> to until EOF, then half-closes `to` so the peer sees the end too.
  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](boost::system::error_code ec, std::size_t n) {
      if (ec) {
        boost::system::error_code ignored;
        if (ec == asio::error::eof)
          to.shutdown(tcp::socket::shutdown_send, ignored);
        else
          self->close();
        return;
      }
      asio::async_write(to, asio::buffer(buf, n), [self, &from, &to, &buf](boost::system::error_code ec, std::size_t) {
        if (ec) return self->close();
        self->pump(from, to, buf);
      });
    });
  }

  void close() {
    boost::system::error_code ignored;
    client.close(ignored);
    upstream.close(ignored);
  }

  Server::Impl* impl;
  tcp::socket client, upstream;
  asio::steady_timer timer;
  std::array<char, 16384> up_buf{}, down_buf{};
};

}  // namespace

void Server::Impl::apply(const Endpoint& e) {
  std::lock_guard lock(mu);
  if (upstream == e) return;
  log_line(opt, "upstream " + upstream.str() + " -> " + e.str());
  upstream = e;
  ++switches;
}

void Server::Impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (stopping || !acceptor.is_open()) return;
    if (ec) {
      log_line(opt, "accept failed: " + ec.message());
      // Out of descriptors and the like: wait a little instead of spinning.
      auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
      t->async_wait([this, t](boost::system::error_code) { if (!stopping) accept(); });
      return;
    }
    ++accepted;
    std::make_shared<Session>(this, std::move(s))->start(current());
    accept();
  });
}

void Server::Impl::write_own_state(nlohmann::json state) {
  if (opt.state_file.empty()) return;
  state["pid"] = static_cast<int>(getpid());
  state["name"] = opt.name;
  state["listen"] = Endpoint{opt.listen.host, bound_port}.str();
  state["applied"] = current().str();
  if (!opt.log_file.empty()) state["log"] = opt.log_file;
  write_state(opt.state_file, state);
}

// SIGHUP: take the upstream from the state file, confirm with ack = request.
void Server::Impl::do_reload() {
  if (opt.state_file.empty()) return;
  nlohmann::json state;
  try {
    auto s = read_state(opt.state_file);
    if (!s) {
      log_line(opt, "reload: state file " + opt.state_file + " is gone; keeping " + current().str());
      return;
    }
    state = *s;
  } catch (const Error& e) {
    log_line(opt, std::string("reload: ") + e.what());
    return;
  }
  std::string error;
  try {
    auto e = Endpoint::parse(state.value("upstream", ""), "upstream");
    if (e.port == 0) throw Error(Code::invalid_argument, "upstream " + e.str() + " has port 0");
    apply(e);
  } catch (const Error& e) {
    error = e.message();
    log_line(opt, "reload refused: " + error);
  }
  state["error"] = error;
  if (state.contains("request")) state["ack"] = state["request"];
  try {
    write_own_state(state);
  } catch (const Error& e) {
    log_line(opt, std::string("reload: ") + e.what());
  }
}

void Server::Impl::do_stop() {
  if (stopping) return;
  stopping = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  signals.cancel(ignored);
  if (sessions.empty()) return;
  log_line(opt, "stopping: waiting for " + std::to_string(sessions.size()) + " open connection(s)");
  drain_timer.expires_after(opt.drain_timeout);
  drain_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    for (auto* s : std::vector<Session*>(sessions.begin(), sessions.end())) s->close();
  });
}

void Server::Impl::on_session_end() {
  if (stopping && sessions.empty()) drain_timer.cancel();
}

Server::Server(Options options) : impl_(std::make_shared<Impl>(std::move(options))) {
  auto& o = impl_->opt;
  if (o.upstream.port == 0)
    throw Error(Code::invalid_argument, "upstream " + o.upstream.str() + " needs a port");
  impl_->upstream = o.upstream;
  tcp::endpoint ep;
  try {
    ep = to_asio(o.listen);
  } catch (const std::exception&) {
    throw Error(Code::invalid_argument, "listen address " + o.listen.str() + " is not a numeric IP address");
  }
  boost::system::error_code ec;
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw Error(ec == asio::error::address_in_use ? Code::conflict : Code::unavailable,
                "cannot listen on " + o.listen.str() + ": " + ec.message(), {{"listen", o.listen.str()}});
  impl_->bound_port = impl_->acceptor.local_endpoint().port();
  if (!o.state_file.empty()) {
    nlohmann::json state = read_state(o.state_file).value_or(nlohmann::json::object());
    state["upstream"] = o.upstream.str();
    state["started_at"] = utc_now();
    state["error"] = "";
    impl_->write_own_state(state);
  }
}

Server::~Server() {
  if (!impl_) return;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  for (auto* s : std::vector<Session*>(impl_->sessions.begin(), impl_->sessions.end())) s->close();
}

std::uint16_t Server::port() const { return impl_->bound_port; }
Endpoint Server::upstream() const { return impl_->current(); }

Stats Server::stats() const {
  return Stats{impl_->accepted.load(), impl_->upstream_failed.load(), impl_->active.load(), impl_->switches.load()};
}

void Server::run(bool handle_signals) {
  auto* impl = impl_.get();
  std::function<void(boost::system::error_code, int)> on_signal;  // outlives io.run()
  if (handle_signals) {
    impl->signals.add(SIGHUP);
    impl->signals.add(SIGTERM);
    impl->signals.add(SIGINT);
    on_signal = [impl, &on_signal](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        impl->do_reload();
        impl->signals.async_wait(on_signal);
      } else {
        impl->do_stop();
      }
    };
    impl->signals.async_wait(on_signal);
    log_line(impl->opt, "listening on " + Endpoint{impl->opt.listen.host, impl->bound_port}.str() +
                                 ", upstream " + impl->current().str());
  }
  impl->accept();
  impl->io.run();
  // Remove the state file only if it still describes this process.
  if (!impl->opt.state_file.empty()) {
    try {
      auto s = read_state(impl->opt.state_file);
      if (s && s->value("pid", 0) == static_cast<int>(getpid())) fs::remove(impl->opt.state_file);
    } catch (const std::exception&) {
    }
  }
  if (handle_signals) log_line(impl->opt, "stopped");
}

void Server::set_upstream(const Endpoint& upstream) {
  auto impl = impl_;
  asio::post(impl->io, [impl, upstream] { impl->apply(upstream); });
}

void Server::reload() {
  auto impl = impl_;
  asio::post(impl->io, [impl] { impl->do_reload(); });
}

void Server::stop() {
  auto impl = impl_;
  asio::post(impl->io, [impl] { impl->do_stop(); });
}

// ---------------------------------------------------------------- the command

namespace {

std::string default_log_file(const std::string& state_file) {
  fs::path p(state_file);
  return (p.parent_path() / (p.stem().string() + ".log")).string();
}

void write_all(int fd, const std::string& text) {
  std::size_t off = 0;
  while (off < text.size()) {
    auto n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// The daemon (grandchild): detached from the caller's session, terminal and pipes, so it
// outlives the hoist run that started it, even a SIGKILLed one.
[[noreturn]] void run_daemon(Options options, int ready_fd) {
  ::setsid();
  pid_t pid = ::fork();
  if (pid < 0) {
    write_all(ready_fd, std::string("error:internal:fork failed: ") + std::strerror(errno));
    ::_exit(1);
  }
  if (pid > 0) ::_exit(0);
  if (::chdir("/") != 0) {}  // paths are absolute by now
  int null_fd = ::open("/dev/null", O_RDONLY);
  int log_fd = ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (null_fd < 0 || log_fd < 0) {
    write_all(ready_fd, "error:internal:cannot open log file " + options.log_file + ": " + std::strerror(errno));
    ::_exit(1);
  }
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  // Inherited descriptors (the caller's pipes) would keep its readers waiting for EOF.
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != ready_fd) ::close(fd);
  ::signal(SIGPIPE, SIG_IGN);
  int code = 0;
  try {
    Server server(options);
    write_all(ready_fd, "ok\n");
    ::close(ready_fd);
    server.run(true);
  } catch (const Error& e) {
    write_all(ready_fd, "error:" + std::string(to_string(e.code())) + ":" + e.message());
    code = 1;
  } catch (const std::exception& e) {
    write_all(ready_fd, std::string("error:internal:") + e.what());
    code = 1;
  }
  ::_exit(code);
}

}  // namespace

int serve(const Options& given, bool detach) {
  Options options = given;
  if (!options.state_file.empty()) {
    options.state_file = fs::absolute(options.state_file).lexically_normal().string();
    if (auto s = read_state(options.state_file); s && proxy_alive(s->value("pid", 0)))
      throw Error(Code::conflict, "a proxy for " + options.state_file + " is already running (pid " +
                                      std::to_string(s->value("pid", 0)) + ", listening on " +
                                      s->value("listen", "?") + ")");
  }
  if (!detach) {
    ::signal(SIGPIPE, SIG_IGN);
    Server server(options);
    server.run(true);
    return 0;
  }
  if (options.state_file.empty())
    throw Error(Code::invalid_argument, "--detach needs --state FILE (how the proxy is found again)");
  if (options.log_file.empty()) options.log_file = default_log_file(options.state_file);
  options.log_file = fs::absolute(options.log_file).string();
  fs::create_directories(fs::path(options.state_file).parent_path());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(Code::internal, std::string("pipe: ") + std::strerror(errno));
  std::cout.flush();
  std::cerr.flush();
  pid_t child = ::fork();
  if (child < 0) throw Error(Code::internal, std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    ::close(fds[0]);
    run_daemon(options, fds[1]);
  }
  ::close(fds[1]);
  int child_status = 0;
  ::waitpid(child, &child_status, 0);
  std::string answer;
  char buf[512];
  for (;;) {  // EOF once the daemon signalled readiness (and closed its end) or died
    auto n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (!answer.starts_with("ok")) {
    if (answer.starts_with("error:")) {
      auto rest = answer.substr(6);
      auto colon = rest.find(':');
      auto code = code_from_string(rest.substr(0, colon)).value_or(Code::internal);
      throw Error(code, colon == std::string::npos ? rest : rest.substr(colon + 1));
    }
    throw Error(Code::internal, "the proxy daemon exited before it was ready (see " + options.log_file + ")");
  }
  std::cout << status(options.state_file).dump() << std::endl;
  return 0;
}

nlohmann::json switch_upstream(const std::string& state_file, const Endpoint& upstream,
                               std::chrono::milliseconds timeout) {
  if (upstream.port == 0) throw Error(Code::invalid_argument, "upstream " + upstream.str() + " needs a port");
  auto state = read_state(state_file);
  if (!state) throw Error(Code::not_found, "no proxy state file at " + state_file);
  int pid = state->value("pid", 0);
  if (!proxy_alive(pid))
    throw Error(Code::not_found, "the proxy of " + state_file + " (pid " + std::to_string(pid) + ") is not running");
  std::random_device rd;
  std::string token = std::to_string(getpid()) + "-" + std::to_string(rd());
  (*state)["upstream"] = upstream.str();
  (*state)["request"] = token;
  write_state(state_file, *state);
  if (::kill(pid, SIGHUP) != 0)
    throw Error(Code::unavailable, "cannot signal the proxy (pid " + std::to_string(pid) + "): " + std::strerror(errno));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::optional<nlohmann::json> now;
    try {
      now = read_state(state_file);
    } catch (const Error&) {
      continue;  // caught between write and rename: read again
    }
    if (now && now->value("ack", "") == token) {
      auto error = now->value("error", "");
      if (!error.empty()) throw Error(Code::invalid_argument, "the proxy refused the switch: " + error);
      return *now;
    }
    if (!proxy_alive(pid)) throw Error(Code::unavailable, "the proxy (pid " + std::to_string(pid) + ") exited during the switch");
  }
  throw Error(Code::timeout, "the proxy (pid " + std::to_string(pid) + ") did not confirm the switch to " +
                                 upstream.str() + " within " + std::to_string(timeout.count()) + " ms");
}

bool stop(const std::string& state_file, std::chrono::milliseconds timeout) {
  auto state = read_state(state_file);
  if (!state) return false;
  int pid = state->value("pid", 0);
  if (!proxy_alive(pid)) {
    fs::remove(state_file);
    return false;
  }
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (proxy_alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (proxy_alive(pid)) {
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 100 && proxy_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (auto s = read_state(state_file); s && s->value("pid", 0) == pid) fs::remove(state_file);
  return true;
}

nlohmann::json status(const std::string& state_file) {
  auto state = read_state(state_file).value_or(nlohmann::json::object());
  state["running"] = proxy_alive(state.value("pid", 0));
  state["state_file"] = state_file;
  return state;
}

}  // namespace hoist::proxy
