-- hoist.azure.appservice and hoist.targets.appservice. Without the emulator: the platform log
-- parser, the WEBSITES_PORT/EXPOSE message, the contract. Against the Azure emulator (Docker
-- under /tmp/hoist-docker.lock): the App Service scenario of examples/appservice run as a
-- child `hoist run` with the proxy variables, pulling from the token registry with a token:
-- a first deploy, a staged deploy by digest swapped in, a wrong-port image refused with the
-- WEBSITES_PORT/EXPOSE message while production keeps serving, the CD webhook then a restart,
-- a tag that did not move caught by digest, SIGKILL after the swap then `hoist rollback`; a
-- prober counts failed requests on the production hostname throughout; every output and run
-- file is scanned for the registry token, the publishing password, the webhook URL and the
-- secret app setting.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local appservice = hoist.azure.appservice

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

local function need_emulator()
  support.need_docker("App Service target test")
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** App Service target test skipped *** " .. WHY)
  end
end

local LOG = table.concat({
  "2024-05-01T10:00:00.001Z INFO  - Pulling image: r.io/web@sha256:" .. ("a"):rep(64),
  "2024-05-01T10:00:00.002Z INFO  - Digest: sha256:" .. ("c"):rep(64),
  "2024-05-01T10:00:00.003Z INFO  - docker run -d -p <host port>:8000 --name web_1 -e A=b r.io/web",
  "2024-05-01T10:00:00.004Z INFO  - Container web_1 for site web initialized successfully and is ready to serve requests.",
  "httpd: listening on 8000",
  "2024-05-01T10:00:01.001Z INFO  - Pulling image: r.io/web:live",
  "2024-05-01T10:00:01.002Z INFO  - Digest: sha256:" .. ("d"):rep(64),
  "2024-05-01T10:00:01.003Z INFO  - docker run -d -p <host port>:80 --name web_2 r.io/web:live",
  "2024-05-01T10:00:31.004Z ERROR - Container web_2 didn't respond to HTTP pings on port: 80, failing site start. See container logs for debugging.",
  "2024-05-01T10:00:32.001Z INFO  - Pulling image: r.io/web:gone",
  "2024-05-01T10:00:32.002Z ERROR - Pulling docker image r.io/web:gone failed:",
}, "\n")

t.cases("the platform's docker log: one record per container start", {
  { name = "a start by digest runs that digest", i = 1, outcome = "started", digest = "sha256:" .. ("a"):rep(64), container = "web_1" },
  { name = "a tag runs what the pull reported", i = 2, outcome = "no_response", digest = "sha256:" .. ("d"):rep(64), port = 80 },
  { name = "a failed pull", i = 3, outcome = "pull_failed" },
}, function(row)
  local l = appservice.launches(LOG)[row.i]
  t.eq(#appservice.launches(LOG), 3)
  t.eq(l.outcome, row.outcome)
  if row.digest then t.eq(l.digest, row.digest) end
  if row.port then t.eq(l.port, row.port) end
  if row.container then t.eq(l.container, row.container) end
end)

t.case("a log cursor keeps only what came after it; the container's own lines are not the platform's", function()
  local after = "2024-05-01T10:00:00.004Z INFO  - Container web_1 for site web initialized successfully and is ready to serve requests."
  local l = appservice.launches(LOG, after)
  t.eq(#l, 2)
  t.eq(l[1].image, "r.io/web:live")
  t.eq(#appservice.launches(LOG, "a line that is not there"), 3)
  t.eq(#appservice.launches("httpd: listening on 8000\nplain text"), 0)
end)

t.cases("secret-looking app settings", {
  { name = "DOCKER_REGISTRY_SERVER_PASSWORD", secret = true }, { name = "DB_CONNECTION_STRING", secret = true },
  { name = "api_key", secret = true }, { name = "WEBSITES_PORT", secret = false }, { name = "LOG_LEVEL", secret = false },
}, function(row) t.eq(appservice.secret_name(row.name), row.secret) end)

t.case("the target keeps the contract and is shipped", function()
  local targets = require "hoist.targets"
  t.eq(targets.check("appservice", require "hoist.targets.appservice"), {})
  t.eq(targets.known.appservice, true)
  t.raises(function() appservice.swap { resource_group = "g", name = "a", subscription = "s" } end, "invalid_argument",
    "option 'slot' must name a deployment slot")
end)

---------------------------------------------------------------- the scenario, end to end

math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local REPO = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-as/web"
local RG, NAME = "hoist-as-" .. RUN, "hoist-as-" .. RUN
local SECRET_SETTING = "as-secret-setting-" .. RUN

local S = {}

local function build(tag, text, port)
  local dir = support.tmpdir("hoist-as-img")
  support.write(dir .. "/Dockerfile", ("FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html\nEXPOSE %d\n"
    .. 'CMD ["sh", "-c", "exec httpd -f -v -p %d -h /www"]\n'):format(E("HOIST_TEST_BASE_IMAGE"), text, port, port))
  hoist.docker.build { context = dir, tags = { REPO .. ":" .. tag } }
  return hoist.docker.push { image = REPO .. ":" .. tag, config = S.config, auth = S.auth }.digest
end

local function setup()
  if S.ready then return end
  S.auth = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }
  S.config = support.tmpdir("hoist-as-docker")
  S.state = support.tmpdir("hoist-as-state")
  hoist.docker.login { registry = E("HOIST_TEST_REGISTRY_TOKEN"), username = S.auth.username, password = S.auth.password,
                       config = S.config }
  S.digest = { v1 = build("v1", "as-v1", 8000), v2 = build("v2", "as-v2", 8000), bad = build("bad", "as-bad", 8001),
               v3 = build("v3", "as-v3", 8000), v4 = build("v4", "as-v4", 8000) }
  hoist.registry.retag { image = REPO .. "@" .. S.digest.v3, tag = "live", auth = S.auth }
  S.env = {
    AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID"),
    HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), HTTPS_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost",
    REGISTRY_USERNAME = S.auth.username, REGISTRY_PASSWORD = S.auth.password,
  }
  S.outputs = {}
  S.ready = true
end

local function deploy(params, extra_env)
  local argv = { "run", support.root .. "/examples/appservice/deploy.lua", "--state-dir", S.state, "--no-color",
                 "--set", "resource_group=" .. RG, "--set", "name=" .. NAME, "--set", "start_time_limit=8",
                 "--set", "secret_env=API_SECRET=" .. SECRET_SETTING }
  for k, v in pairs(params) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  local env = {}
  for k, v in pairs(S.env) do env[k] = v end
  for k, v in pairs(extra_env or {}) do env[k] = v end
  local r = support.run_hoist(argv, { env = env, timeout = 900 })
  S.outputs[#S.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  return r
end

-- What the production hostname answers (curl through the emulator's proxy).
local function body_of(url)
  local r = hoist.exec { "curl", "-s", "--max-time", "10", "--proxy", E("HOIST_TEST_AZURE_PROXY"), "--cacert",
                         E("HOIST_TEST_CA"), url }
  return (r.stdout or ""):gsub("%s+$", "")
end

local function start_prober(url)
  local dir = support.tmpdir("hoist-as-probe")
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

local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local function ref() return { resource_group = RG, name = NAME, credential = S.cred, subscription = SUB } end

t.case("App Service: token registry, staged digest deploys, wrong port refused, webhook + restart, stale tag, kill -9", function()
  need_emulator()
  setup()
  S.cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
                                    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  local prod = appservice.url { name = NAME }
  local ok, err = pcall(function()
    -- first deploy: group, plan, site
    local r = deploy { image = REPO .. ":v1" }
    t.eq(r.code, 0, "first deploy: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v1")
    local prober = start_prober(prod .. "/")
    S.prober = prober

    -- a staged deploy by digest, swapped in
    r = deploy { image = REPO .. ":v2" }
    t.eq(r.code, 0, "v2: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v2")
    local st = require("hoist.targets.appservice").status { service = NAME, resource_group = RG, credential = S.cred, subscription = SUB }
    t.eq(st.digest, S.digest.v2, "production runs v2's digest")
    t.eq(st.image, REPO .. "@" .. S.digest.v2)

    -- a container listening on another port than WEBSITES_PORT: refused on the slot
    r = deploy { image = REPO .. ":bad" }
    t.eq(r.code, 1, "bad port must fail")
    t.match(r.stderr, "the container listens on 8001 %(EXPOSE 8001%) but App Service waits on 8000: set WEBSITES_PORT=8001")
    t.eq(body_of(prod .. "/"), "as-v2", "production kept serving v2")
    local staged = prober.finish()
    print(("App Service prober, staged deploys (v2 swapped in, wrong port refused): %d requests ok, %d failed %s")
      :format(staged.ok, staged.failed, hoist.json.encode(staged.statuses)))
    t.ok(staged.ok > 0, "the prober ran")
    t.eq(staged.failed, 0, "failed requests on the production hostname during the staged deploys")
    prober = start_prober(prod .. "/")
    S.prober = prober

    -- the tag + the CD webhook, then a restart; staged in place (slot "")
    r = deploy { image = REPO .. ":live", update = "webhook", slot = "", restart = true }
    t.eq(r.code, 0, "webhook: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v3")
    t.eq(appservice.running(ref()).digest, S.digest.v3)

    -- "I pushed a new image but nothing changed": live still points at v3, v4 is asked for
    r = deploy { image = REPO .. ":live@" .. S.digest.v4, update = "webhook", slot = "" }
    t.eq(r.code, 1, "a tag that did not move must fail")
    t.match(r.stderr, "digest " .. S.digest.v3:gsub("%p", "%%%0") .. ", not " .. S.digest.v4:gsub("%p", "%%%0"))
    t.match(r.stderr, "did not move")
    t.eq(body_of(prod .. "/"), "as-v3")

    local counts = prober.finish()
    S.prober = nil
    -- App Service's restart stops the container before it starts the new one: reported, not asserted
    print(("App Service prober, in place (webhook, restart, stale tag): %d requests ok, %d failed %s")
      :format(counts.ok, counts.failed, hoist.json.encode(counts.statuses)))
    t.ok(counts.ok > 0, "the prober ran")

    -- SIGKILL after the swap, then hoist rollback: production runs v3 again
    local pidfile = S.state .. "/killed.pid"
    local argv = { support.hoist_bin(), "run", support.root .. "/examples/appservice/deploy.lua", "--state-dir", S.state,
                   "--no-color", "--set", "resource_group=" .. RG, "--set", "name=" .. NAME, "--set", "start_time_limit=8",
                   "--set", "image=" .. REPO .. ":v4" }
    local quoted = {}
    for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
    local env = { HOIST_TEST_PAUSE_AFTER_SWITCH = "120" }
    for k, v in pairs(S.env) do env[k] = v end
    local task = hoist.spawn(function()
      return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s"):format(pidfile, table.concat(quoted, " ")), env = env, timeout = 600 }
    end)
    local before = {}
    for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do before[id] = true end
    -- the moment: production answers v4 (the run pauses right after its swap)
    local swapped = false
    for _ = 1, 600 do
      swapped = body_of(prod .. "/") == "as-v4"
      if swapped or task:status() ~= "running" then break end
      hoist.sleep(0.5)
    end
    t.ok(swapped, "the deploy reached the swap")
    local run_id
    for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do
      if not before[id] then run_id = id end
    end
    t.ok(run_id, "the killed run has a folder")
    hoist.exec { "kill", "-KILL", support.must_read(pidfile):match("%d+"), check = true }
    t.eq(task:wait().signal, 9)
    local rb = support.run_hoist({ "rollback", run_id, "--state-dir", S.state, "--no-color" }, { env = S.env, timeout = 600 })
    S.outputs[#S.outputs + 1] = (rb.stdout or "") .. (rb.stderr or "")
    t.eq(rb.code, 0, "rollback: " .. (rb.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v3", "v3 serves again after the rollback")
    -- a second rollback changes nothing
    rb = support.run_hoist({ "rollback", run_id, "--state-dir", S.state, "--no-color", "--force" }, { env = S.env, timeout = 600 })
    t.eq(body_of(prod .. "/"), "as-v3")

    -- no secret anywhere: outputs, events, journals, reports
    local creds = appservice.credentials(ref())
    local secrets = { S.auth.password, creds.password, creds.webhook_url, SECRET_SETTING, E("HOIST_TEST_AZURE_CLIENT_SECRET") }
    local texts = {}
    for i, o in ipairs(S.outputs) do texts["output " .. i] = o end
    for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do
      for _, f in ipairs(hoist.fs.list(S.state .. "/runs/" .. id)) do
        texts[id .. "/" .. f] = support.read(S.state .. "/runs/" .. id .. "/" .. f) or ""
      end
    end
    for where, text in pairs(texts) do
      for i, s in ipairs(secrets) do
        t.ok(not text:find(s, 1, true), ("secret %d leaked in %s"):format(i, where))
      end
    end
  end)
  if S.prober then pcall(S.prober.finish) end
  pcall(require("hoist.targets.appservice").remove, { service = NAME, resource_group = RG, credential = S.cred, subscription = SUB,
                                                      state_dir = S.state })
  pcall(hoist.azure.request, { method = "DELETE", credential = S.cred, path = ("/subscriptions/%s/resourcegroups/%s")
    :format(E("HOIST_TEST_AZURE_SUBSCRIPTION_ID"), RG) })
  if not ok then error(err, 0) end
end, { timeout = 1200 })
