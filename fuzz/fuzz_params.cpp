// Run parameters: `--params-file` JSON and `--set` values, through what the CLI does with
// them. engine/cli/main.cpp reads them in a function private to main.cpp that exits on a bad
// value, so this target fuzzes the nearest callable units: the params file parsed with the
// depth bound main.cpp parses it with (hoist::parse_json), passed into a run as its arguments (the JSON bridge), and
// coerced and validated by hoist.pipeline.params against one parameter of every type.
// Input: text starting with '{' is a params file; anything else is --set values, one a line.
// Property: a run only ever fails with invalid_argument.
#include "fuzz/fuzz.hpp"

#include <hoist/engine.hpp>
#include <hoist/json.hpp>

#include <cstdint>

namespace {

const char kScript[] = R"(
local params = require "hoist.pipeline.params"
local specs = params.check_specs {
  s = { type = "string" }, n = { type = "number" }, b = { type = "boolean" },
  l = { type = "list" }, ln = { type = "list", items = "number" }, la = { type = "list", items = "any" },
  m = { type = "map" }, mb = { type = "map", items = "boolean" }, ma = { type = "map", items = "any" },
  p = { type = "string", pattern = "[a-z]+%d*" }, e = { type = "string", allowed = { "x", "y" } },
}
local raw = ...
for _, spec in pairs(specs) do
  for _, v in pairs(raw) do params.coerce(spec, v) end
end
params.validate(specs, raw)
)";
const char* const kNames[] = {"s", "n", "b", "l", "ln", "la", "m", "mb", "ma", "p", "e", "other"};

hoist::Engine& engine() {
  static hoist::Engine e({.log_format = "none", .write_run_dir = false});
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  nlohmann::json args = nlohmann::json::object();
  if (rest.starts_with('{')) {
    args = hoist::parse_json_or_discarded(rest);
    if (args.is_discarded() || !args.is_object()) return 0;  // main.cpp: a usage error
  } else {
    std::size_t i = 0;
    for (std::size_t start = 0; start <= rest.size(); ++i) {
      std::size_t end = std::min(rest.find('\n', start), rest.size());
      args[kNames[i % std::size(kNames)]] = std::string(rest.substr(start, end - start));
      start = end + 1;
    }
  }
  hoist::RunResult r = engine().run_string(kScript, "fuzz_params", args);
  if (!r.ok) {
    check(r.error.has_value(), "failed run without an error");
    if (r.error->code() != hoist::Code::invalid_argument)
      fail("params run failed with " + std::string(hoist::to_string(r.error->code())) + ": " + r.error->message());
  }
  return 0;
}
