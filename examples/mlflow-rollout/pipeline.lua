-- A model promoted in MLflow goes to production: resolve the models:/ URI in the registry ->
-- build -> push -> set image on the model server's Deployment -> hoist's rollout tracking ->
-- health checks -> readiness -> 5 sample predictions -> deployed digest, target and time
-- written back as model-version tags. Any failure on the way (an image the cluster cannot pull,
-- a crash loop, readiness never reached, failing predictions, a partial rollout) undoes the
-- Deployment to its previous revision (`kubectl rollout undo` semantics, journaled before the
-- change). Every run ends with a notification (hoist.notify) on success, failure and rollback,
-- the failure's reason and evidence included: `webhook` (generic JSON), or the notify*
-- parameters for Slack and Teams.
--
--   MLFLOW_TRACKING_URI=https://mlflow.example MLFLOW_TRACKING_TOKEN=... \
--   MLFLOW_ROLLOUT_WEBHOOK=https://hooks.example/abc HOIST_NOTIFY_SLACK=https://hooks.slack.com/services/... \
--   hoist run examples/mlflow-rollout/pipeline.lua --set model=models:/churn@champion \
--     --set registry=127.0.0.1:5000/models/churn
--
-- A version the registry has not finished registering, or whose source run failed, is refused
-- before the build. `--set model_version=4` instead of `model` skips the registry.
local pipeline, k8s, verify, mlflow, notify = hoist.pipeline, hoist.k8s, hoist.verify, hoist.mlflow, hoist.notify
local util = require "hoist.util"
require "hoist.k8s.undo" -- defines the rollback actions k8s.rollout_undo and k8s.restore

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")

local function mlflow_client(p)
  return mlflow.client { tracking_uri = p.tracking_uri, token = p.mlflow_token }
end

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
  version = "1.1.0",
  requires = ">=0.1",
  description = "Roll a model version out to its Kubernetes model server; undo on any failure; notify",
  -- Once per run, after the undo: what was rolled out, or why not and what was undone.
  notify = function(p)
    return notify.from_params(p, { webhook = p.webhook, verify_stages = { "rollout", "health", "readiness", "predictions" },
      facts = function(result)
        local o = result.outputs
        local model = o.resolve or {}
        return { target = "kubernetes", service = p.name, model = model.uri, model_version = model.version or p.model_version,
                 image = o.build and o.build.image, digest = o.push and o.push.digest, url = o.health and o.health.url,
                 revision = o.rollout and o.rollout.revision, predictions = o.predictions and o.predictions.predictions }
      end })
  end,
  params = notify.with_params {
    model = { type = "string", description = "The model to roll out, a models:/ URI: models:/churn@champion, models:/churn/Production, models:/churn/3" },
    model_version = { type = "string", pattern = "[%w][%w%._%-]*", description = "The model version, without the registry (instead of model)" },
    tracking_uri = { type = "string", env = "MLFLOW_TRACKING_URI", description = "MLflow tracking server (Basic auth: MLFLOW_TRACKING_USERNAME/PASSWORD)" },
    mlflow_token = { type = "string", secret = true, env = "MLFLOW_TRACKING_TOKEN", description = "MLflow Bearer token" },
    registration_wait = { type = "number", default = 0, description = "Seconds to wait for a version MLflow is still registering (0: refuse it)" },
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
    { name = "resolve", run = function(ctx)
      local p = ctx.params
      if (p.model == nil) == (p.model_version == nil) then
        hoist.error { code = "invalid_argument", message = "give model (a models:/ URI) or model_version, one of them" }
      end
      if not p.model then return { version = p.model_version, image_tag = p.model_version, labels = {} } end
      -- refuses a version not READY or whose run failed: nothing is built then
      local m = mlflow_client(p):resolve { model = p.model, wait = p.registration_wait }
      ctx:summary("Model", { ("%s: version %s of %s%s"):format(m.uri, m.version, m.name, m.run_id ~= "" and (", run " .. m.run_id) or "") })
      return { name = m.name, version = m.version, uri = m.uri, run_id = m.run_id, image_tag = m.image_tag, labels = m.labels }
    end },
    { name = "build", run = function(ctx)
      local p, model = ctx.params, ctx.outputs.resolve
      local image = p.registry .. ":" .. model.image_tag
      local args = { MODEL_VERSION = model.version }
      for k, v in pairs(p.build_args) do args[k] = v end
      hoist.docker.build { context = p.context, tags = { image }, build_args = args, labels = model.labels }
      return { image = image }
    end },
    { name = "push", run = function(ctx)
      return { digest = hoist.docker.push(ctx.outputs.build.image).digest }
    end },
    { name = "deploy", run = function(ctx)
      local p = ctx.params
      local image = (p.pull_registry or p.registry) .. ":" .. ctx.outputs.resolve.image_tag
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
      local p, base, version = ctx.params, ctx.outputs.health.url, ctx.outputs.resolve.version
      local checks = {}
      for i = 1, 5 do
        checks[i] = { name = "prediction " .. i, url = base .. p.predict_path, method = "POST",
                      json = { features = { i, i * 2, i * 3 } }, retries = 2, interval = 0.5,
                      expect_json = function(doc)
                        return doc.model_version == version and type(doc.prediction) == "number",
                          ("model_version %s, prediction %s"):format(tostring(doc.model_version), tostring(doc.prediction))
                      end }
      end
      local r = verify.all { checks = checks }
      return { predictions = #r.results }
    end },
    { name = "record", run = function(ctx)
      -- the registry shows what serves: digest, target, time and run as model-version tags. The
      -- model serves already, so a registry that refuses the write is a warning, not an undo.
      local p, model = ctx.params, ctx.outputs.resolve
      if not model.uri then return { recorded = false } end
      local ns = client_of { kubeconfig = p.kubeconfig, context = p.context_name, namespace = p.namespace }.namespace
      local ok, tags = util.try(function()
        return mlflow_client(p):mark_deployed { name = model.name, version = model.version, digest = ctx.outputs.push.digest,
                                                target = ("kubernetes/%s/%s"):format(ns, p.name), run = ctx.run.id }
      end)
      if not ok then
        ctx.log.warn("the deployed tags were not written to MLflow: " .. tostring(tags))
        ctx:summary("Model", { "registry not updated: " .. tostring(tags) })
        return { recorded = false, error = tostring(tags) }
      end
      return { recorded = true, tags = tags }
    end },
  },
}
