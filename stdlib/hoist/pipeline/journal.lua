--- hoist.pipeline.journal: writing a run's journal.jsonl, reading it back, listing runs,
--- and finishing the rollback of a run from another process (`hoist rollback <run-id>`).
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local native = require "hoist.native.journal"
local actions = require "hoist.pipeline.actions"
local fs = require "hoist.fs"
local util = require "hoist.util"

local M = {}

---@class hoist.JournalWriter
---@field entries table[] every entry appended, in memory too (tests, reports)
---@field path? string nil when the run writes no folder
local Writer = {}
Writer.__index = Writer

--- Opens the journal of a run folder (nil dir: in memory only).
---@param dir? string
---@return hoist.JournalWriter
function M.open(dir)
  local w = setmetatable({ entries = {}, wall = os.time(), mono = hoist.now() }, Writer)
  if dir and dir ~= "" then
    w.path = dir .. "/journal.jsonl"
    w.native = native.open(w.path)
  end
  return w
end

--- Wall-clock seconds with a sub-second part (os.time() has none; the monotonic clock
--- gives the fraction since the writer opened).
function Writer:now() return self.wall + (hoist.now() - self.mono) end

--- Appends an entry (stamped with ts); on disk it is fsynced before this returns.
---@param entry table
function Writer:append(entry)
  entry.ts = entry.ts or self:now()
  if self.native then self.native:append(entry) end -- raises before memory diverges from disk
  self.entries[#self.entries + 1] = entry
end

function Writer:close()
  if self.native then self.native:close() end
  self.native = nil
end

local function usage_error(message, details)
  details = details or {}
  details.exit_code = 2
  util.fail("invalid_argument", message, details)
end

--- The folder of a run.
---@param state_dir string
---@param id string
---@return string
function M.run_dir(state_dir, id)
  if type(id) ~= "string" or not id:match("^[%w_%-%.]+$") then usage_error(("bad run id %q"):format(tostring(id))) end
  return state_dir .. "/runs/" .. id
end

--- The entries of a run's journal; raises invalid_argument (exit 2) when there is none.
---@param dir string
---@return table[] entries
function M.read(dir)
  local ok, entries = pcall(native.read, dir .. "/journal.jsonl")
  if not ok then
    usage_error(("no journal at %s/journal.jsonl (`hoist runs` lists the runs)"):format(dir))
  end
  return entries
end

---@class hoist.RunSummary
---@field id string
---@field status string succeeded|failed|rolled_back|rollback_failed|running|died
---@field pipeline? string
---@field version? string
---@field started? number unix seconds
---@field duration? number seconds (nil while running)
---@field dry_run boolean
---@field pid? integer
---@field stages table[] {name, status, duration, attempt, started, error?}; status "interrupted" when the run ended (or died) while the stage ran
---@field compensations hoist.Compensation[] with status "pending"|"succeeded"|"failed"|"not_needed" (the run succeeded)
---@field pending integer compensations not done yet (none for a succeeded run)
---@field script? boolean a plain script's run (no journal: told from events.jsonl)
---@field file? string a plain script's run: the script file, as given to `hoist run`
---@field error? table
---@field finish? table the last run.end entry

--- Folds a journal into the state of its run.
---@param entries table[]
---@param id? string
---@return hoist.RunSummary
function M.summarize(entries, id)
  local s = { id = id, stages = {}, compensations = {}, pending = 0, dry_run = false }
  local by_stage, by_comp = {}, {}
  for _, e in ipairs(entries) do
    if e.kind == "run.start" then
      s.id = s.id or e.run
      s.pipeline, s.version, s.started, s.pid = e.pipeline, e.version, e.ts, e.pid
      s.dry_run, s.spec, s.source, s.params = e.dry_run == true, e.spec, e.source, e.params
    elseif e.kind == "stage.start" then
      local st = by_stage[e.stage]
      if not st then
        st = { name = e.stage, status = "running", started = e.ts, group = e.group }
        by_stage[e.stage] = st
        s.stages[#s.stages + 1] = st
      end
      st.attempt = e.attempt
    elseif e.kind == "stage.end" then
      local st = by_stage[e.stage]
      if not st then
        st = { name = e.stage, started = e.ts }
        by_stage[e.stage] = st
        s.stages[#s.stages + 1] = st
      end
      st.status, st.duration, st.error, st.outputs = e.status, e.duration, e.error, e.outputs
      st.attempt = e.attempts or st.attempt
    elseif e.kind == "compensation.registered" then
      local c = { id = e.id, stage = e.stage, action = e.action, module = e.module, file = e.file, args = e.args,
                  status = "pending", registered = e.ts }
      by_comp[e.id] = c
      s.compensations[#s.compensations + 1] = c
    elseif e.kind == "compensation.start" and by_comp[e.id] then
      by_comp[e.id].started = e.ts
    elseif e.kind == "compensation.end" and by_comp[e.id] then
      local c = by_comp[e.id]
      -- a success is final: a later attempt (rollback run twice) cannot undo it
      if c.status ~= "succeeded" then c.status, c.error = e.status, e.error end
      c.duration = e.duration
    elseif e.kind == "run.end" then
      s.finish = e
      s.status, s.error = e.status, e.error or s.error
      if s.started and e.ts then s.duration = e.ts - s.started end
    end
  end
  if not s.status then
    s.status = (s.pid and fs.pid_alive(s.pid)) and "running" or "died"
  end
  for _, st in ipairs(s.stages) do
    -- a stage still "running" in a run that is over was cut short (SIGKILL, a crash)
    if st.status == "running" and s.status ~= "running" then st.status = "interrupted" end
  end
  for _, c in ipairs(s.compensations) do
    if c.status == "pending" and s.status == "succeeded" then
      c.status = "not_needed" -- the run succeeded: nothing had to be undone
    elseif c.status ~= "succeeded" then
      s.pending = s.pending + 1
    end
  end
  return s
end

--- The summary of a plain script's run (it writes no journal): told from its events.jsonl.
---@param dir string
---@param id string
---@param mtime? number the folder's, when events.jsonl says nothing of the start
---@return hoist.RunSummary
function M.script_summary(dir, id, mtime)
  local s = { id = id, dir = dir, script = true, stages = {}, compensations = {}, pending = 0, dry_run = false }
  local ok, events = pcall(native.read, dir .. "/events.jsonl")
  for _, e in ipairs(ok and events or {}) do
    if e.kind == "run.start" then
      s.started = e.ts
      s.file = e.fields and e.fields.script
    end
    if e.kind == "run.end" then
      s.status = (e.fields and e.fields.ok) and "succeeded" or "failed"
      if s.started then s.duration = e.ts - s.started end
    end
    if e.kind == "plan" then s.dry_run = true end
  end
  s.started = s.started or mtime
  s.status = s.status or "died"
  return s
end

--- Every run folder of a state dir, newest first.
---@param state_dir string
---@return hoist.RunSummary[]
function M.runs(state_dir)
  local out = {}
  for _, r in ipairs(native.list_runs(state_dir)) do
    if r.journal then
      local ok, entries = pcall(native.read, r.dir .. "/journal.jsonl")
      local s = ok and M.summarize(entries, r.id) or { id = r.id, status = "unreadable", stages = {}, compensations = {}, pending = 0 }
      s.dir = r.dir
      out[#out + 1] = s
    else
      out[#out + 1] = M.script_summary(r.dir, r.id, r.mtime) -- a plain script's run
    end
  end
  -- newest first by start time (ids sort by second only, and differ in form between engines)
  table.sort(out, function(a, b)
    local x, y = a.started or 0, b.started or 0
    if x ~= y then return x > y end
    return a.id > b.id
  end)
  return out
end

---@class hoist.RollbackResult
---@field run string
---@field status string rolled_back|rollback_failed|nothing_to_do
---@field done hoist.Compensation[]
---@field left table[]

--- Finishes the rollback of a run from its journal: runs the compensations not yet done, in
--- reverse order, and records them and a final run.end in the same journal.
---@param opts {run: string, state_dir?: string, force?: boolean}
---@return hoist.RollbackResult
function M.rollback(opts)
  local state_dir = opts.state_dir or hoist.run.state_dir or ".hoist"
  local dir = M.run_dir(state_dir, opts.run)
  local s = M.summarize(M.read(dir), opts.run)
  if s.dry_run then usage_error(("run %s was a dry run: it changed nothing, there is nothing to roll back"):format(opts.run)) end
  if s.status == "running" and not opts.force then
    usage_error(("run %s is still running (pid %s); stop it first, or pass --force"):format(opts.run, tostring(s.pid)))
  end
  if s.status == "succeeded" and not opts.force then
    usage_error(("run %s succeeded; pass --force to undo its changes anyway"):format(opts.run))
  end
  local pending = {}
  for _, c in ipairs(s.compensations) do
    if c.status ~= "succeeded" then pending[#pending + 1] = c end
  end
  local result = { run = opts.run, done = {}, left = {}, status = "nothing_to_do", pipeline = s.pipeline }
  local writer = M.open(dir)
  if #pending == 0 then
    hoist.log.info(("run %s: no compensation left to run"):format(opts.run))
    if not s.finish then
      local array = hoist.json.array
      writer:append { kind = "run.end", status = #s.compensations > 0 and "rolled_back" or "failed",
                      by = "hoist rollback", rolled_back = array(), left = array() }
    end
    writer:close()
    return result
  end
  hoist.log.event("rollback.start", ("rolling back run %s (%s %s): %d compensation(s)"):format(
    opts.run, s.pipeline or "?", s.version or "?", #pending), { run = opts.run, pending = #pending })
  local done, left = actions.compensate(pending, { journal = writer, run = { id = opts.run, dir = dir } })
  result.done, result.left = done, left
  result.status = #left == 0 and "rolled_back" or "rollback_failed"
  local array = hoist.json.array
  local names = array()
  for i, c in ipairs(done) do names[i] = ("%s (%s)"):format(c.action, c.stage or "?") end
  local left_names = array()
  for i, c in ipairs(left) do left_names[i] = ("%s (%s)"):format(c.action, c.stage or "?") end
  writer:append { kind = "run.end", status = result.status, by = "hoist rollback", rolled_back = names, left = left_names,
                  error = s.error }
  writer:close()
  hoist.log.event("rollback.end", ("run %s: %s (%d undone, %d left)"):format(opts.run, result.status, #done, #left),
    { run = opts.run, status = result.status }, #left == 0 and "info" or "error")
  return result
end

return M
