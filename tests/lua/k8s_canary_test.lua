-- hoist.k8s.canary: options and dry runs (no cluster), then against the Kubernetes emulator of
-- tests/env: a canary of examples/app 10% -> 50% -> 100% with the split counted through the
-- Service and promoted; a canary answering errors aborted on its error budget; a canary whose
-- image is missing aborted with the rollout's reason; stable untouched by both aborts.
-- Cluster cases skip without the emulator (fail when CI=true); run under
-- flock /tmp/hoist-docker.lock.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local canary = hoist.k8s.canary

local E = os.getenv
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-canary-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/" .. NS .. "/app"

t.cases("options are checked first", {
  { name = "steps increase", opts = { steps = { 50, 10 } }, pattern = "steps must be increasing percentages in %(0, 100%], got 10 at 2" },
  { name = "steps in range", opts = { steps = { 150 } }, pattern = "got 150 at 1" },
  { name = "no steps", opts = { steps = {} }, pattern = "at least one percentage" },
  { name = "error rate", opts = { max_error_rate = 2 }, pattern = "max_error_rate must be between 0 and 1" },
  { name = "requests", opts = { requests = 0 }, pattern = "requests must be at least 1" },
  { name = "unknown", opts = { weight = 5 }, pattern = "unknown option 'weight'" },
  { name = "image required", opts = { image = false }, pattern = "option 'image' must be a string" },
}, function(row)
  local o = { name = "web", image = "r/app:2", namespace = "ns" }
  for k, v in pairs(row.opts) do o[k] = v end
  if o.image == false then o.image = 5 end
  t.raises(function() canary(o) end, "invalid_argument", row.pattern)
end)

t.case("dry run: one plan step per canary step and the promotion", function()
  local def = hoist.pipeline.define { name = "canary-dry", version = "1.0.0", stages = { { name = "canary", run = function()
    t.eq(canary { name = "web", image = "r/app:2", namespace = "ns", client = { namespace = "ns" } }.planned, true)
  end } } }
  local r = hoist.pipeline.run(def, {}, { dry_run = true, quiet = true })
  t.eq(#r.plan, 4)
  t.match(r.plan[1].message, "canary of deployment web: r/app:2 at 10%% of stable")
  t.match(r.plan[3].message, "at 100%% of stable")
  t.match(r.plan[4].message, "set image r/app:2 on web, delete web%-canary")
end)

---------------------------------------------------------------- against the emulator

local cluster = dofile(support.here .. "/k8s_cluster.lua")
local function need_cluster()
  support.need_docker("canary test")
  cluster.need()
end

local images = {}
-- examples/app: /version answers the version, /health 200 unless HEALTHY=false, on port 8080.
local function image(tag, args)
  if not images[tag] then
    local ref = REPO .. ":" .. tag
    hoist.docker.build { context = support.root .. "/examples/app", tags = { ref }, build_args = args }
    hoist.docker.push(ref)
    images[tag] = ref
  end
  return images[tag]
end

local kube
local function client()
  need_cluster()
  if not kube then
    kube = hoist.k8s.client { namespace = NS }
    kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  end
  return kube
end

-- Stable: 3 replicas of version 1 behind Service web (readiness on / so a canary whose
-- /health fails still joins the Service, as a subtly broken release does).
local function stable(c)
  local objs = hoist.k8s.app { name = "web", image = image("1", { VERSION = "1" }), replicas = 3, port = 8080,
                               probes = { path = "/", startup = { periodSeconds = 1 }, readiness = { periodSeconds = 1 } },
                               hpa = false, pdb = false, resources = false, grace = 2 }
  hoist.k8s.apply(objs, { client = c })
  hoist.k8s.rollout { name = "web", client = c, timeout = 180 }
end

local function image_of(c, name)
  return c:get { kind = "Deployment", name = name }.spec.template.spec.containers[1].image
end

t.case("canary: 10% -> 50% -> 100%, the split counted through the Service, then promoted", function()
  local c = client()
  stable(c)
  local r = canary { name = "web", image = image("2", { VERSION = "2" }), client = c, path = "/version", version = "2",
                     requests = 24, health = { retries = 20, interval = 0.5 }, timeout = 180 }
  t.eq(r.promoted, true)
  t.eq(r.previous, image("1"))
  t.eq(#r.steps, 3)
  t.eq({ r.steps[1].canary_replicas, r.steps[2].canary_replicas, r.steps[3].canary_replicas }, { 1, 2, 3 })
  for _, s in ipairs(r.steps) do
    t.eq(s.errors, 0)
    t.eq(s.other, 0)
    t.ok(s.canary > 0 and s.stable > 0, ("both tracks answered at %d%%: %d canary, %d stable"):format(s.percent, s.canary, s.stable))
    print(("canary at %d%%: %d of %d answers from the canary"):format(s.percent, s.canary, s.requests))
  end
  t.ok(r.steps[3].canary > r.steps[1].canary, "the canary's share grew")
  t.eq(image_of(c, "web"), image("2"))
  t.eq(c:get { kind = "Deployment", name = "web-canary", missing_ok = true } == nil
       or c:get { kind = "Deployment", name = "web-canary" }.metadata.deletionTimestamp ~= nil, true)
end, { timeout = 600 })

t.case("canary: answers over the error budget abort it; the canary goes, stable stays", function()
  local c = client()
  local before = image_of(c, "web")
  local err
  local def = hoist.pipeline.define { name = "canary-bad", version = "1.0.0", stages = { { name = "canary", run = function(ctx)
    local ok
    ok, err = pcall(canary, { name = "web", image = image("broken", { VERSION = "3", HEALTHY = "false" }), client = c, path = "/health",
             health = false, requests = 12, timeout = 180, ctx = ctx })
    error(err, 0)
  end } } }
  local r = hoist.pipeline.run(def, {}, { raise = false, quiet = true })
  t.eq(r.status, "rolled_back")
  t.eq(err.code, "rollout_failed")
  t.match(err.message, "canary of deployment web aborted %(canary removed, stable untouched on .-%): at 10%%: %d+ of 12 requests failed")
  t.match(err.message, "status 404")
  t.eq(err.details.reason, "ErrorBudgetExceeded")
  t.eq(err.details.sample.requests, 12)
  t.ok(err.details.sample.errors >= 1 and #err.details.sample.failures >= 1, "the failures are the evidence")
  t.eq(r.rolled_back, { "k8s.canary_remove (canary)" })
  t.eq(image_of(c, "web"), before)
  local d = c:get { kind = "Deployment", name = "web-canary", missing_ok = true }
  t.ok(d == nil or d.metadata.deletionTimestamp ~= nil, "canary deleted")
end, { timeout = 400 })

t.case("canary: a missing image aborts with the rollout's reason", function()
  local c = client()
  local before = image_of(c, "web")
  local ok, err = pcall(canary, { name = "web", image = REPO .. ":never-pushed", client = c, path = "/version", timeout = 120 })
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed")
  t.ok(err.details.reason == "ErrImagePull" or err.details.reason == "ImagePullBackOff", err.details.reason)
  t.match(err.message, "never%-pushed")
  t.eq(image_of(c, "web"), before)
end, { timeout = 300 })

t.case("canary: clean up the namespace", function()
  if kube then kube:delete { kind = "Namespace", name = NS, missing_ok = true } end
end)
