-- examples/mlflow-rollout started by MLflow: `hoist serve` with the example's serve.lua gets a
-- signed MLflow OSS 3 `model_version_alias.created` delivery (alias champion set on churn
-- version 2), answers 202, runs pipeline.lua for models:/churn/2 against the MLflow registry
-- stand-in (tests/servers/mlflow_server.py) and the Kubernetes emulator of tests/env, and
-- records the run succeeded; the Service then answers version 2 and the registry's version
-- carries the deployed digest. Another alias is ignored, a replay refused. Skips without the
-- emulator (fails when CI=true); run under flock /tmp/hoist-docker.lock.
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
local MLFLOW_TOKEN = "mlflow-token-for-the-serve-example"

local function alias_event(alias, version)
  return hoist.json.encode { entity = "model_version_alias", action = "created", timestamp = "2026-01-01T00:00:00+00:00",
                             data = { name = "churn", alias = alias, version = version } }
end

t.case("mlflow-rollout started by a signed MLflow model_version_alias.created delivery", function()
  support.need_docker("mlflow-rollout via hoist serve")
  cluster.need()
  local kube = hoist.k8s.client { namespace = NS }
  kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  local dir = support.tmpdir("hoist-serve-mlflow")
  local state = dir .. "/state"
  local registry = hoist.spawn(function()
    return hoist.exec { "python3", support.root .. "/tests/servers/mlflow_server.py", "--port-file", dir .. "/mlflow-port",
                        "--token", MLFLOW_TOKEN .. ":EDIT", "--max-time", "900", timeout = 950 }
  end)
  for _ = 1, 100 do
    if support.read(dir .. "/mlflow-port") then break end
    hoist.sleep(0.1)
  end
  local mlflow = "http://127.0.0.1:" .. support.must_read(dir .. "/mlflow-port"):match("%d+")
  local server = ss.start { config = support.root .. "/examples/mlflow-rollout/serve.lua", state = state,
                            env = { MLFLOW_WEBHOOK_SECRET = SECRET, ROLLOUT_REGISTRY = REPO, ROLLOUT_NAMESPACE = NS,
                                    ROLLOUT_PREDICT_PATH = "/cgi-bin/predict", MLFLOW_TRACKING_URI = mlflow,
                                    MLFLOW_TRACKING_TOKEN = MLFLOW_TOKEN } }
  local ok, err = pcall(function()
    t.eq(ss.send(server, "mlflow", alias_event("challenger", "3"), { secret = SECRET }).status, 200, "another alias is ignored")
    local r, h = ss.send(server, "mlflow", alias_event("champion", "2"), { secret = SECRET })
    t.eq(r.status, 202, r.body)
    t.eq(r.json.service, "model-churn")
    t.eq(ss.send(server, "mlflow", alias_event("champion", "2"), { secret = SECRET, delivery = h["X-MLflow-Delivery-Id"],
                                                                  timestamp = tonumber(h["X-MLflow-Timestamp"]) }).status, 409)
    local finished = ss.wait_finished(state, 1, 600)
    t.eq(#finished, 1)
    t.eq(finished[1].outcome, "succeeded", hoist.json.encode(finished[1]))
    local runs = hoist.pipeline.runs { state_dir = state }
    t.eq(runs[1].id, finished[1].run)
    t.eq(runs[1].status, "succeeded")
    local svc = kube:get { kind = "Service", name = "model" }
    local v = hoist.http.get("http://" .. svc.metadata.annotations["hoist.dev/emulator-address"] .. "/version")
    t.eq(v.body:gsub("%s+$", ""), "2")
    local mv = hoist.mlflow.client { tracking_uri = mlflow, token = MLFLOW_TOKEN }:get_model_version { name = "churn", version = "2" }
    local tags = mv.tags or {}
    t.match(tags["hoist.deployed.digest"] or "", "^sha256:", "the registry shows what serves")
    t.eq(tags["hoist.deployed.run"], finished[1].run)
  end)
  local result = ss.stop(server)
  registry:cancel()
  kube:delete { kind = "Namespace", name = NS, missing_ok = true }
  if not ok then error(err, 0) end
  t.no_match(result.stderr, SECRET)
  t.no_match(result.stderr, MLFLOW_TOKEN)
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 900 })
