-- hoist.azure.containerapp and hoist.targets.containerapp. Without the emulator: the
-- contract and option checks. Against the Azure emulator (Docker under /tmp/hoist-docker.lock):
-- examples/containerapp run as a child `hoist run` with the proxy variables, pulling from the
-- emulated ACR's login server with a password kept as an app secret: a first revision with
-- external ingress on 8000, a second through a canary, an unhealthy revision (listening on
-- another port than targetPort) refused with the revision's logs, the traffic back on the
-- previous revision and the new one deactivated; a prober counts failed requests on the
-- app's hostname throughout; outputs and run files are scanned for the secrets.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local containerapp = hoist.azure.containerapp

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

local function need_emulator()
  support.need_docker("Container Apps target test")
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** Container Apps target test skipped *** " .. WHY)
  end
end

t.case("the target keeps the contract and is shipped; bad options are named", function()
  local targets = require "hoist.targets"
  local target = require "hoist.targets.containerapp"
  t.eq(targets.check("containerapp", target), {})
  t.eq(targets.known.containerapp, true)
  t.raises(function() target.deploy { service = "a", image = "r/a:1", resource_group = "g", canary = 100 } end,
    "invalid_argument", "canary must be a whole percent from 0 to 99, got 100")
  t.raises(function() target.deploy { service = "a", image = "r/a:1" } end, "invalid_argument",
    "option 'resource_group' is required")
  t.raises(function() containerapp.set_traffic { resource_group = "g", name = "a", subscription = "s",
    weights = { ["a--1"] = 50, ["a--2"] = 40 } } end, "invalid_argument", "the weights add up to 90, not 100")
end)

math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-aca/api"
local RG, NAME = "hoist-aca-" .. RUN, "aca-" .. RUN
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local SECRET_ENV = "aca-secret-env-" .. RUN
local S = {}

local function build(tag, text, port)
  local dir = support.tmpdir("hoist-aca-img")
  support.write(dir .. "/Dockerfile", ("FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html\nEXPOSE %d\n"
    .. 'CMD ["sh", "-c", "echo serving %s; exec httpd -f -v -p %d -h /www"]\n'):format(E("HOIST_TEST_BASE_IMAGE"), text, port, text, port))
  hoist.docker.build { context = dir, tags = { REPO .. ":" .. tag } }
  return hoist.docker.push { image = REPO .. ":" .. tag, config = S.config, auth = S.auth }.digest
end

local function deploy(image)
  local r = support.run_hoist({ "run", support.root .. "/examples/containerapp/deploy.lua", "--state-dir", S.state,
    "--no-color", "--set", "resource_group=" .. RG, "--set", "name=" .. NAME, "--set", "image=" .. image,
    "--set", "revision_timeout=60", "--set", "secret_env=API_SECRET=" .. SECRET_ENV }, { env = S.env, timeout = 900 })
  S.outputs[#S.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  return r
end

local function body_of(url)
  local r = hoist.exec { "curl", "-s", "--max-time", "10", "--proxy", E("HOIST_TEST_AZURE_PROXY"), "--cacert",
                         E("HOIST_TEST_CA"), url }
  return (r.stdout or ""):gsub("%s+$", "")
end

local function start_prober(url)
  local dir = support.tmpdir("hoist-aca-probe")
  local p = { stop = dir .. "/stop", out = dir .. "/out.json" }
  local env = { PROBE_URL = url, PROBE_STOP = p.stop, PROBE_OUT = p.out, HTTPS_PROXY = E("HOIST_TEST_AZURE_PROXY"),
                HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost" }
  p.task = hoist.spawn(function()
    return support.run_hoist({ "run", support.root .. "/tests/lua/appservice_prober.lua" }, { env = env, timeout = 1800 })
  end)
  function p.finish()
    support.write(p.stop, "stop")
    p.task:wait()
    return hoist.json.decode(support.must_read(p.out))
  end
  return p
end

t.case("Container Apps: ingress on 8000 from ACR, canary, an unhealthy revision rolled back, no secret shown", function()
  need_emulator()
  S.auth = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }
  S.config, S.state, S.outputs = support.tmpdir("hoist-aca-docker"), support.tmpdir("hoist-aca-state"), {}
  hoist.docker.login { registry = E("HOIST_TEST_REGISTRY_TOKEN"), username = S.auth.username, password = S.auth.password,
                       config = S.config }
  local d = { v1 = build("v1", "aca-v1", 8000), v2 = build("v2", "aca-v2", 8000), bad = build("bad", "aca-bad", 8001) }
  S.env = {
    AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = SUB,
    HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), HTTPS_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost",
    REGISTRY_USERNAME = S.auth.username, REGISTRY_PASSWORD = S.auth.password,
  }
  local cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
                                        client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  local ref = { resource_group = RG, name = NAME, subscription = SUB, credential = cred }
  local prober
  local ok, err = pcall(function()
    local r = deploy(REPO .. "@" .. d.v1)
    t.eq(r.code, 0, "first deploy: " .. (r.stderr or ""))
    local url = containerapp.url(containerapp.get(ref))
    t.eq(url:find("https://" .. NAME .. ".", 1, true), 1, "the app's ingress fqdn: " .. tostring(url))
    t.eq(body_of(url .. "/"), "aca-v1")
    prober = start_prober(url .. "/")

    r = deploy(REPO .. "@" .. d.v2)
    t.eq(r.code, 0, "v2: " .. (r.stderr or ""))
    t.ok((r.stderr .. r.stdout):find("traffic of " .. NAME .. ": ", 1, true), "the canary step is shown")
    t.match(r.stderr .. r.stdout, " 20%%")
    t.eq(body_of(url .. "/"), "aca-v2")

    r = deploy(REPO .. "@" .. d.bad)
    t.eq(r.code, 1, "an unhealthy revision must fail")
    t.match(r.stderr, "is unhealthy")
    t.match(r.stderr, "TargetPort 8000 does not match the listening port")
    t.match(r.stderr, "containerapp.traffic_back")
    t.eq(body_of(url .. "/"), "aca-v2", "v2 kept serving")
    local weights = {}
    for _, rev in ipairs(containerapp.revisions(ref)) do
      weights[rev.name] = { rev.properties.trafficWeight, rev.properties.active }
    end
    local v2rev, badrev
    for name, w in pairs(weights) do
      if w[1] == 100 then v2rev = name end
      if w[2] == false then badrev = name end
    end
    t.ok(v2rev, "one revision has all the traffic")
    t.ok(badrev, "the unhealthy revision was deactivated")

    local counts = prober.finish()
    prober = nil
    print(("Container Apps prober: %d requests ok, %d failed on %s during 2 deploys (canary, unhealthy) %s")
      :format(counts.ok, counts.failed, url, hoist.json.encode(counts.statuses)))
    t.ok(counts.ok > 0, "the prober ran")
    t.eq(counts.failed, 0, "failed requests on the app's hostname")

    local secrets = { S.auth.password, SECRET_ENV, E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    local texts = {}
    for i, o in ipairs(S.outputs) do texts["output " .. i] = o end
    for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do
      for _, f in ipairs(hoist.fs.list(S.state .. "/runs/" .. id)) do
        texts[id .. "/" .. f] = support.read(S.state .. "/runs/" .. id .. "/" .. f) or ""
      end
    end
    for where, text in pairs(texts) do
      for i, s in ipairs(secrets) do t.ok(not text:find(s, 1, true), ("secret %d leaked in %s"):format(i, where)) end
    end
  end)
  if prober then pcall(prober.finish) end
  pcall(hoist.azure.request, { method = "DELETE", credential = cred, path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, RG) })
  if not ok then error(err, 0) end
end, { timeout = 900 })
