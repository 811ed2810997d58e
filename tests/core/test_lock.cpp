// engine/core/lock.cpp: one holder at a time, the holder named in the file, a clean release
// leaves no owner, a holder that died leaves its owner text for the next one to report.
#include <hoist/lock.hpp>

#include <doctest/doctest.h>

#include <filesystem>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {
fs::path temp_dir() {
  char tmpl[] = "/tmp/hoist-lock-XXXXXX";
  return fs::path(mkdtemp(tmpl));
}
}  // namespace

TEST_CASE("lock: one holder at a time; the second taker learns who holds it") {
  auto dir = temp_dir();
  auto path = (dir / "locks" / "local--app.lock").string();
  hoist::FileLock a, b;
  std::string previous = "x", holder;
  CHECK(a.try_lock(path, R"({"run":"r1"})", &previous, &holder));
  CHECK(previous.empty());
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(b.try_lock(path, R"({"run":"r2"})", &previous, &holder));
  CHECK(holder == R"({"run":"r1"})");
  CHECK_FALSE(b.locked());
  a.unlock();
  CHECK(b.try_lock(path, R"({"run":"r2"})", &previous, &holder));
  CHECK(previous.empty());  // a clean release empties the file
  b.unlock();
  fs::remove_all(dir);
}

TEST_CASE("lock: a holder that exits without unlocking frees the lock and leaves its name") {
  auto dir = temp_dir();
  auto path = (dir / "app.lock").string();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    hoist::FileLock held;
    std::string p, h;
    _exit(held.try_lock(path, R"({"run":"dead"})", &p, &h) ? 0 : 1);  // no unlock: the kernel drops it
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  hoist::FileLock next;
  std::string previous, holder;
  CHECK(next.try_lock(path, R"({"run":"next"})", &previous, &holder));
  CHECK(previous == R"({"run":"dead"})");
  fs::remove_all(dir);
}
