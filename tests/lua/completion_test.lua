-- `hoist completion bash|zsh`: the bash script sourced in bash, COMP_WORDS/COMP_CWORD set as
-- bash sets them, _hoist called, COMPREPLY checked: commands, flags, flag values, pipeline
-- names and versions, a pipeline's --set parameter names. The zsh script: what it must name,
-- `zsh -n`, and compinit registering it for hoist (zsh is in .ci/packages).
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local function completion(kind)
  local r = support.run_hoist({ "completion", kind }, { env = { NO_COLOR = "1" } })
  t.eq(r.code, 0, r.stderr)
  return r.stdout
end

local BASH = completion("bash")
local dir = support.tmpdir("hoist-completion")
support.write(dir .. "/hoist.bash", BASH)

-- COMPREPLY for the words typed so far (the last one is being completed), sorted.
local function complete(words)
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = "'" .. w:gsub("'", "'\\''") .. "'" end
  local script = ('source "$1"; COMP_WORDS=(%q %s); COMP_CWORD=%d; _hoist; printf "%%s\\n" "${COMPREPLY[@]}" | sort')
    :format(support.hoist_bin(), table.concat(quoted, " "), #words)
  local r = hoist.exec { "bash", "-c", script, "bash", dir .. "/hoist.bash", cwd = dir, env = { HOIST_LUA_PATH = os.getenv("HOIST_LUA_PATH") or "" } }
  t.eq(r.code, 0, r.stderr)
  local out = {}
  for l in r.stdout:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

local function has(list, item)
  for _, v in ipairs(list) do if v == item then return true end end
  return false
end

t.cases("bash completes", {
  { name = "the commands", words = { "" }, want = { "run", "test", "pipelines", "completion", "lsp-defs", "--version" } },
  { name = "a command's prefix", words = { "ro" }, exact = { "rollback" } },
  { name = "bundled pipelines and their versions", words = { "run", "dem" },
    exact = { "demo", "demo@1", "demo@1.2.0", "demo@2", "demo@2.0.1" } },
  { name = "a pipeline after flags that take values", words = { "run", "--state-dir", "/tmp/x", "--log-level", "warn", "cont" },
    exact = { "container", "container@1", "container@1.3.0" } },
  { name = "--set names of the named pipeline", words = { "run", "container@1", "--set", "ima" }, exact = { "image=" } },
  { name = "--set names after other flags", words = { "run", "--dry-run", "container", "--no-color", "--set", "target" },
    exact = { "target=" } },
  { name = "--set names of an unknown pipeline: none", words = { "run", "nosuch", "--set", "" }, exact = {} },
  { name = "a flag's values", words = { "run", "container@1", "--log-level", "" }, exact = { "debug", "error", "info", "warn" } },
  { name = "a command's flags", words = { "run", "container@1", "--dr" }, exact = { "--dry-run" } },
  { name = "runs' flags", words = { "runs", "--j" }, exact = { "--json" } },
  { name = "completion's shells", words = { "completion", "" }, exact = { "bash", "zsh" } },
  { name = "plan's pipeline", words = { "plan", "--matrix", "cont" }, want = { "container", "container@1" } },
  { name = "plan's --set names of its pipeline", words = { "plan", "--matrix", "container@1", "--set", "ima" }, exact = { "image=" } },
  { name = "plan's formats", words = { "plan", "--format", "" }, exact = { "github", "jobs" } },
  { name = "plan's flags", words = { "plan", "--sli" }, exact = { "--slice-size", "--slices" } },
  { name = "the new --secrets-env flag", words = { "run", "x.lua", "--secr" }, exact = { "--secrets-env" } },
}, function(row)
  local got = complete(row.words)
  if row.exact then t.eq(got, row.exact) end
  for _, w in ipairs(row.want or {}) do t.ok(has(got, w), w .. " in " .. table.concat(got, " ")) end
end)

t.case("bash completes the --set names of a pipeline file; none for a plain script", function()
  support.write(dir .. "/mine.lua", [[
return hoist.pipeline.define {
  name = "mine", version = "0.1.0",
  params = { region = { type = "string" }, replicas = { type = "number", default = 1 } },
  stages = { { name = "noop", run = function() end } },
}
]])
  support.write(dir .. "/plain.lua", "print('hi')\n")
  t.eq(complete { "run", "mine.lua", "--set", "re" }, { "region=", "replicas=" })
  t.eq(complete { "run", "plain.lua", "--set", "" }, {})
end)

t.case("bash completes script files for `hoist run`", function()
  support.write(dir .. "/deploy-site.lua", "return 1\n")
  t.ok(has(complete { "run", "deploy-s" }, "deploy-site.lua"))
end)

t.case("the words the scripts ask the binary for", function()
  local r = support.run_hoist({ "completion", "params", "demo@2" }, {})
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, "^[%w_\n]+$")
  local p = support.run_hoist({ "completion", "pipelines" }, {})
  t.match(p.stdout, "\ncontainer@1\n")
  local bad = support.run_hoist({ "completion", "fish" }, {})
  t.eq(bad.code, 2)
  t.match(bad.stderr, "fish not in")
end)

t.case("zsh: a #compdef script naming every command and the dynamic lists", function()
  local zsh = completion("zsh")
  t.match(zsh, "^#compdef hoist\n")
  local commands = support.run_hoist({ "completion", "commands" }, {}).stdout
  for c in commands:gmatch("[^\n]+") do t.match(zsh, "\n    " .. c:gsub("%-", "%%-") .. "%) _arguments") end
  t.match(zsh, "completion pipelines")
  t.match(zsh, "completion params")
  t.match(zsh, "'%-%-log%-level%[[^]]*%]:value:%(debug info warn error%)'")
  local zdir = support.tmpdir("hoist-zsh")
  support.write(zdir .. "/_hoist", zsh)
  local syntax = hoist.exec { "zsh", "-n", zdir .. "/_hoist" }
  t.eq(syntax.code, 0, syntax.stderr)
  local r = hoist.exec { "zsh", "-f", "-c", 'fpath=("$1" $fpath); autoload -U compinit; compinit -u -d "$1/.zcompdump"; ' ..
                         'print -r -- "${_comps[hoist]}"', "zsh", zdir }
  t.eq(r.code, 0, r.stderr)
  t.eq(r.stdout, "_hoist\n", "compinit reads #compdef and completes hoist with _hoist")
end)
