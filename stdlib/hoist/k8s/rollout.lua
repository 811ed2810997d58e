--- hoist.k8s.rollout: waits for a Deployment, StatefulSet, DaemonSet or Job to finish
--- rolling out, watching the workload, its ReplicaSets, its Pods and the namespace's Events
--- together (one watch each, no polling). Success follows kubectl rollout status (the
--- engine's classification); failure comes as soon as the cluster shows it, with a typed
--- reason and the evidence: each pod's phase and container states, the relevant events, the
--- last log lines of the failing containers. Reference: docs/kubernetes.md, "Rollout".
local util = require "hoist.util"
local core = require "hoist.native.core"

local M = {}

local api_versions = { Deployment = "apps/v1", StatefulSet = "apps/v1", DaemonSet = "apps/v1", Job = "batch/v1" }

-- Pod failure reasons worth the failing container's last log lines.
local wants_logs = { CrashLoopBackOff = true, OOMKilled = true, Error = true, Failed = true, ReadinessTimeout = true,
                     BackoffLimitExceeded = true, DeadlineExceeded = true }

-- A Job retries its failed pods up to its backoffLimit, so a pod that failed or crashed is the
-- Job's business (its Failed condition ends the rollout); a pod that can never start is not.
local job_pod_failures = { ImagePullBackOff = true, ErrImagePull = true, InvalidImageName = true, ErrImageNeverPull = true,
                           CreateContainerConfigError = true, CreateContainerError = true, Unschedulable = true }

local function meta(o) return (o and o.metadata) or {} end
local function labels(o) return meta(o).labels or {} end
local function annotations(o) return meta(o).annotations or {} end

local function owned_by(o, uid)
  for _, r in ipairs(meta(o).ownerReferences or {}) do
    if r.uid == uid then return true end
  end
  return false
end

-- "k=v,k2=v2" from spec.selector.matchLabels (sorted: one spelling for one selector).
local function selector_of(obj)
  local ml = obj.spec and obj.spec.selector and obj.spec.selector.matchLabels
  if type(ml) ~= "table" then return nil end
  local parts = {}
  for k, v in pairs(ml) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return #parts > 0 and table.concat(parts, ",") or nil
end

-- The pods of the revision being rolled out (the others are the old version going away).
local function current_pods(st)
  local obj, out = st.obj, {}
  local kind = obj.kind
  local function add_if(pred)
    for name, p in pairs(st.pods) do if pred(p) then out[name] = p end end
  end
  if kind == "Deployment" then
    local revision = annotations(obj)["deployment.kubernetes.io/revision"]
    for _, rs in pairs(st.rs) do
      if owned_by(rs, meta(obj).uid) and revision and annotations(rs)["deployment.kubernetes.io/revision"] == revision then
        st.new_rs = meta(rs).name
        add_if(function(p) return owned_by(p, meta(rs).uid) end)
      end
    end
  elseif kind == "StatefulSet" then
    local rev = obj.status and obj.status.updateRevision
    add_if(function(p) return rev ~= nil and labels(p)["controller-revision-hash"] == rev end)
  elseif kind == "DaemonSet" then
    local gen = tostring(meta(obj).generation or "")
    add_if(function(p) return labels(p)["pod-template-generation"] == gen end)
  else
    add_if(function() return true end)
  end
  return out
end

-- The pod and container a failed Job failed with: the last container that ended with a
-- non-zero exit code (now or before its last restart).
local function job_failure(st)
  local best
  for name, p in pairs(st.pods) do
    for _, cs in ipairs((p.status or {}).containerStatuses or {}) do
      for _, t in ipairs { cs.state and cs.state.terminated, cs.lastState and cs.lastState.terminated } do
        if type(t) == "table" and (t.exitCode or 0) ~= 0 then
          local at = t.finishedAt or ""
          if not best or at > best.at or (at == best.at and name > best.pod) then
            best = { pod = name, container = cs.name, at = at, exit_code = t.exitCode, reason = t.reason }
          end
        end
      end
    end
  end
  return best
end

local function container_states(pod)
  local out = {}
  for _, list in ipairs { "initContainerStatuses", "containerStatuses" } do
    for _, cs in ipairs((pod.status or {})[list] or {}) do
      local state, detail = "unknown", nil
      for _, s in ipairs { "waiting", "running", "terminated" } do
        if cs.state and cs.state[s] then
          state = s
          detail = cs.state[s].reason or cs.state[s].startedAt
          if cs.state[s].message then detail = (detail or "") .. ": " .. cs.state[s].message end
        end
      end
      local last = cs.lastState and cs.lastState.terminated
      out[#out + 1] = { name = cs.name, image = cs.image, ready = cs.ready == true, restarts = cs.restartCount or 0,
                        state = state, detail = detail, init = list == "initContainerStatuses" or nil,
                        last_terminated = last and { reason = last.reason, exit_code = last.exitCode } or nil }
    end
  end
  return out
end

local MAX_PODS, MAX_EVENTS, MAX_MESSAGE = 10, 10, 300

local function event_time(e) return e.lastTimestamp or e.eventTime or e.firstTimestamp or "" end
local function clip(text)
  text = tostring(text or "")
  return #text > MAX_MESSAGE and (text:sub(1, MAX_MESSAGE) .. "...") or text
end

-- The names the evidence is about: the workload, and once the new revision is known only its
-- ReplicaSet and pods (the old ones are healthy and going away: their events are noise). Of
-- the workload's own events, its warnings and those naming the new ReplicaSet.
local function about_new(st, e)
  local io = e.involvedObject or {}
  if io.name ~= st.name or not st.new_rs then return true end
  return e.type == "Warning" or tostring(e.message or ""):find(st.new_rs, 1, true) ~= nil
end

local function evidence_names(st)
  local names = { [st.name] = true }
  local have_current = next(st.current) ~= nil
  for name in pairs(st.rs) do if not st.new_rs or name == st.new_rs then names[name] = true end end
  for name in pairs(st.pods) do if not have_current or st.current[name] then names[name] = true end end
  return names
end

-- The newest Warning event of the new pods, a failed probe first ("Unhealthy: Readiness
-- probe failed: ... 404" says why; the BackOff after a failed liveness probe only what
-- followed): the cause a timeout's message names when the verdict alone does not.
local function newest_warning(st)
  local best
  local function rank(e) return (e.reason == "Unhealthy" and "1" or "0") .. event_time(e) end
  for _, e in ipairs(st.events) do
    local io = e.involvedObject or {}
    if e.type == "Warning" and io.kind == "Pod" and st.current[io.name] and (not best or rank(e) >= rank(best)) then
      best = e
    end
  end
  return best
end

-- The new pods' phase and container states (the old ones counted), the latest events about
-- the workload, its new ReplicaSet and pods, and the failing containers' last log lines; each
-- part bounded, so a failure's details stay readable.
local function evidence(st, client, failing, o)
  local names = evidence_names(st)
  local pods, sorted, old = {}, {}, 0
  for name in pairs(st.pods) do
    if names[name] then sorted[#sorted + 1] = name else old = old + 1 end
  end
  table.sort(sorted)
  for i, name in ipairs(sorted) do
    if i <= MAX_PODS then
      local p = st.pods[name]
      pods[#pods + 1] = { name = name, phase = p.status and p.status.phase, current = st.current[name] ~= nil,
                          containers = container_states(p) }
    end
  end
  local events = {}
  for _, e in ipairs(st.events) do
    local io = e.involvedObject or {}
    if names[io.name] and about_new(st, e) then
      events[#events + 1] = { type = e.type, reason = e.reason, message = clip(e.message), object = (io.kind or "") .. "/" .. (io.name or ""),
                              count = e.count, last = event_time(e) ~= "" and event_time(e) or nil }
    end
  end
  while #events > MAX_EVENTS do table.remove(events, 1) end
  local logs = {}
  if failing and failing.pod and failing.container and wants_logs[failing.reason] then
    for _, previous in ipairs { true, false } do
      local ok, text = util.try(client.logs, client, { name = failing.pod, namespace = st.namespace, container = failing.container,
                                                       tail_lines = o.log_lines, previous = previous, attempts = 1 })
      if ok and text ~= "" then
        logs[failing.pod .. "/" .. failing.container] = text
        break
      end
    end
  end
  return { pods = pods, events = events, logs = logs, old_pods = old > 0 and old or nil }
end

---@class hoist.k8s.RolloutOptions
---@field name string
---@field kind? "Deployment"|"StatefulSet"|"DaemonSet"|"Job" default Deployment
---@field namespace? string default: the client's
---@field client? hoist.k8s.Client default: hoist.k8s.client{kubeconfig=, context=}
---@field kubeconfig? string
---@field context? string
---@field timeout? number seconds before a `timeout` error (default 300)
---@field crashloop_restarts? integer a crashed container restarted this often fails the rollout (default 2)
---@field ready_timeout? number seconds a running pod may stay unready (default: no budget)
---@field log_lines? integer last log lines kept of a failing container (default 20)

---@class hoist.k8s.RolloutResult
---@field verdict "done"|"planned"
---@field kind string
---@field name string
---@field namespace string
---@field message string kubectl's words
---@field progress table replicas, updated, ready, available
---@field duration number seconds
---@field revision? string a Deployment's revision

--- Waits for a rollout; see the module comment. Raises `rollout_failed` (details: reason,
--- message, pod, container, progress, pods, events, logs) or `timeout` (the same evidence).
---@param opts hoist.k8s.RolloutOptions
---@return hoist.k8s.RolloutResult
function M.run(opts)
  local k8s = require "hoist.k8s"
  local o = util.check_opts("hoist.k8s.rollout", opts, {
    name = { type = "string", required = true },
    kind = { type = "string", allowed = { "Deployment", "StatefulSet", "DaemonSet", "Job" }, default = "Deployment" },
    namespace = "string", client = "table", kubeconfig = "string", context = "string",
    timeout = { type = "number", default = 300 }, crashloop_restarts = "integer", ready_timeout = "number",
    log_lines = { type = "integer", default = 20 },
  })
  o.crashloop_restarts = o.crashloop_restarts or k8s.defaults.crashloop_restarts
  local client = o.client or k8s.client { kubeconfig = o.kubeconfig, context = o.context }
  local ns = o.namespace or client.namespace
  local what = o.kind:lower() .. " " .. o.name
  if util.dry_run() then
    util.plan { action = "k8s.rollout", message = "wait for the rollout of " .. what .. " in " .. ns }
    return { verdict = "planned", kind = o.kind, name = o.name, namespace = ns, message = "planned", progress = {}, duration = 0 }
  end
  local started = hoist.now()
  local st = { name = o.name, namespace = ns, rs = {}, pods = {}, events = {}, current = {}, unready_since = {} }
  st.obj = client:get { kind = o.kind, api_version = api_versions[o.kind], name = o.name, namespace = ns }
  local selector = selector_of(st.obj)

  local decided, last_progress, last_class
  local alarm = util.alarm()
  local function wake() alarm:wake() end

  local function evaluate(now)
    if not st.obj then return { code = "rollout_failed", reason = "Deleted", message = what .. " was deleted" } end
    local c = k8s.classify(st.obj)
    last_class = c
    local p = c.progress or {}
    local line = ("%s/%s updated, %s ready, %s available"):format(p.updated or 0, p.replicas or 0, p.ready or 0, p.available or 0)
    if o.kind == "Job" then
      line = ("%s/%s succeeded, %s active, %s failed"):format(p.succeeded or 0, p.completions or 0, p.active or 0, p.failed or 0)
    end
    if line ~= last_progress then
      last_progress = line
      core.log("info", what .. ": " .. line, { kind = o.kind, name = o.name, namespace = ns, progress = p, reason = c.reason },
        "k8s.rollout.progress")
    end
    if c.verdict == "done" then return { done = c } end
    if c.verdict == "failed" and o.kind == "Job" then
      local f = job_failure(st) or {}
      return { code = "rollout_failed", reason = c.reason, pod = f.pod, container = f.container,
               message = what .. ": " .. c.message .. (f.pod and (" (pod %s, container %q exited %s)"):format(f.pod, f.container, f.exit_code) or "") }
    end
    if c.verdict == "failed" then return { code = "rollout_failed", reason = c.reason, message = what .. ": " .. c.message } end
    if c.verdict == "suspended" then return { code = "rollout_failed", reason = c.reason, message = what .. ": " .. c.message } end
    st.current = current_pods(st)
    local names = {}
    for name in pairs(st.current) do names[#names + 1] = name end
    table.sort(names)  -- the same pod is named first each time
    for _, name in ipairs(names) do
      local pod = st.current[name]
      local pc = k8s.classify(pod, { crashloop_restarts = o.crashloop_restarts })
      if pc.verdict == "failed" and (o.kind ~= "Job" or job_pod_failures[pc.reason]) then
        local d = pc.details or {}
        return { code = "rollout_failed", reason = pc.reason, pod = name, container = d.container,
                 message = what .. ": pod " .. name .. ": " .. pc.message, details = d }
      end
      -- a Job's pods run to completion: they are never expected to be ready
      local running_unready = o.kind ~= "Job" and pod.status and pod.status.phase == "Running" and pc.verdict ~= "done"
      if running_unready then
        st.unready_since[name] = st.unready_since[name] or (now or hoist.now())
        if o.ready_timeout and (now or hoist.now()) - st.unready_since[name] >= o.ready_timeout then
          local cs = container_states(pod)
          return { code = "rollout_failed", reason = "ReadinessTimeout", pod = name, container = cs[1] and cs[1].name,
                   message = ("%s: pod %s not ready after %gs: %s"):format(what, name, o.ready_timeout, pc.message) }
        end
      else
        st.unready_since[name] = nil
      end
    end
  end

  -- The namespace's events come to every rollout in it: keep those that may be about this
  -- workload, its ReplicaSets or its pods (their names start with the workload's), so that
  -- fifty rollouts do not each hold the events of all fifty. evidence() picks exact names.
  local prefix = o.name .. "-"
  local function about_workload(e)
    local n = (e.involvedObject or {}).name
    return n == o.name or (type(n) == "string" and n:sub(1, #prefix) == prefix)
  end

  -- A shared stream may trail the read this rollout started from by a moment (another rollout
  -- opened it; the apply just before has not come through yet): until the stream has shown
  -- the workload, its absence is not a deletion, and an older generation of the same object
  -- (generations only grow) is the past, never taken over the newer one, which could look
  -- rolled out already.
  local function stale(obj)
    local have = st.obj and meta(st.obj)
    if not have then return false end
    if not obj then return not st.obj_watched end
    local m = meta(obj)
    return m.uid == have.uid and (m.generation or 0) < (have.generation or 0)
  end

  -- Folds one watch event into the state; `key` is "obj", "rs", "pods" or "events".
  local function absorb(key, ev)
    if ev.type == "BOOKMARK" then return end
    if key == "events" then
      if ev.type == "LIST" then st.events = {} end
      for _, e in ipairs(ev.type == "LIST" and ev.object.items or { ev.object }) do
        if ev.type ~= "DELETED" and about_workload(e) then
          -- an event seen again (its count went up) replaces its earlier copy
          local name = meta(e).name
          for i = #st.events, 1, -1 do
            if name and meta(st.events[i]).name == name then table.remove(st.events, i) break end
          end
          st.events[#st.events + 1] = e
        end
      end
      while #st.events > 200 do table.remove(st.events, 1) end
      return
    end
    if key == "obj" then
      local obj = ev.object
      if ev.type == "LIST" then obj = ev.object.items[1] elseif ev.type == "DELETED" then obj = nil end
      if stale(obj) then return end
      st.obj, st.obj_watched = obj, st.obj_watched or obj ~= nil
      return
    end
    local map = st[key]
    if ev.type == "LIST" then
      for k in pairs(map) do map[k] = nil end
      for _, item in ipairs(ev.object.items) do map[meta(item).name] = item end
    elseif ev.type == "DELETED" then
      map[meta(ev.object).name] = nil
    else
      map[meta(ev.object).name] = ev.object
    end
  end

  -- shared: every rollout of this client in this namespace reads one stream per kind (the
  -- engine filters it by each one's selectors), not four streams of its own
  local watches = {
    obj = client:watch { kind = o.kind, api_version = api_versions[o.kind], namespace = ns, field_selector = "metadata.name=" .. o.name,
                         shared = true },
    pods = selector and client:watch { kind = "Pod", api_version = "v1", namespace = ns, label_selector = selector, shared = true } or nil,
    rs = (o.kind == "Deployment" and selector) and client:watch { kind = "ReplicaSet", api_version = "apps/v1", namespace = ns,
                                                                 label_selector = selector, shared = true } or nil,
    events = client:watch { kind = "Event", api_version = "v1", namespace = ns, shared = true },
  }
  -- the pumps go on after the verdict until the watches close: the events that explain it
  -- may still be coming
  local function pump(key, w)
    while not st.closed do
      absorb(key, w:next())
      if not decided then
        decided = evaluate()
        if decided then wake() end
      end
    end
  end
  local tasks = {}
  for key, w in pairs(watches) do
    tasks[#tasks + 1] = hoist.spawn(function()
      local ok, err = pcall(pump, key, w)
      if not ok and not decided then
        decided = { error = err }
        wake()
      end
    end)
  end

  local deadline = started + o.timeout
  decided = decided or evaluate()
  while not decided do
    local now = hoist.now()
    local wait = deadline - now
    if o.ready_timeout then  -- wake when the first unready pod's budget runs out
      for _, since in pairs(st.unready_since) do wait = math.min(wait, since + o.ready_timeout - now) end
    end
    if wait <= 0 then
      decided = evaluate(now)
      if not decided and now >= deadline then
        decided = { code = "timeout", reason = "Timeout",
                    message = ("%s: not done after %gs: %s"):format(what, o.timeout, last_class and last_class.message or "") }
      end
    else
      -- a verdict (wake) cuts the sleep short; our own cancellation (SIGTERM) comes out of it
      -- and is raised once the watches are closed (below)
      local ok, err = pcall(alarm.sleep, alarm, wait)
      if not ok then
        decided = { error = err }
        break
      end
      decided = decided or evaluate()
    end
  end
  -- A failing pod's own event (the kubelet's "Failed to pull image ...") may trail the status
  -- the verdict came from by a moment: wait for it a little, so the evidence has it.
  local function about_pod(name)
    for _, e in ipairs(st.events) do if (e.involvedObject or {}).name == name then return true end end
  end
  local grace_ok, grace_err = pcall(function()
    if decided.code and decided.pod then
      local give_up = hoist.now() + 1
      while not about_pod(decided.pod) and hoist.now() < give_up do hoist.sleep(0.05) end
    end
  end)
  st.closed = true
  for _, w in pairs(watches) do w:close() end
  for _, t in ipairs(tasks) do t:cancel() end
  if not grace_ok then error(grace_err, 0) end -- cancelled: raised once the watches are closed
  if decided.error then error(decided.error, 0) end
  local progress = last_class and last_class.progress or {}
  if decided.done then
    return { verdict = "done", kind = o.kind, name = o.name, namespace = ns, message = decided.done.message, progress = progress,
             duration = hoist.now() - started, revision = annotations(st.obj)["deployment.kubernetes.io/revision"] }
  end
  local ev = evidence(st, client, decided, o)
  local message = decided.message
  if decided.reason == "Timeout" or decided.reason == "ReadinessTimeout" then
    -- "not ready" says what, the new pods' last warning says why
    local w = newest_warning(st)
    if w then message = ("%s; last event of pod %s: %s: %s"):format(message, w.involvedObject.name, tostring(w.reason), clip(w.message)) end
  end
  util.fail(decided.code, message, {
    reason = decided.reason, kind = o.kind, name = o.name, namespace = ns, pod = decided.pod, container = decided.container,
    replica_set = st.new_rs, progress = progress, pods = ev.pods, old_pods = ev.old_pods, events = ev.events, logs = ev.logs,
    missing = decided.details and decided.details.missing,
  })
end

return M
