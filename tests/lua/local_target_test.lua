-- hoist.targets.local and hoist.proxy: option checks (always), and against the real Docker
-- engine of tests/env: deploy, replace, a failing candidate, rollback of a finished deploy.
-- The Docker cases skip loudly without HOIST_TEST_DOCKER=1 and fail instead when CI=true.
local t = require "hoist.test"
local targets = require "hoist.targets"
local target = require "hoist.targets.local"
local actions = require "hoist.pipeline.actions"

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local root = support.root
local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 600 }

local function need_docker() support.need_docker("local target integration test") end
local free_port = support.free_port

local function get(url)
  local ok, r = pcall(hoist.http.request, { url = url, timeout = 5 })
  if not ok then return nil, r end
  return r
end

local function state_dir() return support.tmpdir("hoist-local-target") end

-- An image of examples/app answering /version with `version`; local only (no push needed).
local built = {}
local function app_image(version, healthy)
  local key = version .. tostring(healthy)
  if built[key] then return built[key] end
  local ref = ("hoist-lt-%s/app:%s"):format(ID, version)
  hoist.docker.build { context = root .. "/examples/app", tags = { ref }, stream = false,
    build_args = { BASE_IMAGE = BASE, VERSION = version, HEALTHY = healthy == false and "false" or "true" } }
  built[key] = ref
  return ref
end

-- A stand-in stage context that records the compensations a deploy registers.
local function recording_ctx(run_id)
  local ctx = { run = { id = run_id }, registered = {} }
  function ctx:on_rollback(action, args)
    self.registered[#self.registered + 1] = { action = action, args = hoist.json.decode(hoist.json.encode(args)) }
  end
  return ctx
end

-- What `hoist rollback` does with them: each action, newest first.
local function roll_back(ctx)
  for i = #ctx.registered, 1, -1 do
    local c = ctx.registered[i]
    actions.get(c.action).fn(c.args, { run = { id = ctx.run.id } })
  end
end

local function containers(service)
  return hoist.docker.ps { all = true, filters = { label = "hoist.service=" .. service } }
end

---------------------------------------------------------------- without docker

t.cases("deploy refuses bad options before touching anything", {
  { name = "port 0", o = { port = 0 }, pat = "option 'port' must be from 1 to 65535, got 0" },
  { name = "port too big", o = { port = 70000 }, pat = "option 'port' must be from 1 to 65535" },
  { name = "port not whole", o = { port = 80.5 }, pat = "option 'port' must be a whole number" },
  { name = "container_port", o = { container_port = "x" }, pat = "option 'container_port' must be a number" },
  { name = "service name", o = { service = "bad name" }, pat = "option 'service' must be a name of letters" },
  { name = "service name too long", o = { service = ("s"):rep(300) }, pat = "option 'service' must be at most 128 characters" },
  { name = "health path", o = { health_path = "health" }, pat = "option 'health_path' must be a path starting with '/'" },
  { name = "no image", o = { image = "" }, pat = "option 'image' must be an image reference" },
  { name = "drain", o = { drain = -1 }, pat = "option 'drain' must be >= 0" },
  { name = "unknown option", o = { replicas = 3 }, pat = "unknown option 'replicas'" },
}, function(row)
  local o = { service = "svc", image = "x:1", port = 8080, container_port = 8080, health_path = "/health" }
  for k, v in pairs(row.o) do o[k] = v end
  t.raises(function() target.deploy(o) end, "invalid_argument", row.pat:gsub("[%.%-%(%)]", "%%%0"))
end)

t.cases("targets.get names the target it refuses", {
  { name = "unknown", target = "heroku", pat = 'unknown target "heroku"' },
  { name = "a typo", target = "kubernets", pat = 'unknown target "kubernets" %(did you mean "kubernetes"%?%)' },
}, function(row)
  local err = t.raises(function() targets.get(row.target, "container@1") end, "invalid_argument", row.pat)
  t.eq(err.details.exit_code, 2)
end)

t.case("targets.get returns the local target", function()
  t.eq(targets.get("local"), target)
  local shipped = table.concat(targets.names(), ",")
  t.ok(("," .. shipped .. ","):find(",local,", 1, true), "local ships: " .. shipped)
end)

t.case("every shipped target keeps the contract of hoist.targets", function()
  local shipped = targets.names()
  t.ok(#shipped >= 1, "at least one target ships")
  for _, name in ipairs(shipped) do
    t.eq(targets.check(name, targets.get(name)), {}, "target " .. name)
  end
  -- local-only options stay in the local target's table
  t.ok(target.options.port and target.options.drain, "port and drain are the local target's")
  t.eq(targets.options.port, nil)
  t.eq(targets.options.drain, nil)
end)

t.case("the contract check names what a module lacks", function()
  hoist.pipeline.action("fake.unchecked", function() end)
  local problems = targets.check("fake", {
    deploy = function() end, remove = true, options = { service = { type = "string", description = "x" }, zone = {} },
    compensations = { "other.undo", "fake.undefined", "fake.unchecked" }, lock = "yes",
  })
  local text = table.concat(problems, "\n")
  for _, pat in ipairs { "status is not a function", "remove is not a function", "lock is neither nil nor a function",
                         "option service is a common option", "option zone needs a spec",
                         "compensation other.undo is not named fake.<action>",
                         "compensation fake.undefined is not defined",
                         "compensation fake.unchecked has no argument spec" } do
    t.match(text, pat:gsub("[%.%-]", "%%%0"))
  end
end)

t.case("container@1 offers the targets of targets.registered, and no other list", function()
  local _, def = require("hoist.scripts").resolve("container@1")
  t.eq(def.params.target.allowed, targets.names())
  t.eq(targets.names(), { "local", "aci", "aks", "appservice", "containerapp", "kubernetes" })
  t.ok(def.params.lock_timeout, "container@1 has lock_timeout")
  local src = support.must_read(root .. "/scripts/container/v1.lua")
  t.no_match(src, '"appservice"', "v1.lua does not repeat the list")
end)

t.case("the rollback actions are registered by name", function()
  t.ok(actions.get("local.restore"), "local.restore")
  t.ok(actions.get("local.remove_candidate"), "local.remove_candidate")
end)

t.case("proxy state files are absolute and named after the service", function()
  t.match(hoist.proxy.state_file("web", ".hoist"), "^/.*/%.hoist/proxy/web%.json$")
  t.eq(hoist.proxy.state_file("web", "/tmp/s"), "/tmp/s/proxy/web.json")
  t.raises(function() hoist.proxy.state_file("../x", "/tmp") end, "invalid_argument", "bad service name")
end)

t.case("proxy status of a service without a proxy", function()
  local st = hoist.proxy.status { state = "/tmp/hoist-no-such-proxy-" .. ID .. ".json" }
  t.eq(st.running, false)
end)

t.case("proxy start refuses a bad address with the proxy's own message", function()
  local dir = state_dir()
  t.raises(function()
    hoist.proxy.start { name = "x", listen = "localhost:1", upstream = "127.0.0.1:2", state = dir .. "/p.json" }
  end, "invalid_argument", "numeric IP address")
  hoist.exec { "rm", "-rf", dir }
end)

---------------------------------------------------------------- with docker

t.case("deploy, replace, refuse a broken candidate, roll back a finished deploy", function()
  need_docker()
  local dir, port, service = state_dir(), free_port(), "hoist-lt-" .. ID
  local v1, v2, bad = app_image("v1"), app_image("v2"), app_image("v3-broken", false)
  local base = { service = service, port = port, container_port = 8080, health_path = "/health",
                 state_dir = dir, verify = { retries = 20, interval = 0.5, timeout = 2 }, drain = 0.5 }
  local function deploy(image, run_id)
    local o = { image = image, run = run_id, ctx = recording_ctx(run_id) }
    for k, v in pairs(base) do o[k] = v end
    return o.ctx, target.deploy(o)
  end
  local ok, err = pcall(function()
    -- first deploy: the proxy starts, v1 answers on the service port
    local _, r1 = deploy(v1, "r1-" .. ID)
    t.eq(r1.url, "http://127.0.0.1:" .. port)
    t.eq(get(r1.url .. "/version").body, "v1")
    local st = target.status { service = service, state_dir = dir }
    t.ok(st.proxy.running, "the proxy runs")
    t.eq(#st.containers, 1)
    t.eq(st.active.name, service)

    -- second deploy replaces it; the old container is gone
    local ctx2, r2 = deploy(v2, "r2-" .. ID)
    t.eq(get(r2.url .. "/version").body, "v2")
    t.eq(r2.previous, v1)
    t.eq(#containers(service), 1)
    t.eq(ctx2.registered[1].action, "local.remove_candidate")
    t.eq(ctx2.registered[2].action, "local.restore")
    t.eq(ctx2.registered[2].args.previous.image, v1)

    -- a broken candidate is removed and v2 keeps serving
    local err3 = t.raises(function() deploy(bad, "r3-" .. ID) end, "rollout_failed", "did not become healthy")
    t.match(err3.message, "keeps serving")
    t.eq(get(r2.url .. "/version").body, "v2")
    t.eq(#containers(service), 1)

    -- rolling back the finished second deploy brings v1 back, same image, then removes v2
    roll_back(ctx2)
    t.eq(get(r2.url .. "/version").body, "v1")
    local after = containers(service)
    t.eq(#after, 1)
    t.eq(after[1].name, service)
    local info = hoist.docker.inspect { name = service, type = "container" }
    t.eq(info.Config.Image, v1)
    t.eq(info.Config.Labels["hoist.role"], "active")
    -- and running it again changes nothing (idempotent)
    roll_back(ctx2)
    t.eq(get(r2.url .. "/version").body, "v1")
    t.eq(hoist.docker.inspect({ name = service, type = "container" }).Id, info.Id)
  end)
  local removed = target.remove { service = service, state_dir = dir }
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
  t.eq(removed.proxy_stopped, true)
  t.eq(#containers(service), 0)
end, SLOW)

t.case("the rollback of a run that another run has superseded leaves the newer version serving", function()
  need_docker()
  local dir, port, service = state_dir(), free_port(), "hoist-lt-sup-" .. ID
  local base = { service = service, port = port, container_port = 8080, health_path = "/health", state_dir = dir,
                 drain = 0, verify = { retries = 20, interval = 0.5, timeout = 2 } }
  local function deploy(image, run_id)
    local o = { image = image, run = run_id, ctx = recording_ctx(run_id) }
    for k, v in pairs(base) do o[k] = v end
    target.deploy(o)
    return o.ctx
  end
  local ok, err = pcall(function()
    local ctx_first = deploy(app_image("v1"), "s1-" .. ID)
    local ctx2 = deploy(app_image("v2"), "s2-" .. ID)
    deploy(app_image("v3"), "s3-" .. ID)
    -- undoing s2 (e.g. `hoist rollback` of it) must not put v1 back over v3, nor fail forever
    roll_back(ctx2)
    t.eq(get("http://127.0.0.1:" .. port .. "/version").body, "v3", "v3 still serves")
    -- nor may undoing the very first deploy stop the front that s3 serves through
    roll_back(ctx_first)
    t.eq(get("http://127.0.0.1:" .. port .. "/version").body, "v3", "v3 still serves")
    t.eq(#containers(service), 1)
  end)
  target.remove { service = service, state_dir = dir }
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
end, SLOW)

t.case("rolling back a first deploy takes the service down", function()
  need_docker()
  local dir, port, service = state_dir(), free_port(), "hoist-lt1-" .. ID
  local ctx = recording_ctx("f1-" .. ID)
  local ok, err = pcall(function()
    target.deploy { service = service, image = app_image("v1"), port = port, container_port = 8080,
                    health_path = "/health", state_dir = dir, ctx = ctx, run = ctx.run.id, drain = 0 }
    t.eq(get("http://127.0.0.1:" .. port .. "/version").body, "v1")
    roll_back(ctx)
    t.eq(get("http://127.0.0.1:" .. port .. "/version"), nil)
    t.eq(#containers(service), 0)
    t.eq(hoist.proxy.status({ state = hoist.proxy.state_file(service, dir) }).running, false)
  end)
  target.remove { service = service, state_dir = dir }
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
end, SLOW)

t.case("teardown removes the service's 0600 environment files; under --dry-run it only says what it would remove", function()
  need_docker()
  local dir, port, service = state_dir(), free_port(), "hoist-lt-td-" .. ID
  local secret = "lt-teardown-secret-" .. ID
  local base = { service = service, port = port, container_port = 8080, health_path = "/health", state_dir = dir,
                 drain = 0, verify = { retries = 20, interval = 0.5, timeout = 2 } }
  local function deploy(image, run_id, extra)
    local o = { image = image, run = run_id, ctx = recording_ctx(run_id) }
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return target.deploy(o)
  end
  local function teardown(dry)
    local argv = { "run", root .. "/examples/local-teardown.lua", "--set", "service=" .. service, "--state-dir", dir,
                   "--no-color" }
    if dry then argv[#argv + 1] = "--dry-run" end
    return support.run_hoist(argv, { timeout = 120 })
  end
  local ok, err = pcall(function()
    deploy(app_image("v1"), "td1-" .. ID, { secret_env = { APP_TOKEN = secret } })
    deploy(app_image("v2"), "td2-" .. ID) -- keeps v1's environment (with its secret) for a rollback
    local kept = dir .. "/local/" .. service .. "/td2-" .. ID .. ".env.json"
    t.eq(hoist.exec({ "stat", "-c", "%a", kept }).stdout, "600\n", "the kept environment is a 0600 file")

    local dry = teardown(true)
    t.eq(dry.code, 0, dry.stderr)
    t.match(dry.stdout .. dry.stderr, service:gsub("%p", "%%%0") .. ": would remove 1 container%(s%) and 1 environment file%(s%), would stop its proxy")
    t.match(dry.stdout .. dry.stderr, "would remove " .. kept:gsub("%p", "%%%0"))
    t.ok(support.exists(kept), "a dry run removes no file")
    t.eq(#containers(service), 1, "a dry run removes no container")
    t.eq(get("http://127.0.0.1:" .. port .. "/version").body, "v2", "a dry run leaves the service serving")

    local real = teardown(false)
    t.eq(real.code, 0, real.stderr)
    t.match(real.stdout .. real.stderr, service:gsub("%p", "%%%0") .. ": removed 1 container%(s%) and 1 environment file%(s%), stopped its proxy")
    t.no_match(real.stdout .. real.stderr, secret)
    t.ok(not support.exists(kept), "the environment file is gone")
    t.ok(not support.exists(dir .. "/local/" .. service), "and its folder")
    t.eq(#containers(service), 0)
    t.eq(hoist.exec({ "grep", "-rl", secret, dir }).stdout, "", "no file of the state folder holds the secret")
  end)
  target.remove { service = service, state_dir = dir }
  hoist.exec { "rm", "-rf", dir }
  if not ok then error(err, 0) end
end, SLOW)

t.case("a container hoist did not start keeps its name", function()
  need_docker()
  local service = "hoist-lt-foreign-" .. ID
  hoist.docker.run { image = BASE, name = service, command = { "sleep", "30" } }
  local ok, err = pcall(target.deploy, { service = service, image = app_image("v1"), port = free_port(),
    container_port = 8080, health_path = "/health", state_dir = "/tmp/hoist-lt-unused-" .. ID })
  hoist.docker.rm { name = service, force = true, missing_ok = true }
  t.ok(not ok)
  t.eq(err.code, "conflict")
  t.match(err.message, "hoist did not start")
end, SLOW)

t.case("remove cleans up the test images", function()
  need_docker()
  for _, ref in pairs(built) do hoist.docker.rmi { image = ref, force = true, missing_ok = true } end
end, SLOW)
