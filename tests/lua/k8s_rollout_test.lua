-- hoist.k8s.rollout against tests/k8s/fake_apiserver.py: the test plays the controllers and
-- the kubelet by writing status, ReplicaSets, Pods and Events, and checks the verdict, its
-- reason and its evidence; a dropped watch and a 410 mid-rollout do not lose the verdict.
local t = require "hoist.test"
local k8s = hoist.k8s

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local fake = dofile(here .. "/k8s_fake.lua")

local kube
local function client()
  kube = kube or k8s.client { kubeconfig = fake.kubeconfig("rollout") }
  return kube
end
local control = fake.control

-- A Deployment at revision `rev`, its new ReplicaSet, and `pods` (name -> status) of it.
local function deployment(name, status, rev)
  local c = client()
  c:create { apiVersion = "apps/v1", kind = "Deployment",
             metadata = { name = name, annotations = { ["deployment.kubernetes.io/revision"] = rev or "2" } },
             spec = { replicas = 2, selector = { matchLabels = { app = name } } }, status = status }
  c:create { apiVersion = "apps/v1", kind = "ReplicaSet",
             metadata = { name = name .. "-abc", labels = { app = name, ["pod-template-hash"] = "abc" },
                          annotations = { ["deployment.kubernetes.io/revision"] = rev or "2" },
                          ownerReferences = { { kind = "Deployment", name = name, uid = "uid-deployments-" .. name } } },
             spec = { replicas = 2 } }
  -- an old ReplicaSet's pod: failing, but not the rollout's concern
  c:create { apiVersion = "apps/v1", kind = "ReplicaSet",
             metadata = { name = name .. "-old", labels = { app = name },
                          annotations = { ["deployment.kubernetes.io/revision"] = "1" },
                          ownerReferences = { { kind = "Deployment", name = name, uid = "uid-deployments-" .. name } } } }
end

local function pod(name, rs, status, extra_meta)
  local m = { name = name, labels = { app = rs:match("^(.-)%-[^-]+$") },
              ownerReferences = { { kind = "ReplicaSet", name = rs, uid = "uid-replicasets-" .. rs } } }
  for k, v in pairs(extra_meta or {}) do m[k] = v end
  client():create { apiVersion = "v1", kind = "Pod", metadata = m, spec = { restartPolicy = "Always" }, status = status }
end

local function set_status(kind, name, status)
  client():patch { kind = kind, name = name, patch = { status = status } }
end

local progressing = { observedGeneration = 1, replicas = 3, updatedReplicas = 1, readyReplicas = 1, availableReplicas = 1 }
local complete = { observedGeneration = 1, replicas = 2, updatedReplicas = 2, readyReplicas = 2, availableReplicas = 2 }

local function waiting(reason, message, restarts, last)
  return { phase = reason == "CrashLoopBackOff" and "Running" or "Pending",
           containerStatuses = { { name = "app", image = "127.0.0.1:5000/app:v2", ready = false, restartCount = restarts or 0,
                                   lastState = last and { terminated = last } or {},
                                   state = { waiting = { reason = reason, message = message } } } } }
end

t.case("rollout: done when kubectl would say so, after watching it progress", function()
  control("reset")
  deployment("web", progressing)
  local task = hoist.spawn(k8s.rollout, { name = "web", client = client(), timeout = 30 })
  hoist.sleep(0.3)
  t.eq(task:status(), "running")
  set_status("Deployment", "web", complete)
  local r = task:wait()
  t.eq(r.verdict, "done")
  t.eq(r.message, 'deployment "web" successfully rolled out')
  t.eq(r.progress.available, 2)
  t.eq(r.revision, "2")
end)

t.case("rollout: ImagePullBackOff fails it with the kubelet's words, the pod's state and the events", function()
  control("reset")
  deployment("api", progressing)
  pod("api-old-1", "api-old", waiting("CrashLoopBackOff", "old version crashing", 9))  -- not the new revision
  pod("api-abc-1", "api-abc", { phase = "Pending", containerStatuses = { { name = "app", restartCount = 0,
    state = { waiting = { reason = "ContainerCreating" } } } } })
  local task = hoist.spawn(function()
    return pcall(k8s.rollout, { name = "api", client = client(), timeout = 60 })
  end)
  hoist.sleep(0.3)
  t.eq(task:status(), "running")
  client():create { apiVersion = "v1", kind = "Event", metadata = { name = "api-abc-1.pull" }, type = "Warning", reason = "Failed",
                    involvedObject = { kind = "Pod", name = "api-abc-1" },
                    message = 'Failed to pull image "127.0.0.1:5000/app:v2": not found' }
  client():create { apiVersion = "v1", kind = "Event", metadata = { name = "other.event" }, type = "Normal", reason = "Pulled",
                    involvedObject = { kind = "Pod", name = "somebody-else" }, message = "unrelated" }
  set_status("Pod", "api-abc-1", waiting("ImagePullBackOff", 'Back-off pulling image "127.0.0.1:5000/app:v2"'))
  local ok, err = task:wait()
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed")
  t.eq(err.details.reason, "ImagePullBackOff")
  t.eq(err.details.pod, "api-abc-1")
  t.eq(err.details.container, "app")
  t.eq(err.details.replica_set, "api-abc")
  t.match(err.message, 'deployment api: pod api%-abc%-1: container "app": ImagePullBackOff: Back%-off pulling image')
  local found = false
  for _, p in ipairs(err.details.pods) do
    if p.name == "api-abc-1" then
      found = true
      t.eq(p.current, true)
      t.eq(p.containers[1].state, "waiting")
      t.match(p.containers[1].detail, "^ImagePullBackOff")
    end
  end
  t.ok(found)
  t.eq(#err.details.events, 1)
  t.eq(err.details.events[1].object, "Pod/api-abc-1")
  t.match(err.details.events[1].message, "Failed to pull image")
end)

t.cases("rollout: each pod failure is its own reason", {
  { name = "crash loop, with the last log lines", status = waiting("CrashLoopBackOff", "back-off 20s", 3, { exitCode = 2, reason = "Error" }),
    log = "starting\nlistening on :8000\npanic: no DATABASE_URL", reason = "CrashLoopBackOff", logs = "panic: no DATABASE_URL" },
  { name = "out of memory", status = waiting("CrashLoopBackOff", "back-off 20s", 2, { exitCode = 137, reason = "OOMKilled" }),
    reason = "OOMKilled" },
  { name = "missing secret", status = waiting("CreateContainerConfigError", 'secret "db" not found'),
    reason = "CreateContainerConfigError", missing = "db" },
  { name = "invalid image", status = waiting("InvalidImageName", "couldn't parse image reference"), reason = "InvalidImageName" },
  { name = "unschedulable", status = { phase = "Pending", conditions = { { type = "PodScheduled", status = "False", reason = "Unschedulable",
    message = "0/1 nodes are available: 1 Insufficient memory." } } }, reason = "Unschedulable" },
}, function(row)
  control("reset")
  deployment("svc", progressing)
  pod("svc-abc-1", "svc-abc", row.status, row.log and { annotations = { ["fake/log"] = row.log } } or nil)
  local ok, err = pcall(k8s.rollout, { name = "svc", client = client(), timeout = 60 })
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed")
  t.eq(err.details.reason, row.reason)
  if row.logs then t.match(err.details.logs["svc-abc-1/app"], row.logs) end
  if row.missing then t.eq(err.details.missing.name, row.missing) end
end)

t.case("rollout: ProgressDeadlineExceeded from the Deployment's condition", function()
  control("reset")
  local s = {}
  for k, v in pairs(progressing) do s[k] = v end
  s.conditions = { { type = "Progressing", status = "False", reason = "ProgressDeadlineExceeded",
                     message = 'ReplicaSet "dl-abc" has timed out progressing.' } }
  deployment("dl", s)
  local ok, err = pcall(k8s.rollout, { name = "dl", client = client(), timeout = 60 })
  t.eq(ok, false)
  t.eq(err.details.reason, "ProgressDeadlineExceeded")
  t.eq(err.message, 'deployment dl: deployment "dl" exceeded its progress deadline')
end)

t.case("rollout: a pod that never gets ready within its budget; a rollout that never ends times out", function()
  control("reset")
  deployment("slow", progressing)
  pod("slow-abc-1", "slow-abc", { phase = "Running", conditions = { { type = "Ready", status = "False" } },
    containerStatuses = { { name = "app", ready = false, restartCount = 0, state = { running = { startedAt = "2026-01-01T00:00:00Z" } } } } })
  -- the cause, as the kubelet reports it; and an old, healthy pod's event, which is noise here
  pod("slow-old-1", "slow-old", { phase = "Running", containerStatuses = { { name = "app", ready = true, restartCount = 0,
    state = { running = { startedAt = "2026-01-01T00:00:00Z" } } } } })
  client():create { apiVersion = "v1", kind = "Event", metadata = { name = "slow-abc-1.probe" }, type = "Warning", reason = "Unhealthy",
                    involvedObject = { kind = "Pod", name = "slow-abc-1" }, lastTimestamp = "2026-01-01T00:00:05Z",
                    message = "Readiness probe failed: HTTP probe failed with statuscode: 404" }
  client():create { apiVersion = "v1", kind = "Event", metadata = { name = "slow-old-1.started" }, type = "Warning", reason = "BackOff",
                    involvedObject = { kind = "Pod", name = "slow-old-1" }, lastTimestamp = "2026-01-01T00:00:09Z",
                    message = "an old pod's event" }
  local ok, err = pcall(k8s.rollout, { name = "slow", client = client(), timeout = 60, ready_timeout = 0.5 })
  t.eq(ok, false)
  t.eq(err.details.reason, "ReadinessTimeout")
  t.match(err.message, "not ready after 0.5s")
  t.match(err.message, "last event of pod slow%-abc%-1: Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404")
  local shown = hoist.json.encode(err.details)
  t.no_match(shown, "an old pod's event")
  t.eq(#err.details.pods, 1, "the new pod only")
  t.eq(err.details.old_pods, 1)
  ok, err = pcall(k8s.rollout, { name = "slow", client = client(), timeout = 0.5 })
  t.eq(ok, false)
  t.eq(err.code, "timeout")
  t.match(err.message, "deployment slow: not done after 0.5s: Waiting for deployment")
  t.match(err.message, "last event of pod slow%-abc%-1: Unhealthy: Readiness probe failed")
end)

t.case("rollout: a dropped watch and a 410 mid-rollout do not lose the verdict", function()
  control("reset")
  deployment("steady", progressing)
  local task = hoist.spawn(k8s.rollout, { name = "steady", client = client(), timeout = 30 })
  hoist.sleep(0.3)
  control("drop")
  set_status("Deployment", "steady", { observedGeneration = 1, replicas = 2, updatedReplicas = 2, readyReplicas = 1, availableReplicas = 1 })
  hoist.sleep(0.2)
  control("compact")
  control("drop")
  set_status("Deployment", "steady", complete)
  t.eq(task:wait().verdict, "done")
end)

t.case("rollout: options are checked; a missing workload is not_found", function()
  t.raises(function() k8s.rollout { client = client() } end, "invalid_argument", "option 'name' is required")
  t.raises(function() k8s.rollout { name = "x", kind = "Pod", client = client() } end, "invalid_argument", "option 'kind' must be one of")
  control("reset")
  t.raises(function() k8s.rollout { name = "ghost", client = client() } end, "not_found", 'deployments "ghost" not found')
end)

-- In a process of its own: before the fix the cancelled rollout spun without yielding, so
-- nothing in that process ran again; the exec's timeout kills it then.
t.case("rollout: a cancelled rollout ends with cancelled at once, in every turn of its wait", function()
  control("reset")
  deployment("cancelled", progressing)
  local dir = hoist.exec({ "mktemp", "-d", check = true }).stdout:match("%S+")
  local script = dir .. "/cancel.lua"
  local f = assert(io.open(script, "w"))
  f:write(([[
local c = hoist.k8s.client { kubeconfig = %q }
for _, wait in ipairs { 0.3, 1.5 } do -- in the first wait, and in a later turn
  local task = hoist.spawn(hoist.k8s.rollout, { name = "cancelled", client = c, timeout = 600, ready_timeout = 1 })
  hoist.sleep(wait)
  task:cancel()
  local ok, err = pcall(task.wait, task)
  print(("after %%gs: %%s %%s"):format(wait, tostring(ok), hoist.is_error(err) and err.code or tostring(err)))
end
]]):format(fake.kubeconfig("rollout")))
  f:close()
  local r = hoist.exec { os.getenv("HOIST_BIN") or "hoist", "run", script, "--state-dir", dir .. "/state", timeout = 30 }
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.timed_out or false, false, "the process ended\n" .. r.stdout .. r.stderr)
  t.match(r.stdout, "after 0%.3s: false cancelled")
  t.match(r.stdout, "after 1%.5s: false cancelled")
end)
