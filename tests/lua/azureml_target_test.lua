-- hoist.targets.azureml through container@1 and the CLI against the Azure emulator (Docker
-- under the emulator): a scoring app (busybox httpd, POST /cgi-bin/score answers {"version",
-- "input"}) deployed to a managed online endpoint of an existing workspace, pulled from the
-- token registry through a workspace connection holding the pull credential: --dry-run plans
-- and changes nothing; v1, then v2 through a canary, each checked with its sample request and
-- expected answer; a v3 whose answer is not the expected one rolled back (traffic on v2 again,
-- v3's deployment deleted); SIGTERM while v4's deployment is provisioned: exit 130, v2 serves,
-- v4 deleted; the endpoint key, the registry password and the client secret in no output and no
-- run file. Without the emulator: the contract and the option checks.
local t = require "hoist.test"
local web = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/appservice_support.lua")
local support = web.support

local E = os.getenv

t.case("the target keeps the contract and is shipped; bad options are named", function()
  local targets = require "hoist.targets"
  local target = require "hoist.targets.azureml"
  t.eq(targets.check("azureml", target), {})
  t.ok(targets.get("azureml"))
  local base = { service = "scorer", image = "r/a:1", resource_group = "g", workspace = "ws" }
  local function with(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  t.raises(function() target.deploy(with { canary = 100 }) end, "invalid_argument", "option 'canary' must be from 0 to 99, got 100")
  t.raises(function() target.deploy(with { instance_count = 0 }) end, "invalid_argument", "option 'instance_count' must be from 1 to 20")
  t.raises(function() target.deploy(with { workspace = false }) end, "invalid_argument", "workspace")
  t.raises(function() target.deploy(with { samples = "[1, 2]" }) end, "invalid_argument", "sample 1 must be {body, expect, method}")
  t.raises(function() target.deploy(with { samples = "/no/such/samples.json" }) end, "invalid_argument", "samples file /no/such/samples.json cannot be read")
  t.eq(require("hoist.targets.azure").name_problem("azureml", "9lives"),
    "must be 3-32 letters, digits and '-', beginning with a letter, ending with a letter or digit (Azure's rule for a azureml name), got \"9lives\"")
end)

local RUN = web.run_tag()
local NS = "Microsoft.MachineLearningServices"
local REG = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002"
local RG, WS, EP = "hoist-azureml-" .. RUN, "hoist-ws-" .. RUN, "hoist-ep-" .. RUN

-- The scoring app: busybox httpd; POST /cgi-bin/score answers {"version": ANSWER, "input": body}.
local function app_dir()
  local dir = support.tmpdir("hoist-azureml-app")
  hoist.fs.mkdir(dir .. "/www/cgi-bin")
  support.write(dir .. "/www/cgi-bin/score", '#!/bin/sh\necho "Content-Type: application/json"\necho ""\n'
    .. 'printf \'{"version": "%s", "input": %s}\' "$ANSWER" "$(head -c "${CONTENT_LENGTH:-0}")"\n')
  support.write(dir .. "/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG ANSWER=dev\nENV ANSWER=${ANSWER}\n"
    .. "COPY www /www\nRUN chmod 0755 /www/cgi-bin/score && echo ok > /www/health\nEXPOSE 8080\n"
    .. 'CMD ["sh", "-c", "echo scoring server $ANSWER; exec httpd -f -v -p 8080 -h /www"]\n')
  return dir
end

t.case("azureml through container@1: v1, v2 by canary, a wrong answer rolled back, SIGTERM, dry-run, no secret shown", function()
  web.need_emulator("Azure ML target test")
  local S = web.session("hoist-azureml")
  local cred = S.credential
  local ws_id = hoist.azure.resource_id(S.subscription, RG, NS .. "/workspaces", WS)
  local ep_id = ws_id .. "/onlineEndpoints/" .. EP
  local function arm(method, path, body)
    return hoist.azure.request { method = method, path = path, body = body, credential = cred, api_version = "2025-09-01",
                                 poll_interval = 0.5, safe = method == "POST" or nil }.body
  end
  local dir = app_dir()
  local env = {}
  for k, v in pairs(S.env) do env[k] = v end
  env.HOIST_TRIVY, env.HOIST_TRIVY_FIXTURE = support.root .. "/tests/tools/trivy", support.root .. "/tests/fixtures/trivy/hoist-clean.json"
  local function params(version, answer)
    return { target = "azureml", image = REG .. "/hoist-azureml-" .. RUN .. "/scorer", tag = version, context = dir,
             build_args = ("BASE_IMAGE=%s,ANSWER=%s"):format(E("HOIST_TEST_BASE_IMAGE"), answer or version),
             name = EP, resource_group = RG, workspace = WS, scoring_path = "/cgi-bin/score", deployment_timeout = 20,
             samples = hoist.json.encode { { body = { rows = { 1, 2 } }, expect = { version = version, input = { rows = { 1, 2 } } } } },
             registry_username = S.auth.username, registry_password = S.auth.password,
             pull_username = S.auth.username, pull_password = S.auth.password, lock_timeout = 0, verify_timeout = 10 }
  end
  local function run(version, answer, flag, extra_env)
    local argv = support.run_argv("container@1", S.state, params(version, answer))
    if flag then argv[#argv + 1] = flag end
    table.remove(argv, 1)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra_env or {}) do e[k] = v end
    local r = support.run_hoist(argv, { env = e, timeout = 600 })
    S.outputs[#S.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
    return r, (r.stdout or "") .. (r.stderr or "")
  end
  -- what the endpoint answers through its scoring URI (curl through the proxy), with the key
  local function score(key, deployment)
    local uri = arm("GET", ep_id).properties.scoringUri
    local argv = { "curl", "-s", "--max-time", "10", "--proxy", E("HOIST_TEST_AZURE_PROXY"), "--cacert", E("HOIST_TEST_CA"),
                   "-H", "Authorization: Bearer " .. key, "-H", "Content-Type: application/json", "-d", '{"x": 1}', uri }
    if deployment then table.insert(argv, 2, "-H"); table.insert(argv, 3, "azureml-model-deployment: " .. deployment) end
    local ok, doc = pcall(hoist.json.decode, hoist.exec(argv).stdout or "")
    return ok and type(doc) == "table" and doc.version or nil
  end
  local function traffic() return arm("GET", ep_id).properties.traffic end
  local function deployment_names()
    local out = {}
    for _, d in ipairs(hoist.azure.list { path = ep_id .. "/deployments", credential = cred, api_version = "2025-09-01" }) do
      out[#out + 1] = d.name
    end
    table.sort(out)
    return out
  end
  local keys
  local ok, err = pcall(function()
    hoist.azure.resource_groups.ensure { name = RG, location = "westeurope", credential = cred, subscription = S.subscription }
    hoist.azure.providers.ensure { namespace = NS, credential = cred, subscription = S.subscription, poll_interval = 0.5 }
    arm("PUT", ws_id, { location = "westeurope", identity = { type = "SystemAssigned" }, properties = {} })

    local r, out = run("v1", nil, "--dry-run")
    t.eq(r.code, 0, "dry run: " .. out)
    t.match(out, "Plan: dry run of container")
    t.match(out, "would PUT %S+/onlineEndpoints/" .. EP:gsub("%-", "%%-") .. "/deployments/d%w+%?")
    t.eq(hoist.azure.request { path = ep_id, credential = cred, api_version = "2025-09-01", missing_ok = true }, nil,
      "the dry run made no endpoint")

    r, out = run("v1")
    t.eq(r.code, 0, "v1: " .. out)
    t.match(out, "deployed: %S+ %-> https://" .. EP:gsub("%-", "%%-") .. "%.westeurope%.inference%.ml%.azure%.com/score")
    keys = arm("POST", ep_id .. "/listKeys")
    t.eq(score(keys.primaryKey), "v1")
    local v1 = next(traffic())

    r, out = run("v2")
    t.eq(r.code, 0, "v2: " .. out)
    t.ok(out:find(("traffic of %s: %s 80%%, "):format(EP, v1), 1, true) and out:find(" 20%", 1, true),
      "the canary's share: " .. out)
    t.eq(score(keys.primaryKey), "v2")
    local v2
    for d, w in pairs(traffic()) do if w == 100 then v2 = d end end
    t.eq(traffic(), { [v1] = 0, [v2] = 100 })

    -- v3 answers {"version": "wrong"}: its sample, sent to it directly, fails before any traffic
    r, out = run("v3", "wrong")
    t.eq(r.code, 1, "a wrong answer must fail: " .. out)
    t.match(out, "does not hold")
    t.match(out, "azureml%-model%-deployment")
    t.match(out, "azureml%.traffic_back")
    t.eq(traffic(), { [v1] = 0, [v2] = 100 }, "all traffic on v2 again")
    t.eq(deployment_names(), { v1 < v2 and v1 or v2, v1 < v2 and v2 or v1 }, "v3's deployment was deleted")
    t.eq(score(keys.primaryKey), "v2")

    -- SIGTERM while v4's deployment is provisioned and holds no traffic yet
    local log = S.state .. "/v4.log"
    local task = hoist.spawn(function()
      local argv = support.run_argv("container@1", S.state, params("v4"))
      local quoted = {}
      for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
      local e = { HOIST_TEST_PAUSE_IN_DEPLOY = "60" }
      for k, v in pairs(env) do e[k] = v end
      return hoist.exec { "sh", "-c", ("echo $$ > %s.pid; exec %s > %s 2>&1"):format(log, table.concat(quoted, " "), log),
                          env = e, timeout = 600 }
    end)
    local deadline = hoist.now() + 300
    while not (support.read(log) or ""):find("HOIST_TEST_PAUSE_IN_DEPLOY: pausing", 1, true) do
      t.ok(task:status() == "running", "the v4 run ended before its pause: " .. (support.read(log) or ""))
      t.ok(hoist.now() < deadline, "the v4 run reached its pause")
      hoist.sleep(0.3)
    end
    t.eq(#deployment_names(), 3, "v4's deployment exists")
    hoist.exec { "kill", "-TERM", support.must_read(log .. ".pid"):match("%d+"), check = true }
    local done = task:wait()
    S.outputs[#S.outputs + 1] = support.read(log) or ""
    t.eq(done.code, 130, "cancelled and rolled back: " .. (support.read(log) or ""))
    t.eq(traffic(), { [v1] = 0, [v2] = 100 }, "v2 keeps all the traffic")
    t.eq(#deployment_names(), 2, "v4's deployment was deleted")
    t.eq(score(keys.primaryKey), "v2")
    t.eq(score(keys.primaryKey, v1), "v1", "the previous deployment answers through azureml-model-deployment")

    web.scan(S, { keys.primaryKey, keys.secondaryKey, S.auth.password, E("HOIST_TEST_AZURE_CLIENT_SECRET") })
  end)
  web.drop_group(S, RG)
  if not ok then error(err, 0) end
end, { timeout = 900 })
