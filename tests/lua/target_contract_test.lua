-- hoist.test slow
-- The contract of every registered target, through the path users take: `hoist run
-- container@1` and the CLI, against the local Docker engine and the project's Azure and
-- Kubernetes emulators. One matrix: a target gets every case by being registered in
-- hoist.targets (a target without a row here fails the first case). The targets of a case run
-- concurrently, one child `hoist run` each; a case fails naming each target that broke it.
--
--   1. an unknown option value and a missing place (namespace, resource group, cluster) are
--      refused before the build, exit 2, naming the option;
--   2. --dry-run plans and changes nothing (status: nothing serves);
--   3. v1 deploys examples/app and serves /version;
--   4. a v2 whose /health answers 404 is refused and rolled back: v1 serves (a prober counts
--      the failed requests; printed, never asserted: ACI replaces in place);
--   5. a run paused in its deploy holds the lock: a second run is refused naming the holder's
--      run; SIGTERM to the holder -> exit 130, v1 serves, the lock is free (case 6 deploys);
--   6. kill -9 after the change, then `hoist rollback <id>`: v1 serves again;
--   7. remove: nothing serves, and a second remove changes nothing.
-- Skipped loudly without tests/env (failed when CI=true).
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local targets = require "hoist.targets"

local E = os.getenv
local BASE = E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 1200 }
local STATE = support.tmpdir("hoist-contract")
local CLEAN = support.root .. "/tests/fixtures/trivy/hoist-clean.json"
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")

local function need_env()
  support.need_docker("target contract matrix")
  local why = "the Azure and Kubernetes emulators are not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
  if not (E("HOIST_TEST_AZURE_CONTROL") and E("HOIST_TEST_KUBE_SERVER")) then
    if E("CI") == "true" then error(why .. " (CI=true: not skipping)") end
    t.skip("*** target contract matrix skipped *** " .. why)
  end
end

-- What a user sets against Azure, from the file tests/env/up.sh writes for users
-- (cloud.sh: AZURE_CREDENTIALS, the proxy, NO_PROXY, ...), so the matrix runs as users do.
local cloud_env
local function azure_env()
  if not cloud_env then
    local file = (E("HOIST_ENV_DIR") or "/tmp/hoist-env") .. "/cloud.sh"
    local r = hoist.exec { "bash", "-c", '. "$1" && env', "_", file, check = true }
    cloud_env = {}
    for line in r.stdout:gmatch("[^\n]+") do
      local k, v = line:match("^([%w_]+)=(.*)$")
      if k and (k:match("^AZURE_") or k:match("_PROXY$")) then cloud_env[k] = v end
    end
    t.ok(cloud_env.AZURE_CREDENTIALS and cloud_env.HTTPS_PROXY, file .. " sets AZURE_CREDENTIALS and HTTPS_PROXY")
  end
  return cloud_env
end

-- The token registry plays ACR for the Azure targets: they pull with its user.
local function azure_registry()
  local user, password = E("HOIST_TEST_REGISTRY_TOKEN_USER"), E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD")
  return { registry_username = user, registry_password = password, pull_username = user, pull_password = password }
end

local function merge(...)
  local out = {}
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do out[k] = v end
  end
  return out
end

-- One row per registered target: container@1's parameters for it, the child's environment,
-- a bad option value and a missing place (both refused before the build), the test hook that
-- pauses after its change, and where its URL answers from here (through the emulator's proxy).
local ROWS = {}
local NS = "contract-" .. ID
local RG = "hoist-contract-" .. ID

ROWS["local"] = function()
  return { registry = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000", params = { port = support.free_port(), drain = 1 },
           bad = { params = { drain = -1 }, pat = "drain: must be >= 0" },
           missing = { params = { port = 70000 }, pat = "port: must be from 1 to 65535" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH" }
end
ROWS.kubernetes = function()
  return { registry = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000", params = { namespace = NS, replicas = 2 },
           env = { KUBECONFIG = E("KUBECONFIG") },
           bad = { params = { replicas = -1 }, pat = "replicas: must be >= 1" },
           missing = { params = { namespace = "no-such-ns-" .. ID }, pat = "namespace no%-such%-ns%-%w+ does not exist" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH" }
end
ROWS.aks = function()
  return { registry = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000",
           params = { resource_group = RG, cluster = "aks-" .. ID, admin = true, namespace = NS .. "-aks", replicas = 2 },
           env = azure_env(),
           bad = { params = { service_port = 0 }, pat = "service_port: must be from 1 to 65535" },
           missing = { params = { cluster = "no-such-cluster-" .. ID }, pat = "no%-such%-cluster" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH" }
end
ROWS.aci = function()
  return { registry = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002", azure = true,
           params = merge({ resource_group = RG .. "-aci", location = "westeurope", dns_label = "contract-" .. ID, memory = 0.5 },
                          azure_registry()),
           env = azure_env(),
           bad = { params = { cpu = -1 }, pat = "cpu: must be >= 0.1" },
           missing = { params = { resource_group = "no-such-rg-" .. ID, location = false },
                       pat = "resource group no%-such%-rg%-%w+ does not exist" },
           after = "HOIST_TEST_PAUSE_AFTER_PUT" }
end
ROWS.appservice = function()
  return { registry = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002", azure = true,
           params = merge({ resource_group = RG .. "-as", location = "westeurope" }, azure_registry()),
           env = azure_env(),
           bad = { params = { start_time_limit = 0 }, pat = "start_time_limit: must be from 1 to 1800" },
           missing = { params = { resource_group = "no-such-rg-" .. ID, location = false },
                       pat = "resource group no%-such%-rg%-%w+ does not exist" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH" }
end
ROWS.containerapp = function()
  return { registry = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002", azure = true,
           params = merge({ resource_group = RG .. "-ca", location = "westeurope", revision_timeout = 60 }, azure_registry()),
           env = azure_env(),
           bad = { params = { canary = 100 }, pat = "canary: must be from 0 to 99" },
           missing = { params = { resource_group = "no-such-rg-" .. ID, location = false },
                       pat = "resource group no%-such%-rg%-%w+ does not exist" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH" }
end

ROWS.azureml = function()
  -- the endpoint's scoring URI with its key; GET /score reaches the app's /version
  return { registry = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002", azure = true,
           params = merge({ resource_group = RG .. "-ml", location = "westeurope", workspace = "ct-ws-" .. ID,
                            scoring_path = "/version", deployment_timeout = 20,
                            samples = '[{"method": "GET", "expect": "^v%d+$"}]' }, azure_registry()),
           env = azure_env(),
           bad = { params = { instance_count = 0 }, pat = "instance_count: must be from 1 to 20" },
           missing = { params = { workspace = "no-such-ws-" .. ID }, pat = "workspace no%-such%-ws%-%w+ does not exist" },
           after = "HOIST_TEST_PAUSE_AFTER_SWITCH", scoring = true }
end

local M = {} -- target name -> {row, service, params, env, url, runs = {}}

-- The parameters of a container@1 run of `version` on target `name`.
local function params_of(m, version, healthy, extra)
  local p = merge({ target = m.name, image = m.row.registry .. "/hoist-contract-" .. ID .. "/" .. m.name, name = m.service,
                    context = support.root .. "/examples/app", tag = version, verify_timeout = 20, lock_timeout = 0,
                    build_args = ("BASE_IMAGE=%s,VERSION=%s,HEALTHY=%s"):format(BASE, version, healthy == false and "false" or "true") },
                  m.row.params, extra)
  return p
end

local function argv_of(m, p, dry_run)
  local argv = { support.hoist_bin(), "run", "container@1", "--state-dir", STATE .. "/" .. m.name, "--no-color" }
  if dry_run then argv[#argv + 1] = "--dry-run" end
  local names = {}
  for k, v in pairs(p) do if v ~= false then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(p[k])
  end
  return argv
end

local function env_of(m, extra)
  return merge({ HOIST_TRIVY = support.root .. "/tests/tools/trivy", HOIST_TRIVY_FIXTURE = CLEAN }, m.row.env, extra)
end

-- Runs container@1 to its end; keeps the output for the secret scan.
local function run(m, version, opts)
  opts = opts or {}
  local argv = argv_of(m, params_of(m, version, opts.healthy, opts.params), opts.dry_run)
  argv.env, argv.timeout = env_of(m, opts.env), 900
  local r = hoist.exec(argv)
  m.outputs[#m.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  return r
end

local function show(r) return ("exit %s\n--- stdout\n%s\n--- stderr\n%s"):format(tostring(r.code), r.stdout, r.stderr) end

-- What the service's /version answers (through the emulator's proxy for a cloud host name).
local function version_at(m)
  if not m.url then return nil end
  local argv = { "curl", "-s", "-m", "5", "--cacert", E("HOIST_TEST_CA") or "/dev/null", "-x", E("HOIST_TEST_AZURE_PROXY"),
                 "--noproxy", "127.0.0.1,localhost", m.url .. "/version" }
  if m.row.scoring then -- an Azure ML scoring URI: its key, and /score is the app's /version
    if not m.key then
      local ok, r = pcall(hoist.azure.request, { method = "POST", safe = true, credential = m.credential, api_version = "2025-09-01",
        path = hoist.azure.resource_id(SUB, m.row.params.resource_group, "Microsoft.MachineLearningServices/workspaces",
          m.row.params.workspace, "onlineEndpoints", m.service, "listKeys") })
      if not ok then return nil end -- no endpoint (yet): nothing serves
      m.key = r.body.primaryKey
    end
    argv[#argv] = m.url
    argv[#argv + 1] = "-H"
    argv[#argv + 1] = "Authorization: Bearer " .. m.key
  end
  local r = hoist.exec(argv)
  local body = (r.stdout or ""):gsub("%s+$", "")
  return body:match("^v%d+$") and body or nil
end

-- A prober of the service's /version every 0.2 s: {ok, failed, seen}.
local function start_prober(m)
  local p = { ok = 0, failed = 0, seen = {}, stop = false }
  p.task = hoist.spawn(function()
    while not p.stop do
      local v = version_at(m)
      if v then p.ok = p.ok + 1; p.seen[v] = true else p.failed = p.failed + 1 end
      hoist.sleep(0.2)
    end
  end)
  function p.finish()
    p.stop = true
    p.task:wait()
    return p
  end
  return p
end

-- Runs fn(m) for every target at once; fails naming each target whose fn raised.
local function each(fn)
  local names = targets.names()
  local errors = {}
  hoist.map(names, function(name)
    local m = M[name]
    if not m then errors[#errors + 1] = name .. ": no row (case 1 failed for it)"; return end
    local ok, err = pcall(fn, m)
    if not ok then errors[#errors + 1] = ("%s: %s"):format(name, hoist.is_error(err) and err.message or tostring(err)) end
  end)
  if #errors > 0 then error(table.concat(errors, "\n\n"), 0) end
end

-- In a child with the proxy variables: Azure's cloud host names resolve only through the
-- emulator's proxy. Returns the child's result table (JSON on stdout).
local function in_child(m, what)
  local script = STATE .. "/" .. m.name .. "-" .. what .. ".lua"
  local p = params_of(m, "v0")
  local o = { service = m.service }
  for k in pairs(targets.get(m.name).options) do if p[k] ~= nil and p[k] ~= false and k ~= "name" then o[k] = p[k] end end
  o.state_dir = STATE .. "/" .. m.name
  support.write(script, ([[
local o = hoist.json.decode(%q)
local r = require("hoist.targets.%s").%s(o)
print(hoist.json.encode { serving = r.serving, image = r.image, removed = r.removed })
]]):format(hoist.json.encode(o), m.name, what))
  local r = support.run_hoist({ "run", script, "--no-color", "--state-dir", STATE .. "/" .. m.name }, { env = m.row.env, timeout = 300 })
  m.outputs[#m.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  if r.code ~= 0 then error(("%s.%s: %s"):format(m.name, what, show(r)), 0) end
  return hoist.json.decode(r.stdout:match("(%b{})%s*$") or "{}")
end

---------------------------------------------------------------- the cases

t.case("every registered target has a row; bad options and missing places are refused before the build, exit 2", function()
  need_env()
  local missing_rows = {}
  for _, name in ipairs(targets.names()) do
    if not ROWS[name] then missing_rows[#missing_rows + 1] = name end
  end
  t.eq(missing_rows, {}, "registered targets without a row in the contract matrix")
  -- what the Kubernetes and AKS rows deploy into
  local kube = hoist.k8s.client {}
  kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS .. "-aks" } }
  local cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  hoist.azure.providers.ensure { namespace = "Microsoft.ContainerService", credential = cred, subscription = SUB }
  hoist.azure.resource_groups.ensure { name = RG, location = "westeurope", credential = cred, subscription = SUB }
  hoist.azure.request { method = "PUT", credential = cred, api_version = "2024-05-01", poll_interval = 0.2,
    path = ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerService/managedClusters/aks-%s"):format(SUB, RG, ID),
    body = { location = "westeurope", properties = { dnsPrefix = "hoistcontract" } } }
  -- the azureml row deploys into a workspace (a deploy does not make one)
  hoist.azure.providers.ensure { namespace = "Microsoft.MachineLearningServices", credential = cred, subscription = SUB }
  hoist.azure.resource_groups.ensure { name = RG .. "-ml", location = "westeurope", credential = cred, subscription = SUB }
  hoist.azure.request { method = "PUT", credential = cred, api_version = "2025-09-01", poll_interval = 0.2,
    path = hoist.azure.resource_id(SUB, RG .. "-ml", "Microsoft.MachineLearningServices/workspaces", "ct-ws-" .. ID),
    body = { location = "westeurope", identity = { type = "SystemAssigned" }, properties = {} } }
  for _, name in ipairs(targets.names()) do
    M[name] = { name = name, row = ROWS[name](), service = ("ct-%s-%s"):format(name:sub(1, 3), ID), outputs = {}, credential = cred }
  end
  each(function(m)
    for _, which in ipairs { "bad", "missing" } do
      local case = m.row[which]
      local r = run(m, "v0", { params = case.params })
      if r.code ~= 2 then error(("%s: exit %d, not 2\n%s"):format(which, r.code, show(r)), 0) end
      if not r.stderr:find(case.pat) then error(("%s: the error does not match %q\n%s"):format(which, case.pat, show(r)), 0) end
      if (r.stdout .. r.stderr):find("▶ build", 1, true) then error(which .. ": the build started\n" .. show(r), 0) end
    end
  end)
end)

t.case("--dry-run plans every change and changes nothing", function()
  need_env()
  each(function(m)
    local r = run(m, "v1", { dry_run = true })
    if r.code ~= 0 then error("dry run: " .. show(r), 0) end
    if not r.stdout:find("Plan: dry run of container", 1, true) then error("no plan in the output\n" .. show(r), 0) end
    local st = in_child(m, "status")
    if st.serving then error("something serves after a dry run: " .. hoist.json.encode(st), 0) end
  end)
end, SLOW)

t.case("v1 deploys examples/app and serves", function()
  need_env()
  each(function(m)
    local r = run(m, "v1")
    if r.code ~= 0 then error("v1: " .. show(r), 0) end
    m.url = (r.stdout .. r.stderr):match("deployed: %S+ %-> (%S+)")
    if not m.url then error("no URL in the output\n" .. show(r), 0) end
    local v = version_at(m)
    if v ~= "v1" then error(("%s/version answers %s, not v1"):format(m.url, tostring(v)), 0) end
  end)
end, SLOW)

t.case("a v2 whose /health fails is rolled back: v1 serves (failed requests counted)", function()
  need_env()
  local counts = {}
  each(function(m)
    local prober = start_prober(m)
    local r = run(m, "v2", { healthy = false })
    hoist.sleep(1)
    prober.finish()
    counts[#counts + 1] = ("%s %d/%d"):format(m.name, prober.failed, prober.ok + prober.failed)
    if r.code ~= 1 then error("v2: exit " .. r.code .. ", not 1\n" .. show(r), 0) end
    if not (r.stdout .. r.stderr):find("rolled back", 1, true) then error("v2 was not rolled back\n" .. show(r), 0) end
    local v = version_at(m)
    if v ~= "v1" then error(("after the rollback %s/version answers %s, not v1"):format(m.url, tostring(v)), 0) end
  end)
  table.sort(counts)
  print("     failed requests while a broken v2 was refused: " .. table.concat(counts, ", "))
end, SLOW)

-- Starts container@1 in the background with a test pause; returns {task, pid (function), log}.
local function start_paused(m, version, variable)
  local log = ("%s/%s-%s.log"):format(STATE, m.name, version)
  local pidfile = log .. ".pid"
  local argv = argv_of(m, params_of(m, version, true, { lock_timeout = 120 }))
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s > %s 2>&1"):format(pidfile, table.concat(quoted, " "), log),
                        env = env_of(m, { [variable] = "90" }), timeout = 900 }
  end)
  local deadline = hoist.now() + 600
  while not (support.read(log) or ""):find(variable .. ": pausing", 1, true) do
    if task:status() ~= "running" then error(("the %s run ended before its pause\n%s"):format(version, support.read(log) or ""), 0) end
    if hoist.now() > deadline then error("the run never reached its pause", 0) end
    hoist.sleep(0.3)
  end
  local run_id = (support.read(log) or ""):match("run (%d+%-%d+%-%x+)")
  return { task = task, pid = support.must_read(pidfile):match("%d+"), log = log, run = run_id }
end

t.case("a second run is refused naming the holder; SIGTERM to the holder: exit 130, v1 serves", function()
  need_env()
  each(function(m)
    local held = start_paused(m, "v3", "HOIST_TEST_PAUSE_IN_DEPLOY")
    local r = run(m, "v4")
    local text = r.stdout .. r.stderr
    if r.code ~= 1 or not text:find("conflict", 1, true) or not text:find(held.run, 1, true) then
      hoist.exec { "kill", "-TERM", held.pid }
      error(("the second run was not refused naming run %s\n%s"):format(tostring(held.run), show(r)), 0)
    end
    hoist.exec { "kill", "-TERM", held.pid, check = true }
    local done = held.task:wait()
    m.outputs[#m.outputs + 1] = support.read(held.log) or ""
    if done.code ~= 130 then error(("SIGTERM: exit %s, not 130\n%s"):format(tostring(done.code), support.read(held.log) or ""), 0) end
    local v = version_at(m)
    if v ~= "v1" then error(("after SIGTERM %s/version answers %s, not v1"):format(m.url, tostring(v)), 0) end
  end)
end, SLOW)

t.case("kill -9 after the change, then hoist rollback: v1 serves again", function()
  need_env()
  each(function(m)
    local held = start_paused(m, "v5", m.row.after)
    hoist.exec { "kill", "-KILL", held.pid, check = true }
    held.task:wait()
    local rb = support.run_hoist({ "rollback", held.run, "--state-dir", STATE .. "/" .. m.name, "--no-color" },
      { env = env_of(m), timeout = 600 })
    m.outputs[#m.outputs + 1] = (rb.stdout or "") .. (rb.stderr or "")
    if rb.code ~= 0 then error("hoist rollback: " .. show(rb), 0) end
    local v = version_at(m)
    if v ~= "v1" then error(("after hoist rollback %s/version answers %s, not v1"):format(m.url, tostring(v)), 0) end
  end)
end, SLOW)

t.case("remove takes the service down; a second remove changes nothing; no secret in any output", function()
  need_env()
  each(function(m)
    local first = in_child(m, "remove")
    if #(first.removed or {}) == 0 then error("remove removed nothing", 0) end
    local again = in_child(m, "remove")
    if #(again.removed or {}) ~= 0 then error("a second remove removed " .. hoist.json.encode(again.removed), 0) end
    local st = in_child(m, "status")
    if st.serving then error("still serving after remove", 0) end
    local everything = table.concat(m.outputs, "\n")
    for _, s in ipairs { E("HOIST_TEST_AZURE_CLIENT_SECRET"), E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"), m.key } do
      if s and s ~= "" and everything:find(s, 1, true) then error("a secret shows in the output", 0) end
    end
  end)
  local cred = M["local"].credential
  for _, rg in ipairs { RG, RG .. "-aci", RG .. "-as", RG .. "-ca", RG .. "-ml" } do
    pcall(hoist.azure.request, { method = "DELETE", credential = cred, path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, rg) })
  end
  local kube = hoist.k8s.client {}
  kube:delete { kind = "Namespace", name = NS, missing_ok = true }
  kube:delete { kind = "Namespace", name = NS .. "-aks", missing_ok = true }
end, SLOW)
