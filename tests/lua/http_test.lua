-- hoist.http against tests/servers/http_test_server.py, started here with hoist.exec in a
-- task of its own (or given as HOIST_TEST_HTTP_URL). The engine-level cases (streaming,
-- proxies, TLS, pause/resume) are in tests/core/test_http.cpp.
local t = require "hoist.test"
local http = hoist.http

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local script = here .. "/../servers/http_test_server.py"

local base, unix_path, server_task, files

-- Starts the server once for the whole file; the engine cancels the task (and so kills the
-- server) when the run ends, and the server stops by itself after --lifetime anyway.
local function server()
  if base then return base end
  local given = os.getenv("HOIST_TEST_HTTP_URL")
  if given and given ~= "" then
    base = given
    return base
  end
  if not pcall(require, "hoist.process") then
    t.skip("hoist.exec is not available: cannot start the HTTP test server")
  end
  local prefix = os.tmpname()
  files = { prefix, prefix .. ".port", prefix .. ".sock" }
  unix_path = files[3]
  server_task = hoist.spawn(hoist.exec, { "python3", script, "--port-file", files[2], "--unix", unix_path,
    "--lifetime", "300" })
  local port
  for _ = 1, 200 do
    local f = io.open(files[2])
    if f then
      port = f:read("*l")
      f:close()
      break
    end
    if server_task:status() ~= "running" then
      local r = server_task:wait() -- raises if python3 could not start
      error("the HTTP test server exited early: " .. tostring(r and r.stderr))
    end
    hoist.sleep(0.05)
  end
  assert(port, "the HTTP test server did not write its port within 10 s")
  base = "http://127.0.0.1:" .. port
  return base
end

t.case("get returns status, lower-cased headers, body and decoded JSON", function()
  local r = http.get(server() .. "/json")
  t.eq(r.status, 200)
  t.eq(r.headers["content-type"], "application/json; charset=utf-8")
  t.eq(r.json, { hello = "world", n = 1 })
  t.match(r.body, '"hello"')
  t.eq(r.url, server() .. "/json")
  t.ok(r.duration > 0 and r.duration < 5, "duration measured")
  for name in pairs(r.headers) do t.eq(name, name:lower()) end
end)

t.case("a body that is not JSON has no json field", function()
  local r = http.get(server() .. "/text")
  t.eq(r.body, "plain text\n")
  t.eq(r.json, nil)
end)

t.case("json = encodes the body, sets Content-Type and defaults to POST", function()
  local r = http.request { url = server() .. "/echo", json = { name = "app", n = 2 } }
  t.eq(r.json.method, "POST")
  t.eq(r.json.headers["content-type"], "application/json")
  t.eq(hoist.json.decode(r.json.body), { name = "app", n = 2 })
  local put = http.request { url = server() .. "/echo", method = "PUT", json = {},
    headers = { ["content-type"] = "application/merge-patch+json" } }
  t.eq(put.json.method, "PUT")
  t.eq(put.json.headers["content-type"], "application/merge-patch+json")
end)

t.case("methods, headers and bodies reach the server", function()
  local r = http.request { url = server() .. "/echo", method = "patch", body = "raw bytes",
    headers = { ["X-Trace"] = "abc", ["X-Num"] = 7 } }
  t.eq(r.json.method, "PATCH")
  t.eq(r.json.body, "raw bytes")
  t.eq(r.json.headers["x-trace"], "abc")
  t.eq(r.json.headers["x-num"], "7")
  t.eq(http.delete(server() .. "/echo").json.method, "DELETE")
  t.eq(http.put(server() .. "/echo", { body = "x" }).json.body, "x")
  t.eq(http.post(server() .. "/echo", { body = "y" }).json.body, "y")
end)

t.case("query tables are encoded and appended", function()
  local r = http.get(server() .. "/echo?keep=1", { query = { a = "x y", b = { 1, 2 }, ["k&"] = "v=" } })
  t.eq(r.json.query, { keep = "1", a = "x y", b = "2", ["k&"] = "v=" }) -- the server keeps the last b
  t.match(r.json.request_line, "b=1&b=2")
  t.eq(http._with_query("http://h/p#f", { z = true }), "http://h/p?z=true#f")
end)

t.cases("any status is a response", {
  { name = "201", status = 201 }, { name = "404", status = 404 }, { name = "500", status = 500 },
}, function(row)
  local r = http.get(server() .. "/status/" .. row.status)
  t.eq(r.status, row.status)
end)

t.cases("check = true raises with the code of the status", {
  { name = "404", status = 404, code = "not_found" }, { name = "401", status = 401, code = "unauthorized" },
  { name = "429", status = 429, code = "throttled" }, { name = "503", status = 503, code = "unavailable" },
}, function(row)
  local err = t.raises(function() http.get(server() .. "/status/" .. row.status, { check = true }) end,
    row.code, "HTTP " .. row.status)
  t.eq(err.details.status, row.status)
  t.eq(http.get(server() .. "/status/200", { check = true }).status, 200)
end)

t.cases("bad options are invalid_argument naming the option", {
  { name = "missing url", opts = { method = "GET" }, pattern = "'url' is required" },
  { name = "url not http", opts = { url = "ftp://x/y" }, pattern = "'url' must be an http" },
  { name = "method type", opts = { url = "http://127.0.0.1:1/", method = 5 }, pattern = "'method' must be a string" },
  { name = "body and json", opts = { url = "http://127.0.0.1:1/", body = "a", json = {} }, pattern = "'body' and 'json'" },
  { name = "unknown option", opts = { url = "http://127.0.0.1:1/", hedaers = {} }, pattern = "unknown option 'hedaers'" },
  { name = "timeout type", opts = { url = "http://127.0.0.1:1/", timeout = "5" }, pattern = "'timeout' must be a number" },
  { name = "header value", opts = { url = "http://127.0.0.1:1/", headers = { A = {} } }, pattern = "value of 'A'" },
  { name = "query value", opts = { url = "http://127.0.0.1:1/", query = { a = { {} } } }, pattern = "query: value of 'a'" },
  { name = "bad method", opts = { url = "http://127.0.0.1:1/", method = "GE T" }, pattern = "bad method" },
  { name = "header injection", opts = { url = "http://127.0.0.1:1/", headers = { A = "x\r\nB: y" } }, pattern = "line break" },
}, function(row)
  t.raises(function() http.request(row.opts) end, "invalid_argument", row.pattern)
end)

t.case("get(url) needs a string URL", function()
  t.raises(function() http.get({ url = "http://x/" }) end, "invalid_argument", "expected a URL string")
end)

t.case("connection refused raises unavailable (retryable) with the URL", function()
  local err = t.raises(function() http.get("http://127.0.0.1:1/path?token=abc123") end, "unavailable")
  t.eq(err.retryable, true)
  t.eq(err.details.url, "http://127.0.0.1:1/path?token=***")
  local secret = hoist.secret("lua-registered-q-value")
  local e2 = t.raises(function() http.get("http://127.0.0.1:1/p?q=" .. secret) end, "unavailable")
  t.no_match(e2.details.url, secret)
  t.no_match(tostring(e2), secret)
end)

t.case("a slow server raises timeout", function()
  local started = hoist.now()
  t.raises(function() http.get(server() .. "/slow?delay=3", { timeout = 0.3 }) end, "timeout")
  t.ok(hoist.now() - started < 2, "the timeout ended the wait")
end)

t.case("cancelling the task aborts the request at once", function()
  local task = hoist.spawn(http.get, server() .. "/slow?delay=5")
  hoist.sleep(0.1)
  local started = hoist.now()
  task:cancel()
  t.raises(function() task:wait() end, "cancelled")
  t.ok(hoist.now() - started < 0.5)
end)

t.case("100 requests through hoist.map run concurrently", function()
  http.post(server() .. "/stats/reset")
  local started = hoist.now()
  local list = {}
  for i = 1, 100 do list[i] = i end
  local statuses = hoist.map(list, function() return http.get(server() .. "/slow?delay=0.2").status end)
  local took = hoist.now() - started
  for i = 1, 100 do t.eq(statuses[i], 200) end
  local stats = http.get(server() .. "/stats").json
  print(("     100 requests with a 0.2 s server delay: %.3f s, %d at once on the server"):format(took,
    stats.max_active))
  t.eq(stats.count, 100)
  t.ok(stats.max_active >= 50, "the server saw " .. stats.max_active .. " requests at once")
end)

t.case("unix_socket talks to a server on a unix socket", function()
  server()
  if not unix_path then t.skip("HOIST_TEST_HTTP_URL is set: no unix socket server") end
  local r = http.get("http://localhost/echo", { unix_socket = unix_path })
  t.eq(r.status, 200)
  t.eq(r.json.path, "/echo")
end)

t.case("Authorization values become secrets and stay with the first host", function()
  local token = "lua-test-token-5f3a9c"
  local r = http.get(server() .. "/redirect-other?path=/echo", { headers = { Authorization = "Bearer " .. token } })
  t.eq(r.status, 200)
  t.eq(r.json.headers.authorization, nil)
  t.eq(hoist.scrub("token " .. token), "token ***")
  local same = http.get(server() .. "/redirect?to=/echo", { headers = { Authorization = "Bearer " .. token } })
  t.eq(same.json.headers.authorization, "Bearer " .. token)
  t.eq(same.headers.location, nil) -- headers of the final response only
end)

t.case("redact_url masks secret-looking query values", function()
  t.eq(http.redact_url("https://x.blob/c?sv=1&sig=abc&se=2"), "https://x.blob/c?sv=1&sig=***&se=2")
end)

t.case("retry: a 503 is tried again up to `attempts`, and the last answer is returned", function()
  local r = http.get(server() .. "/status/503", { retry = { attempts = 3, backoff = 0 } })
  t.eq({ r.status, r.attempts }, { 503, 3 })
  local checked = select(2, pcall(http.get, server() .. "/status/503", { retry = { attempts = 2, backoff = 0 }, check = true }))
  t.eq(checked.code, "unavailable", "check applies to the last answer")
end)

t.case("retry: a 404 or a 200 is not tried again", function()
  t.eq({ http.get(server() .. "/status/404", { retry = true }).attempts, http.get(server() .. "/json", { retry = true }).attempts }, { 1, 1 })
end)

t.case("retry: no answer at all is tried again, then raised with details.attempts", function()
  local port = (require "hoist.process").exec({ "python3", "-c",
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])", check = true }).stdout:match("%d+")
  local ok, err = pcall(http.get, "http://127.0.0.1:" .. port .. "/", { retry = { attempts = 2, backoff = 0 } })
  t.ok(not ok)
  t.eq({ err.code, err.details.attempts }, { "unavailable", 2 })
  ok, err = pcall(http.get, "http://127.0.0.1:" .. port .. "/", { retry = { attempts = 2, backoff = 0, connection_errors = false } })
  t.eq(err.details.attempts, nil, "connection_errors = false: one try")
end)

t.case("retry: bad options are refused", function()
  t.raises(function() http.get(server() .. "/json", { retry = { attempts = 0 } }) end, "invalid_argument", "attempts")
  t.raises(function() http.get(server() .. "/json", { retry = { tries = 2 } }) end, "invalid_argument", "unknown option 'tries'")
end)

t.cases("retry: Retry-After in each form RFC 9110 gives", {
  { name = "delta-seconds", v = " 7 ", want = 7 },
  { name = "IMF-fixdate ahead", v = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 100), near = 100 },
  { name = "RFC 850", v = os.date("!%A, %d-%b-%y %H:%M:%S GMT", os.time() + 100), near = 100 },
  { name = "asctime", v = os.date("!%a %b %e %H:%M:%S %Y", os.time() + 100), near = 100 },
  { name = "a date past", v = "Sun, 06 Nov 1994 08:49:37 GMT", want = 0 },
  { name = "junk", v = "soon", want = nil },
  { name = "negative", v = "-5", want = nil },
}, function(row)
  local got = http._retry_after(row.v)
  if row.near then
    t.ok(got and math.abs(got - row.near) <= 2, ("%s -> %s"):format(row.v, tostring(got)))
  else
    t.eq(got, row.want)
  end
end)

t.case("stop the HTTP test server", function()
  if server_task then
    server_task:cancel()
    pcall(server_task.wait, server_task)
  end
  for _, f in ipairs(files or {}) do os.remove(f) end
end)
