-- hoist.test slow
-- hoist.azure.containerapp and hoist.targets.containerapp. Without the emulator: the
-- contract and option checks. Against the Azure emulator (Docker under /tmp/hoist-docker.lock):
-- examples/containerapp run as a child `hoist run` with the proxy variables, pulling from the
-- emulated ACR's login server with a password kept as an app secret: a first revision with
-- external ingress on 8000, a second through a canary, an unhealthy revision (listening on
-- another port than targetPort) refused with the revision's logs, the traffic back on the
-- previous revision and the new one deactivated; a prober counts failed requests on the
-- app's hostname throughout; SIGKILL after the traffic moved, then `hoist rollback` (which takes
-- over the killed run's ARM-side lock at once); the example's listing of the repositories and
-- tags (hoist.azure.acr, printed as az does); outputs and run files are scanned for the
-- secrets. The ARM-side deploy lock: a second run refused naming the holder, remove waiting.
local t = require "hoist.test"
local web = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/appservice_support.lua")
local containerapp = hoist.azure.containerapp

local E = os.getenv


t.case("the target keeps the contract and is shipped; bad options are named", function()
  local targets = require "hoist.targets"
  local target = require "hoist.targets.containerapp"
  t.eq(targets.check("containerapp", target), {})
  t.ok(targets.get("containerapp"))
  t.raises(function() target.deploy { service = "a", image = "r/a:1", resource_group = "g", canary = 100 } end,
    "invalid_argument", "option 'canary' must be from 0 to 99, got 100")
  t.raises(function() target.deploy { service = "a", image = "r/a:1", resource_group = "g", canary = 12.5 } end,
    "invalid_argument", "canary must be a whole percent from 0 to 99, got 12.5")
  t.raises(function() target.deploy { service = "a", image = "r/a:1" } end, "invalid_argument",
    "option 'resource_group' is required")
  t.raises(function() containerapp.set_traffic { resource_group = "g", name = "a", subscription = "s",
    weights = { ["a--1"] = 50, ["a--2"] = 40 } } end, "invalid_argument", "the weights add up to 90, not 100")
end)

local RUN = web.run_tag()
local REPO = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-aca/api"
local RG, NAME = "hoist-aca-" .. RUN, "aca-" .. RUN
local SECRET_ENV = "aca-secret-env-" .. RUN
local SCRIPT = "examples/containerapp/deploy.lua"
local body_of = web.body_of

t.case("the deploy lock is ARM-side: another run is refused naming the holder; remove waits for it", function()
  web.check_lock("containerapp", "hoist-acalock-" .. RUN, "aca-lock-" .. RUN, REPO .. "@sha256:" .. ("0"):rep(64))
end)

t.case("Container Apps: ingress on 8000 from ACR, canary, an unhealthy revision rolled back, kill -9, no secret shown", function()
  web.need_emulator("Container Apps target test")
  local S = web.session("hoist-aca")
  local d = { v1 = web.build(S, REPO, "v1", "aca-v1", 8000), v2 = web.build(S, REPO, "v2", "aca-v2", 8000),
              bad = web.build(S, REPO, "bad", "aca-bad", 8001), v3 = web.build(S, REPO, "v3", "aca-v3", 8000) }
  local ref = { resource_group = RG, name = NAME, subscription = S.subscription, credential = S.credential }
  local function params(digest)
    return { resource_group = RG, name = NAME, image = REPO .. "@" .. digest, revision_timeout = 60,
             secret_env = "API_SECRET=" .. SECRET_ENV }
  end
  -- a revision that never answers on targetPort turns Unhealthy after this (Azure: minutes)
  local function settings(limit)
    hoist.http.request { method = "POST", url = E("HOIST_TEST_AZURE_CONTROL") .. "/settings",
                         json = { containerapp_start_time_limit = limit }, check = true, safe = true }
  end
  settings(20)
  local prober
  local ok, err = pcall(function()
    local r = web.run(S, SCRIPT, params(d.v1))
    t.eq(r.code, 0, "first deploy: " .. (r.stderr or ""))
    -- the registry stage: the repositories and the deployed repository's tags, as az prints them
    local function listed(command)
      local at = r.stdout:find(command, 1, true)
      t.ok(at, "the output has " .. command .. ": " .. r.stdout)
      local ok_json, list = pcall(hoist.json.decode, r.stdout:match("^[^\n]*\n(%b[])", at) or "")
      t.ok(ok_json and type(list) == "table", "a JSON array follows " .. command)
      return list
    end
    local server = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002"
    local repos = listed("$ az acr repository list --name " .. server .. "\n")
    t.ok(table.concat(repos, ","):find("hoist-aca/api", 1, true), "the pushed repository is listed")
    local sorted = {}
    for i, v in ipairs(repos) do sorted[i] = v end
    table.sort(sorted)
    t.eq(repos, sorted, "sorted, as az lists them")
    t.eq(listed("$ az acr repository show-tags --name " .. server .. " --repository hoist-aca/api\n"),
      { "bad", "v1", "v2", "v3" }, "the tags the test pushed")
    local url = containerapp.url(containerapp.get(ref))
    t.eq(url:find("https://" .. NAME .. ".", 1, true), 1, "the app's ingress fqdn: " .. tostring(url))
    t.eq(body_of(url .. "/"), "aca-v1")
    prober = web.start_prober(url .. "/")

    r = web.run(S, SCRIPT, params(d.v2))
    t.eq(r.code, 0, "v2: " .. (r.stderr or ""))
    t.ok((r.stderr .. r.stdout):find("traffic of " .. NAME .. ": ", 1, true), "the canary step is shown")
    t.match(r.stderr .. r.stdout, " 20%%")
    t.eq(body_of(url .. "/"), "aca-v2")

    r = web.run(S, SCRIPT, params(d.bad))
    t.eq(r.code, 1, "an unhealthy revision must fail")
    t.match(r.stderr, "is unhealthy")
    t.match(r.stderr, "TargetPort 8000 does not match the listening port")
    t.match(r.stderr, "containerapp.traffic_back")
    t.eq(body_of(url .. "/"), "aca-v2", "v2 kept serving")
    local by_image = {}
    for _, rev in ipairs(containerapp.revisions(ref)) do
      by_image[((rev.properties.template or {}).containers or {})[1].image] = rev.properties
    end
    t.eq(by_image[REPO .. "@" .. d.v2].trafficWeight, 100, "v2 has all the traffic")
    t.eq(by_image[REPO .. "@" .. d.bad].active, false, "the unhealthy revision was deactivated")

    local counts = prober.finish()
    prober = nil
    print(("Container Apps prober: %d requests ok, %d failed on %s during 2 deploys (canary, unhealthy) %s")
      :format(counts.ok, counts.failed, url, hoist.json.encode(counts.statuses)))
    t.ok(counts.ok > 0, "the prober ran")
    t.eq(counts.failed, 0, "failed requests on the app's hostname")

    -- SIGKILL once all traffic is on v3, then hoist rollback: v2 takes it back
    local streak = 0
    local run_id = web.kill_after_switch(S, SCRIPT, params(d.v3), function()
      streak = body_of(url .. "/") == "aca-v3" and streak + 1 or 0
      return streak >= 5
    end)
    t.match(web.lock_tag(S, RG, "containerapp", NAME) or "", "^" .. run_id:gsub("%p", "%%%0") .. ":",
      "the killed run left its ARM-side lock behind")
    local rb = web.rollback(S, run_id)
    t.eq(rb.code, 0, "rollback: " .. (rb.stderr or ""))
    web.took_over_dead(rb, "containerapp/" .. NAME, run_id)
    t.eq(web.lock_tag(S, RG, "containerapp", NAME), nil, "the rollback released the lock")
    for _ = 1, 5 do t.eq(body_of(url .. "/"), "aca-v2", "v2 serves again after the rollback") end
    for _, rev in ipairs(containerapp.revisions(ref)) do
      if ((rev.properties.template or {}).containers or {})[1].image == REPO .. "@" .. d.v3 then
        t.eq(rev.properties.active, false, "the killed run's revision was deactivated")
      end
    end

    web.scan(S, { S.auth.password, SECRET_ENV, E("HOIST_TEST_AZURE_CLIENT_SECRET") })
  end)
  if prober then pcall(prober.finish) end
  pcall(settings, 240)
  web.drop_group(S, RG)
  if not ok then error(err, 0) end
end, { timeout = 1200 })

-- Issue 13: with canary=30, a new revision whose /health answers 404 passed the canary check
-- (made on the app's hostname, which mostly reached the stable revision), then took all the
-- traffic. The check must reach the new revision itself, on its own hostname.
t.case("the canary is checked on the new revision's own hostname: a revision whose /health is 404 never gets all the traffic", function()
  web.need_emulator("Container Apps canary test")
  local S = web.session("hoist-azfix-aca")
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-azfix-aca/api"
  local rg, name = "hoist-azfix-canary-" .. RUN, "azfix-can-" .. RUN
  local good = web.build(S, repo, "good", "azfix-good", 8000, { "health" })
  local broken = web.build(S, repo, "nohealth", "azfix-nohealth", 8000)
  local ref = { resource_group = rg, name = name, subscription = S.subscription, credential = S.credential }
  local function params(digest)
    return { resource_group = rg, name = name, image = repo .. "@" .. digest, revision_timeout = 60, canary = 30,
             health_path = "/health" }
  end
  local ok, err = pcall(function()
    local r = web.run(S, SCRIPT, params(good))
    t.eq(r.code, 0, "first deploy: " .. (r.stderr or ""))
    local url = containerapp.url(containerapp.get(ref))
    t.eq(body_of(url .. "/health"), "azfix-good")

    r = web.run(S, SCRIPT, params(broken))
    local out = r.stderr .. r.stdout
    t.eq(r.code, 1, "a canary whose /health answers 404 must fail: " .. out)
    local bad_rev, bad_fqdn
    for _, rev in ipairs(containerapp.revisions(ref)) do
      if ((rev.properties.template or {}).containers or {})[1].image == repo .. "@" .. broken then
        bad_rev, bad_fqdn = rev.name, rev.properties.fqdn
        t.eq(rev.properties.active, false, "the broken revision was deactivated")
        t.eq(rev.properties.trafficWeight, 0)
      else
        t.eq(rev.properties.trafficWeight, 100, "the good revision has all the traffic")
      end
    end
    t.ok(bad_rev and bad_fqdn, "the broken revision exists and has a hostname of its own")
    t.eq(bad_fqdn:find(bad_rev .. ".", 1, true), 1, "the revision's hostname is <app>--<suffix>.<domain>: " .. bad_fqdn)
    t.ok(out:find(bad_rev .. " 30%", 1, true), "the canary step was taken: " .. out)
    t.ok(not out:find(bad_rev .. " 100%", 1, true), "the broken revision never got all the traffic: " .. out)
    t.ok(out:find("https://" .. bad_fqdn .. "/health", 1, true), "the check named the revision's own hostname: " .. out)
    t.match(out, "status 404")
    t.match(out, "containerapp.traffic_back")
    t.eq(body_of(url .. "/health"), "azfix-good", "the good revision serves")
  end)
  web.drop_group(S, rg)
  if not ok then error(err, 0) end
end, { timeout = 900 })

-- Issue 13: container_port=8000 with the app on 8080 waited out revision_timeout (600 s by
-- default) and reported "still Provisioned/None/Processing". The revision's console log names
-- the app's port: fail as soon as it does, naming both.
t.case("an app listening on another port than targetPort fails early, naming both", function()
  web.need_emulator("Container Apps port test")
  local S = web.session("hoist-azfix-acaport")
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-azfix-aca/port"
  local rg, name = "hoist-azfix-acaport-" .. RUN, "azfix-port-" .. RUN
  local dir = web.support.tmpdir("hoist-azfix-img")
  web.support.write(dir .. "/Dockerfile", ("FROM %s\nRUN mkdir -p /www && echo on-8080 > /www/index.html\nEXPOSE 8080\n"
    .. 'CMD ["sh", "-c", "echo app listening on 8080; exec httpd -f -p 8080 -h /www"]\n'):format(E("HOIST_TEST_BASE_IMAGE")))
  hoist.docker.build { context = dir, tags = { repo .. ":8080" } }
  local digest = hoist.docker.push { image = repo .. ":8080", config = S.config, auth = S.auth }.digest
  local ok, err = pcall(function()
    -- revision_timeout bounds the run before the fix (it waited all of it)
    local r = web.run(S, SCRIPT, { resource_group = rg, name = name, image = repo .. "@" .. digest, revision_timeout = 90,
                                   container_port = 8000, health_path = "/" })
    t.eq(r.code, 1, "a wrong port must fail: " .. r.stderr)
    t.match(r.stderr, 'the container listens on 8080 %(its log: "app listening on 8080"[^)]*%) but the ingress sends '
      .. "traffic to %(targetPort%) 8000: set container_port=8080")
    t.ok(not r.stderr:find("is still Provisioned", 1, true), "it did not wait out revision_timeout: " .. r.stderr)
  end)
  web.drop_group(S, rg)
  if not ok then error(err, 0) end
end, { timeout = 900 })

-- Issue 13: SIGTERM while the PATCH that creates a new revision is being polled. The
-- compensation containerapp.traffic_back ran at once, over an app whose operation was still
-- running: the new revision (created once that operation pulled its image) stayed active beside
-- the previous one. It must wait for the operation, then deactivate it: exit 130, all traffic
-- on v1, the new revision inactive. The emulator holds the app's operations for a few seconds
-- (lro_duration_for), so the SIGTERM lands while the PATCH's operation runs.
t.case("SIGTERM while the revision's PATCH is polled: traffic_back waits for the operation, v1 keeps all the traffic", function()
  web.need_emulator("Container Apps SIGTERM test")
  local support = web.support
  local S = web.session("hoist-azfix-acaterm")
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-azfix-aca/term"
  local rg, name = "hoist-azfix-acaterm-" .. RUN, "azfix-term-" .. RUN
  local v1 = web.build(S, repo, "v1", "azfix-v1", 8000)
  local v2 = web.build(S, repo, "v2", "azfix-v2", 8000)
  local ref = { resource_group = rg, name = name, subscription = S.subscription, credential = S.credential }
  local function argv(digest)
    local a = { support.hoist_bin(), "run", support.root .. "/" .. SCRIPT, "--state-dir", S.state, "--no-color",
      "--set", "resource_group=" .. rg, "--set", "name=" .. name, "--set", "image=" .. repo .. "@" .. digest,
      "--set", "revision_timeout=120" }
    a.env, a.timeout = S.env, 600
    return a
  end
  local ok, err = pcall(function()
    local r1 = hoist.exec(argv(v1))
    t.eq(r1.code, 0, "v1: " .. r1.stderr)
    local pidfile = S.state .. "/term.pid"
    local b = { "sh", "-c", 'echo $$ > "$0"; exec "$@"', pidfile }
    for _, x in ipairs(argv(v2)) do b[#b + 1] = x end
    b.env, b.timeout = S.env, 600
    -- this app's operations stay in progress for 8 s (others keep the emulator's 0.5 s): the
    -- SIGTERM and the compensation land inside the operation however slow the machine
    web.hold(name, 8)
    local task = hoist.spawn(function() return hoist.exec(b) end)
    local deadline, sent = hoist.now() + 300, false
    while hoist.now() < deadline and task:status() == "running" do
      local app = containerapp.get(ref)
      local p = app and app.properties or {}
      local image = (((p.template or {}).containers or {})[1] or {}).image or ""
      if image:find(v2, 1, true) and p.provisioningState ~= "Succeeded" then
        hoist.exec { "kill", "-TERM", support.must_read(pidfile):match("%d+"), check = true }
        sent = true
        break
      end
      hoist.sleep(0.1)
    end
    t.ok(sent, "SIGTERM was sent while the PATCH's operation ran")
    local r2 = task:wait()
    local out = r2.stdout .. r2.stderr
    t.eq(r2.code, 130, "cancelled and rolled back: " .. out)
    t.match(out, "an operation is in progress on it")
    t.eq(body_of(containerapp.url(containerapp.get(ref)) .. "/"), "azfix-v1")
    local seen = false
    for _, rev in ipairs(containerapp.revisions(ref)) do
      local image = ((rev.properties.template or {}).containers or {})[1].image
      if image == repo .. "@" .. v2 then
        seen = true
        t.eq(rev.properties.active, false, "the cancelled run's revision was deactivated")
        t.eq(rev.properties.trafficWeight or 0, 0)
      else
        t.eq(rev.properties.trafficWeight, 100, "v1 has all the traffic")
      end
    end
    t.ok(seen, "the cancelled run's revision was created by the operation it started")
  end)
  pcall(web.hold, name, 0)
  web.drop_group(S, rg)
  if not ok then error(err, 0) end
end, { timeout = 900 })

-- Issue 13: the default pull credential must keep working after tokens expire. Without
-- pull_username or registry_identity, container@1 on containerapp makes a user-assigned
-- identity `<name>-pull` with AcrPull on the ACR (the emulator pulls with it only when it holds
-- the role, as ACR does), attached to the app; a deployer that may not assign roles on the
-- registry (Contributor: the emulator's limited principal) keeps the previous default, saying why.
t.case("container@1 without a pull credential: a user-assigned identity with AcrPull pulls from ACR; a Contributor keeps the old default, saying why", function()
  web.need_emulator("Container Apps pull identity test")
  local lim = web.limited_principal("containerapp pull identity test")
  local S = web.session("hoist-azperms")
  local rg, app = "hoist-azperms-" .. RUN, "azperms-" .. RUN
  local repo = (E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002") .. "/hoist-azperms/api"
  local assignment
  local ok, err = pcall(function()
    hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", credential = S.credential, subscription = S.subscription }
    local registry = hoist.azure.acr.ensure { name = "azperms" .. RUN, resource_group = rg, location = "westeurope",
                                              credential = S.credential, subscription = S.subscription }
    local function run(name, env, dry)
      return web.container1(S, { target = "containerapp", resource_group = rg, location = "westeurope", name = name,
                                 image = repo, tag = RUN, revision_timeout = 60 }, env, dry)
    end
    local r, out = run(app)
    t.eq(r.code, 0, out)
    local ident = hoist.azure.resource_id(S.subscription, rg, "Microsoft.ManagedIdentity/userAssignedIdentities", app .. "-pull")
    t.match(out, "pulls .- with the user%-assigned identity " .. app:gsub("%-", "%%-") .. "%-pull %(principal [%x%-]+%) "
      .. "with AcrPull on registry azperms" .. RUN)
    local got = containerapp.get { resource_group = rg, name = app, subscription = S.subscription, credential = S.credential }
    t.eq(got.properties.configuration.registries[1].identity, ident, "the app pulls with it")
    t.ok(got.identity.userAssignedIdentities[ident], "it is assigned to the app")
    local principal = hoist.azure.request { path = ident, credential = S.credential }.body.properties.principalId
    t.eq(hoist.azure.identity.missing { principal_id = principal, need = { { role = "AcrPull", scope = registry.id } },
      credential = S.credential, subscription = S.subscription }, {}, "it holds AcrPull on the registry")
    -- a second deploy reuses it (no second identity, no second assignment)
    r, out = run(app)
    t.eq(r.code, 0, out)
    local n = 0
    for _, a in ipairs(hoist.azure.list { path = registry.id .. "/providers/Microsoft.Authorization/roleAssignments",
        credential = S.credential, query = { ["$filter"] = ("principalId eq '%s'"):format(principal) } }) do
      if tostring(a.properties.scope):lower() == registry.id:lower() then n = n + 1 end
    end
    t.eq(n, 1, "one AcrPull assignment")
    -- Contributor on the group may make the app but not give a role on the registry
    assignment = hoist.azure.identity.assign { principal_id = lim.oid, role = "Contributor", credential = S.credential,
      subscription = S.subscription, scope = hoist.azure.resource_id(S.subscription, rg) }.id
    r, out = run(app .. "b", { AZURE_CLIENT_ID = lim.id, AZURE_CLIENT_SECRET = lim.secret }, true)
    t.eq(r.code, 0, out)
    t.match(out, "pulls .- with no credential %(as before: the registry must allow it%): the deployer may not make a "
      .. "pull identity %(it lacks Microsoft%.Authorization/roleAssignments/write at " .. registry.id:gsub("%-", "%%-"))
  end)
  if assignment then pcall(hoist.azure.request, { method = "DELETE", path = assignment, credential = S.credential }) end
  web.drop_group(S, rg)
  hoist.exec { "sh", "-c", ("docker images -q --filter reference='%s' | xargs -r docker rmi -f"):format(repo .. "*") }
  if not ok then error(err, 0) end
end, { timeout = 900 })
