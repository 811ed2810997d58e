--- hoist.pipeline.runner: runs the stages of a defined pipeline: journal, retries,
--- timeouts, parallel groups, compensation on failure, the final result and error.
--- Scripts use hoist.pipeline.run; this module is its engine room. It does not know
--- hoist.pipeline (which requires it): stage contexts come from hoist.pipeline.context.
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local params = require "hoist.pipeline.params"
local actions = require "hoist.pipeline.actions"
local context = require "hoist.pipeline.context"
local journal = require "hoist.pipeline.journal"
local report = require "hoist.pipeline.report"
local notify = require "hoist.notify"
local ci = require "hoist.ci"
local semver = require "hoist.semver"
local util = require "hoist.util"
local core = require "hoist.native.core"
local native = require "hoist.native.journal"

local R = {}
local as_error = actions.as_error

--- Checks that this engine is inside the pipeline's `requires` range (exit code 2 if not).
---@param def hoist.Pipeline
function R.check_requires(def)
  if def.requires and hoist.version and not semver.satisfies(hoist.version, def.requires) then
    util.fail("invalid_argument",
      ("pipeline %s %s requires hoist %s, but this is hoist %s"):format(def.name, def.version, def.requires, hoist.version),
      { requires = def.requires, engine = hoist.version, exit_code = 2 })
  end
end

-- A run with a state_dir of its own needs an id of its own; every other run takes the
-- engine's (core.run().id). Both come from the engine's one generator.
local new_run_id = core.new_run_id

local function new_run(def, values, opts)
  local info = hoist.run
  local id, dir
  if opts.state_dir then
    id = new_run_id()
    dir = opts.state_dir .. "/runs/" .. id
  elseif info.dir and info.dir ~= "" then
    id, dir = info.id, info.dir
  else
    id = (info.id and info.id ~= "") and info.id or new_run_id()
  end
  -- A run may turn dry-run on, never off: inside `hoist run --dry-run` nothing changes.
  local dry_run = opts.dry_run == true or util.dry_run()
  local run = {
    def = def, params = values, outputs = {}, compensations = {}, sections = {}, sections_by_title = {},
    plan = {}, stages = {}, dry_run = dry_run, id = id, dir = dir, opts = opts,
    journal = journal.open(dir), started = hoist.now(), ci = ci.active(),
    json = info.log_format == "json",
  }
  run.info = { id = id, dir = dir or "", dry_run = dry_run, pipeline = def.name, version = def.version,
               started = run.journal:now() }
  return run
end

local function error_fields(e)
  return { code = e.code, message = e.message, where = e.where }
end

-- The stage function, under its timeout. Only a table (or nothing) is an output.
local function call_stage(st, ctx)
  local out
  local timeout = st.timeout
  if type(timeout) == "function" then -- of the run's parameters (checked by now)
    timeout = timeout(ctx.params)
    if type(timeout) ~= "number" or timeout <= 0 then
      hoist.error { code = "internal", message = ("stage %s: its timeout function gave %s, not a number of seconds > 0")
                      :format(st.name, tostring(timeout)) }
    end
  end
  if timeout then
    local ok, r = pcall(hoist.timeout, timeout, st.run, ctx)
    if not ok then
      if hoist.is_error(r, "timeout") and tostring(r.message):match("^timed out after") then
        r = hoist.new_error { code = "timeout", message = ("stage %s timed out after %gs"):format(st.name, timeout),
                              details = { timeout = timeout } }
      end
      error(r, 0)
    end
    out = r
  else
    out = st.run(ctx)
  end
  if out ~= nil and type(out) ~= "table" then
    hoist.error { code = "invalid_argument",
                  message = ("stage %s returned a %s; a stage returns a table of outputs or nothing"):format(st.name, type(out)) }
  end
  return out or {}
end

local function stage_end(run, rec, fields, level, message)
  rec.status, rec.duration = fields.status, fields.duration
  local entry = { kind = "stage.end", stage = rec.name, group = rec.group }
  for k, v in pairs(fields) do entry[k] = v end
  -- outputs may hold values JSON cannot carry (functions): the journal keeps the rest
  if not pcall(run.journal.append, run.journal, entry) then
    entry.outputs = nil
    entry.outputs_note = "outputs are not JSON-encodable"
    entry.ts = nil
    run.journal:append(entry)
  end
  local ev = { stage = rec.name, group = rec.group, status = fields.status, duration = fields.duration,
               attempts = fields.attempts, error = fields.error }
  hoist.log.event("stage.end", message, ev, level)
end

-- Moves the plan events emitted since the last call into the run's plan, tagged with the
-- stage (or parallel group) that emitted them when they do not say.
local function collect_plan(run, label)
  for _, step in ipairs(core.plan_take()) do
    step.stage = step.stage or label
    run.plan[#run.plan + 1] = step
    step.n = #run.plan
  end
end

local function run_stage(run, st, group)
  local ctx = context.new(run, st.name)
  local rec = { name = st.name, group = group and group.label, status = "running" }
  run.stages[#run.stages + 1] = rec
  if not group then run.current = st.name end
  local started = hoist.now()
  if st.when then
    local ok, go = xpcall(st.when, as_error, ctx)
    if ok and not go then
      run.outputs[st.name] = {}
      stage_end(run, rec, { status = "skipped", duration = 0 }, "info", ("%s skipped"):format(st.name))
      return
    elseif not ok then
      run.failure = run.failure or { stage = st.name, error = go }
      stage_end(run, rec, { status = "failed", duration = 0, error = error_fields(go) }, "error",
        ("%s failed in its `when`: %s"):format(st.name, tostring(go)))
      error(go, 0)
    end
  end
  if run.ci and not group then ci.group(st.name) end
  local attempts = st.retry and st.retry.attempts or 1
  local ok, res
  for attempt = 1, attempts do
    ctx.attempt = attempt
    rec.attempts = attempt
    run.journal:append { kind = "stage.start", stage = st.name, attempt = attempt, group = rec.group }
    hoist.log.event("stage.start", ("%s%s"):format(st.name, attempt > 1 and (" (attempt %d/%d)"):format(attempt, attempts) or ""),
      { stage = st.name, attempt = attempt, attempts = attempts, group = rec.group })
    ok, res = xpcall(call_stage, as_error, st, ctx)
    if ok then break end
    if attempt < attempts and res.retryable == true and res.code ~= "cancelled" then
      local wait = math.min((st.retry.backoff or 1) * 2 ^ (attempt - 1), st.retry.max_delay or 60)
      hoist.log.event("stage.retry", ("%s failed (%s: %s); retrying in %gs (attempt %d/%d)"):format(
        st.name, res.code, res.message, wait, attempt + 1, attempts),
        { stage = st.name, attempt = attempt, wait = wait, error = error_fields(res) }, "warn")
      local slept, serr = pcall(hoist.sleep, wait)
      if not slept then
        res = as_error(serr)
        break
      end
    else
      break
    end
  end
  local took = hoist.now() - started
  if ok then
    run.outputs[st.name] = res
    stage_end(run, rec, { status = "succeeded", duration = took, attempts = rec.attempts, outputs = res }, "info",
      ("%s (%.2fs%s)"):format(st.name, took, rec.attempts > 1 and (", attempt " .. rec.attempts) or ""))
  else
    local status = res.code == "cancelled" and "cancelled" or "failed"
    rec.error = res
    if not run.failure then run.failure = { stage = st.name, error = res } end
    stage_end(run, rec, { status = status, duration = took, attempts = rec.attempts, error = error_fields(res) },
      status == "cancelled" and "warn" or "error",
      ("%s %s after %.2fs: %s"):format(st.name, status, took, tostring(res)))
  end
  if not group then collect_plan(run, st.name) end
  if run.ci and not group then ci.endgroup() end
  if not ok then error(res, 0) end
end

local function run_group(run, item)
  local names = {}
  for i, st in ipairs(item.parallel) do names[i] = st.name end
  local label = item.name or table.concat(names, "+")
  run.current = label
  if run.ci then ci.group("parallel: " .. table.concat(names, ", ")) end
  local fns = {}
  for i, st in ipairs(item.parallel) do fns[i] = function() run_stage(run, st, { label = label }) end end
  local ok, err = pcall(hoist.parallel, unpack(fns))
  collect_plan(run, label)
  if run.ci then ci.endgroup() end
  if not ok then error(err, 0) end
end

local function run_stages(run)
  for _, item in ipairs(run.def.stages) do
    if item.parallel then run_group(run, item) else run_stage(run, item) end
  end
end

-- Compensations run shielded: when the run was cancelled (SIGINT, SIGTERM), the run's own
-- task can no longer wait for anything, a fresh one can.
local function compensate(run)
  local list = run.compensations
  local ok, done, left = pcall(hoist.shielded, actions.compensate, list,
                               { journal = run.journal, run = { id = run.id, dir = run.dir or "" } })
  if ok then return done, left end
  left = {}
  for i, c in ipairs(list) do left[i] = { id = c.id, action = c.action, stage = c.stage, error = error_fields(as_error(done)) } end
  return {}, left
end

-- A list that stays a JSON array when empty ("left": [] rather than {}).
local function array(t)
  local ok, json = pcall(require, "hoist.json")
  if ok and json.array then return json.array(t) end
  return t
end
R.array = array

local function labels(list)
  local out = array()
  for i, c in ipairs(list) do out[i] = ("%s (%s)"):format(c.action, c.stage or "?") end
  return out
end

-- The error a failed run raises: the stage's code and message, what was undone, and an
-- exit code for the CLI.
local function final_error(run, result)
  local cause = run.failure.error
  local exit = 1
  if result.status == "rollback_failed" then exit = 3
  elseif cause.code == "cancelled" then exit = 130
  elseif cause.code == "policy_violation" then exit = 4 end
  -- What was undone goes before the cause: the cause's own text may run over several lines.
  local undo = ""
  if result.status == "rolled_back" then
    undo = (" (rolled back %d change(s))"):format(#result.rolled_back)
  elseif result.status == "rollback_failed" then
    undo = (" (rollback incomplete: %d change(s) left, see hoist rollback %s)"):format(#result.left, run.id)
  end
  local err = hoist.new_error {
    code = cause.code or "internal",
    message = ("stage %s failed%s: %s"):format(run.failure.stage or "?", undo, cause.message or tostring(cause)),
    retryable = false,
    details = { exit_code = exit, run = run.id, dir = run.dir, stage = run.failure.stage, status = result.status,
                cause = { code = cause.code, message = cause.message, details = cause.details },
                rolled_back = result.rolled_back, left = result.left },
  }
  err.where, err.traceback = cause.where, cause.traceback
  return err
end

--- The plan of a plain script's dry run: printed and written to plan.json like a pipeline's.
---@param path string the script
---@param steps hoist.PlanStep[]
---@param ok boolean whether the script finished without an error
function R.script_plan(path, steps, ok)
  local info = hoist.run
  for i, s in ipairs(steps) do s.n = i end
  report.write_plan({ dir = info.dir ~= "" and info.dir or nil, opts = {}, json = info.log_format == "json" },
    { pipeline = path, version = "", run = info.id, status = ok and "succeeded" or "failed", plan = steps })
end

-- fn(...) before anything runs: what it raises is a usage error (exit code 2; 4 for a policy).
local function before_run(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  local err = hoist.is_error(res) and res or hoist.new_error { code = "invalid_argument", message = tostring(res) }
  err.details = err.details or {}
  err.details.exit_code = err.code == "policy_violation" and 4 or 2
  error(err, 0)
end

--- Runs a defined pipeline (hoist.pipeline.run).
function R.run(def, raw, opts)
  R.check_requires(def)
  -- registering prints GitHub's ::add-mask:: line for each secret (bindings/host.cpp)
  params.register_secrets(def.params or {}, raw)
  local values = params.validate(def.params or {}, raw)
  params.register_secrets(def.params or {}, values) -- a `--set` map's values exist only now
  -- Checks across parameters, still before anything runs: a problem is a usage error (a
  -- policy the parameters break: exit 4, as when a stage meets it).
  if def.check then before_run(def.check, values) end
  -- The notification channels, checked (and their URLs registered as secrets) before
  -- anything runs: a bad URL is a usage error, not a surprise at the end of the run.
  local notify_cfg
  if def.notify then
    notify_cfg = before_run(function()
      local c = def.notify
      if type(c) == "function" then c = c(values) end -- nil: this run notifies no one
      return notify.configure(c)
    end)
  end
  local run = new_run(def, values, opts)
  local previous = context.set_active(run)
  -- the run's flag is the one every module reads, for the run's duration
  local previous_dry_run = core.set_dry_run(run.dry_run)
  local was_capturing = core.plan_capture(true)
  if not was_capturing then core.plan_take() end -- steps planned before this run are not part of it
  run.journal:append {
    kind = "run.start", run = run.id, pipeline = def.name, version = def.version, spec = opts.spec,
    source = opts.source, params = params.redact(def.params or {}, values), dry_run = run.dry_run,
    pid = native.self().pid, engine = hoist.version,
  }
  hoist.log.event("pipeline.start", ("%s %s%s: run %s"):format(def.name, def.version, run.dry_run and " (dry run)" or "", run.id),
    { pipeline = def.name, version = def.version, run = run.id, dir = run.dir, dry_run = run.dry_run })

  local ok, err = xpcall(run_stages, as_error, run)
  collect_plan(run, nil)
  local result = { run = run.id, dir = run.dir or "", outputs = run.outputs, stages = run.stages, plan = run.plan,
                   sections = run.sections, rolled_back = array(), left = array(), pipeline = def.name, version = def.version,
                   dry_run = run.dry_run, journal = run.journal.entries }
  if ok then
    result.status = "succeeded"
  else
    run.failure = run.failure or { error = err }
    if run.dry_run or #run.compensations == 0 then
      result.status = "failed"
    else
      local done, left = compensate(run)
      result.rolled_back, result.left = labels(done), labels(left)
      result.left_details = left
      result.status = #left == 0 and "rolled_back" or "rollback_failed"
    end
  end
  result.duration = hoist.now() - run.started
  if def.summary then
    local ctx = context.new(run, "summary")
    local sok, serr = pcall(def.summary, ctx, result)
    if not sok then hoist.log.warn("the pipeline's summary function failed: " .. tostring(serr)) end
  end
  if not ok then result.error = final_error(run, result) end
  -- Once per run, its outcome known and its rollback done; in a task of its own so that a
  -- cancelled (SIGTERM'd) run still tells. hoist.notify never raises for a channel that
  -- fails: the outcome stays the run's.
  if notify_cfg then
    local sent, results = pcall(hoist.shielded, notify.run_finished, notify_cfg, result)
    result.notified = sent and results or nil
    collect_plan(run, "notify")
  end
  run.journal:append {
    kind = "run.end", status = result.status, duration = result.duration, dry_run = run.dry_run or nil,
    error = result.error and { code = result.error.code, message = result.error.message, where = result.error.where,
                               stage = run.failure.stage } or nil,
    rolled_back = result.rolled_back, left = result.left,
  }
  hoist.log.event("pipeline.end", ("%s %s: %s in %.2fs"):format(def.name, def.version, result.status, result.duration),
    { pipeline = def.name, version = def.version, run = run.id, status = result.status, duration = result.duration,
      rolled_back = result.rolled_back, left = result.left },
    run.json and (result.status == "succeeded" and "info" or "error") or "debug")
  run.journal:close()
  context.set_active(previous)
  core.set_dry_run(previous_dry_run)
  core.plan_capture(was_capturing)
  report.finish(run, result)
  if result.error and opts.raise ~= false then error(result.error, 0) end
  return result
end

return R
