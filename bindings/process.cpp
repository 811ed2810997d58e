// hoist.native.process: child processes (engine/core/process.cpp) for Lua.
#include "bindings/runtime.hpp"

#include <hoist/process.hpp>

#include <memory>

namespace hoist::lua {
namespace {

std::string type_of(lua_State* L, int index) { return luaL_typename(L, index); }

std::vector<std::string> read_argv(lua_State* L, int t) {
  lua_getfield(L, t, "argv");
  if (!lua_istable(L, -1))
    throw Error(Code::invalid_argument, "exec: option 'argv' must be a list of strings, got " + type_of(L, -1));
  std::vector<std::string> argv;
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      throw Error(Code::invalid_argument,
                  "exec: argument " + std::to_string(i) + " must be a string, got " + type_of(L, -1));
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    argv.emplace_back(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return argv;
}

std::map<std::string, std::string> read_env(lua_State* L, int t) {
  std::map<std::string, std::string> env;
  lua_getfield(L, t, "env");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return env;
  }
  if (!lua_istable(L, -1))
    throw Error(Code::invalid_argument, "exec: option 'env' must be a table of strings, got " + type_of(L, -1));
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      throw Error(Code::invalid_argument, "exec: env keys must be strings, got " + type_of(L, -2));
    std::string key = lua_tostring(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      throw Error(Code::invalid_argument, "exec: env '" + key + "' must be a string, got " + type_of(L, -1));
    size_t len;
    const char* v = lua_tolstring(L, -1, &len);  // a number value is converted in place: fine, not a key
    env[key] = std::string(v, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return env;
}

void push_result(lua_State* L, const ExecResult& r) {
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, r.code);
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, r.signal);
  lua_setfield(L, -2, "signal");
  lua_pushlstring(L, r.out.data(), r.out.size());
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, r.err.data(), r.err.size());
  lua_setfield(L, -2, "stderr");
  lua_pushnumber(L, r.duration);
  lua_setfield(L, -2, "duration");
  lua_pushboolean(L, r.timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushinteger(L, r.pid);
  lua_setfield(L, -2, "pid");
}

// ok, result = process.exec{argv=, env=, clear_env=, cwd=, stdin=, timeout=, stream=, program=}
// result = {code=, signal=, stdout=, stderr=, duration=, timed_out=, pid=}. stream = true
// sends every line to the event log as "exec.line" {program=, stream=} (scrubbed there).
int l_exec(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ExecOptions o;
  o.argv = read_argv(L, 1);
  o.env = read_env(L, 1);
  o.clear_env = opt_bool(L, 1, "clear_env", false);
  o.cwd = opt_string(L, 1, "cwd");
  o.timeout = opt_number(L, 1, "timeout", 0);
  lua_getfield(L, 1, "stdin");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      throw Error(Code::invalid_argument, "exec: option 'stdin' must be a string, got " + type_of(L, -1));
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    o.stdin_data = std::string(s, len);
  }
  lua_pop(L, 1);
  Runtime& rt = Runtime::from(L);
  if (opt_bool(L, 1, "stream", false)) {
    std::string program = opt_string(L, 1, "program", o.argv.empty() ? "" : o.argv[0]);
    EventBus* events = &rt.events();
    // Each line is whole before it is emitted, so a secret the child wrote in two pieces is
    // joined again and EventBus::emit masks it.
    o.on_line = [events, program](std::string_view stream, std::string_view line) {
      events->emit(Event{0, "info", "exec.line", std::string(line),
                         {{"program", program}, {"stream", std::string(stream)}}});
    };
  }
  auto& io = rt.io();
  return suspend(L, [&](Resumer r) -> OperationPtr {
    return exec_async(io, std::move(o), [r](Outcome<ExecResult> out) {
      if (!out.ok()) return r.fail(out.error());
      auto result = std::make_shared<ExecResult>(std::move(out.value()));
      r.ok([result](lua_State* co) {
        push_result(co, *result);
        return 1;
      });
    });
  });
}

// path|nil = process.which(name)
int l_which(lua_State* L) {
  std::string name = luaL_checkstring(L, 1);
  auto path = which(name);
  if (path)
    lua_pushlstring(L, path->data(), path->size());
  else
    lua_pushnil(L);
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"exec", protect<l_exec>},
    {"which", protect<l_which>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_process(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
