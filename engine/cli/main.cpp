// The hoist command: a small host of libhoist.
#include <hoist/engine.hpp>
#include <hoist/version.hpp>

#include <CLI/CLI.hpp>
#include <boost/version.hpp>
#include <curl/curl.h>
#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace {

constexpr int kExitUsage = 2;

struct RunFlags {
  std::string target;
  std::vector<std::string> sets;
  std::string params_file;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string state_dir = ".hoist";
  bool dry_run = false;
  bool no_color = false;
  bool help = false;
  std::vector<std::string> extra;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "hoist: " << message << "\n";
  std::exit(kExitUsage);
}

nlohmann::json collect_args(const RunFlags& f) {
  nlohmann::json args = nlohmann::json::object();
  if (!f.params_file.empty()) {
    std::ifstream in(f.params_file);
    if (!in) usage_error("cannot read --params-file " + f.params_file + ": no such file");
    try {
      args = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      usage_error("--params-file " + f.params_file + " is not valid JSON: " + e.what());
    }
    if (!args.is_object()) usage_error("--params-file " + f.params_file + " must hold a JSON object");
  }
  for (auto& s : f.sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      usage_error("--set expects key=value, got '" + s + "'");
    std::string key = s.substr(0, eq);
    for (char c : key)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
        usage_error("--set key '" + key + "' may hold only letters, digits, '_', '-' and '.'");
    args[key] = s.substr(eq + 1);
  }
  return args;
}

hoist::EngineOptions engine_options(const RunFlags& f) {
  if (f.log_format != "text" && f.log_format != "json")
    usage_error("--log-format must be text or json, got '" + f.log_format + "'");
  hoist::EngineOptions o;
  o.state_dir = f.state_dir;
  o.log_format = f.log_format;
  o.log_level = f.log_level;
  o.color = !f.no_color && isatty(STDERR_FILENO) && !std::getenv("NO_COLOR");
  o.dry_run = f.dry_run;
  o.handle_signals = true;
  return o;
}

bool looks_like_file(const std::string& target) {
  return target.find('/') != std::string::npos || target.ends_with(".lua") ||
         std::filesystem::exists(target);
}

// One readable paragraph: where, what, why; the traceback only at debug level.
void print_failure(const hoist::RunResult& r, const std::string& log_level) {
  const auto& e = *r.error;
  std::cerr << "\nhoist: run " << r.run_id << " failed";
  if (!r.where.empty()) std::cerr << " at " << r.where;
  std::cerr << "\n  " << hoist::to_string(e.code()) << ": " << e.message() << "\n";
  auto details = e.details();
  details.erase("exit_code");
  if (!details.empty()) std::cerr << "  details: " << details.dump() << "\n";
  if (!r.traceback.empty() && log_level == "debug") std::cerr << r.traceback << "\n";
}

int run_command(const RunFlags& f, bool test_mode) {
  auto args = collect_args(f);
  auto options = engine_options(f);
  if (test_mode) options.write_run_dir = false;
  hoist::Engine engine(options);
  hoist::RunResult r;
  if (test_mode) {
    nlohmann::json paths = nlohmann::json::array();
    paths.push_back(f.target);
    for (auto& p : f.extra) paths.push_back(p);
    r = engine.run_string(
        "local paths = ...\nlocal failed = require('hoist.test').main(paths.paths, paths)\n"
        "if failed > 0 then hoist.error{code='tool_failed', message=failed..' test(s) failed'} end",
        "hoist test", {{"paths", paths}});
    if (!r.ok && r.error->code() == hoist::Code::tool_failed) return 1;
  } else if (f.help) {
    r = engine.run_string("local spec = ...\nprint(require('hoist.scripts').help(spec.spec))", "hoist help",
                          {{"spec", f.target}});
  } else if (looks_like_file(f.target)) {
    r = engine.run_file(f.target, args);
  } else {
    r = engine.run_pipeline(f.target, args);
  }
  if (!r.ok) print_failure(r, f.log_level);
  return r.exit_code;
}

void add_run_flags(CLI::App* cmd, RunFlags& f) {
  cmd->add_option("--set", f.sets, "Set a parameter: key=value (repeatable)");
  cmd->add_option("--params-file", f.params_file, "Parameters as a JSON object");
  cmd->add_option("--log-format", f.log_format, "text (default) or json, on stderr");
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error");
  cmd->add_option("--state-dir", f.state_dir, "Where runs are recorded (default .hoist)");
  cmd->add_flag("--dry-run", f.dry_run, "Report every change the run would make, make none");
  cmd->add_flag("--no-color", f.no_color, "Plain terminal output");
}

void print_version() {
  auto* cv = curl_version_info(CURLVERSION_NOW);
  std::cout << "hoist " << hoist::kVersion << "\n"
            << "  " << LUAJIT_VERSION << "\n"
            << "  libcurl " << cv->version << (cv->ssl_version ? std::string(" (") + cv->ssl_version + ")" : "")
            << "\n"
            << "  Boost " << BOOST_VERSION / 100000 << "." << BOOST_VERSION / 100 % 1000 << "."
            << BOOST_VERSION % 100 << "\n"
            << "  nlohmann_json " << NLOHMANN_JSON_VERSION_MAJOR << "." << NLOHMANN_JSON_VERSION_MINOR << "."
            << NLOHMANN_JSON_VERSION_PATCH << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hoist: build, scan, push, deploy and verify containers, scripted in Lua"};
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 succeeded; 1 failed (rolled back if a pipeline); 2 usage error; "
      "3 failed and rollback incomplete; 4 refused by a policy gate; 130 cancelled.");

  RunFlags run_flags;
  auto* run = app.add_subcommand("run", "Run a Lua script or a bundled pipeline (NAME[@VERSION])");
  run->set_help_flag();  // `hoist run PIPELINE --help` prints the pipeline's parameters
  run->add_flag("-h,--help", run_flags.help, "Show this help, or a pipeline's parameters");
  run->add_option("target", run_flags.target, "Script file or pipeline (container, container@1)");
  add_run_flags(run, run_flags);

  RunFlags test_flags;
  test_flags.log_level = "warn";
  auto* test = app.add_subcommand("test", "Run Lua test files (*_test.lua, test_*.lua) with the engine");
  test->add_option("path", test_flags.target, "Test file or folder")->required();
  test->add_option("more", test_flags.extra, "More files or folders");
  add_run_flags(test, test_flags);

  RunFlags doctor_flags;
  doctor_flags.log_level = "warn";
  auto* doctor = app.add_subcommand("doctor", "Which tools hoist can use here, and what a missing one disables");
  doctor->add_flag("--json", doctor_flags.dry_run, "Print the report as JSON");

  auto* version = app.add_subcommand("version", "Engine and library versions");

  RunFlags list_flags;
  list_flags.log_level = "warn";
  auto* pipelines = app.add_subcommand("pipelines", "List the bundled pipelines and their versions");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }

  try {
    if (*version) {
      print_version();
      return 0;
    }
    if (*run) {
      if (run_flags.target.empty()) {
        std::cout << run->help();
        return run_flags.help ? 0 : kExitUsage;
      }
      return run_command(run_flags, false);
    }
    if (*test) return run_command(test_flags, true);
    if (*doctor) {
      RunFlags f = doctor_flags;
      auto options = engine_options(f);
      options.write_run_dir = false;
      hoist::Engine engine(options);
      auto r = engine.run_string("local a = ...\nreturn require('hoist.doctor').main(a)", "hoist doctor",
                                 {{"json", doctor_flags.dry_run}});
      if (!r.ok) print_failure(r, "info");
      return r.exit_code;
    }
    if (*pipelines) {
      auto options = engine_options(list_flags);
      options.write_run_dir = false;
      hoist::Engine engine(options);
      auto r = engine.run_string("return require('hoist.scripts').print_list()", "hoist pipelines");
      if (!r.ok) print_failure(r, "info");
      return r.exit_code;
    }
  } catch (const hoist::Error& e) {
    std::cerr << "hoist: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
