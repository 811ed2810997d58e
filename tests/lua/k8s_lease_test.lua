-- hoist.k8s.lease: the per-workload deploy lock (a coordination.k8s.io/v1 Lease) against the
-- Kubernetes emulator of tests/env. Two "hosts" are two runs in this process (different run
-- ids) or a child hoist process. Skipped without the emulator; failed instead when CI=true.
local t = require "hoist.test"
local k8s = hoist.k8s
local lease = require "hoist.k8s.lease"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local cluster = dofile(here .. "/k8s_cluster.lua")
local NS = cluster.namespace("hoist-lease")
local client, drop_namespace = cluster.client_in(NS)

local function get(name) return client():get { kind = "Lease", name = name, missing_ok = true } end

-- The info and warn lines logged while fn runs.
local function logged(fn)
  local lines = {}
  local info, warn = hoist.log.info, hoist.log.warn
  hoist.log.info = function(m, f) lines[#lines + 1] = m; info(m, f) end
  hoist.log.warn = function(m, f) lines[#lines + 1] = m; warn(m, f) end
  local ok, err = pcall(fn)
  hoist.log.info, hoist.log.warn = info, warn
  if not ok then error(err, 0) end
  return table.concat(lines, "\n")
end

t.case("acquire creates the Lease naming run:host:pid; the same run takes it again; release deletes it", function()
  local c = client()
  local h = lease.acquire { client = c, name = "web", run = "run-a", timeout = 0 }
  t.eq(h.lease, "hoist-lock-deployment-web")
  t.eq(h.key, "kubernetes/" .. NS .. "/web")
  local l = get("hoist-lock-deployment-web")
  t.match(l.spec.holderIdentity, "^run%-a:[^:]+:%d+$")
  t.eq(l.spec.leaseDurationSeconds, lease.defaults.duration)
  t.match(l.spec.renewTime, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$")
  local again = lease.acquire { client = c, name = "web", run = "run-a", timeout = 0 }
  again:release()
  t.match(get("hoist-lock-deployment-web").spec.holderIdentity, "^run%-a:", "still held: one taker left")
  h:release()
  h:release()
  t.eq(get("hoist-lock-deployment-web"), nil, "a released Lease is deleted: no Lease is left with a dead pid")
end)

t.case("a second run waits, naming the first, then gets conflict after its timeout", function()
  local c = client()
  local h = lease.acquire { client = c, name = "api", run = "run-a", timeout = 0 }
  local err
  local text = logged(function()
    local ok, e = pcall(lease.acquire, { client = c, name = "api", run = "run-b", timeout = 1 })
    t.ok(not ok, "run-b must not get it")
    err = e
  end)
  t.match(text, "waiting for run run%-a %(host [^,]+, pid %d+, renewed [^)]+%), which is deploying kubernetes/" .. NS:gsub("%-", "%%-") .. "/api")
  t.eq(err.code, "conflict")
  t.match(err.message, "is being deployed by run run%-a .*waited 1s for it %(lock_timeout%), giving up")
  t.eq(err.details.holder.run, "run-a")
  -- once released, run-b gets it while it waits
  local got
  local waiter = hoist.spawn(function() got = lease.acquire { client = c, name = "api", run = "run-b", timeout = 10 } end)
  hoist.sleep(0.6)
  t.eq(got, nil, "run-b waits while run-a holds it")
  h:release()
  waiter:wait()
  t.match(get("hoist-lock-deployment-api").spec.holderIdentity, "^run%-b:")
  t.eq(get("hoist-lock-deployment-api").spec.leaseTransitions, 0, "a released Lease is not a transition")
  got:release()
end)

t.case("an expired Lease is taken over with a warning naming its holder", function()
  local c = client()
  c:create { apiVersion = "coordination.k8s.io/v1", kind = "Lease", metadata = { name = "hoist-lock-deployment-old" },
             spec = { holderIdentity = "run-dead:far-host:1", leaseDurationSeconds = 5, renewTime = "2020-01-01T00:00:00.000000Z" } }
  local h
  local text = logged(function() h = lease.acquire { client = c, name = "old", run = "run-c", timeout = 0 } end)
  t.match(text, "took over the deploy lock of kubernetes/.*/old %(Lease .*%) from run run%-dead %(host far%-host, pid 1")
  local l = get("hoist-lock-deployment-old")
  t.match(l.spec.holderIdentity, "^run%-c:")
  t.eq(l.spec.leaseTransitions, 1)
  h:release()
end)

t.case("a Lease held by a process of this host that is gone is taken over at once", function()
  local c = client()
  local host = hoist.fs.read_file("/proc/sys/kernel/hostname"):match("%S+")
  local gone = hoist.exec { "sh", "-c", "echo $$" }.stdout:match("%d+")
  c:create { apiVersion = "coordination.k8s.io/v1", kind = "Lease", metadata = { name = "hoist-lock-deployment-killed" },
             spec = { holderIdentity = ("run-k:%s:%s"):format(host, gone), leaseDurationSeconds = 3600,
                      renewTime = os.date("!%Y-%m-%dT%H:%M:%S.000000Z") } }
  local h = lease.acquire { client = c, name = "killed", run = "run-d", timeout = 0 }
  t.match(get("hoist-lock-deployment-killed").spec.holderIdentity, "^run%-d:")
  h:release()
end)

t.case("a live holder keeps renewing: its Lease is never taken over", function()
  local c = client()
  local h = lease.acquire { client = c, name = "renewed", run = "run-e", timeout = 0, duration = 2 }
  local first = get("hoist-lock-deployment-renewed").spec.renewTime
  hoist.sleep(2.5)
  t.ok(get("hoist-lock-deployment-renewed").spec.renewTime ~= first, "renewTime moved")
  t.raises(function() lease.acquire { client = c, name = "renewed", run = "run-f", timeout = 1 } end, "conflict", "run run%-e")
  h:release()
end)

t.case("two processes: the second hoist waits on the Lease naming the first", function()
  client()
  local script = support.tmpdir("hoist-lease") .. "/take.lua"
  support.write(script, ([[
local h = require("hoist.k8s.lease").acquire { name = "two", namespace = %q, timeout = 20 }
print("got it " .. h.identity)
hoist.sleep(tonumber(hoist.args.hold or "0"))
h:release()
]]):format(NS))
  local first = hoist.spawn(function() return support.run_hoist({ "run", script, "--set", "hold=3" }, { timeout = 60 }) end)
  for _ = 1, 100 do
    local l = get("hoist-lock-deployment-two")
    if l and l.spec.holderIdentity ~= "" then break end
    hoist.sleep(0.1)
  end
  local second = support.run_hoist({ "run", script, "--no-color" }, { timeout = 60 })
  local a = first:wait()
  t.eq(a.code, 0, a.stderr)
  t.eq(second.code, 0, second.stderr)
  local first_id = a.stdout:match("got it (%S+)")
  t.match(second.stdout .. second.stderr, "waiting for run " .. first_id:match("^[^:]+"):gsub("%p", "%%%0"))
end)

t.case("SIGTERM to a run holding the Lease: exit 130, the Lease is gone at once, no 'could not release'", function()
  client()
  local r = support.sigterm_holder("kubernetes", { service = "term", namespace = NS }, function()
    local l = get("hoist-lock-deployment-term")
    t.match(l and l.spec.holderIdentity or "", "^%d+%-%d+%-%x+:", "the run holds the Lease")
  end, { KUBECONFIG = os.getenv("KUBECONFIG") })
  t.eq(r.code, 130, r.output)
  t.match(r.output, "received SIGTERM")
  t.eq(get("hoist-lock-deployment-term"), nil, "the Lease is deleted before the run exits, not left with a dead pid\n" .. r.output)
  t.ok(not r.output:find("could not release", 1, true), r.output)
end)

t.cases("bad options are refused", {
  { opts = { name = "Bad_Name" }, pat = "gives no valid Lease name" },
  { opts = { name = "x", timeout = -1 }, pat = "timeout must be >= 0" },
  { opts = { name = "x", bogus = 1 }, pat = "unknown option 'bogus'" },
  { opts = {}, pat = "option 'name' is required" },
}, function(row)
  local opts = { client = client() }
  for k, v in pairs(row.opts) do opts[k] = v end
  t.raises(function() lease.acquire(opts) end, "invalid_argument", row.pat)
end)

t.case("cleanup", function() drop_namespace() end)
