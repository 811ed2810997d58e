#include "bindings/runtime.hpp"

#include "bindings/embedded.hpp"
#include "bindings/json_bridge.hpp"

#include <boost/asio/post.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hoist::lua {
namespace {

const char* const kRuntimeKey = "hoist.runtime";
const char* const kErrorMeta = "hoist.Error";

int error_tostring(lua_State* L) {
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "where");
  std::string text = std::string(luaL_optstring(L, -3, "internal")) + ": " + luaL_optstring(L, -2, "");
  if (lua_isstring(L, -1)) text += " (at " + std::string(lua_tostring(L, -1)) + ")";
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

bool is_library_frame(const lua_Debug& ar) {
  return std::strcmp(ar.what, "C") == 0 || std::strncmp(ar.source, "@stdlib/", 8) == 0;
}

// package.preload loader for an embedded chunk; HOIST_LUA_PATH / options.lua_path win.
int load_embedded(lua_State* L) {
  auto* chunk = static_cast<const EmbeddedChunk*>(lua_touserdata(L, lua_upvalueindex(1)));
  const std::string& root = Runtime::from(L).options().lua_path;
  std::string src(chunk->data, chunk->size);
  if (!root.empty()) {
    std::ifstream in(root + "/" + (chunk->chunkname + 1), std::ios::binary);
    if (in) src.assign(std::istreambuf_iterator<char>(in), {});
  }
  if (luaL_loadbuffer(L, src.data(), src.size(), chunk->chunkname) != 0) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

// print(), io.write(), io.stdout/io.stderr:write() and the output of os.execute's shell pass
// through the scrubber; writes to files (a config a script writes on purpose) stay as they are.
const char kScrubbedOutput[] = R"(
local scrub = require("hoist.native.core").scrub
local execute, execute_scrubbed = os.execute, require("hoist.native.core").execute
os.execute = function(command)
  if command == nil then return execute() end  -- "is there a shell": nothing runs
  return execute_scrubbed(command)
end
local stdout, stderr = io.stdout, io.stderr
local methods = getmetatable(stdout).__index
local write, iowrite, output = methods.write, io.write, io.output
local select, type, tostring, unpack, concat = select, type, tostring, unpack, table.concat
local function clean(...)
  local n, t = select("#", ...), { ... }
  for i = 1, n do
    if type(t[i]) == "string" then t[i] = scrub(t[i]) end
  end
  return unpack(t, 1, n)
end
methods.write = function(f, ...)
  if f == stdout or f == stderr then return write(f, clean(...)) end
  return write(f, ...)
end
io.write = function(...)
  local out = output()
  if out == stdout or out == stderr then return write(out, clean(...)) end
  return iowrite(...)
end
print = function(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  write(stdout, scrub(concat(parts, "\t")), "\n")
end
)";

}  // namespace

// ---------------------------------------------------------------- Resumer

void Resumer::ok(std::function<int(lua_State*)> push_results) const {
  if (!rt_) return;
  auto* rt = rt_;
  auto fiber = fiber_, seq = seq_;
  boost::asio::post(rt->io(), [rt, fiber, seq, push = std::move(push_results)] {
    rt->finish_suspension(fiber, seq, true, push);
  });
}

void Resumer::fail(Error error) const {
  if (!rt_) return;
  auto* rt = rt_;
  auto fiber = fiber_, seq = seq_;
  boost::asio::post(rt->io(), [rt, fiber, seq, error = std::move(error)] {
    rt->finish_suspension(fiber, seq, false, [&error](lua_State* co) {
      push_error(co, error);
      return 1;
    });
  });
}

// ---------------------------------------------------------------- Runtime

Runtime::Runtime(boost::asio::io_context& io, EventBus& events, const EngineOptions& options)
    : io_(io), events_(events), options_(options) {
  if (options_.lua_path.empty())
    if (const char* p = std::getenv("HOIST_LUA_PATH")) options_.lua_path = p;
  L_ = luaL_newstate();
  if (!L_) throw Error(Code::internal, "cannot create a Lua state (out of memory)");
  luaL_openlibs(L_);
  lua_pushlightuserdata(L_, this);
  lua_setfield(L_, LUA_REGISTRYINDEX, kRuntimeKey);

  luaL_newmetatable(L_, kErrorMeta);
  lua_pushcfunction(L_, error_tostring);
  lua_setfield(L_, -2, "__tostring");
  lua_pop(L_, 1);

  install_loaders();
  register_builtin_modules(*this);
  if (luaL_loadbuffer(L_, kScrubbedOutput, sizeof kScrubbedOutput - 1, "=hoist.output") != 0 ||
      lua_pcall(L_, 0, 0, 0) != 0) {
    std::string why = lua_tostring(L_, -1);
    lua_close(L_);
    L_ = nullptr;
    throw Error(Code::internal, "cannot install the output scrubber: " + why);
  }
  if (!options_.lua_path.empty()) {
    // New files under the override root load without a rebuild.
    lua_getglobal(L_, "package");
    lua_getfield(L_, -1, "path");
    std::string path = options_.lua_path + "/stdlib/?.lua;" + options_.lua_path + "/stdlib/?/init.lua;" +
                       options_.lua_path + "/?.lua;" + lua_tostring(L_, -1);
    lua_pop(L_, 1);
    lua_pushlstring(L_, path.data(), path.size());
    lua_setfield(L_, -2, "path");
    lua_pop(L_, 1);
  }
}

Runtime::~Runtime() {
  fibers_.clear();
  if (L_) lua_close(L_);
}

Runtime& Runtime::from(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kRuntimeKey);
  auto* rt = static_cast<Runtime*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *rt;
}

void Runtime::install_loaders() {
  lua_getglobal(L_, "package");
  lua_getfield(L_, -1, "preload");
  for (const EmbeddedChunk* c = kEmbedded; c->module; ++c) {
    lua_pushlightuserdata(L_, const_cast<EmbeddedChunk*>(c));
    lua_pushcclosure(L_, load_embedded, 1);
    lua_setfield(L_, -2, c->module);
  }
  lua_pop(L_, 2);
}

void Runtime::preload(const std::string& name, lua_CFunction opener) {
  lua_getglobal(L_, "package");
  lua_getfield(L_, -1, "preload");
  lua_pushcfunction(L_, opener);
  lua_setfield(L_, -2, name.c_str());
  lua_pop(L_, 2);
}

std::uint64_t Runtime::spawn(lua_State* from, int nargs) {
  lua_State* co = lua_newthread(from);
  int ref = luaL_ref(from, LUA_REGISTRYINDEX);
  lua_xmove(from, co, nargs + 1);  // function and arguments
  auto f = std::make_unique<Fiber>();
  f->id = next_id_++;
  f->co = co;
  f->thread_ref = ref;
  auto id = f->id;
  by_thread_[co] = id;
  fibers_[id] = std::move(f);
  fibers_[id]->state = Fiber::State::runnable;
  boost::asio::post(io_, [this, id, nargs] {
    Fiber* f = fiber(id);
    if (!f || f->state != Fiber::State::runnable) return;
    if (f->cancelled) {
      lua_settop(f->co, 0);
      push_error(f->co, Error(Code::cancelled, "task cancelled before it started"));
      complete(*f, LUA_ERRRUN);
      return;
    }
    resume(*f, nargs);
  });
  return id;
}

Fiber* Runtime::fiber(std::uint64_t id) {
  auto it = fibers_.find(id);
  return it == fibers_.end() ? nullptr : it->second.get();
}

Fiber* Runtime::fiber_of(lua_State* co) {
  auto it = by_thread_.find(co);
  return it == by_thread_.end() ? nullptr : fiber(it->second);
}

std::size_t Runtime::live_fibers() const {
  std::size_t n = 0;
  for (auto& [id, f] : fibers_)
    if (f->state != Fiber::State::done) ++n;
  return n;
}

void Runtime::resume(Fiber& f, int nargs) {
  f.state = Fiber::State::runnable;
  f.pending.reset();
  auto seq_before = f.seq;
  int status = lua_resume(f.co, nargs);
  if (status == LUA_YIELD) {
    if (f.seq != seq_before) {
      f.state = Fiber::State::suspended;  // a primitive is waiting for its completion
      return;
    }
    // A bare coroutine.yield(): let the other fibers run, then carry on.
    lua_settop(f.co, 0);
    auto id = f.id;
    boost::asio::post(io_, [this, id] {
      if (Fiber* g = fiber(id); g && g->state == Fiber::State::runnable) resume(*g, 0);
    });
    return;
  }
  complete(f, status);
}

void Runtime::complete(Fiber& f, int status) {
  f.state = Fiber::State::done;
  f.pending.reset();
  lua_State* co = f.co;
  if (status == 0) {
    int n = lua_gettop(co);
    lua_createtable(co, n, 1);
    for (int i = 1; i <= n; ++i) {
      lua_pushvalue(co, i);
      lua_rawseti(co, -2, i);
    }
    lua_pushinteger(co, n);
    lua_setfield(co, -2, "n");
    f.results_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  } else {
    f.failed = true;
    // Keep the traceback while the dead coroutine's stack still tells it.
    if (lua_istable(co, -1)) {
      lua_getfield(co, -1, "traceback");
      bool has = !lua_isnil(co, -1);
      lua_pop(co, 1);
      if (!has) {
        luaL_traceback(co, co, nullptr, 0);
        lua_setfield(co, -2, "traceback");
      }
    } else {
      Error e = to_error(co, -1);
      std::string msg = e.message();
      lua_pop(co, 1);
      push_error(co, e);
      luaL_traceback(co, co, nullptr, 0);
      lua_setfield(co, -2, "traceback");
      // A plain Lua error string already starts with "file:line:"; keep it as the location.
      auto colon = msg.find(": ");
      if (colon != std::string::npos && msg.find(".lua:") < colon) {
        lua_pushlstring(co, msg.data(), colon);
        lua_setfield(co, -2, "where");
      }
    }
    f.error_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  }
  lua_settop(co, 0);
  auto waiters = std::move(f.waiters);
  f.waiters.clear();
  auto id = f.id;
  if (f.on_done) f.on_done(f);
  Fiber* self = fiber(id);
  if (!self) return;
  // a waiter resumes with (true,) child_ok, results_or_error
  bool child_ok = !self->failed;
  int ref = child_ok ? self->results_ref : self->error_ref;
  for (auto& [token, r] : waiters) {
    r.ok([child_ok, ref](lua_State* L) {
      lua_pushboolean(L, child_ok);
      lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
      return 2;
    });
  }
  if (!self->task_alive) release(id);
}

void Runtime::finish_suspension(std::uint64_t id, std::uint64_t seq, bool ok,
                                const std::function<int(lua_State*)>& push) {
  Fiber* f = fiber(id);
  if (!f || f->state != Fiber::State::suspended || f->seq != seq) return;
  ++f->seq;  // any later completion of this suspension is stale
  lua_settop(f->co, 0);
  lua_pushboolean(f->co, ok);
  int n = 0;
  try {
    n = push(f->co);
  } catch (const std::exception& e) {
    // A result that cannot be pushed (nested too deep, say) fails the wait: the stdlib
    // wrapper raises it in the fiber, where pcall and the pipeline's rollback see it.
    auto* error = dynamic_cast<const Error*>(&e);
    lua_settop(f->co, 0);
    lua_pushboolean(f->co, 0);
    push_error(f->co, error ? *error : Error(Code::internal, e.what()));
    n = 1;
  }
  resume(*f, n + 1);
}

void Runtime::cancel(std::uint64_t id) {
  Fiber* f = fiber(id);
  if (!f || f->state == Fiber::State::done || f->cancelled) return;
  f->cancelled = true;
  if (f->state == Fiber::State::suspended) {
    auto op = std::move(f->pending);
    auto seq = f->seq;
    // Fail the wait at once; the operation's own cleanup (kill, abort) runs right now.
    boost::asio::post(io_, [this, id, seq] {
      finish_suspension(id, seq, false, [](lua_State* co) {
        push_error(co, Error(Code::cancelled, "task cancelled"));
        return 1;
      });
    });
    if (op) op->cancel();
  }
}

void Runtime::cancel_all() {
  for (auto& [id, f] : fibers_) cancel(id);
}

void Runtime::release(std::uint64_t id) {
  Fiber* f = fiber(id);
  if (!f) return;
  if (f->state != Fiber::State::done) {
    f->task_alive = false;  // keep running; released when it completes
    return;
  }
  if (L_) {
    luaL_unref(L_, LUA_REGISTRYINDEX, f->results_ref);
    luaL_unref(L_, LUA_REGISTRYINDEX, f->error_ref);
    luaL_unref(L_, LUA_REGISTRYINDEX, f->thread_ref);
  }
  by_thread_.erase(f->co);
  fibers_.erase(id);
}

// ---------------------------------------------------------------- suspend

int suspend(lua_State* L, const std::function<OperationPtr(Resumer)>& start, bool shield) {
  Runtime& rt = Runtime::from(L);
  Fiber* f = rt.fiber_of(L);
  if (!f)
    throw Error(Code::invalid_argument,
                "a waiting primitive was called outside a hoist task (inside coroutine.wrap?); "
                "use hoist.spawn for concurrency");
  if (f->cancelled && !shield) throw Error(Code::cancelled, "task cancelled");
  std::uint64_t seq = ++f->seq;
  OperationPtr op = start(Resumer(&rt, f->id, seq));
  f->pending = std::move(op);
  return lua_yield(L, 0);
}

// ---------------------------------------------------------------- errors

std::string script_location(lua_State* L) {
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); ++level) {
    if (!lua_getinfo(L, "Sl", &ar)) continue;
    if (ar.currentline <= 0) continue;
    if (is_library_frame(ar)) continue;
    std::string src = ar.source[0] == '@' ? ar.source + 1 : ar.short_src;
    return src + ":" + std::to_string(ar.currentline);
  }
  return {};
}

void push_error(lua_State* L, const Error& error) {
  lua_createtable(L, 0, 6);
  auto code = to_string(error.code());
  lua_pushlstring(L, code.data(), code.size());
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, error.message().data(), error.message().size());
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, error.retryable());
  lua_setfield(L, -2, "retryable");
  int top = lua_gettop(L);
  try {
    push_json(L, error.details().is_object() ? error.details() : nlohmann::json{{"value", error.details()}});
  } catch (const std::exception& e) {  // details nested too deep for Lua: say so instead
    lua_settop(L, top);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, e.what());
    lua_setfield(L, -2, "unreadable");
  }
  lua_setfield(L, -2, "details");
  std::string where = script_location(L);
  if (!where.empty()) {
    lua_pushlstring(L, where.data(), where.size());
    lua_setfield(L, -2, "where");
  }
  luaL_getmetatable(L, kErrorMeta);
  lua_setmetatable(L, -2);
}

Error to_error(lua_State* L, int index) {
  index = index < 0 ? lua_gettop(L) + index + 1 : index;
  if (lua_istable(L, index)) {
    lua_getfield(L, index, "code");
    lua_getfield(L, index, "message");
    lua_getfield(L, index, "retryable");
    lua_getfield(L, index, "details");
    auto code = code_from_string(luaL_optstring(L, -4, "internal")).value_or(Code::internal);
    std::string message = luaL_optstring(L, -3, "");
    bool retryable = lua_isnil(L, -2) ? default_retryable(code) : lua_toboolean(L, -2);
    nlohmann::json details = lua_istable(L, -1) ? to_json(L, -1) : nlohmann::json::object();
    lua_pop(L, 4);
    return Error(code, message, retryable, details);
  }
  const char* s = lua_tostring(L, index);
  return Error(Code::internal, s ? s : luaL_typename(L, index));
}

namespace detail {
void raise(lua_State* L, const Error& error) {
  push_error(L, error);
  lua_error(L);
  std::abort();  // unreachable
}
}  // namespace detail

// ---------------------------------------------------------------- argument helpers

namespace {
// A field of the table at `table`, read by get() while it is on top of the stack: `fallback`
// when nil; invalid_argument naming the field and the type it has when is() refuses it.
template <class T, class Is, class Get>
T opt_field(lua_State* L, int table, const char* field, T fallback, const char* expected, Is is, Get get) {
  lua_getfield(L, table, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return fallback;
  }
  if (!is(L)) {
    std::string type = luaL_typename(L, -1);
    lua_pop(L, 1);
    throw Error(Code::invalid_argument, std::string("option '") + field + "' must be " + expected + ", got " + type);
  }
  T value = get(L);
  lua_pop(L, 1);
  return value;
}
}  // namespace

std::string opt_string(lua_State* L, int table, const char* field, const std::string& fallback) {
  return opt_field<std::string>(
      L, table, field, fallback, "a string",
      [](lua_State* S) { return lua_type(S, -1) == LUA_TSTRING || lua_type(S, -1) == LUA_TNUMBER; },
      [](lua_State* S) {
        size_t n;
        const char* s = lua_tolstring(S, -1, &n);
        return std::string(s, n);
      });
}

double opt_number(lua_State* L, int table, const char* field, double fallback) {
  return opt_field<double>(
      L, table, field, fallback, "a number", [](lua_State* S) { return lua_isnumber(S, -1) != 0; },
      [](lua_State* S) { return static_cast<double>(lua_tonumber(S, -1)); });
}

bool opt_bool(lua_State* L, int table, const char* field, bool fallback) {
  return opt_field<bool>(
      L, table, field, fallback, "a boolean", [](lua_State* S) { return lua_isboolean(S, -1); },
      [](lua_State* S) { return lua_toboolean(S, -1) != 0; });
}

int open_module_with_class(lua_State* L, const char* meta, const luaL_Reg* methods, lua_CFunction gc,
                           lua_CFunction tostring, const luaL_Reg* functions) {
  luaL_newmetatable(L, meta);
  lua_newtable(L);
  luaL_register(L, nullptr, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, nullptr, functions);
  return 1;
}

}  // namespace hoist::lua
