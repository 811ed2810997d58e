-- hoist.test slow
-- The aci target and the ARM-side deploy lock (hoist.targets.azure) against the Azure emulator:
-- the lock's tag on the resource group, waiting and conflict naming the holder, two takers at
-- once (one wins), the take-over of an expired lock and of one whose process on this host is
-- gone, re-entry within a run, release.
-- Skipped loudly without the emulator's variables; failed instead when CI=true.
local t = require "hoist.test"
local T = require "hoist.targets.azure"

local E = os.getenv
local CONTROL = E("HOIST_TEST_AZURE_CONTROL")
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
-- The service hostnames answer through the emulator's proxy, which hoist reaches through the
-- standard proxy variables of its environment: cases that need it run in a child `hoist test`
-- of this file with HTTP_PROXY set (HOIST_TEST_ACI_CHILD=<case>: only that case runs there).
local CHILD = E("HOIST_TEST_ACI_CHILD")
if CHILD == "" then CHILD = nil end
local SLOW = { timeout = 1200 }
local function in_proxy_child(name, body)
  return function()
    if CHILD then
      if CHILD ~= name then t.skip("another case's child") end
      return body()
    end
    if not CONTROL or CONTROL == "" then return body() end -- skips (or fails under CI) there
    local r = support.run_hoist({ "test", support.here .. "/aci_target_test.lua" }, { timeout = 1100, env = {
      HOIST_TEST_ACI_CHILD = name, HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost" } })
    if r.code ~= 0 then error("the child run with HTTP_PROXY failed:\n" .. r.stdout .. r.stderr, 0) end
    io.stdout:write((r.stdout:gsub("[^\n]*\n", function(l) return (l:match("^ok ") or l:match("^     prober")) and "     child: " .. l or "" end)))
  end
end
local function parent_only(body)
  return function() if CHILD then t.skip("runs in the parent") end return body() end
end

local cred
local function need_emulator()
  if not CONTROL or CONTROL == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** aci target test skipped *** " .. WHY)
  end
  cred = cred or hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
end

local function group(suffix) return "hoist-aci-" .. RUN .. "-" .. suffix end

local function lock_opts(rg, run, extra)
  local o = { target = "aci", service = "web", run = run, resource_group = rg, location = "westeurope",
              subscription = SUB, credential = cred, timeout = 0 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function tags_of(rg)
  return (hoist.azure.resource_groups.get { name = rg, subscription = SUB, credential = cred } or {}).tags or {}
end

local function drop(rg)
  pcall(hoist.azure.request, { method = "DELETE", path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, rg),
                               credential = cred, poll_interval = 0.2 })
end

t.case("the lock is a tag on the resource group, released at the end; other tags stay", parent_only(function()
  need_emulator()
  local rg = group("tag")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", tags = { team = "a" }, subscription = SUB,
                                       credential = cred }
  local h = T.lock(lock_opts(rg, "run-1"))
  t.eq(h.key, "aci/web")
  local v = tags_of(rg)["hoist-lock.aci.web"]
  t.match(v, "^run%-1:[^:]+:%d+:%d+:%d+$") -- run:host:pid:since:expiry
  t.eq(tags_of(rg).team, "a")
  -- the same run takes it again without waiting; it goes with the last release
  local again = T.lock(lock_opts(rg, "run-1"))
  again:release()
  t.eq(tags_of(rg)["hoist-lock.aci.web"], v)
  h:release()
  h:release()
  t.eq(tags_of(rg)["hoist-lock.aci.web"], nil)
  t.eq(tags_of(rg).team, "a")
  drop(rg)
end))

t.case("another run waits, naming the holder, then fails with conflict", parent_only(function()
  need_emulator()
  local rg = group("wait")
  local h = T.lock(lock_opts(rg, "run-a"))
  local e = t.raises(function() T.lock(lock_opts(rg, "run-b", { timeout = 0.5 })) end, "conflict",
    "aci/web is being deployed by run run%-a %(host [^,]+, pid %d+")
  t.match(e.message, "hoist%-lock%.aci%.web on resource group " .. rg:gsub("%-", "%%-"))
  t.eq(e.details.holder.run, "run-a")
  -- another service of the same group is not held up
  local other = T.lock(lock_opts(rg, "run-b", { service = "api" }))
  other:release()
  h:release()
  local b = T.lock(lock_opts(rg, "run-b"))
  b:release()
  drop(rg)
end))

t.case("two runs taking it at once: exactly one holds it", parent_only(function()
  need_emulator()
  local rg = group("race")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", subscription = SUB, credential = cred }
  local results = { hoist.parallel(function()
    local ok, h = pcall(T.lock, lock_opts(rg, "run-x"))
    return ok and h or false
  end, function()
    local ok, h = pcall(T.lock, lock_opts(rg, "run-y"))
    return ok and h or false
  end) }
  local winners = {}
  for _, h in ipairs(results) do if h then winners[#winners + 1] = h end end
  t.eq(#winners, 1, "one of two concurrent takers holds the lock")
  t.eq(tags_of(rg)["hoist-lock.aci.web"]:match("^([^:]+):"), winners[1].run)
  winners[1]:release()
  drop(rg)
end))

t.case("a lock its holder let expire is taken over, with a warning naming it", parent_only(function()
  need_emulator()
  local rg = group("expired")
  hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", subscription = SUB, credential = cred }
  hoist.azure.request { method = "PATCH", path = ("/subscriptions/%s/resourceGroups/%s"):format(SUB, rg), credential = cred,
                        body = { tags = { ["hoist-lock.aci.web"] = "run-dead:otherhost:4242:" .. (os.time() - 5) } } }
  local h = T.lock(lock_opts(rg, "run-new"))
  t.match(tags_of(rg)["hoist-lock.aci.web"], "^run%-new:")
  h:release()
  drop(rg)
end))

t.case("a holder on this host whose process is gone (kill -9) is taken over at once; a live one is waited for",
  parent_only(function()
  need_emulator()
  local rg = group("dead")
  local mine = T.lock(lock_opts(rg, "run-probe"))
  local host = tags_of(rg)["hoist-lock.aci.web"]:match("^run%-probe:([^:]+):")
  mine:release()
  local function holder(run, pid)
    hoist.azure.request { method = "PATCH", path = ("/subscriptions/%s/resourceGroups/%s"):format(SUB, rg), credential = cred,
      body = { tags = { ["hoist-lock.aci.web"] = ("%s:%s:%d:%d"):format(run, host, pid, os.time() + 600) } } }
  end
  -- a live process on this host (pid 1), not expired: waited for, then conflict naming it
  holder("run-live", 1)
  local e = t.raises(function() T.lock(lock_opts(rg, "run-new", { timeout = 0.2 })) end, "conflict",
    "aci/web is being deployed by run run%-live %(host " .. host:gsub("%p", "%%%0") .. ", pid 1,")
  t.eq(e.details.holder.pid, 1)
  -- a process that has exited: its lock is taken over without waiting for the expiry
  local dead = tonumber(hoist.exec({ "sh", "-c", "echo $$", check = true }).stdout:match("%d+"))
  t.eq(hoist.fs.pid_alive(dead), false)
  holder("run-killed", dead)
  local h = T.lock(lock_opts(rg, "run-new", { timeout = 0 }))
  t.match(tags_of(rg)["hoist-lock.aci.web"], "^run%-new:")
  h:release()
  drop(rg)
end))

t.case("SIGTERM to a run holding the lock: exit 130, the tag is gone at once, no 'could not release'", parent_only(function()
  need_emulator()
  local rg = group("term")
  local r = support.sigterm_holder("aci", { service = "web", resource_group = rg, location = "westeurope", subscription = SUB },
    function() t.match(tags_of(rg)["hoist-lock.aci.web"] or "", "^%d+%-%d+%-%x+:", "the run holds the tag") end,
    { AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS") })
  t.eq(r.code, 130, r.output)
  t.match(r.output, "received SIGTERM")
  t.eq(tags_of(rg)["hoist-lock.aci.web"], nil, "the tag is removed before the run exits, not left to expire\n" .. r.output)
  t.ok(not r.output:find("could not release", 1, true), r.output)
  -- the next run takes it without waiting
  T.lock(lock_opts(rg, "run-after")):release()
  drop(rg)
end))

-- A run of a pipeline whose deploy stage does what a target's first deploy does before it
-- fails: the deploy lock, then hoist.targets.azure.prepare (which creates the group when
-- missing), then, with `plan`, a resource in the group; then the stage fails. Returns the
-- run's status and what its rollback ran.
local function failed_first_deploy(rg, plan)
  local dir = support.tmpdir("hoist-aci-first")
  support.write(dir .. "/first.lua", ([[
local o = hoist.json.decode(%q)
local held
local r = hoist.pipeline.run({ name = "first", version = "1.0.0", stages = { { name = "deploy", run = function(ctx)
  held = require("hoist.targets").lock("aci", { service = "web", resource_group = o.rg, location = "westeurope",
                                                subscription = o.sub, run = ctx.run.id, timeout = 0 })
  require("hoist.targets.azure").prepare("targets.aci", { service = "web", resource_group = o.rg, location = "westeurope",
                                                         subscription = o.sub, ctx = ctx })
  if o.plan then
    hoist.azure.request { method = "PUT", api_version = "2023-12-01",
      path = ("/subscriptions/%%s/resourceGroups/%%s/providers/Microsoft.Web/serverfarms/plan"):format(o.sub, o.rg),
      body = { location = "westeurope", sku = { name = "B1" }, kind = "linux", properties = { reserved = true } } }
  end
  hoist.error { code = "rollout_failed", message = "the first deploy failed" }
end } }, summary = function() if held then held:release() end end }, {}, { raise = false, state_dir = %q })
print(hoist.json.encode { status = r.status, rolled_back = r.rolled_back })
]]):format(hoist.json.encode { rg = rg, sub = SUB, plan = plan }, dir .. "/state"))
  local r = support.run_hoist({ "run", dir .. "/first.lua", "--no-color" },
    { env = { AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS") }, timeout = 300 })
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.code, 0, r.stdout .. r.stderr)
  return hoist.json.decode(r.stdout:match("(%b{})%s*$")), r.stdout .. r.stderr
end

t.case("a failed first deploy deletes the empty resource group it created; a group it did not create or that is not empty stays",
  parent_only(function()
  need_emulator()
  local function exists(rg) return hoist.azure.resource_groups.get { name = rg, subscription = SUB, credential = cred } ~= nil end
  -- created by the run, empty: deleted by its rollback, and the lock's release finds nothing to do
  local rg = group("first")
  local r, out = failed_first_deploy(rg)
  t.eq(r.status, "rolled_back", out)
  t.eq(r.rolled_back, { "azure.delete_empty_group (deploy)" })
  t.eq(exists(rg), false, "the empty group the failed first deploy created is gone\n" .. out)
  t.ok(not out:find("could not release", 1, true), out)
  -- there before the run: it stays, and nothing of the run is left on it
  local before = group("before")
  hoist.azure.resource_groups.ensure { name = before, location = "westeurope", subscription = SUB, credential = cred }
  r, out = failed_first_deploy(before)
  t.eq(r.status, "failed", out)
  t.eq(exists(before), true)
  t.eq(tags_of(before)["hoist-lock.aci.web"], nil)
  drop(before)
  -- created by the run but not empty: it stays, the log says why
  hoist.azure.providers.ensure { namespace = "Microsoft.Web", subscription = SUB, credential = cred }
  local full = group("full")
  r, out = failed_first_deploy(full, true)
  t.eq(r.status, "rolled_back", out)
  t.eq(exists(full), true, "a group holding a resource is never deleted")
  t.match(out, "keeping resource group " .. full:gsub("%-", "%%-") .. ": it holds 1 resource%(s%): Microsoft.Web/serverfarms/plan")
  drop(full)
  -- created by the run, but its resources cannot be listed (403): it stays, with a warning,
  -- and the rollback is not a failed one
  local blind = group("blind")
  hoist.http.request { method = "POST", url = CONTROL .. "/faults", check = true, safe = true, json = {
    server = "arm", status = 403, count = 1, method = "GET", match = blind .. "/resources", code = "AuthorizationFailed" } }
  r, out = failed_first_deploy(blind)
  t.eq(r.status, "rolled_back", out)
  t.eq(exists(blind), true)
  t.match(out, "keeping resource group " .. blind:gsub("%-", "%%-") .. ": could not list its resources")
  drop(blind)
end))

t.case("bad lock options are named", parent_only(function()
  need_emulator()
  t.raises(function() T.lock(lock_opts(nil, "r", { resource_group = false })) end, "invalid_argument", "resource_group")
  t.raises(function() T.lock(lock_opts("rg", "r", { target = "a/b" })) end, "invalid_argument", "target must be a name")
  t.raises(function() T.lock(lock_opts("rg", "r", { timeout = -1 })) end, "invalid_argument", "timeout")
  t.raises(function() T.lock(lock_opts("rg", "r", { service = "bad name" })) end, "invalid_argument", "resource name")
  t.raises(function() T.prepare("targets.aci", { service = "web", resource_group = group("nowhere"), subscription = SUB,
                                                 credential = cred }) end, "invalid_argument", "give location= to create it")
end))

---------------------------------------------------------------- the target

local targets = require "hoist.targets"
local IMAGE = "127.0.0.1:5002/hoist-aci-test/web:1"
local HTTPD = { "sh", "-c", "echo hello-$GREETING > /tmp/index.html; echo ok > /tmp/health; exec httpd -f -p 8000 -h /tmp" }

t.case("the aci target keeps the contract of hoist.targets", parent_only(function()
  t.ok(targets.get("aci"))
  t.eq(targets.check("aci", targets.get("aci")), {})
  local aci_t = require "hoist.targets.aci"
  for _, k in ipairs { "subscription", "resource_group", "location", "name", "credential", "registry_identity" } do
    t.ok(aci_t.options[k], "the Azure option " .. k)
  end
end))

local function push_image()
  local r = hoist.exec { "skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
    E("HOIST_TEST_REGISTRY_TOKEN_USER") .. ":" .. E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"),
    "docker-daemon:" .. (E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"), "docker://" .. IMAGE }
  if r.code ~= 0 then error("cannot push the test image: " .. r.stderr) end
end

local function aci_group_run(rg)
  local g = hoist.azure.aci.get { name = "web", resource_group = rg, subscription = SUB, credential = cred }
  return g and (g.tags or {})["hoist-run"]
end

local function via_proxy(url)
  return hoist.exec { "curl", "-s", "-m", "5", "-x", E("HOIST_TEST_AZURE_PROXY"), url }.stdout
end

t.case("deploy, redeploy, a crashing version and an image that cannot be pulled put back at once, status, remove",
  in_proxy_child("target", function()
  need_emulator()
  push_image()
  local target = require "hoist.targets.aci"
  local rg = group("target")
  local state_dir = os.tmpname() .. ".d"
  local base = { service = "web", image = IMAGE, resource_group = rg, location = "westeurope", subscription = SUB,
                 credential = cred, container_port = 8000, health_path = "/health", dns_label = "web-" .. RUN,
                 memory = 0.5, command = HTTPD, registry_username = E("HOIST_TEST_REGISTRY_TOKEN_USER"),
                 registry_password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"), state_dir = state_dir, run = "run-1",
                 verify = { retries = 20, interval = 0.5, timeout = 5 }, env = { GREETING = "v1" },
                 secret_env = { API_KEY = "aci-target-secure-1" } }
  local function with(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  -- an image that cannot be pulled: refused while Azure still retries the pull (for minutes),
  -- and the group this first deploy created is gone, its operation with it
  local NOPULL = "127.0.0.1:5002/hoist-aci-test/none:404"
  local pat = "the new version of web did not start %(container group web did not start: the image "
    .. NOPULL:gsub("%p", "%%%0") .. " of container web cannot be pulled: .*Failed to pull image .*Check the image reference"
  -- (hoist.timeout: a bound, not a measure: Azure, and the emulator, retry the pull for 600 s; a
  -- deploy or a compensation that waited for the operation would end only then)
  local function bounded(extra) return function() hoist.timeout(300, target.deploy, with(extra)) end end
  local e = t.raises(bounded { run = "run-0", image = NOPULL }, "rollout_failed", pat .. ".*the group it created was deleted")
  t.eq(e.details.reason, "image_pull")
  t.eq(hoist.azure.aci.get { name = "web", resource_group = rg, subscription = SUB, credential = cred }, nil)
  local r1 = target.deploy(base)
  t.eq(r1.previous, nil)
  t.eq(r1.url, ("http://web-%s.westeurope.azurecontainer.io:8000"):format(RUN))
  t.match(via_proxy(r1.url .. "/"), "hello%-v1")
  local r2 = target.deploy(with { run = "run-2", env = { GREETING = "v2" } })
  t.eq(r2.previous, IMAGE)
  t.match(via_proxy(r2.url .. "/"), "hello%-v2")
  -- a version that crashes: refused with the reason and evidence; v2 runs again
  local e = t.raises(function()
    target.deploy(with { run = "run-3", command = { "sh", "-c", "echo crashing-now; exit 4" }, env = { GREETING = "v3" } })
  end, "rollout_failed", "the new version of web did not start .*web %(" .. IMAGE:gsub("%p", "%%%0") .. "%) runs again")
  t.eq(e.details.reason, "crash")
  t.match(e.details.logs, "crashing%-now")
  t.match(via_proxy(r2.url .. "/"), "hello%-v2")
  -- the same for an update: the previous definition is put back without waiting out Azure's retries
  e = t.raises(bounded { run = "run-4", image = NOPULL, env = { GREETING = "v4" } }, "rollout_failed",
    pat .. ".*web %(" .. IMAGE:gsub("%p", "%%%0") .. "%) runs again")
  t.eq(e.details.reason, "image_pull")
  t.match(via_proxy(r2.url .. "/"), "hello%-v2")
  local st = target.status { service = "web", resource_group = rg, subscription = SUB, credential = cred, container_port = 8000 }
  t.eq(st.serving, true)
  t.eq(st.group.tags["hoist-run"], "run-2")
  -- secure values never come back from Azure, and the kept copy is 0600
  local kept = state_dir .. "/aci/" .. rg .. "--web/current.json"
  t.eq(hoist.exec { "stat", "-c", "%a", kept }.stdout:match("%d+"), "600")
  local removed = target.remove { service = "web", resource_group = rg, subscription = SUB, credential = cred, state_dir = state_dir }
  t.eq(removed.removed, { "web" })
  t.eq(target.remove { service = "web", resource_group = rg, subscription = SUB, credential = cred, state_dir = state_dir }.removed, {})
  t.eq(target.status { service = "web", resource_group = rg, subscription = SUB, credential = cred }.serving, false)
  drop(rg)
end), SLOW)

-- Issue 13: the app on 8080, the group opening 8000 failed after about 44 s with "did not start
-- (... Empty reply from server)". The app's log names its port: fail as soon as the group runs,
-- naming both ports.
t.case("an app listening on another port than the group opens fails at once, naming both", in_proxy_child("port", function()
  need_emulator()
  push_image()
  local target = require "hoist.targets.aci"
  local rg = "hoist-azfix-aciport-" .. RUN
  local ok, err = pcall(function()
    local e = t.raises(function()
      target.deploy { service = "web", image = IMAGE, resource_group = rg, location = "westeurope", subscription = SUB,
        credential = cred, container_port = 8000, health_path = "/health", dns_label = "azfix-port-" .. RUN, memory = 0.5,
        command = { "sh", "-c", "echo ok > /tmp/health; echo app listening on 8080; exec httpd -f -p 8080 -h /tmp" },
        registry_username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), registry_password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD"),
        state_dir = os.tmpname() .. ".d", run = "run-port", verify = { retries = 20, interval = 1, timeout = 5 } }
    end, "rollout_failed",
      'the container listens on 8080 %(its log: "app listening on 8080"%) but the container group opens 8000: set container_port=8080')
    t.eq(e.details.reason, "port")
    t.match(e.message, "the group it created was deleted")
    t.eq(target.status { service = "web", resource_group = rg, subscription = SUB, credential = cred }.serving, false)
  end)
  drop(rg)
  if not ok then error(err, 0) end
end), SLOW)

-- Issue 13: SIGTERM while the PUT of a new version is being polled. The compensation
-- aci.restore got 409 AnotherOperationInProgress (the operation still ran on Azure's side)
-- and was not retried: exit 3 with the new version serving. It must wait for the operation,
-- then put the previous version back: exit 130, v1 serving. The new image is large and not in
-- the local engine, so the emulator's operation (its pull) outlives the SIGTERM.
local TERM_PIPELINE = [[
local target = require "hoist.targets.aci"
return hoist.pipeline.define { name = "azfix-aci-term", version = "1.0.0", requires = ">=0.1 <2",
  params = { image = { type = "string", required = true }, resource_group = { type = "string", required = true },
             dns_label = { type = "string", required = true }, greeting = { type = "string", required = true } },
  stages = { { name = "deploy", timeout = 600, run = function(ctx)
    local p = ctx.params
    return target.deploy { ctx = ctx, service = "web", image = p.image, resource_group = p.resource_group,
      location = "westeurope", container_port = 8000, health_path = "/health", dns_label = p.dns_label, memory = 0.5,
      command = { "sh", "-c", "echo hello-$GREETING > /tmp/index.html; echo ok > /tmp/health; exec httpd -f -p 8000 -h /tmp" },
      env = { GREETING = p.greeting }, registry_username = os.getenv("REGISTRY_USERNAME"),
      registry_password = os.getenv("REGISTRY_PASSWORD"), verify = { retries = 20, interval = 0.5, timeout = 5 } }
  end } } }
]]

t.case("SIGTERM while the PUT is polled: the restore waits for the operation in flight, then v1 serves", parent_only(function()
  need_emulator()
  support.need_docker("the aci SIGTERM test")
  push_image()
  local rg, label = "hoist-azfix-aciterm-" .. RUN, "azfix-term-" .. RUN
  local url = ("http://%s.westeurope.azurecontainer.io:8000"):format(label)
  local dir = support.tmpdir("hoist-azfix-term")
  support.write(dir .. "/pipeline.lua", TERM_PIPELINE)
  -- v2: the base image with 80 MB of its own, pushed, then removed from the engine
  local big = "127.0.0.1:5002/hoist-azfix-aciterm/web:" .. RUN
  support.write(dir .. "/Dockerfile", ("FROM %s\nRUN head -c 80000000 /dev/urandom > /big\n"):format(
    E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"))
  hoist.docker.build { context = dir, tags = { big } }
  local cfg = support.tmpdir("hoist-azfix-term-docker")
  local auth = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }
  hoist.docker.login { registry = "127.0.0.1:5002", username = auth.username, password = auth.password, config = cfg }
  local digest = hoist.docker.push { image = big, config = cfg, auth = auth }.digest
  hoist.exec { "docker", "rmi", "-f", big, check = true }
  local state = dir .. "/state"
  local env = { AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = SUB,
    HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost",
    REGISTRY_USERNAME = auth.username, REGISTRY_PASSWORD = auth.password }
  local function argv(image, greeting)
    return { support.hoist_bin(), "run", dir .. "/pipeline.lua", "--state-dir", state, "--no-color",
      "--set", "image=" .. image, "--set", "resource_group=" .. rg, "--set", "dns_label=" .. label,
      "--set", "greeting=" .. greeting }
  end
  local ok, err = pcall(function()
    local a = argv(IMAGE, "v1")
    a.env, a.timeout = env, 600
    local r1 = hoist.exec(a)
    t.eq(r1.code, 0, "v1: " .. r1.stderr)
    t.match(via_proxy(url .. "/"), "hello%-v1")
    local v1_run = aci_group_run(rg)

    local pidfile = dir .. "/pid"
    local b = { "sh", "-c", 'echo $$ > "$0"; exec "$@"', pidfile }
    for _, x in ipairs(argv("127.0.0.1:5002/hoist-azfix-aciterm/web@" .. digest, "v2")) do b[#b + 1] = x end
    b.env, b.timeout = env, 600
    local task = hoist.spawn(function() return hoist.exec(b) end)
    -- the PUT is accepted (the group carries the new run's tag) and its operation still runs
    local deadline, sent = hoist.now() + 300, false
    while hoist.now() < deadline and task:status() == "running" do
      local g = hoist.azure.aci.get { name = "web", resource_group = rg, subscription = SUB, credential = cred }
      local p = g and g.properties or {}
      if g and (g.tags or {})["hoist-run"] ~= v1_run and p.provisioningState ~= "Succeeded" then
        hoist.exec { "kill", "-TERM", support.must_read(pidfile):match("%d+"), check = true }
        sent = true
        break
      end
      hoist.sleep(0.1)
    end
    t.ok(sent, "SIGTERM was sent while the PUT's operation ran")
    local r2 = task:wait()
    local out = r2.stdout .. r2.stderr
    t.eq(r2.code, 130, "cancelled and rolled back: " .. out)
    t.match(out, "an operation is in progress on it")
    t.match(via_proxy(url .. "/"), "hello%-v1")
    t.eq(aci_group_run(rg), v1_run, "the group runs v1's definition again")
  end)
  drop(rg)
  -- the emulator's pull left it by digest, used until the group's container is gone
  pcall(hoist.exec, { "docker", "rmi", "-f", big })
  for _ = 1, 20 do
    local r = hoist.exec { "docker", "rmi", "-f", "127.0.0.1:5002/hoist-azfix-aciterm/web@" .. tostring(digest) }
    if r.code == 0 or (r.stderr or ""):find("No such image", 1, true) then break end
    hoist.sleep(1)
  end
  if not ok then error(err, 0) end
end), SLOW)

-- Issue 13: with the registry's Azure credential and no registry_username, the group's pull
-- password was an ACR refresh token (valid about 3 hours): a restart after that cannot pull.
-- The default is now the service principal's own secret; a refresh token given is refused.
local PULL_PIPELINE = [[
local target = require "hoist.targets.aci"
return hoist.pipeline.define { name = "azfix-aci-pull", version = "1.0.0", requires = ">=0.1 <2",
  params = { image = { type = "string", required = true }, resource_group = { type = "string", required = true } },
  stages = { { name = "deploy", run = function(ctx)
    local p = ctx.params
    hoist.registry.credentials { host = hoist.image.parse(p.image).registry, acr = hoist.azure.credential() }
    return target.deploy { ctx = ctx, service = "web", image = p.image, resource_group = p.resource_group,
      location = "westeurope", container_port = 8000, memory = 0.5, registry_username = os.getenv("PULL_USER"),
      registry_password = os.getenv("PULL_PASSWORD") }
  end } } }
]]

t.case("the default pull credential outlives the deploy: never an ACR refresh token", parent_only(function()
  need_emulator()
  local rg = "hoist-azfix-acipull-" .. RUN
  local dir = support.tmpdir("hoist-azfix-pull")
  support.write(dir .. "/pipeline.lua", PULL_PIPELINE)
  local env = { AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = SUB }
  local function run(extra)
    local argv = { support.hoist_bin(), "run", dir .. "/pipeline.lua", "--state-dir", dir .. "/state", "--no-color",
                   "--dry-run", "--set", "image=" .. IMAGE, "--set", "resource_group=" .. rg }
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    argv.env, argv.timeout = e, 300
    return hoist.exec(argv)
  end
  local ok, err = pcall(function()
    hoist.azure.resource_groups.ensure { name = rg, location = "westeurope", subscription = SUB, credential = cred }
    local r = run()
    t.eq(r.code, 0, "the dry run: " .. r.stderr)
    -- the planned PUT of the group, from the run's events
    local events = hoist.exec({ "sh", "-c", "cat " .. dir .. "/state/runs/*/events.jsonl" }).stdout
    local creds
    for line in events:gmatch("[^\n]+") do
      local okj, ev = pcall(hoist.json.decode, line)
      local body = okj and type(ev) == "table" and type(ev.fields) == "table" and ev.fields.body
      if type(body) == "table" and type(body.properties) == "table" and body.properties.imageRegistryCredentials then
        creds = body.properties.imageRegistryCredentials
      end
    end
    t.ok(creds, "the planned PUT of the group is in the events: " .. events:sub(1, 2000))
    t.eq(creds[1].server, "127.0.0.1:5002")
    t.eq(creds[1].username, E("HOIST_TEST_AZURE_CLIENT_ID"), "the service principal's own, not the refresh token user")
    -- given, a refresh token is refused with the reason
    r = run { PULL_USER = "00000000-0000-0000-0000-000000000000", PULL_PASSWORD = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln" }
    t.eq(r.code, 1, "refused: " .. r.stderr)
    t.match(r.stderr, "it is an ACR refresh token %(user 00000000%-0000%-0000%-0000%-000000000000%), valid about 3 hours")
  end)
  drop(rg)
  if not ok then error(err, 0) end
end))

---------------------------------------------------------------- the scenario end to end

local CLEAN = support.root .. "/tests/fixtures/trivy/hoist-clean.json"

t.case("the ACI scenario end to end: build, scan, push to ACR with AZURE_CREDENTIALS, deploy, verify, "
  .. "a bad version rolled back, kill -9 then hoist rollback, SIGTERM releases the lock, no secret in any output",
  in_proxy_child("e2e", function()
  need_emulator()
  local rg, state = group("e2e"), os.tmpname() .. ".state"
  local label = "e2e-" .. RUN
  local url = ("http://%s.westeurope.azurecontainer.io:8000"):format(label)
  local secure = "aci-e2e-secure-value-" .. RUN
  -- the push logs in with AZURE_CREDENTIALS (registry_auth=azure); ACI keeps a pull credential
  -- made for pulling (pull_username: the token registry's user, standing for an ACR token with a pull-only scope
  -- map): the service principal's own secret, the default, is not accepted by the emulated
  -- registry's token server
  local env = { AZURE_CREDENTIALS = E("HOIST_TEST_AZURE_CREDENTIALS"), HOIST_TRIVY = support.root .. "/tests/tools/trivy",
                HOIST_TRIVY_FIXTURE = CLEAN, HOIST_SECRET_ENV = "API_KEY=" .. secure,
                HOIST_PULL_USERNAME = E("HOIST_TEST_REGISTRY_TOKEN_USER"),
                HOIST_PULL_PASSWORD = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }
  local function run(version, healthy, extra_env, background_pid)
    local argv = { support.hoist_bin(), "run", "container@1", "--params-file", support.root .. "/examples/aci/params.json",
                   "--state-dir", state, "--no-color", "--set", "image=127.0.0.1:5002/hoist-aci-e2e-" .. RUN .. "/web",
                   "--set", "resource_group=" .. rg, "--set", "dns_label=" .. label, "--set", "tag=" .. version,
                   "--set", "context=" .. support.root .. "/examples/app", "--set", "verify_timeout=20",
                   "--set", ("build_args=BASE_IMAGE=%s,VERSION=%s,HEALTHY=%s"):format(E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest",
                     version, healthy and "true" or "false") }
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra_env or {}) do e[k] = v end
    if background_pid then
      argv = { "sh", "-c", 'echo $$ > "$0"; exec "$@"', background_pid, unpack(argv) }
    end
    argv.env, argv.timeout = e, 900
    return hoist.exec(argv)
  end
  -- a prober: GET / on the service hostname every 0.2 s while a deploy runs
  local function probed(fn)
    local stats, stop = { ok = 0, failed = 0 }, false
    local task = hoist.spawn(function()
      while not stop do
        local body = via_proxy(url .. "/version")
        if body:match("^v%d") then stats.ok = stats.ok + 1 else stats.failed = stats.failed + 1 end
        hoist.sleep(0.2)
      end
    end)
    local r = fn()
    stop = true
    task:wait()
    return r, stats
  end
  local function show(r) return ("exit %d\n--- stdout\n%s\n--- stderr\n%s"):format(r.code, r.stdout, r.stderr) end
  local outputs = {}

  local r1 = run("v1", true)
  outputs[#outputs + 1] = r1.stdout .. r1.stderr
  t.eq(r1.code, 0, show(r1))
  t.match(via_proxy(url .. "/version"), "^v1")
  local r2, s2 = probed(function() return run("v2", true) end)
  outputs[#outputs + 1] = r2.stdout .. r2.stderr
  t.eq(r2.code, 0, show(r2))
  t.match(via_proxy(url .. "/version"), "^v2")
  print(("     prober, deploy v1 -> v2: %d answered, %d failed (ACI replaces the container in place)"):format(s2.ok, s2.failed))
  local r3, s3 = probed(function() return run("v3", false) end)
  outputs[#outputs + 1] = r3.stdout .. r3.stderr
  t.eq(r3.code, 1, show(r3))
  t.match(r3.stderr .. r3.stdout, "did not start")
  t.match(via_proxy(url .. "/version"), "^v2")
  print(("     prober, bad v3 rolled back to v2: %d answered, %d failed"):format(s3.ok, s3.failed))

  -- kill -9 after the PUT of v4, then `hoist rollback <id>` from a new process
  local pidfile = os.tmpname()
  local bg = hoist.spawn(function() return run("v4", true, { HOIST_TEST_PAUSE_AFTER_PUT = "60" }, pidfile) end)
  local deadline = hoist.now() + 240
  while not via_proxy(url .. "/version"):match("^v4") do
    if hoist.now() > deadline then error("v4 never served") end
    hoist.sleep(0.5)
  end
  local pid = (support.read(pidfile) or ""):match("%d+")
  hoist.exec { "kill", "-9", pid }
  bg:wait()
  local runs = hoist.exec({ "sh", "-c", "ls -t " .. state .. "/runs | head -1" }).stdout:match("%S+")
  local rb = support.run_hoist({ "rollback", runs, "--state-dir", state, "--no-color" },
    { env = env, timeout = 600 })
  outputs[#outputs + 1] = rb.stdout .. rb.stderr
  t.eq(rb.code, 0, show(rb))
  t.match(via_proxy(url .. "/version"), "^v2")

  -- SIGTERM while a run holds the deploy lock (paused in its deploy): exit 130, its lock tag
  -- removed before it exits (not left for the 600 s expiry), no "could not release", v2 serves
  local termfile = os.tmpname()
  local bt = hoist.spawn(function() return run("v5", true, { HOIST_TEST_PAUSE_IN_DEPLOY = "120" }, termfile) end)
  deadline = hoist.now() + 240
  while not tags_of(rg)["hoist-lock.aci.web"] do
    if hoist.now() > deadline or bt:status() ~= "running" then error("the v5 run never held the lock", 0) end
    hoist.sleep(0.3)
  end
  hoist.exec { "kill", "-TERM", (support.read(termfile) or ""):match("%d+"), check = true }
  local rt = bt:wait()
  outputs[#outputs + 1] = rt.stdout .. rt.stderr
  t.eq(rt.code, 130, show(rt))
  t.eq(tags_of(rg)["hoist-lock.aci.web"], nil, "the SIGTERM'd run removed its lock tag\n" .. show(rt))
  t.ok(not (rt.stdout .. rt.stderr):find("could not release", 1, true), show(rt))
  t.match(via_proxy(url .. "/version"), "^v2")

  -- no secret anywhere: the client secret, the secure env value, the ACR refresh token's
  -- source (the client secret) and the registry password of the emulator's fixed user
  local everything = table.concat(outputs, "\n") .. hoist.exec({ "sh", "-c", "cat " .. state .. "/runs/*/*.jsonl " .. state .. "/runs/*/*.md 2>/dev/null" }).stdout
  for _, s in ipairs { E("HOIST_TEST_AZURE_CLIENT_SECRET"), secure, E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") } do
    t.ok(not everything:find(s, 1, true), "a secret leaked into the output, events, journal or report")
  end
  t.ok(#everything > 1000, "the scan saw the outputs")
  require("hoist.targets.aci").remove { service = "web", resource_group = rg, subscription = SUB, credential = cred, state_dir = state }
  drop(rg)
end), SLOW)
