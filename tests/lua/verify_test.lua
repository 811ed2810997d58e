-- hoist.verify against a local programmable server (tests/servers/verify_server.py):
-- retries, status / body / JSON expectations, latency budget, per-attempt timeout, refused
-- connections, evidence, verify.all, dry-run and bad options.
local t = require "hoist.test"
local verify = hoist.verify

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local SERVER = here .. "/../servers/verify_server.py"
local read = support.read

-- One server for the file, started on first use (and again if it went away).
local base, task
local function server()
  if base and task:status() == "running" then return base end
  local dir = hoist.exec({ "mktemp", "-d", "/tmp/hoist-verify-test.XXXXXX" }).stdout:gsub("%s+$", "")
  local port_file = dir .. "/port"
  task = hoist.spawn(function()
    return hoist.exec { "python3", SERVER, "--port-file", port_file, "--max-time", "900", timeout = 1000 }
  end)
  for _ = 1, 200 do
    if read(port_file) then break end
    hoist.sleep(0.05)
  end
  local port = read(port_file)
  if not port then error("verify_server.py did not start (no port file)") end
  base = "http://127.0.0.1:" .. port
  return base
end

local counter = 0
local function key()
  counter = counter + 1
  return ("k%d-%d"):format(os.time(), counter)
end

local function count(k)
  return hoist.json.decode(hoist.http.request { url = server() .. "/_count?key=" .. k }.body).count
end

local FAST = { retries = 3, interval = 0.05, timeout = 2 }

-- Percent-encodes what a URL must not hold raw (the JSON in query strings).
local function enc(path)
  return (path:gsub("[^%w%-%._~/%?=&%%]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

local function check(path, extra)
  local c = { url = server() .. enc(path) }
  for k, v in pairs(FAST) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

---------------------------------------------------------------- checks that hold

t.cases("http: holds", {
  { name = "first attempt", path = "/ok", attempts = 1 },
  { name = "after two failures", path = "/ready?fail=2", attempts = 3, first_error = "status 503, expected 200" },
  { name = "one of several statuses", path = "/created?status=204", opts = { expect_status = { 200, 204 } }, attempts = 1 },
  { name = "body pattern", path = "/ok?body=version%3D1.4.2", opts = { expect_body = "version=1%.4%.%d" }, attempts = 1 },
  { name = "JSON predicate", path = '/health?json={"status":"healthy","checks":3}', attempts = 1,
    opts = { expect_json = function(doc) return doc.status == "healthy" and doc.checks == 3 end } },
  { name = "within the latency budget", path = "/ok?delay=0.05", opts = { latency_budget = 1.5 }, attempts = 1 },
}, function(row)
  local k = key()
  local c = check(row.path .. (row.path:find("?", 1, true) and "&" or "?") .. "key=" .. k, row.opts)
  local r = verify.http(c)
  t.eq({ r.ok, r.attempts }, { true, row.attempts })
  t.ok(r.latency >= 0 and r.latency < 2, "latency " .. tostring(r.latency))
  t.eq(#r.evidence, row.attempts)
  if row.first_error then t.eq(r.evidence[1].error, row.first_error) end
  t.eq(count(k), row.attempts)
end)

---------------------------------------------------------------- checks that fail

t.cases("http: fails with evidence", {
  { name = "status mismatch", path = "/x?status=500&body=boom", pattern = "status 500, expected 200",
    status = 500, body = "boom" },
  { name = "body pattern mismatch", path = "/x?body=hello", opts = { expect_body = "^world" },
    pattern = 'body does not match the pattern "%^world"', status = 200, body = "hello" },
  { name = "expect_json false with a reason", path = '/x?json={"status":"degraded"}', status = 200,
    opts = { expect_json = function(doc) return doc.status == "healthy", "status is " .. doc.status end },
    pattern = "expect_json: status is degraded" },
  { name = "expect_json false without a reason", path = '/x?json={"a":1}', status = 200,
    opts = { expect_json = function() return false end }, pattern = "expect_json: returned false" },
  { name = "expect_json raises", path = '/x?json={"a":1}', status = 200,
    opts = { expect_json = function(doc) return doc.missing.field end }, pattern = "expect_json raised: .*missing" },
  { name = "body is not JSON", path = "/x?body=<html>", status = 200,
    opts = { expect_json = function() return true end }, pattern = "body is not JSON" },
  { name = "latency budget exceeded", path = "/x?delay=0.3", opts = { latency_budget = 0.1, retries = 1 },
    pattern = "over the latency budget of 0%.1s", status = 200 },
  { name = "attempt timeout", path = "/x?delay=3", opts = { timeout = 0.3, retries = 0 }, pattern = "timeout" },
}, function(row)
  local c = check(row.path, row.opts)
  local err = t.raises(function() verify.http(c) end, "rollout_failed", row.pattern)
  local n = (c.retries or 3) + 1
  t.match(err.message, ("^verify GET .- failed after %d attempts? over"):format(n))
  t.eq(err.details.attempts, n)
  t.eq(#err.details.evidence, n)
  local last = err.details.evidence[n]
  t.eq(last.attempt, n)
  t.eq(last.status, row.status)
  t.match(last.error, row.pattern)
  if row.body then t.eq(last.body_start, row.body) end
  t.ok(type(last.latency) == "number")
end)

t.case("http: connection refused is evidence, not a crash", function()
  -- a port that was just free: bind, read the port, close
  local r = hoist.exec { "python3", "-c",
    "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1]); s.close()" }
  local url = "http://127.0.0.1:" .. r.stdout:gsub("%s+$", "") .. "/health"
  local err = t.raises(function() verify.http { url = url, retries = 2, interval = 0.05 } end, "rollout_failed",
    "failed after 3 attempts")
  for _, ev in ipairs(err.details.evidence) do
    t.match(ev.error, "^unavailable: ")
    t.eq(ev.status, nil)
  end
  t.eq(err.details.url, url)
end)

t.case("http: token-looking query values stay out of messages and evidence", function()
  local err = t.raises(function() verify.http(check("/fn?status=401&code=s3cr3t-fn-key", { retries = 0 })) end,
    "rollout_failed", "status 401")
  t.no_match(err.message, "s3cr3t")
  t.no_match(err.details.url, "s3cr3t")
  t.no_match(err.details.name, "s3cr3t")
  t.match(err.details.url, "code=%*%*%*")
end)

t.case("http: body_start keeps the first 200 bytes", function()
  local err = t.raises(function()
    verify.http(check("/x?status=502&body=" .. ("y"):rep(500), { retries = 0 }))
  end, "rollout_failed")
  t.eq(err.details.evidence[1].body_start, ("y"):rep(200))
end)

t.case("http: sends method, headers and a JSON body", function()
  local r = verify.http(check("/predict?echo=1", { method = "post", json = { input = { 1, 2 } },
    headers = { ["X-Probe"] = "hoist" },
    expect_json = function(doc)
      local body = hoist.json.decode(doc.body)
      return doc.method == "POST" and doc.headers["X-Probe"] == "hoist" and body.input[2] == 2, hoist.json.encode(doc)
    end }))
  t.eq(r.ok, true)
end)

---------------------------------------------------------------- verify.all

local function predictions(bad)
  local checks = {}
  for i = 1, 5 do
    checks[i] = check(("/predict/%d?delay=0.3&json={\"label\":\"%s\"}"):format(i, i == bad and "?" or "cat"), {
      name = "prediction " .. i, retries = 1,
      expect_json = function(doc) return doc.label == "cat", "label is " .. doc.label end,
    })
  end
  return checks
end

t.case("all: five predictions run concurrently and hold", function()
  local started = hoist.now()
  local r = verify.all { checks = predictions(nil) }
  t.eq(r.ok, true)
  t.eq(#r.results, 5)
  t.eq(r.results[3].name, "prediction 3")
  t.ok(hoist.now() - started < 1.2, "five 0.3 s requests overlapped")
end)

t.case("all: one failing check fails the whole, every failure reported", function()
  local checks = predictions(4)
  checks[2].url = server() .. "/predict/2?status=500"
  local err = t.raises(function() verify.all { checks = checks, limit = 2 } end, "rollout_failed",
    "verify: 2 of 5 checks failed: verify prediction 2 failed after 2 attempts .*status 500, expected 200; "
      .. "verify prediction 4 failed after 2 attempts .*expect_json: label is %?")
  t.eq(err.details.checks, 5)
  t.eq(#err.details.failures, 2)
  t.eq(err.details.failures[2].name, "prediction 4")
  t.eq(#err.details.failures[2].evidence, 2)
  t.eq(err.details.failures[2].evidence[1].body_start, '{"label":"?"}')
end)

---------------------------------------------------------------- dry-run and bad options

t.case("dry-run: nothing is requested, the check is planned", function()
  local k = key()
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(true)
  local ok, r = pcall(verify.http, check("/ok?key=" .. k))
  local ok2, all = pcall(verify.all, { checks = { check("/ok?key=" .. k) } })
  core.set_dry_run(previous)
  t.ok(ok and ok2, tostring(r))
  t.eq({ r.ok, r.planned, r.attempts }, { true, true, 0 })
  t.eq({ all.ok, all.planned }, { true, true })
  t.eq(count(k), 0)
end)

t.cases("bad options", {
  { name = "no url", opts = {}, pattern = "hoist%.verify%.http: option 'url' is required" },
  { name = "ftp url", opts = { url = "ftp://x/" }, pattern = "url must be an http" },
  { name = "negative retries", opts = { url = "http://x/", retries = -1 }, pattern = "retries must be a non%-negative number" },
  { name = "fractional retries", opts = { url = "http://x/", retries = 1.5 }, pattern = "retries must be a whole number" },
  { name = "zero timeout", opts = { url = "http://x/", timeout = 0 }, pattern = "timeout must be a positive number" },
  { name = "status as text", opts = { url = "http://x/", expect_status = "200" }, pattern = "option 'expect_status' must be a number or table, got string" },
  { name = "bad pattern", opts = { url = "http://x/", expect_body = "[" }, pattern = "expect_body must be a valid Lua pattern" },
  { name = "predicate not a function", opts = { url = "http://x/", expect_json = true }, pattern = "option 'expect_json' must be a function, got boolean" },
  { name = "unknown option", opts = { url = "http://x/", retry = 3 }, pattern = "unknown option 'retry'" },
  { name = "budget", opts = { url = "http://x/", latency_budget = 0 }, pattern = "latency_budget must be a positive" },
}, function(row)
  t.raises(function() verify.http(row.opts) end, "invalid_argument", row.pattern)
end)

t.cases("all: bad options", {
  { name = "no checks", opts = { checks = {} }, pattern = "non%-empty list" },
  { name = "bad check", opts = { checks = { { url = "http://x/" }, { url = "nope" } } }, pattern = "checks%[2%]" },
  { name = "bad limit", opts = { checks = { { url = "http://x/" } }, limit = 0 }, pattern = "limit must be" },
}, function(row)
  t.raises(function() verify.all(row.opts) end, "invalid_argument", row.pattern)
end)
