--- hoist.targets: where a pipeline deploys, and the contract every target keeps.
---
--- A target is a module `hoist.targets.<name>` (see docs/targets.md):
---   deploy(opts) -> {service, url, image, previous}   opts: the common options below plus
---                                                      the target's own (`M.options`)
---   status(opts) -> {service, serving, image?, url?}   what runs now; changes nothing
---   remove(opts) -> {removed = {...}}                  takes the service down; idempotent
---   compensations = {"<name>.<action>", ...}           the named rollback actions deploy
---                                                      registers (hoist.pipeline.action)
---   options = {<name> = spec}                          its own options, specs as params
---   lock(opts) -> hoist.targets.Lock                   optional: how two deploys of one
---                                                      service are kept apart (default:
---                                                      a file lock in the state folder)
--- container@1 knows targets only through this module: `known` is the one list of names.
local M = {}

--- Every target name a pipeline may be asked for, and whether this engine ships it.
---@type table<string, boolean>
M.known = {
  ["local"] = true,     -- the local Docker engine behind a stable front (hoist proxy)
  aci = true,           -- Azure Container Instances (a container group; ARM-side lock)
  appservice = true,    -- Azure App Service (Web App for Containers)
  containerapp = true,  -- Azure Container Apps
  aks = true,           -- Azure Kubernetes Service (hoist.targets.kubernetes with the kubeconfig from Azure)
  kubernetes = true,    -- any Kubernetes cluster (a kubeconfig context)
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
  service = { type = "string", required = true, description = "The service's name" },
  image = { type = "string", required = true, description = "Image reference to run (repository@digest)" },
  env = { type = "map", description = "Environment NAME=value" },
  secret_env = { type = "map", secret = true, description = "Environment whose values are secrets" },
  container_port = { type = "number", default = 8080, description = "Port the app listens on in its container" },
  health_path = { type = "string", default = "/health", description = "GET path that answers 200 when healthy" },
  verify = { type = "table", description = "{retries, interval, timeout} of the check before the switch" },
  labels = { type = "map", description = "More labels or tags on what the target creates" },
  lock_timeout = { type = "number", default = 300, description = "Seconds to wait for another deploy of the service" },
  ctx = { type = "table", description = "The stage context that records the compensations" },
  run = { type = "string", description = "Run id" },
  state_dir = { type = "string", description = "State folder" },
}

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

--- Checks a target's deploy options against the common options and the target's own (both
--- parameter specs, hoist.pipeline's types: a map or list is a table here) with
--- hoist.util.check_opts; `extra` adds option specs that are not parameters. Returns the
--- checked copy with the defaults filled in.
---@param fname string the public name, e.g. "hoist.targets.appservice.deploy"
---@param opts any
---@param own table<string, table> the target's `options`
---@param extra? table<string, string|hoist.util.OptSpec>
---@return table
function M.check_options(fname, opts, own, extra)
  local spec = {}
  for _, set in ipairs { M.options, own } do
    for k, v in pairs(set) do
      spec[k] = { type = (v.type == "map" or v.type == "list") and "table" or v.type, required = v.required,
                  default = v.default, allowed = v.allowed, secret = v.secret }
    end
  end
  for k, v in pairs(extra or {}) do spec[k] = v end
  return require("hoist.util").check_opts(fname, opts, spec)
end

--- What each target must have: functions, and tables describing it.
M.contract = { functions = { "deploy", "status", "remove" }, tables = { "options", "compensations" } }

--- Names of the targets: those this engine ships first (local, the default, leading), then the
--- planned ones, each sorted.
---@param available_only? boolean only those this engine ships
---@return string[]
function M.names(available_only)
  local out = {}
  for name, shipped in pairs(M.known) do
    if shipped or not available_only then out[#out + 1] = name end
  end
  table.sort(out, function(a, b)
    if M.known[a] ~= M.known[b] then return M.known[a] end
    if (a == "local") ~= (b == "local") then return a == "local" end -- the default first
    return a < b
  end)
  return out
end

--- The module of target `name`. Raises invalid_argument (exit code 2) naming it when it is
--- unknown, or known but not available in this version.
---@param name string
---@param where? string who asks, for the message (e.g. "container@1")
---@return table
function M.get(name, where)
  local prefix = where and (where .. ": ") or ""
  local shipped = M.known[name]
  if shipped == nil then
    hoist.error { code = "invalid_argument",
      message = ("%sunknown target %q (targets: %s)"):format(prefix, tostring(name), table.concat(M.names(), ", ")),
      details = { exit_code = 2, target = name } }
  end
  if not shipped then
    hoist.error { code = "invalid_argument",
      message = ("%starget %q is not available in this version (available: %s)"):format(prefix, name,
        table.concat(M.names(true), ", ")),
      details = { exit_code = 2, target = name } }
  end
  return require("hoist.targets." .. name)
end

--- How a module falls short of the contract: a list of problems, empty when it keeps it.
---@param name string
---@param mod table
---@return string[]
function M.check(name, mod)
  local problems = {}
  local function problem(text) problems[#problems + 1] = ("target %s: %s"):format(name, text) end
  if type(mod) ~= "table" then return { ("target %s: the module is a %s, not a table"):format(name, type(mod)) } end
  for _, f in ipairs(M.contract.functions) do
    if type(mod[f]) ~= "function" then problem(f .. " is not a function") end
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
