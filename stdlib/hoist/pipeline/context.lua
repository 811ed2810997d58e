--- hoist.pipeline.context: what a stage sees (the StageContext `ctx`) and which run is in
--- progress. hoist.pipeline and hoist.pipeline.runner both use it; it uses neither, so the
--- dependencies point one way: pipeline -> runner -> context.
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local actions = require "hoist.pipeline.actions"
local util = require "hoist.util"

local C = {}

local active -- the run in progress (tags plan steps with its current stage)
local planned = 0 -- plan steps recorded through hoist.pipeline.plan by this process

local function bad(message) util.fail("invalid_argument", message) end

--- Makes `run` the run in progress; returns the one it replaces (to restore at its end).
---@param run table|nil
---@return table|nil previous
function C.set_active(run)
  local previous = active
  active = run
  return previous
end

--- Records one planned change (hoist.pipeline.plan): the step is tagged with the stage in
--- progress. Returns how many steps this process has planned so far.
---@param step hoist.PlanStep
---@return integer
function C.plan(step)
  if type(step) == "table" and step.stage == nil and active and active.current then
    local s = {}
    for k, v in pairs(step) do s[k] = v end
    s.stage = active.current
    step = s
  end
  util.plan(step)
  planned = planned + 1
  return planned
end

---@class hoist.StageContext
---@field params table<string, any>
---@field outputs table<string, table>
---@field run {id: string, dir: string, dry_run: boolean, pipeline: string, version: string, started: number}
---@field dry_run boolean
---@field stage string
---@field attempt integer
---@field log table debug/info/warn/error(message, fields?)
local Ctx = {}
Ctx.__index = Ctx

--- The context of one stage of `run`.
---@param run table
---@param stage_name string
---@return hoist.StageContext
function C.new(run, stage_name)
  local function logger(level)
    return function(message, fields)
      local f = {}
      if type(fields) == "table" then for k, v in pairs(fields) do f[k] = v end end
      f.stage = stage_name
      hoist.log[level](message, f)
    end
  end
  return setmetatable({
    params = run.params, outputs = run.outputs, run = run.info, dry_run = run.dry_run,
    stage = stage_name, attempt = 1, _run = run,
    log = { debug = logger("debug"), info = logger("info"), warn = logger("warn"), error = logger("error") },
  }, Ctx)
end

--- Registers the compensation of a change this stage makes (a named action + JSON args).
---@param action string
---@param args? table
function Ctx:on_rollback(action, args)
  local run = self._run
  local a = actions.get(action)
  if not a then
    bad(("on_rollback: unknown rollback action %q (define it with hoist.pipeline.action; defined: %s)"):format(
      tostring(action), table.concat(actions.names(), ", ")))
  end
  args = args or {}
  if type(args) ~= "table" then bad(("on_rollback %q: args must be a table"):format(action)) end
  local ok, text = pcall(require("hoist.json").encode, args)
  if not ok then bad(("on_rollback %q: args must be JSON-encodable: %s"):format(action, tostring(text))) end
  actions.check_args(action, args)
  if hoist.scrub(text) ~= text then
    bad(("on_rollback %q: args contain a secret value; pass a reference to it (an env var name), not the value"):format(action))
  end
  local c = { id = #run.compensations + 1, stage = self.stage, action = action, module = a.origin.module,
              file = a.origin.file, args = args }
  run.compensations[#run.compensations + 1] = c
  run.journal:append { kind = "compensation.registered", id = c.id, stage = c.stage, action = action,
                       module = c.module, file = c.file, args = args, dry_run = run.dry_run or nil }
  hoist.log.event("compensation.registered", ("registered rollback %s"):format(action),
    { id = c.id, stage = c.stage, action = action }, "debug")
end

--- Adds to the final summary: `ctx:summary("line")` or `ctx:summary("Section", {"line", ...})`.
---@param section_or_line string
---@param lines? string|string[]
function Ctx:summary(section_or_line, lines)
  local run = self._run
  local title, list
  if lines == nil then
    title, list = self.stage, { tostring(section_or_line) }
  else
    title = tostring(section_or_line)
    list = type(lines) == "table" and lines or { tostring(lines) }
  end
  local sec = run.sections_by_title[title]
  if not sec then
    sec = { title = title, lines = {} }
    run.sections_by_title[title] = sec
    run.sections[#run.sections + 1] = sec
  end
  for _, l in ipairs(list) do sec.lines[#sec.lines + 1] = hoist.scrub(tostring(l)) end
  hoist.log.event("summary", title .. ": " .. table.concat(list, "; "), { stage = self.stage, section = title, lines = list }, "debug")
end

--- Records a planned change, tagged with this stage (see hoist.pipeline.plan).
---@param step hoist.PlanStep
---@return integer
function Ctx:plan(step)
  local s = {}
  for k, v in pairs(step) do s[k] = v end
  s.stage = s.stage or self.stage
  return C.plan(s)
end

return C
