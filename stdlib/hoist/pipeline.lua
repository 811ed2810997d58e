--- hoist.pipeline: the pipeline runtime. A pipeline declares typed parameters and ordered
--- stages; the runtime validates the parameters before anything runs, runs the stages with
--- timeouts and retries, journals every step, and undoes what the run changed when a stage
--- fails. Reference: docs/pipeline.md.
local params = require "hoist.pipeline.params"
local actions = require "hoist.pipeline.actions"
local journal = require "hoist.pipeline.journal"
local context = require "hoist.pipeline.context"
local runner = require "hoist.pipeline.runner"
local semver = require "hoist.semver"
local util = require "hoist.util"
local fs = require "hoist.fs"
local core = require "hoist.native.core"

local M = {}

---@class hoist.ParamSpec
---@field type? "string"|"number"|"boolean"|"list"|"map" default "string"
---@field items? "string"|"number"|"boolean"|"any"|"table" element type of a list or map; "table": a list of parameter tables checked against `fields`
---@field default? any
---@field required? boolean
---@field description? string
---@field secret? boolean registered with hoist.secret, never printed, "***" in the journal
---@field env? string environment variable that supplies the value when not given
---@field allowed? any[] accepted values
---@field pattern? string Lua pattern the whole value must match
---@field hint? string what the pattern means in words, for the message and --help
---@field min? number smallest number accepted (also of each list item or map value)
---@field max? number largest number accepted
---@field integer? boolean a number must be whole
---@field max_length? integer longest string accepted
---@field fields? table<string, hoist.ParamSpec> a list of tables: the parameters each item is checked against (by the same validation)
---@field key? string a list of tables: the field naming each item (required, unique; errors say "services[2] (web)")
---@field inherit? boolean a list of tables: the top-level values given for the same names are every item's defaults
---@field max_items? integer the most items a list holds (required for a list of tables)

---@class hoist.Retry
---@field attempts integer attempts in all (1 = no retry)
---@field backoff? number seconds before the 2nd attempt, doubled after each (default 1)
---@field max_delay? number cap of one wait (default 60)

---@class hoist.Stage
---@field name string
---@field run fun(ctx: hoist.StageContext): table?
---@field description? string
---@field timeout? number|fun(params: table): number seconds per attempt, or a function of the run's parameters giving them (a stage whose work grows with them: one deploy per service)
---@field retry? hoist.Retry
---@field when? fun(ctx: hoist.StageContext): boolean

---@class hoist.ParallelGroup
---@field name? string
---@field parallel hoist.Stage[]

---@class hoist.Pipeline
---@field name string
---@field version string semver
---@field requires? string engine version range
---@field description? string
---@field params table<string, hoist.ParamSpec>
---@field stages (hoist.Stage|hoist.ParallelGroup)[]
---@field summary? fun(ctx: hoist.StageContext, result: hoist.PipelineResult)
---@field notify? hoist.NotifyConfig|fun(params: table): hoist.NotifyConfig|nil notifications at the end of each run (hoist.notify)

local defined = setmetatable({}, { __mode = "k" })

local function bad(message) util.fail("invalid_argument", message) end

local function usage_error(message, details)
  details = details or {}
  details.exit_code = 2
  util.fail("invalid_argument", message, details)
end

local STAGE_FIELDS = { name = true, run = true, description = true, timeout = true, retry = true, when = true }

local function check_stage(st, where, seen)
  if type(st) ~= "table" then bad(where .. ": expected a table {name=, run=}") end
  for k in pairs(st) do
    if not STAGE_FIELDS[k] then bad(("%s: unknown field %q"):format(where, tostring(k))) end
  end
  if type(st.name) ~= "string" or not st.name:match("^[%w_%-]+$") then
    bad(where .. ": name must be letters, digits, '_' or '-'")
  end
  where = ("pipeline: stage %q"):format(st.name)
  if seen[st.name] then bad(where .. " is defined twice") end
  seen[st.name] = true
  if type(st.run) ~= "function" then bad(where .. ": run must be a function(ctx)") end
  if st.timeout ~= nil and type(st.timeout) ~= "function" and (type(st.timeout) ~= "number" or st.timeout <= 0) then
    bad(where .. ": timeout must be a number of seconds > 0, or a function(params) giving one")
  end
  if st.when ~= nil and type(st.when) ~= "function" then bad(where .. ": when must be a function(ctx)") end
  if st.retry ~= nil then
    local r = st.retry
    if type(r) ~= "table" or type(r.attempts) ~= "number" or r.attempts < 1 or r.attempts ~= math.floor(r.attempts) then
      bad(where .. ": retry must be {attempts = N >= 1, backoff = seconds}")
    end
    if r.backoff ~= nil and (type(r.backoff) ~= "number" or r.backoff < 0) then bad(where .. ": retry.backoff must be >= 0") end
    if r.max_delay ~= nil and (type(r.max_delay) ~= "number" or r.max_delay < 0) then bad(where .. ": retry.max_delay must be >= 0") end
  end
end

--- Checks a pipeline definition and marks it as one. Raises invalid_argument naming the bad field.
---@param def hoist.Pipeline
---@return hoist.Pipeline
function M.define(def)
  if type(def) ~= "table" then bad("pipeline.define: expected a table") end
  if type(def.name) ~= "string" or not def.name:match("^[%w_%-]+$") then
    bad("pipeline: name must be letters, digits, '_' or '-'")
  end
  local where = ("pipeline %q"):format(def.name)
  if type(def.version) ~= "string" then bad(where .. ": version must be a semver string like \"1.0.0\"") end
  local ok, err = pcall(semver.parse, def.version)
  if not ok then bad(where .. ": version " .. tostring(err.message or err)) end
  if def.requires ~= nil then
    if type(def.requires) ~= "string" then bad(where .. ": requires must be a version range like \">=0.1 <2\"") end
    ok, err = pcall(semver.satisfies, "0.0.0", def.requires)
    if not ok then bad(where .. ": requires " .. tostring(err.message or err)) end
  end
  if def.description ~= nil and type(def.description) ~= "string" then bad(where .. ": description must be a string") end
  if def.summary ~= nil and type(def.summary) ~= "function" then bad(where .. ": summary must be a function(ctx, result)") end
  if def.check ~= nil and type(def.check) ~= "function" then bad(where .. ": check must be a function(params)") end
  if def.notify ~= nil and type(def.notify) ~= "function" and type(def.notify) ~= "table" then
    bad(where .. ": notify must be a function(params) returning a hoist.notify configuration, or one")
  end
  def.params = params.check_specs(def.params)
  if type(def.stages) ~= "table" or #def.stages == 0 then bad(where .. ": stages must be a non-empty list") end
  local seen = {}
  for i, item in ipairs(def.stages) do
    if type(item) == "table" and item.parallel ~= nil then
      if type(item.parallel) ~= "table" or #item.parallel == 0 then bad(("%s: stage %d: parallel must be a list of stages"):format(where, i)) end
      for k in pairs(item) do
        if k ~= "parallel" and k ~= "name" then bad(("%s: parallel group %d: unknown field %q"):format(where, i, tostring(k))) end
      end
      for j, st in ipairs(item.parallel) do
        if type(st) == "table" and st.parallel then bad(("%s: parallel groups do not nest (group %d)"):format(where, i)) end
        check_stage(st, ("%s: stage %d.%d"):format(where, i, j), seen)
      end
    else
      check_stage(item, ("%s: stage %d"):format(where, i), seen)
    end
  end
  defined[def] = true
  return def
end

--- True for a table returned by pipeline.define.
---@param v any
---@return boolean
function M.is_pipeline(v) return type(v) == "table" and defined[v] == true end

--- Registers a named rollback action (see docs/pipeline.md, "Compensations").
---@param name string
---@param fn fun(args: table, rctx: hoist.RollbackContext)
---@param opts? {module?: string, args?: table<string, string|hoist.util.OptSpec>} args: the spec its arguments are checked against when registered and when run
function M.action(name, fn, opts)
  actions.define(name, fn, opts, 1)
  return name -- not a tail call: actions.define finds the definer one frame up
end

--- Names of the registered rollback actions.
--- Internal: for `hoist rollback` and tests.
---@return string[]
function M.actions() return actions.names() end

---------------------------------------------------------------- dry run and plan

--- True in a dry run: mutating primitives record a plan step instead of acting. The run's
--- one flag (hoist.util.dry_run): `hoist run --dry-run`, or a pipeline.run{dry_run = true}
--- in progress.
---@return boolean
M.dry_run = util.dry_run

--- Records one planned change: emits it as an event of kind "plan", which the engine
--- collects into the run's plan (tagged with the stage in progress). Returns how many steps
--- this process has planned so far.
---@param step hoist.PlanStep
---@return integer
M.plan = context.plan

---------------------------------------------------------------- running stages


--- Validates raw parameters against a pipeline's declarations (exit code 2 on failure).
---@param def hoist.Pipeline
---@param raw table
---@return table typed
function M.validate(def, raw) return params.validate(def.params or {}, raw or {}) end

--- Checks that this engine is inside the pipeline's `requires` range (exit code 2 if not).
---@param def hoist.Pipeline
M.check_requires = runner.check_requires

---@class hoist.PipelineResult
---@field run string
---@field dir string
---@field status string succeeded|failed|rolled_back|rollback_failed
---@field outputs table<string, table>
---@field duration number
---@field stages table[] {name, status, duration, attempts, error?}
---@field rolled_back string[]
---@field left string[]
---@field plan hoist.PlanStep[]
---@field sections {title: string, lines: string[]}[]
---@field error? hoist.Error
---@field notified? hoist.NotifyResult[] one per channel, when the pipeline notifies (its `notify`)

--- Runs a pipeline with raw parameters (see docs/pipeline.md, "Running").
---@param def hoist.Pipeline
---@param raw? table
---@param opts? {state_dir?: string, dry_run?: boolean, spec?: string, source?: table, raise?: boolean, quiet?: boolean}
---@return hoist.PipelineResult
function M.run(def, raw, opts)
  if not M.is_pipeline(def) then def = M.define(def) end
  return runner.run(def, raw or {}, opts or {})
end

--- Host glue for `hoist run FILE`: runs the chunk; if it returns a pipeline definition, runs
--- that with the script arguments as parameters.
---@param chunk function
---@param args table
---@param path string
function M.run_chunk(chunk, args, path)
  local results = { n = 0 }
  local function collect(...) results = { n = select("#", ...), ... } end
  -- a plain script's dry run has a plan too: collected from the start, shown at the end
  local dry = util.dry_run()
  local was_capturing = dry and core.plan_capture(true)
  local ok, err = pcall(function() collect(chunk(args)) end)
  local def = results[1]
  if dry and not (ok and M.is_pipeline(def)) then
    core.plan_capture(was_capturing)
    runner.script_plan(path, core.plan_take(), ok)
  end
  if not ok then error(err, 0) end
  if M.is_pipeline(def) then
    local rok, abs = pcall(fs.realpath, path)
    return M.run(def, args, { source = { file = rok and abs or path }, spec = path })
  end
  return unpack(results, 1, results.n)
end

--- `hoist rollback <run-id>`: finishes the rollback of a run from its journal.
---@param opts {run: string, state_dir?: string, force?: boolean}
---@return hoist.RollbackResult
function M.rollback(opts)
  local r = journal.rollback(opts)
  if r.status == "rollback_failed" then
    local left = {}
    for i, c in ipairs(r.left) do left[i] = ("%s (%s): %s"):format(c.action, c.stage or "?", c.error and c.error.message or "?") end
    hoist.error { code = "internal", message = ("rollback of run %s is incomplete: %d compensation(s) failed"):format(opts.run, #r.left),
                  details = { exit_code = 3, run = opts.run, status = r.status, left = left } }
  end
  return r
end

--- Every run folder of a state dir, newest first.
---@param opts? {state_dir?: string}
---@return hoist.RunSummary[]
function M.runs(opts)
  return journal.runs((opts and opts.state_dir) or hoist.run.state_dir or ".hoist")
end

--- The text of `hoist run X --help`.
---@param def hoist.Pipeline
---@param opts? {spec?: string}
---@return string
function M.help(def, opts)
  opts = opts or {}
  local lines = { ("%s %s%s"):format(def.name, def.version, def.description and (": " .. def.description) or "") }
  if def.requires then
    local fits = not hoist.version or semver.satisfies(hoist.version, def.requires)
    lines[#lines + 1] = ("requires hoist %s (this is %s%s)"):format(def.requires, hoist.version or "?", fits and "" or ": NOT SUPPORTED")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Usage: hoist run %s [--set NAME=VALUE]... [--params-file FILE] [--dry-run]"):format(opts.spec or def.name)
  lines[#lines + 1] = ""
  local text = table.concat(lines, "\n") .. "\n" .. params.help(def.params or {}) .. "\nStages:\n"
  for i, item in ipairs(def.stages) do
    local function describe(st)
      local extra = {}
      if type(st.timeout) == "number" then extra[#extra + 1] = ("timeout %gs"):format(st.timeout) end
      if type(st.timeout) == "function" then -- what it gives for the defaults, when it can say
        local ok, base = pcall(st.timeout, {})
        extra[#extra + 1] = (ok and type(base) == "number") and ("timeout %gs, more by the parameters"):format(base)
          or "timeout by the parameters"
      end
      if st.retry and st.retry.attempts > 1 then extra[#extra + 1] = ("%d attempts"):format(st.retry.attempts) end
      if st.when then extra[#extra + 1] = "conditional" end
      return st.name .. (#extra > 0 and (" (" .. table.concat(extra, ", ") .. ")") or "")
        .. (st.description and (": " .. st.description) or "")
    end
    if item.parallel then
      local names = {}
      for j, st in ipairs(item.parallel) do names[j] = describe(st) end
      text = text .. ("  %d. in parallel%s:\n"):format(i, item.name and (" (" .. item.name .. ")") or "")
      for _, n in ipairs(names) do text = text .. "       - " .. n .. "\n" end
    else
      text = text .. ("  %d. %s\n"):format(i, describe(item))
    end
  end
  return text
end

--- `hoist run FILE --help`: the help of a pipeline file, without running a plain script.
---@param path string
---@return string
function M.help_file(path)
  local f = io.open(path, "r")
  if not f then usage_error("no such script file: " .. path) end
  local src = f:read("*a")
  f:close()
  if not src:find("define", 1, true) then
    return ("%s is a plain script (it does not return hoist.pipeline.define{...}): it declares no parameters;\n"
      .. "its arguments (--set k=v) arrive in hoist.args.\n"):format(path)
  end
  local chunk, err = loadfile(path)
  if not chunk then usage_error("cannot load " .. path .. ": " .. tostring(err)) end
  local def = chunk({})
  if not M.is_pipeline(def) then
    return ("%s does not return a pipeline definition: it declares no parameters.\n"):format(path)
  end
  return M.help(def, { spec = path })
end

return M
