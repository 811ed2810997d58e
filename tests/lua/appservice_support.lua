-- What the App Service and Container Apps target tests share (not a test itself): the gate on
-- the Azure emulator, a session (a private docker login to the token registry, a state folder,
-- the child's environment with the proxy variables), test images, what a hostname answers
-- through the proxy, the prober, a run SIGKILLed at a chosen moment, the secret scan.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local E = os.getenv
local M = { support = support }

local WHY = "the Azure emulator's variables are not set: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"

-- Returns when Docker and the Azure emulator are up; skips loudly otherwise (fails when CI=true).
function M.need_emulator(what)
  support.need_docker(what)
  local control = E("HOIST_TEST_AZURE_CONTROL")
  if not control or control == "" then
    if E("CI") == "true" then hoist.error { code = "unavailable", message = WHY .. " (CI=true: not skipping)" } end
    t.skip("*** " .. what .. " skipped *** " .. WHY)
  end
end

-- Holds the Azure emulator's operations on resources whose id contains `part` for `seconds` at
-- least (0: the emulator's default again): a test's SIGTERM lands inside its own operation
-- however slow the machine, and no other test's operations are slowed.
function M.hold(part, seconds)
  hoist.http.request { method = "POST", url = E("HOIST_TEST_AZURE_CONTROL") .. "/settings", check = true, safe = true,
                       json = { lro_duration_for = { [part] = seconds } } }
end

-- A unique name part per test run.
function M.run_tag()
  math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
  return ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
end

-- {auth, config, state, env, outputs, credential, subscription}: the registry token login in a
-- private docker config, a state folder, and the environment of a child `hoist run`.
function M.session(prefix)
  local S = { outputs = {}, subscription = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID") }
  S.auth = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }
  S.config, S.state = support.tmpdir(prefix .. "-docker"), support.tmpdir(prefix .. "-state")
  hoist.docker.login { registry = E("HOIST_TEST_REGISTRY_TOKEN"), username = S.auth.username, password = S.auth.password,
                       config = S.config }
  S.env = {
    AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"), AZURE_SUBSCRIPTION_ID = S.subscription,
    HTTP_PROXY = E("HOIST_TEST_AZURE_PROXY"), HTTPS_PROXY = E("HOIST_TEST_AZURE_PROXY"), NO_PROXY = "127.0.0.1,localhost",
    REGISTRY_USERNAME = S.auth.username, REGISTRY_PASSWORD = S.auth.password,
  }
  S.credential = M.credential()
  return S
end

-- The emulator's client-secret credential.
function M.credential()
  return hoist.azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
    client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
end

-- Deletes a resource group (and what is in it), errors ignored.
function M.drop_group(S, rg)
  pcall(hoist.azure.request, { method = "DELETE", credential = S.credential,
    path = ("/subscriptions/%s/resourcegroups/%s"):format(S.subscription, rg) })
end

-- Builds REPO:tag FROM the base image, its httpd answering `text` on `port` (EXPOSE port) at
-- / and at each path of `also` (e.g. {"health"}; any other path answers 404), pushes it and
-- returns its digest.
function M.build(S, repo, tag, text, port, also)
  local dir = support.tmpdir("hoist-azweb-img")
  local more = {}
  for _, path in ipairs(also or {}) do more[#more + 1] = (" && echo %s > /www/%s"):format(text, path) end
  support.write(dir .. "/Dockerfile", ("FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html%s\nEXPOSE %d\n"
    .. 'CMD ["sh", "-c", "echo serving %s; exec httpd -f -v -p %d -h /www"]\n'):format(E("HOIST_TEST_BASE_IMAGE"), text,
    table.concat(more), port, text, port))
  hoist.docker.build { context = dir, tags = { repo .. ":" .. tag } }
  return hoist.docker.push { image = repo .. ":" .. tag, config = S.config, auth = S.auth }.digest
end

-- Runs `hoist run <script> --set k=v ...` with the session's environment; keeps its output.
function M.run(S, script, params, extra_env, flag)
  -- a script of the repository, or a bundled pipeline (container@1)
  local path = script:find("%.lua$") and support.root .. "/" .. script or script
  local argv = { "run", path, "--state-dir", S.state, "--no-color", flag }
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(params[k])
  end
  local env = {}
  for k, v in pairs(S.env) do env[k] = v end
  for k, v in pairs(extra_env or {}) do env[k] = v end
  local r = support.run_hoist(argv, { env = env, timeout = 900 })
  S.outputs[#S.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  return r
end

-- `hoist run container@1` deploying examples/app with `params` (target, resource_group, name,
-- image, ...) on top of: scan off, the session's push credential. Returns the result and its
-- whole output.
function M.container1(S, params, extra_env, dry)
  local all = { scan = "off", context = support.root .. "/examples/app", registry_username = S.auth.username,
                registry_password = S.auth.password }
  for k, v in pairs(params) do all[k] = v end
  local r = M.run(S, "container@1", all, extra_env, dry and "--dry-run" or nil)
  return r, (r.stdout or "") .. (r.stderr or "")
end

-- The emulator's limited principal {id, secret, oid} (it holds no role until a test assigns
-- one); the test skips without it (fails under CI=true).
function M.limited_principal(what)
  local p = { id = E("HOIST_TEST_AZURE_LIMITED_CLIENT_ID"), secret = E("HOIST_TEST_AZURE_LIMITED_CLIENT_SECRET"),
              oid = E("HOIST_TEST_AZURE_LIMITED_OBJECT_ID") }
  if not p.id then
    local why = "the Azure emulator has no limited principal (HOIST_TEST_AZURE_LIMITED_CLIENT_ID): restart it with tests/env/up.sh"
    if E("CI") == "true" then error(why) end
    t.skip("*** " .. what .. " skipped *** " .. why)
  end
  return p
end

-- What a service hostname answers (curl through the emulator's proxy), trailing space cut.
function M.body_of(url)
  local r = hoist.exec { "curl", "-s", "--max-time", "10", "--proxy", E("HOIST_TEST_AZURE_PROXY"), "--cacert",
                         E("HOIST_TEST_CA"), url }
  return (r.stdout or ""):gsub("%s+$", "")
end

-- Starts tests/lua/appservice_prober.lua on `url` in a child; finish() stops it and returns
-- {ok, failed, statuses}.
function M.start_prober(url)
  local dir = support.tmpdir("hoist-azweb-probe")
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

-- Starts `hoist run <script>` with HOIST_TEST_PAUSE_AFTER_SWITCH, waits until ready() is
-- true, SIGKILLs it and returns the killed run's id.
function M.kill_after_switch(S, script, params, ready)
  local before = {}
  for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do before[id] = true end
  local pidfile = S.state .. "/killed.pid"
  local argv = { support.hoist_bin(), "run", support.root .. "/" .. script, "--state-dir", S.state, "--no-color" }
  for k, v in pairs(params) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local env = { HOIST_TEST_PAUSE_AFTER_SWITCH = "120" }
  for k, v in pairs(S.env) do env[k] = v end
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s"):format(pidfile, table.concat(quoted, " ")), env = env,
                        timeout = 600 }
  end)
  local came = false
  for _ = 1, 600 do
    came = ready()
    if came or task:status() ~= "running" then break end
    hoist.sleep(0.3)
  end
  if not came then
    -- why not: the run's own words (it ended), else that it is still on its way
    local why = "still running after the wait"
    if task:status() ~= "running" then
      local r = task:wait()
      why = ("it ended with exit %s: %s"):format(tostring(r.code), ((r.stderr or "") .. (r.stdout or "")):sub(-3000))
    end
    t.ok(false, "the deploy reached the switch: " .. why)
  end
  local run_id
  for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do if not before[id] then run_id = id end end
  t.ok(run_id, "the killed run has a folder")
  hoist.exec { "kill", "-KILL", support.must_read(pidfile):match("%d+"), check = true }
  t.eq(task:wait().signal, 9, "the run was killed")
  return run_id
end

-- `hoist rollback <id>` with the session's environment.
function M.rollback(S, run_id, force)
  local argv = { "rollback", run_id, "--state-dir", S.state, "--no-color" }
  if force then argv[#argv + 1] = "--force" end
  local r = support.run_hoist(argv, { env = S.env, timeout = 600 })
  S.outputs[#S.outputs + 1] = (r.stdout or "") .. (r.stderr or "")
  return r
end

-- The ARM-side deploy lock of target `name` (appservice, containerapp), against the emulator
-- in this process: a run holding it makes another run's deploy fail with conflict naming the
-- holder (run id, host, pid) and the tag; remove waits for the holder, then runs; the tag is
-- gone once both released. `image` is never pulled: the deploy stops at the lock. Needs the
-- emulator (not Docker); the group `rg` is deleted at the end.
local function lock_scenario(name, S, rg, app, image)
  local target = require("hoist.targets." .. name)
  local where = { service = app, resource_group = rg, subscription = S.subscription, credential = S.credential }
  local function with(extra)
    local o = {}
    for k, v in pairs(where) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local function tags()
    return (hoist.azure.resource_groups.get { name = rg, subscription = S.subscription, credential = S.credential } or {}).tags or {}
  end
  local tag = ("hoist-lock.%s.%s"):format(name, app)
  local held = target.lock(with { run = "run-holder", location = "westeurope", timeout = 0 })
  local value = tags()[tag]
  t.match(value or "", "^run%-holder:[^:]+:%d+:%d+:%d+$", "the lock is the tag " .. tag .. " on the resource group (run:host:pid:since:expiry)")
  local host, pid = value:match("^run%-holder:([^:]+):(%d+):")
  local e = t.raises(function()
    target.deploy(with { run = "run-second", image = image, location = "westeurope", lock_timeout = 0.5 })
  end, "conflict")
  t.ok(e.message:find(("%s/%s is being deployed by run run-holder (host %s, pid %s"):format(name, app, host, pid), 1, true),
    "the refusal names the holder: " .. e.message)
  t.ok(e.message:find(tag, 1, true), "and the tag: " .. e.message)
  t.eq(e.details.holder.run, "run-holder")
  t.eq(tags()[tag], value, "the refused run left the holder's lock alone")
  -- remove waits for the holder instead (released from another task), then runs
  local released = false
  local task = hoist.spawn(function()
    hoist.sleep(1)
    released = true
    held:release()
  end)
  local r = target.remove(with { lock_timeout = 60 })
  task:wait()
  t.ok(released, "remove ran once the holder had released the lock")
  t.eq(r.removed, {})
  t.eq(tags()[tag], nil, "the tag is gone once released")
end

-- The lock scenario above on the group `rg` (skipped loudly without the emulator).
function M.check_lock(name, rg, app, image)
  if (E("HOIST_TEST_AZURE_CONTROL") or "") == "" then M.need_emulator(name .. " lock test") end
  local S = { subscription = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID"), credential = M.credential() }
  local ok, err = pcall(lock_scenario, name, S, rg, app, image)
  M.drop_group(S, rg)
  if not ok then error(err, 0) end
end

-- The value of the deploy lock's tag of (target, app) on resource group `rg`, or nil.
function M.lock_tag(S, rg, target, app)
  local g = hoist.azure.resource_groups.get { name = rg, subscription = S.subscription, credential = S.credential } or {}
  return (g.tags or {})[("hoist-lock.%s.%s"):format(target, app)]
end

-- Asserts that a `hoist rollback` took over the lock `key` left by the SIGKILLed run at once
-- (same host, its process gone), naming that run.
function M.took_over_dead(r, key, run_id)
  local out = (r.stdout or "") .. (r.stderr or "")
  local esc = function(v) return (v:gsub("%p", "%%%0")) end
  t.ok(out:find(("took over the deploy lock of %s %%(tag [^)]+%%) from run %s %%(host "):format(esc(key), esc(run_id)))
    and out:find("whose process is gone", 1, true), "the rollback took over the killed run's lock at once: " .. out)
end

-- Asserts that no secret appears in any kept output or in any file of any run folder.
function M.scan(S, secrets)
  local texts = {}
  for i, o in ipairs(S.outputs) do texts["output " .. i] = o end
  for _, id in ipairs(hoist.fs.list(S.state .. "/runs")) do
    for _, f in ipairs(hoist.fs.list(S.state .. "/runs/" .. id)) do
      texts[id .. "/" .. f] = support.read(S.state .. "/runs/" .. id .. "/" .. f) or ""
    end
  end
  local n = 0
  for where, text in pairs(texts) do
    n = n + 1
    for i, s in ipairs(secrets) do t.ok(not text:find(s, 1, true), ("secret %d leaked in %s"):format(i, where)) end
  end
  t.ok(n > 0, "something was scanned")
end

return M
