#include <hoist/error.hpp>
#include <hoist/journal.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hoist {
namespace fs = std::filesystem;

namespace {

Error io_error(const std::string& what, const std::string& path) {
  return Error(Code::internal, what + " " + path + ": " + std::strerror(errno), {{"path", path}});
}

void write_all(int fd, const std::string& data, const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error("cannot write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw io_error("cannot open folder", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 && errno != EINVAL) throw io_error("cannot fsync folder", dir);
}

Journal::Journal(const std::string& path) : path_(path) {
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (ec) throw Error(Code::internal, "cannot create " + p.parent_path().string() + ": " + ec.message());
  bool existed = fs::exists(p, ec);
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw io_error("cannot open journal", path);
  if (!existed) {
    ::fsync(fd_);
    // The run folder itself is usually new too: its name lives in the folder above.
    auto dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    fsync_dir(dir.string());
    if (dir.has_parent_path()) fsync_dir(dir.parent_path().string());
  }
}

Journal::~Journal() { close(); }

void Journal::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Journal::append(const nlohmann::json& entry) {
  if (fd_ < 0) throw Error(Code::invalid_argument, "journal " + path_ + " is closed");
  // One write() of the whole line: O_APPEND keeps concurrent writers' lines whole.
  write_all(fd_, dump(entry) + "\n", path_);
  if (::fsync(fd_) != 0) throw io_error("cannot fsync journal", path_);
}

std::vector<nlohmann::json> read_json_lines(const std::string& path, int* skipped) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Code::not_found, "no such file: " + path, {{"path", path}});
  std::vector<nlohmann::json> out;
  int bad = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error&) {
      ++bad;
    }
  }
  if (skipped) *skipped = bad;
  return out;
}

std::vector<RunFolder> list_run_folders(const std::string& state_dir) {
  std::vector<RunFolder> out;
  fs::path root = fs::path(state_dir) / "runs";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory(ec)) continue;
    RunFolder r;
    r.id = entry.path().filename().string();
    r.dir = entry.path().string();
    r.has_journal = fs::exists(entry.path() / "journal.jsonl", ec);
    r.has_events = fs::exists(entry.path() / "events.jsonl", ec);
    struct stat st{};
    if (::stat(r.dir.c_str(), &st) == 0) r.mtime = static_cast<double>(st.st_mtime);
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const RunFolder& a, const RunFolder& b) { return a.id > b.id; });
  return out;
}

void write_file_durable(const std::string& path, const std::string& content, unsigned mode) {
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  std::string tmp = path + ".tmp" + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // a leftover of a crash keeps its old mode: start afresh
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) throw io_error("cannot create", tmp);
  try {
    write_all(fd, content, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw io_error("cannot write", path);
  }
  fsync_dir(p.has_parent_path() ? p.parent_path().string() : ".");
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  // A zombie (killed, not yet reaped by its parent) still answers kill(0): look at its state.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  auto close_paren = text.rfind(") ");
  if (close_paren != std::string::npos && close_paren + 2 < text.size())
    return text[close_paren + 2] != 'Z' && text[close_paren + 2] != 'X';
  return true;
}

}  // namespace hoist
