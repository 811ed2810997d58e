--- hoist.k8s.canary: a canary release without a controller in the cluster. A Deployment
--- `<name>-canary` runs the new image with the stable Deployment's pod labels, so the same
--- Service sends it a share of the traffic; its replicas grow step by step (10% -> 50% ->
--- 100% of the stable replicas). Between steps hoist checks the Service itself: a health check
--- (hoist.verify.http, retried) and a sample of requests whose error rate and latency must stay
--- within budget, counting which answers came from the canary and which from stable. Then it
--- promotes (stable takes the new image, rolls out, the canary goes) or aborts (the canary goes,
--- stable untouched). Compensations are journaled before each change. Stable is never scaled:
--- at a step of p%, canary replicas = ceil(stable * p / 100), so the canary's share of the
--- traffic is canary / (canary + stable). Reference: docs/kubernetes.md, "Canary".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: the steps and the verification budget when the call gives none.
--- `hoist.k8s.canary{...}` is `hoist.k8s.canary.run{...}`.
---@class hoist.k8s.canary
---@overload fun(opts: hoist.k8s.CanaryOptions): hoist.k8s.CanaryResult

---@class hoist.k8s.canary.Defaults
---@field steps integer[] percent of the stable replicas, in order
---@field requests integer requests sampled through the Service after each step
---@field max_error_rate number share of sampled requests that may fail (0 = none)
---@field latency_budget number seconds one sampled request may take
---@field timeout number seconds for each rollout (canary steps, stable promotion)
M.defaults = { steps = { 10, 50, 100 }, requests = 40, max_error_rate = 0, latency_budget = 1, timeout = 300 }

local CANARY_LABEL = "hoist.dev/track"

local function meta(o) return (o and o.metadata) or {} end

local function copy(v, depth)
  if type(v) ~= "table" then return v end
  if (depth or 0) > 40 then fail("invalid_argument", "hoist.k8s.canary: the Deployment nests too deeply") end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, (depth or 0) + 1) end
  return out
end

-- The container to change: the named one, else the only/first one.
local function container_of(dep, name)
  local list = ((dep.spec or {}).template or {}).spec and dep.spec.template.spec.containers or {}
  for _, c in ipairs(list) do
    if name == nil or c.name == name then return c end
  end
  fail("not_found", ("deployment %s has no container %s"):format(meta(dep).name, name and ('"' .. name .. '"') or "at all"))
end

-- The canary Deployment: the stable one's pod template with the new image and a track label
-- in its own selector (so neither Deployment adopts the other's pods), the stable pod labels
-- kept (so the Service selects it too).
local function canary_manifest(stable, o, replicas)
  local tmpl = copy(stable.spec.template)
  tmpl.metadata = tmpl.metadata or {}
  tmpl.metadata.labels = tmpl.metadata.labels or {}
  tmpl.metadata.labels[CANARY_LABEL] = "canary"
  container_of({ metadata = stable.metadata, spec = { template = tmpl } }, o.container).image = o.image
  local selector = copy(stable.spec.selector or {})
  selector.matchLabels = selector.matchLabels or {}
  selector.matchLabels[CANARY_LABEL] = "canary"
  local labels = copy(meta(stable).labels or {})
  labels[CANARY_LABEL] = "canary"
  return {
    apiVersion = "apps/v1", kind = "Deployment",
    metadata = { name = o.canary, namespace = o.namespace, labels = labels,
                 annotations = { ["hoist.dev/canary-of"] = o.name } },
    spec = { replicas = replicas, selector = selector, template = tmpl,
             strategy = { type = "RollingUpdate", rollingUpdate = { maxSurge = 1, maxUnavailable = 0 } },
             progressDeadlineSeconds = stable.spec.progressDeadlineSeconds },
  }
end

-- The Service's address (hoist.k8s.service_url), or an error saying to give url=.
local function service_url(client, o)
  local url = hoist.k8s.service_url { name = o.service, namespace = o.namespace, client = client, url = o.url }
  if not url then
    fail("invalid_argument", ("hoist.k8s.canary: service %s has no address hoist can reach; give url="):format(o.service))
  end
  return url
end

-- Sends `requests` requests through the Service, counts failures (transport errors, statuses
-- outside expect_status, answers over the latency budget) and which track answered.
local function sample(base, o)
  local s = { requests = o.requests, errors = 0, canary = 0, stable = 0, other = 0, slowest = 0, failures = {} }
  for i = 1, o.requests do
    local started = hoist.now()
    local ok, r = pcall(hoist.http.get, base .. o.path, { timeout = math.max(o.latency_budget * 2, 2) })
    local took = hoist.now() - started
    if took > s.slowest then s.slowest = took end
    local why
    if not ok then
      if hoist.is_error(r, "cancelled") then error(r, 0) end
      why = tostring(type(r) == "table" and r.message or r)
    elseif r.status ~= 200 then
      why = ("status %d"):format(r.status)
    elseif took > o.latency_budget then
      why = ("took %.3fs, over the latency budget of %gs"):format(took, o.latency_budget)
    end
    if why then
      s.errors = s.errors + 1
      if #s.failures < 10 then s.failures[#s.failures + 1] = { request = i, error = why } end
    end
    if ok then
      local track = o.track_of(r)
      if track ~= "canary" and track ~= "stable" then track = "other" end
      s[track] = s[track] + 1
    end
  end
  s.error_rate = s.errors / o.requests
  return s
end

-- Takes the canary out of the Service at once (scaled to 0: its pods are terminating, and a
-- Service sends nothing to a terminating pod), then deletes it. Idempotent.
local function remove_canary(client, namespace, canary)
  local ok, err = pcall(client.patch, client, { kind = "Deployment", name = canary, namespace = namespace, patch = { spec = { replicas = 0 } } })
  if not ok and not hoist.is_error(err, "not_found") then error(err, 0) end
  client:delete { kind = "Deployment", name = canary, namespace = namespace, propagation = "Foreground", missing_ok = true }
end

-- A canary left by an earlier abort may still be going (Foreground deletion): wait until it
-- is gone before making a new one, or the new one would be deleted with it.
local function wait_gone(client, namespace, canary, timeout)
  local deadline = hoist.now() + timeout
  while true do
    local d = client:get { kind = "Deployment", name = canary, namespace = namespace, missing_ok = true }
    if d == nil or meta(d).deletionTimestamp == nil then return end
    if hoist.now() > deadline then
      fail("timeout", ("deployment %s from an earlier canary is still being deleted after %gs"):format(canary, timeout))
    end
    hoist.sleep(0.5)
  end
end

---@class hoist.k8s.CanaryOptions
---@field name string the stable Deployment
---@field image string the new image
---@field service? string the Service both Deployments sit behind (default: name)
---@field container? string the container to change (default: the first)
---@field namespace? string default: the client's
---@field client? hoist.k8s.Client
---@field kubeconfig? string
---@field context? string
---@field steps? integer[] percent of stable replicas per step (default {10, 50, 100})
---@field path? string GET path checked through the Service (default "/healthz")
---@field url? string the Service's base URL (default: the emulator's address, else its LoadBalancer ingress)
---@field requests? integer requests sampled per step (default 40)
---@field max_error_rate? number failed share of the sample allowed (default 0)
---@field latency_budget? number seconds per sampled request (default 1)
---@field health? {retries?: integer, interval?: number, timeout?: number}|false the verify.http health check before sampling (default retries 10, interval 1)
---@field track_of? fun(response: table): "canary"|"stable"|nil which track answered (default: `version` compared with the body or the X-Version header)
---@field version? string what the canary answers on `path` or in X-Version (for the default track_of)
---@field promote? boolean promote after the last step (default true); false leaves the canary running
---@field timeout? number seconds per rollout (default 300)
---@field crashloop_restarts? integer
---@field ready_timeout? number
---@field ctx? hoist.StageContext registers the compensations (k8s.canary_remove, k8s.canary_restore)

---@class hoist.k8s.CanaryStep
---@field percent integer
---@field canary_replicas integer
---@field stable_replicas integer
---@field requests integer
---@field errors integer
---@field error_rate number
---@field canary integer answers from the canary
---@field stable integer answers from stable
---@field other integer answers neither
---@field slowest number seconds

---@class hoist.k8s.CanaryResult
---@field promoted boolean
---@field image string
---@field previous string stable's image before
---@field steps hoist.k8s.CanaryStep[]
---@field planned? boolean

--- Runs a canary release of `image` for Deployment `name`; see the module comment. Raises
--- rollout_failed (details: reason, step, sample with its failures, or the canary's rollout
--- evidence) after removing the canary; stable is untouched unless the promotion itself fails.
---@param opts hoist.k8s.CanaryOptions
---@return hoist.k8s.CanaryResult
function M.run(opts)
  local o = util.check_opts("hoist.k8s.canary", opts, {
    name = { type = "string", required = true }, image = { type = "string", required = true }, service = "string",
    container = "string", namespace = "string", client = "table", kubeconfig = "string", context = "string",
    steps = "table", path = { type = "string", default = "/healthz" }, url = "string", requests = "integer",
    max_error_rate = "number", latency_budget = "number", health = "table|boolean", track_of = "function", version = "string",
    promote = { type = "boolean", default = true }, timeout = "number", crashloop_restarts = "integer", ready_timeout = "number",
    ctx = "table",
  })
  for _, k in ipairs { "steps", "requests", "max_error_rate", "latency_budget", "timeout" } do
    if o[k] == nil then o[k] = copy(M.defaults[k]) end
  end
  if #o.steps == 0 then fail("invalid_argument", "hoist.k8s.canary: steps must list at least one percentage") end
  for i, p in ipairs(o.steps) do
    if type(p) ~= "number" or p <= 0 or p > 100 or (i > 1 and p <= o.steps[i - 1]) then
      fail("invalid_argument", ("hoist.k8s.canary: steps must be increasing percentages in (0, 100], got %s at %d"):format(tostring(p), i))
    end
  end
  if o.requests < 1 then fail("invalid_argument", "hoist.k8s.canary: requests must be at least 1") end
  if o.max_error_rate < 0 or o.max_error_rate > 1 then fail("invalid_argument", "hoist.k8s.canary: max_error_rate must be between 0 and 1") end
  if o.health == true then o.health = {} end
  if o.health == nil then o.health = { retries = 10, interval = 1 } end
  if not o.track_of then
    local v = o.version
    o.track_of = function(r)
      if not v then return nil end
      local got = (r.headers or {})["x-version"] or (r.body or ""):gsub("%s+$", "")
      return got == v and "canary" or "stable"
    end
  end
  o.service = o.service or o.name
  o.canary = o.name .. "-canary"
  local client = o.client or hoist.k8s.client { kubeconfig = o.kubeconfig, context = o.context }
  o.namespace = o.namespace or client.namespace
  local what = ("canary of deployment %s"):format(o.name)

  if util.dry_run() then
    for _, p in ipairs(o.steps) do util.plan { action = "k8s.canary_step", message = ("%s: %s at %d%% of stable"):format(what, o.image, p) } end
    if o.promote then util.plan { action = "k8s.canary_promote", message = ("%s: set image %s on %s, delete %s"):format(what, o.image, o.name, o.canary) } end
    return { promoted = false, image = o.image, previous = "", steps = {}, planned = true }
  end

  local stable = client:get { kind = "Deployment", name = o.name, namespace = o.namespace }
  local cont = container_of(stable, o.container)
  o.container = cont.name
  local previous = cont.image
  local stable_replicas = stable.spec.replicas or 1
  local base = service_url(client, o)
  local result = { promoted = false, image = o.image, previous = previous, steps = {}, url = base }
  local args = { namespace = o.namespace, name = o.name, canary = o.canary, kubeconfig = o.kubeconfig, context = o.context }
  if o.ctx then o.ctx:on_rollback("k8s.canary_remove", args) end

  local function abort(code, reason, message, details)
    hoist.log.event("k8s.canary.abort", what .. ": " .. message, { reason = reason, name = o.name }, "error")
    remove_canary(client, o.namespace, o.canary)
    details = details or {}
    details.reason, details.steps, details.canary, details.stable_image = details.reason or reason, result.steps, o.canary, previous
    fail(code, ("%s aborted (canary removed, stable untouched on %s): %s"):format(what, previous, message), details)
  end

  wait_gone(client, o.namespace, o.canary, o.timeout)
  for i, p in ipairs(o.steps) do
    local replicas = math.max(1, math.ceil(stable_replicas * p / 100))
    client:apply(canary_manifest(stable, o, replicas), { namespace = o.namespace, force = true })
    local ok, err = pcall(hoist.k8s.rollout, { name = o.canary, namespace = o.namespace, client = client, timeout = o.timeout,
                                               crashloop_restarts = o.crashloop_restarts, ready_timeout = o.ready_timeout })
    if not ok then
      if hoist.is_error(err, "cancelled") or not hoist.is_error(err) then error(err, 0) end
      local d = err.details or {}
      d.step = p
      abort(err.code == "timeout" and "timeout" or "rollout_failed", d.reason or err.code, err.message, d)
    end
    if o.health then
      ok, err = pcall(hoist.verify.http, { url = base .. o.path, name = ("%s health at %d%%"):format(o.service, p),
                                            retries = o.health.retries, interval = o.health.interval, timeout = o.health.timeout,
                                            latency_budget = o.latency_budget })
      if not ok then
        if hoist.is_error(err, "cancelled") or not hoist.is_error(err) then error(err, 0) end
        abort("rollout_failed", "HealthCheckFailed", err.message, { step = p, evidence = err.details and err.details.evidence })
      end
    end
    local s = sample(base, o)
    local step = { percent = p, canary_replicas = replicas, stable_replicas = stable_replicas, requests = s.requests,
                   errors = s.errors, error_rate = s.error_rate, canary = s.canary, stable = s.stable, other = s.other,
                   slowest = s.slowest }
    result.steps[i] = step
    hoist.log.event("k8s.canary.step", ("%s at %d%%: %d canary + %d stable replicas; %d requests, %d failed, %d answered by the canary, %d by stable"):format(
      what, p, replicas, stable_replicas, s.requests, s.errors, s.canary, s.stable), step)
    if s.error_rate > o.max_error_rate then
      abort("rollout_failed", "ErrorBudgetExceeded", ("at %d%%: %d of %d requests failed (%.0f%%, budget %.0f%%); first: %s"):format(
        p, s.errors, s.requests, s.error_rate * 100, o.max_error_rate * 100, s.failures[1] and s.failures[1].error or "?"),
        { step = p, sample = s })
    end
  end
  if not o.promote then return result end

  -- Promote: stable takes the new image (its previous image journaled first), rolls out, and
  -- only then does the canary go, so the Service always has ready pods of the new version.
  if o.ctx then
    o.ctx:on_rollback("k8s.canary_restore", { namespace = o.namespace, name = o.name, container = o.container, image = previous,
                                              kubeconfig = o.kubeconfig, context = o.context })
  end
  hoist.log.event("k8s.canary.promote", ("%s: promoting %s to stable"):format(what, o.image), { name = o.name, image = o.image })
  client:patch { kind = "Deployment", name = o.name, namespace = o.namespace, type = "strategic",
                 patch = { spec = { template = { spec = { containers = { { name = o.container, image = o.image } } } } } } }
  hoist.k8s.rollout { name = o.name, namespace = o.namespace, client = client, timeout = o.timeout,
                      crashloop_restarts = o.crashloop_restarts, ready_timeout = o.ready_timeout }
  remove_canary(client, o.namespace, o.canary)
  result.promoted = true
  return result
end

local function client_for(args)
  return hoist.k8s.client { kubeconfig = args.kubeconfig, context = args.context, namespace = args.namespace }
end

-- Named compensations (plain JSON arguments; `hoist rollback <id>` runs them from a later process).
hoist.pipeline.action("k8s.canary_remove", function(args)
  remove_canary(client_for(args), args.namespace, args.canary)
end)
hoist.pipeline.action("k8s.canary_restore", function(args)
  local client = client_for(args)
  local dep = client:get { kind = "Deployment", name = args.name, namespace = args.namespace }
  if container_of(dep, args.container).image ~= args.image then
    client:patch { kind = "Deployment", name = args.name, namespace = args.namespace, type = "strategic",
                   patch = { spec = { template = { spec = { containers = { { name = args.container, image = args.image } } } } } } }
  end
  hoist.k8s.rollout { name = args.name, namespace = args.namespace, client = client }
end)

return setmetatable(M, { __call = function(_, opts) return M.run(opts) end })
