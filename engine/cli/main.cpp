// The hoist command: a small host of libhoist.
#include <hoist/engine.hpp>
#include <hoist/json.hpp>
#include <hoist/proxy.hpp>  // hoist proxy
#include <hoist/version.hpp>

#include <CLI/CLI.hpp>
#include <boost/version.hpp>
#include <curl/curl.h>
#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <iostream>
#include <vector>
#include <unistd.h>

namespace {

constexpr int kExitUsage = 2;

struct RunFlags {
  std::string target;
  std::vector<std::string> sets;
  std::string params_file;
  std::string secrets_env;  // the name of a variable holding NAME=value lines
  std::string log_format = "text";
  std::string log_level = "info";
  std::string state_dir = ".hoist";
  bool dry_run = false;
  bool no_color = false;
  bool help = false;
  int jobs = 1;  // hoist test -j
  std::string run_id;  // hoist run --run-id (hoist serve names the runs it starts)
  std::vector<std::string> extra;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "hoist: " << message << "\n";
  std::exit(kExitUsage);
}

// How deep one parameter's value may nest: parameters are settings, not documents.
constexpr int kMaxParamDepth = 100;
// How large a --params-file may be, for the same reason.
constexpr std::size_t kMaxParamsFileBytes = 4 * 1024 * 1024;

// Levels of nesting of a JSON value (a scalar is 0), walked with an explicit stack.
int depth_of(const nlohmann::json& value) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> pending{{&value, 0}};
  while (!pending.empty()) {
    auto [v, d] = pending.back();
    pending.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& item : *v) pending.emplace_back(&item, d + 1);
  }
  return deepest;
}

nlohmann::json read_params_file(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) usage_error("cannot read --params-file " + path + ": no such file");
  if (std::filesystem::is_directory(status))
    usage_error("cannot read --params-file " + path + ": it is a directory, not a JSON file");
  // Read in bounded pieces, never whole: /dev/zero or a FIFO has no size to check first.
  std::ifstream in(path, std::ios::binary);
  if (!in) usage_error("cannot read --params-file " + path);
  std::string text;
  char chunk[64 * 1024];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxParamsFileBytes)
      usage_error("--params-file " + path + " is larger than " + std::to_string(kMaxParamsFileBytes / (1024 * 1024)) +
                  " MiB: parameters are settings, not data (pass a file's path as a parameter instead)");
  }
  if (in.bad()) usage_error("cannot read --params-file " + path);
  nlohmann::json args;
  try {
    args = hoist::parse_json(text);  // bounded nesting: no recursion on a hostile file
  } catch (const hoist::Error& e) {
    usage_error("--params-file " + path + " is not valid JSON: " + e.message());
  }
  if (!args.is_object()) usage_error("--params-file " + path + " must hold a JSON object");
  for (const auto& [key, value] : args.items())
    if (depth_of(value) > kMaxParamDepth)
      usage_error("--params-file " + path + ": parameter '" + key + "' nests deeper than " +
                  std::to_string(kMaxParamDepth) + " levels");
  return args;
}

std::string param_key(const std::string& s, const std::string& flag, const std::string& shown) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) usage_error(flag + " expects key=value, got " + shown);
  std::string key = s.substr(0, eq);
  for (char c : key)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      usage_error(flag + " key '" + key + "' may hold only letters, digits, '_', '-' and '.'");
  return key;
}

// --secrets-env VAR: the variable's lines NAME=value are parameters whose values are secrets
// (CI runners hand secrets over in the environment, never on a command line). Blank lines
// and lines starting with '#' are skipped; an error names the line, never its value.
using NamedSecrets = std::vector<std::pair<std::string, std::string>>;

void secrets_from_env(const std::string& var, nlohmann::json& args, NamedSecrets& secrets) {
  const char* text = std::getenv(var.c_str());
  if (!text) usage_error("--secrets-env " + var + ": the variable is not set");
  std::string all = text;
  std::size_t start = 0;
  for (int n = 1; start <= all.size(); ++n) {
    auto end = all.find('\n', start);
    std::string line = all.substr(start, end == std::string::npos ? std::string::npos : end - start);
    start = end == std::string::npos ? all.size() + 1 : end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[line.find_first_not_of(" \t")] == '#') continue;
    std::string key = param_key(line, "--secrets-env " + var, "line " + std::to_string(n) + " without '=' (value not shown)");
    std::string value = line.substr(key.size() + 1);
    args[key] = value;
    if (!value.empty()) secrets.emplace_back(key, value);
  }
}

nlohmann::json collect_args(const RunFlags& f, NamedSecrets* secrets = nullptr) {
  nlohmann::json args = nlohmann::json::object();
  if (!f.params_file.empty()) args = read_params_file(f.params_file);
  if (!f.secrets_env.empty()) {
    NamedSecrets found;
    secrets_from_env(f.secrets_env, args, found);
    if (secrets) *secrets = std::move(found);
  }
  for (auto& s : f.sets) args[param_key(s, "--set", "'" + s + "'")] = s.substr(s.find('=') + 1);
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
  if (!f.run_id.empty()) {
    for (char c : f.run_id)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
        usage_error("--run-id may hold only letters, digits, '-', '_' and '.', got '" + f.run_id + "'");
    if (f.run_id.front() == '.') usage_error("--run-id must not start with '.'");
    if (std::filesystem::exists(std::filesystem::path(f.state_dir) / "runs" / f.run_id))
      usage_error("--run-id " + f.run_id + ": a run with this id is already recorded in " + f.state_dir);
    o.run_id = f.run_id;
  }
  return o;
}

bool looks_like_file(const std::string& target) {
  return target.find('/') != std::string::npos || target.ends_with(".lua") ||
         std::filesystem::exists(target);
}

// One readable paragraph: where, what, why; the traceback only at debug level. A failed
// pipeline also says what its cause's own details were and what is left to undo.
// A run that left no folder (a usage error, a tool's own run) is not named: `hoist runs` and
// `hoist report` would not know its id.
void print_failure(const hoist::RunResult& r, const std::string& log_level) {
  const auto& e = *r.error;
  if (!r.recorded && r.exit_code == kExitUsage) {
    std::cerr << "hoist: " << hoist::to_string(e.code()) << ": " << e.message() << "\n";
  } else {
    std::cerr << "\nhoist: " << (r.recorded ? "run " + r.run_id + " failed" : std::string("failed"));
    if (!r.where.empty()) std::cerr << " at " << r.where;
    std::cerr << "\n  " << hoist::to_string(e.code()) << ": " << e.message() << "\n";
  }
  auto details = e.details();
  details.erase("exit_code");
  if (details.contains("cause") && details.contains("status")) {
    auto cause = details["cause"].value("details", nlohmann::json::object());
    if (cause.is_object() && !cause.empty()) std::cerr << "  details: " << cause.dump() << "\n";
    if (details["left"].is_array() && !details["left"].empty()) {
      std::cerr << "  NOT undone:";
      for (auto& l : details["left"]) std::cerr << " " << l.get<std::string>() << ";";
      std::cerr << "\n  finish with: hoist rollback " << details.value("run", r.run_id) << "\n";
    }
  } else if (!details.empty()) {
    std::cerr << "  details: " << details.dump() << "\n";
  }
  if (!r.traceback.empty() && log_level == "debug") std::cerr << r.traceback << "\n";
}

// --log-format json: the failure paragraph is one error-level event, like every other line.
void emit_failure(hoist::Engine& engine, const hoist::RunResult& r) {
  const auto& e = *r.error;
  std::string text = (r.recorded ? "run " + r.run_id + " failed" : std::string("failed")) +
                     (r.where.empty() ? "" : " at " + r.where) + ": " +
                     std::string(hoist::to_string(e.code())) + ": " + e.message();
  nlohmann::json fields = {{"exit_code", r.exit_code}, {"error", e.to_json()}};
  if (r.recorded) fields["run"] = r.run_id;
  if (!r.where.empty()) fields["where"] = r.where;
  if (!r.traceback.empty()) fields["traceback"] = r.traceback;
  engine.events().emit(hoist::Event{0, "error", "run.failed", text, fields});
  engine.events().flush();
}

// `hoist test -j N` runs each file in a child `hoist test FILE`: this binary, with the flags
// this run was given (the paths and -j are the runner's own).
nlohmann::json test_child_argv(const RunFlags& f) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  nlohmann::json argv = {ec ? std::string("hoist") : self.string(), "test", "--log-level", f.log_level,
                         "--log-format", f.log_format, "--state-dir", f.state_dir};
  if (f.dry_run) argv.push_back("--dry-run");
  if (f.no_color) argv.push_back("--no-color");
  if (!f.params_file.empty()) argv.insert(argv.end(), {"--params-file", f.params_file});
  if (!f.secrets_env.empty()) argv.insert(argv.end(), {"--secrets-env", f.secrets_env});
  for (auto& s : f.sets) argv.insert(argv.end(), {"--set", s});
  return argv;
}

int run_command(const RunFlags& f, bool test_mode) {
  NamedSecrets secrets;
  auto args = collect_args(f, &secrets);
  auto options = engine_options(f);
  if (test_mode || f.help) options.write_run_dir = false;
  hoist::Engine engine(options);
  for (auto& [key, value] : secrets) {  // before anything runs: masked from the first line
    try {
      engine.add_secret(value);
    } catch (const hoist::Error& e) {
      usage_error("--secrets-env " + f.secrets_env + ": " + key + ": " + e.message());
    }
  }
  hoist::RunResult r;
  if (test_mode) {
    nlohmann::json paths = nlohmann::json::array();
    paths.push_back(f.target);
    for (auto& p : f.extra) paths.push_back(p);
    r = engine.run_string(
        "local a = ...\nlocal failed = require('hoist.test').main(a.paths, a)\n"
        "if failed > 0 then hoist.error{code='tool_failed', message=failed..' test(s) failed'} end",
        "hoist test", {{"paths", paths}, {"jobs", f.jobs}, {"argv", test_child_argv(f)}});
    if (!r.ok && r.error->code() == hoist::Code::tool_failed) return 1;
  } else if (f.help) {
    r = engine.run_string(
        "local a = ...\nlocal text = a.file and require('hoist.pipeline').help_file(a.spec)\n"
        "  or require('hoist.scripts').help(a.spec)\nio.stdout:write(text)",
        "hoist help", {{"spec", f.target}, {"file", looks_like_file(f.target)}});
  } else if (looks_like_file(f.target)) {
    r = engine.run_file(f.target, args);
  } else {
    r = engine.run_pipeline(f.target, args);
  }
  if (!r.ok) {
    if (f.log_format == "json") emit_failure(engine, r);
    else print_failure(r, f.log_level);
  }
  return r.exit_code;
}

const char* const kStateDirHelp = "Where runs are recorded (default .hoist)";

void add_run_flags(CLI::App* cmd, RunFlags& f) {
  // one key=value per --set, so `--set a=b script.lua` keeps script.lua as the target
  cmd->add_option("--set", f.sets, "Set a parameter: key=value (repeatable)")->allow_extra_args(false);
  cmd->add_option("--params-file", f.params_file, "Parameters as a JSON object");
  cmd->add_option("--secrets-env", f.secrets_env,
                  "Parameters from the variable VAR, one NAME=value a line, each value a secret (masked everywhere)")
      ->type_name("VAR");
  cmd->add_option("--log-format", f.log_format, "text (default) or json, on stderr");
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  cmd->add_option("--state-dir", f.state_dir, kStateDirHelp);
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


// ---------------------------------------------------------------- hoist runs / rollback / report
// Commands about recorded runs: they read .hoist/runs/ and write no run folder of their own.
struct RunsFlags {
  std::string run_id;
  std::string state_dir = ".hoist";
  std::string html;
  std::string log_format = "text";
  bool json = false;
  bool force = false;
  bool no_color = false;
};

int lua_tool(const RunsFlags& f, const std::string& code, const std::string& name, nlohmann::json args,
             const std::string& log_level = "info") {
  RunFlags rf;
  rf.state_dir = f.state_dir;
  rf.log_format = f.log_format;
  rf.log_level = log_level;
  rf.no_color = f.no_color;
  auto options = engine_options(rf);
  options.write_run_dir = false;
  hoist::Engine engine(options);
  args["state_dir"] = f.state_dir;
  auto r = engine.run_string(code, name, args);
  if (!r.ok) {
    // The tool's own run id and chunk line would only confuse: say what went wrong.
    std::cerr << name << ": " << hoist::to_string(r.error->code()) << ": " << r.error->message() << "\n";
    auto details = r.error->details();
    if (details.contains("left")) std::cerr << "  NOT undone: " << details["left"].dump() << "\n";
  }
  return r.exit_code;
}

// Which recorded run a command reads: its id and where runs are recorded.
void add_run_ref(CLI::App* cmd, RunsFlags& f) {
  cmd->add_option("run", f.run_id, "Run id (see hoist runs)")->required();
  cmd->add_option("--state-dir", f.state_dir, kStateDirHelp);
}

void add_runs_commands(CLI::App& app, RunsFlags& f, CLI::App*& runs, CLI::App*& rollback, CLI::App*& report) {
  runs = app.add_subcommand("runs", "List recorded runs: status, pipeline, version, start, duration");
  runs->add_option("--state-dir", f.state_dir, kStateDirHelp);
  runs->add_flag("--json", f.json, "Print the list as JSON");
  rollback = app.add_subcommand("rollback", "Finish the rollback of a run (after a crash) from its journal");
  add_run_ref(rollback, f);
  rollback->add_flag("--force", f.force, "Also when the run succeeded or its process still runs");
  rollback->add_option("--log-format", f.log_format, "text (default) or json, on stderr");
  rollback->add_flag("--no-color", f.no_color, "Plain terminal output");
  report = app.add_subcommand("report", "Show a run: text on stdout, or a self-contained HTML page");
  add_run_ref(report, f);
  report->add_option("--html", f.html, "Write the HTML report to this file");
}

int runs_command(const RunsFlags& f, CLI::App* runs, CLI::App* rollback, CLI::App* report) {
  if (*runs)
    return lua_tool(f, "local a = ...\nrequire('hoist.pipeline.report').print_runs("
                       "require('hoist.pipeline').runs{state_dir = a.state_dir}, {json = a.json})",
                    "hoist runs", {{"json", f.json}}, "warn");
  if (*rollback)
    return lua_tool(f, "local a = ...\nrequire('hoist.pipeline').rollback{run = a.run, state_dir = a.state_dir, force = a.force}",
                    "hoist rollback", {{"run", f.run_id}, {"force", f.force}});
  return lua_tool(f, "local a = ...\nrequire('hoist.pipeline.html').main{run = a.run, state_dir = a.state_dir, html = a.html}",
                  "hoist report", {{"run", f.run_id}, {"html", f.html}}, "warn");
}
// ---------------------------------------------------------------- end of runs / rollback / report

// ---------------------------------------------------------------- hoist completion / lsp-defs
// Editor and shell helpers, written in Lua (hoist.completion, hoist.lsp). The completion
// scripts are made from this very command line's definition, so a new command or flag
// completes without anyone editing them.
nlohmann::json cli_spec(CLI::App& app) {
  nlohmann::json commands = nlohmann::json::array();
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    nlohmann::json flags = nlohmann::json::array(), positionals = nlohmann::json::array();
    for (const auto* opt : sub->get_options()) {
      if (opt->get_positional()) {
        positionals.push_back(opt->get_name());
        continue;
      }
      for (const auto& name : opt->get_lnames())
        flags.push_back({{"name", "--" + name}, {"value", opt->get_expected_min() > 0}, {"help", opt->get_description()}});
      for (const auto& name : opt->get_snames())
        flags.push_back({{"name", "-" + name}, {"value", opt->get_expected_min() > 0}, {"help", opt->get_description()}});
    }
    commands.push_back({{"name", sub->get_name()}, {"help", sub->get_description()}, {"flags", flags},
                        {"positionals", positionals}});
  }
  return {{"commands", commands}};
}

struct EditorFlags {
  std::string kind, pipeline, dir;
};

void add_editor_commands(CLI::App& app, EditorFlags& f, CLI::App*& completion, CLI::App*& lsp_defs) {
  completion = app.add_subcommand("completion", "Print the shell completion script: hoist completion bash|zsh");
  completion->add_option("shell", f.kind, "bash or zsh (the scripts call it with commands, pipelines or params PIPELINE)")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "commands", "pipelines", "params"}));
  completion->add_option("pipeline", f.pipeline, "For params: the pipeline whose --set names are listed");
  lsp_defs = app.add_subcommand("lsp-defs", "Write LuaLS definitions of hoist.* and a .luarc.json into DIR");
  lsp_defs->add_option("dir", f.dir, "Folder of the Lua project (definitions go to DIR/.hoist/lsp)")->required();
}

int editor_command(CLI::App& app, const EditorFlags& f, CLI::App* completion) {
  RunsFlags rf;
  if (*completion)
    return lua_tool(rf, "local a = ...\nrequire('hoist.completion').main(a)", "hoist completion",
                    {{"kind", f.kind}, {"pipeline", f.pipeline}, {"cli", cli_spec(app)}}, "error");
  return lua_tool(rf, "local a = ...\nrequire('hoist.lsp').main{dir = a.dir}", "hoist lsp-defs", {{"dir", f.dir}}, "warn");
}
// ---------------------------------------------------------------- end of completion / lsp-defs

// ---------------------------------------------------------------- hoist plan --matrix
// The fan-out of a fleet handed to the engines users run (stdlib/hoist/plan.lua, docs/plan.md):
// a GitHub Actions matrix or Kubernetes Jobs, one slice of the services each.
struct PlanFlags {
  bool matrix = false;
  std::string pipeline, params_file, format = "github", image, out, name, artifacts, namespace_, service_account;
  std::vector<std::string> sets, secrets;
  int max_parallel = 0, slice_size = 0, slices = 0, ttl = 0;
};

void add_plan_command(CLI::App& app, PlanFlags& f, CLI::App*& cmd) {
  cmd = app.add_subcommand("plan", "Plan a fleet's fan-out: a GitHub Actions matrix or Kubernetes Jobs, one slice of the services each");
  cmd->add_flag("--matrix", f.matrix, "Plan the slices of the params file's services (or targets) as a matrix (required)");
  cmd->add_option("pipeline", f.pipeline, "The pipeline each slice runs (container@1, or a pipeline file)");
  cmd->add_option("--params-file", f.params_file, "The fleet's parameters: a JSON object with a services (or targets) list");
  cmd->add_option("--set", f.sets, "A parameter for every slice: key=value (repeatable)")->allow_extra_args(false);
  cmd->add_option("--max-parallel", f.max_parallel, "Slices running at once (default: all)")->type_name("N")->check(CLI::PositiveNumber);
  cmd->add_option("--slice-size", f.slice_size, "Services per slice (default 1)")->type_name("K")->check(CLI::PositiveNumber);
  cmd->add_option("--slices", f.slices, "Number of slices, services spread evenly")->type_name("N")->check(CLI::PositiveNumber);
  cmd->add_option("--format", f.format, "github (strategy.matrix JSON, default) or jobs (Kubernetes YAML)")
      ->check(CLI::IsMember({"github", "jobs"}));
  cmd->add_option("--image", f.image, "jobs: the hoist image every Job runs");
  cmd->add_option("--secret", f.secrets, "jobs: a Secret whose keys become the Jobs' environment (repeatable; default hoist-credentials)")
      ->allow_extra_args(false);
  cmd->add_option("--artifacts", f.artifacts, "jobs: the build's artifacts_out file; its digests go in the ConfigMap");
  cmd->add_option("--namespace", f.namespace_, "jobs: the namespace of the ConfigMap and the Jobs");
  cmd->add_option("--service-account", f.service_account, "jobs: the Jobs' service account (in-cluster credentials)");
  cmd->add_option("--ttl", f.ttl, "jobs: seconds a finished Job is kept (default 86400)")->check(CLI::Range(1, 31536000));
  cmd->add_option("--name", f.name, "The plan's name: labels and Job names (default: hoist-<params file name>)");
  cmd->add_option("--out", f.out, "Also write the plan into this folder (matrix.json, or NAME.yaml)")->type_name("DIR");
}

int plan_command(const PlanFlags& f) {
  if (!f.matrix) usage_error("plan: say what to plan: hoist plan --matrix PIPELINE --params-file FILE");
  if (f.params_file.empty()) usage_error("plan: --params-file is required: it names the services to slice");
  nlohmann::json sets = nlohmann::json::array();
  for (auto& s : f.sets) {
    param_key(s, "--set", "'" + s + "'");
    sets.push_back(s);
  }
  RunsFlags rf;
  return lua_tool(rf, "local a = ...\nrequire('hoist.plan').main(a)", "hoist plan",
                  {{"pipeline", f.pipeline}, {"params_file", f.params_file}, {"params", read_params_file(f.params_file)},
                   {"sets", sets}, {"format", f.format}, {"image", f.image}, {"out", f.out}, {"name", f.name},
                   {"artifacts", f.artifacts}, {"namespace", f.namespace_}, {"service_account", f.service_account},
                   {"secrets", f.secrets}, {"max_parallel", f.max_parallel}, {"slice_size", f.slice_size},
                   {"slices", f.slices}, {"ttl", f.ttl}},
                  "warn");
}
// ---------------------------------------------------------------- end of hoist plan

// ---------------------------------------------------------------- hoist proxy (container helper)
// A stable TCP front on a service port (engine/local/proxy.cpp). The local deploy target
// starts it detached and switches its upstream; operators can do the same by hand.
struct ProxyFlags {
  std::string listen, upstream, state, name, log, switch_to;
  bool detach = false, stop = false, status = false;
  double timeout = 10;
};

void add_proxy_command(CLI::App& app, ProxyFlags& f, CLI::App*& cmd) {
  cmd = app.add_subcommand("proxy", "A TCP front on a service port that switches upstream without dropping connections");
  cmd->add_option("--listen", f.listen, "Listen on HOST:PORT (e.g. 127.0.0.1:8080)");
  cmd->add_option("--upstream", f.upstream, "Send connections to HOST:PORT");
  cmd->add_option("--state", f.state, "State file (pid, listen, upstream); how the proxy is found again");
  cmd->add_option("--name", f.name, "Service name, recorded in the state file and the log");
  cmd->add_option("--log", f.log, "Log file when detached (default: the state file with .log)");
  cmd->add_flag("--detach", f.detach, "Run in the background (survives this process); prints the state");
  cmd->add_option("--switch", f.switch_to, "Switch the running proxy of --state to HOST:PORT and wait for it");
  cmd->add_flag("--stop", f.stop, "Stop the running proxy of --state (open connections may finish)");
  cmd->add_flag("--status", f.status, "Print the state of --state as JSON (exit 1 when not running)");
  cmd->add_option("--timeout", f.timeout, "Seconds to wait for --switch or --stop (default 10)");
}

int proxy_command(const ProxyFlags& f) {
  namespace proxy = hoist::proxy;
  auto ms = std::chrono::milliseconds(static_cast<long>(f.timeout * 1000));
  int modes = (f.stop ? 1 : 0) + (f.status ? 1 : 0) + (f.switch_to.empty() ? 0 : 1);
  if (modes > 1) usage_error("proxy: use one of --switch, --stop, --status");
  if (modes == 1 && f.state.empty()) usage_error("proxy: --switch, --stop and --status need --state FILE");
  try {
    if (!f.switch_to.empty()) {
      std::cout << proxy::switch_upstream(f.state, proxy::Endpoint::parse(f.switch_to, "--switch"), ms).dump() << "\n";
      return 0;
    }
    if (f.stop) {
      std::cout << (proxy::stop(f.state, ms) ? "stopped" : "not running") << "\n";
      return 0;
    }
    if (f.status) {
      auto s = proxy::status(f.state);
      std::cout << s.dump() << "\n";
      return s["running"].get<bool>() ? 0 : 1;
    }
    if (f.listen.empty() || f.upstream.empty()) usage_error("proxy: --listen and --upstream are required");
    proxy::Options o;
    o.listen = proxy::Endpoint::parse(f.listen, "--listen");
    o.upstream = proxy::Endpoint::parse(f.upstream, "--upstream");
    o.state_file = f.state;
    o.name = f.name;
    o.log_file = f.log;
    return proxy::serve(o, f.detach);
  } catch (const hoist::Error& e) {
    std::cerr << "hoist proxy: " << hoist::to_string(e.code()) << ": " << e.message() << "\n";
    return e.code() == hoist::Code::invalid_argument ? kExitUsage : 1;
  }
}

// ---------------------------------------------------------------- hoist serve
// The webhook receiver: engine/serve (the HTTP(S) listener) under stdlib/hoist/serve.lua
// (signatures, routes, the durable queue, the runs). docs/serve.md.
struct ServeFlags {
  std::string config, listen, state_dir = ".hoist", tls_cert, tls_key, log_format = "text", log_level = "info";
  std::size_t max_body = 0;  // 0: the config's, else 1 MiB
  bool no_color = false, check = false;
};

void add_serve_command(CLI::App& app, ServeFlags& f, CLI::App*& cmd) {
  cmd = app.add_subcommand("serve", "Receive signed webhooks (MLflow, Azure Databricks, GitHub, generic) and start pipeline runs");
  cmd->add_option("--config", f.config, "The serve config: a Lua file returning {routes = {...}} (docs/serve.md)")->required();
  cmd->add_option("--listen", f.listen, "HOST:PORT to listen on (default: the config's listen, else 127.0.0.1:8787)");
  cmd->add_option("--state-dir", f.state_dir, "Queue, de-duplication record, locks and runs (default .hoist)");
  cmd->add_option("--tls-cert", f.tls_cert, "Serve HTTPS with this certificate chain (PEM)");
  cmd->add_option("--tls-key", f.tls_key, "The certificate's private key (PEM)");
  cmd->add_option("--max-body", f.max_body, "Largest body accepted, in bytes (default: the config's max_body, else 1048576); larger: 413")
      ->check(CLI::Range(static_cast<std::size_t>(1), static_cast<std::size_t>(64) * 1024 * 1024));
  cmd->add_flag("--check", f.check, "Load the config, check its routes and secrets, print them, and exit");
  cmd->add_option("--log-format", f.log_format, "text (default) or json, on stderr");
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  cmd->add_flag("--no-color", f.no_color, "Plain terminal output");
}

int serve_command(const ServeFlags& f) {
  RunFlags rf;
  rf.state_dir = f.state_dir;
  rf.log_format = f.log_format;
  rf.log_level = f.log_level;
  rf.no_color = f.no_color;
  auto options = engine_options(rf);
  options.write_run_dir = false;  // a server, not a run: the runs it starts have folders
  hoist::Engine engine(options);
  auto r = engine.run_string("local a = ...\nreturn require('hoist.serve').main(a)", "hoist serve",
                             {{"config", f.config}, {"listen", f.listen}, {"state_dir", f.state_dir},
                              {"tls_cert", f.tls_cert}, {"tls_key", f.tls_key}, {"max_body", f.max_body},
                              {"check", f.check}});
  if (!r.ok) {
    if (r.error->code() == hoist::Code::cancelled) return 0;  // SIGTERM: stopped as asked
    std::cerr << "hoist serve: " << hoist::to_string(r.error->code()) << ": " << r.error->message() << "\n";
    auto details = r.error->details();
    if (!details.empty()) std::cerr << "  details: " << details.dump() << "\n";
    // a config, a secret or a listen address that is wrong: nothing was served
    if (r.error->code() == hoist::Code::invalid_argument || r.error->code() == hoist::Code::conflict) return kExitUsage;
  }
  return r.exit_code;
}
// ---------------------------------------------------------------- end of hoist serve

// The local deploy target runs this very executable (`hoist proxy --detach`): tell the Lua
// side where it is, unless the caller chose one.
void export_self_path() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && !std::getenv("HOIST_BIN")) ::setenv("HOIST_BIN", self.c_str(), 1);
}
// ---------------------------------------------------------------- end of hoist proxy
}  // namespace

int main(int argc, char** argv) {
  export_self_path();  // hoist proxy
  CLI::App app{"hoist: build, scan, push, deploy and verify containers, scripted in Lua", "hoist"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("hoist ") + hoist::kVersion, "Print the version and exit");
  app.footer(
      "Exit codes: 0 succeeded; 1 failed (rolled back if a pipeline); 2 usage error; "
      "3 failed and rollback incomplete; 4 refused by a policy gate; 130 cancelled.");

  RunFlags run_flags;
  auto* run = app.add_subcommand("run", "Run a Lua script or a bundled pipeline (NAME[@VERSION])");
  run->set_help_flag();  // `hoist run PIPELINE --help` prints the pipeline's parameters
  run->add_flag("-h,--help", run_flags.help, "Show this help, or a pipeline's parameters");
  run->add_option("target", run_flags.target, "Script file or pipeline (container, container@1)");
  add_run_flags(run, run_flags);
  run->add_option("--run-id", run_flags.run_id, "The run's id (default: a new one); hoist serve names the runs it starts");

  RunFlags test_flags;
  test_flags.log_level = "warn";
  auto* test = app.add_subcommand("test", "Run Lua test files (*_test.lua, test_*.lua) with the engine");
  test->add_option("path", test_flags.target, "Test file or folder")->required();
  test->add_option("more", test_flags.extra, "More files or folders");
  add_run_flags(test, test_flags);
  test->add_option("-j,--jobs", test_flags.jobs, "Run up to N test files at once, each in its own process (default 1)")
      ->check(CLI::Range(1, 256));

  RunFlags doctor_flags;
  doctor_flags.log_level = "warn";
  bool doctor_json = false;
  auto* doctor = app.add_subcommand("doctor", "Which tools hoist can use here, and what a missing one disables");
  doctor->add_flag("--json", doctor_json, "Print the report as JSON");

  auto* version = app.add_subcommand("version", "Engine and library versions");

  RunFlags list_flags;
  list_flags.log_level = "warn";
  auto* pipelines = app.add_subcommand("pipelines", "List the bundled pipelines and their versions");

  RunsFlags runs_flags;
  CLI::App *runs_cmd = nullptr, *rollback_cmd = nullptr, *report_cmd = nullptr;
  add_runs_commands(app, runs_flags, runs_cmd, rollback_cmd, report_cmd);

  EditorFlags editor_flags;
  CLI::App *completion_cmd = nullptr, *lsp_defs_cmd = nullptr;
  add_editor_commands(app, editor_flags, completion_cmd, lsp_defs_cmd);

  ProxyFlags proxy_flags;  // hoist proxy
  CLI::App* proxy_cmd = nullptr;
  add_proxy_command(app, proxy_flags, proxy_cmd);

  ServeFlags serve_flags;  // hoist serve
  CLI::App* serve_cmd = nullptr;
  add_serve_command(app, serve_flags, serve_cmd);

  PlanFlags plan_flags;  // hoist plan --matrix
  CLI::App* plan_cmd = nullptr;
  add_plan_command(app, plan_flags, plan_cmd);

  if (argc > 1 && argv[1][0] != '-') {
    std::string name = argv[1];
    bool known = false;
    std::string names;
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == name;
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) usage_error("unknown command '" + name + "' (commands: " + names + "; see hoist --help)");
  }
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
    if (*proxy_cmd) return proxy_command(proxy_flags);  // hoist proxy
    if (*serve_cmd) return serve_command(serve_flags);  // hoist serve
    if (*plan_cmd) return plan_command(plan_flags);     // hoist plan --matrix
    if (*completion_cmd || *lsp_defs_cmd) return editor_command(app, editor_flags, completion_cmd);
    if (*run) {
      if (run_flags.target.empty()) {
        std::cout << run->help();
        return run_flags.help ? 0 : kExitUsage;
      }
      return run_command(run_flags, false);
    }
    if (*test) return run_command(test_flags, true);
    if (*runs_cmd || *rollback_cmd || *report_cmd) return runs_command(runs_flags, runs_cmd, rollback_cmd, report_cmd);
    if (*doctor) {
      RunFlags f = doctor_flags;
      auto options = engine_options(f);
      options.write_run_dir = false;
      hoist::Engine engine(options);
      auto r = engine.run_string("local a = ...\nreturn require('hoist.doctor').main(a)", "hoist doctor",
                                 {{"json", doctor_json}});
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
