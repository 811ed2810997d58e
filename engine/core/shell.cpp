// system() with its output scrubbed: Lua's os.execute runs a shell whose stdout and stderr
// would otherwise reach the terminal (and a CI log) straight from the child, past every mask.
#include <hoist/shell.hpp>

#include "core/child_signals.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hoist {
namespace {

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our own stdout is gone: the child's output has nowhere to go
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

int system_scrubbed(const std::string& command, const std::shared_ptr<const Secrets>& secrets) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return -1;
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return -1;
  }
  std::fflush(nullptr);  // what the script wrote before comes first
  pid_t pid = ::fork();
  if (pid == 0) {
    // async-signal-safe calls only (curl's resolver threads may hold locks)
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    // as system() leaves them, whatever the engine set: the shell starts with defaults
    detail::reset_child_signals();
    ::close_range(3, ~0U, 0);  // the run's files and sockets stay ours
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    return -1;
  }
  // Each stream through its own scrubber, so a secret the child writes in pieces is caught.
  // system() returns when the shell exits, even when a job it left in the background keeps
  // the output open: so does this, after reading what is there (that job then gets EPIPE).
  StreamScrubber scrub_out(secrets), scrub_err(secrets);
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  StreamScrubber* scrubbers[2] = {&scrub_out, &scrub_err};
  const int targets[2] = {STDOUT_FILENO, STDERR_FILENO};
  for (auto& p : fds) ::fcntl(p.fd, F_SETFL, ::fcntl(p.fd, F_GETFL) | O_NONBLOCK);
  auto close_stream = [&](int i) {
    write_all(targets[i], scrubbers[i]->finish());
    ::close(fds[i].fd);
    fds[i].fd = -1;
  };
  // Reads what stream i holds now; closes it at its end.
  auto drain = [&](int i) {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        write_all(targets[i], scrubbers[i]->feed(std::string_view(buf, static_cast<std::size_t>(n))));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      close_stream(i);
      return;
    }
  };
  int status = 0;
  bool exited = false;
  while (!exited && (fds[0].fd >= 0 || fds[1].fd >= 0)) {
    int r = ::poll(fds, 2, 50);
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i)
      if (fds[i].fd >= 0 && fds[i].revents != 0) drain(i);
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w < 0 && errno != EINTR) status = -1;  // reaped by someone else: the status is lost
    exited = w == pid || (w < 0 && errno != EINTR);
  }
  for (int i = 0; i < 2; ++i)
    if (fds[i].fd >= 0) {
      drain(i);
      if (fds[i].fd >= 0) close_stream(i);
    }
  while (!exited) {
    pid_t w = ::waitpid(pid, &status, 0);
    if (w == pid) break;
    if (errno != EINTR) return -1;
  }
  return status;
}

}  // namespace hoist
