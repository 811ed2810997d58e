#pragma once
// The run journal: JSON lines appended and fsynced before and after each mutating step, so a
// later process can tell what a run changed and finish its rollback after a crash.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace hoist {

class Journal {
 public:
  // Opens `path` for appending, creating it and its folders. When the file is new, its
  // folder is fsynced too: an entry must not survive while its file's name is lost.
  explicit Journal(const std::string& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Writes the entry as one line and fsyncs the file before returning.
  void append(const nlohmann::json& entry);
  void close();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// The entries of a journal (or any JSON-lines file). Lines that do not parse (a last line
// cut short by a crash) are skipped and counted in *skipped.
std::vector<nlohmann::json> read_json_lines(const std::string& path, int* skipped = nullptr);

struct RunFolder {
  std::string id;
  std::string dir;
  bool has_journal = false;
  bool has_events = false;
  double mtime = 0;  // unix seconds of the folder
};

// The folders under <state_dir>/runs, newest first (by name: ids start with a UTC stamp).
std::vector<RunFolder> list_run_folders(const std::string& state_dir);

// Writes a whole file durably: a temporary sibling, fsync, rename, fsync of the folder.
// `mode` is the new file's permission bits (before the umask): 0600 for a file holding secrets.
void write_file_durable(const std::string& path, const std::string& content, unsigned mode = 0644);

// fsyncs a folder, so the names created in it survive a crash.
void fsync_dir(const std::string& dir);

// True when a process with this pid exists (it may belong to another user).
bool process_alive(long pid);

}  // namespace hoist
