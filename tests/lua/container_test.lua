-- hoist.test slow
-- container@1 end to end, through the hoist command as a user runs it, against the real
-- Docker engine and registry of tests/env (tests/env/up.sh, then . /tmp/hoist-env/env.sh).
-- Trivy is the stand-in tests/tools/trivy with recorded reports.
--
-- The deploy cases share one service and run in order: v1 (first deploy), v2 (a good
-- replacement, polled), v3 built with HEALTHY=false (refused, polled), then a run SIGKILLed
-- in the middle of its deploy and finished with `hoist rollback`. A poller task requests the
-- service port in a loop during each of them and counts failed requests.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local root = support.root
local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 900 }

local function docker_available() return os.getenv("HOIST_TEST_DOCKER") == "1" end
local function need_docker() support.need_docker("container@1 integration test") end
local read, hoist_bin, free_port = support.read, support.hoist_bin, support.free_port

local CLEAN = root .. "/tests/fixtures/trivy/hoist-clean.json"
-- A recorded report with a CRITICAL finding (alpine-310 has only MEDIUM ones).
local S = { -- shared by the deploy cases
  state = hoist.exec({ "mktemp", "-d", "/tmp/hoist-container-test.XXXXXX", check = true }).stdout:match("%S+"),
  service = "hoist-ct-" .. ID,
  repo = REGISTRY .. "/hoist-ct-" .. ID .. "/app",
  port = nil,
  times = {},
  failed = {},
}

-- `hoist run container@1 --set k=v ...` in its own process; returns {code, stdout, stderr, seconds}.
local function run_pipeline(sets, opts)
  opts = opts or {}
  local argv = { hoist_bin(), "run", opts.spec or "container@1", "--state-dir", S.state, "--no-color" }
  if opts.dry_run then argv[#argv + 1] = "--dry-run" end
  for k, v in pairs(sets) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  argv.env = { HOIST_TRIVY = root .. "/tests/tools/trivy", HOIST_TRIVY_FIXTURE = opts.fixture or CLEAN }
  for k, v in pairs(opts.env or {}) do argv.env[k] = v end
  argv.timeout = 600
  local started = hoist.now()
  local r = hoist.exec(argv)
  r.seconds = hoist.now() - started
  return r
end

local function app_params(version, healthy)
  return {
    image = S.repo, context = root .. "/examples/app", name = S.service, port = S.port, tag = version,
    build_args = ("BASE_IMAGE=%s,VERSION=%s,HEALTHY=%s"):format(BASE, version, healthy == false and "false" or "true"),
    verify_timeout = 8, drain = 1,
  }
end

local function show(r) return ("exit %d\n--- stdout\n%s\n--- stderr\n%s"):format(r.code, r.stdout, r.stderr) end

local function version_now()
  local ok, r = pcall(hoist.http.request, { url = ("http://127.0.0.1:%d/version"):format(S.port), timeout = 5 })
  return ok and r.status == 200 and r.body or nil
end

-- Requests the service port until stopped; counts the requests that did not answer 200.
local function start_poller()
  local p = { total = 0, failed = 0, errors = {}, seen = {}, stop = false }
  p.task = hoist.spawn(function()
    while not p.stop do
      local ok, r = pcall(hoist.http.request, { url = ("http://127.0.0.1:%d/version"):format(S.port), timeout = 5 })
      p.total = p.total + 1
      if ok and r.status == 200 then
        p.seen[r.body] = (p.seen[r.body] or 0) + 1
      else
        p.failed = p.failed + 1
        if #p.errors < 5 then p.errors[#p.errors + 1] = ok and ("status " .. r.status) or tostring(r) end
      end
      hoist.sleep(0.01)
    end
  end)
  function p:finish(label)
    self.stop = true
    self.task:wait()
    local seen = {}
    for body, n in pairs(self.seen) do seen[#seen + 1] = ("%s x%d"):format(body, n) end
    table.sort(seen)
    print(("poller during %s: %d requests, %d failed (%s)%s"):format(label, self.total, self.failed,
      table.concat(seen, ", "), #self.errors > 0 and ("; first errors: " .. table.concat(self.errors, " | ")) or ""))
    S.failed[label] = self.failed
    return self
  end
  return p
end

local function service_containers()
  return hoist.docker.ps { all = true, filters = { label = "hoist.service=" .. S.service } }
end

local function registry_tags(repo)
  local path = repo:gsub("^[^/]+/", "")
  local r = hoist.http.request { url = ("http://%s/v2/%s/tags/list"):format(REGISTRY, path), timeout = 10 }
  if r.status == 404 then return {} end
  return (r.json and r.json.tags) or {}
end

---------------------------------------------------------------- parameters

t.cases("bad parameters are refused before anything runs, exit code 2", {
  { name = "unknown target", sets = { target = "heroku" }, pat = 'target: must be one of [%w, ]*local' },
  { name = "port not a number", sets = { port = "http" }, pat = "port: expected a number" },
  { name = "unknown parameter", sets = { imgae = "x" }, pat = 'unknown parameter "imgae" %(did you mean "image"%?%)' },
  { name = "missing image", sets = {}, no_image = true, pat = "image: required string parameter is missing" },
  { name = "bad scan mode", sets = { scan = "sometimes" }, pat = "scan: must be one of required, if_available, off" },
  { name = "bad severity", sets = { fail_on = "CRITICAL,SEVERE" }, pat = "fail_on: item 2 must be one of" },
}, function(row)
  local sets = { image = "127.0.0.1:5000/hoist-ct-params/app" }
  if row.no_image then sets.image = nil end
  for k, v in pairs(row.sets) do sets[k] = v end
  local r = run_pipeline(sets)
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, row.pat)
end)

-- Checks of a parameter's range or pattern (the spec) and of parameters together (target
-- options, the image form, the build folder): all before anything changes, exit code 2.
t.cases("parameters checked together are refused before anything changes", {
  { name = "an Azure target needs its resource group", sets = { target = "aci" }, pat = 'resource_group: required for target aci' },
  { name = "port out of range", sets = { port = 70000 }, pat = "port: must be from 1 to 65535, got 70000" },
  { name = "port zero", sets = { port = 0 }, pat = "port: must be from 1 to 65535" },
  { name = "port not whole", sets = { port = 80.5 }, pat = "port: must be a whole number" },
  { name = "image with a tag", sets = { image = "127.0.0.1:5000/app:v1" }, pat = "without tag or digest" },
  -- Docker's grammar (hoist.image), before the build: uppercase, a..b, a name over 255 characters
  { name = "image uppercase", sets = { image = "127.0.0.1:5000/Team/App" }, pat = "image: invalid image reference '127.0.0.1:5000/Team/App': repository name must be lowercase" },
  { name = "image a..b", sets = { image = "127.0.0.1:5000/a..b" }, pat = "bad separator '..'" },
  { name = "image too long", sets = { image = "127.0.0.1:5000/" .. ("a"):rep(250) }, pat = "longer than 255 characters" },
  { name = "bad health path", sets = { health_path = "health" }, pat = "health_path: must be a path starting with '/'" },
  { name = "a name too long", sets = { name = ("n"):rep(300) }, pat = "name: must be at most 128 characters" },
  { name = "no build folder", sets = {}, pat = "context: the build folder /nonexistent%-context does not exist" },
  { name = "no Dockerfile", sets = { context = "/tmp" }, pat = "context: /tmp has no Dockerfile" },
  { name = "a typo in the target", sets = { target = "kubernets" }, pat = 'target: must be one of' },
}, function(row)
  local sets = { image = "127.0.0.1:5000/hoist-ct-params/app", context = "/nonexistent-context" }
  for k, v in pairs(row.sets) do sets[k] = v end
  local r = run_pipeline(sets)
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, row.pat)
  t.no_match(r.stderr, "stage build", "nothing was built")
end)

-- Issue 15 §5: --set tag=latest passed the no-latest policy (it skipped hoist.tags); tags= with
-- latest for a production target is refused before the build, exit 4, unless allow_latest.
t.cases("latest is refused for any target but local, also when given explicitly, before the build", {
  { name = "tag=latest", sets = { tag = "latest" } },
  { name = "tags=sha,branch,latest", sets = { tags = "sha,branch,latest" } },
}, function(row)
  local sets = { image = "127.0.0.1:5000/hoist-ct-latest/app", context = root .. "/examples/app", target = "kubernetes",
                 namespace = "default" }
  for k, v in pairs(row.sets) do sets[k] = v end
  local r = run_pipeline(sets)
  t.eq(r.code, 4, show(r))
  t.match(r.stderr, "no%-latest%-in%-production")
  t.no_match(r.stdout .. r.stderr, "stage build", "nothing was built")
end)

t.case("tags=sha,branch,latest: every tag is built and pushed, the first deployed; cache_from reaches the build (dry run, local target)", function()
  need_docker()
  local dir = support.tmpdir("hoist-ct-tags")
  hoist.exec { "cp", "-r", root .. "/examples/app/.", dir, check = true }
  for _, argv in ipairs { { "init", "-q", "-b", "feature/tags" }, { "add", "." },
                          { "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "x" } } do
    local a = { "git", "-C", dir }
    for _, x in ipairs(argv) do a[#a + 1] = x end
    a.check = true
    hoist.exec(a)
  end
  local sha = hoist.git.info { dir = dir }.short_sha
  local r = run_pipeline({ image = "127.0.0.1:5000/hoist-ct-tags/app", context = dir, tags = "sha,branch,latest",
                           port = free_port(), scan = "off", cache_from = "127.0.0.1:5000/hoist-ct-tags/app:feature-tags" },
                         { dry_run = true })
  t.eq(r.code, 0, show(r))
  local out = r.stdout .. r.stderr
  t.ok(out:find("--cache-from 127.0.0.1:5000/hoist-ct-tags/app:feature-tags", 1, true), "the build takes cache_from: " .. out)
  for _, tag in ipairs { sha, "feature-tags", "latest" } do
    t.ok(out:find("docker push 127.0.0.1:5000/hoist-ct-tags/app:" .. tag, 1, true), "pushes " .. tag .. ": " .. out)
  end
  r = run_pipeline({ image = "127.0.0.1:5000/hoist-ct-tags/app", context = dir, tags = "sha,feature/x" })
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, "tags: tag \"feature/x\"")
  r = run_pipeline({ image = "127.0.0.1:5000/hoist-ct-tags/app", context = dir, tags = "sha", tag = "v1" })
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, "tag and tags: give one of them")
end, SLOW)

t.case("an unknown pipeline version is a usage error", function()
  local r = run_pipeline({ image = "127.0.0.1:5000/x/app" }, { spec = "container@9" })
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, "container@9 is not shipped")
end)

---------------------------------------------------------------- dry run

t.case("--dry-run changes nothing and prints every command", function()
  need_docker()
  S.port = S.port or free_port()
  local r = run_pipeline(app_params("dry"), { dry_run = true })
  t.eq(r.code, 0, show(r))
  local out = r.stdout .. r.stderr
  for _, needle in ipairs { "docker build", "scan " .. S.repo .. ":dry", "docker push " .. S.repo .. ":dry",
                            "docker run", "proxy --listen 127.0.0.1:" .. S.port, "docker rename" } do
    t.ok(out:find(needle, 1, true), ("the plan shows %q:\n%s"):format(needle, out))
  end
  t.eq(hoist.docker.exists { name = S.repo .. ":dry", type = "image" }, false)
  t.eq(registry_tags(S.repo), {})
  t.eq(#service_containers(), 0)
  t.eq(hoist.proxy.status({ state = hoist.proxy.state_file(S.service, S.state) }).running, false)
end, SLOW)

t.case("the push credential is never the service's pull credential: an Azure target gets pull_username", function()
  need_docker()
  local creds = os.getenv("HOIST_TEST_AZURE_CREDENTIALS")
  if not creds then
    if os.getenv("CI") == "true" then error("the Azure emulator is not up (tests/env): CI=true, not skipping") end
    t.skip("the Azure emulator is not up (tests/env)")
  end
  local proxy = os.getenv("HOIST_TEST_AZURE_PROXY")
  local r = run_pipeline({ target = "aci", resource_group = "hoist-ct-pull", location = "westeurope",
                           image = "127.0.0.1:5002/hoist-ct-pull/app", context = root .. "/examples/app", scan = "off",
                           registry_username = "push-user", registry_password = "push-secret-7731",
                           pull_username = "pull-user", pull_password = "pull-secret-8842" },
                         { dry_run = true, env = { AZURE_CREDENTIALS = creds, HTTPS_PROXY = proxy, HTTP_PROXY = proxy,
                                                   NO_PROXY = "127.0.0.1,localhost" } })
  t.eq(r.code, 0, show(r))
  local plan = r.stdout:match("Run folder: (%S+)") or (r.stderr:match("Run folder: (%S+)"))
  t.ok(plan, "the run folder is named: " .. show(r))
  local put
  for _, step in ipairs(hoist.json.decode(read(plan .. "/plan.json")).steps) do
    if step.action == "azure.aci.put" then put = hoist.json.encode(step) end
  end
  t.ok(put, "the plan has the container group PUT")
  t.ok(put:find('"pull-user"', 1, true), "the group pulls with pull_username: " .. put)
  t.ok(not put:find("push-user", 1, true), "the push user is not the group's: " .. put)
  for _, secret in ipairs { "push-secret-7731", "pull-secret-8842" } do
    t.ok(not (r.stdout .. r.stderr):find(secret, 1, true), "no secret shown")
  end
end, SLOW)

t.case("examples/container-params.json is a valid parameter file (dry run)", function()
  need_docker()
  local r = hoist.exec { hoist_bin(), "run", "container@1", "--dry-run", "--no-color", "--state-dir", S.state,
                         "--params-file", "examples/container-params.json", cwd = root, timeout = 120 }
  t.eq(r.code, 0, show(r))
  t.match(r.stdout .. r.stderr, "docker push 127%.0%.0%.1:5000/team/app:")
end, SLOW)

t.case("a registry with basic auth: the password comes from the environment and never shows, "
  .. "nor lands in ~/.docker/config.json", function()
  need_docker()
  local registry = os.getenv("HOIST_TEST_REGISTRY_BASIC")
  local user, password = os.getenv("HOIST_TEST_REGISTRY_BASIC_USER"), os.getenv("HOIST_TEST_REGISTRY_BASIC_PASSWORD")
  if not (registry and user and password) then t.skip("HOIST_TEST_REGISTRY_BASIC* is not set (tests/env)") end
  -- the user's home, with a config.json of their own that must stay as it is
  local home = hoist.exec({ "mktemp", "-d", "/tmp/hoist-ct-home.XXXXXX", check = true }).stdout:match("%S+")
  hoist.exec { "mkdir", "-p", home .. "/.docker", check = true }
  local mine = '{"auths":{"example.invalid":{}},"note":"the user\'s own"}\n'
  support.write(home .. "/.docker/config.json", mine)
  local p = app_params("auth")
  p.image, p.name, p.port, p.scan = registry .. "/hoist-ct-" .. ID .. "/auth", S.service .. "-auth", free_port(), "off"
  p.registry_username = user
  local r = run_pipeline(p, { env = { HOIST_REGISTRY_PASSWORD = password, HOME = home, DOCKER_CONFIG = "" } })
  local journal = hoist.exec({ "sh", "-c", "cat " .. S.state .. "/runs/*/journal.jsonl" }).stdout
  local in_home = hoist.exec({ "grep", "-rl", "--", registry, home }).stdout
  local user_config = read(home .. "/.docker/config.json")
  local left = hoist.exec({ "sh", "-c", "ls -d " .. S.state .. "/runs/*/docker-config 2>/dev/null" }).stdout
  require("hoist.targets.local").remove { service = p.name, state_dir = S.state }
  hoist.docker.rmi { image = p.image .. ":auth", force = true, missing_ok = true }
  hoist.exec { "rm", "-rf", home }
  t.eq(r.code, 0, show(r))
  t.no_match(r.stdout .. r.stderr, password, "the password in the output")
  t.no_match(journal, password, "the password in a journal")
  t.eq(user_config, mine, "~/.docker/config.json is unchanged")
  t.eq(in_home, "", "no credential anywhere in the home folder")
  t.eq(left, "", "the run's private docker config is removed at the end")
end, SLOW)

---------------------------------------------------------------- scan gate

t.case("a CRITICAL finding stops the run before the push: exit 4, no tag", function()
  need_docker()
  S.port = S.port or free_port()
  local p = app_params("vuln")
  p.image = S.repo .. "-vuln"
  -- the SARIF of that scan is written all the same (issue 15 §5: uploaded to code scanning)
  p.sarif = support.tmpdir("hoist-ct-sarif") .. "/trivy.sarif"
  -- (hoist's own recording: it has Trivy's SARIF beside it)
  local r = run_pipeline(p, { fixture = root .. "/tests/fixtures/trivy/hoist-demo.json" })
  t.eq(r.code, 4, show(r))
  t.match(r.stderr, "policy_violation")
  t.match(r.stderr, "CRITICAL")
  t.eq(read(p.sarif), read(root .. "/tests/fixtures/trivy/hoist-demo.sarif"), "Trivy's SARIF, byte for byte")
  t.eq(registry_tags(p.image), {})
  t.eq(#service_containers(), 0)
  hoist.docker.rmi { image = p.image .. ":vuln", force = true, missing_ok = true }
end, SLOW)

---------------------------------------------------------------- deploys

t.case("v1: a first deploy builds, pushes, serves and verifies", function()
  need_docker()
  S.port = S.port or free_port()
  local r = run_pipeline(app_params("v1"))
  S.times.v1 = r.seconds
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v1")
  t.eq(registry_tags(S.repo), { "v1" })
  local rows = service_containers()
  t.eq(#rows, 1)
  t.eq(rows[1].name, S.service)
  t.match(rows[1].image, "^" .. S.repo:gsub("%p", "%%%0") .. "@sha256:")
end, SLOW)

t.case("v2: a good replacement serves without a failed request", function()
  need_docker()
  t.eq(version_now(), "v1", "v1 serves before")
  local poller = start_poller()
  local r = run_pipeline(app_params("v2"))
  hoist.sleep(0.5)
  poller:finish("the good deploy v1 -> v2")
  S.times.v2 = r.seconds
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v2")
  t.eq(#service_containers(), 1)
  t.ok(poller.total > 50, "the poller ran throughout")
  t.ok((poller.seen.v2 or 0) > 0, "the poller saw v2")
  t.eq(poller.failed, 0, "failed requests during the good deploy")
end, SLOW)

t.case("v2 again: the end-to-end time with a warm build cache", function()
  need_docker()
  local r = run_pipeline(app_params("v2"))
  S.times.v2_again = r.seconds
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v2")
  print(("container@1 end to end: first deploy v1 %.1fs, v2 %.1fs, v2 again (warm cache) %.1fs")
    :format(S.times.v1 or -1, S.times.v2 or -1, S.times.v2_again))
end, SLOW)

t.case("v3 built with HEALTHY=false is refused; v2 answers throughout", function()
  need_docker()
  local poller = start_poller()
  local r = run_pipeline(app_params("v3", false))
  poller:finish("the failed deploy v2 -> v3")
  t.eq(r.code, 1, show(r))
  t.match(r.stderr, "rollout_failed")
  t.match(r.stderr, "did not become healthy")
  t.eq(version_now(), "v2")
  local rows = service_containers()
  t.eq(#rows, 1, "the broken candidate was removed")
  t.eq(rows[1].name, S.service)
  t.eq(poller.seen.v3, nil, "v3 never served")
  t.eq(poller.failed, 0, "failed requests during the failed deploy")
end, SLOW)

-- Starts a deploy of `version` in its own process, waits until `ready()` says the moment has
-- come, SIGKILLs it and returns the id of the killed run.
-- signal: "KILL" (default) or "TERM"; returns the run id and the run's exec result
local function kill_mid_deploy(version, hook, ready, signal)
  signal = signal or "KILL"
  local pidfile = S.state .. "/killed.pid"
  os.remove(pidfile)
  local argv = { hoist_bin(), "run", "container@1", "--state-dir", S.state, "--no-color" }
  for k, v in pairs(app_params(version)) do
    argv[#argv + 1] = "--set"
    argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local env = { HOIST_TRIVY = root .. "/tests/tools/trivy", HOIST_TRIVY_FIXTURE = CLEAN, [hook] = "60" }
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s"):format(pidfile, table.concat(quoted, " ")), env = env,
                        timeout = 600 }
  end)
  local run_id
  for _ = 1, 1500 do
    run_id = ready()
    if run_id or task:status() ~= "running" then break end
    hoist.sleep(0.2)
  end
  t.ok(run_id, "the moment to kill came (" .. hook .. ")")
  hoist.exec { "kill", "-" .. signal, read(pidfile):match("%d+"), check = true }
  local killed = task:wait()
  if signal == "KILL" then t.eq(killed.signal, 9, "the run was killed") end
  return run_id, killed
end

local function candidate_run()
  for _, row in ipairs(service_containers()) do
    if row.name ~= S.service and row.labels["hoist.role"] == "candidate" then return row.labels["hoist.run"] end
  end
end

local function rollback(run_id, force)
  local argv = { hoist_bin(), "rollback", run_id, "--state-dir", S.state, "--no-color", timeout = 300 }
  if force then argv[#argv + 1] = "--force" end
  return hoist.exec(argv)
end

t.case("SIGKILL before the switch, then hoist rollback: v2 serves, nothing stray", function()
  need_docker()
  local poller = start_poller()
  local run_id = kill_mid_deploy("v4", "HOIST_TEST_PAUSE_IN_DEPLOY", candidate_run)
  t.eq(version_now(), "v2", "v2 serves after the kill")
  t.eq(#service_containers(), 2, "the v4 candidate is left by the killed run")
  local rb = rollback(run_id)
  poller:finish("a deploy killed before the switch, then hoist rollback")
  t.eq(rb.code, 0, show(rb))
  t.eq(version_now(), "v2")
  local rows = service_containers()
  t.eq(#rows, 1, "no stray container")
  t.eq(rows[1].name, S.service)
  t.eq(poller.failed, 0, "failed requests around the kill and the rollback")
end, SLOW)

t.case("SIGKILL after the switch, then hoist rollback: v2 serves again, nothing stray", function()
  need_docker()
  local poller = start_poller()
  local run_id = kill_mid_deploy("v5", "HOIST_TEST_PAUSE_AFTER_SWITCH", function()
    return version_now() == "v5" and candidate_run() or nil
  end)
  t.eq(version_now(), "v5", "the killed run had switched to v5")
  local rb = rollback(run_id)
  poller:finish("a deploy killed after the switch, then hoist rollback")
  t.eq(rb.code, 0, show(rb))
  t.eq(version_now(), "v2")
  local rows = service_containers()
  t.eq(#rows, 1, "no stray container")
  t.eq(rows[1].name, S.service)
  t.eq(poller.failed, 0, "failed requests around the kill and the rollback")
end, SLOW)

t.case("SIGTERM after the switch: the run rolls back itself, exit 130, v2 serves, nothing stray", function()
  need_docker()
  local poller = start_poller()
  local run_id, r = kill_mid_deploy("v5t", "HOIST_TEST_PAUSE_AFTER_SWITCH", function()
    return version_now() == "v5t" and candidate_run() or nil
  end, "TERM")
  poller:finish("a deploy sent SIGTERM after the switch")
  t.ok(run_id, "the run had switched")
  t.eq(r.code, 130, show(r))
  t.match(r.stderr, "received SIGTERM")
  t.match(r.stderr, "hoist: run " .. run_id:gsub("%p", "%%%0") .. " failed")
  t.no_match(r.stderr, "bad_function_call")
  t.eq(version_now(), "v2", "the previous version serves")
  local rows = service_containers()
  t.eq(#rows, 1, "no stray container")
  t.eq(rows[1].name, S.service)
end, SLOW)

t.case("hoist rollback --force of a finished deploy recreates the previous container", function()
  need_docker()
  local before = hoist.docker.inspect { name = S.service, type = "container" }
  local r = run_pipeline(app_params("v6"))
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v6")
  local run_id = hoist.docker.inspect({ name = S.service, type = "container" }).Config.Labels["hoist.run"]
  local poller = start_poller()
  local rb = rollback(run_id, true)
  poller:finish("hoist rollback --force of a finished deploy v2 -> v6")
  t.eq(rb.code, 0, show(rb))
  t.eq(version_now(), "v2")
  local after = hoist.docker.inspect { name = S.service, type = "container" }
  t.eq(after.Image, before.Image, "the same image")
  t.eq(after.Config.Image, before.Config.Image, "the same reference (repository@digest)")
  t.eq(after.Config.Labels["hoist.role"], "active")
  t.eq(#service_containers(), 1, "no stray container")
  t.eq(poller.failed, 0, "failed requests during the rollback")
end, SLOW)

t.case("secret_env reaches the container, never the output or the journal, and survives a rollback", function()
  need_docker()
  local secret = "ct-secret-env-" .. ID .. "-x9"
  local r = run_pipeline(app_params("v7"), { env = { HOIST_SECRET_ENV = "APP_TOKEN=" .. secret } })
  t.eq(r.code, 0, show(r))
  t.no_match(r.stdout .. r.stderr, secret)
  local function env_of_service()
    return table.concat(hoist.docker.inspect({ name = S.service, type = "container" }).Config.Env, "\n")
  end
  t.ok(env_of_service():find("APP_TOKEN=" .. secret, 1, true), "the container has the secret")
  local r2 = run_pipeline(app_params("v8"))
  t.eq(r2.code, 0, show(r2))
  local run_id = hoist.docker.inspect({ name = S.service, type = "container" }).Config.Labels["hoist.run"]
  local rb = rollback(run_id, true)
  t.eq(rb.code, 0, show(rb))
  t.eq(version_now(), "v7")
  t.ok(env_of_service():find("APP_TOKEN=" .. secret, 1, true), "the restored container has its secret again")
  t.no_match(rb.stdout .. rb.stderr, secret)
  -- the one file holding it is the 0600 copy kept for the rollback
  local holders = hoist.exec { "grep", "-rl", secret, S.state }.stdout
  for path in holders:gmatch("[^\n]+") do
    t.match(path, "/local/" .. S.service:gsub("%p", "%%%0") .. "/[^/]+%.env%.json$",
      "only the kept environment file holds the secret")
    t.eq(hoist.exec({ "stat", "-c", "%a", path, check = true }).stdout, "600\n")
  end
  t.ok(holders ~= "", "the environment was kept for the rollback")
  t.eq(#service_containers(), 1, "no stray container")
end, SLOW)

---------------------------------------------------------------- two deploys at once

-- Five pairs (HOIST_TEST_PAIRS) of simultaneous deploys of one service (its own name and port). In even pairs
-- the second version is unhealthy, so one run of the pair fails and rolls back. After each
-- pair: exactly one version serves, the one of the run that succeeded last; `hoist runs`
-- says what happened; no rollback is left incomplete.
local P = { service = "hoist-ct-pairs-" .. ID, repo = REGISTRY .. "/hoist-ct-" .. ID .. "/pairs", tags = {} }

local function pair_params(version, healthy)
  local p = app_params(version, healthy)
  p.image, p.name, p.port, p.scan, p.verify_timeout, p.drain = P.repo, P.service, P.port, "off", 6, 0.2
  P.tags[#P.tags + 1] = version
  return p
end

local function runs_json()
  local r = hoist.exec { hoist_bin(), "runs", "--state-dir", P.state, "--json", timeout = 60 }
  t.eq(r.code, 0, show(r))
  return hoist.json.decode(r.stdout)
end

local function version_of_run(id)
  local first = read(P.state .. "/runs/" .. id .. "/journal.jsonl"):match("^[^\n]+")
  return hoist.json.decode(first).params.tag
end

local function serving_versions(n)
  local seen, list = {}, {}
  for _ = 1, n do
    local ok, r = pcall(hoist.http.request, { url = ("http://127.0.0.1:%d/version"):format(P.port), timeout = 5 })
    local v = ok and r.status == 200 and r.body or "<none>"
    if not seen[v] then seen[v] = true; list[#list + 1] = v end
  end
  table.sort(list)
  return list
end

t.case("five pairs of simultaneous deploys of one service: one version serves, the last succeeded run's; "
  .. "hoist runs tells the truth", function()
  need_docker()
  P.state = hoist.exec({ "mktemp", "-d", "/tmp/hoist-ct-pairs.XXXXXX", check = true }).stdout:match("%S+")
  P.port = free_port()
  local waited, started = 0, hoist.now()
  local ok, err = pcall(function()
    for i = 1, tonumber(os.getenv("HOIST_TEST_PAIRS") or "") or 5 do
      local a, b = ("p%da"):format(i), ("p%db"):format(i)
      local specs = { pair_params(a), pair_params(b, i % 2 ~= 0) }
      local tasks = {}
      for j, params in ipairs(specs) do
        tasks[j] = hoist.spawn(function()
          local argv = { hoist_bin(), "run", "container@1", "--state-dir", P.state, "--no-color" }
          for k, v in pairs(params) do argv[#argv + 1] = "--set"; argv[#argv + 1] = k .. "=" .. tostring(v) end
          argv.timeout = 600
          return hoist.exec(argv)
        end)
      end
      local results = { tasks[1]:wait(), tasks[2]:wait() }
      for _, r in ipairs(results) do
        if (r.stderr or ""):find("which is deploying local/" .. P.service, 1, true) then waited = waited + 1 end
      end
      local label = ("pair %d (%s, %s%s)"):format(i, a, b, i % 2 == 0 and " unhealthy" or "")
      -- what hoist runs says about every run so far
      local last_ok, last_end
      for _, run in ipairs(runs_json()) do
        t.ok(run.status == "succeeded" or run.status == "rolled_back" or run.status == "failed",
          ("%s: run %s is %s"):format(label, run.id, tostring(run.status)))
        if run.status ~= "succeeded" then -- (a succeeded run's compensations are not needed)
          t.eq(run.pending or 0, 0, label .. ": no compensation left pending in run " .. run.id)
        end
        local ended = (run.started or 0) + (run.duration or 0)
        if run.status == "succeeded" and (not last_end or ended > last_end) then last_ok, last_end = run.id, ended end
      end
      -- the exit codes agree with it: a good version's run succeeds, an unhealthy one fails
      t.eq(results[1].code, 0, label .. " " .. a .. ": " .. show(results[1]))
      t.eq(results[2].code, i % 2 == 0 and 1 or 0, label .. " " .. b .. ": " .. show(results[2]))
      local want = version_of_run(last_ok)
      t.eq(serving_versions(20), { want }, label .. ": exactly one version serves, the last succeeded run's")
      local rows = hoist.docker.ps { all = true, filters = { label = "hoist.service=" .. P.service } }
      t.eq(#rows, 1, label .. ": one container for the service")
      t.eq(rows[1].name, P.service)
    end
  end)
  print(("%d pairs of simultaneous deploys: %.0fs; the second run of a pair waited for the lock %d time(s)")
    :format(tonumber(os.getenv("HOIST_TEST_PAIRS") or "") or 5, hoist.now() - started, waited))
  require("hoist.targets.local").remove { service = P.service, state_dir = P.state }
  for _, tag in ipairs(P.tags) do hoist.docker.rmi { image = P.repo .. ":" .. tag, force = true, missing_ok = true } end
  hoist.exec { "rm", "-rf", P.state }
  if not ok then error(err, 0) end
  t.ok(waited > 0, "deploys of one service waited for each other")
end, { timeout = 1800 })

t.case("report and clean up", function()
  if not docker_available() then
    hoist.exec { "rm", "-rf", S.state }
    need_docker()
  end
  local labels = {}
  for k, v in pairs(S.failed) do labels[#labels + 1] = ("%s: %d"):format(k, v) end
  table.sort(labels)
  print("failed requests on the service port: " .. (#labels > 0 and table.concat(labels, "; ") or "none measured"))
  require("hoist.targets.local").remove { service = S.service, state_dir = S.state }
  for _, tag in ipairs { "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "dry" } do
    hoist.docker.rmi { image = S.repo .. ":" .. tag, force = true, missing_ok = true }
  end
  hoist.exec { "rm", "-rf", S.state }
  t.eq(#service_containers(), 0)
end, SLOW)
