// A host program that embeds hoist: it adds its own Lua function, watches every event,
// and runs a script that calls the function.
#include <hoist/engine.hpp>

#include <iostream>

int main(int argc, char** argv) {
  std::string script = argc > 1 ? argv[1] : "script.lua";
  int events = 0;
  hoist::EngineOptions options;
  options.log_format = "none";
  options.write_run_dir = false;
  options.on_event = [&](const hoist::Event& e) {
    ++events;
    if (e.kind == "log") std::cout << "[event] " << e.level << ": " << e.message << "\n";
  };
  hoist::Engine engine(options);

  // require("inventory").lookup{name = "web"} from Lua
  engine.register_function("inventory", "lookup", [](const nlohmann::json& args) {
    std::string name = args.at("name").get<std::string>();
    if (name != "web") throw hoist::Error(hoist::Code::not_found, "no service named " + name);
    return nlohmann::json{{"name", name}, {"port", 8080}, {"replicas", 2}};
  });
  engine.add_secret("inventory-api-key-123");

  auto result = engine.run_file(script, {{"service", "web"}});
  if (!result.ok) {
    std::cerr << "failed at " << result.where << ": " << result.error->what() << "\n";
    return result.exit_code;
  }
  std::cout << "result: " << result.value.dump() << "\n"
            << "events seen: " << events << "\n";
  return 0;
}
