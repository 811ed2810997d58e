-- A model promoted in MLflow goes to production: build -> push -> set image on the model
-- server's Deployment -> hoist's rollout tracking -> health checks -> readiness -> 5 sample
-- predictions. Any failure on the way (an image the cluster cannot pull, a crash loop,
-- readiness never reached, failing predictions, a partial rollout) undoes the Deployment to
-- its previous revision (`kubectl rollout undo` semantics, journaled before the change).
-- Every run ends with a notification (hoist.notify) on success, failure and rollback, the
-- failure's reason and evidence included: `webhook` (generic JSON), or the notify* parameters
-- for Slack and Teams.
--
--   MLFLOW_ROLLOUT_WEBHOOK=https://hooks.example/abc HOIST_NOTIFY_SLACK=https://hooks.slack.com/services/... \
--     hoist run examples/mlflow-rollout/pipeline.lua --set model_version=4 \
--     --set registry=127.0.0.1:5000/models/churn
--
-- The MLflow trigger itself comes later: here the run starts with the model version.
local pipeline, k8s, verify, notify = hoist.pipeline, hoist.k8s, hoist.verify, hoist.notify
require "hoist.k8s.undo" -- defines the rollback actions k8s.rollout_undo and k8s.restore

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")

local function client_of(p)
  return k8s.client { kubeconfig = p.kubeconfig, context = p.context, namespace = p.namespace }
end

-- The Service's base URL: `url`, else the emulator's address, else its LoadBalancer ingress.
local function service_url(c, p)
  return k8s.service_url { name = p.name, client = c, url = p.url }
    or hoist.error { code = "invalid_argument", message = "service " .. p.name .. " has no reachable address: set url" }
end

-- The reason and the evidence of a failed rollout, one line each, in the run's log.
local function print_evidence(err)
  local d = type(err) == "table" and err.details or {}
  if not d.reason then return end
  hoist.log.error(("rollout failed: %s"):format(d.reason), { reason = d.reason })
  for _, pod in ipairs(d.pods or {}) do
    for _, c in ipairs(pod.containers or {}) do
      hoist.log.error(("  pod %s (%s): %s %s %s, restarts %d"):format(pod.name, pod.phase or "?", c.name, c.state,
        c.detail or "", c.restarts or 0))
    end
  end
  for _, e in ipairs(d.events or {}) do
    hoist.log.error(("  event %s %s %s: %s"):format(e.type or "", e.object or "", e.reason or "", e.message or ""))
  end
  for where, text in pairs(d.logs or {}) do hoist.log.error(("  logs of %s:\n%s"):format(where, text)) end
end

return pipeline.define {
  name = "mlflow-rollout",
  version = "1.0.0",
  requires = ">=0.1",
  description = "Roll a model version out to its Kubernetes model server; undo on any failure; notify",
  -- Once per run, after the undo: what was rolled out, or why not and what was undone.
  notify = function(p)
    return notify.from_params(p, { webhook = p.webhook, verify_stages = { "rollout", "health", "readiness", "predictions" },
      facts = function(result)
        local o = result.outputs
        return { target = "kubernetes", service = p.name, model_version = p.model_version,
                 image = o.build and o.build.image, digest = o.push and o.push.digest, url = o.health and o.health.url,
                 revision = o.rollout and o.rollout.revision, predictions = o.predictions and o.predictions.predictions }
      end })
  end,
  params = notify.with_params {
    model_version = { type = "string", required = true, pattern = "[%w][%w%._%-]*", description = "The model version promoted in MLflow" },
    registry = { type = "string", required = true, description = "Repository of the model server image (no tag)" },
    context = { type = "string", default = here .. "/model", description = "Build context of the model server" },
    build_args = { type = "map", default = {}, description = "More docker build args" },
    pull_registry = { type = "string", description = "Repository the cluster pulls from, when not the one pushed to" },
    name = { type = "string", default = "model", description = "Deployment and Service name" },
    namespace = { type = "string", description = "Namespace (default: the kubeconfig context's)" },
    kubeconfig = { type = "string", description = "Kubeconfig file(s) (default: $KUBECONFIG)" },
    context_name = { type = "string", description = "Kubeconfig context" },
    replicas = { type = "number", default = 3, description = "Replicas (the HPA scales 3-10)" },
    ready_timeout = { type = "number", default = 30, description = "Seconds a running pod may stay unready" },
    predict_path = { type = "string", default = "/predict", description = "The model server's POST scoring path" },
    url = { type = "string", description = "The Service's base URL (default: found from the Service)" },
    webhook = { type = "string", secret = true, env = "MLFLOW_ROLLOUT_WEBHOOK",
                description = "Notification URL: the run summary as JSON (hoist.notify/v1) on success, failure and rollback" },
  },
  stages = {
    { name = "build", run = function(ctx)
      local p = ctx.params
      local image = p.registry .. ":" .. p.model_version
      local args = { MODEL_VERSION = p.model_version }
      for k, v in pairs(p.build_args) do args[k] = v end
      hoist.docker.build { context = p.context, tags = { image }, build_args = args }
      return { image = image }
    end },
    { name = "push", run = function(ctx)
      return { digest = hoist.docker.push(ctx.outputs.build.image).digest }
    end },
    { name = "deploy", run = function(ctx)
      local p = ctx.params
      local image = (p.pull_registry or p.registry) .. ":" .. p.model_version
      local c = client_of { kubeconfig = p.kubeconfig, context = p.context_name, namespace = p.namespace }
      local ns = c.namespace
      local live = c:get { kind = "Deployment", name = p.name, missing_ok = true }
      local cc = { namespace = ns, kubeconfig = p.kubeconfig, context = p.context_name }
      if live then  -- kubectl set image, its undo journaled first
        local revision = tonumber(live.metadata.annotations["deployment.kubernetes.io/revision"])
        -- the undo waits until that revision serves again (up to 300 s), as the deploy targets' do
        ctx:on_rollback("k8s.rollout_undo", { namespace = ns, name = p.name, revision = revision, timeout = 300,
                                              kubeconfig = cc.kubeconfig, context = cc.context })
        c:patch { kind = "Deployment", name = p.name, type = "strategic",
                  patch = { spec = { template = { spec = { containers = { { name = "app", image = image } } } } } } }
        return { previous = live.spec.template.spec.containers[1].image, revision = revision }
      end
      local objects = k8s.app { name = p.name, image = image, replicas = p.replicas, port = 8000,
        probes = { path = "/healthz", startup = { periodSeconds = 1, failureThreshold = 60 },
                   readiness = { httpGet = { path = "/ready", port = "http" }, periodSeconds = 1 } },
        hpa = { min = p.replicas, max = 10, cpu = 70 }, grace = 30, resources = false }
      for _, o in ipairs(objects) do
        ctx:on_rollback("k8s.restore", { manifest = { apiVersion = o.apiVersion, kind = o.kind, metadata = { name = o.metadata.name, namespace = ns } },
                                         existed = false, namespace = ns, kubeconfig = cc.kubeconfig, context = cc.context })
      end
      k8s.apply(objects, { client = c })
      return {}
    end },
    { name = "rollout", run = function(ctx)
      local p = ctx.params
      local ok, r = pcall(k8s.rollout, { name = p.name, client = client_of { kubeconfig = p.kubeconfig, context = p.context_name,
                                         namespace = p.namespace }, timeout = 300, ready_timeout = p.ready_timeout })
      if not ok then print_evidence(r); error(r, 0) end
      ctx:summary("Rollout", { r.message .. (" (%.1fs)"):format(r.duration) })
      return { revision = r.revision }
    end },
    { name = "health", run = function(ctx)
      local c = client_of { kubeconfig = ctx.params.kubeconfig, context = ctx.params.context_name, namespace = ctx.params.namespace }
      local base = service_url(c, ctx.params)
      verify.http { url = base .. "/healthz", retries = 30, interval = 1, timeout = 5 }
      return { url = base }
    end },
    { name = "readiness", run = function(ctx)
      local p = ctx.params
      local c = client_of { kubeconfig = p.kubeconfig, context = p.context_name, namespace = p.namespace }
      local st = c:get { kind = "Deployment", name = p.name }.status or {}
      local want = p.replicas
      if (st.readyReplicas or 0) < want or (st.updatedReplicas or 0) < want then
        hoist.error { code = "rollout_failed", message = ("partial rollout of deployment %s: %d of %d ready, %d updated"):format(
          p.name, st.readyReplicas or 0, want, st.updatedReplicas or 0), details = { reason = "PartialRollout", status = st } }
      end
      return { ready = st.readyReplicas }
    end },
    { name = "predictions", run = function(ctx)
      local p, base = ctx.params, ctx.outputs.health.url
      local checks = {}
      for i = 1, 5 do
        checks[i] = { name = "prediction " .. i, url = base .. p.predict_path, method = "POST",
                      json = { features = { i, i * 2, i * 3 } }, retries = 2, interval = 0.5,
                      expect_json = function(doc)
                        return doc.model_version == p.model_version and type(doc.prediction) == "number",
                          ("model_version %s, prediction %s"):format(tostring(doc.model_version), tostring(doc.prediction))
                      end }
      end
      local r = verify.all { checks = checks }
      return { predictions = #r.results }
    end },
  },
}
