--- hoist.targets: where a pipeline deploys, and the contract every target keeps.
---
--- A target is a module `hoist.targets.<name>` (see docs/targets.md), made with `define`:
---   deploy(opts) -> {service, url, image, previous}   opts: the common options below plus
---                                                      the target's own (`M.options`)
---   status(opts) -> {service, serving, image?, url?}   what runs now; changes nothing
---   remove(opts) -> {removed = {...}}                  takes the service down; idempotent
---   preflight(opts) -> {checks = {...}}                checks what a deploy needs, changing
---                                                      nothing: options, credentials, the
---                                                      place it deploys to
---   compensations = {"<name>.<action>", ...}           the named rollback actions deploy
---                                                      registers (hoist.pipeline.action)
---   options = {<name> = spec}                          its own options, specs as params
---   lock(opts) -> hoist.targets.Lock                   optional: how two deploys of one
---                                                      service are kept apart (default:
---                                                      a file lock in the state folder)
--- `define` wraps deploy, status, remove and preflight so that every call goes through one
--- option check (`check_options`) before the target's code runs: an unknown option or a bad
--- value is refused the same way on every target. container@1 knows targets only through
--- this module: `registered` is the one list of names.
local M = {}

--- The targets this engine ships, in the order they are listed (local, the default, first).
---@type string[]
M.registered = {
  "local",        -- the local Docker engine behind a stable front (hoist proxy)
  "aci",          -- Azure Container Instances (a container group; ARM-side lock)
  "aks",          -- Azure Kubernetes Service (hoist.targets.kubernetes with the kubeconfig from Azure)
  "appservice",   -- Azure App Service (Web App for Containers)
  "containerapp", -- Azure Container Apps
  "kubernetes",   -- any Kubernetes cluster (a kubeconfig context)
}

---@class hoist.targets.DeployOptions the options every target takes
---@field service string the service's name (container, app, deployment): [A-Za-z0-9][A-Za-z0-9_.-]*
---@field image string what to run: a full reference, ideally repository@digest
---@field env? table<string, string> environment; a value registered with hoist.secret stays out of the journal
---@field secret_env? table<string, string> environment whose values are secrets (registered here); passed the target's secret way (a 0600 env file, a secure value, a Kubernetes Secret)
---@field container_port? integer the port the app listens on inside its container (default 8080)
---@field health_path? string GET path answering 200 when the app is healthy (default "/health")
---@field verify? {retries?: integer, interval?: number, timeout?: number} how the new version is checked before it takes traffic
---@field labels? table<string, string> more labels (or tags) on what the target creates
---@field lock_timeout? number seconds to wait while another run deploys the same service (default 300), then conflict
---@field ctx? hoist.StageContext registers the compensations (without it: none)
---@field run? string run id (default ctx.run.id, else hoist.run.id)
---@field state_dir? string the state folder (default hoist.run.state_dir)

---@class hoist.targets.DeployResult
---@field service string
---@field url string where the service answers
---@field image string what now serves
---@field previous? string what served before (nil on a first deploy)
---@field planned? boolean dry-run: nothing changed

---@class hoist.targets.Status
---@field service string
---@field serving boolean something answers for the service
---@field image? string what serves
---@field url? string

--- The common options as parameter specs (the shape of hoist.pipeline params), for a
--- pipeline that passes them on and for the contract test.
M.options = {
  service = { type = "string", required = true, pattern = "[%w][%w_.%-]*", max_length = 128,
              hint = "a name of letters, digits, '_', '.' and '-' starting with a letter or digit",
              description = "The service's name" },
  image = { type = "string", required = true, pattern = "%S+", hint = "an image reference", description = "Image reference to run (repository@digest)" },
  env = { type = "map", description = "Environment NAME=value" },
  secret_env = { type = "map", secret = true, description = "Environment whose values are secrets" },
  container_port = { type = "number", default = 8080, integer = true, min = 1, max = 65535,
                     description = "Port the app listens on in its container" },
  health_path = { type = "string", default = "/health", pattern = "/[^%s]*", hint = "a path starting with '/'",
                  description = "GET path that answers 200 when healthy" },
  verify = { type = "table", description = "{retries, interval, timeout} of the check before the switch" },
  labels = { type = "map", description = "More labels or tags on what the target creates" },
  lock_timeout = { type = "number", default = 300, min = 0, description = "Seconds to wait for another deploy of the service" },
  ctx = { type = "table", description = "The stage context that records the compensations" },
  run = { type = "string", description = "Run id" },
  state_dir = { type = "string", description = "State folder" },
}

-- The fields of a parameter spec that are value rules (hoist.util.value_problem).
local RULES = { "default", "allowed", "secret", "pattern", "hint", "min", "max", "integer", "max_length" }

--- Test hook of the targets: when the environment variable `variable` holds a number of
--- seconds, pauses that long (a window for a test to SIGKILL the run in, or to start a second
--- run while this one holds the lock). Never under dry-run.
--- Internal: the targets' test hooks (HOIST_TEST_PAUSE_IN_DEPLOY, ..._AFTER_PUT, ..._AFTER_SWITCH).
---@param variable string e.g. "HOIST_TEST_PAUSE_IN_DEPLOY"
---@param what string where, for the warning
function M.test_pause(variable, what)
  local seconds = tonumber(os.getenv(variable) or "")
  if seconds and seconds > 0 and not require("hoist.util").dry_run() then
    hoist.log.warn(("%s: pausing %gs %s"):format(variable, seconds, what))
    hoist.sleep(seconds)
  end
end

--- The option spec (hoist.util.check_opts) of a target's function: the common options and
--- the target's own (parameter specs: a map or list is a table here, the value rules kept),
--- plus `extra` (options that are not parameters, e.g. a client object). `image` is
--- required by deploy only.
---@param own table<string, table> the target's `options`
---@param extra? table<string, string|hoist.util.OptSpec>
---@param fn? "deploy"|"status"|"remove"|"preflight" default "deploy"
---@return table<string, hoist.util.OptSpec>
function M.spec(own, extra, fn)
  local spec = {}
  for _, set in ipairs { M.options, own or {} } do
    for k, v in pairs(set) do
      -- what a deploy needs (the image, a port) is required by deploy and preflight only
      local s = { type = (v.type == "map" or v.type == "list") and "table" or v.type,
                  required = v.required and (k == "service" or fn == nil or fn == "deploy" or fn == "preflight") or nil }
      for _, f in ipairs(RULES) do s[f] = v[f] end
      spec[k] = s
    end
  end
  if fn == "preflight" then spec.image.required = nil end -- before the build: no image yet
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

--- Checks a target function's options against the common options and the target's own
--- (M.spec) with hoist.util.check_opts: an unknown option, a wrong type or a value outside
--- its rules (allowed, pattern, min, max) raises invalid_argument naming the function and the
--- option. Returns the checked copy with the defaults filled in. `define` calls it for every
--- deploy, status, remove and preflight.
---@param fname string the public name, e.g. "hoist.targets.appservice.deploy"
---@param opts any
---@param own table<string, table> the target's `options`
---@param extra? table<string, string|hoist.util.OptSpec>
---@param fn? "deploy"|"status"|"remove"|"preflight"
---@return table
function M.check_options(fname, opts, own, extra, fn)
  return require("hoist.util").check_opts(fname, opts, M.spec(own, extra, fn))
end

--- Makes `mod` a target: checks it keeps the contract (`check`: raises internal naming what
--- it lacks) and wraps its deploy, status, remove and preflight so every call checks its
--- options first (check_options with `mod.options` and `mod.extra_options`), then runs the
--- target's own function with the checked copy. A target without a preflight gets one that
--- checks the options only. Returns `mod`.
---@param mod table the target module: name, options, compensations, deploy, status, remove, preflight?, extra_options?, lock?
---@return table
function M.define(mod)
  local problems = M.check(mod.name, mod, true)
  if #problems > 0 then
    require("hoist.util").fail("internal", table.concat(problems, "; "))
  end
  local raw_preflight = mod.preflight
  mod.preflight = function(o) return { service = o.service, checks = raw_preflight and raw_preflight(o) or {} } end
  for _, fn in ipairs { "deploy", "status", "remove", "preflight" } do
    local raw, fname = mod[fn], ("hoist.targets.%s.%s"):format(mod.name, fn)
    mod[fn] = function(opts)
      return raw(M.check_options(fname, opts, mod.options, mod.extra_options, fn))
    end
  end
  return mod
end

--- Runs target `name`'s preflight: what its deploy with `opts` needs, checked without
--- changing anything (options, credentials, the resource group or namespace). Raises what it
--- finds (invalid_argument, with details.exit_code = 2, for anything the user must fix).
---@param name string
---@param opts table the deploy options (image may be absent)
---@return {service: string, checks: string[]}
function M.preflight(name, opts)
  local ok, r = pcall(M.get(name).preflight, opts)
  if ok then return r end
  if hoist.is_error(r, "invalid_argument") then
    r.details = r.details or {}
    r.details.exit_code = r.details.exit_code or 2
  end
  error(r, 0)
end

--- What each target must have: functions, and tables describing it.
M.contract = { functions = { "deploy", "status", "remove", "preflight" }, tables = { "options", "compensations" } }

--- Names of the targets this engine ships (local first): a copy of `registered`.
---@return string[]
function M.names()
  local out = {}
  for i, n in ipairs(M.registered) do out[i] = n end
  return out
end

--- The module of target `name`. Raises invalid_argument (exit code 2) naming it when it is
--- unknown, with the closest name when it looks like a typo.
---@param name string
---@param where? string who asks, for the message (e.g. "container@1")
---@return table
function M.get(name, where)
  local prefix = where and (where .. ": ") or ""
  for _, n in ipairs(M.registered) do
    if n == name then return require("hoist.targets." .. name) end
  end
  local specs = {}
  for _, n in ipairs(M.registered) do specs[n] = true end
  local hint = type(name) == "string" and require("hoist.pipeline.params").suggest(name, specs) or nil
  hoist.error { code = "invalid_argument",
    message = ("%sunknown target %q%s (targets: %s)"):format(prefix, tostring(name),
      hint and (" (did you mean %q?)"):format(hint) or "", table.concat(M.registered, ", ")),
    details = { exit_code = 2, target = name } }
end

--- How a module falls short of the contract: a list of problems, empty when it keeps it.
---@param name string
---@param mod table
---@param defining? boolean called by define: preflight may be absent
---@return string[]
function M.check(name, mod, defining)
  local problems = {}
  local function problem(text) problems[#problems + 1] = ("target %s: %s"):format(tostring(name), text) end
  if type(mod) ~= "table" then return { ("target %s: the module is a %s, not a table"):format(tostring(name), type(mod)) } end
  if type(name) ~= "string" or name == "" then problem("needs a name") end
  for _, f in ipairs(M.contract.functions) do
    if type(mod[f]) ~= "function" and not (defining and f == "preflight" and mod[f] == nil) then
      problem(f .. " is not a function")
    end
  end
  if mod.lock ~= nil and type(mod.lock) ~= "function" then problem("lock is neither nil nor a function") end
  for _, t in ipairs(M.contract.tables) do
    if type(mod[t]) ~= "table" then problem(t .. " is not a table") end
  end
  for opt, spec in pairs(type(mod.options) == "table" and mod.options or {}) do
    if M.options[opt] then problem(("option %s is a common option: it belongs to hoist.targets.options"):format(opt)) end
    if type(spec) ~= "table" or type(spec.type) ~= "string" or type(spec.description) ~= "string" then
      problem(("option %s needs a spec {type=, description=}"):format(opt))
    end
  end
  local actions = require "hoist.pipeline.actions"
  for _, action in ipairs(type(mod.compensations) == "table" and mod.compensations or {}) do
    if type(action) ~= "string" or action:sub(1, #name + 1) ~= name .. "." then
      problem(("compensation %s is not named %s.<action>"):format(tostring(action), name))
    elseif not actions.get(action) then
      problem(("compensation %s is not defined (hoist.pipeline.action)"):format(action))
    elseif not actions.get(action).args then
      problem(("compensation %s has no argument spec (hoist.pipeline.action's opts.args)"):format(action))
    end
  end
  return problems
end

--- Takes the deploy lock of (target, service): the target's own `lock` when it has one,
--- else the file lock of hoist.targets.lock. Release it with `handle:release()`.
---@param name string target name
---@param opts hoist.targets.LockOptions without target
---@return hoist.targets.Lock
function M.lock(name, opts)
  local mod = M.get(name)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.target = name
  if mod.lock then return mod.lock(o) end
  return require("hoist.targets.lock").acquire(o)
end

return M
