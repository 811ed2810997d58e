-- The kubernetes target with manifests of several documents, against the Kubernetes emulator
-- of tests/env: every document is checked (discovery, server-side dry run) before the first
-- write, and what existed before a run changed it is put back by its compensation. The pods
-- are busybox httpd (the environment's base image, pushed to the registry under the test's
-- own name), so no docker build. Run it under flock /tmp/hoist-docker.lock. Skipped without
-- Docker, the emulator and its kubelet; failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local cluster = dofile(here .. "/k8s_cluster.lua")
local support = dofile(here .. "/support.lua")
local REGISTRY = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local NS = cluster.namespace("hoist-k8sfix-mf")
local IMAGE = REGISTRY .. "/" .. NS .. "/busybox:latest"
local client_in, drop_namespace = cluster.client_in(NS)
local target = require "hoist.targets.kubernetes"
local SLOW = { timeout = 600 }

local checked
local function client()
  support.need_docker("k8s manifests test")
  local c = client_in()
  if not checked then
    hoist.exec { "docker", "tag", BASE, IMAGE, check = true }
    hoist.exec { "docker", "push", IMAGE, check = true }
    cluster.need_controllers(c)
    cluster.need_kubelet(c, IMAGE)
    checked = true
  end
  return c
end

-- A ConfigMap LEVEL=<level>, a Deployment (apiVersion `deployment_api`) serving /health, its Service.
local function manifests(level, opts)
  opts = opts or {}
  local labels = { app = "web" }
  return {
    { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "web-config" }, data = { LEVEL = level } },
    { apiVersion = opts.deployment_api or "apps/v1", kind = "Deployment", metadata = { name = "web", labels = labels },
      spec = { replicas = 1, selector = { matchLabels = labels },
               strategy = { rollingUpdate = { maxUnavailable = 0, maxSurge = 1 } },
               template = { metadata = { labels = labels, annotations = { level = level } },
                            spec = { containers = { {
                              name = "app", image = opts.image or IMAGE,
                              command = { "sh", "-c", "mkdir -p /www && echo ok > /www/health && exec httpd -f -p 8080 -h /www" },
                              envFrom = { { configMapRef = { name = "web-config" } } },
                              ports = { { containerPort = 8080 } },
                              readinessProbe = { httpGet = { path = "/health", port = 8080 }, periodSeconds = 1 } } } } } } },
    { apiVersion = "v1", kind = "Service", metadata = { name = "web", labels = labels },
      spec = { selector = labels, ports = { { port = 80, targetPort = 8080 } } } },
  }
end

-- The manifests with readinessProbe misspelt readinesProbe: a field the Deployment kind lacks.
local function with_typo(list)
  local c = list[2].spec.template.spec.containers[1]
  c.readinesProbe, c.readinessProbe = c.readinessProbe, nil
  return list
end

local function deploy(run, list)
  return target.deploy { service = "web", image = IMAGE, manifests = list, client = client(), namespace = NS,
                         container_port = 8080, health_path = "/health", run = run, rollout_timeout = 120,
                         ready_timeout = 30, verify = { retries = 30, interval = 0.5 } }
end

local function config() return client():get { kind = "ConfigMap", name = "web-config" } end

t.case("v1: a ConfigMap and a Deployment deploy", function()
  local r = deploy("mf-v1", manifests("info"))
  t.match(r.url, "^http://")
  t.eq(config().data.LEVEL, "info")
end, SLOW)

t.case("v2 with an invalid document: refused before any write, the ConfigMap unchanged", function()
  local c = client()
  local before = config()
  local ok, err = pcall(deploy, "mf-v2", manifests("debug", { deployment_api = "extensions/v1beta1" }))
  t.ok(not ok, "the deploy fails")
  t.eq(err.code, "invalid_argument", tostring(err))
  t.match(err.message, "document 2 %(Deployment web, apiVersion extensions/v1beta1%)")
  t.match(err.message, "nothing was changed")
  local after = config()
  t.eq(after.data.LEVEL, "info")
  t.eq(after.metadata.annotations["hoist.dev/run"], "mf-v1", "the annotation of the run that applied it")
  t.eq(after.metadata.resourceVersion, before.metadata.resourceVersion, "not written at all")
  t.eq(c:get { kind = "Deployment", name = "web" }.metadata.annotations["hoist.dev/run"], "mf-v1")
end, SLOW)

t.case("a misspelt field (readinesProbe) fails the deploy naming it, before any write", function()
  client() -- skips here without the cluster (a skip inside the pcall below would read as the failure)
  local before = config()
  local ok, err = pcall(deploy, "mf-typo", with_typo(manifests("debug")))
  t.ok(not ok, "the deploy fails instead of running without its probe")
  t.eq(err.code, "invalid_argument", tostring(err))
  t.match(err.message, "document 2 %(Deployment web")
  t.match(err.message, "readinesProbe: field not declared in schema")
  t.eq(config().metadata.resourceVersion, before.metadata.resourceVersion, "the ConfigMap was not written")
end, SLOW)

t.case("v3 whose rollout fails: rolled back, the ConfigMap restored as it was before", function()
  client() -- skips here without the cluster (a skip inside the pcall below would read as the failure)
  local ok, err = pcall(deploy, "mf-v3", manifests("debug", { image = REGISTRY .. "/" .. NS .. "/missing:none" }))
  t.ok(not ok, "the deploy fails")
  t.eq(err.code, "rollout_failed", tostring(err))
  t.match(err.message, "rolled back to revision 1")
  local after = config()
  t.eq(after.data.LEVEL, "info")
  t.eq(after.metadata.annotations["hoist.dev/run"], "mf-v1")
end, SLOW)

t.case("an existing Secret the failed run changed cannot be restored (its values are never journaled): named", function()
  local secret = { apiVersion = "v1", kind = "Secret", metadata = { name = "web-token" }, stringData = { token = "tok-one-1234" } }
  local list = manifests("info")
  table.insert(list, 1, secret)
  deploy("mf-v4", list)
  local bad = manifests("info", { image = REGISTRY .. "/" .. NS .. "/missing:none" })
  table.insert(bad, 1, { apiVersion = "v1", kind = "Secret", metadata = { name = "web-token" }, stringData = { token = "tok-two-5678" } })
  local ok, err = pcall(deploy, "mf-v5", bad)
  t.ok(not ok, "the deploy fails")
  t.eq(err.code, "rollout_failed", tostring(err))
  t.match(err.message, "rolled back to revision %d+")
  t.match(err.message, "NOT restored: k8s%.restore: secret [%w-]+/web%-token existed before")
  t.no_match(hoist.json.encode(err), "tok%-one%-1234")
  t.no_match(hoist.json.encode(err), "tok%-two%-5678")
  t.eq(config().data.LEVEL, "info")
end, SLOW)

t.case("k8s.restore: an existing object without its previous state is an error, not a silent success", function()
  local c = client() -- skips here without the cluster, not inside t.raises
  t.raises(function()
    require("hoist.k8s.undo").restore { client = c, namespace = NS, existed = true, run = "mf-x",
      manifest = { apiVersion = "v1", kind = "Secret", metadata = { name = "s" } } }
  end, "invalid_argument", "a Secret's values are never journaled")
end)

t.case("hoist.k8s.apply checks every document before the first write", function()
  local c = client()
  local rv = config().metadata.resourceVersion
  local ok, err = pcall(hoist.k8s.apply, manifests("warn", { deployment_api = "extensions/v1beta1" }), { client = c, namespace = NS })
  t.ok(not ok, "refused")
  t.match(tostring(err), "document 2 %(Deployment web")
  t.eq(config().metadata.resourceVersion, rv, "the ConfigMap was not written")
end)


t.case("the preflight checks your own manifests before the build: exit 2, nothing written", function()
  local c = client()
  local rv = config().metadata.resourceVersion
  local ok, err = pcall(require("hoist.targets").preflight, "kubernetes", {
    service = "web", image = IMAGE, namespace = NS, kubeconfig = os.getenv("KUBECONFIG"),
    manifests = manifests("warn", { deployment_api = "extensions/v1beta1" }) })
  t.ok(not ok, "refused")
  t.eq(err.code, "invalid_argument", tostring(err))
  t.match(err.message, "document 2 %(Deployment web, apiVersion extensions/v1beta1%)")
  t.eq(err.details.exit_code, 2)
  t.eq(config().metadata.resourceVersion, rv, "the ConfigMap was not written")
  t.ok(require("hoist.targets").preflight("kubernetes", { service = "web", image = IMAGE, namespace = NS,
    kubeconfig = os.getenv("KUBECONFIG"), manifests = manifests("info") }), "good manifests pass")
end)

t.case("cleanup", function()
  drop_namespace()
  hoist.exec { "docker", "rmi", IMAGE }
end)
