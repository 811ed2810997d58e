-- hoist.k8s.rollout for StatefulSet, DaemonSet and Job against the Kubernetes emulator of
-- tests/env (its controllers and kubelet run the pods on Docker): a good rollout ends "done"
-- with the words kubectl prints for the same object (kubectl runs on it in the same case), a
-- missing image fails it fast with the pull error and the evidence, a StatefulSet partition
-- ends once the pods at and above it are updated, and a Job ends with its own verdict:
-- Complete, or BackoffLimitExceeded with the failed container's logs.
-- Skipped without the emulator; failed instead when CI=true.
local t = require "hoist.test"
local k8s = hoist.k8s

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local cluster = dofile(here .. "/k8s_cluster.lua")
local E = os.getenv
local REGISTRY = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local IMAGE = E("HOIST_TEST_KUBE_IMAGE") or (REGISTRY .. "/hoist-test/busybox:latest")
local MISSING = REGISTRY .. "/hoist-test/missing:never"
local NS = cluster.namespace("hoist-kinds")
local client_in, drop_namespace = cluster.client_in(NS)

-- The workload image in the registry the kubelet pulls from, unless HOIST_TEST_KUBE_IMAGE names one.
local ready
local function client()
  local c = client_in()
  if ready then return c end
  if not E("HOIST_TEST_KUBE_IMAGE") then
    local r = hoist.exec { "skopeo", "copy", "--dest-tls-verify=false",
      "docker-daemon:" .. (E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"), "docker://" .. IMAGE }
    if r.code ~= 0 then error("cannot push the test image " .. IMAGE .. ": " .. r.stderr) end
  end
  -- an emulator started from an older tests/emulators/kube serves no StatefulSet
  local ok = pcall(c.list, c, { kind = "StatefulSet", api_version = "apps/v1" })
  if not ok then
    local why = "the emulator serves no apps/v1 StatefulSet (started from an older tests/emulators/kube)"
    if E("CI") == "true" then error(why .. " (CI=true: not skipping)") end
    t.skip("*** skipped *** " .. why)
  end
  cluster.need_controllers(c)
  cluster.need_kubelet(c, IMAGE)
  ready = true
  return c
end

local function kubectl(...)
  return hoist.exec { "kubectl", "-n", NS, ... }
end

-- kubectl's last line of output (its verdict).
local function last_line(text)
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  return last
end

local function container(image, cmd)
  return { name = "app", image = image, command = { "sh", "-c", cmd or "echo started $HOSTNAME; exec sleep 3600" } }
end

local function statefulset(name, image, replicas, strategy)
  return { apiVersion = "apps/v1", kind = "StatefulSet", metadata = { name = name },
           spec = { replicas = replicas or 2, serviceName = name, selector = { matchLabels = { app = name } },
                    updateStrategy = strategy,
                    template = { metadata = { labels = { app = name } },
                                 spec = { terminationGracePeriodSeconds = 1, containers = { container(image) } } } } }
end

local function daemonset(name, image)
  return { apiVersion = "apps/v1", kind = "DaemonSet", metadata = { name = name },
           spec = { selector = { matchLabels = { app = name } },
                    template = { metadata = { labels = { app = name } },
                                 spec = { terminationGracePeriodSeconds = 1, containers = { container(image) } } } } }
end

local function job(name, image, cmd, backoff_limit)
  return { apiVersion = "batch/v1", kind = "Job", metadata = { name = name },
           spec = { backoffLimit = backoff_limit,
                    template = { spec = { restartPolicy = "Never", terminationGracePeriodSeconds = 1,
                                          containers = { container(image, cmd) } } } } }
end

-- A rollout that must fail fast on the missing image: the reason, the pull error, the evidence.
local function check_pull_failure(ok, err, kind)
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed", err.message)
  t.ok(err.details.reason == "ErrImagePull" or err.details.reason == "ImagePullBackOff", err.details.reason)
  t.eq(err.details.kind, kind)
  t.match(err.message, "missing:never")
  t.eq(err.details.container, "app")
  local pod
  for _, p in ipairs(err.details.pods) do
    if p.name == err.details.pod then pod = p end
  end
  t.ok(pod, "the failing pod is in the evidence")
  t.eq(pod.current, true)
  t.eq(pod.containers[1].state, "waiting")
  t.match(pod.containers[1].detail, "missing:never")
  local pulled = false
  for _, e in ipairs(err.details.events) do
    if e.object == "Pod/" .. err.details.pod and e.message:find("missing:never", 1, true) then pulled = true end
  end
  t.ok(pulled, "an event about the failed pull")
end

t.case("statefulset: done by kubectl's rule and in kubectl's words; a missing image fails it fast", function()
  local c = client()
  c:apply(statefulset("db", IMAGE, 3))
  local r = k8s.rollout { kind = "StatefulSet", name = "db", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.kind, "StatefulSet")
  t.eq(r.progress.ready, 3)
  local kc = kubectl("rollout", "status", "statefulset/db", "--timeout=60s")
  t.eq(kc.code, 0, kc.stderr)
  t.eq(r.message, last_line(kc.stdout))
  t.eq(r.message, "partitioned roll out complete: 3 new pods have been updated...")

  c:apply(statefulset("db", MISSING, 3))
  local ok, err = pcall(k8s.rollout, { kind = "StatefulSet", name = "db", client = c, timeout = 180 })
  check_pull_failure(ok, err, "StatefulSet")
  t.eq(err.details.pod, "db-2") -- the highest ordinal goes first
  kc = kubectl("rollout", "status", "statefulset/db", "--timeout=2s")
  t.ok(kc.code ~= 0, "kubectl does not call the broken rollout a success")
  t.no_match(kc.stdout, "roll out complete")
end, { timeout = 400 })

t.case("statefulset: a partitioned rollout ends once the pods at and above the partition are updated", function()
  local c = client()
  c:apply(statefulset("part", IMAGE, 3))
  t.eq(k8s.rollout { kind = "StatefulSet", name = "part", client = c, timeout = 180 }.verdict, "done")
  local before = c:get { kind = "StatefulSet", api_version = "apps/v1", name = "part" }.status.updateRevision
  local s = statefulset("part", IMAGE, 3, { type = "RollingUpdate", rollingUpdate = { partition = 1 } })
  s.spec.template.spec.containers[1].env = { { name = "VERSION", value = "2" } }
  c:apply(s)
  local r = k8s.rollout { kind = "StatefulSet", name = "part", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.message, "partitioned roll out complete: 2 new pods have been updated...")
  t.eq(r.progress.updated, 2)
  local kc = kubectl("rollout", "status", "statefulset/part", "--timeout=60s")
  t.eq(kc.code, 0, kc.stderr)
  t.eq(r.message, last_line(kc.stdout))
  local sts = c:get { kind = "StatefulSet", api_version = "apps/v1", name = "part" }
  t.ok(sts.status.updateRevision ~= before, "a new revision")
  t.eq(sts.status.currentRevision, before, "below the partition the old revision stays current")
  local revs = {}
  for _, p in ipairs(c:list { kind = "Pod", label_selector = "app=part" }.items) do
    revs[p.metadata.name] = p.metadata.labels["controller-revision-hash"]
  end
  t.eq(revs, { ["part-0"] = before, ["part-1"] = sts.status.updateRevision, ["part-2"] = sts.status.updateRevision })
end, { timeout = 400 })

t.case("daemonset: done in kubectl's words through an update; a missing image fails it fast", function()
  local c = client()
  c:apply(daemonset("agent", IMAGE))
  local r = k8s.rollout { kind = "DaemonSet", name = "agent", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.message, 'daemon set "agent" successfully rolled out')
  local ds = daemonset("agent", IMAGE)
  ds.spec.template.spec.containers[1].env = { { name = "VERSION", value = "2" } }
  c:apply(ds)
  r = k8s.rollout { kind = "DaemonSet", name = "agent", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.progress.updated, 1)
  local kc = kubectl("rollout", "status", "daemonset/agent", "--timeout=60s")
  t.eq(kc.code, 0, kc.stderr)
  t.eq(r.message, last_line(kc.stdout))
  local pods = c:list { kind = "Pod", label_selector = "app=agent" }.items
  t.eq(#pods, 1, "one node, one pod")
  t.eq(pods[1].metadata.labels["pod-template-generation"], "2")

  c:apply(daemonset("agent-bad", MISSING))
  local ok, err = pcall(k8s.rollout, { kind = "DaemonSet", name = "agent-bad", client = c, timeout = 180 })
  check_pull_failure(ok, err, "DaemonSet")
  kc = kubectl("rollout", "status", "daemonset/agent-bad", "--timeout=2s")
  t.ok(kc.code ~= 0, "kubectl does not call the broken rollout a success")
end, { timeout = 400 })

t.case("job: one that exits 0 is done, as kubectl wait --for=condition=complete says", function()
  local c = client()
  c:apply(job("once", IMAGE, "echo working; echo done"))
  local r = k8s.rollout { kind = "Job", name = "once", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.message, 'job "once" completed')
  t.eq(r.progress.succeeded, 1)
  local kc = kubectl("wait", "--for=condition=complete", "job/once", "--timeout=30s")
  t.eq(kc.code, 0, kc.stderr)
  t.match(kc.stdout, "condition met")
end, { timeout = 300 })

t.case("job: one that exits 1 with backoffLimit 1 fails with BackoffLimitExceeded and its logs", function()
  local c = client()
  c:apply(job("fails", IMAGE, "echo connecting to the database; echo boom: no DATABASE_URL; exit 1", 1))
  local ok, err = pcall(k8s.rollout, { kind = "Job", name = "fails", client = c, timeout = 180 })
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed", err.message)
  t.eq(err.details.reason, "BackoffLimitExceeded")
  t.match(err.message, 'job "fails" failed: Job has reached the specified backoff limit')
  t.eq(err.details.container, "app")
  t.eq(err.details.progress.failed, 2, "the first pod and its one retry")
  t.match(err.details.logs[err.details.pod .. "/app"] or "", "boom: no DATABASE_URL")
  local failed_pods = 0
  for _, p in ipairs(err.details.pods) do
    if p.phase == "Failed" then failed_pods = failed_pods + 1 end
  end
  t.eq(failed_pods, 2)
  -- the Job controller's event: in the evidence when it came before the Failed condition (the
  -- order of an event and a status write is not guaranteed, on a real cluster either), else
  -- listed a moment later
  local function has_limit_event(events, object_of)
    for _, e in ipairs(events) do
      if object_of(e) == "Job/fails" and e.reason == "BackoffLimitExceeded" then return true end
    end
    return false
  end
  local limit_event = has_limit_event(err.details.events, function(e) return e.object end)
  local deadline = hoist.now() + 15
  while not limit_event and hoist.now() < deadline do
    hoist.sleep(0.2)
    local list = c:list { kind = "Event", api_version = "v1", field_selector = "involvedObject.name=fails" }
    limit_event = has_limit_event(list.items, function(e)
      return (e.involvedObject or {}).kind .. "/" .. (e.involvedObject or {}).name
    end)
  end
  t.ok(limit_event, "the Job's BackoffLimitExceeded event")
  local kc = kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=30s")
  t.eq(kc.code, 0, kc.stderr)
  kc = kubectl("wait", "--for=condition=complete", "job/fails", "--timeout=2s")
  t.ok(kc.code ~= 0, "kubectl does not see it complete")
end, { timeout = 300 })

t.case("job: a missing image fails it fast, long before its backoffLimit", function()
  local c = client()
  c:apply(job("nopull", MISSING, "true", 6))
  local ok, err = pcall(k8s.rollout, { kind = "Job", name = "nopull", client = c, timeout = 180 })
  check_pull_failure(ok, err, "Job")
  local j = c:get { kind = "Job", api_version = "batch/v1", name = "nopull" }
  for _, cond in ipairs(j.status.conditions or {}) do
    t.ok(cond.type ~= "Failed" or cond.status ~= "True", "the Job itself has not failed yet")
  end
end, { timeout = 300 })

t.case("kinds: clean up the namespace", function()
  client_in()
  drop_namespace()
end)
