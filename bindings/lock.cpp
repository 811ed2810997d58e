// hoist.native.lock: lock files (engine/core/lock.cpp). One try never blocks the loop; the
// waiting, its messages and its timeout live in stdlib/hoist/targets/lock.lua.
#include "bindings/runtime.hpp"

#include <hoist/lock.hpp>

#include <memory>
#include <string>

namespace hoist::lua {
namespace {

const char* const kLockMeta = "hoist.Lock";

struct LockBox {
  FileLock* lock;
};

LockBox* check_box(lua_State* L) { return static_cast<LockBox*>(luaL_checkudata(L, 1, kLockMeta)); }

// lock, previous = lock.try(path, owner)  taken: previous is the owner text a dead holder
//                                         left ("" after a clean release)
// nil, holder = lock.try(path, owner)     held elsewhere: holder is its owner text
int l_try(lua_State* L) {
  std::string path = luaL_checkstring(L, 1);
  size_t n;
  const char* owner = luaL_checklstring(L, 2, &n);
  auto lock = std::make_unique<FileLock>();
  std::string previous, holder;
  if (!lock->try_lock(path, std::string(owner, n), &previous, &holder)) {
    lua_pushnil(L);
    lua_pushlstring(L, holder.data(), holder.size());
    return 2;
  }
  auto* box = static_cast<LockBox*>(lua_newuserdata(L, sizeof(LockBox)));
  box->lock = lock.release();
  luaL_getmetatable(L, kLockMeta);
  lua_setmetatable(L, -2);
  lua_pushlstring(L, previous.data(), previous.size());
  return 2;
}

// lock:unlock()  idempotent; also done by __gc
int l_unlock(lua_State* L) {
  auto* box = check_box(L);
  delete box->lock;  // unlocks
  box->lock = nullptr;
  return 0;
}

// bool = lock:held()
int l_held(lua_State* L) {
  auto* box = check_box(L);
  lua_pushboolean(L, box->lock && box->lock->locked());
  return 1;
}

int l_tostring(lua_State* L) {
  auto* box = check_box(L);
  std::string s = "hoist.Lock(" + (box->lock ? box->lock->path() : std::string("released")) + ")";
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

const luaL_Reg kMethods[] = {
    {"unlock", protect<l_unlock>},
    {"close", protect<l_unlock>},
    {"held", protect<l_held>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"try", protect<l_try>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_lock(lua_State* L) {
  return open_module_with_class(L, kLockMeta, kMethods, protect<l_unlock>, protect<l_tostring>, kFunctions);
}

}  // namespace hoist::lua
