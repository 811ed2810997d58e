-- hoist.k8s.helm: options, tool_missing, dry runs (no cluster), then against the Kubernetes
-- emulator of tests/env with the helm stand-in tests/tools/helm and examples/charts/app:
-- install tracked by hoist, a bad image failing in seconds with the reason, the journaled
-- k8s.helm_rollback bringing the previous revision back, history, status, uninstall.
-- The cluster cases skip without the emulator (fail when CI=true); run them under
-- flock /tmp/hoist-docker.lock.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local helm = hoist.k8s.helm

local E = os.getenv
local HELM = support.root .. "/tests/tools/helm"
local CHART = support.root .. "/examples/charts/app"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-helm-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/" .. NS .. "/app"

t.cases("options are checked before helm runs", {
  { name = "release name", opts = { release = "Bad_Name", chart = CHART }, pattern = "release \"Bad_Name\" must be a lower%-case RFC 1123" },
  { name = "unknown option", opts = { release = "a", chart = CHART, wait = true }, pattern = "unknown option 'wait'" },
  { name = "chart required", opts = { release = "a" }, pattern = "option 'chart' is required" },
  { name = "set value type", opts = { release = "a", chart = CHART, set = { x = {} } }, pattern = "set%[x%] must map" },
  { name = "values file missing", opts = { release = "a", chart = CHART, values_files = { "/nonexistent/v.yaml" } },
    code = "not_found", pattern = "values file /nonexistent/v.yaml does not exist" },
}, function(row)
  row.opts.helm, row.opts.namespace = HELM, "ns"
  t.raises(function() helm.upgrade(row.opts) end, row.code or "invalid_argument", row.pattern)
end)

t.case("a secret never goes on helm's command line", function()
  local s = "hoist-helm-test-secret-" .. math.random(100000)
  hoist.secret(s)
  t.raises(function() helm.upgrade { helm = HELM, namespace = "ns", release = "a", chart = CHART, set = { ["db.password"] = s } } end,
    "invalid_argument", "set%[db.password%] holds a secret; pass it in values")
end)

t.case("without helm: tool_missing saying how to get it", function()
  t.raises(function() helm.history { helm = "/nonexistent/helm", release = "a", namespace = "ns" } end, "tool_missing",
    "helm=/nonexistent/helm: no such program; install helm v3")
  local dir = support.tmpdir("hoist-helm")
  support.write(dir .. "/s.lua", 'hoist.k8s.helm.history { release = "a", namespace = "ns" }\n')
  local r = support.run_hoist({ "run", dir .. "/s.lua" }, { env = { PATH = "/usr/bin:/bin", HOIST_HELM = "" }, cwd = dir })
  t.eq(r.code, 1)
  t.match(r.stderr, "helm is not installed: install helm v3 %(https://helm.sh/docs/intro/install/%) on PATH or set HOIST_HELM")
  r = support.run_hoist({ "run", dir .. "/s.lua" }, { env = { HOIST_HELM = "no-such-helm-here" }, cwd = dir })
  t.match(r.stderr, "HOIST_HELM=no%-such%-helm%-here: no such program")
  hoist.fs.remove(dir, { recursive = true })
end)

t.case("dry run: the upgrade and rollback are plan steps; helm never runs", function()
  local def = hoist.pipeline.define { name = "helm-dry", version = "1.0.0", stages = { { name = "deploy", run = function(ctx)
    local r = helm.upgrade { helm = "/bin/false", namespace = "web", release = "api", chart = CHART, values = { replicaCount = 3 },
                             set = { ["image.tag"] = "v2" }, create_namespace = true, ctx = ctx }
    t.eq(r.planned, true)
    t.eq(helm.rollback { helm = "/bin/false", namespace = "web", release = "api", revision = 1 }.planned, true)
    t.eq(helm.uninstall { helm = "/bin/false", namespace = "web", release = "api" }.planned, true)
  end } } }
  local r = hoist.pipeline.run(def, {}, { dry_run = true, quiet = true })
  t.eq(#r.plan, 3)
  local up = table.concat(r.plan[1].argv, " ")
  t.match(up, "^/bin/false upgrade api " .. CHART:gsub("%p", "%%%0") .. " %-%-install %-%-timeout 600s %-%-output json %-%-namespace web %-%-create%-namespace %-%-values %S+ %-%-set image.tag=v2$")
  t.eq(r.plan[1].action, "k8s.helm_upgrade")
  t.match(table.concat(r.plan[2].argv, " "), "rollback api 1 %-%-timeout 600s %-%-namespace web$")
  t.match(table.concat(r.plan[3].argv, " "), "uninstall api %-%-ignore%-not%-found")
  for _, e in ipairs(r.journal) do t.ok(e.kind ~= "compensation.registered", "nothing to compensate in a dry run") end
end)

---------------------------------------------------------------- against the emulator

local cluster = dofile(support.here .. "/k8s_cluster.lua")
local function need_cluster()
  support.need_docker("helm test")
  cluster.need()
  if not hoist.which("kubectl") then
    if os.getenv("CI") == "true" then error("kubectl is not installed (the helm stand-in applies with it)") end
    t.skip("kubectl is not installed (the helm stand-in applies with it)")
  end
end

local images
local function image(version)
  if not images then
    images = {}
    for _, v in ipairs { "1", "2" } do
      local tag = REPO .. ":" .. v
      hoist.docker.build { context = support.root .. "/examples/app", tags = { tag }, build_args = { VERSION = v } }
      hoist.docker.push(tag)
      images[v] = tag
    end
  end
  return images[version]
end

-- examples/app listens on 8080 and answers /health; the chart's defaults say 8000 and /healthz.
-- `tag` is a pushed version ("1", "2": built and pushed first) or a tag never pushed.
local function values(tag, extra)
  if tag == "1" or tag == "2" then image(tag) end
  local v = { image = { repository = REPO, tag = tag }, replicaCount = 2, containerPort = 8080, probes = { path = "/health" } }
  for k, x in pairs(extra or {}) do v[k] = x end
  return v
end

local kube
local function client()
  need_cluster()
  kube = kube or hoist.k8s.client { namespace = NS }
  return kube
end

local function serving(c)
  local svc = c:get { kind = "Service", name = "web" }
  local addr = svc.metadata.annotations["hoist.dev/emulator-address"]
  local r = hoist.http.get("http://" .. addr .. "/version", { timeout = 5 })
  return r.body
end

t.case("helm: install creates the namespace and is tracked by hoist until done", function()
  local c = client()
  local r = helm.upgrade { helm = HELM, client = c, release = "web", chart = CHART, create_namespace = true,
                           values = values("1"), timeout = 180 }
  t.eq(r.revision, 1)
  t.eq(r.previous, nil)
  t.eq(r.status, "deployed")
  t.eq(#r.workloads, 1)
  t.eq(r.workloads[1].verdict, "done")
  t.eq(r.workloads[1].message, 'deployment "web" successfully rolled out')
  t.eq(serving(c), "1")
  local h = helm.history { helm = HELM, client = c, release = "web" }
  t.eq(#h, 1)
  t.eq(h[1].status, "deployed")
  t.eq(helm.status { helm = HELM, client = c, release = "web" }.info.status, "deployed")
  local kinds = {}
  for _, o in ipairs(helm.manifest { helm = HELM, client = c, release = "web" }) do kinds[#kinds + 1] = o.kind end
  t.eq(kinds, { "Service", "Deployment" })
  t.eq(helm.history { helm = HELM, client = c, release = "nothing-here" }, {})
  t.eq(helm.status { helm = HELM, client = c, release = "nothing-here" }, nil)
end, { timeout = 300 })

t.case("helm: a missing image fails the upgrade with the reason; k8s.helm_rollback, journaled first, brings revision 1 back", function()
  local c = client()
  local failed_at, err
  local def = hoist.pipeline.define { name = "helm-bad", version = "1.0.0", stages = { { name = "deploy", run = function(ctx)
    local started = hoist.now()
    local ok, e = pcall(helm.upgrade, { helm = HELM, client = c, release = "web", chart = CHART, ctx = ctx, timeout = 180,
                                        values = values("never-pushed") })
    failed_at, err = hoist.now() - started, e
    t.eq(ok, false)
    error(e, 0)
  end } } }
  local r = hoist.pipeline.run(def, {}, { raise = false, quiet = true })
  t.eq(r.status, "rolled_back")
  t.eq(err.code, "rollout_failed")
  t.ok(err.details.reason == "ErrImagePull" or err.details.reason == "ImagePullBackOff", err.details.reason)
  t.match(err.message, "^helm release web revision 2: deployment web: pod web%-")
  t.match(err.message, "never%-pushed")
  t.eq(err.details.release, "web")
  t.ok(#err.details.pods >= 1, "evidence: the pods and their container states")
  print(("helm stand-in upgrade to a missing image: hoist's verdict after %.1fs"):format(failed_at))
  local kinds = {}
  for _, e in ipairs(r.journal) do
    if e.kind == "compensation.registered" then
      t.eq(e.action, "k8s.helm_rollback")
      t.eq(e.args.revision, 1)
      t.eq(e.args.release, "web")
    end
    kinds[#kinds + 1] = e.kind
  end
  t.match(table.concat(kinds, " "), "compensation.registered.*stage.end.*compensation.start.*compensation.end")
  local h = helm.history { helm = HELM, client = c, release = "web" }
  t.eq(#h, 3)
  t.eq(h[2].status, "superseded")  -- without --wait helm calls it deployed; the rollback supersedes it
  t.eq(h[3].status, "deployed")
  t.eq(h[3].description, "Rollback to 1")
  local d = c:get { kind = "Deployment", name = "web" }
  t.eq(d.spec.template.spec.containers[1].image, image("1"))
  t.eq(hoist.k8s.rollout { name = "web", client = c, timeout = 120 }.verdict, "done")
  t.eq(serving(c), "1")
  -- idempotent: the compensation again changes nothing
  t.eq(helm.rollback { helm = HELM, client = c, release = "web", revision = 1 }.skipped, true)
  t.eq(#helm.history { helm = HELM, client = c, release = "web" }, 3)
end, { timeout = 400 })

t.case("helm: an upgrade to a good version; uninstall twice", function()
  local c = client()
  local r = helm.upgrade { helm = HELM, client = c, release = "web", chart = CHART, values = values("2"), timeout = 180 }
  t.eq(r.previous, 3)
  t.eq(r.revision, 4)
  t.eq(serving(c), "2")
  t.eq(helm.uninstall { helm = HELM, client = c, release = "web" }.removed, true)
  t.eq(helm.uninstall { helm = HELM, client = c, release = "web" }.removed, false)
  t.eq(helm.history { helm = HELM, client = c, release = "web" }, {})
  t.raises(function() helm.rollback { helm = HELM, client = c, release = "web" } end, "not_found", 'release "web" not found')
end, { timeout = 300 })

t.case("helm: clean up the namespace", function()
  if not kube then return end
  kube:delete { kind = "Namespace", name = NS, missing_ok = true }
end)
