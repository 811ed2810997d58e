--- hoist.k8s.lease: the deploy lock of a Kubernetes workload, held in the cluster itself so
--- that two hosts never roll one Deployment at once: a coordination.k8s.io/v1 Lease
--- `hoist-lock-<kind>-<name>` in the workload's namespace. It is a backend of the one lock
--- algorithm of hoist.targets.lock (waiting with a message naming the holder, conflict after
--- `timeout`, take-over of a dead or expired holder, renewal, a counted handle, release
--- outside a cancelled scope); what is the Lease's own:
---
--- - holderIdentity is `<run>:<host>:<pid>`, acquireTime when it was taken; leaseDurationSeconds
---   says how long it holds without renewal; renewTime is renewed every third of that.
--- - Every write is guarded by the resourceVersion read just before (a merge patch carrying
---   metadata.resourceVersion, or a create): of two takers one wins, the other gets 409 and
---   reads again.
--- - release() renews it one last time (guarded: it is still ours, and nobody may take it
---   for a whole duration), then deletes it: a run leaves no Lease behind.
--- Reference: docs/kubernetes.md, "Lock".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: a killed holder on another host blocks the workload for at most `duration`
--- seconds; renewals every duration/3 leave two chances to a slow API server.
M.defaults = { duration = 60, interval = 0.5, timeout = 300 }

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

local LEASE = { kind = "Lease", api_version = "coordination.k8s.io/v1" }

-- The Lease's holder as a hoist.targets.LockHolder; nil when it is free.
local function holder_of(lease)
  local spec = lease.spec or {}
  local id = spec.holderIdentity or ""
  if id == "" then return nil end
  local run, h, p = id:match("^(.*):([^:]*):(%d+)$")
  local renewed = epoch(spec.renewTime)
  return { run = run or id, host = h, pid = tonumber(p), identity = id, since = spec.acquireTime,
           renewed = spec.renewTime, note = "renewed " .. tostring(spec.renewTime), stamp = lease.metadata.resourceVersion,
           ttl = spec.leaseDurationSeconds, expires = renewed and spec.leaseDurationSeconds and renewed + spec.leaseDurationSeconds }
end

local function identity(me) return ("%s:%s:%d"):format(me.run, me.host, me.pid) end

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

-- The lock backend (hoist.targets.lock) of a Lease.
local function lease_backend(client, ns, name, key, duration)
  local t = LEASE
  local b = { key = key, slot = ("lease:%s/%s"):format(ns, name), ttl = duration, interval = M.defaults.interval,
              fields = function(me) return { lease = name, namespace = ns, identity = me and identity(me) } end }
  local function get() return client:get { kind = t.kind, api_version = t.api_version, name = name, namespace = ns, missing_ok = true } end
  local function patch(rv, spec)
    local ok, err = pcall(client.patch, client, { kind = t.kind, api_version = t.api_version, name = name, namespace = ns,
      attempts = 2, patch = { metadata = { resourceVersion = rv }, spec = spec } })
    if ok then return true end
    if hoist.is_error(err, "conflict") or hoist.is_error(err, "not_found") then return false end
    error(err, 0)
  end
  -- renewTime moved on, guarded: false when the Lease is no longer ours
  local function renew(me)
    local lease = get()
    local h = lease and holder_of(lease)
    if not h or h.identity ~= identity(me) then return false end
    return patch(lease.metadata.resourceVersion, { renewTime = micro_time() })
  end
  function b.describe() return ("Lease %s/%s"):format(ns, name) end
  function b.try(_, me, may_take)
    local lease = get()
    local now = micro_time()
    local spec = { holderIdentity = identity(me), leaseDurationSeconds = duration, acquireTime = now, renewTime = now }
    if not lease then
      spec.leaseTransitions = 0
      local ok, err = pcall(client.create, client, { apiVersion = t.api_version, kind = t.kind,
        metadata = { name = name, namespace = ns, labels = { ["app.kubernetes.io/managed-by"] = "hoist" } }, spec = spec },
        { namespace = ns })
      if ok then return true end
      if hoist.is_error(err, "conflict") then return false, nil end
      error(err, 0)
    end
    local h = holder_of(lease)
    if h and not may_take(h) then return false, h end
    spec.leaseTransitions = ((lease.spec or {}).leaseTransitions or 0) + (h and 1 or 0)
    if not patch(lease.metadata.resourceVersion, spec) then return false, nil end
    return true, h
  end
  function b.renew(_, me) return renew(me) end
  -- A last guarded renewal proves the Lease ours and keeps every other taker off it for a
  -- whole duration: the delete that follows cannot remove another holder's Lease.
  function b.release(_, me)
    if not renew(me) then return get() == nil end
    client:delete { kind = t.kind, api_version = t.api_version, name = name, namespace = ns, missing_ok = true }
    return true
  end
  return b
end

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
  local lease_name = M.name(o.kind, o.name)
  local duration = o.duration or M.defaults.duration
  if (o.timeout or 0) < 0 or duration < 1 then
    fail("invalid_argument", "hoist.k8s.lease: timeout must be >= 0 and duration >= 1")
  end
  local client = o.client or require("hoist.k8s").client { kubeconfig = o.kubeconfig, context = o.context }
  local ns = o.namespace or client.namespace
  local key = ("%s/%s/%s"):format(o.target or "kubernetes", ns, o.name)
  return require("hoist.targets.lock").take(lease_backend(client, ns, lease_name, key, duration),
                    { run = o.run, timeout = o.timeout == nil and M.defaults.timeout or o.timeout, what = "hoist.k8s.lease" })
end

return M
