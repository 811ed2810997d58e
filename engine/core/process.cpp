// Child processes with Boost.Process v2 on the engine's io_context.
//
// How the child is watched (Boost 1.81 on Linux): basic_process_handle uses a pidfd
// (pidfd_open) registered with the reactor and then waitpid(pid): no SIGCHLD handler, no
// wait(-1), so one exec never reaps another's child. If pidfd_open is refused (an old kernel,
// a seccomp profile), the wait fails with bad_descriptor and we poll waitpid(pid, WNOHANG).
#include <hoist/process.hpp>

#include "core/child_signals.hpp"

// Boost 1.81 with BOOST_PROCESS_USE_STD_FS names boost::optional without including it.
#include <boost/optional.hpp>
// Header-only mode (the default): the .ipp parts come with the headers. src.hpp is only for
// BOOST_PROCESS_V2_SEPARATE_COMPILATION builds and refuses to compile without it.
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace hoist {
namespace {

namespace asio = boost::asio;
namespace bp = boost::process::v2;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using Process = bp::basic_process<asio::io_context::executor_type>;

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

bool is_executable_file(const std::string& path, bool* exists = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (exists) *exists = true;
  return ::access(path.c_str(), X_OK) == 0;
}

struct Lookup {
  std::optional<std::string> path;
  bool denied = false;  // a file of that name exists but may not be executed
};

Lookup lookup(const std::string& name, const std::string& path_value) {
  Lookup r;
  if (name.empty()) return r;
  if (name.find('/') != std::string::npos) {
    bool exists = false;
    if (is_executable_file(name, &exists)) r.path = name;
    r.denied = exists && !r.path;
    return r;
  }
  std::string_view rest = path_value;
  while (true) {
    auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";  // an empty PATH entry means the working directory
    std::string candidate = dir + "/" + name;
    bool exists = false;
    if (is_executable_file(candidate, &exists)) {
      r.path = candidate;
      return r;
    }
    r.denied = r.denied || exists;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return r;
}

// A write to a pipe whose reader has exited (a child that ignores its stdin) must fail with
// EPIPE, not kill the engine. Only a default disposition is changed: a host's own handler wins.
void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
  });
}

// Runs in the child between fork and exec: async-signal-safe calls only, no allocation.
struct ChildSetup {
  const char* cwd = nullptr;

  error_code on_exec_setup(bp::posix::default_launcher& launcher, const std::filesystem::path&,
                           const char* const*) {
    // Own process group: a timeout or cancel signals the child and everything it started.
    if (::setpgid(0, 0) == -1) return error_code(errno, boost::system::system_category());
    if (cwd && ::chdir(cwd) == -1) return error_code(errno, boost::system::system_category());
    // Ignored signals and the signal mask survive exec; the child starts with defaults.
    detail::reset_child_signals();
    // Boost 1.81's close_all() (Linux close_range branch) compares each whitelist entry with
    // itself, so descriptors between 3 and its error pipe stay open in the child (a run's
    // events.jsonl, a socket). Close every gap here; stdio has been dup2'ed by now.
    auto& keep = launcher.fd_whitelist;
    std::sort(keep.begin(), keep.end());
    unsigned lo = 3;
    for (int fd : keep) {
      if (fd < 0 || static_cast<unsigned>(fd) < lo) continue;
      if (static_cast<unsigned>(fd) > lo) ::close_range(lo, fd - 1, 0);
      lo = fd + 1;
    }
    ::close_range(lo, ~0U, 0);
    return {};
  }
};

class ExecState : public std::enable_shared_from_this<ExecState> {
 public:
  ExecState(asio::io_context& io, ExecOptions options, Completion<ExecResult> done)
      : io_(io), opts_(std::move(options)), done_(std::move(done)), out_(io, "stdout"), err_(io, "stderr"), in_(io),
        timer_(io), poll_(io), start_(Clock::now()) {}

  // Torn down with the loop while the child may still run (the engine is going away): leave
  // nothing behind.
  ~ExecState() {
    if (pid_ > 0 && (!exited_ || !out_.eof || !err_.eof)) kill_group(SIGKILL);
  }

  // Throws hoist::Error when the child cannot be started.
  void start();
  void cancel();

 private:
  struct Stream {
    explicit Stream(asio::io_context& io, const char* name) : pipe(io), name(name) {}
    asio::readable_pipe pipe;
    const char* name;
    std::array<char, 64 * 1024> buf;
    std::string* sink = nullptr;  // result.out or result.err
    std::string partial;          // bytes after the last '\n' (with on_line only)
    bool eof = false;
  };

  void read(Stream& s);
  void on_data(Stream& s, const char* data, std::size_t n);
  void wait();
  void poll_wait();
  void on_exit(int status);
  void on_timeout();
  void kill_group(int sig);
  void maybe_finish();
  void complete(Outcome<ExecResult> outcome);

  asio::io_context& io_;
  ExecOptions opts_;
  Completion<ExecResult> done_;
  Stream out_, err_;
  asio::writable_pipe in_;
  std::optional<Process> proc_;
  asio::steady_timer timer_;  // timeout, then the grace before SIGKILL
  asio::steady_timer poll_;   // waitpid polling when pidfd is unavailable
  Clock::time_point start_;
  ExecResult result_;
  pid_t pid_ = 0;
  bool exited_ = false;
  bool finished_ = false;  // the completion has run (result or cancelled)
  bool term_sent_ = false;
};

// ---------------------------------------------------------------- launching

std::vector<std::string> build_env(const ExecOptions& o) {
  std::map<std::string, std::string> env;
  if (!o.clear_env)
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string_view::npos) env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  for (auto& [k, v] : o.env) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

void check_options(const ExecOptions& o) {
  if (o.argv.empty() || o.argv[0].empty()) throw Error(Code::invalid_argument, "exec: argv is empty");
  for (auto& a : o.argv)
    if (a.find('\0') != std::string::npos) throw Error(Code::invalid_argument, "exec: an argv entry holds a NUL byte");
  for (auto& [k, v] : o.env)
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos)
      throw Error(Code::invalid_argument, "exec: bad env entry '" + k + "'");
  if (o.timeout < 0) throw Error(Code::invalid_argument, "exec: timeout must be >= 0");
  if (!o.cwd.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(o.cwd, ec))
      throw Error(Code::invalid_argument, "exec: cwd '" + o.cwd + "' is not a directory");
  }
}

std::string find_program(const ExecOptions& o, const std::vector<std::string>& env) {
  const std::string& name = o.argv[0];
  std::string path_value = kDefaultPath;
  for (auto& kv : env)
    if (kv.starts_with("PATH=")) path_value = kv.substr(5);
  std::string target = name;
  // A relative path with a '/' is relative to the child's cwd, as after chdir + execv.
  if (name.find('/') != std::string::npos && name[0] != '/' && !o.cwd.empty()) target = o.cwd + "/" + name;
  Lookup found = lookup(target, path_value);
  if (found.path) return *found.path;
  nlohmann::json details = {{"program", name}};
  if (found.denied)
    throw Error(Code::tool_missing, "cannot run '" + name + "': permission denied", details);
  if (name.find('/') != std::string::npos)
    throw Error(Code::tool_missing, "cannot run '" + name + "': no such file", details);
  details["path"] = path_value;
  throw Error(Code::tool_missing, "cannot run '" + name + "': not found on PATH", details);
}

Error launch_error(const std::string& name, const error_code& ec) {
  nlohmann::json details = {{"program", name}, {"errno", ec.value()}, {"reason", ec.message()}};
  switch (ec.value()) {
    case ENOENT: return Error(Code::tool_missing, "cannot run '" + name + "': no such file", details);
    case EACCES:
    case EPERM: return Error(Code::tool_missing, "cannot run '" + name + "': permission denied", details);
    case ENOEXEC: return Error(Code::tool_missing, "cannot run '" + name + "': not an executable format", details);
    default: return Error(Code::internal, "cannot start '" + name + "': " + ec.message(), details);
  }
}

void ExecState::start() {
  check_options(opts_);
  ignore_sigpipe_once();
  auto env = build_env(opts_);
  std::string exe = find_program(opts_, env);
  std::vector<const char*> envp;
  for (auto& kv : env) envp.push_back(kv.c_str());
  envp.push_back(nullptr);
  std::vector<const char*> argv;
  for (auto& a : opts_.argv) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  const char** argvp = argv.data();  // argv[0] stays as given, like execvp

  bp::posix::default_launcher launcher;
  launcher.env = envp.data();
  ChildSetup setup{opts_.cwd.empty() ? nullptr : opts_.cwd.c_str()};
  error_code ec;
  {
    // The bindings own the child's ends of the pipes; they close when this scope ends,
    // so EOF arrives once the child (and whatever inherited them) is gone.
    bp::process_stdio stdio{opts_.stdin_data ? bp::detail::process_input_binding(in_)
                                             : bp::detail::process_input_binding(nullptr),
                            out_.pipe, err_.pipe};
    proc_.emplace(launcher(io_.get_executor(), ec, std::filesystem::path(exe), argvp, stdio, setup));
  }
  if (ec) throw launch_error(opts_.argv[0], ec);
  pid_ = launcher.pid;
  result_.pid = pid_;
  out_.sink = &result_.out;
  err_.sink = &result_.err;

  read(out_);
  read(err_);
  wait();
  if (opts_.stdin_data) {
    auto self = shared_from_this();
    asio::async_write(in_, asio::buffer(*opts_.stdin_data), [self](error_code, std::size_t) {
      error_code ignored;
      self->in_.close(ignored);  // EOF for the child; EPIPE (it did not read) is fine
    });
  }
  if (opts_.timeout > 0) {
    timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.timeout)));
    timer_.async_wait([self = shared_from_this()](error_code e) {
      if (!e) self->on_timeout();
    });
  }
}

// ---------------------------------------------------------------- output

void ExecState::read(Stream& s) {
  s.pipe.async_read_some(asio::buffer(s.buf), [self = shared_from_this(), &s](error_code ec, std::size_t n) {
    if (n) self->on_data(s, s.buf.data(), n);
    if (ec) {  // eof, or the pipe was closed
      s.eof = true;
      if (!s.partial.empty() && self->opts_.on_line && !self->finished_)
        self->opts_.on_line(s.name, std::exchange(s.partial, {}));
      self->maybe_finish();
      return;
    }
    self->read(s);
  });
}

void ExecState::on_data(Stream& s, const char* data, std::size_t n) {
  if (finished_) return;  // cancelled: drain the pipe until the child is gone
  s.sink->append(data, n);
  if (!opts_.on_line) return;
  // Lines are assembled from raw bytes: a line written in several pieces is delivered whole.
  std::size_t scan = s.partial.size();
  s.partial.append(data, n);
  std::size_t begin = 0;
  for (std::size_t nl; (nl = s.partial.find('\n', scan)) != std::string::npos; scan = begin = nl + 1) {
    std::size_t end = nl > begin && s.partial[nl - 1] == '\r' ? nl - 1 : nl;
    opts_.on_line(s.name, std::string_view(s.partial).substr(begin, end - begin));
    if (finished_) return;  // the callback cancelled us
  }
  s.partial.erase(0, begin);
}

// ---------------------------------------------------------------- exit, timeout, cancel

void ExecState::wait() {
  proc_->async_wait([self = shared_from_this()](error_code ec, int) {
    if (ec == asio::error::bad_descriptor) return self->poll_wait();  // no pidfd: poll
    if (ec) return self->on_exit(-1);  // ECHILD: someone else reaped it (SIGCHLD ignored)
    self->on_exit(self->proc_->native_exit_code());
  });
}

void ExecState::poll_wait() {
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) return on_exit(status);
  if (r == -1 && errno != EINTR) return on_exit(-1);
  poll_.expires_after(std::chrono::milliseconds(20));
  poll_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec) self->poll_wait();
  });
}

void ExecState::on_exit(int status) {
  exited_ = true;
  // Reaped: drop the handle so its destructor cannot signal a recycled pid.
  if (proc_) proc_->detach();
  if (status == -1) {
    result_.code = -1;
  } else if (WIFSIGNALED(status)) {
    result_.signal = WTERMSIG(status);
    result_.code = 128 + result_.signal;
  } else {
    result_.code = WEXITSTATUS(status);
  }
  maybe_finish();
}

void ExecState::kill_group(int sig) {
  if (pid_ <= 0) return;
  ::kill(-pid_, sig);
  if (!exited_) ::kill(pid_, sig);  // in case it left its group (setsid)
}

void ExecState::on_timeout() {
  if (finished_) return;
  if (!term_sent_) {
    result_.timed_out = true;
    term_sent_ = true;
    kill_group(SIGTERM);
    timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.kill_grace)));
    timer_.async_wait([self = shared_from_this()](error_code e) {
      if (!e) self->on_timeout();
    });
  } else {
    kill_group(SIGKILL);
  }
}

void ExecState::maybe_finish() {
  if (finished_ || !exited_ || !out_.eof || !err_.eof) return;
  if (result_.timed_out) result_.code = 124;
  result_.duration = std::chrono::duration<double>(Clock::now() - start_).count();
  complete(std::move(result_));
}

void ExecState::complete(Outcome<ExecResult> outcome) {
  finished_ = true;
  timer_.cancel();
  error_code ignored;
  in_.close(ignored);
  auto done = std::exchange(done_, nullptr);
  opts_.on_line = nullptr;  // releases what the callback holds
  if (done) asio::post(io_, [done = std::move(done), outcome = std::move(outcome)]() mutable { done(std::move(outcome)); });
}

void ExecState::cancel() {
  if (finished_) return;
  kill_group(SIGKILL);
  // Reading and waiting go on until the child is reaped; the caller is told now.
  complete(Error(Code::cancelled, "exec of '" + opts_.argv[0] + "' cancelled"));
}

class ExecOperation : public Operation {
 public:
  explicit ExecOperation(std::weak_ptr<ExecState> state) : state_(std::move(state)) {}
  void cancel() override {
    if (auto s = state_.lock()) s->cancel();
  }

 private:
  std::weak_ptr<ExecState> state_;
};

}  // namespace

OperationPtr exec_async(asio::io_context& io, ExecOptions options, Completion<ExecResult> done) {
  auto state = std::make_shared<ExecState>(io, std::move(options), done);
  try {
    state->start();
  } catch (const Error& e) {
    asio::post(io, [done, e] { done(e); });
    return std::make_shared<FunctionOperation>([] {});
  } catch (const std::exception& e) {
    asio::post(io, [done, msg = std::string(e.what())] { done(Error(Code::internal, "exec: " + msg)); });
    return std::make_shared<FunctionOperation>([] {});
  }
  return std::make_shared<ExecOperation>(state);
}

std::optional<std::string> which(const std::string& name, const std::string& path) {
  std::string value = path;
  if (value.empty()) {
    const char* p = std::getenv("PATH");
    value = p ? p : kDefaultPath;
  }
  return lookup(name, value).path;
}

}  // namespace hoist
