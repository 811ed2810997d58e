// hoist::Engine: the embedding API, on top of lua::Runtime.
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <hoist/strings.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <utility>
#include <list>
#include <random>

namespace hoist {
namespace {

// events.jsonl of the current run; switched at each run start.
class RunFileSink : public Sink {
 public:
  void open(const std::string& path) { inner_ = make_file_sink(path); }
  void close() {
    if (inner_) inner_->flush();
    inner_.reset();
  }
  void write(const Event& e) override {
    if (inner_) inner_->write(e);
  }
  void flush() override {
    if (inner_) inner_->flush();
  }

 private:
  std::shared_ptr<Sink> inner_;
};

constexpr int kExitUsage = 2;

int exit_code_for(const Error& e) {
  if (e.details().contains("exit_code") && e.details()["exit_code"].is_number_integer())
    return e.details()["exit_code"].get<int>();
  switch (e.code()) {
    case Code::policy_violation: return 4;
    case Code::cancelled: return 130;
    default: return 1;
  }
}

// Calls a HostFunction registered by the embedding program (upvalue 1).
int call_host_function(lua_State* L) {
  auto* fn = static_cast<HostFunction*>(lua_touserdata(L, lua_upvalueindex(1)));
  int n = lua_gettop(L);
  nlohmann::json args;
  if (n == 1) {
    args = lua::to_json(L, 1);
  } else {
    args = nlohmann::json::array();
    for (int i = 1; i <= n; ++i) args.push_back(lua::to_json(L, i));
  }
  nlohmann::json result = (*fn)(args);
  lua::push_json(L, result);
  return 1;
}

int open_host_module(lua_State* L) {
  // upvalue 1: the table of closures built at registration
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

// The mask command of the CI runner hoist runs in, or none: GitHub Actions' `::add-mask::`
// (workflow-command escaping: % and CR) or Azure Pipelines' `##vso[task.setsecret]` (the
// agent's escaping: %, CR, LF, ';' and ']').
using MaskCommand = std::string (*)(const std::string&);
MaskCommand ci_mask_command() {
  auto is = [](const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v && std::string(v) == value;
  };
  if (is("GITHUB_ACTIONS", "true"))
    return [](const std::string& line) {
      std::string data = "::add-mask::";
      for (char c : line) data += c == '%' ? "%25" : c == '\r' ? "%0D" : std::string(1, c);
      return data;
    };
  if (is("TF_BUILD", "True") || is("TF_BUILD", "true"))
    return [](const std::string& line) {
      std::string data = "##vso[task.setsecret]";
      for (char c : line)
        data += c == '%' ? "%AZP25" : c == '\r' ? "%0D" : c == ';' ? "%3B" : c == ']' ? "%5D" : std::string(1, c);
      return data;
    };
  return nullptr;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  std::shared_ptr<Secrets> secrets = std::make_shared<Secrets>();
  EventBus events{secrets};
  boost::asio::io_context io;
  std::unique_ptr<lua::Runtime> rt;
  std::shared_ptr<RunFileSink> run_sink = std::make_shared<RunFileSink>();
  std::list<HostFunction> host_functions;  // stable addresses for the closures
  std::uint64_t main_fiber = 0;

  explicit Impl(EngineOptions o) : options(std::move(o)) {
    if (options.log_format == "json")
      events.add_sink(make_json_sink(stderr, options.log_level));
    else if (options.log_format == "text")
      events.add_sink(make_terminal_sink(stderr, options.color, options.log_level));
    if (options.on_event) events.add_sink(make_callback_sink(options.on_event));
    events.add_sink(run_sink);
    // The CI runner hides a masked value in its own log; this line is the one place it
    // appears. Written here, not in hoist.ci (stdlib), because a secret can be registered by
    // the engine itself (a credential's token) while no Lua runs; the providers are the
    // same two hoist.ci knows.
    if (auto mask = ci_mask_command()) {
      secrets->on_add([mask](const std::string& value) {
        std::size_t start = 0;
        while (start <= value.size()) {  // both runners mask line by line
          auto end = value.find('\n', start);
          std::string line = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
          if (!line.empty()) std::fprintf(stdout, "%s\n", mask(line).c_str());
          if (end == std::string::npos) break;
          start = end + 1;
        }
        std::fflush(stdout);
      });
    }
    rt = std::make_unique<lua::Runtime>(io, events, options);
  }

  void add_function(const std::string& module, const std::string& name, HostFunction fn) {
    lua_State* L = rt->L();
    host_functions.push_back(std::move(fn));
    // package.loaded[module] or the module table held by its preload closure
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, module.c_str());
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_getfield(L, -2, "preload");
      lua_getfield(L, -1, module.c_str());
      if (lua_iscfunction(L, -1) && lua_getupvalue(L, -1, 1)) {
        lua_replace(L, -3);  // module table replaces preload
        lua_pop(L, 1);
      } else {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, open_host_module, 1);
        lua_setfield(L, -3, module.c_str());  // preload[module]
        lua_replace(L, -2);
      }
    }
    lua_pushlightuserdata(L, &host_functions.back());
    lua_pushcclosure(L, lua::protect<call_host_function>, 1);
    lua_setfield(L, -2, name.c_str());
    lua_pop(L, 3);
  }

  // `script`: the file a plain script's run comes from (`hoist runs` names it).
  void start_run(const nlohmann::json& args, bool record = true, const std::string& script = "") {
    // the id a supervisor chose (hoist serve names a run before starting it), once
    rt->run_id = options.run_id.empty() ? new_run_id() : std::exchange(options.run_id, std::string());
    rt->args = args;
    rt->run_dir.clear();
    if (options.write_run_dir && record) {
      rt->run_dir = (std::filesystem::path(options.state_dir) / "runs" / rt->run_id).string();
      std::filesystem::create_directories(rt->run_dir);
      run_sink->open(rt->run_dir + "/events.jsonl");
    }
    nlohmann::json fields = {{"run", rt->run_id}, {"dir", rt->run_dir}};
    if (!script.empty()) fields["script"] = script;
    events.emit(Event{0, "debug", "run.start", "run " + rt->run_id, fields});
  }

  // Runs the function on top of the main state's stack (with nargs args) as the main fiber.
  RunResult run_main(int nargs) {
    lua_State* L = rt->L();
    main_fiber = rt->spawn(L, nargs);
    bool done = false;
    lua::Fiber* f = rt->fiber(main_fiber);
    f->task_alive = true;
    f->on_done = [&done](lua::Fiber&) { done = true; };

    std::optional<boost::asio::signal_set> signals;
    int interrupts = 0;
    // Lives as long as the wait: the handler re-arms itself with it after each signal.
    std::function<void(boost::system::error_code, int)> on_signal;
    if (options.handle_signals) {
      signals.emplace(io, SIGINT, SIGTERM);
      on_signal = [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (++interrupts > 1) std::_Exit(130);
        events.log("warn", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                               ": cancelling the run (again to exit now)");
        rt->cancel_all();
        signals->async_wait(on_signal);
      };
      signals->async_wait(on_signal);
    }

    io.restart();
    bool stalled = false;
    while (!done) {
      if (io.run_one() == 0) {
        stalled = true;
        break;
      }
    }
    if (signals) signals->cancel();
    // Structured concurrency: tasks still running when the script ends are cancelled.
    rt->cancel_all();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    io.restart();
    while (rt->live_fibers() > 0 && std::chrono::steady_clock::now() < deadline)
      if (io.run_one_for(std::chrono::milliseconds(50)) == 0 && rt->live_fibers() == 0) break;
    io.poll();

    RunResult result;
    result.run_id = rt->run_id;
    f = rt->fiber(main_fiber);
    if (stalled || !f || f->state != lua::Fiber::State::done) {
      result.error = Error(Code::internal,
                           "the script is waiting for something that can never happen "
                           "(a task waiting for itself or a deadlock)");
    } else if (f->failed) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, f->error_ref);
      result.error = lua::to_error(L, -1);
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "where");
        if (lua_isstring(L, -1)) result.where = lua_tostring(L, -1);
        lua_getfield(L, -2, "traceback");
        if (lua_isstring(L, -1)) result.traceback = lua_tostring(L, -1);
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
    } else {
      lua_rawgeti(L, LUA_REGISTRYINDEX, f->results_ref);
      lua_rawgeti(L, -1, 1);
      try {
        result.value = lua::to_json(L, -1);
      } catch (const std::exception&) {
        result.value = nullptr;
      }
      lua_pop(L, 2);
    }
    rt->release(main_fiber);
    lua_gc(L, LUA_GCCOLLECT, 0);
    finish(result);
    return result;
  }

  void finish(RunResult& result) {
    result.ok = !result.error.has_value();
    result.exit_code = result.ok ? 0 : exit_code_for(*result.error);
    if (result.error) {
      result.where = secrets->scrub(result.where);
      result.traceback = secrets->scrub(result.traceback);
      auto details = result.error->details();
      scrub_json(*secrets, details);
      *result.error = Error(result.error->code(), secrets->scrub(result.error->message()),
                            result.error->retryable(), details);
    }
    nlohmann::json fields = {{"run", result.run_id}, {"ok", result.ok}, {"exit_code", result.exit_code}};
    if (result.error) {
      fields["error"] = result.error->to_json();
      if (!result.where.empty()) fields["where"] = result.where;
    }
    events.emit(Event{0, "debug", "run.end", result.ok ? "run succeeded" : "run failed", fields});
    events.flush();
    run_sink->close();
    // A usage error (bad parameters) stops before anything runs: it leaves no run behind,
    // so `hoist runs` lists only runs that did something.
    if (result.exit_code == kExitUsage && !rt->run_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(rt->run_dir, ec);
      rt->run_dir.clear();
    }
    result.recorded = !rt->run_dir.empty();
  }

  // Loads `hoist` as a global and pushes the chunk loader result; returns false on error.
  RunResult load_error(const std::string& what, Code code, int exit_code) {
    RunResult r;
    r.run_id = rt->run_id;
    r.error = Error(code, what);
    finish(r);
    r.exit_code = exit_code;
    return r;
  }

  void prepare_globals() {
    lua_State* L = rt->L();
    lua_getglobal(L, "require");
    lua_pushstring(L, "hoist");
    if (lua_pcall(L, 1, 1, 0) != 0) {
      std::string msg = lua_tostring(L, -1);
      lua_pop(L, 1);
      throw Error(Code::internal, "cannot load the hoist stdlib: " + msg);
    }
    // hoist.args is cached on first use; a new run on the same engine has new arguments
    lua_pushnil(L);
    lua_setfield(L, -2, "args");
    lua_setglobal(L, "hoist");
  }

  RunResult run_chunk(int load_status, const nlohmann::json& args) {
    lua_State* L = rt->L();
    if (load_status != 0) {
      std::string msg = lua_tostring(L, -1);
      lua_pop(L, 1);
      return load_error(load_status == LUA_ERRSYNTAX ? "syntax error: " + msg : msg,
                        Code::invalid_argument, 1);
    }
    lua::push_json(L, args);
    return run_main(1);
  }
};

std::string new_run_id() {
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", rd() & 0xffff);
  return text::utc_now("%Y%m%d-%H%M%S") + "-" + suffix;
}

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Engine::~Engine() = default;

void Engine::register_function(const std::string& module, const std::string& name, HostFunction fn) {
  impl_->add_function(module, name, std::move(fn));
}

void Engine::register_module(const std::string& module, std::map<std::string, HostFunction> functions) {
  for (auto& [name, fn] : functions) impl_->add_function(module, name, std::move(fn));
}

void Engine::register_lua_module(const std::string& module, LuaOpener opener) {
  impl_->rt->preload(module, opener);
}

void Engine::add_secret(const std::string& value) { impl_->secrets->add(value, true); }
void Engine::add_sink(std::shared_ptr<Sink> sink) { impl_->events.add_sink(std::move(sink)); }
EventBus& Engine::events() { return impl_->events; }

RunResult Engine::run_file(const std::string& path, const nlohmann::json& args) {
  std::error_code ec;
  bool exists = std::filesystem::is_regular_file(path, ec);
  impl_->start_run(args, exists, path);  // a usage error records no run
  if (!exists) return impl_->load_error("no such script file: " + path, Code::invalid_argument, 2);
  impl_->prepare_globals();
  lua_State* L = impl_->rt->L();
  int status = luaL_loadfile(L, path.c_str());
  if (status != 0) return impl_->run_chunk(status, args);
  // A file that returns hoist.pipeline.define{...} runs through the pipeline runtime, like
  // a bundled pipeline; any other script's results come back as they are.
  static const std::string runner =
      "local chunk, args, path = ...\nreturn require('hoist.pipeline').run_chunk(chunk, args, path)";
  if (luaL_loadbuffer(L, runner.data(), runner.size(), "=hoist.pipeline") != 0)
    return impl_->load_error(lua_tostring(L, -1), Code::internal, 1);
  lua_insert(L, -2);  // runner, chunk
  lua::push_json(L, args);
  lua_pushlstring(L, path.data(), path.size());
  return impl_->run_main(3);
}

RunResult Engine::run_string(const std::string& code, const std::string& chunkname, const nlohmann::json& args) {
  impl_->start_run(args);
  impl_->prepare_globals();
  lua_State* L = impl_->rt->L();
  std::string name = "=" + chunkname;
  return impl_->run_chunk(luaL_loadbuffer(L, code.data(), code.size(), name.c_str()), args);
}

RunResult Engine::run_pipeline(const std::string& spec, const nlohmann::json& args) {
  impl_->start_run(args);
  impl_->prepare_globals();
  lua_State* L = impl_->rt->L();
  static const std::string runner = "local spec, args = ...\nreturn require('hoist.scripts').run(spec, args)";
  if (luaL_loadbuffer(L, runner.data(), runner.size(), "=hoist.scripts") != 0)
    return impl_->load_error(lua_tostring(L, -1), Code::internal, 1);
  lua_pushlstring(L, spec.data(), spec.size());
  lua::push_json(L, args);
  return impl_->run_main(2);
}

void Engine::cancel() {
  boost::asio::post(impl_->io, [impl = impl_.get()] {
    impl->rt->cancel_all();
  });
}

}  // namespace hoist
