#pragma once
// Shared by the libFuzzer targets: a property that does not hold aborts with the reason, so
// libFuzzer keeps the input as a crash file.
#include <hoist/error.hpp>

#include <lua.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace hoist::fuzz {

[[noreturn]] inline void fail(const std::string& why) {
  std::fprintf(stderr, "PROPERTY FAILED: %s\n", why.c_str());
  std::abort();
}

inline void check(bool ok, const std::string& why) {
  if (!ok) fail(why);
}

// A parser may refuse its input, but only as invalid_argument: any other code (internal is
// what a stray std::exception becomes) is a finding.
inline void expect_invalid_argument(const Error& e, std::string_view what) {
  if (e.code() != Code::invalid_argument)
    fail(std::string(what) + " raised " + std::string(to_string(e.code())) + ": " + e.message());
}

// A fresh Lua state with the standard libraries (the JSON bridge needs ffi), closed on exit.
struct LuaState {
  lua_State* L = luaL_newstate();
  LuaState() { luaL_openlibs(L); }
  ~LuaState() { lua_close(L); }
  LuaState(const LuaState&) = delete;
  LuaState& operator=(const LuaState&) = delete;
};

// The `code` field of the error value on top of the stack ("" when it is not an error table).
inline std::string error_code(lua_State* L) {
  if (!lua_istable(L, -1)) return "";
  lua_getfield(L, -1, "code");
  std::string code = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return code;
}

inline std::string error_text(lua_State* L) {
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "message");
    std::string m = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
    lua_pop(L, 1);
    return error_code(L) + ": " + m;
  }
  return lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1);
}

}  // namespace hoist::fuzz
