#pragma once
// The embedding API: create an engine, add your own functions to Lua, run a script, a
// string or a bundled pipeline, watch every event, cancel from another thread.
//
//   hoist::Engine engine({.on_event = [](const hoist::Event& e) { ... }});
//   engine.register_function("myapp", "greet", [](const nlohmann::json& args) {
//     return nlohmann::json{{"hello", args.at("name")}};
//   });
//   auto result = engine.run_string("return require('myapp').greet{name='x'}", "inline");
#include <hoist/error.hpp>
#include <hoist/events.hpp>
#include <hoist/version.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

struct lua_State;

namespace hoist {

// A host function called from Lua with its arguments as JSON (one table argument becomes
// an object or array; several arguments become an array). Throw hoist::Error to fail.
using HostFunction = std::function<nlohmann::json(const nlohmann::json& args)>;
// A raw Lua module opener, for hosts that want the full Lua C API.
using LuaOpener = int (*)(lua_State*);

// A new run id, "YYYYMMDD-HHMMSS-xxxx" (UTC time, 16 random bits): sorts by start time. The
// one generator of run ids: Lua reaches it as hoist.native.core.new_run_id().
std::string new_run_id();

struct EngineOptions {
  std::string state_dir = ".hoist";  // runs/<id>/events.jsonl lives here
  std::string run_id;                // the first run's id (empty: a new one); a supervisor such as
                                     // `hoist serve` names the run it starts, to find its folder again
  std::string log_format = "text";   // text | json | none (stderr)
  std::string log_level = "info";
  bool color = false;
  bool dry_run = false;
  bool write_run_dir = true;           // false: no .hoist/runs/<id>/ (tests, embedding)
  std::string lua_path;                // overrides HOIST_LUA_PATH: load stdlib/ scripts/ from disk
  bool handle_signals = false;         // SIGINT/SIGTERM cancel the run (the CLI sets this)
  std::function<void(const Event&)> on_event;
};

struct RunResult {
  bool ok = false;
  int exit_code = 1;  // 0 ok, 1 failed, 2 usage, 3 rollback incomplete, 4 policy, 130 cancelled
  std::string run_id;
  bool recorded = false;       // the run left its folder (.hoist/runs/<id>): `hoist runs` lists it
  nlohmann::json value;        // what the script returned (first value), as JSON
  std::optional<Error> error;  // set when !ok
  std::string where;           // script file:line of the error
  std::string traceback;
};

class Engine {
 public:
  explicit Engine(EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Adds `fn` as require("<module>").<name> (and hoist.<module> if module starts "hoist.").
  void register_function(const std::string& module, const std::string& name, HostFunction fn);
  void register_module(const std::string& module, std::map<std::string, HostFunction> functions);
  void register_lua_module(const std::string& module, LuaOpener opener);

  void add_secret(const std::string& value);
  void add_sink(std::shared_ptr<Sink> sink);
  EventBus& events();

  // args become hoist.args inside the script.
  RunResult run_file(const std::string& path, const nlohmann::json& args = nlohmann::json::object());
  RunResult run_string(const std::string& code, const std::string& chunkname,
                       const nlohmann::json& args = nlohmann::json::object());
  // "container@1", "container@1.2.0", "container": a pipeline bundled with the engine.
  RunResult run_pipeline(const std::string& spec, const nlohmann::json& args = nlohmann::json::object());

  // Thread-safe: asks the running script to stop; waiting primitives fail with `cancelled`.
  void cancel();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hoist
