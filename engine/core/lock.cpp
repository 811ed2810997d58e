#include <hoist/error.hpp>
#include <hoist/lock.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace hoist {
namespace {

Error lock_error(const std::string& what, const std::string& path) {
  return Error(Code::internal, what + " " + path + ": " + std::strerror(errno), {{"path", path}});
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  off_t at = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    at += n;
    if (out.size() > 65536) break;  // an owner text is a line; anything longer is not ours
  }
  return out;
}

}  // namespace

bool FileLock::try_lock(const std::string& path, const std::string& owner, std::string* previous,
                        std::string* holder) {
  if (fd_ >= 0) throw Error(Code::invalid_argument, "lock " + path_ + " is already held by this handle");
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) throw Error(Code::internal, "cannot create " + p.parent_path().string() + ": " + ec.message());
  // O_CLOEXEC: a child (the detached proxy above all) must not inherit the lock.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw lock_error("cannot open lock file", path);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    if (holder) *holder = read_all(fd);
    ::close(fd);
    if (err == EWOULDBLOCK) return false;
    errno = err;
    throw lock_error("cannot lock", path);
  }
  if (previous) *previous = read_all(fd);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, owner.data(), owner.size(), 0) != static_cast<ssize_t>(owner.size())) {
    ::close(fd);
    throw lock_error("cannot write the owner of", path);
  }
  fd_ = fd;
  path_ = path;
  return true;
}

void FileLock::unlock() {
  if (fd_ < 0) return;
  // Emptied first: an empty file tells the next holder the last one released it cleanly.
  if (::ftruncate(fd_, 0) != 0) { /* the lock still goes; the next holder reports a takeover */ }
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace hoist
