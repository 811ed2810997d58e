--- hoist.targets.lock: one deploy of a service at a time.
---
--- Two runs deploying the same service at once undo each other (one's rollback stops the
--- other's front, or a failed candidate stays serving), so a run holds a lock per (target,
--- service) from the start of its deploy until its rollback, if any, is over. A second run
--- waits, saying whom it waits for, up to a timeout, then fails with `conflict`.
---
--- The lock is a file lock (flock, hoist.native.lock) in `<state_dir>/locks/`: the kernel
--- frees it when its holder's process dies, so a lock left by a killed run is taken over at
--- once, with a warning naming that run. A cloud target can hold something else instead (a
--- Kubernetes Lease, an ARM resource tag with its ETag): it gives its module a `lock(opts)`
--- returning the same handle (see hoist.targets and docs/targets.md).
---
--- Within one process, a run that already holds a lock takes it again without waiting (its
--- compensations do): the handle counts, and the lock goes when every taker released it.
local M = {}

--- Policy: a deploy's own verify can take a minute or two (verify_timeout, drain), so the
--- default wait covers a few of them; tries are frequent enough that the next run starts
--- soon after, rare enough to cost nothing.
M.defaults = { timeout = 300, interval = 0.25, say_every = 10 }

---@class hoist.targets.LockOptions
---@field target string target name ("local")
---@field service string
---@field run? string run id of the taker (default hoist.run.id)
---@field state_dir? string default hoist.run.state_dir (".hoist")
---@field timeout? number seconds to wait for another holder (default 300); 0 tries once

---@class hoist.targets.Lock
---@field key string "<target>/<service>"
---@field run string the run that holds it
---@field path? string the lock file (file locks)
---@field planned? boolean dry-run: nothing was locked
---@field release fun(self: hoist.targets.Lock) gives it back (idempotent per taker)

local held = {} -- key -> {run=, count=, native=, path=}

local util = require "hoist.util"
local fail = util.fail

local function name_ok(v) return type(v) == "string" and v:match("^[%w][%w_.%-]*$") ~= nil end

--- The lock file of (target, service): `<state_dir>/locks/<target>--<service>.lock`.
---@param opts {target: string, service: string, state_dir?: string}
---@return string
function M.file(opts)
  if not name_ok(opts.target) or not name_ok(opts.service) then
    fail("invalid_argument", ("targets.lock: target and service must be names ([A-Za-z0-9][A-Za-z0-9_.-]*), got %s and %s")
      :format(tostring(opts.target), tostring(opts.service)))
  end
  return ("%s/locks/%s--%s.lock"):format(opts.state_dir or hoist.run.state_dir or ".hoist", opts.target, opts.service)
end

-- "run 20240101-... (pid 123, since 12:00:01Z)" from a holder's owner text.
local function describe(text)
  local ok, o = pcall(hoist.json.decode, text or "")
  if not ok or type(o) ~= "table" then return "another run (it has not said which yet)", {} end
  return ("run %s (pid %s, since %s)"):format(tostring(o.run), tostring(o.pid), tostring(o.since)), o
end

local function handle(key, entry)
  local h = { key = key, run = entry.run, path = entry.path, released = false }
  function h.release(self)
    if self.released then return end
    self.released = true
    entry.count = entry.count - 1
    if entry.count > 0 then return end
    if held[key] == entry then held[key] = nil end
    entry.native:unlock()
    hoist.log.event("lock.released", ("released the deploy lock of %s"):format(key), { key = key, run = entry.run }, "debug")
  end
  return h
end

--- Takes the deploy lock of (target, service) in the state folder, waiting for its holder
--- up to `timeout` seconds (a message names the holder's run and pid). Raises conflict when
--- the time is up. Under dry-run nothing is locked (a dry run changes nothing).
---@param opts hoist.targets.LockOptions
---@return hoist.targets.Lock
function M.acquire(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "targets.lock: expected {target=, service=, ...}") end
  local path = M.file(opts)
  local key = opts.target .. "/" .. opts.service
  local run = opts.run or hoist.run.id or "?"
  local timeout = opts.timeout == nil and M.defaults.timeout or opts.timeout
  if type(timeout) ~= "number" or timeout < 0 then
    fail("invalid_argument", ("targets.lock: timeout must be a number of seconds >= 0, got %s"):format(tostring(timeout)))
  end
  if util.dry_run() then
    return { key = key, run = run, planned = true, release = function() end }
  end
  local mine = held[key]
  if mine and mine.run == run then
    mine.count = mine.count + 1
    return handle(key, mine)
  end
  local native = require "hoist.native.lock"
  local owner = hoist.json.encode { run = run, pid = require("hoist.native.journal").self().pid, target = opts.target,
                                    service = opts.service, since = os.date("!%Y-%m-%dT%H:%M:%SZ") }
  local started, said = hoist.now(), nil
  while true do
    local lock, text = native.try(path, owner)
    if lock then
      if text ~= "" then
        local who = describe(text)
        hoist.log.warn(("took over the deploy lock of %s from %s, which ended without releasing it"):format(key, who),
          { key = key, previous = text })
      end
      local entry = { run = run, count = 1, native = lock, path = path }
      held[key] = entry
      hoist.log.event("lock.acquired", ("holding the deploy lock of %s"):format(key), { key = key, run = run, path = path },
        "debug")
      return handle(key, entry)
    end
    local who, o = describe(text)
    local waited = hoist.now() - started
    if waited >= timeout then
      fail("conflict", ("%s is being deployed by %s: waited %gs for it (lock_timeout), giving up"):format(key, who,
        math.floor(waited + 0.5)), { key = key, holder = o, lock = path, waited = waited, timeout = timeout })
    end
    if not said or hoist.now() - said >= M.defaults.say_every then
      said = hoist.now()
      hoist.log.info(("waiting for %s, which is deploying %s (up to %gs more)"):format(who, key,
        math.floor(timeout - waited + 0.5)), { key = key, holder = o, lock = path })
    end
    hoist.sleep(math.min(M.defaults.interval, timeout - waited))
  end
end

local function release_then(handle, ok, ...)
  handle:release()
  if not ok then error((...), 0) end
  return ...
end

--- Runs `fn(...)` holding `handle` (any hoist.targets.Lock: a file lock, an ARM-side or a
--- Lease lock) and releases it however `fn` ends: its results, or its error raised again.
---@param handle hoist.targets.Lock
---@param fn function
---@return any ...
function M.holding(handle, fn, ...) return release_then(handle, pcall(fn, ...)) end

--- Runs fn(...) holding the file lock of `opts`; releases it whether fn returns or raises.
---@param opts hoist.targets.LockOptions
---@param fn function
---@return any
function M.with(opts, fn, ...) return M.holding(M.acquire(opts), fn, ...) end

return M
