-- hoist.registry: argument checking, and the error paths a real registry cannot produce,
-- against tests/servers/fault_registry.py (started here; needs only python3). The cases
-- that copy INTO a real registry need tests/env (127.0.0.1:5000) and skip without it.
local t = require "hoist.test"
local registry = hoist.registry

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local SCRIPT = here .. "/../servers/fault_registry.py"
local REG = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local FAST = { attempts = 2, backoff = 0.01 }
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

local fault -- "127.0.0.1:<port>"

local function with(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- One fault registry for the file; the engine ends the task (and the server) with the run.
local function server()
  if fault then return fault end
  local port_file = os.tmpname()
  os.remove(port_file)
  local task = hoist.spawn(hoist.exec, { "python3", SCRIPT, "--port-file", port_file, "--lifetime", "600",
    timeout = 700 })
  for _ = 1, 200 do
    local f = io.open(port_file)
    if f then
      fault = "127.0.0.1:" .. f:read("*l")
      f:close()
      os.remove(port_file)
      return fault
    end
    if task:status() ~= "running" then error("fault_registry.py exited early: " .. tostring(task:wait().stderr)) end
    hoist.sleep(0.05)
  end
  error("fault_registry.py did not start within 10 s")
end

local function stats()
  return hoist.http.get("http://" .. server() .. "/_fault/stats").json
end

local support = dofile(here .. "/support.lua")
local function need_registry()
  support.need_docker("registry integration case",
    "the test registries are not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`")
end

---------------------------------------------------------------- arguments

t.cases("bad references are invalid_argument naming the reference", {
  { name = "uppercase", image = "127.0.0.1:5000/App:v1", why = "must be lowercase" },
  { name = "empty tag", image = "127.0.0.1:5000/app:", why = "empty tag" },
  { name = "bad digest", image = "127.0.0.1:5000/app@sha256:1234", why = "64 lower%-case hex" },
  { name = "bad port", image = "127.0.0.1:99999/app", why = "port out of range" },
  { name = "empty", image = "", why = "empty reference" },
}, function(row)
  local err = t.raises(function() registry.resolve(row.image) end, "invalid_argument", row.why)
  t.match(err.message, "'" .. row.image:gsub("%p", "%%%0") .. "'")
end)

t.cases("bad options are invalid_argument naming the option", {
  { name = "unknown option", call = function() registry.resolve { image = "r.io/a", colour = "red" } end, why = "unknown option 'colour'" },
  { name = "wrong type", call = function() registry.tags { repository = "r.io/a", n = "two" } end, why = "'n' must be a number" },
  { name = "missing image", call = function() registry.manifest {} end, why = "'image' is required" },
  { name = "missing to", call = function() registry.copy { from = "r.io/a:v1" } end, why = "'to' is required" },
  { name = "missing tag", call = function() registry.retag { image = "r.io/a:v1" } end, why = "'tag' is required" },
  { name = "bad new tag", call = function() registry.retag { image = "r.io/a:v1", tag = "-x" } end, why = "bad tag" },
  { name = "repository with tag", call = function() registry.tags("r.io/a:v1") end, why = "takes no tag" },
  { name = "registry with path", call = function() registry.catalog("r.io/a") end, why = "no path" },
  { name = "auth not a table", call = function() registry.resolve { image = "r.io/a", auth = "x" } end, why = "'auth' must be a table" },
  { name = "empty auth", call = function() registry.resolve { image = "r.io/a", auth = {} } end, why = "holds no credentials" },
  { name = "zero concurrency", call = function() registry.copy { from = "r.io/a:1", to = "r.io/b:1", concurrency = 0 } end, why = "option 'concurrency' must be >= 1" },
  { name = "password without user", call = function() registry.login { registry = "r.io", password = "pw12" } end, why = "needs a username" },
  { name = "not a table", call = function() registry.resolve(42) end, why = "expected image or an options table" },
}, function(row)
  t.raises(row.call, "invalid_argument", row.why)
end)

t.case("parse splits a reference with docker's defaults", function()
  t.eq(registry.parse("busybox"), { registry = "docker.io", repository = "docker.io/library/busybox",
                                    path = "library/busybox", image = "docker.io/library/busybox" })
  local r = registry.parse("127.0.0.1:5000/team/app:v1")
  t.eq({ r.registry, r.repository, r.path, r.tag }, { "127.0.0.1:5000", "127.0.0.1:5000/team/app", "team/app", "v1" })
end)

---------------------------------------------------------------- reads against the fault registry

t.case("resolve and manifest against a registry that is not distribution", function()
  local r = registry.resolve(server() .. "/good/app:v1")
  local m = registry.manifest(server() .. "/good/app:v1")
  t.eq(r.digest, m.digest)
  t.eq(m.media_type, "application/vnd.docker.distribution.manifest.v2+json")
  t.eq(#m.manifest.layers, 1)
  t.eq(m.size, #m.raw)
  t.eq(registry.exists(server() .. "/good/app@" .. r.digest), true)
  t.eq(registry.exists(server() .. "/good/app:nope"), false)
end)

t.case("a manifest whose bytes do not match its digest is refused", function()
  local err = t.raises(function() registry.manifest(server() .. "/badmanifest/app:v1") end, "internal", "does not match its digest")
  t.eq(err.details.reason, "digest_mismatch")
  t.match(err.details.expected, "^sha256:")
  t.ok(err.details.expected ~= err.details.actual)
end)

t.case("403 is forbidden with the registry's own error", function()
  local err = t.raises(function() registry.resolve(server() .. "/denied/app:v1") end, "forbidden", "denied")
  t.eq(err.details.errors[1].code, "DENIED")
  t.eq(err.details.status, 403)
end)

t.case("persistent 5xx is unavailable after the configured attempts", function()
  local before = stats().counts["GET manifests"] or 0
  local err = t.raises(function() registry.manifest(with(FAST, { image = server() .. "/broken/app:v1" })) end, "unavailable")
  t.eq(err.details.errors[1].code, "UNKNOWN")
  t.eq(stats().counts["GET manifests"] - before, 2, "two attempts")
end)

t.case("429 with Retry-After and 503 are retried, honouring Retry-After", function()
  local started = hoist.now()
  local r = registry.resolve(with(FAST, { image = server() .. "/flaky/app:v1" }))
  t.match(r.digest, "^sha256:")
  t.ok(hoist.now() - started >= 0.9, "waited for Retry-After: 1")
  t.eq(registry.tags(with(FAST, { repository = server() .. "/flaky/app" })), { "v1" })
end)

t.case("a registry that is down is unavailable", function()
  local err = t.raises(function() registry.resolve(with(FAST, { image = "127.0.0.1:9/app:v1" })) end, "unavailable", "127.0.0.1:9")
  t.eq(err.details.attempts, 2)
end)

---------------------------------------------------------------- copies that must fail and leave no tag

t.cases("a blob whose content does not match its digest fails the copy and leaves no tag", {
  { name = "streamed (2 MiB layer)", mode = "badblob" },
  { name = "buffered (small config)", mode = "badsmall" },
}, function(row)
  need_registry()
  local to = ("%s/hoist-fault-%s/%s:v1"):format(REG, RUN, row.mode)
  local err = t.raises(function() registry.copy(with(FAST, { from = server() .. "/" .. row.mode .. "/app:v1", to = to })) end,
    "internal", "does not match its digest")
  t.eq(err.details.reason, "digest_mismatch")
  t.eq(registry.exists(to), false, "no tag at the destination")
end)

t.case("a push cut half-way is unavailable and writes no tag", function()
  need_registry()
  -- something real to copy: the fault registry's good image, first into the real registry
  local src = ("%s/hoist-fault-%s/src:v1"):format(REG, RUN)
  registry.copy { from = server() .. "/good/app:v1", to = src }
  local dest = server() .. "/dropupload/app"
  local err = t.raises(function() registry.copy(with(FAST, { from = src, to = dest .. ":v1" })) end, "unavailable")
  t.ok(err.retryable)
  t.eq(stats().tags["dropupload/app"], nil, "no manifest was written")
end)

t.case("inside a registry that cannot mount, a 202 falls back to a streamed copy", function()
  local r = registry.copy { from = server() .. "/good/app:v1", to = server() .. "/good/copy:v2" }
  t.eq(r.blobs_mounted, 0)
  t.eq(r.blobs_copied, 2)
  local m = registry.manifest(server() .. "/good/app:v1").manifest
  t.eq(r.bytes, m.config.size + m.layers[1].size)
  t.eq(registry.resolve(server() .. "/good/copy:v2").digest, r.digest)
  t.eq(stats().tags["good/copy"], { "v2" })
end)

t.case("a copy cancelled half-way (hoist.timeout) stops at once and writes no tag", function()
  local started = hoist.now()
  local from = ("%s/flaky/c%s/app:v1"):format(server(), RUN) -- its first answer: 429, Retry-After: 1
  t.raises(function()
    hoist.timeout(0.3, function() registry.copy { from = from, to = server() .. "/good/cancelled:v1" } end)
  end, "timeout")
  t.ok(hoist.now() - started < 0.9, "the wait for Retry-After was cut short")
  t.eq(stats().tags["good/cancelled"], nil)
end)

t.case("resolve falls back to GET (and hashes) when HEAD has no Docker-Content-Digest", function()
  local want = registry.resolve(server() .. "/good/app:v1").digest
  local before = stats().counts["GET manifests"] or 0
  t.eq(registry.resolve(server() .. "/nodigest/app:v1").digest, want)
  t.eq(stats().counts["GET manifests"] - before, 1, "one GET after the HEAD")
end)

t.case("dry-run plans from a source that does not exist yet (an earlier step was only planned)", function()
  local r = registry.copy { from = server() .. "/good/app:nope", to = server() .. "/good/later:v1", dry_run = true }
  t.eq(r.planned, true)
  t.eq(r.steps[1].action, "copy_image")
  t.match(r.steps[1].url, "/good/later/manifests/v1$")
  local rt = registry.retag { image = server() .. "/good/app:nope", tag = "x", dry_run = true }
  t.eq(rt.steps[1].method, "PUT")
  local d = registry.delete { image = server() .. "/good/app:nope", dry_run = true }
  t.eq(d.steps[1].method, "DELETE")
  t.match(d.steps[1].url, "/manifests/nope$")
  t.raises(function() registry.retag { image = server() .. "/good/app:nope", tag = "x" } end, "not_found")
  t.eq(stats().tags["good/later"], nil)
end)
