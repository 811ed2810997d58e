--- hoist.targets.lock: one deploy of a service at a time.
---
--- Two runs deploying the same service at once undo each other (one's rollback stops the
--- other's front, or a failed candidate stays serving), so a run holds a lock per (target,
--- service) from the start of its deploy until its rollback, if any, is over.
---
--- ONE algorithm (`take`) over small backends that only try, renew, release and describe, as
--- client-go's leader election works over `resourcelock.Interface`:
---
--- - within one process, a run that holds the lock takes it again without waiting (its
---   compensations do): the handle counts, and the lock goes with the last release;
--- - a second run waits, saying every 10 s whom it waits for, up to a timeout, then fails
---   with `conflict` naming the holder (run, host, pid, since);
--- - a holder that is dead is taken over at once, with a warning naming it: a process of this
---   host that is gone, or a hold not renewed in time (its expiry passed, or it stood still for
---   a whole ttl by this host's clock: clocks of hosts differ);
--- - while held, a task renews it every ttl/3 (backends with a ttl);
--- - release runs outside the caller's cancelled scope (hoist.shielded): a SIGTERM'd run
---   gives its lock back instead of leaving it until it expires.
---
--- Backends: a file lock (flock, hoist.native.lock) in `<state_dir>/locks/` (`acquire`, the
--- local target; the kernel frees it when its holder dies), a tag on an Azure resource group
--- with its ETag (hoist.targets.azure.lock), a coordination.k8s.io Lease (hoist.k8s.lease).
local util = require "hoist.util"

local fail = util.fail

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
---@field lost? boolean a renewal found another holder
---@field release fun(self: hoist.targets.Lock) gives it back (idempotent per taker)

---@class hoist.targets.LockHolder
---@field run string
---@field host? string
---@field pid? integer
---@field since? string when it was taken (UTC, ISO 8601)
---@field expires? number seconds since the epoch after which an unrenewed hold is void
---@field ttl? number the holder's own ttl (a Lease's duration)
---@field stamp? any what changes with every renewal (a tag's value, a resourceVersion)
---@field note? string what else the backend knows ("renewed ...")

---@class hoist.targets.LockBackend
---@field key string "<target>/<service>", for messages
---@field slot string what is locked, unique in the process ("file:<path>")
---@field ttl? number seconds a hold lasts without renewal; nil: no renewal (file)
---@field interval? number seconds between tries while waiting (default 0.25)
---@field fields? table|fun(me: hoist.targets.LockHolder): table copied into the handle (path, tag, lease, ...)
---@field try fun(self, me: hoist.targets.LockHolder, may_take: fun(h: hoist.targets.LockHolder): boolean): boolean, hoist.targets.LockHolder?, string?
---@field renew fun(self, me: hoist.targets.LockHolder): boolean
---@field release fun(self, me: hoist.targets.LockHolder): boolean
---@field describe fun(self): string

local held = {} -- slot -> {run=, count=, backend=, me=, renewer=, lost=}

--- This host's name as every lock backend records it: the kernel's, else HOSTNAME. The one
--- place a lock reads it: a holder "on this host" must mean the same to all backends.
---@return string
function M.host()
  local text = hoist.fs.read_file("/proc/sys/kernel/hostname", { missing_ok = true })
  local h = text and text:match("%S+")
  if h then return h end
  h = os.getenv("HOSTNAME")
  return (h and h ~= "") and h or "localhost"
end

local function pid() return require("hoist.native.journal").self().pid end

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

--- "run R (host H, pid P, renewed T, since S)": a holder as every lock message names it.
---@param h hoist.targets.LockHolder
---@return string
function M.describe(h)
  local parts = {}
  if h.host then parts[#parts + 1] = "host " .. h.host end
  parts[#parts + 1] = "pid " .. tostring(h.pid)
  if h.note then parts[#parts + 1] = h.note end
  if h.since then parts[#parts + 1] = "since " .. h.since end
  return ("run %s (%s)"):format(tostring(h.run), table.concat(parts, ", "))
end

local WHY = { dead = "whose process is gone (it ended without releasing it)",
              expired = "which stopped renewing it (it expired without being released)" }

-- Why holder `h` may be replaced by `me`: "mine", "dead", "expired", or nil (it holds).
-- `watch` remembers when the holder's stamp last changed, by this host's clock.
local function verdict(me, h, watch, ttl)
  if h.run == me.run and h.host == me.host and h.pid == me.pid then return "mine" end
  if h.host == me.host and h.pid and h.pid ~= me.pid and not hoist.fs.pid_alive(h.pid) then return "dead" end
  if h.expires and h.expires < os.time() then return "expired" end
  local life = h.ttl or ttl
  if life and h.stamp ~= nil then
    if watch.stamp ~= h.stamp then
      watch.stamp, watch.since = h.stamp, hoist.now()
    elseif hoist.now() - watch.since >= life then
      return "expired"
    end
  end
  return nil
end

-- Renews the hold every ttl/3 in a task of its own until released or lost.
local function renewer(entry)
  local b = entry.backend
  return hoist.spawn(function()
    while true do
      hoist.sleep(b.ttl / 3)
      local ok, still = pcall(b.renew, b, entry.me)
      if not ok then
        if hoist.is_error(still, "cancelled") then error(still, 0) end -- released, or the run ends
        hoist.log.warn(("could not renew the deploy lock of %s (%s): %s"):format(b.key, b:describe(),
          hoist.is_error(still) and still.message or tostring(still)), { key = b.key })
      elseif not still then
        entry.lost = true
        hoist.log.error(("lost the deploy lock of %s: another run holds %s now"):format(b.key, b:describe()), { key = b.key })
        return
      end
    end
  end)
end

local function handle(entry)
  local b = entry.backend
  local h = { key = b.key, run = entry.run, released = false }
  local fields = b.fields
  if type(fields) == "function" then fields = fields(entry.me) end
  for k, v in pairs(fields or {}) do h[k] = v end
  setmetatable(h, { __index = function(_, k) if k == "lost" then return entry.lost end end })
  function h.release(self)
    if self.released then return end
    self.released = true
    entry.count = entry.count - 1
    if entry.count > 0 then return end
    if held[b.slot] == entry then held[b.slot] = nil end
    if entry.renewer then entry.renewer:cancel() end
    if entry.lost then return end
    -- outside the cancelled scope: a SIGTERM'd run still gives its lock back
    local ok, done = pcall(hoist.shielded, b.release, b, entry.me)
    if not ok then
      hoist.log.warn(("could not release the deploy lock of %s (%s; %s): %s"):format(b.key, b:describe(),
        b.ttl and ("it expires %gs after its last renewal"):format(b.ttl) or "its process's end frees it",
        hoist.is_error(done) and done.message or tostring(done)), { key = b.key })
    elseif done == false then
      hoist.log.warn(("the deploy lock of %s was no longer ours to release (%s)"):format(b.key, b:describe()), { key = b.key })
    else
      hoist.log.event("lock.released", ("released the deploy lock of %s"):format(b.key), { key = b.key, run = entry.run }, "debug")
    end
  end
  return h
end

local function check_timeout(what, timeout)
  if type(timeout) ~= "number" or timeout < 0 then
    fail("invalid_argument", ("%s: timeout must be a number of seconds >= 0, got %s"):format(what, tostring(timeout)))
  end
  return timeout
end

-- The handle of a dry run: nothing is locked (a dry run changes nothing).
local function planned(key, run, fields)
  local h = { key = key, run = run, planned = true, release = function() end }
  for k, v in pairs(fields or {}) do h[k] = v end
  return h
end

--- Takes the lock that `backend` keeps (the algorithm of the module comment): re-entry by
--- the same run in this process, waiting with a message every 10 s, `conflict` after
--- `opts.timeout` seconds, dead holders taken over, renewal while held.
---@param backend hoist.targets.LockBackend
---@param opts {run?: string, timeout?: number, what?: string}
---@return hoist.targets.Lock
function M.take(backend, opts)
  local run = opts.run or hoist.run.id or "?"
  local timeout = check_timeout(opts.what or "targets.lock", opts.timeout == nil and M.defaults.timeout or opts.timeout)
  local key = backend.key
  if util.dry_run() then return planned(key, run, type(backend.fields) == "function" and backend.fields(nil) or backend.fields) end
  local mine = held[backend.slot]
  if mine and mine.run == run then
    mine.count = mine.count + 1
    return handle(mine)
  end
  local now = os.time()
  local me = { run = run, host = M.host(), pid = pid(), since = iso(now), started = now }
  local watch, why = {}, nil
  local function may_take(h)
    why = verdict(me, h, watch, backend.ttl)
    return why ~= nil
  end
  local started, said = hoist.now(), nil
  while true do
    why = nil
    local ok, holder, reason = backend:try(me, may_take)
    if ok then
      if holder and why ~= "mine" then
        hoist.log.warn(("took over the deploy lock of %s (%s) from %s, %s"):format(key, backend:describe(),
          M.describe(holder), reason or WHY[why] or WHY.dead), { key = key, previous = holder })
      end
      local entry = { run = run, count = 1, backend = backend, me = me }
      held[backend.slot] = entry
      if backend.ttl then entry.renewer = renewer(entry) end
      hoist.log.event("lock.acquired", ("holding the deploy lock of %s (%s)"):format(key, backend:describe()),
        { key = key, run = run }, "debug")
      return handle(entry)
    end
    local waited = hoist.now() - started
    local who = holder and M.describe(holder) or "another run (it took the lock as this one tried)"
    if waited >= timeout then
      fail("conflict", ("%s is being deployed by %s: waited %gs for it (lock_timeout), giving up (%s)"):format(key, who,
        math.floor(waited + 0.5), backend:describe()), { key = key, holder = holder, waited = waited, timeout = timeout,
        lock = backend:describe() })
    end
    if holder and (not said or hoist.now() - said >= M.defaults.say_every) then
      said = hoist.now()
      hoist.log.info(("waiting for %s, which is deploying %s (%s; up to %gs more)"):format(who, key, backend:describe(),
        math.floor(timeout - waited + 0.5)), { key = key, holder = holder })
    end
    -- held: try again after the backend's interval; another writer came first: almost at once
    hoist.sleep(math.max(0, math.min(holder and (backend.interval or M.defaults.interval) or 0.05, timeout - waited)))
  end
end

---------------------------------------------------------------- the file backend

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

-- A holder from a lock file's owner text (JSON); nil when it has not said who it is yet.
local function owner_of(text)
  local ok, o = pcall(hoist.json.decode, text or "")
  if not ok or type(o) ~= "table" or o.run == nil then return nil end
  return { run = o.run, host = o.host, pid = o.pid, since = o.since }
end

-- The file backend: the kernel is the judge of dead holders (flock goes with its process),
-- so `try` needs no verdict, and there is nothing to renew.
local function file_backend(path, key)
  local native = require "hoist.native.lock"
  local b = { key = key, slot = "file:" .. path, fields = { path = path } }
  local lock
  function b.describe() return "lock file " .. path end
  function b.try(_, me)
    local got, text = native.try(path, hoist.json.encode { run = me.run, host = me.host, pid = me.pid, since = me.since })
    if not got then return false, owner_of(text) end
    lock = got
    return true, owner_of(text), "which ended without releasing it"
  end
  function b.renew() return true end
  function b.release()
    lock:unlock()
    return true
  end
  return b
end

--- Takes the deploy lock of (target, service) in the state folder (the file backend),
--- waiting for its holder up to `timeout` seconds (a message names the holder's run and
--- pid). Raises conflict when the time is up. Under dry-run nothing is locked.
---@param opts hoist.targets.LockOptions
---@return hoist.targets.Lock
function M.acquire(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "targets.lock: expected {target=, service=, ...}") end
  local path = M.file(opts)
  check_timeout("targets.lock", opts.timeout == nil and M.defaults.timeout or opts.timeout)
  return M.take(file_backend(path, opts.target .. "/" .. opts.service), { run = opts.run, timeout = opts.timeout })
end

local function release_then(handle_, ok, ...)
  handle_:release()
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
