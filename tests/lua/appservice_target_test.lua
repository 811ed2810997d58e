-- hoist.azure.appservice and hoist.targets.appservice. Without the emulator: the platform log
-- parser, the WEBSITES_PORT/EXPOSE message, the contract. Against the Azure emulator (Docker
-- under /tmp/hoist-docker.lock): the App Service scenario of examples/appservice run as a
-- child `hoist run` with the proxy variables, pulling from the token registry with a token:
-- a first deploy, a staged deploy by digest swapped in, a wrong-port image refused with the
-- WEBSITES_PORT/EXPOSE message while production keeps serving, the CD webhook then a restart,
-- a tag that did not move caught by digest, SIGKILL after the swap then `hoist rollback` (which
-- takes over the killed run's ARM-side lock at once); a prober counts failed requests on the
-- production hostname throughout; every output and run file is scanned for the registry token,
-- the publishing password, the webhook URL and the secret app setting. The ARM-side deploy
-- lock: a second run refused naming the holder, remove waiting for it. SIGTERM while the swap
-- is polled: the compensations wait for the swap in flight, then production serves v1.
local t = require "hoist.test"
local web = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/appservice_support.lua")
local appservice = hoist.azure.appservice

local E = os.getenv

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
  t.ok(targets.get("appservice"))
  t.raises(function() appservice.swap { resource_group = "g", name = "a", subscription = "s" } end, "invalid_argument",
    "option 'slot' must name a deployment slot")
end)

local RUN = web.run_tag()
local REPO = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-as/web"
local RG, NAME = "hoist-as-" .. RUN, "hoist-as-" .. RUN
local SECRET_SETTING = "as-secret-setting-" .. RUN
local SCRIPT = "examples/appservice/deploy.lua"
local body_of = web.body_of

t.case("a dry run plans the first deploy (group, plan, site) and creates nothing", function()
  if (E("HOIST_TEST_AZURE_CONTROL") or "") == "" then web.need_emulator("App Service dry-run test") end
  local S = { outputs = {}, state = web.support.tmpdir("hoist-as-dry"), env = {
    AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID"),
    REGISTRY_USERNAME = "puller", REGISTRY_PASSWORD = "dry-run-registry-token-" .. RUN } }
  local name = "hoist-asdry-" .. RUN
  local r = web.run(S, SCRIPT, { image = "127.0.0.1:5002/hoist-as/web@sha256:" .. ("0"):rep(64), resource_group = name,
                                 name = name }, nil, "--dry-run")
  t.eq(r.code, 0, r.stderr)
  local runs = hoist.fs.list(S.state .. "/runs")
  local plan_text = web.support.must_read(S.state .. "/runs/" .. runs[#runs] .. "/plan.json")
  local actions = {}
  for i, step in ipairs(hoist.json.decode(plan_text).steps) do actions[i] = step.action end
  t.eq(actions, { "azure.resource_group.create", "azure.appservice.plan", "azure.appservice.create" })
  t.ok(plan_text:find("DOCKER|127.0.0.1:5002/hoist-as/web@sha256:", 1, true), "the site runs the image by digest")
  t.ok(plan_text:find('"name": "DOCKER_REGISTRY_SERVER_PASSWORD",%s*"value": "%*%*%*"') or
       plan_text:find('"value": "***"', 1, true), "the registry token is masked in the plan")
  for _, text in ipairs { plan_text, r.stdout .. r.stderr } do
    t.ok(not text:find("dry-run-registry-token-" .. RUN, 1, true), "the registry token is not shown")
  end
  local cred = hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  t.eq(hoist.azure.resource_groups.get { name = name, credential = cred, subscription = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID") },
    nil, "nothing was created")
end)

t.case("the deploy lock is ARM-side: another run is refused naming the holder; remove waits for it", function()
  web.check_lock("appservice", "hoist-aslock-" .. RUN, "hoist-aslock-" .. RUN, REPO .. "@sha256:" .. ("0"):rep(64))
end)

-- App Service's Linux FAQ: without WEBSITES_PORT a container on 80 or 8080 is found; on any
-- other port (8000 here) it is not, and the diagnosis names WEBSITES_PORT with that port. (The
-- emulator used to wait on 80 only, so "set WEBSITES_PORT=8080" looked right; on Azure it is not.)
t.case("without WEBSITES_PORT: 8080 is found; 8000 is not, and the failure says set WEBSITES_PORT=8000", function()
  web.need_emulator("App Service port detection test")
  local S = web.session("hoist-asport")
  local rg, repo = "hoist-asport-" .. RUN, (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-asport/web"
  local digests = { [8080] = web.build(S, repo, "p8080", "as-8080", 8080), [8000] = web.build(S, repo, "p8000", "as-8000", 8000) }
  local function with(more)
    local o = { resource_group = rg, credential = S.credential, subscription = S.subscription }
    for k, v in pairs(more) do o[k] = v end
    return o
  end
  local ok, err = pcall(function()
    hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", credential = S.credential,
                                         subscription = S.subscription }
    appservice.plan(with { name = rg .. "-plan", location = "westeurope" })
    local registry = { server = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002", username = S.auth.username,
                       password = S.auth.password }
    for _, port in ipairs { 8080, 8000 } do
      local name, image = ("hoist-asport-%d-%s"):format(port, RUN), repo .. "@" .. digests[port]
      appservice.create(with { name = name, location = "westeurope", plan = rg .. "-plan", image = image,
                               registry = registry, settings = { WEBSITES_CONTAINER_START_TIME_LIMIT = "5" } })
      local wait = with { name = name, image = image, timeout = 120 }
      if port == 8080 then
        t.eq(appservice.wait_started(wait).outcome, "started")
        t.eq(body_of(appservice.url { name = name } .. "/"), "as-8080")
      else
        t.raises(function() appservice.wait_started(wait) end, "rollout_failed",
          "the container listens on 8000 %(.*EXPOSE 8000%) but App Service waits on 80: set WEBSITES_PORT=8000")
      end
    end
  end)
  web.drop_group(S, rg)
  -- the images: built here, and the emulator's pulls of them
  hoist.exec { "sh", "-c", ("docker images -q --filter reference='%s' | xargs -r docker rmi -f"):format(repo .. "*") }
  if not ok then error(err, 0) end
end)

-- A swap is an operation: 202, then Location polling, while App Service warms up the slot
-- (GET WEBSITE_SWAP_WARMUP_PING_PATH) before the slots change places. A run SIGTERM'd then
-- leaves the swap running; no GET shows it, and App Service refuses every change of the site
-- until it ends (409 "Cannot modify this site because another operation is in progress").
-- swap_back used to look at once: production still ran v1, so it swapped nothing back, and the
-- swap then put v2 in production for good.
t.case("SIGTERM while the swap is polled: swap_back waits for the swap in flight, production serves v1", function()
  web.need_emulator("App Service SIGTERM test")
  local support = web.support
  local S = web.session("hoist-appsvc-term")
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-appsvc/term"
  local rg, name = "hoist-appsvc-term-" .. RUN, "hoist-appsvc-term-" .. RUN
  local v1 = web.build(S, repo, "v1", "appsvc-v1", 8000)
  -- v2 answers its warm-up path after 5 s (a CGI of the base image's httpd)
  local dir = support.tmpdir("hoist-appsvc-term-img")
  support.write(dir .. "/slow", "#!/bin/sh\nsleep 5\nprintf 'Content-Type: text/plain\\r\\n\\r\\nwarm\\n'\n")
  support.write(dir .. "/Dockerfile", ("FROM %s:v1\nRUN echo appsvc-v2 > /www/index.html && mkdir -p /www/cgi-bin\n"
    .. "COPY slow /www/cgi-bin/slow\nRUN chmod 755 /www/cgi-bin/slow\n"):format(repo))
  hoist.docker.build { context = dir, tags = { repo .. ":v2" } }
  local v2 = hoist.docker.push { image = repo .. ":v2", config = S.config, auth = S.auth }.digest
  local prod = { resource_group = rg, name = name, credential = S.credential, subscription = S.subscription }
  local slot = { resource_group = rg, name = name, slot = "staging", credential = S.credential, subscription = S.subscription }
  local function argv(digest)
    local a = { support.hoist_bin(), "run", support.root .. "/" .. SCRIPT, "--state-dir", S.state, "--no-color",
      "--set", "resource_group=" .. rg, "--set", "name=" .. name, "--set", "image=" .. repo .. "@" .. digest,
      "--set", "start_time_limit=20" }
    a.env, a.timeout = S.env, 600
    return a
  end
  local ok, err = pcall(function()
    local r1 = hoist.exec(argv(v1))
    t.eq(r1.code, 0, "v1: " .. r1.stderr)
    -- the slot a deploy creates starts from production's settings: it gets the warm-up path too
    appservice.update_settings { resource_group = rg, name = name, credential = S.credential, subscription = S.subscription,
                                 set = { WEBSITE_SWAP_WARMUP_PING_PATH = "/cgi-bin/slow" } }
    local pidfile = S.state .. "/term.pid"
    local b = { "sh", "-c", 'echo $$ > "$0"; exec "$@"', pidfile }
    for _, x in ipairs(argv(v2)) do b[#b + 1] = x end
    b.env, b.timeout = S.env, 600
    local task = hoist.spawn(function() return hoist.exec(b) end)
    -- the swap is in flight once the slot's platform log says it warms up (read, not changed)
    local deadline, sent = hoist.now() + 300, false
    while hoist.now() < deadline and task:status() == "running" do
      local okl, log = pcall(appservice.logs, slot)
      if okl and log:find("Slot swap: warming up", 1, true) then
        -- the swap (an operation on the slot) lasts 15 s at least, the setting read while it
        -- runs: the SIGTERM, the competing swap and swap_back land inside it however slow the machine
        web.hold("/sites/" .. name .. "/slots/staging", 15)
        hoist.exec { "kill", "-TERM", support.must_read(pidfile):match("%d+"), check = true }
        sent = true
        break
      end
      hoist.sleep(0.1)
    end
    t.ok(sent, "SIGTERM was sent while the swap was in flight")
    -- a swap someone else starts meanwhile is refused, naming the swap in flight
    t.raises(function() appservice.swap(slot) end, "conflict",
      "Cannot modify this site because another operation is in progress%. Details: Id: [%x-]+, OperationName: SwapSiteSlots")
    local r2 = task:wait()
    local out = r2.stdout .. r2.stderr
    t.eq(r2.code, 130, "cancelled and rolled back: " .. out)
    t.match(out, "web app " .. name:gsub("%p", "%%%0") .. ": an operation is in progress on it %(Azure: Cannot modify this site "
      .. "because another operation is in progress%. Details: .*OperationName: SwapSiteSlots")
    t.eq(body_of(appservice.url(prod) .. "/"), "appsvc-v1", "production serves v1 again")
    t.eq(appservice.running(prod).digest, v1)
    t.eq(appservice.get(slot), nil, "the slot the cancelled run created is deleted")
  end)
  pcall(web.hold, "/sites/" .. name .. "/slots/staging", 0)
  web.drop_group(S, rg)
  hoist.exec { "sh", "-c", ("docker images -q --filter reference='%s' | xargs -r docker rmi -f"):format(repo .. "*") }
  if not ok then error(err, 0) end
end, { timeout = 600 })

---------------------------------------------------------------- the scenario, end to end


t.case("App Service: token registry, staged digest deploys, wrong port refused, webhook + restart, stale tag, kill -9", function()
  web.need_emulator("App Service target test")
  local S = web.session("hoist-as")
  local d = { v1 = web.build(S, REPO, "v1", "as-v1", 8000), v2 = web.build(S, REPO, "v2", "as-v2", 8000),
              bad = web.build(S, REPO, "bad", "as-bad", 8001), v3 = web.build(S, REPO, "v3", "as-v3", 8000),
              v4 = web.build(S, REPO, "v4", "as-v4", 8000) }
  hoist.registry.retag { image = REPO .. "@" .. d.v3, tag = "live", auth = S.auth }
  local ref = { resource_group = RG, name = NAME, credential = S.credential, subscription = S.subscription }
  local function deploy(params)
    params.resource_group, params.name, params.start_time_limit = RG, NAME, 8
    params.secret_env = "API_SECRET=" .. SECRET_SETTING
    return web.run(S, SCRIPT, params)
  end
  local prod = appservice.url { name = NAME }
  local prober
  local ok, err = pcall(function()
    -- first deploy: group, plan, site
    local r = deploy { image = REPO .. ":v1" }
    t.eq(r.code, 0, "first deploy: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v1")
    prober = web.start_prober(prod .. "/")

    -- a staged deploy by digest, swapped in
    r = deploy { image = REPO .. ":v2" }
    t.eq(r.code, 0, "v2: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v2")
    local st = require("hoist.targets.appservice").status { service = NAME, resource_group = RG,
                                                           credential = S.credential, subscription = S.subscription }
    t.eq(st.digest, d.v2, "production runs v2's digest")
    t.eq(st.image, REPO .. "@" .. d.v2)

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
    prober = web.start_prober(prod .. "/")

    -- the tag + the CD webhook, then a restart; in place (slot "")
    r = deploy { image = REPO .. ":live", update = "webhook", slot = "", restart = true }
    t.eq(r.code, 0, "webhook: " .. (r.stderr or ""))
    t.eq(body_of(prod .. "/"), "as-v3")
    t.eq(appservice.running(ref).digest, d.v3)

    -- "I pushed a new image but nothing changed": live still points at v3, v4 is asked for
    r = deploy { image = REPO .. ":live@" .. d.v4, update = "webhook", slot = "" }
    t.eq(r.code, 1, "a tag that did not move must fail")
    t.ok(r.stderr:find(("digest %s, not %s"):format(d.v3, d.v4), 1, true), "names both digests: " .. r.stderr)
    t.match(r.stderr, "did not move")
    t.eq(body_of(prod .. "/"), "as-v3")

    local counts = prober.finish()
    prober = nil
    -- App Service's restart stops the container before it starts the new one: reported, not asserted
    print(("App Service prober, in place (webhook, restart, stale tag): %d requests ok, %d failed %s")
      :format(counts.ok, counts.failed, hoist.json.encode(counts.statuses)))
    t.ok(counts.ok > 0, "the prober ran")

    -- SIGKILL after the swap, then hoist rollback: production runs v3 again
    local run_id = web.kill_after_switch(S, SCRIPT, { resource_group = RG, name = NAME, start_time_limit = 8,
      image = REPO .. ":v4" }, function() return body_of(prod .. "/") == "as-v4" end)
    t.match(web.lock_tag(S, RG, "appservice", NAME) or "", "^" .. run_id:gsub("%p", "%%%0") .. ":",
      "the killed run left its ARM-side lock behind")
    local rb = web.rollback(S, run_id)
    t.eq(rb.code, 0, "rollback: " .. (rb.stderr or ""))
    web.took_over_dead(rb, "appservice/" .. NAME, run_id)
    t.eq(web.lock_tag(S, RG, "appservice", NAME), nil, "the rollback released the lock")
    t.eq(body_of(prod .. "/"), "as-v3", "v3 serves again after the rollback")
    web.rollback(S, run_id, true) -- a second rollback changes nothing
    t.eq(body_of(prod .. "/"), "as-v3")

    -- no secret anywhere: outputs, events, journals, reports
    local creds = appservice.credentials(ref)
    web.scan(S, { S.auth.password, creds.password, creds.webhook_url, SECRET_SETTING, E("HOIST_TEST_AZURE_CLIENT_SECRET") })
  end)
  if prober then pcall(prober.finish) end
  pcall(require("hoist.targets.appservice").remove, { service = NAME, resource_group = RG, credential = S.credential,
                                                      subscription = S.subscription, state_dir = S.state })
  pcall(hoist.azure.request, { method = "DELETE", credential = S.credential,
    path = ("/subscriptions/%s/resourcegroups/%s"):format(S.subscription, RG) })
  if not ok then error(err, 0) end
end, { timeout = 1200 })

-- Issue 13: the default pull credential must keep working after tokens expire. Without
-- registry_username or managed_identity, container@1 on appservice makes a user-assigned
-- identity `<name>-pull` with AcrPull on the ACR, assigned to the site and the slot, and pulls
-- with it (acrUserManagedIdentityID; the emulator pulls with it only when it holds AcrPull, as
-- ACR does), through a first deploy and a staged one swapped in; a deployer that may not assign
-- roles on the registry (Contributor: the emulator's limited principal) keeps the previous
-- default, saying why.
t.case("container@1 without a pull credential: the site and its slot pull with a user-assigned identity holding AcrPull; a Contributor keeps the old default", function()
  web.need_emulator("App Service pull identity test")
  local lim = web.limited_principal("appservice pull identity test")
  local S = web.session("hoist-azperms")
  local rg, site = "hoist-azperms-as-" .. RUN, "azperms-as-" .. RUN
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-azperms/web"
  local assignment
  local ok, err = pcall(function()
    hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", credential = S.credential, subscription = S.subscription }
    local registry = hoist.azure.acr.ensure { name = "azpermsas" .. RUN, resource_group = rg, location = "westeurope",
                                              credential = S.credential, subscription = S.subscription }
    local function run(name, tag, env, dry)
      return web.container1(S, { target = "appservice", resource_group = rg, location = "westeurope", name = name,
                                 image = repo, tag = tag }, env, dry)
    end
    local ident = hoist.azure.resource_id(S.subscription, rg, "Microsoft.ManagedIdentity/userAssignedIdentities", site .. "-pull")
    local pat = "pulls .- with the user%-assigned identity " .. site:gsub("%-", "%%-") .. "%-pull %(principal [%x%-]+%) "
      .. "with AcrPull on registry azpermsas" .. RUN
    local r, out = run(site, RUN .. "a")
    t.eq(r.code, 0, out)
    t.match(out, pat)
    local client_id = hoist.azure.request { path = ident, credential = S.credential }.body.properties.clientId
    r, out = run(site, RUN .. "b") -- staged on the slot, swapped in
    t.eq(r.code, 0, out)
    t.match(out, pat)
    for _, slot in ipairs { false, "staging" } do
      local ref = { resource_group = rg, name = site, slot = slot or nil, subscription = S.subscription, credential = S.credential }
      local c = appservice.container(ref)
      t.eq({ c.managed_identity, c.pull_identity }, { true, client_id }, "pulls with it: " .. tostring(slot))
      t.match(c.image, "hoist%-azperms/web@sha256:")
      local got = hoist.azure.request { path = appservice.path(ref), credential = S.credential }.body
      t.ok(got.identity.userAssignedIdentities[ident], "it is assigned to " .. (slot or "production"))
    end
    t.eq(#hoist.azure.identity.missing { principal_id = hoist.azure.request { path = ident, credential = S.credential }
      .body.properties.principalId, need = { { role = "AcrPull", scope = registry.id } }, credential = S.credential,
      subscription = S.subscription }, 0, "it holds AcrPull on the registry")
    -- Contributor on the group may deploy but not give a role on the registry
    assignment = hoist.azure.identity.assign { principal_id = lim.oid, role = "Contributor", credential = S.credential,
      subscription = S.subscription, scope = hoist.azure.resource_id(S.subscription, rg) }.id
    r, out = run(site .. "b", RUN .. "a", { AZURE_CLIENT_ID = lim.id, AZURE_CLIENT_SECRET = lim.secret }, true)
    t.eq(r.code, 0, out)
    t.match(out, "pulls .- with the registry settings it has %(as before%): the deployer may not make a pull identity "
      .. "%(it lacks Microsoft%.Authorization/roleAssignments/write at " .. registry.id:gsub("%-", "%%-"))
  end)
  if assignment then pcall(hoist.azure.request, { method = "DELETE", path = assignment, credential = S.credential }) end
  web.drop_group(S, rg)
  hoist.exec { "sh", "-c", ("docker images -q --filter reference='%s' | xargs -r docker rmi -f"):format(repo .. "*") }
  if not ok then error(err, 0) end
end, { timeout = 900 })
