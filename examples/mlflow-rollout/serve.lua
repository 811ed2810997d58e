-- hoist serve config for this example: the alias "champion" set on a version of a registered
-- model in MLflow (OSS 3 registry webhook, event model_version_alias.created) rolls that
-- version out with pipeline.lua, which resolves it in the registry (models:/<name>/<version>:
-- refused unless READY), and writes what it deployed back as the version's tags. docs/serve.md.
--
--   export MLFLOW_WEBHOOK_SECRET=...      # the secret given to MLflow's create_webhook
--   export MLFLOW_TRACKING_URI=https://mlflow.example.com MLFLOW_TRACKING_TOKEN=...
--   export ROLLOUT_REGISTRY=myacr.azurecr.io/models/churn
--   hoist serve --config examples/mlflow-rollout/serve.lua --listen 0.0.0.0:8443 \
--     --tls-cert cert.pem --tls-key key.pem
--
-- and in MLflow: client.create_webhook(name="hoist", url="https://<host>:8443/hooks/mlflow",
--   events=[WebhookEvent("model_version_alias", "created")], secret=<the same secret>)
local E = os.getenv
return {
  routes = {
    { name = "champion", source = "mlflow", secret_env = "MLFLOW_WEBHOOK_SECRET",
      events = { "model_version_alias.created" },
      when = function(e) return e.payload.data.alias == (E("ROLLOUT_ALIAS") or "champion") end,
      run = function(e)
        local v = e.payload.data
        -- the version the alias was set on, not the alias: a later move of the alias is another delivery
        local params = { model = hoist.mlflow.uri { name = v.name, version = v.version }, registry = E("ROLLOUT_REGISTRY"),
                         namespace = E("ROLLOUT_NAMESPACE"), predict_path = E("ROLLOUT_PREDICT_PATH") }
        -- one rollout of a model at a time: the service is the registered model
        return { service = "model-" .. v.name:gsub("[^%w_.%-]", "-"), pipeline = "pipeline.lua", params = params }
      end },
  },
}
