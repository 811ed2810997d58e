-- container@1 with `services`: many services from one process, through the hoist command as a
-- user runs it (`hoist run container@1 --params-file FILE`), against the real Docker engine
-- and registry of tests/env, target local on 127.0.0.1 ports, scan off (the gate itself is
-- container_test's). The cases share one state folder and run in order: a bad entry and an
-- unknown `only` refused before any build; the dry runs; three services on two images (two
-- builds, three deploys, artifacts_out, a secret per service); then, from those recorded
-- digests (no more builds): `artifacts` + `only` deploying one; one unhealthy service rolling
-- back all; two processes whose services overlap; SIGTERM; clean up.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local root = support.root
local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 300 }
local read, hoist_bin, free_port = support.read, support.hoist_bin, support.free_port

local function need_docker() support.need_docker("container@1 services test") end

local S = {
  state = support.tmpdir("hoist-fleet-test"),
  prefix = "hoist-fleet-" .. ID,
  secret = "hoist-fleet-secret-" .. ID .. "-q7",
  n = 0,
}
S.repo_a = REGISTRY .. "/" .. S.prefix .. "/a"
S.repo_b = REGISTRY .. "/" .. S.prefix .. "/b"
local NAMES = { "api", "web", "wrk" }
local function svc(short) return S.prefix .. "-" .. short end

local function show(r) return ("exit %s\n--- stdout\n%s\n--- stderr\n%s"):format(tostring(r.code), r.stdout, r.stderr) end

-- `hoist run container@1 --params-file FILE` in a child process; returns hoist.exec's result
-- plus the run id it printed.
local function run_fleet(params, opts)
  opts = opts or {}
  S.n = S.n + 1
  local file = ("%s/params-%d.json"):format(S.state, S.n)
  support.write(file, hoist.json.encode(params))
  local argv = { hoist_bin(), "run", "container@1", "--params-file", file, "--state-dir", S.state, "--no-color",
                 cwd = root, timeout = 240, env = opts.env }
  if opts.dry_run then argv[#argv + 1] = "--dry-run" end
  local r = hoist.exec(argv)
  r.run = (r.stdout .. r.stderr):match("run (%d+%-%d+%-%x+)")
  return r
end

-- The top-level parameters every case starts from: the example app, scan off, quick checks.
local function base(version, extra)
  local p = { context = "examples/app", target = "local", scan = "off", tag = version, verify_timeout = 6, drain = 0,
              build_args = { BASE_IMAGE = BASE, VERSION = version } }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function version_of(short)
  local ok, r = pcall(hoist.http.request, { url = ("http://127.0.0.1:%d/version"):format(S.ports[short]), timeout = 5 })
  return ok and r.status == 200 and r.body or nil
end

local function containers_of(short)
  return hoist.docker.ps { all = true, filters = { label = "hoist.service=" .. svc(short) } }
end

local function journal(run_id)
  local out = {}
  for line in (read(S.state .. "/runs/" .. run_id .. "/journal.jsonl") or ""):gmatch("[^\n]+") do
    out[#out + 1] = hoist.json.decode(line)
  end
  return out
end

local function outputs_of(run_id, stage)
  for _, e in ipairs(journal(run_id)) do
    if e.kind == "stage.end" and e.stage == stage then return e.outputs end
  end
end

S.ports = {}
for _, n in ipairs(NAMES) do S.ports[n] = free_port() end

-- api and web share image a; wrk has b (another repository, so another build)
local function three(version)
  return {
    { name = svc("api"), image = S.repo_a, port = S.ports.api, secret_env = { APP_TOKEN = S.secret } },
    { name = svc("web"), image = S.repo_a, port = S.ports.web },
    { name = svc("wrk"), image = S.repo_b, port = S.ports.wrk },
  }
end

---------------------------------------------------------------- refused before anything runs

t.cases("a bad entry, an unknown `only` name, a missing artifact: exit 2 before any build, naming it", {
  { name = "a bad port", edit = function(p) p.services[2].port = 70000 end,
    pat = "services%[2%] %(" .. svc("web"):gsub("%p", "%%%0") .. "%): port: must be from 1 to 65535, got 70000" },
  { name = "an unknown parameter", edit = function(p) p.services[3].prot = 1 end,
    pat = 'services%[3%] %(' .. svc("wrk"):gsub("%p", "%%%0") .. '%): unknown parameter "prot" %(did you mean "port"%?%)' },
  { name = "a duplicate name", edit = function(p) p.services[3].name = svc("api") end, pat = "is services%[1%]'s too" },
  { name = "no name", edit = function(p) p.services[1].name = nil end, pat = "services%[1%]: name is missing" },
  { name = "a missing build folder", edit = function(p) p.services[2].context = "/nonexistent-" .. ID end,
    pat = "services%[2%] %([^)]+%): context: the build folder /nonexistent%-%w+ does not exist" },
  { name = "one port for two", edit = function(p) p.services[2].port = S.ports.api end, pat = "port %d+ is services%[1%]" },
  { name = "one image built two ways", edit = function(p) p.services[2].build_args = { VERSION = "other" } end,
    pat = "services%[2%] %([^)]+%): pushes .* as services%[1%] %([^)]+%) does, built differently" },
  { name = "an unknown only", edit = function(p) p.only = { svc("api"), "nosuch" } end,
    pat = 'only: no service named "nosuch" %(services: ' .. svc("api"):gsub("%p", "%%%0") },
  { name = "only without services", edit = function(p) p.services, p.image, p.only = nil, S.repo_a, { "x" } end,
    pat = "only: it selects entries of services" },
  { name = "too many services", edit = function(p)
      for i = 4, 201 do p.services[i] = { name = "s" .. i, image = S.repo_a, port = 20000 + i } end
    end, pat = "services: at most 200 items, got 201" },
  { name = "a missing artifacts file", edit = function(p) p.artifacts = S.state .. "/none.json" end,
    pat = "artifacts: .*/none%.json does not exist" },
  { name = "artifacts and artifacts_out", edit = function(p) p.artifacts, p.artifacts_out = S.state .. "/a.json", S.state .. "/a.json" end,
    pat = "artifacts_out: a run with artifacts pushes nothing" },
}, function(row)
  local p = base("bad", { services = three() })
  row.edit(p)
  local before = #hoist.fs.list(S.state .. "/runs")
  local r = run_fleet(p)
  t.eq(r.code, 2, show(r))
  t.match(r.stderr, row.pat)
  t.no_match(r.stdout .. r.stderr, S.secret)
  t.eq(#hoist.fs.list(S.state .. "/runs"), before, "no run started")
end)

t.case("a stage's timeout grows with the rounds of deploys: ceil(services / concurrency) times one service's", function()
  local _, def = require("hoist.scripts").resolve("container@1")
  local timeouts = {}
  for _, st in ipairs(def.stages) do timeouts[st.name] = st.timeout end
  local function entries(n)
    local list = {}
    for i = 1, n do list[i] = { name = "s" .. i } end
    return list
  end
  t.eq(timeouts.deploy({}), 900, "a single run: the stage's own")
  t.eq(timeouts.deploy({ services = entries(10), concurrency = 4 }), 2700, "10 services, 4 at once: 3 rounds")
  t.eq(timeouts.verify({ services = entries(10), concurrency = 10 }), 300, "one round")
  t.eq(timeouts.deploy({ services = entries(10), concurrency = 4, only = { "s1", "s2" } }), 900, "a slice of 2: one round")
  t.eq(timeouts.build({ services = entries(3), concurrency = 1 }), 5400)
end)

t.case("--dry-run plans every service: one build per image, a deploy and a check each", function()
  need_docker() -- a dry run still reads what serves now
  local r = run_fleet(base("dry", { services = three() }), { dry_run = true })
  t.eq(r.code, 0, show(r))
  local builds = select(2, r.stdout:gsub("%[build%] docker build", ""))
  t.eq(builds, 2, "two images, two builds\n" .. r.stdout)
  for _, n in ipairs(NAMES) do
    t.match(r.stdout, "%[deploy%] docker run [^\n]*%-%-name " .. svc(n):gsub("%p", "%%%0") .. "%-")
    t.match(r.stdout, "%[verify%] check GET http://127%.0%.0%.1:" .. S.ports[n] .. "/health")
  end
  t.match(r.stderr, "Services\n[^\n]*" .. svc("api"):gsub("%p", "%%%0") .. " %(local%): planned")
  t.no_match(r.stdout .. r.stderr, S.secret)
end)

t.case("examples/fleet/params.json is a valid parameter file: three services, two builds (dry run)", function()
  need_docker()
  local r = hoist.exec { hoist_bin(), "run", "container@1", "--params-file", "examples/fleet/params.json", "--dry-run",
                         "--state-dir", S.state, "--no-color", cwd = root, timeout = 120 }
  t.eq(r.code, 0, show(r))
  t.eq(select(2, r.stdout:gsub("%[build%] docker build", "")), 2, r.stdout)
  for _, n in ipairs { "fleet-api", "fleet-web", "fleet-worker" } do
    t.match(r.stderr, n:gsub("%p", "%%%0") .. " %(local%): planned")
  end
end)

---------------------------------------------------------------- deploys

t.case("three services on two images: two builds, three deploys, one report, artifacts_out; no secret shows", function()
  need_docker()
  local p = base("v1", { services = three(), artifacts_out = S.state .. "/artifacts.json", concurrency = 3 })
  local r = run_fleet(p)
  t.eq(r.code, 0, show(r))
  for _, n in ipairs(NAMES) do t.eq(version_of(n), "v1", n .. " serves v1") end
  t.eq(outputs_of(r.run, "build").images, 2, "one build per image")
  local rows = outputs_of(r.run, "done").services
  t.eq(#rows, 3)
  local artifacts = hoist.json.decode(read(S.state .. "/artifacts.json"))
  for i, n in ipairs(NAMES) do
    t.eq(rows[i].name, svc(n))
    t.eq(rows[i].status, "deployed")
    t.eq(rows[i].target, "local")
    t.match(rows[i].digest, "^sha256:%x+$")
    t.eq(rows[i].url, "http://127.0.0.1:" .. S.ports[n])
    t.eq(artifacts[svc(n)], rows[i].image, "artifacts_out records the reference by digest")
  end
  t.eq(rows[1].digest, rows[2].digest, "api and web run the one image")
  t.ok(rows[1].digest ~= rows[3].digest, "wrk its own")
  -- the secret reaches api's container only, and no output, journal or report
  local env = table.concat(hoist.docker.inspect({ name = svc("api"), type = "container" }).Config.Env, "\n")
  t.ok(env:find("APP_TOKEN=" .. S.secret, 1, true), "api has its secret")
  local web_env = table.concat(hoist.docker.inspect({ name = svc("web"), type = "container" }).Config.Env, "\n")
  t.no_match(web_env, S.secret, "web has none")
  t.no_match(r.stdout .. r.stderr, S.secret)
  local rep = support.run_hoist({ "report", r.run, "--state-dir", S.state })
  t.eq(rep.code, 0, show(rep))
  for _, n in ipairs(NAMES) do
    t.match(rep.stdout, svc(n):gsub("%p", "%%%0") .. " %(local%): deployed, image [^\n]*@sha256:%x+, http://127%.0%.0%.1:")
  end
  t.no_match(read(S.state .. "/runs/" .. r.run .. "/journal.jsonl"), S.secret)
  t.no_match(read(S.state .. "/runs/" .. r.run .. "/events.jsonl"), S.secret)
  t.no_match(rep.stdout, S.secret)
  S.v1 = rows
end, SLOW)

t.case("artifacts + only: no build, the recorded digest of the one selected service is deployed", function()
  need_docker()
  t.ok(S.v1, "the first deploy ran")
  local others = { api = containers_of("api")[1].id, wrk = containers_of("wrk")[1].id }
  -- what was deployed before by digest, deployed again in a new run (a new container)
  local p = base("ignored", { services = three(), artifacts = S.state .. "/artifacts.json", only = { svc("web") },
                              context = "/nonexistent-" .. ID })
  local r = run_fleet(p)
  t.eq(r.code, 0, show(r))
  t.eq(outputs_of(r.run, "build").artifacts, S.state .. "/artifacts.json", "nothing was built")
  local rows = outputs_of(r.run, "done").services
  t.eq(#rows, 1)
  t.eq(rows[1].name, svc("web"))
  t.eq(rows[1].image, S.v1[2].image, "the recorded reference by digest")
  t.eq(hoist.docker.inspect({ name = svc("web"), type = "container" }).Config.Labels["hoist.run"], r.run)
  t.eq(containers_of("api")[1].id, others.api, "api untouched")
  t.eq(containers_of("wrk")[1].id, others.wrk, "wrk untouched")
  -- a selected service the file does not record is a usage error naming it
  support.write(S.state .. "/partial.json", hoist.json.encode { [svc("api")] = S.v1[1].image })
  local bad = run_fleet(base("x", { services = three(), artifacts = S.state .. "/partial.json" }))
  t.eq(bad.code, 2, show(bad))
  t.match(bad.stderr, "artifacts: .*partial%.json records no image for service%(s%) " .. svc("web"):gsub("%p", "%%%0")
    .. ", " .. svc("wrk"):gsub("%p", "%%%0") .. " %(it holds: " .. svc("api"):gsub("%p", "%%%0") .. "%)")
end, SLOW)

t.case("one service fails its health check: the run fails naming it, and every service it changed is rolled back", function()
  need_docker()
  -- the images of the first deploy again (no build), wrk checked on a path its app does not serve
  -- listed in reverse: the deploy locks are still taken in one order (target/name), the one
  -- every run agrees on, so that two runs sharing services never wait for each other in a circle
  local s3 = three()
  local services = { s3[3], s3[2], s3[1] }
  services[1].health_path, services[1].verify_timeout = "/nonexistent", 2
  local r = run_fleet(base("v1", { services = services, concurrency = 3, artifacts = S.state .. "/artifacts.json" }))
  t.eq(r.code, 1, show(r))
  local order = {}
  for line in read(S.state .. "/runs/" .. r.run .. "/events.jsonl"):gmatch("[^\n]+") do
    local e = hoist.json.decode(line)
    if e.kind == "lock.acquired" then order[#order + 1] = e.fields.key end
  end
  t.eq(order, { "local/" .. svc("api"), "local/" .. svc("web"), "local/" .. svc("wrk") }, "locks taken in name order")
  t.match(r.stderr, "stage deploy failed %(rolled back %d+ change%(s%)%): service " .. svc("wrk"):gsub("%p", "%%%0")
    .. ": the new container [^\n]* did not become healthy")
  for _, n in ipairs(NAMES) do
    t.eq(version_of(n), "v1", n .. " serves")
    local rows = containers_of(n)
    t.eq(#rows, 1, n .. ": no stray container")
    t.ok(rows[1].labels["hoist.run"] ~= r.run, n .. ": what serves is not the failed run's (its deploy was undone)")
  end
  t.match(r.stderr, "Services\n")
  t.match(r.stderr, svc("wrk"):gsub("%p", "%%%0") .. " %(local%): failed")
  t.no_match(r.stdout .. r.stderr, S.secret)
end, SLOW)

-- The deploy lock events (events.jsonl) of `key` in run `id`: {acquired = ts, released = ts}.
local function lock_times(id, key)
  local out = {}
  for line in (read(S.state .. "/runs/" .. id .. "/events.jsonl") or ""):gmatch("[^\n]+") do
    local e = hoist.json.decode(line)
    if (e.kind == "lock.acquired" or e.kind == "lock.released") and e.fields and e.fields.key == key then
      out[e.kind:match("%.(%w+)$")] = e.ts
    end
  end
  return out
end

t.case("two processes whose services overlap: the shared service is never deployed by both at once, the others go on", function()
  need_docker()
  -- both from the recorded digests (no build): {api, web} and {web, wrk}; each deploy pauses
  -- a second with its candidate running, a window for the other run to want web's lock
  local function half(only)
    return base("v1", { services = three(), artifacts = S.state .. "/artifacts.json", only = only })
  end
  local env = { HOIST_TEST_PAUSE_IN_DEPLOY = "1" }
  local a, b = hoist.parallel(function() return run_fleet(half { svc("api"), svc("web") }, { env = env }) end,
                              function() return run_fleet(half { svc("web"), svc("wrk") }, { env = env }) end)
  t.eq(a.code, 0, show(a))
  t.eq(b.code, 0, show(b))
  local key = "local/" .. svc("web")
  local la, lb = lock_times(a.run, key), lock_times(b.run, key)
  for _, l in ipairs { la, lb } do t.ok(l.acquired and l.released, "both runs took and gave back web's lock") end
  local first, second = la, lb
  if lb.acquired < la.acquired then first, second = lb, la end
  t.ok(first.released <= second.acquired, "one run took web's lock only after the other gave it back")
  local waited = (a.stderr .. b.stderr):match("waiting for run [^\n]*deploying " .. key:gsub("%p", "%%%0"))
  print("the second run " .. (waited and "waited for web's lock: " .. waited or "came after the first had finished"))
  t.eq(version_of("web"), "v1")
  for _, n in ipairs(NAMES) do t.eq(#containers_of(n), 1, n .. ": no stray container") end
end, SLOW)

t.case("SIGTERM while the services deploy: the in-flight deploys are cancelled and rolled back, exit 130", function()
  need_docker()
  S.n = S.n + 1
  local file = ("%s/params-%d.json"):format(S.state, S.n)
  support.write(file, hoist.json.encode(base("v1", { services = three(), artifacts = S.state .. "/artifacts.json" })))
  local pidfile = S.state .. "/term.pid"
  local argv = { hoist_bin(), "run", "container@1", "--params-file", file, "--state-dir", S.state, "--no-color" }
  local sh = { "sh", "-c", ('echo $$ > %s; exec "$@"'):format(pidfile), "sh", cwd = root,
              env = { HOIST_TEST_PAUSE_IN_DEPLOY = "60" }, timeout = 240 }
  for _, a in ipairs(argv) do sh[#sh + 1] = a end
  local task = hoist.spawn(function() return hoist.exec(sh) end)
  -- every service has its candidate beside the serving container: all three deploys are in flight
  local function candidates()
    local n = 0
    for _, name in ipairs(NAMES) do
      for _, row in ipairs(containers_of(name)) do
        -- a serving container keeps the label it was created with: candidates are the ones not renamed yet
        if row.name ~= svc(name) and row.labels["hoist.role"] == "candidate" then n = n + 1 end
      end
    end
    return n
  end
  for _ = 1, 300 do
    if candidates() == 3 or task:status() ~= "running" then break end
    hoist.sleep(0.1)
  end
  local in_flight = candidates()
  local killed = hoist.exec { "kill", "-TERM", read(pidfile):match("%d+") }
  local r = task:wait()
  t.eq(in_flight, 3, "three deploys in flight\n" .. show(r))
  t.eq(killed.code, 0, "the run was still running\n" .. show(r))
  t.eq(r.code, 130, show(r))
  t.match(r.stderr, "received SIGTERM")
  for _, n in ipairs(NAMES) do
    t.eq(version_of(n), "v1", n .. " serves v1")
    t.eq(#containers_of(n), 1, n .. ": no stray container")
  end
end, SLOW)

t.case("clean up", function()
  if os.getenv("HOIST_TEST_DOCKER") ~= "1" then
    hoist.exec { "rm", "-rf", S.state }
    need_docker()
  end
  for _, n in ipairs(NAMES) do require("hoist.targets.local").remove { service = svc(n), state_dir = S.state } end
  for _, repo in ipairs { S.repo_a, S.repo_b } do
    for _, tag in ipairs { "v1", "v2" } do hoist.docker.rmi { image = repo .. ":" .. tag, force = true, missing_ok = true } end
  end
  hoist.exec { "rm", "-rf", S.state }
  for _, n in ipairs(NAMES) do t.eq(#containers_of(n), 0) end
end, SLOW)
