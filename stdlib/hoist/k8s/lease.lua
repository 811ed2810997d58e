--- hoist.k8s.lease: the deploy lock of a Kubernetes workload, held in the cluster itself so
--- that two hosts never roll one Deployment at once: a coordination.k8s.io/v1 Lease
--- `hoist-lock-<kind>-<name>` in the workload's namespace.
---
--- - holderIdentity is `<run>:<host>:<pid>`; leaseDurationSeconds says how long it holds
---   without renewal; renewTime is renewed every third of that while held.
--- - Every write is guarded by the resourceVersion read just before (a merge patch carrying
---   metadata.resourceVersion, or a create): of two takers one wins, the other gets 409 and
---   reads again.
--- - An expired Lease (renewTime + duration in the past, or unchanged for a whole duration
---   by this host's clock: clocks of hosts differ), or one whose holder was a process of
---   this host that is gone, is taken over with a warning naming its holder.
--- - While waiting, a message names the holder every 10 s; after `timeout` seconds: conflict.
--- - release() gives it up (holderIdentity emptied, guarded the same way).
--- The handle is a hoist.targets.Lock; within one process a run that holds it takes it again
--- without waiting (the count goes up), as the file lock does. Reference: docs/kubernetes.md,
--- "Lock".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: a killed holder on another host blocks the workload for at most `duration`
--- seconds; renewals every duration/3 leave two chances to a slow API server.
M.defaults = { duration = 60, interval = 0.5, say_every = 10, timeout = 300 }

local held = {} -- "<ns>/<lease>" -> {run=, count=, ...}
local renew, handle -- below acquire

local function host()
  local text = hoist.fs.read_file("/proc/sys/kernel/hostname", { missing_ok = true })
  return (text and text:match("%S+")) or os.getenv("HOSTNAME") or "localhost"
end

local function pid() return require("hoist.native.journal").self().pid end

-- RFC 3339 with microseconds (a MicroTime), and back to seconds since the epoch.
local function micro_time(t)
  local frac = hoist.now() % 1
  return os.date("!%Y-%m-%dT%H:%M:%S", t or os.time()) .. (".%06dZ"):format(math.floor(frac * 1e6))
end

local function days_from_civil(y, m, d) -- Howard Hinnant's algorithm: no local time zone
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function epoch(text)
  local y, mo, d, h, mi, s = tostring(text or ""):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return nil end
  return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end
M.epoch = epoch

--- The Lease name of a workload: `hoist-lock-<kind>-<name>` (kind lower-cased).
---@param kind string
---@param name string
---@return string
function M.name(kind, name)
  local n = ("hoist-lock-%s-%s"):format(kind:lower(), name)
  if #n > 253 or not n:match("^[a-z0-9][%-a-z0-9.]*$") then
    fail("invalid_argument", ("hoist.k8s.lease: %s/%s gives no valid Lease name (%s)"):format(kind, name, n))
  end
  return n
end

-- "run R (host h, pid p, renewed T)" from a Lease, and the holder's parts.
local function describe(lease)
  local id = (lease.spec or {}).holderIdentity or ""
  local run, h, p = id:match("^(.*):([^:]*):(%d+)$")
  local who = { identity = id, run = run or id, host = h, pid = tonumber(p), renewed = (lease.spec or {}).renewTime }
  return ("run %s (host %s, pid %s, renewed %s)"):format(who.run, tostring(h), tostring(p), tostring(who.renewed)), who
end

local function free(lease) return ((lease.spec or {}).holderIdentity or "") == "" end

---@class hoist.k8s.LeaseOptions
---@field kind? string default "Deployment"
---@field name string the workload
---@field namespace? string default: the client's
---@field client? hoist.k8s.Client default: hoist.k8s.client{kubeconfig=, context=}
---@field kubeconfig? string
---@field context? string
---@field run? string default hoist.run.id
---@field timeout? number seconds to wait for another holder (default 300); 0 tries once
---@field duration? integer leaseDurationSeconds (default 60)
---@field target? string the target's name, for messages ("kubernetes")

---@class hoist.k8s.LeaseLock: hoist.targets.Lock
---@field lease string the Lease's name
---@field namespace string
---@field identity string run:host:pid
---@field lost? boolean a renewal found another holder

--- Takes the Lease of a workload (see the module comment). Raises conflict after `timeout`.
--- Under dry-run nothing is locked.
---@param opts hoist.k8s.LeaseOptions
---@return hoist.k8s.LeaseLock
function M.acquire(opts)
  local o = util.check_opts("hoist.k8s.lease", opts, {
    kind = { type = "string", default = "Deployment" }, name = { type = "string", required = true }, namespace = "string",
    client = "table", kubeconfig = "string", context = "string", run = "string", timeout = "number",
    duration = "integer", target = "string", service = "string",
  })
  local client = o.client or require("hoist.k8s").client { kubeconfig = o.kubeconfig, context = o.context }
  local ns = o.namespace or client.namespace
  local lease_name = M.name(o.kind, o.name)
  local key = ("%s/%s/%s"):format(o.target or "kubernetes", ns, o.name)
  local run = o.run or hoist.run.id or "?"
  local timeout = o.timeout == nil and M.defaults.timeout or o.timeout
  local duration = o.duration or M.defaults.duration
  if timeout < 0 or duration < 1 then
    fail("invalid_argument", "hoist.k8s.lease: timeout must be >= 0 and duration >= 1")
  end
  if util.dry_run() then return { key = key, run = run, lease = lease_name, namespace = ns, planned = true, release = function() end } end
  local slot = ns .. "/" .. lease_name
  local mine = held[slot]
  if mine and mine.run == run then
    mine.count = mine.count + 1
    return handle(mine)
  end

  local identity = ("%s:%s:%d"):format(run, host(), pid())
  local target = { kind = "Lease", api_version = "coordination.k8s.io/v1", name = lease_name, namespace = ns, attempts = 2 }
  local function spec(transitions)
    local now = micro_time()
    return { holderIdentity = identity, leaseDurationSeconds = duration, acquireTime = now, renewTime = now,
             leaseTransitions = transitions }
  end
  local started, said, seen = hoist.now(), nil, nil -- seen: {rv, since} of the holder's last renewal
  while true do
    local lease = client:get { kind = target.kind, api_version = target.api_version, name = lease_name, namespace = ns,
                               missing_ok = true }
    local ok, err, took_from
    if not lease then
      ok, err = pcall(client.create, client, { apiVersion = "coordination.k8s.io/v1", kind = "Lease",
        metadata = { name = lease_name, namespace = ns, labels = { ["app.kubernetes.io/managed-by"] = "hoist" } },
        spec = spec(0) }, { namespace = ns })
    else
      local who_text, who = describe(lease)
      local rv = lease.metadata.resourceVersion
      if not seen or seen.rv ~= rv then seen = { rv = rv, since = hoist.now() } end
      local d = (lease.spec or {}).leaseDurationSeconds or duration
      local renewed = epoch((lease.spec or {}).renewTime)
      local expired = (renewed and renewed + d < os.time()) or hoist.now() - seen.since >= d
      local dead = who.host == host() and who.pid and who.pid ~= pid() and not hoist.fs.pid_alive(who.pid)
      if free(lease) or expired or dead or who.identity == identity then
        if not free(lease) and who.identity ~= identity then took_from = who_text end
        local transitions = ((lease.spec or {}).leaseTransitions or 0) + (free(lease) and 0 or 1)
        ok, err = pcall(client.patch, client, { kind = target.kind, api_version = target.api_version, name = lease_name,
          namespace = ns, attempts = 2, patch = { metadata = { resourceVersion = rv }, spec = spec(transitions) } })
      else
        ok, err = false, { waiting = who_text, holder = who }
      end
    end
    if ok then
      if took_from then
        hoist.log.warn(("took over the deploy lock of %s (Lease %s/%s) from %s, which %s"):format(key, ns, lease_name,
          took_from, "stopped renewing it or ended"), { key = key, lease = lease_name, previous = took_from })
      end
      local entry = { run = run, count = 1, key = key, lease = lease_name, namespace = ns, identity = identity,
                      client = client, duration = duration, target = target }
      held[slot] = entry
      renew(entry)
      hoist.log.event("lock.acquired", ("holding the deploy lock of %s (Lease %s/%s as %s)"):format(key, ns, lease_name,
        identity), { key = key, lease = lease_name, namespace = ns, identity = identity }, "debug")
      return handle(entry)
    end
    if type(err) == "table" and hoist.is_error(err) and err.code ~= "conflict" then error(err, 0) end
    if type(err) ~= "table" or not err.waiting then err = { waiting = "another run (it took the Lease as this one tried)" } end
    local waited = hoist.now() - started
    if waited >= timeout then
      fail("conflict", ("%s is being deployed by %s: waited %gs for it (lock_timeout), giving up"):format(key, err.waiting,
        math.floor(waited + 0.5)), { key = key, lease = lease_name, namespace = ns, holder = err.holder, waited = waited,
        timeout = timeout })
    end
    if not said or hoist.now() - said >= M.defaults.say_every then
      said = hoist.now()
      hoist.log.info(("waiting for %s, which is deploying %s (Lease %s/%s; up to %gs more)"):format(err.waiting, key, ns,
        lease_name, math.floor(timeout - waited + 0.5)), { key = key, lease = lease_name, holder = err.holder })
    end
    hoist.sleep(math.min(M.defaults.interval, timeout - waited))
  end
end

-- Renews the Lease every third of its duration while it is held, in a task of its own.
function renew(entry)
  entry.task = hoist.spawn(function()
    while held[entry.namespace .. "/" .. entry.lease] == entry do
      hoist.sleep(entry.duration / 3)
      if held[entry.namespace .. "/" .. entry.lease] ~= entry then return end
      local ok, err = pcall(function()
        local lease = entry.client:get { kind = "Lease", api_version = "coordination.k8s.io/v1", name = entry.lease,
                                         namespace = entry.namespace }
        if (lease.spec or {}).holderIdentity ~= entry.identity then
          entry.lost = true
          hoist.log.error(("lost the deploy lock of %s: %s holds Lease %s/%s now"):format(entry.key, describe(lease),
            entry.namespace, entry.lease), { key = entry.key })
          return
        end
        entry.client:patch { kind = "Lease", api_version = "coordination.k8s.io/v1", name = entry.lease,
          namespace = entry.namespace, attempts = 2,
          patch = { metadata = { resourceVersion = lease.metadata.resourceVersion }, spec = { renewTime = micro_time() } } }
      end)
      if not ok then hoist.log.warn(("could not renew the deploy lock of %s: %s"):format(entry.key, tostring(err))) end
      if entry.lost then return end
    end
  end)
end

-- A handle on a held Lease (counted: the Lease goes with the last release).
function handle(entry)
  local h = { key = entry.key, run = entry.run, lease = entry.lease, namespace = entry.namespace, identity = entry.identity,
              released = false }
  function h.release(self)
    if self.released then return end
    self.released = true
    entry.count = entry.count - 1
    if entry.count > 0 then return end
    local slot = entry.namespace .. "/" .. entry.lease
    if held[slot] == entry then held[slot] = nil end
    if entry.task then entry.task:cancel() end
    if entry.lost then return end
    local ok, err = pcall(function()
      local lease = entry.client:get { kind = "Lease", api_version = "coordination.k8s.io/v1", name = entry.lease,
                                       namespace = entry.namespace, missing_ok = true }
      if not lease or (lease.spec or {}).holderIdentity ~= entry.identity then return end
      entry.client:patch { kind = "Lease", api_version = "coordination.k8s.io/v1", name = entry.lease,
        namespace = entry.namespace, attempts = 2, patch = { metadata = { resourceVersion = lease.metadata.resourceVersion },
        spec = { holderIdentity = "", renewTime = micro_time() } } }
    end)
    if ok then
      hoist.log.event("lock.released", ("released the deploy lock of %s"):format(entry.key), { key = entry.key }, "debug")
    else
      hoist.log.warn(("could not release the deploy lock of %s (it expires in %ds): %s"):format(entry.key, entry.duration,
        tostring(err)), { key = entry.key })
    end
  end
  return h
end

return M
