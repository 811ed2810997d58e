-- examples/mlflow-rollout end to end against the Kubernetes emulator of tests/env: version 1
-- deployed, version 2 rolled out and notified, then an image the cluster cannot pull, a crash
-- loop, readiness never reached and failing predictions, each undone to version 2 with its
-- reason and notified with it (tests/servers/notify_receiver.py), while a background prober
-- asks the Service for its version all along and counts failed requests (the goal: none).
-- Then the model given as a models:/ URI, resolved in a stand-in MLflow
-- (tests/servers/mlflow_server.py): rolled out with the registry's version and labels and its
-- deployed tags written back; a version not READY or from a failed run refused before the
-- build. Prints how long each failure took until only version 2 answered again. Skips without
-- the emulator (fails when CI=true); run under flock /tmp/hoist-docker.lock.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local E = os.getenv
local EXAMPLE = support.root .. "/examples/mlflow-rollout/pipeline.lua"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-mlflow-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/" .. NS .. "/model"

local cluster = dofile(support.here .. "/k8s_cluster.lua")
local function need_cluster()
  support.need_docker("mlflow-rollout example test")
  cluster.need()
end

local state = {}
local MLFLOW_TOKEN, MLFLOW_READ_TOKEN = "hoist-mlflow-example-4d2e8b", "hoist-mlflow-example-read-93c1f0"

local function setup()
  need_cluster()
  if state.kube then return state end
  state.kube = hoist.k8s.client { namespace = NS }
  state.kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  local dir = support.tmpdir("hoist-mlflow")
  state.dir = dir
  state.receiver = hoist.spawn(function()
    return hoist.exec { "python3", support.root .. "/tests/servers/notify_receiver.py", "--port-file", dir .. "/port",
                        "--max-time", "1800", timeout = 1900 }
  end)
  for _ = 1, 100 do
    if support.read(dir .. "/port") then break end
    hoist.sleep(0.1)
  end
  state.receiver_url = "http://127.0.0.1:" .. support.read(dir .. "/port"):match("%d+")
  state.hook = state.receiver_url .. "/hook/mlflow"
  state.registry_task = hoist.spawn(function()
    return hoist.exec { "python3", support.root .. "/tests/servers/mlflow_server.py", "--port-file", dir .. "/mlflow-port",
                        "--token", MLFLOW_TOKEN .. ":EDIT", "--token", MLFLOW_READ_TOKEN .. ":READ", "--max-time", "1800", timeout = 1900 }
  end)
  for _ = 1, 100 do
    if support.read(dir .. "/mlflow-port") then break end
    hoist.sleep(0.1)
  end
  state.mlflow = "http://127.0.0.1:" .. support.read(dir .. "/mlflow-port"):match("%d+")
  return state
end

-- The notifications the receiver got at `path` (the webhook's: hoist.notify/v1 documents);
-- every one it got (the Slack and Teams ones too) passed its checks of the documented shapes.
local function notifications(path)
  local out = {}
  for _, q in ipairs(hoist.http.get(state.receiver_url .. "/_requests").json) do
    t.eq(q.problems, {}, "the receiver's checks of " .. q.path)
    if q.path == (path or "/hook/mlflow") then out[#out + 1] = q.json end
  end
  return out
end

local function run(version, extra)
  local params = { model_version = version, registry = REPO, namespace = NS, predict_path = "/cgi-bin/predict",
                   webhook = state.hook, notify_slack = { state.receiver_url .. "/slack/mlflow" },
                   notify_teams = { state.receiver_url .. "/teams/mlflow" }, tracking_uri = state.mlflow,
                   mlflow_token = MLFLOW_TOKEN }
  for k, v in pairs(extra or {}) do params[k] = v end
  local def = dofile(EXAMPLE)
  local r = hoist.pipeline.run(def, params, { raise = false, quiet = true })
  return r
end

t.case("mlflow-rollout: version 1 is deployed, version 2 rolled out, checked and notified", function()
  local s = setup()
  local r1 = run("1")
  t.eq(r1.status, "succeeded", r1.error and r1.error.message)
  local svc = s.kube:get { kind = "Service", name = "model" }
  s.url = "http://" .. svc.metadata.annotations["hoist.dev/emulator-address"]
  s.prober = support.prober(s.url .. "/version")
  local since = hoist.now()
  local r2 = run("2")
  t.eq(r2.status, "succeeded", r2.error and r2.error.message)
  t.eq(r2.outputs.predictions.predictions, 5)
  local d = s.kube:get { kind = "Deployment", name = "model" }
  t.eq(d.spec.replicas, 3)
  t.eq(d.spec.template.spec.terminationGracePeriodSeconds, 30)
  t.eq(d.spec.strategy.rollingUpdate.maxUnavailable, 0)
  local hpa = s.kube:get { kind = "HorizontalPodAutoscaler", name = "model" }
  t.eq({ hpa.spec.minReplicas, hpa.spec.maxReplicas }, { 3, 10 })
  local sent = notifications()
  t.eq(#sent, 2, "one notification per good run")
  t.eq({ sent[2].event, sent[2].run, sent[2].facts.model_version, sent[2].facts.predictions }, { "success", r2.run, "2", 5 })
  t.eq(sent[2].image, REPO .. ":2")
  t.match(sent[2].digest, "^sha256:")
  local events = support.read(r2.dir and (r2.dir .. "/events.jsonl") or "/dev/null") or ""
  t.no_match(events, s.hook)
  local n = s.prober:failures(since)
  print(("prober: %d failed requests during the rollout 1 -> 2"):format(n))
  t.eq(n, 0)
end, { timeout = 600 })

local broken = {
  { name = "image pull failure", version = "3-pull", params = { pull_registry = REPO .. "-typo" }, reason = "ImagePull", stage = "rollout" },
  { name = "crash loop", version = "3-crash", params = { build_args = { MODE = "crash" } }, reason = "crashed and was restarted %d+ times %(last exit code 3", stage = "rollout" },
  { name = "readiness never reached", version = "3-unready", params = { build_args = { MODE = "unready" }, ready_timeout = 8 },
    reason = "not ready after 8s", stage = "rollout" },
  { name = "failing predictions", version = "3-badpred", params = { build_args = { MODE = "bad-predictions" } },
    reason = "status 500", stage = "predictions" },
}
for _, row in ipairs(broken) do t.case("mlflow-rollout: a broken release is undone to version 2 with its reason [" .. row.name .. "]", function()
  local s = setup()
  if not s.prober then t.skip("the good rollout did not run first") end
  local since = hoist.now()
  local r = run(row.version, row.params)
  local ended = hoist.now()
  t.eq(r.status, "rolled_back", r.error and r.error.message)
  local failed
  for _, st in ipairs(r.stages) do if st.status == "failed" then failed = st.name end end
  t.eq(failed, row.stage)
  t.match(r.error.message, row.reason)
  t.eq(r.rolled_back, { "k8s.rollout_undo (deploy)" })
  -- notified with the error's details: the failing stage, the reason, what was undone
  local sent = notifications()
  local last = sent[#sent]
  t.eq({ last.event, last.status, last.run, last.error.stage }, { "rollback", "rolled_back", r.run, row.stage })
  t.match(last.error.message, row.reason)
  t.ok(last.error.evidence ~= nil, "the evidence")
  t.eq(last.rolled_back, { "k8s.rollout_undo (deploy)" })
  t.eq(last.verify.status, "failed")
  local slack = notifications("/slack/mlflow")
  t.match(slack[#slack].text, "failed and was rolled back")
  t.match(hoist.json.encode(slack[#slack].blocks), "k8s.rollout_undo %(deploy%)")
  t.eq(#notifications("/teams/mlflow"), #slack, "Teams told as often as Slack")
  -- the undo waited until version 2 served again: the run does not end before that
  local d = s.kube:get { kind = "Deployment", name = "model" }
  t.eq(d.spec.template.spec.containers[1].image, REPO .. ":2")
  local c = hoist.k8s.classify(d)
  t.eq(c.verdict, "done", "rolled out when the run ended: " .. tostring(c.message))
  hoist.sleep(1)
  local took = s.prober:back_after(since, "2")
  local n, first = s.prober:failures(since)
  print(("%s: run took %.1fs; only version 2 answered again %.1fs after the run started (%.1fs before it ended); %d failed requests%s"):format(
    row.name, ended - since, took, ended - since - took, n, first and (" (first: " .. first .. ")") or ""))
  t.eq(n, 0)
end, { timeout = 300 }) end

t.case("mlflow-rollout: model = models:/churn@champion is resolved, rolled out with its labels, and the registry shows what serves", function()
  local s = setup()
  if not s.prober then t.skip("the good rollout did not run first") end
  local since = hoist.now()
  local r = run(nil, { model = "models:/churn@champion" })
  t.eq(r.status, "succeeded", r.error and r.error.message)
  t.eq(r.outputs.resolve.version, "2")
  t.eq(r.outputs.resolve.run_id, "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d2")
  t.eq(r.outputs.build.image, REPO .. ":2")
  local labels = hoist.docker.inspect { name = REPO .. ":2", type = "image" }.Config.Labels
  t.eq(labels["dev.hoist.mlflow.model"], "churn")
  t.eq(labels["dev.hoist.mlflow.version"], "2")
  t.eq(labels["dev.hoist.mlflow.run-id"], "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d2")
  t.eq(r.outputs.predictions.predictions, 5, "the model server answers as version 2")
  t.eq(r.outputs.record.recorded, true)
  local v = hoist.mlflow.client { tracking_uri = s.mlflow, token = MLFLOW_TOKEN }:get_model_version { name = "churn", version = "2" }
  t.eq(v.tags["hoist.deployed.digest"], r.outputs.push.digest)
  t.match(v.tags["hoist.deployed.digest"], "^sha256:%x+$")
  t.eq(v.tags["hoist.deployed.target"], "kubernetes/" .. NS .. "/model")
  t.eq(v.tags["hoist.deployed.run"], r.run)
  t.match(v.tags["hoist.deployed.at"], "^%d%d%d%d%-%d%d%-%d%dT")
  t.eq(s.prober:failures(since), 0)
  t.no_match(support.read(r.dir and (r.dir .. "/events.jsonl") or "/dev/null") or "", MLFLOW_TOKEN)
end, { timeout = 300 })

t.case("mlflow-rollout: a registry that refuses the deployed tags is a warning, not an undo", function()
  local s = setup()
  if not s.prober then t.skip("the good rollout did not run first") end
  local r = run(nil, { model = "models:/churn/Production", mlflow_token = MLFLOW_READ_TOKEN })
  t.eq(r.status, "succeeded", r.error and r.error.message)
  t.eq(r.outputs.resolve.version, "2")
  t.eq(r.outputs.record.recorded, false)
  t.match(r.outputs.record.error, "forbidden: mlflow: set tag hoist%.deployed%.digest of model version churn/2: Permission denied %(HTTP 403")
  t.eq(r.rolled_back, {})
  local text = {}
  for _, sec in ipairs(r.sections or {}) do
    for _, l in ipairs(type(sec.lines) == "table" and sec.lines or { sec.lines }) do text[#text + 1] = tostring(l) end
  end
  t.match(table.concat(text, "\n"), "registry not updated: forbidden")
end, { timeout = 300 })

t.cases("mlflow-rollout: a model version that cannot be deployed is refused before the build", {
  { name = "registration pending", model = "models:/churn@next", err = "PENDING_REGISTRATION" },
  { name = "registration still pending after registration_wait", model = "models:/churn@next", wait = 0.5,
    err = "PENDING_REGISTRATION%), not READY after waiting 0%.5s" },
  { name = "registration failed", model = "models:/churn/5", err = "failed to register %(FAILED_REGISTRATION%): Failed to copy" },
  { name = "source run failed", model = "models:/churn@failedrun", err = "ended FAILED" },
  { name = "unknown alias", model = "models:/churn@nope", err = "Registered model alias nope not found", code = "not_found" },
  { name = "both model and model_version", model = "models:/churn@champion", version = "2", err = "give model", code = "invalid_argument" },
}, function(row)
  setup()
  local r = run(row.version, { model = row.model, registration_wait = row.wait })
  t.eq(r.status, "failed", r.error and r.error.message)
  t.eq(r.error.code, row.code or "conflict")
  t.match(r.error.message, row.err)
  for _, st in ipairs(r.stages) do
    if st.name == "build" then t.ok(st.status ~= "succeeded" and st.status ~= "failed", "build did not run: " .. tostring(st.status)) end
  end
  t.eq(r.rolled_back or {}, {})
end)

-- Issue 15 §5: on AKS the cluster's credentials come from ARM (aks_cluster), as the workflow's
-- az aks get-credentials, with no kubeconfig on the runner; kubectl set image and set env are
-- one patch, one rollout.
t.case("mlflow-rollout: on AKS (aks_cluster, no kubeconfig) with env set in the same rollout as the image", function()
  local s = setup()
  if not s.prober then t.skip("the good rollout did not run first") end
  if not E("HOIST_TEST_AZURE_CREDENTIALS") then
    if E("CI") == "true" then error("the Azure emulator is not up (tests/env)") end
    t.skip("the Azure emulator is not up (tests/env)")
  end
  local aks = support.aks_cluster(NS .. "-rg", "aks-" .. NS)
  local rg, cluster = aks.rg, aks.cluster
  local before = s.kube:get { kind = "Deployment", name = "model" }
  local since = hoist.now()
  local ok, err = pcall(function()
    local r = support.run_hoist({ "run", EXAMPLE, "--set", "model_version=2", "--set", "registry=" .. REPO,
      "--set", "namespace=" .. NS, "--set", "predict_path=/cgi-bin/predict", "--set", "aks_resource_group=" .. rg,
      "--set", "aks_cluster=" .. cluster, "--set", "aks_admin=true", "--set", "env=MODEL_FLAVOR=aks-" .. NS },
      { timeout = 400, env = { KUBECONFIG = "", AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS"),
                               HTTPS_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost" } })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout .. r.stderr, "listClusterAdminCredential")
    local d = s.kube:get { kind = "Deployment", name = "model" }
    t.eq(d.metadata.generation, before.metadata.generation + 1, "image and env: one change, one rollout")
    local env = {}
    for _, e in ipairs(d.spec.template.spec.containers[1].env or {}) do env[e.name] = e.value end
    t.eq(env.MODEL_FLAVOR, "aks-" .. NS)
    t.eq(s.prober:failures(since), 0)
  end)
  aks.drop()
  if not ok then error(err, 0) end
end, { timeout = 500 })

t.case("mlflow-rollout: clean up", function()
  if state.prober then state.prober:stop() end
  if state.receiver then state.receiver:cancel() end
  if state.registry_task then state.registry_task:cancel() end
  if state.kube then state.kube:delete { kind = "Namespace", name = NS, missing_ok = true } end
  if state.dir then hoist.fs.remove(state.dir, { recursive = true }) end
end)
