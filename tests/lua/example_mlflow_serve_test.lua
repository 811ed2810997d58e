-- examples/mlflow-rollout started by MLflow: `hoist serve` with the example's serve.lua gets a
-- signed MLflow OSS 3 `model_version_alias.created` delivery (alias champion, version 1),
-- answers 202, runs pipeline.lua for that version against the Kubernetes emulator of
-- tests/env, and records the run succeeded; the Service then answers version 1. Another
-- alias is ignored, a replay refused. Skips without the emulator (fails when CI=true); run
-- under flock /tmp/hoist-docker.lock.
local t = require "hoist.test"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local ss = dofile(here .. "/serve_support.lua")
local cluster = dofile(here .. "/k8s_cluster.lua")

local E = os.getenv
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-serve-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/" .. NS .. "/model"
local SECRET = "mlflow-webhook-secret-for-the-example"

local function alias_event(alias, version)
  return hoist.json.encode { entity = "model_version_alias", action = "created", timestamp = "2026-01-01T00:00:00+00:00",
                             data = { name = "fraud", alias = alias, version = version } }
end

t.case("mlflow-rollout started by a signed MLflow model_version_alias.created delivery", function()
  support.need_docker("mlflow-rollout via hoist serve")
  cluster.need()
  local kube = hoist.k8s.client { namespace = NS }
  kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  local dir = support.tmpdir("hoist-serve-mlflow")
  local state = dir .. "/state"
  local server = ss.start { config = support.root .. "/examples/mlflow-rollout/serve.lua", state = state,
                            env = { MLFLOW_WEBHOOK_SECRET = SECRET, ROLLOUT_REGISTRY = REPO, ROLLOUT_NAMESPACE = NS,
                                    ROLLOUT_PREDICT_PATH = "/cgi-bin/predict" } }
  local ok, err = pcall(function()
    t.eq(ss.send(server, "mlflow", alias_event("challenger", "1"), { secret = SECRET }).status, 200, "another alias is ignored")
    local r, h = ss.send(server, "mlflow", alias_event("champion", "1"), { secret = SECRET })
    t.eq(r.status, 202, r.body)
    t.eq(r.json.service, "model-fraud")
    t.eq(ss.send(server, "mlflow", alias_event("champion", "1"), { secret = SECRET, delivery = h["X-MLflow-Delivery-Id"],
                                                                  timestamp = tonumber(h["X-MLflow-Timestamp"]) }).status, 409)
    local finished = ss.wait_finished(state, 1, 600)
    t.eq(#finished, 1)
    t.eq(finished[1].outcome, "succeeded", hoist.json.encode(finished[1]))
    local runs = hoist.pipeline.runs { state_dir = state }
    t.eq(runs[1].id, finished[1].run)
    t.eq(runs[1].status, "succeeded")
    local svc = kube:get { kind = "Service", name = "model" }
    local v = hoist.http.get("http://" .. svc.metadata.annotations["hoist.dev/emulator-address"] .. "/version")
    t.eq(v.body:gsub("%s+$", ""), "1")
  end)
  local result = ss.stop(server)
  kube:delete { kind = "Namespace", name = NS, missing_ok = true }
  if not ok then error(err, 0) end
  t.no_match(result.stderr, SECRET)
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 900 })
