-- One run context: hoist.pipeline.run(def, params, {dry_run = true}) puts the whole run in
-- dry-run, and every mutating primitive reads that one flag: nothing changes, every change
-- is a step of the plan. hoist.exec is not planned (it runs; docs/process.md says so).
-- The HTTP part runs everywhere (a counting server on 127.0.0.1); the Docker and registry
-- part needs tests/env (run it under flock /tmp/hoist-docker.lock).
local t = require "hoist.test"
local pipeline = require "hoist.pipeline"
local core = require "hoist.native.core"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

-- A server that answers every request and counts them by method (GET /count reads them;
-- it is not counted).
local COUNTER = [[
import http.server, json, sys
counts = {}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        if self.command == "GET" and self.path == "/count":
            body = json.dumps(counts).encode()
        else:
            counts[self.command] = counts.get(self.command, 0) + 1
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = any
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.timeout = 300
s.serve_forever()
]]

local base
local function counter()
  if base then return base end
  local dir = support.tmpdir("hoist-dry-http")
  support.write(dir .. "/counter.py", COUNTER)
  local task = hoist.spawn(hoist.exec, { "python3", dir .. "/counter.py", dir .. "/port" })
  for _ = 1, 200 do
    local port = support.read(dir .. "/port")
    if port and port ~= "" then
      base = "http://127.0.0.1:" .. port
      return base
    end
    if task:status() ~= "running" then error("the counting server exited: " .. tostring((task:wait() or {}).stderr)) end
    hoist.sleep(0.05)
  end
  error("the counting server did not start")
end

local function counts() return hoist.http.get(counter() .. "/count").json end

local function run_dry(stages)
  return pipeline.run({ name = "dry", version = "1.0.0", params = {}, stages = stages }, {}, { dry_run = true, quiet = true })
end

local function actions_of(plan)
  local out = {}
  for _, s in ipairs(plan) do out[#out + 1] = s.action or "?" end
  return out
end

t.case("outside a dry pipeline run the flag is the engine's; inside it is on; after it is back", function()
  local before = core.dry_run()
  local inside, inner
  run_dry { { name = "look", run = function(ctx)
    inside = { core.dry_run(), hoist.run.dry_run, pipeline.dry_run(), require("hoist.util").dry_run(), ctx.dry_run }
    -- a run inside a dry run cannot turn dry-run off
    local r = pipeline.run({ name = "inner", version = "1.0.0", params = {}, stages = {
      { name = "x", run = function() inner = core.dry_run() end } } }, {}, { dry_run = false })
    t.eq(r.dry_run, true)
  end } }
  t.eq(inside, { true, true, true, true, true })
  t.eq(inner, true)
  t.eq(core.dry_run(), before, "the flag is restored when the run ends")
end)

t.case("hoist.http: POST, PUT, PATCH and DELETE are plan steps in a dry run; GET and safe calls are sent", function()
  local url = counter()
  local before = counts()
  local got
  local r = run_dry { { name = "calls", run = function()
    got = {
      hoist.http.post(url .. "/items", { json = { name = "a" } }),
      hoist.http.put(url .. "/items/1", { body = "x" }),
      hoist.http.request { url = url .. "/items/1", method = "PATCH", body = "y" },
      hoist.http.delete(url .. "/items/1"),
      hoist.http.post(url .. "/query", { json = { q = 1 }, safe = true }),
      hoist.http.get(url .. "/items"),
    }
  end } }
  local after = counts()
  for i = 1, 4 do t.eq({ got[i].planned, got[i].status }, { true, 0 }, "call " .. i) end
  t.eq({ got[5].status, got[5].planned }, { 200, nil }, "a safe POST is sent")
  t.eq((after.POST or 0) - (before.POST or 0), 1, "only the safe POST reached the server")
  for _, m in ipairs { "PUT", "PATCH", "DELETE" } do t.eq(after[m], before[m], m .. " never reached the server") end
  t.eq((after.GET or 0) - (before.GET or 0), 1)
  t.eq(actions_of(r.plan), { "http.post", "http.put", "http.patch", "http.delete" })
  t.eq(r.plan[1].body, { name = "a" })
  t.eq(r.plan[1].stage, "calls")
  t.eq(r.plan[4].url, url .. "/items/1")
end)

---------------------------------------------------------------- docker, registry, local target

-- Only the lines naming this file's ID: other files run beside this one (hoist test -j) and
-- change the engine's images and containers meanwhile. Everything the dry run would make
-- carries the ID (the repository, the service's containers).
local function lines(argv)
  local r = hoist.exec(argv)
  t.eq(r.code, 0, table.concat(argv, " ") .. ": " .. r.stderr)
  local out = {}
  for l in r.stdout:gmatch("[^\n]+") do if l:find(ID, 1, true) then out[#out + 1] = l end end
  table.sort(out)
  return out
end

-- What a dry run must leave as it was: its images and their tags, its containers, the registry's tags.
local function world(repo)
  local tags = hoist.registry.tags(repo)
  table.sort(tags)
  return {
    images = lines { "docker", "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}" },
    containers = lines { "docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Status}}" },
    tags = tags,
  }
end

t.case("a dry pipeline run through every mutating primitive changes nothing and plans every step", function()
  support.need_docker("dry-run world test")
  local reg = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
  local basic = os.getenv("HOIST_TEST_REGISTRY_BASIC") or "127.0.0.1:5001"
  local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
  local repo = ("%s/hoist-dry-%s/app"):format(reg, ID)
  -- a real image in the registry, so copy/retag/delete have something to work on
  hoist.docker.tag(BASE, repo .. ":v1")
  hoist.docker.push { image = repo .. ":v1", stream = false }
  local state = support.tmpdir("hoist-dry-state")
  local service = "hoist-dry-" .. ID
  local before = world(repo)
  local results = {}
  local r = run_dry { { name = "everything", run = function(ctx)
    local function did(name, v) results[name] = v end
    did("build", hoist.docker.build { context = support.root .. "/examples/app", tags = { repo .. ":v2" }, stream = false,
      build_args = { BASE_IMAGE = BASE } })
    did("tag", hoist.docker.tag(repo .. ":v1", repo .. ":v3"))
    did("push", hoist.docker.push { image = repo .. ":v3" })
    did("login", hoist.docker.login { registry = basic, username = "hoist", password = "hoist-basic-secret" })
    did("run", hoist.docker.run { image = repo .. ":v1", name = service .. "-c", ports = { "127.0.0.1::8080" } })
    did("stop", hoist.docker.stop { name = service .. "-c" })
    did("rm", hoist.docker.rm { name = service .. "-c", force = true })
    did("copy", hoist.registry.copy { from = repo .. ":v1", to = repo .. ":copied" })
    did("retag", hoist.registry.retag { image = repo .. ":v1", tag = "retagged" })
    did("delete", hoist.registry.delete { image = repo .. ":v1" })
    did("registry.login", hoist.registry.login { registry = basic, username = "hoist", password = "hoist-basic-secret" })
    did("proxy.start", hoist.proxy.start { name = service, listen = "127.0.0.1:1", upstream = "127.0.0.1:2",
      state = state .. "/p.json" })
    did("proxy.switch", hoist.proxy.switch { state = state .. "/p.json", upstream = "127.0.0.1:3" })
    did("proxy.stop", hoist.proxy.stop { state = state .. "/p.json" })
    did("deploy", require("hoist.targets.local").deploy { service = service, image = repo .. ":v1", port = support.free_port(),
      container_port = 8080, health_path = "/health", state_dir = state, ctx = ctx })
    did("remove", require("hoist.targets.local").remove { service = service, state_dir = state })
  end } }
  local after = world(repo)
  -- clean up what the test itself made (for real: outside the dry run)
  pcall(hoist.registry.delete, repo .. ":v1")
  hoist.registry.logout(basic) -- the login is the process's own state: later tests start without it
  pcall(hoist.docker.rmi, { image = repo .. ":v1", missing_ok = true })
  t.eq(r.status, "succeeded", tostring(r.error))
  t.eq(after, before, "images, containers and registry tags are as they were")
  for _, k in ipairs { "build", "tag", "push", "login", "run", "stop", "rm", "copy", "retag", "delete",
                       "proxy.start", "proxy.switch", "proxy.stop", "deploy" } do
    t.ok(results[k] and results[k].planned, k .. " says it was planned")
  end
  local planned = table.concat(actions_of(r.plan), " ")
  for _, a in ipairs { "docker.build", "docker.tag", "docker.push", "docker.login", "docker.run", "docker.stop",
                       "docker.rm", "proxy.start", "proxy.switch", "proxy.stop" } do
    t.match(planned, (a:gsub("%.", "%%.")), "the plan has " .. a)
  end
  -- the registry's own steps: the requests it would send
  local requests = {}
  for _, s in ipairs(r.plan) do if s.method then requests[#requests + 1] = s.method .. " " .. s.url end end
  requests = table.concat(requests, "\n")
  t.match(requests, "PUT [^\n]*/manifests/copied", "registry.copy")
  t.match(requests, "PUT [^\n]*/manifests/retagged", "registry.retag")
  t.match(requests, "DELETE [^\n]*/manifests/sha256:", "registry.delete")
  t.no_match(hoist.json.encode(r.plan), "hoist-basic-secret", "no secret in the plan")
end, { timeout = 600 })

t.case("a plan step's command line is scrubbed before it is quoted", function()
  local secret = hoist.secret("it's-a-secret-value")
  local step = require("hoist.util").plan { argv = { "login", "--password", secret } }
  t.no_match(step.message, "secret-value")
  t.match(step.message, "login %-%-password '%*%*%*'")
end)
