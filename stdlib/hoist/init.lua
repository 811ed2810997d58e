--- hoist: the Lua face of the engine. Every module is reachable as `hoist.<name>` and as
--- `require "hoist.<name>"`; modules load on first use.
---@class hoist
---@field args table<string, any> script arguments (`--set key=value`, `--params-file`)
---@field run hoist.RunInfo the current run
---@field version string engine version, e.g. "0.1.0"
local core = require "hoist.native.core"
local util = require "hoist.util"

local M = {}

---@class hoist.RunInfo
---@field id string run id
---@field dir string `.hoist/runs/<id>` ("" when the run writes no folder)
---@field dry_run boolean
---@field state_dir string

local await, fail = util.await, util.fail

local function invalid(message, details) fail("invalid_argument", message, details) end

-- Checks a duration argument of a task primitive: a number of seconds >= 0.
local function check_seconds(fname, what, v)
  if type(v) ~= "number" or v ~= v then
    invalid(("%s: %s must be a number of seconds, got %s"):format(fname, what, type(v)))
  end
  if v < 0 then invalid(("%s: %s must be >= 0, got %g"):format(fname, what, v)) end
end

local function check_fn(fname, what, v)
  if type(v) ~= "function" then invalid(("%s: %s must be a function, got %s"):format(fname, what, type(v))) end
end

---------------------------------------------------------------- errors

---@class hoist.Error
---@field code string timeout|cancelled|not_found|conflict|unauthorized|forbidden|throttled|unavailable|invalid_argument|policy_violation|rollout_failed|tool_missing|tool_failed|internal
---@field message string
---@field retryable boolean
---@field details table the remote's own words and other evidence
---@field where? string script file:line
---@field traceback? string

--- Raises a structured error.
---@param e {code: string, message: string, details?: table, retryable?: boolean}
function M.error(e)
  if type(e) == "string" then e = { code = "internal", message = e } end
  error(core.new_error(e), 0)
end

--- Builds a structured error without raising it.
---@param e {code: string, message: string, details?: table, retryable?: boolean}
---@return hoist.Error
function M.new_error(e) return core.new_error(e) end

--- True when `v` is a hoist error (and, if given, has that code).
---@param v any
---@param code? string
---@return boolean
function M.is_error(v, code)
  return core.is_error(v) and (code == nil or v.code == code)
end

---------------------------------------------------------------- tasks

---@class hoist.Task
local Task = {}
Task.__index = Task

--- Waits for the task; returns its results or raises its error.
---@return any ...
function Task:wait()
  local child_ok, payload = await(self._native:join())
  if child_ok then return unpack(payload, 1, payload.n) end
  error(payload, 0)
end

--- Cancels the task: its current wait fails with `cancelled`. Returns at once.
function Task:cancel() self._native:cancel() end

--- "running" | "done" | "failed" | "cancelled"
---@return string
function Task:status() return self._native:status() end

function Task:__tostring() return tostring(self._native) end

-- Waits for the task even when the caller itself is being cancelled; never raises.
local function settle(task)
  local ok, child_ok, payload = task._native:join(true)
  if not ok then return false, child_ok end
  return child_ok, payload
end

--- Runs `fn(...)` concurrently as a new task.
---@param fn function
---@return hoist.Task
function M.spawn(fn, ...)
  check_fn("hoist.spawn", "argument 1", fn)
  return setmetatable({ _native = core.spawn(fn, ...) }, Task)
end

--- Runs `fn(...)` to its end even when the calling task is being cancelled (SIGINT or
--- SIGTERM, a failed sibling in hoist.parallel): in a task of its own, which the caller's
--- cancellation does not reach, waited for however the caller is interrupted. For the
--- clean-up a cancelled run still owes (giving back a deploy lock, undoing a change); the
--- caller's next wait raises `cancelled` as before. Returns fn's results or raises its error.
---@param fn function
---@return any ...
function M.shielded(fn, ...)
  check_fn("hoist.shielded", "fn", fn)
  local task = M.spawn(fn, ...)
  local ok, child_ok, payload
  -- a cancellation that reaches the caller while it waits ends that wait; the caller is
  -- marked cancelled then, and a shielded wait of a cancelled task is not interrupted again
  repeat ok, child_ok, payload = task._native:join(true) until ok
  if child_ok then return unpack(payload, 1, payload.n) end
  error(payload, 0)
end

--- Pauses the calling task; other tasks go on.
---@param seconds number
function M.sleep(seconds)
  check_seconds("hoist.sleep", "seconds", seconds)
  return await(core.sleep(seconds))
end

-- Runs body(i) for i = 1..n on at most `limit` tasks. The first error cancels the rest;
-- it is raised once they have all stopped.
local function run_group(n, limit, body)
  local results, first_err, tasks = {}, nil, {}
  local next_i = 0
  local function worker()
    while first_err == nil do
      next_i = next_i + 1
      local i = next_i
      if i > n then return end
      local ok, v = pcall(body, i)
      if ok then
        results[i] = v
      elseif first_err == nil then
        first_err = v
        for _, t in ipairs(tasks) do t:cancel() end
      end
    end
  end
  for w = 1, math.min(limit, n) do tasks[w] = M.spawn(worker) end
  for _, t in ipairs(tasks) do
    local ok, err = settle(t)
    if not ok and first_err == nil and M.is_error(err, "cancelled") then
      first_err = err -- we ourselves were cancelled: stop the rest, then unwind
      for _, u in ipairs(tasks) do u:cancel() end
    end
  end
  if first_err ~= nil then error(first_err, 0) end
  return results
end

--- Runs the functions concurrently; returns their first results in order. The first error
--- cancels the others and is raised after they have stopped.
---@param ... fun(): any
---@return any ...
function M.parallel(...)
  local fns = { ... }
  local n = select("#", ...)
  for i = 1, n do check_fn("hoist.parallel", "argument " .. i, fns[i]) end
  return unpack(run_group(n, n, function(i) return fns[i]() end), 1, n)
end

--- Calls fn(item, index) for every item concurrently (at most opts.limit at once) and
--- returns the results in order. The first error cancels the rest.
---@generic T, R
---@param list T[]
---@param fn fun(item: T, index: integer): R
---@param opts? {limit?: integer}
---@return R[]
function M.map(list, fn, opts)
  if type(list) ~= "table" then invalid(("hoist.map: list must be a table, got %s"):format(type(list))) end
  check_fn("hoist.map", "fn", fn)
  local o = util.check_opts("hoist.map", opts, { limit = "integer" })
  local limit = o.limit or #list
  if limit < 1 then invalid(("hoist.map: option 'limit' must be >= 1, got %d"):format(limit)) end
  return run_group(#list, limit, function(i) return fn(list[i], i) end)
end

--- Runs fn(...) and raises `timeout` if it has not finished after `seconds` (fn is
--- cancelled and has stopped by then).
---@param seconds number
---@param fn function
---@return any ...
function M.timeout(seconds, fn, ...)
  check_seconds("hoist.timeout", "seconds", seconds)
  check_fn("hoist.timeout", "fn", fn)
  local task = M.spawn(fn, ...)
  local expired = false
  local timer = M.spawn(function()
    M.sleep(seconds)
    expired = true
    task:cancel()
  end)
  local ok, child_ok, payload = task._native:join()
  timer:cancel()
  if not ok then -- we were cancelled: stop the task first
    task:cancel()
    settle(task)
    error(child_ok, 0)
  end
  if expired then -- even if fn swallowed its cancellation: the deadline has passed
    fail("timeout", ("timed out after %gs"):format(seconds))
  end
  if child_ok then return unpack(payload, 1, payload.n) end
  error(payload, 0)
end

--- Lets other tasks run, then continues.
function M.yield() return await(core.sleep(0)) end

---------------------------------------------------------------- secrets

--- Registers a secret: from now on it (and its base64 and URL-encoded forms) is masked in
--- every log line, event, error, report and echoed child output. Returns the value.
---@param value string
---@return string
function M.secret(value)
  if type(value) ~= "string" then invalid("hoist.secret: expected a string, got " .. type(value)) end
  return core.secret(value)
end

--- Masks registered secrets in `text`.
---@param text string
---@return string
function M.scrub(text) return core.scrub(text) end

--- Monotonic clock in seconds.
---@return number
function M.now() return core.now() end

---------------------------------------------------------------- lazy modules

local shortcuts = {
  exec = { "hoist.process", "exec" },
  which = { "hoist.process", "which" },
  env = { "hoist.process", "env" },
}

setmetatable(M, {
  __index = function(t, k)
    local s = shortcuts[k]
    if s then
      local v = require(s[1])[s[2]]
      rawset(t, k, v)
      return v
    end
    if k == "run" then
      return core.run()
    elseif k == "version" then
      return core.run().version
    elseif k == "args" then
      local a = core.run().args
      rawset(t, k, a)
      return a
    end
    local name = "hoist." .. k
    if package.loaded[name] or package.preload[name] then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
    if package.searchpath(name, package.path) then -- a new module on disk under HOIST_LUA_PATH
      local m = require(name)
      rawset(t, k, m)
      return m
    end
    return nil
  end,
})

return M
