-- The deploy lock (hoist.targets.lock over hoist.native.lock): taking it, waiting with a
-- message naming the holder, timeout -> conflict, a dead holder's lock taken over, the
-- same run taking it again. No Docker: holders in other processes are `hoist run` of a tiny
-- script that takes the lock and sleeps.
local t = require "hoist.test"
local locks = require "hoist.targets.lock"
local native = require "hoist.native.lock"

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local function tmp() return support.tmpdir("hoist-lock-test") end

-- Collects the events of one kind emitted while fn runs.
local function capture(fn)
  local seen = {}
  local saved = hoist.log.info
  hoist.log.info = function(msg, fields)
    seen[#seen + 1] = msg
    return saved(msg, fields)
  end
  local saved_warn = hoist.log.warn
  hoist.log.warn = function(msg, fields)
    seen[#seen + 1] = msg
    return saved_warn(msg, fields)
  end
  local ok, err = pcall(fn)
  hoist.log.info, hoist.log.warn = saved, saved_warn
  return ok, err, seen
end

-- Starts `hoist run` of a script holding the lock of (local, svc) in `dir` as run `run`;
-- returns the task and the child's pid once it holds the lock.
local function hold_in_child(dir, run, seconds)
  local script = dir .. "/hold.lua"
  support.write(script, ([[
local h = require("hoist.targets.lock").acquire { target = "local", service = "svc", run = %q, state_dir = %q }
io.open(%q, "w"):write("held\n")
hoist.sleep(%g)
h:release()
]]):format(run, dir, dir .. "/" .. run .. ".held", seconds))
  local pidfile = dir .. "/" .. run .. ".pid"
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", 'echo $$ > "$1"; exec "$2" run "$3"', "sh", pidfile, support.hoist_bin(), script,
                        timeout = 120 }
  end)
  for _ = 1, 200 do
    if support.exists(dir .. "/" .. run .. ".held") then break end
    hoist.sleep(0.05)
  end
  t.ok(support.exists(dir .. "/" .. run .. ".held"), "the child took the lock")
  return task, tonumber(support.read(pidfile):match("%d+"))
end

t.case("native: one holder at a time; the file names the holder; released on unlock", function()
  local dir = tmp()
  local path = dir .. "/a/b.lock"
  local a, prev = native.try(path, '{"run":"r1"}')
  t.ok(a, "taken")
  t.eq(prev, "", "a fresh lock has no previous owner")
  t.eq(hoist.exec({ "stat", "-c", "%a", path }).stdout, "600\n")
  local b, holder = native.try(path, '{"run":"r2"}')
  t.eq(b, nil, "a second taker (even in this process) waits")
  t.eq(holder, '{"run":"r1"}')
  a:unlock()
  a:unlock() -- idempotent
  local c, prev2 = native.try(path, '{"run":"r2"}')
  t.ok(c, "free again")
  t.eq(prev2, "", "a clean release leaves no owner behind")
  c:unlock()
  hoist.exec { "rm", "-rf", dir }
end)

t.case("acquire: the same run takes it again; the lock goes with the last release", function()
  local dir = tmp()
  local o = { target = "local", service = "svc", run = "run-a", state_dir = dir, timeout = 0 }
  local h1 = locks.acquire(o)
  local h2 = locks.acquire(o)
  t.eq(h1.key, "local/svc")
  t.eq(h1.path, dir .. "/locks/local--svc.lock")
  h1:release()
  h1:release() -- a taker releases once
  t.raises(function() locks.acquire { target = "local", service = "svc", run = "run-b", state_dir = dir, timeout = 0 } end,
    "conflict", "local/svc is being deployed by run run%-a")
  h2:release()
  local h3 = locks.acquire { target = "local", service = "svc", run = "run-b", state_dir = dir, timeout = 0 }
  h3:release()
  hoist.exec { "rm", "-rf", dir }
end)

t.cases("acquire: bad options name the option", {
  { name = "no table", o = "x", pat = "expected {target=, service=" },
  { name = "bad service", o = { target = "local", service = "../x" }, pat = "target and service must be names" },
  { name = "no target", o = { service = "svc" }, pat = "target and service must be names" },
  { name = "bad timeout", o = { target = "local", service = "svc", timeout = -1 }, pat = "timeout must be a number" },
}, function(row)
  t.raises(function() locks.acquire(row.o) end, "invalid_argument", row.pat)
end)

t.case("a second run waits with a message naming the holder's run and pid, then conflict", function()
  local dir = tmp()
  local task, pid = hold_in_child(dir, "holder-run", 30)
  local started = hoist.now()
  local ok, err, said = capture(function()
    locks.acquire { target = "local", service = "svc", run = "waiter", state_dir = dir, timeout = 1.5 }
  end)
  local waited = hoist.now() - started
  hoist.exec { "kill", "-TERM", tostring(pid) }
  task:wait()
  hoist.exec { "rm", "-rf", dir }
  t.ok(not ok, "no lock while the other run holds it")
  t.eq(err.code, "conflict")
  t.match(err.message, "local/svc is being deployed by run holder%-run %(host [^,]+, pid " .. pid .. ", since ")
  t.match(err.message, "waited %d+s for it %(lock_timeout%)")
  t.eq(err.details.holder.pid, pid)
  t.ok(waited >= 1.4 and waited < 5, ("waited about the timeout (%.2fs)"):format(waited))
  t.match(said[1] or "", "^waiting for run holder%-run %(host [^,]+, pid " .. pid .. ", since .-%), which is deploying local/svc")
end, { timeout = 120 })

t.case("a second run gets the lock as soon as the holder releases it", function()
  local dir = tmp()
  local task = hold_in_child(dir, "short-holder", 1)
  local h = locks.acquire { target = "local", service = "svc", run = "next", state_dir = dir, timeout = 30 }
  t.ok(h, "taken after the holder released it")
  h:release()
  local r = task:wait()
  t.eq(r.code, 0, r.stderr)
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 120 })

t.case("a lock left by a killed process is taken over at once, naming it", function()
  local dir = tmp()
  local task, pid = hold_in_child(dir, "killed-run", 60)
  hoist.exec { "kill", "-KILL", tostring(pid), check = true }
  task:wait()
  local started = hoist.now()
  local ok, h, said = capture(function()
    return locks.acquire { target = "local", service = "svc", run = "survivor", state_dir = dir, timeout = 5 }
  end)
  t.ok(ok, tostring(h))
  t.ok(hoist.now() - started < 1, "no waiting for a dead holder")
  t.match(table.concat(said, "\n"), "took over the deploy lock of local/svc %(lock file [^)]+%) from run killed%-run %(host [^,]+, pid " .. pid)
  h:release()
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 120 })

t.case("the lock is not inherited by a child process", function()
  local dir = tmp()
  local h = locks.acquire { target = "local", service = "svc", run = "parent", state_dir = dir, timeout = 0 }
  -- a child started while the lock is held (like the detached proxy) outlives the release
  local child = hoist.spawn(function() return hoist.exec { "sleep", "1" } end)
  h:release()
  local h2 = locks.acquire { target = "local", service = "svc", run = "other", state_dir = dir, timeout = 0 }
  h2:release()
  child:wait()
  hoist.exec { "rm", "-rf", dir }
end)

t.case("dry-run locks nothing", function()
  local dir = tmp()
  local held = native.try(dir .. "/locks/local--svc.lock", '{"run":"someone"}')
  local r = hoist.pipeline.run({
    name = "dry", version = "1.0.0",
    stages = { { name = "s", run = function()
      local h = locks.acquire { target = "local", service = "svc", run = "dry", state_dir = dir, timeout = 0 }
      return { planned = h.planned }
    end } },
  }, {}, { dry_run = true, quiet = true, state_dir = dir })
  held:unlock()
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.status, "succeeded")
  t.eq(r.outputs.s.planned, true)
end)

---------------------------------------------------------------- the algorithm over any backend

-- A backend in memory: `state.holder` is who holds it; counts tries, renewals, releases.
local function fake(state)
  local b = { key = "fake/svc", slot = "fake:" .. tostring(state), ttl = state.ttl, interval = 0.05, fields = { where = "memory" } }
  function b.describe() return "fake lock in memory" end
  function b.try(_, me, may_take)
    local h = state.holder
    if h and not may_take(h) then return false, h end
    state.holder = { run = me.run, host = me.host, pid = me.pid, since = me.since, stamp = 0 }
    return true, h
  end
  function b.renew()
    state.renewals = (state.renewals or 0) + 1
    if state.steal then return false end
    state.holder.stamp = state.holder.stamp + 1
    return true
  end
  function b.release()
    hoist.sleep(0.05) -- a release that waits (a PATCH, a DELETE), as the cloud backends' do
    state.released = (state.released or 0) + 1
    state.holder = nil
    return true
  end
  return b
end

local function gone_pid() return tonumber(hoist.exec({ "sh", "-c", "echo $$", check = true }).stdout:match("%d+")) end

t.cases("take: which holder is taken over, and the warning naming it", {
  { name = "a process of this host that is gone", holder = function() return { run = "r0", host = locks.host(), pid = gone_pid() } end,
    said = "from run r0 %(host [^,]+, pid %d+%), whose process is gone" },
  { name = "an expiry in the past", holder = function() return { run = "r0", host = "far", pid = 1, expires = os.time() - 5 } end,
    said = "from run r0 %(host far, pid 1%), which stopped renewing it" },
  { name = "a stamp that stood still for a whole ttl", ttl = 0.3,
    holder = function() return { run = "r0", host = "far", pid = 1, stamp = "v1" } end,
    said = "from run r0 %(host far, pid 1%), which stopped renewing it" },
}, function(row)
  local state = { holder = row.holder(), ttl = row.ttl }
  local ok, h, said = capture(function() return locks.take(fake(state), { run = "r1", timeout = 5 }) end)
  t.ok(ok, tostring(h))
  t.eq(state.holder.run, "r1")
  t.eq(h.where, "memory", "the backend's fields are on the handle")
  t.match(table.concat(said, "\n"), "took over the deploy lock of fake/svc %(fake lock in memory%) " .. row.said)
  h:release()
  t.eq(state.released, 1)
end)

t.case("take: a live holder is waited for, then conflict naming it (run, host, pid, since)", function()
  local state = { holder = { run = "r0", host = "far", pid = 7, since = "2026-01-01T00:00:00Z", expires = os.time() + 600 } }
  local ok, err, said = capture(function() return locks.take(fake(state), { run = "r1", timeout = 0.3 }) end)
  t.ok(not ok)
  t.eq(err.code, "conflict")
  t.match(err.message, "^fake/svc is being deployed by run r0 %(host far, pid 7, since 2026%-01%-01T00:00:00Z%): waited")
  t.match(said[1] or "", "^waiting for run r0 %(host far, pid 7, since .-%), which is deploying fake/svc %(fake lock in memory;")
  t.eq(err.details.holder.run, "r0")
end)

t.case("take: renewed every ttl/3 while held; a renewal that finds another holder marks the handle lost", function()
  local state = { ttl = 0.3 }
  local h = locks.take(fake(state), { run = "r1", timeout = 0 })
  hoist.sleep(0.5)
  t.ok((state.renewals or 0) >= 2, "renewed while held")
  state.steal = true
  hoist.sleep(0.3)
  t.eq(h.lost, true)
  h:release()
  t.eq(state.released, nil, "a lost lock is not released (it is another run's now)")
end)

t.case("release runs when the holder is cancelled (SIGTERM, a failed parallel sibling)", function()
  local state = {}
  local task = hoist.spawn(function()
    return locks.holding(locks.take(fake(state), { run = "r1", timeout = 0 }), hoist.sleep, 30)
  end)
  hoist.sleep(0.1)
  task:cancel()
  t.raises(function() task:wait() end, "cancelled")
  t.eq(state.released, 1, "released although its task was cancelled")
  -- a stage of a parallel group is cancelled when its sibling fails
  local other = {}
  t.raises(function()
    hoist.parallel(function() locks.holding(locks.take(fake(other), { run = "r2", timeout = 0 }), hoist.sleep, 30) end,
                   function() hoist.sleep(0.1); hoist.error { code = "internal", message = "sibling failed" } end)
  end, "internal", "sibling failed")
  t.eq(other.released, 1, "the cancelled parallel stage released its lock")
end)
