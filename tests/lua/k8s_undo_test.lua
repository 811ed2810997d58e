-- hoist.k8s.undo and the compensations k8s.rollout_undo / k8s.restore against the Kubernetes
-- emulator of tests/env (its deployment controller writes the revision annotations). The
-- Deployments have 0 replicas: ReplicaSets and revisions without containers, so no Docker.
-- Skipped without the emulator; failed instead when CI=true.
local t = require "hoist.test"
local k8s = hoist.k8s
local undo = require "hoist.k8s.undo"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local cluster = dofile(here .. "/k8s_cluster.lua")
local NS = cluster.namespace("hoist-undo")
local client_in, drop_namespace = cluster.client_in(NS)
local checked
local function client()
  local c = client_in()
  if not checked then cluster.need_controllers(c); checked = true end
  return c
end

local function deployment(name, image, run)
  return { apiVersion = "apps/v1", kind = "Deployment",
    metadata = { name = name, annotations = run and { [undo.RUN_ANNOTATION] = run } or nil },
    spec = { replicas = 0, selector = { matchLabels = { app = name } },
             template = { metadata = { labels = { app = name } },
                          spec = { containers = { { name = "app", image = image } } } } } }
end

-- Waits until the controller has made the revision `rev` of the Deployment's template.
local function wait_revision(c, name, rev)
  for _ = 1, 100 do
    local d = c:get { kind = "Deployment", name = name }
    local a = d.metadata.annotations or {}
    if a["deployment.kubernetes.io/revision"] == tostring(rev) and (d.status or {}).observedGeneration == d.metadata.generation then
      return d
    end
    hoist.sleep(0.1)
  end
  error(("deployment %s never reached revision %d"):format(name, rev))
end

local function image_of(d) return d.spec.template.spec.containers[1].image end

t.case("undo goes back to the previous revision's template, as kubectl rollout undo", function()
  local c = client()
  c:apply(deployment("web", "127.0.0.1:5000/web:v1"))
  wait_revision(c, "web", 1)
  c:apply(deployment("web", "127.0.0.1:5000/web:v2"))
  wait_revision(c, "web", 2)
  local r = k8s.undo { client = c, name = "web" }
  t.eq(r.changed, true)
  t.eq(r.revision, 1)
  t.eq(r.image, "127.0.0.1:5000/web:v1")
  local d = wait_revision(c, "web", 3) -- the old ReplicaSet comes back as the next revision
  t.eq(image_of(d), "127.0.0.1:5000/web:v1")
  t.eq(d.spec.template.metadata.labels["pod-template-hash"], nil, "pod-template-hash is not copied")
  -- kubectl sees the same history
  local hist = hoist.exec { "kubectl", "-n", NS, "rollout", "history", "deployment/web" }
  t.eq(hist.code, 0, hist.stderr)
  t.match(hist.stdout, "\n2 ")
  t.match(hist.stdout, "\n3 ")
end)

t.case("undo is idempotent: the same revision again changes nothing", function()
  local c = client()
  local before = c:get { kind = "Deployment", name = "web" }
  local r = k8s.undo { client = c, name = "web", to_revision = 1 }
  t.eq(r.changed, false)
  t.eq(r.revision, 3, "revision 1 came back as 3 (revision-history 1)")
  t.eq(c:get { kind = "Deployment", name = "web" }.metadata.resourceVersion, before.metadata.resourceVersion)
end)

t.case("undo to a given revision, by number or by pod-template-hash", function()
  local c = client()
  local r = k8s.undo { client = c, name = "web", to_revision = 2 }
  t.eq(r.image, "127.0.0.1:5000/web:v2")
  wait_revision(c, "web", 4)
  local rss = undo.replica_sets(c, c:get { kind = "Deployment", name = "web" })
  local v1 = rss[#rss - 1]
  t.eq(image_of(v1), "127.0.0.1:5000/web:v1")
  r = k8s.undo { client = c, name = "web", to_revision = 99, template_hash = v1.metadata.labels["pod-template-hash"] }
  t.eq(r.image, "127.0.0.1:5000/web:v1")
end)

t.cases("undo errors name what is wrong", {
  { name = "no such revision", opts = { name = "web", to_revision = 42 }, code = "not_found", pat = "revision 42 not found %(revisions: " },
  { name = "no history", opts = { name = "fresh" }, code = "not_found", pat = "no previous revision to go back to" },
  { name = "no deployment", opts = { name = "absent" }, code = "not_found", pat = "absent" },
  { name = "other kind", opts = { name = "web", kind = "StatefulSet" }, code = "invalid_argument", pat = "option 'kind' must be one of" },
  { name = "bad option", opts = { name = "web", revision = 1 }, code = "invalid_argument", pat = "unknown option 'revision'" },
}, function(row)
  local c = client()
  if row.name == "no history" then
    c:apply(deployment("fresh", "127.0.0.1:5000/web:v1"))
    wait_revision(c, "fresh", 1)
  end
  local opts = { client = c }
  for k, v in pairs(row.opts) do opts[k] = v end
  t.raises(function() k8s.undo(opts) end, row.code, row.pat)
end)

t.case("dry run: the patch is a plan step and nothing changes", function()
  local c = client()
  local before = c:get { kind = "Deployment", name = "web" }
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(true)
  local ok, r = pcall(k8s.undo, { client = c, name = "web", to_revision = 2 })
  core.set_dry_run(previous)
  t.ok(ok, tostring(r))
  t.eq(r.planned, true)
  t.eq(r.image, "127.0.0.1:5000/web:v2")
  local after = c:get { kind = "Deployment", name = "web" }
  t.eq(after.metadata.resourceVersion, before.metadata.resourceVersion)
  t.eq(image_of(after), "127.0.0.1:5000/web:v1")
end)

t.case("k8s.rollout_undo leaves a Deployment another run changed since; k8s.restore deletes what a run created", function()
  local c = client()
  c:apply(deployment("api", "127.0.0.1:5000/api:v1", "run-a"))
  wait_revision(c, "api", 1)
  c:apply(deployment("api", "127.0.0.1:5000/api:v2", "run-b"))
  wait_revision(c, "api", 2)
  -- run-c's compensation (its apply never happened, or run-b came after it): left alone
  t.eq(undo.rollout_undo { client = c, namespace = NS, name = "api", revision = 1, run = "run-c" }, nil)
  t.eq(image_of(c:get { kind = "Deployment", name = "api" }), "127.0.0.1:5000/api:v2")
  -- run-b's compensation: back to revision 1, and again: nothing to do
  local r = undo.rollout_undo { client = c, namespace = NS, name = "api", revision = 1, run = "run-b" }
  t.eq(r.changed, true)
  -- it returned once revision 1's template had rolled out (as revision 3), not before
  t.eq(r.rollout and r.rollout.verdict, "done")
  t.eq(k8s.classify(c:get { kind = "Deployment", name = "api" }).verdict, "done")
  wait_revision(c, "api", 3)
  t.eq(undo.rollout_undo { client = c, namespace = NS, name = "api", revision = 1, run = "run-b" }.changed, false)
  -- what run-b created goes; what run-a created stays
  local m = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "made-by-b", namespace = NS,
                                                                   annotations = { [undo.RUN_ANNOTATION] = "run-b" } } }
  c:apply(m)
  t.eq(undo.restore { client = c, manifest = m, run = "run-a" }, false)
  t.ok(c:get { kind = "ConfigMap", name = "made-by-b", missing_ok = true })
  t.eq(undo.restore { client = c, manifest = m, run = "run-b" }, true)
  t.eq(c:get { kind = "ConfigMap", name = "made-by-b", missing_ok = true }, nil)
  t.eq(undo.restore { client = c, manifest = m, run = "run-b" }, false, "idempotent")
  t.raises(function() undo.restore { client = c, manifest = m, existed = true } end, "invalid_argument", "existed before")
  -- what existed goes back to what it was
  local cm = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "level", namespace = NS,
                                                                  annotations = { [undo.RUN_ANNOTATION] = "run-a" } },
               data = { LEVEL = "info" } }
  local previous = undo.previous_of(c:apply(cm))
  cm.data.LEVEL, cm.metadata.annotations[undo.RUN_ANNOTATION] = "debug", "run-b"
  c:apply(cm)
  t.eq(undo.restore { client = c, manifest = cm, existed = true, previous = previous, run = "run-b" }, true)
  local back = c:get { kind = "ConfigMap", name = "level" }
  t.eq(back.data.LEVEL, "info")
  t.eq(back.metadata.annotations[undo.RUN_ANNOTATION], "run-a")
end)

t.case("both compensations are named actions (hoist rollback runs them from a later process)", function()
  local actions = require "hoist.pipeline.actions"
  t.ok(actions.get("k8s.rollout_undo"))
  t.ok(actions.get("k8s.restore"))
  t.eq(actions.get("k8s.rollout_undo").origin.module, "hoist.k8s.undo")
end)

t.case("cleanup", function() drop_namespace() end)
