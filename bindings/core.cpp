// hoist.native.core: tasks, sleep, log, secrets, errors, run context.
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <boost/asio/steady_timer.hpp>

#include <hoist/base64.hpp>
#include <hoist/shell.hpp>
#include <hoist/version.hpp>

#include <chrono>

namespace hoist::lua {
namespace {

const char* const kTaskMeta = "hoist.Task";

struct TaskRef {
  std::uint64_t id;
};

std::uint64_t check_task(lua_State* L, int index) {
  return static_cast<TaskRef*>(luaL_checkudata(L, index, kTaskMeta))->id;
}

// ok, ... = core.sleep(seconds)
int l_sleep(lua_State* L) {
  double seconds = luaL_checknumber(L, 1);
  if (seconds < 0) throw Error(Code::invalid_argument, "sleep: seconds must be >= 0");
  auto& io = Runtime::from(L).io();
  return suspend(L, [&](Resumer r) -> OperationPtr {
    auto timer = std::make_shared<boost::asio::steady_timer>(io);
    timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds)));
    timer->async_wait([r, timer](boost::system::error_code ec) {
      if (!ec) r.ok([](lua_State*) { return 0; });
    });
    return std::make_shared<FunctionOperation>([timer] { timer->cancel(); });
  });
}

// task = core.spawn(fn, ...)
int l_spawn(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  Runtime& rt = Runtime::from(L);
  auto id = rt.spawn(L, nargs);
  auto* ud = static_cast<TaskRef*>(lua_newuserdata(L, sizeof(TaskRef)));
  ud->id = id;
  luaL_getmetatable(L, kTaskMeta);
  lua_setmetatable(L, -2);
  return 1;
}

// ok, child_ok, results_or_error = task:join(shield?): waits for the task. ok is false
// only when the waiting fiber itself was cancelled; child_ok tells how the task ended
// (results as {n=, ...}, or its error). shield = true waits even in a cancelled fiber,
// so a group can let its children stop before it unwinds.
int l_task_join(lua_State* L) {
  auto id = check_task(L, 1);
  bool shield = lua_toboolean(L, 2);
  Runtime& rt = Runtime::from(L);
  Fiber* f = rt.fiber(id);
  if (!f) throw Error(Code::internal, "task record is gone");
  if (rt.fiber_of(L) == f) throw Error(Code::invalid_argument, "a task cannot wait for itself");
  if (f->state == Fiber::State::done) {
    lua_pushboolean(L, 1);
    lua_pushboolean(L, !f->failed);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->failed ? f->error_ref : f->results_ref);
    return 3;
  }
  return suspend(L, [&](Resumer r) -> OperationPtr {
    static std::uint64_t next_token = 1;
    auto token = next_token++;
    f->waiters.emplace_back(token, r);
    return std::make_shared<FunctionOperation>([&rt, id, token] {
      if (Fiber* g = rt.fiber(id))
        std::erase_if(g->waiters, [token](auto& w) { return w.first == token; });
    });
  }, shield);
}

// task:cancel()
int l_task_cancel(lua_State* L) {
  Runtime::from(L).cancel(check_task(L, 1));
  return 0;
}

// "running" | "done" | "failed" | "cancelled" = task:status()
int l_task_status(lua_State* L) {
  Fiber* f = Runtime::from(L).fiber(check_task(L, 1));
  const char* s = !f ? "done" : f->state != Fiber::State::done ? "running"
                  : !f->failed ? "done" : f->cancelled ? "cancelled" : "failed";
  lua_pushstring(L, s);
  return 1;
}

int l_task_gc(lua_State* L) {
  Runtime::from(L).release(check_task(L, 1));
  return 0;
}

int l_task_tostring(lua_State* L) {
  lua_pushfstring(L, "hoist.Task(%d)", static_cast<int>(check_task(L, 1)));
  return 1;
}

// core.log(level, message, fields?)
int l_log(lua_State* L) {
  std::string level = luaL_checkstring(L, 1);
  size_t n;
  const char* msg = luaL_checklstring(L, 2, &n);
  nlohmann::json fields = lua_istable(L, 3) ? to_json(L, 3) : nlohmann::json::object();
  std::string kind = luaL_optstring(L, 4, "log");
  Runtime::from(L).events().emit(Event{0, level, kind, std::string(msg, n), std::move(fields)});
  return 0;
}

// value = core.secret(value): registers it for scrubbing and returns it unchanged
int l_secret(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  Runtime::from(L).secrets().add(std::string_view(s, n), true);  // too short to mask: refused
  lua_settop(L, 1);
  return 1;
}

// text = core.scrub(text)
int l_scrub(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  auto out = Runtime::from(L).secrets().scrub(std::string_view(s, n));
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// status = core.execute(command): os.execute's wait status, the shell's output scrubbed
int l_execute(lua_State* L) {
  int status = system_scrubbed(luaL_checkstring(L, 1), Runtime::from(L).events().secrets());
  lua_pushinteger(L, status);
  return 1;
}

// bytes = core.base64_decode(text, what): invalid_argument "<what> is not valid base64"
int l_base64_decode(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  std::string out = base64_decode(std::string_view(s, n), luaL_optstring(L, 2, "the text"));
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// text = core.base64_encode(bytes): standard base64, padded (Basic credentials)
int l_base64_encode(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  std::string out = base64_encode(std::string_view(s, n));
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// err = core.new_error{code=, message=, details=, retryable=}
int l_new_error(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  std::string code = opt_string(L, 1, "code", "internal");
  auto c = code_from_string(code);
  if (!c) throw Error(Code::invalid_argument, "hoist.error: unknown error code '" + code + "'");
  std::string message = opt_string(L, 1, "message", "");
  lua_getfield(L, 1, "retryable");
  bool retryable = lua_isnil(L, -1) ? default_retryable(*c) : lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "details");
  nlohmann::json details = lua_istable(L, -1) ? to_json(L, -1) : nlohmann::json::object();
  lua_pop(L, 1);
  push_error(L, Error(*c, message, retryable, details));
  return 1;
}

// bool = core.is_error(value)
int l_is_error(lua_State* L) {
  bool yes = false;
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, "hoist.Error");
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

// seconds = core.now(): monotonic clock
int l_now(lua_State* L) {
  using namespace std::chrono;
  lua_pushnumber(L, duration<double>(steady_clock::now().time_since_epoch()).count());
  return 1;
}

// {id=, dir=, dry_run=, state_dir=, version=, log_format=, args=} = core.run()
int l_run(lua_State* L) {
  Runtime& rt = Runtime::from(L);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, rt.run_id.c_str());
  lua_setfield(L, -2, "id");
  lua_pushstring(L, rt.run_dir.c_str());
  lua_setfield(L, -2, "dir");
  lua_pushboolean(L, rt.dry_run());
  lua_setfield(L, -2, "dry_run");
  lua_pushstring(L, rt.options().state_dir.c_str());
  lua_setfield(L, -2, "state_dir");
  lua_pushstring(L, kVersion);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, rt.options().log_format.c_str());
  lua_setfield(L, -2, "log_format");
  push_json(L, rt.args.is_null() ? nlohmann::json::object() : rt.args);
  lua_setfield(L, -2, "args");
  return 1;
}

// bool = core.dry_run(): the run's dry-run flag (the one every module reads)
int l_dry_run(lua_State* L) {
  lua_pushboolean(L, Runtime::from(L).dry_run());
  return 1;
}

// previous = core.set_dry_run(bool|nil): sets the flag for the run in progress (nil: back to
// the engine option); returns the previous setting (nil when it was the engine option)
int l_set_dry_run(lua_State* L) {
  Runtime& rt = Runtime::from(L);
  auto previous = rt.dry_run_set;
  if (lua_isnoneornil(L, 1)) {
    rt.dry_run_set.reset();
  } else {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    rt.dry_run_set = lua_toboolean(L, 1) != 0;
  }
  if (previous) lua_pushboolean(L, *previous);
  else lua_pushnil(L);
  return 1;
}

// previous = core.plan_capture(on): start or stop collecting the run's plan (events of kind
// "plan", engine/core/events.cpp); returns the previous setting
int l_plan_capture(lua_State* L) {
  lua_pushboolean(L, Runtime::from(L).events().capture_plan(lua_toboolean(L, 1)));
  return 1;
}

// steps = core.plan_take(): the plan steps collected since the last take (fields + message)
int l_plan_take(lua_State* L) {
  auto steps = Runtime::from(L).events().take_plan();
  lua_createtable(L, static_cast<int>(steps.size()), 0);
  for (size_t i = 0; i < steps.size(); ++i) {
    push_json(L, steps[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// id = core.new_run_id(): the engine's run id generator (hoist::new_run_id)
int l_new_run_id(lua_State* L) {
  std::string id = new_run_id();
  lua_pushlstring(L, id.data(), id.size());
  return 1;
}

const luaL_Reg kTaskMethods[] = {
    {"join", protect<l_task_join>},
    {"cancel", protect<l_task_cancel>},
    {"status", protect<l_task_status>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"sleep", protect<l_sleep>},
    {"spawn", protect<l_spawn>},
    {"log", protect<l_log>},
    {"secret", protect<l_secret>},
    {"scrub", protect<l_scrub>},
    {"execute", protect<l_execute>},
    {"new_error", protect<l_new_error>},
    {"is_error", protect<l_is_error>},
    {"now", protect<l_now>},
    {"run", protect<l_run>},
    {"dry_run", protect<l_dry_run>},
    {"set_dry_run", protect<l_set_dry_run>},
    {"plan_capture", protect<l_plan_capture>},
    {"plan_take", protect<l_plan_take>},
    {"new_run_id", protect<l_new_run_id>},
    {"base64_decode", protect<l_base64_decode>},
    {"base64_encode", protect<l_base64_encode>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_core(lua_State* L) {
  return open_module_with_class(L, kTaskMeta, kTaskMethods, l_task_gc, l_task_tostring, kFunctions);
}

}  // namespace hoist::lua
