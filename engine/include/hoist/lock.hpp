#pragma once
// A lock file: an exclusive flock(2) on a file that also names its holder. The kernel drops
// the lock when its holder's process dies, so a lock left by a crashed run is free again at
// once; the owner text it wrote stays, so the next holder can say whom it took over from.
// Never blocks: callers retry (the Lua side waits with hoist.sleep between tries).
#include <string>

namespace hoist {

class FileLock {
 public:
  // Tries once to take the lock on `path` (creating it and its folder, mode 0600). On
  // success returns true, writes `owner` into the file and sets *previous to what the file
  // held before: empty after a clean release, else the owner text of a holder that died
  // without releasing. On failure returns false and sets *holder to the current holder's
  // owner text (empty when it has not written it yet).
  bool try_lock(const std::string& path, const std::string& owner, std::string* previous, std::string* holder);
  // Empties the owner text and drops the lock. Idempotent.
  void unlock();
  bool locked() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  FileLock() = default;
  ~FileLock() { unlock(); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace hoist
