-- hoist.k8s.app: the manifests of a web service, with the scenarios' production defaults.
local t = require "hoist.test"
local app = hoist.k8s.app
local json = hoist.json

local IMAGE = "127.0.0.1:5000/web@sha256:" .. ("ab"):rep(32)

local function by_kind(list)
  local out, kinds = {}, {}
  for _, m in ipairs(list) do out[m.kind] = m; kinds[#kinds + 1] = m.kind end
  return out, kinds
end

t.case("defaults: 3 replicas, zero-downtime rollout, probes, resources, HPA 3-20 at 70%, PDB", function()
  local m, kinds = by_kind(app { name = "web", image = IMAGE })
  t.eq(kinds, { "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget" })
  local d = m.Deployment.spec
  t.eq(d.replicas, 3)
  t.eq(d.strategy.rollingUpdate, { maxSurge = 1, maxUnavailable = 0 })
  t.eq(d.selector.matchLabels, { ["app.kubernetes.io/name"] = "web" })
  local pod = d.template.spec
  t.eq(pod.terminationGracePeriodSeconds, 30)
  local c = pod.containers[1]
  t.eq(c.image, IMAGE)
  t.eq(c.ports[1], { name = "http", containerPort = 8000, protocol = "TCP" })
  t.eq(c.readinessProbe.httpGet, { path = "/healthz", port = "http" })
  t.eq(c.startupProbe.failureThreshold * c.startupProbe.periodSeconds, 60)
  t.eq(c.livenessProbe.periodSeconds, 10)
  t.eq(c.resources.requests, { cpu = "250m", memory = "256Mi" })
  t.eq(c.resources.limits, { cpu = "1", memory = "512Mi" })
  t.eq(m.Service.spec.ports[1], { name = "http", port = 80, targetPort = "http", protocol = "TCP" })
  t.eq(m.Service.spec.selector, d.selector.matchLabels)
  local h = m.HorizontalPodAutoscaler.spec
  t.eq({ h.minReplicas, h.maxReplicas, h.metrics[1].resource.target.averageUtilization }, { 3, 20, 70 })
  t.eq(h.scaleTargetRef, { apiVersion = "apps/v1", kind = "Deployment", name = "web" })
  t.eq(m.PodDisruptionBudget.spec.maxUnavailable, 1)
  for _, obj in pairs(m) do t.eq(obj.metadata.labels["app.kubernetes.io/managed-by"], "hoist") end
end)

t.case("the MLflow scenario: 3-10 replicas, probes on /ping, env from a secret", function()
  local m = by_kind(app {
    name = "model", image = IMAGE, namespace = "ml", port = 8080,
    hpa = { min = 3, max = 10 }, probes = { path = "/ping", startup = { failureThreshold = 60 } },
    env = { MODEL_VERSION = "7", API_KEY = { secret = "model-keys", key = "api" } },
  })
  t.eq(m.HorizontalPodAutoscaler.spec.maxReplicas, 10)
  local c = m.Deployment.spec.template.spec.containers[1]
  t.eq(c.startupProbe.failureThreshold, 60)
  t.eq(c.startupProbe.httpGet.path, "/ping")
  t.eq(c.env, {
    { name = "API_KEY", valueFrom = { secretKeyRef = { name = "model-keys", key = "api" } } },
    { name = "MODEL_VERSION", value = "7" },
  })
  t.eq(m.Deployment.metadata.namespace, "ml")
end)

t.case("workload identity: a ServiceAccount with the client id, pods labelled", function()
  local list = app { name = "web", image = IMAGE, service_account = { client_id = "0000-1" } }
  t.eq(list[1].kind, "ServiceAccount")
  t.eq(list[1].metadata.annotations, { ["azure.workload.identity/client-id"] = "0000-1" })
  local m = by_kind(list)
  t.eq(m.Deployment.spec.template.spec.serviceAccountName, "web")
  t.eq(m.Deployment.spec.template.metadata.labels["azure.workload.identity/use"], "true")
  -- a name only: no ServiceAccount made
  local m2, kinds = by_kind(app { name = "web", image = IMAGE, service_account = "runner" })
  t.eq(kinds[1], "Service")
  t.eq(m2.Deployment.spec.template.spec.serviceAccountName, "runner")
end)

t.case("false turns parts off; one replica gets no PDB", function()
  local _, kinds = by_kind(app { name = "web", image = IMAGE, replicas = 1, hpa = false })
  t.eq(kinds, { "Service", "Deployment" })
  local m = by_kind(app { name = "web", image = IMAGE, probes = false, resources = false })
  local c = m.Deployment.spec.template.spec.containers[1]
  t.eq({ c.readinessProbe, c.livenessProbe, c.startupProbe, c.resources }, {})
end)

t.case("encodes to the JSON Kubernetes expects (arrays stay arrays)", function()
  local m = by_kind(app { name = "web", image = IMAGE, args = { "--port", "8000" } })
  local text = json.encode(m.Deployment)
  t.match(text, '"containers":%[{')
  t.match(text, '"args":%["%-%-port","8000"%]')
end)

t.cases("bad options are named", {
  { { image = IMAGE }, "option 'name' is required" },
  { { name = "Web_1", image = IMAGE }, "name 'Web_1' is not a valid Kubernetes name" },
  { { name = "web", image = "acme/a..b" }, "image 'acme/a..b' is not a valid image reference" },
  { { name = "web", image = IMAGE, port = 70000 }, "port 70000 is out of range" },
  { { name = "web", image = IMAGE, hpa = { min = 5, max = 2 } }, "hpa needs 1 <= min <= max" },
  { { name = "web", image = IMAGE, env = { X = { nope = 1 } } }, "env 'X' must be" },
  { { name = "web", image = IMAGE, replicaz = 3 }, "replicaz" },
  { { name = "web", image = IMAGE, pdb = { max_unavailable = 1, min_available = 1 } }, "not both" },
}, function(row)
  t.raises(function() app(row[1]) end, "invalid_argument", row[2])
end)
