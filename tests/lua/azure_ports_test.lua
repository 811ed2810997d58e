-- hoist.azure.ports: the port a console log says the app listens on (lines of real servers),
-- and the message naming both ports when the service sends traffic to another (shared by the
-- appservice, aci and containerapp targets). No emulator needed.
local t = require "hoist.test"
local ports = require "hoist.azure.ports"

t.cases("the port a log line announces", {
  { line = "hoist example app version v1 listening on 8080", port = 8080 },
  { line = "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)", port = 8000 },
  { line = "[2026-12-07 10:00:00 +0000] [1] [INFO] Listening at: http://0.0.0.0:5000 (1)", port = 5000 },
  { line = "info: Microsoft.Hosting.Lifetime[14] Now listening on: http://[::]:8080", port = 8080 },
  { line = "Tomcat started on port(s): 8081 (http) with context path ''", port = 8081 },
  { line = "2026/12/07 10:00:00 Listening on :9090", port = 9090 },
  { line = "Server listening on port 3000", port = 3000 },
  { line = " * Running on http://127.0.0.1:5001", port = 5001 },
  { line = "serving aca-v1", port = nil },
  { line = "GET /health 200 in 3ms", port = nil },
  { line = "connected to db at 10.0.0.4:5432", port = nil },
}, function(c)
  local got = ports.announced(c.line)
  t.eq(got[1] and got[1].port, c.port, c.line)
end)

t.case("the newest announcement counts; the same port twice is one", function()
  local got = ports.announced("listening on 8080\nrestarting\nlistening on 8000\nlistening on 8080\n")
  t.eq(#got, 2)
  t.eq(got[1].port, 8000)
  t.eq(got[2].port, 8080)
end)

t.cases("the message naming both ports", {
  { name = "the log names another port",
    o = { port = 8000, logs = "app v1 listening on 8080", exposed = { 8080 } },
    want = 'the container listens on 8080 %(its log: "app v1 listening on 8080"; EXPOSE 8080%) but the group opens 8000: set container_port=8080' },
  { name = "the log names the port: nothing to say, whatever EXPOSE says",
    o = { port = 8000, logs = "listening on 8000", exposed = { 8080 }, expose_only = true }, want = nil },
  { name = "one of several announced ports is the one",
    o = { port = 8000, logs = "metrics listening on :9100\nlistening on :8000" }, want = nil },
  { name = "EXPOSE alone does not fail a container that may be starting",
    o = { port = 8000, logs = "starting", exposed = { 8080 } }, want = nil },
  { name = "EXPOSE alone, once nothing answered",
    o = { port = 8000, logs = "starting", exposed = { 8080 }, expose_only = true },
    want = "the container listens on 8080 %(EXPOSE 8080%) but the group opens 8000: set container_port=8080" },
  { name = "EXPOSE lists the port",
    o = { port = 8000, logs = "", exposed = { 8000, 9000 }, expose_only = true }, want = nil },
  { name = "nothing to go by", o = { port = 8000, logs = "", expose_only = true }, want = nil },
}, function(c)
  c.o.setting, c.o.waits = "container_port", "the group opens"
  local got = ports.mismatch(c.o)
  if c.want then t.match(got or "(nil)", c.want) else t.eq(got, nil) end
end)

t.case("EXPOSE of an image the engine does not have is unknown, not an error", function()
  t.eq(ports.exposed("127.0.0.1:1/hoist-azfix-none/absent@sha256:" .. ("0"):rep(64)), nil)
end)
