--- hoist: the Lua face of the engine. Every module is reachable as `hoist.<name>` and as
--- `require "hoist.<name>"`; modules load on first use.
---@class hoist
---@field args table<string, any> script arguments (`--set key=value`, `--params-file`)
---@field run hoist.RunInfo the current run
---@field version string engine version, e.g. "0.1.0"
local core = require "hoist.native.core"

local M = {}

---@class hoist.RunInfo
---@field id string run id
---@field dir string `.hoist/runs/<id>` ("" when the run writes no folder)
---@field dry_run boolean
---@field state_dir string

-- Waiting natives return `ok, ...`; raise the error value when ok is false.
local function await(ok, ...)
  if ok then return ... end
  error((...), 0)
end
M._await = await

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
  assert(type(fn) == "function", "hoist.spawn: expected a function")
  return setmetatable({ _native = core.spawn(fn, ...) }, Task)
end

--- Pauses the calling task; other tasks go on.
---@param seconds number
function M.sleep(seconds) return await(core.sleep(seconds)) end

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
  for i = 1, n do
    assert(type(fns[i]) == "function", "hoist.parallel: argument " .. i .. " is not a function")
  end
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
  local limit = opts and opts.limit or #list
  assert(limit >= 1, "hoist.map: limit must be >= 1")
  return run_group(#list, limit, function(i) return fn(list[i], i) end)
end

--- Runs fn(...) and raises `timeout` if it has not finished after `seconds` (fn is
--- cancelled and has stopped by then).
---@param seconds number
---@param fn function
---@return any ...
function M.timeout(seconds, fn, ...)
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
    error(core.new_error { code = "timeout", message = ("timed out after %gs"):format(seconds) }, 0)
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
  assert(type(value) == "string", "hoist.secret: expected a string")
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
