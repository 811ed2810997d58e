#pragma once
// The Lua side of the engine: one LuaJIT state, one Asio loop, every script and task a
// coroutine ("fiber"). A waiting primitive starts its operation and yields its fiber; the
// completion handler resumes it (the lua-nginx-module pattern).
//
// Waiting natives return `ok, ...` to a small Lua wrapper in stdlib that raises on `ok ==
// false`: a C function cannot raise into a coroutine it is not running in.
#include <hoist/engine.hpp>
#include <hoist/operation.hpp>

#include <boost/asio/io_context.hpp>
#include <lua.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace hoist::lua {

class Runtime;

// Handed to a waiting primitive: call ok() or fail() once, on the loop thread. Stale calls
// (the fiber was cancelled or already resumed) are ignored.
class Resumer {
 public:
  Resumer() = default;
  Resumer(Runtime* rt, std::uint64_t fiber, std::uint64_t seq) : rt_(rt), fiber_(fiber), seq_(seq) {}
  // push_results pushes the results on the fiber's stack and returns how many.
  void ok(std::function<int(lua_State*)> push_results) const;
  void fail(Error error) const;
  std::uint64_t fiber() const { return fiber_; }

 private:
  Runtime* rt_ = nullptr;
  std::uint64_t fiber_ = 0;
  std::uint64_t seq_ = 0;
};

struct Fiber {
  enum class State { created, runnable, suspended, done };
  std::uint64_t id = 0;
  lua_State* co = nullptr;
  int thread_ref = LUA_NOREF;
  State state = State::created;
  bool cancelled = false;
  bool failed = false;
  std::uint64_t seq = 0;  // which suspension is current
  OperationPtr pending;
  int results_ref = LUA_NOREF;  // {n=, ...} on success
  int error_ref = LUA_NOREF;    // error value on failure
  bool task_alive = true;       // a Lua Task object still refers to it
  std::vector<std::pair<std::uint64_t, Resumer>> waiters;  // (token, resumer)
  std::function<void(Fiber&)> on_done;
};

class Runtime {
 public:
  Runtime(boost::asio::io_context& io, EventBus& events, const EngineOptions& options);
  ~Runtime();
  Runtime(const Runtime&) = delete;

  static Runtime& from(lua_State* L);

  lua_State* L() const { return L_; }
  boost::asio::io_context& io() { return io_; }
  EventBus& events() { return events_; }
  const EngineOptions& options() const { return options_; }
  Secrets& secrets() { return *events_.secrets(); }

  // Per-run context, visible to Lua as hoist.run
  std::string run_id;
  std::string run_dir;
  nlohmann::json args = nlohmann::json::object();
  // The run's one dry-run flag, read by every module (core.dry_run, the registry binding):
  // the engine option unless hoist.pipeline.run{dry_run=} set it for its duration.
  std::optional<bool> dry_run_set;
  bool dry_run() const { return dry_run_set.value_or(options_.dry_run); }

  // Registers a native module as package.preload[name].
  void preload(const std::string& name, lua_CFunction opener);

  // Fibers. spawn() takes the function and its nargs arguments from the top of `from`'s
  // stack and returns the fiber id; the first resume is posted to the loop.
  std::uint64_t spawn(lua_State* from, int nargs);
  Fiber* fiber(std::uint64_t id);
  Fiber* fiber_of(lua_State* co);
  void cancel(std::uint64_t id);
  void cancel_all();
  void release(std::uint64_t id);  // the Task object is gone
  void finish_suspension(std::uint64_t id, std::uint64_t seq, bool ok,
                         const std::function<int(lua_State*)>& push);
  std::size_t live_fibers() const;

 private:
  void resume(Fiber& f, int nargs);
  void complete(Fiber& f, int status);
  void install_loaders();

  boost::asio::io_context& io_;
  EventBus& events_;
  EngineOptions options_;
  lua_State* L_ = nullptr;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, std::unique_ptr<Fiber>> fibers_;
  std::unordered_map<lua_State*, std::uint64_t> by_thread_;
};

// Suspends the calling fiber until the operation `start` begins completes through its
// Resumer. Returns lua_yield(): use as `return suspend(L, ...)` in a binding.
// shield: wait even if the fiber was cancelled (used to let children stop first).
int suspend(lua_State* L, const std::function<OperationPtr(Resumer)>& start, bool shield = false);

// Error tables: {code, message, retryable, details, where} with metatable hoist.Error.
void push_error(lua_State* L, const Error& error);
// Reads an error value (hoist.Error table or any Lua value) back into an Error.
Error to_error(lua_State* L, int index);
// "file.lua:12" of the innermost frame that is not in stdlib/ or C.
std::string script_location(lua_State* L);

namespace detail {
[[noreturn]] void raise(lua_State* L, const Error& error);
}

// The one trampoline between C++ and Lua: no C++ exception crosses a Lua frame.
template <lua_CFunction F>
int protect(lua_State* L) {
  Error failure(Code::internal, "");
  try {
    return F(L);
  } catch (const Error& e) {
    failure = e;
  } catch (const std::exception& e) {
    failure = Error(Code::internal, e.what());
  }
  detail::raise(L, failure);
}

// The body of a luaopen_ for a module with one object class: registers the class's named
// metatable (methods as __index, __gc, __tostring), then pushes the module's function table.
int open_module_with_class(lua_State* L, const char* meta, const luaL_Reg* methods, lua_CFunction gc,
                           lua_CFunction tostring, const luaL_Reg* functions);

// One object per Lua state under `key` in the registry (a module's client, a token cache):
// made by make() on first use, released with the state.
template <class T>
std::shared_ptr<T> state_object(lua_State* L, const char* key, const std::function<std::shared_ptr<T>()>& make) {
  struct Box {
    std::shared_ptr<T> object;
  };
  lua_getfield(L, LUA_REGISTRYINDEX, key);
  if (auto* box = static_cast<Box*>(lua_touserdata(L, -1))) {
    lua_pop(L, 1);
    return box->object;
  }
  lua_pop(L, 1);
  auto* box = new (lua_newuserdata(L, sizeof(Box))) Box{make()};
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, [](lua_State* S) {
    static_cast<Box*>(lua_touserdata(S, 1))->~Box();
    return 0;
  });
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
  return box->object;
}

// Argument helpers that raise invalid_argument naming the field.
std::string opt_string(lua_State* L, int table, const char* field, const std::string& fallback = "");
double opt_number(lua_State* L, int table, const char* field, double fallback);
bool opt_bool(lua_State* L, int table, const char* field, bool fallback);

}  // namespace hoist::lua

// Native module openers, registered in Runtime::Runtime (bindings/modules.cpp).
namespace hoist::lua {
void register_builtin_modules(Runtime& rt);
}
