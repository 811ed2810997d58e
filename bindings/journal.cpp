// hoist.native.journal: the run journal (JSON lines, fsynced) and the run folders. Files in
// general are hoist.native.fs (bindings/fs.cpp).
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <hoist/journal.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>

#include <unistd.h>

namespace hoist::lua {
namespace {

const char* const kJournalMeta = "hoist.Journal";

struct JournalBox {
  Journal* journal;
};

Journal& check_journal(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  if (!box->journal) throw Error(Code::invalid_argument, "journal is closed");
  return *box->journal;
}

// journal = journal.open(path): creates the file (and folders), appends from then on
int l_open(lua_State* L) {
  std::string path = luaL_checkstring(L, 1);
  auto owned = std::make_unique<Journal>(path);
  auto* box = static_cast<JournalBox*>(lua_newuserdata(L, sizeof(JournalBox)));
  box->journal = owned.release();
  luaL_getmetatable(L, kJournalMeta);
  lua_setmetatable(L, -2);
  return 1;
}

// journal:append(entry): one JSON line, scrubbed, fsynced before returning
int l_append(lua_State* L) {
  Journal& j = check_journal(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  nlohmann::json entry = to_json(L, 2);
  const Secrets& secrets = Runtime::from(L).secrets();
  if (!secrets.empty()) scrub_json(secrets, entry);  // written out like a log
  j.append(entry);
  return 0;
}

// journal:close()
int l_close(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  delete box->journal;
  box->journal = nullptr;
  return 0;
}

int l_tostring(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  std::string s = "hoist.Journal(" + (box->journal ? box->journal->path() : std::string("closed")) + ")";
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

// entries, skipped = journal.read(path): raises not_found when the file is missing
int l_read(lua_State* L) {
  std::string path = luaL_checkstring(L, 1);
  int skipped = 0;
  auto entries = read_json_lines(path, &skipped);
  lua_createtable(L, static_cast<int>(entries.size()), 0);
  for (size_t i = 0; i < entries.size(); ++i) {
    push_json(L, entries[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_pushinteger(L, skipped);
  return 2;
}

// runs = journal.list_runs(state_dir): {{id=, dir=, journal=bool, events=bool, mtime=}...}, newest first
int l_list_runs(lua_State* L) {
  auto runs = list_run_folders(luaL_checkstring(L, 1));
  lua_createtable(L, static_cast<int>(runs.size()), 0);
  int i = 0;
  for (auto& r : runs) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, r.id.c_str());
    lua_setfield(L, -2, "id");
    lua_pushstring(L, r.dir.c_str());
    lua_setfield(L, -2, "dir");
    lua_pushboolean(L, r.has_journal);
    lua_setfield(L, -2, "journal");
    lua_pushboolean(L, r.has_events);
    lua_setfield(L, -2, "events");
    lua_pushnumber(L, r.mtime);
    lua_setfield(L, -2, "mtime");
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

// {pid=, exe=, cwd=} = journal.self(): this process, for run.start and for tests that
// start the engine again
int l_self(lua_State* L) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, ::getpid());
  lua_setfield(L, -2, "pid");
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  lua_pushstring(L, exe.c_str());
  lua_setfield(L, -2, "exe");
  auto cwd = std::filesystem::current_path(ec).string();
  lua_pushstring(L, cwd.c_str());
  lua_setfield(L, -2, "cwd");
  return 1;
}

const luaL_Reg kMethods[] = {
    {"append", protect<l_append>},
    {"close", protect<l_close>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"open", protect<l_open>},
    {"read", protect<l_read>},
    {"list_runs", protect<l_list_runs>},
    {"self", protect<l_self>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_journal(lua_State* L) {
  return open_module_with_class(L, kJournalMeta, kMethods, protect<l_close>, protect<l_tostring>, kFunctions);
}

}  // namespace hoist::lua
