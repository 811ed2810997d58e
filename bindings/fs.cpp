// hoist.native.fs: files and processes, the few things pipelines and stdlib need: read,
// durable write, mkdir -p, list, exists, remove, realpath, pid alive. Policy (options,
// defaults, which files are private) lives in stdlib/hoist/fs.lua.
#include "bindings/runtime.hpp"

#include <hoist/journal.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <climits>
#include <cstdlib>

namespace hoist::lua {
namespace {

namespace fs = std::filesystem;

std::string check_path(lua_State* L, int index) {
  size_t n;
  const char* s = luaL_checklstring(L, index, &n);
  std::string path(s, n);
  if (path.empty()) throw Error(Code::invalid_argument, "hoist.fs: the path is empty");
  if (path.find('\0') != std::string::npos)
    throw Error(Code::invalid_argument, "hoist.fs: the path holds a NUL byte");
  return path;
}

// text = fs.read_file(path): raises not_found when it does not exist
int l_read_file(lua_State* L) {
  std::string path = check_path(L, 1);
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(Code::invalid_argument, "hoist.fs.read_file: " + path + " is a folder");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path, ec)) throw Error(Code::not_found, "hoist.fs.read_file: no such file: " + path);
    throw Error(Code::forbidden, "hoist.fs.read_file: cannot read " + path);
  }
  std::string text((std::istreambuf_iterator<char>(in)), {});
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

// fs.write_file(path, text, mode): the whole file, durably (temp file, fsync, rename); folders made
int l_write_file(lua_State* L) {
  std::string path = check_path(L, 1);
  size_t n;
  const char* s = luaL_checklstring(L, 2, &n);
  auto mode = static_cast<unsigned>(luaL_checkinteger(L, 3));
  write_file_durable(path, std::string(s, n), mode);
  return 0;
}

// created = fs.mkdir(path, mode): the folder and its parents (mkdir -p)
int l_mkdir(lua_State* L) {
  std::string path = check_path(L, 1);
  auto mode = static_cast<fs::perms>(luaL_checkinteger(L, 2));
  std::error_code ec;
  bool created = fs::create_directories(path, ec);
  if (ec) throw Error(Code::internal, "hoist.fs.mkdir: cannot create " + path + ": " + ec.message());
  if (created) fs::permissions(path, mode, ec);
  lua_pushboolean(L, created);
  return 1;
}

// names = fs.list(path): entry names, sorted ({} when the folder does not exist)
int l_list(lua_State* L) {
  std::string path = check_path(L, 1);
  std::error_code ec;
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(path, ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  lua_createtable(L, static_cast<int>(names.size()), 0);
  for (size_t i = 0; i < names.size(); ++i) {
    lua_pushlstring(L, names[i].data(), names[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// "file" | "directory" | "other" | nil = fs.kind(path)
int l_kind(lua_State* L) {
  std::error_code ec;
  auto st = fs::status(check_path(L, 1), ec);
  if (ec || !fs::exists(st)) return 0;
  lua_pushstring(L, fs::is_regular_file(st) ? "file" : fs::is_directory(st) ? "directory" : "other");
  return 1;
}

// removed = fs.remove(path, recursive): false when there was nothing to remove
int l_remove(lua_State* L) {
  std::string path = check_path(L, 1);
  bool recursive = lua_toboolean(L, 2);
  std::error_code ec;
  std::uintmax_t n = recursive ? fs::remove_all(path, ec) : (fs::remove(path, ec) ? 1 : 0);
  if (ec) throw Error(Code::internal, "hoist.fs.remove: cannot remove " + path + ": " + ec.message());
  lua_pushboolean(L, n > 0);
  return 1;
}

// absolute = fs.realpath(path): raises not_found when it does not exist
int l_realpath(lua_State* L) {
  std::string path = check_path(L, 1);
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) throw Error(Code::not_found, "hoist.fs.realpath: no such file: " + path);
  lua_pushstring(L, buf);
  return 1;
}

// absolute = fs.absolute(path): from the working folder, "." and ".." resolved, symlinks of
// the part that exists resolved (realpath -m)
int l_absolute(lua_State* L) {
  std::string path = check_path(L, 1);
  std::error_code ec;
  auto p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) throw Error(Code::internal, "hoist.fs.absolute: " + path + ": " + ec.message());
  auto s = p.string();
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

// bool = fs.pid_alive(pid): a process with this pid exists and is not a zombie
int l_pid_alive(lua_State* L) {
  lua_pushboolean(L, process_alive(static_cast<long>(luaL_checknumber(L, 1))));
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"read_file", protect<l_read_file>},
    {"write_file", protect<l_write_file>},
    {"mkdir", protect<l_mkdir>},
    {"list", protect<l_list>},
    {"kind", protect<l_kind>},
    {"remove", protect<l_remove>},
    {"realpath", protect<l_realpath>},
    {"absolute", protect<l_absolute>},
    {"pid_alive", protect<l_pid_alive>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_fs(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
