-- hoist.docker containers, unit level: run's command line (loopback ports, env file), stop /
-- rm / logs / inspect / ps, and wait_healthy's verdicts, against a fake docker.
local t = require "hoist.test"
local docker = hoist.docker
local cli = require "hoist.docker.cli"
local health = require "hoist.docker.health"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local F = dofile(here .. "/docker_fake.lua")
local has, after, with_docker = F.has, F.after, F.with_docker

local ID = ("a1"):rep(32)
local samples = dofile(here .. "/docker_samples.lua")

-- `docker inspect` of a container publishing `ports` ({["8080/tcp"] = "49153", ...}).
local function inspect_reply(name, ports)
  local np = {}
  for key, hp in pairs(ports or {}) do np[key] = { { HostIp = "127.0.0.1", HostPort = hp } } end
  return { match = "^inspect ", stdout = hoist.json.encode { { Id = ID, Name = "/" .. name,
    NetworkSettings = { Ports = hoist.json.object(np) } } } }
end

t.cases("ports publish on 127.0.0.1 unless asked otherwise", {
  { p = "8080:80", want = "127.0.0.1:8080:80" },
  { p = "80", want = "127.0.0.1::80" },
  { p = 80, want = "127.0.0.1::80" },
  { p = "8080:80/udp", want = "127.0.0.1:8080:80/udp" },
  { p = "8000-8010:8000-8010", want = "127.0.0.1:8000-8010:8000-8010" },
  { p = "0.0.0.0:8080:80", want = "0.0.0.0:8080:80" },
  { p = "[::1]:8080:80", want = "[::1]:8080:80" },
  { p = { "8080:80", host = "0.0.0.0" }, want = "0.0.0.0:8080:80" },
  { p = { host_port = 9000, container_port = 90, protocol = "tcp" }, want = "127.0.0.1:9000:90/tcp" },
  { p = { container_port = 90, host = "::1" }, want = "[::1]::90" },
}, function(row)
  t.eq(docker._port_flag("docker.run", 1, row.p), row.want)
end)

t.cases("bad ports are invalid_argument", {
  { p = "http", pattern = "container port \"http\"" },
  { p = "a:80", pattern = "host port \"a\"" },
  { p = "1:2:3:4", pattern = "is not %[host:%]" },
  { p = "80/icmp", pattern = "protocol \"icmp\"" },
  { p = true, pattern = "must be a string like" },
  { p = { host = "0.0.0.0" }, pattern = "container port \"\"" },
}, function(row)
  t.raises(function() docker._port_flag("docker.run", 1, row.p) end, "invalid_argument", "ports%[1%].*" .. row.pattern)
end)

t.case("run: command line, env through a private file", function()
  local secret = hoist.secret("run-secret-" .. tostring(hoist.now()))
  local env_path, env_text, env_mode
  with_docker({ { match = "^run ", stdout = ID .. "\n", effect = function(spec)
    env_path = after(spec, "--env-file")
    env_text = cli.read_file(env_path)
    env_mode = hoist.exec({ "stat", "-c", "%a", env_path }).stdout:match("%d+")
  end }, inspect_reply("web", { ["80/tcp"] = "8080" }) }, function(calls)
    local r = docker.run {
      image = "acme/app:1", name = "web", ports = { "8080:80" }, network = "bridge", restart = "on-failure:3",
      labels = { ["hoist.run"] = "r1" }, env = { TOKEN = secret, PORT = 8080, DEBUG = false },
      args = { "--read-only" }, command = { "httpd", "-f" }, rm = true,
    }
    t.eq(r, { id = ID, name = "web", ports = { [80] = 8080 } })
    local spec = calls[1]
    local line = table.concat(spec, " ", 2)
    t.match(line, "^run %-%-detach %-%-rm %-%-name web %-%-network bridge %-%-restart on%-failure:3 %-%-label hoist%.run=r1 "
      .. "%-%-publish 127%.0%.0%.1:8080:80 %-%-env%-file %S+ %-%-read%-only acme/app:1 httpd %-f$")
    t.no_match(line, secret)
    t.eq(env_text, "DEBUG=false\nPORT=8080\nTOKEN=" .. secret .. "\n")
    t.eq(env_mode, "600")
    t.eq(io.open(env_path), nil, "the env file is removed")
  end)
end)

t.case("run: without a name asks docker for it; no env means no env file", function()
  with_docker({ { match = "^run ", stdout = ID .. "\n" },
                { match = "^inspect ", stdout = ('[{"Id":"%s","Name":"/quirky_turing"}]'):format(ID) } }, function(calls)
    t.eq(docker.run { image = "acme/app:1" }, { id = ID, name = "quirky_turing", ports = {} })
    t.ok(not has(calls[1], "--env-file"))
  end)
end)

t.case("run: detach = false returns the exit code and output; the id comes from --cidfile", function()
  with_docker({ { match = "^run ", code = 3, stdout = "hello\n", effect = function(spec)
    t.ok(not has(spec, "--detach"))
    local path = after(spec, "--cidfile")
    t.eq(io.open(path), nil, "the cid file does not exist yet")
    local f = assert(io.open(path, "w"))
    f:write(ID)
    f:close()
  end }, { match = "^inspect ", code = 1, stderr = "Error: No such object\n" } }, function()
    local r = docker.run { image = "acme/app:1", name = "job", detach = false, command = "true" }
    t.eq({ r.code, r.stdout, r.name, r.id }, { 3, "hello\n", "job", ID })
    r = docker.run { image = "acme/app:1", detach = false, rm = true }
    t.eq({ r.id, r.name }, { ID, nil }, "a --rm container is gone: no name")
  end)
end)

t.case("run: returns the host ports docker picked, by container port", function()
  with_docker({ { match = "^run ", stdout = ID .. "\n" },
                inspect_reply("web", { ["8080/tcp"] = "49153", ["53/udp"] = "5353", ["9000/tcp"] = "" }) }, function(calls)
    local r = docker.run { image = "acme/app:1", name = "web", ports = { "8080", "53/udp", "9000" } }
    t.eq(r.ports, { [8080] = 49153, ["53/udp"] = 5353 })
    t.eq(#calls, 2, "one run, one inspect")
  end)
  with_docker({ { match = "^run ", stdout = ID .. "\n" } }, function(calls)
    t.eq(docker.run { image = "acme/app:1", name = "web" }.ports, {}, "nothing published: no inspect")
    t.eq(#calls, 1)
  end)
end)

t.cases("run: docker's refusal is the message, not the --help hint after it", {
  { name = "invalid reference", stderr = samples.run_invalid_reference_stderr, code = "invalid_argument",
    pat = ": docker run acme/app:1: invalid reference format: repository name %(library/Bad%) must be lowercase %(at" },
  { name = "manifest unknown", stderr = samples.run_manifest_unknown_stderr, code = "not_found",
    pat = ": docker run acme/app:1: Error response from daemon: manifest for .* not found: manifest unknown" },
  { name = "bad port", stderr = samples.run_bad_port_stderr, code = "invalid_argument",
    pat = ": docker run acme/app:1: invalid containerPort: notaport %(at" },
}, function(row)
  with_docker({ { match = "^run ", code = 125, stderr = row.stderr } }, function()
    local err = t.raises(function() docker.run { image = "acme/app:1", name = "web" } end, row.code, row.pat)
    t.no_match(err.message, "%-%-help")
  end)
end)

t.cases("run: docker's refusals", {
  { stderr = "docker: Error response from daemon: Conflict. The container name \"/web\" is already in use by container \"x\".", code = "conflict" },
  { stderr = "Unable to find image 'acme/nope:1' locally\ndocker: Error response from daemon: pull access denied for acme/nope, repository does not exist", code = "not_found" },
  { stderr = "docker: Error response from daemon: driver failed programming external connectivity: Bind for 127.0.0.1:8080 failed: port is already allocated.", code = "conflict" },
}, function(row)
  with_docker({ { match = "^run ", code = 125, stderr = row.stderr } }, function()
    t.raises(function() docker.run { image = "acme/app:1", name = "web" } end, row.code, "docker run acme/app:1: ")
  end)
end)

t.cases("run: bad options", {
  { opts = {}, pattern = "image \"nil\" is not a valid image reference" },
  { opts = { image = "acme/app:1", restart = "sometimes" }, pattern = "option restart" },
  { opts = { image = "acme/app:1", env = { ["BAD-NAME"] = "x" } }, pattern = "env name \"BAD%-NAME\"" },
  { opts = { image = "acme/app:1", env = { A = "two\nlines" } }, pattern = "env.A holds a line break" },
  { opts = { image = "acme/app:1", env = { A = {} } }, pattern = "env must map names" },
  { opts = { image = "acme/app:1", ports = "8080:80" }, pattern = "^invalid_argument: hoist%.docker%.run: option 'ports' must be a table, got string" },
  { opts = { image = "acme/app:1", args = { 1 } }, pattern = "args%[1%] must be a string" },
}, function(row)
  with_docker({}, function()
    t.raises(function() docker.run(row.opts) end, "invalid_argument", row.pattern)
  end)
end)

t.case("run: dry-run names the env variables, not their values", function()
  with_docker({}, function(calls)
    local r = docker.run { image = "acme/app:1", name = "web", env = { B = "v2", A = "v1" } }
    t.eq(r.planned, true)
    t.eq(r.env, { "A", "B" })
    t.eq(after(r.argv, "--env-file"), "<env-file: A,B>")
    t.no_match(table.concat(r.argv, " "), "v1")
    t.eq(#calls, 0)
  end, { dry_run = true })
end)

t.cases("stop / rm / rmi", {
  { name = "stop", call = function() return docker.stop { name = "web", timeout = 3 } end, argv = "stop --time 3 web", want = { name = "web" } },
  { name = "stop by name", call = function() return docker.stop "web" end, argv = "stop --time 10 web", want = { name = "web" } },
  { name = "rm", call = function() return docker.rm { name = "web", force = true, volumes = true } end, argv = "rm --force --volumes web",
    want = { name = "web" } },
  { name = "rmi", call = function() return docker.rmi { image = "acme/app:1", force = true } end, argv = "rmi --force acme/app:1",
    want = { image = "acme/app:1" } },
}, function(row)
  with_docker({ { match = "^%a+ " } }, function(calls)
    t.eq(row.call(), row.want)
    t.eq(table.concat(calls[1], " ", 2), row.argv)
  end)
  with_docker({}, function(calls)
    t.eq(row.call().planned, true)
    t.eq(#calls, 0)
  end, { dry_run = true })
end)

t.case("stop / rm of a missing container: not_found, or missing with missing_ok", function()
  with_docker({ { match = "^rm ", code = 1, stderr = "Error response from daemon: No such container: web\n" },
                { match = "^stop ", code = 1, stderr = "Error response from daemon: No such container: web\n" } }, function()
    t.raises(function() docker.rm "web" end, "not_found", "No such container: web")
    t.eq(docker.rm { name = "web", missing_ok = true }, { name = "web", missing = true })
    t.raises(function() docker.stop { name = "web" } end, "not_found")
  end)
  t.raises(function() docker.stop { name = "web", timeout = -1 } end, "invalid_argument", "timeout")
  t.raises(function() docker.rm {} end, "invalid_argument", "option 'name' is required")
end)

t.case("logs merges stdout and stderr in time order", function()
  with_docker({ { match = "^logs ", stdout = "2026-04-06T10:00:00.000000001Z one\n2026-04-06T10:00:00.000000003Z three\n",
                  stderr = "2026-04-06T10:00:00.000000002Z two\n" } }, function(calls)
    t.eq(docker.logs { name = "web", tail = 3 }, "one\ntwo\nthree\n")
    t.eq(table.concat(calls[1], " ", 2), "logs --timestamps --tail 3 web")
    t.match(docker.logs { name = "web", timestamps = true }, "^2026%-04%-06T10:00:00%.000000001Z one\n")
  end)
end)

t.case("inspect, exists", function()
  with_docker({ { match = "^inspect %-%-type container web$", stdout = '[{"Id":"x","State":{"Running":true}}]' },
                { match = "^inspect gone$", code = 1, stdout = "[]\n", stderr = "Error: No such object: gone\n" },
                { match = "^inspect down$", code = 1, stderr = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n" } },
    function()
      t.eq(docker.inspect({ name = "web", type = "container" }).State.Running, true)
      t.raises(function() docker.inspect "gone" end, "not_found", "No such object: gone")
      t.eq(docker.exists "gone", false)
      t.eq(docker.exists { name = "web", type = "container" }, true)
      t.raises(function() docker.exists "down" end, "unavailable")
      t.raises(function() docker.inspect { name = "web", type = "volume" } end, "invalid_argument", "option type")
    end)
end)

t.case("ps and images decode docker's JSON lines", function()
  local row = '{"Command":"\\"/app/start.sh\\"","CreatedAt":"2026-04-06 10:00:00 +0000 UTC","ID":"%s","Image":"acme/app:1",'
    .. '"Labels":"hoist.run=r1,team=core","Names":"web","Ports":"127.0.0.1:8080->8080/tcp","State":"running","Status":"Up 2 seconds"}'
  with_docker({ { match = "^ps ", stdout = row:format(ID) .. "\n" .. row:format("b2") .. "\n" },
                { match = "^images ", stdout = '{"Repository":"acme/app","Tag":"1","ID":"sha256:ab","Digest":"<none>"}\n' } },
    function(calls)
      local rows = docker.ps { all = true, filters = { label = { "hoist.run=r1", "team=core" }, status = "running" } }
      t.eq(#rows, 2)
      t.eq({ rows[1].id, rows[1].name, rows[1].state, rows[1].created_at }, { ID, "web", "running", "2026-04-06 10:00:00 +0000 UTC" })
      t.eq(rows[1].labels, { ["hoist.run"] = "r1", team = "core" })
      t.eq(table.concat(calls[1], " ", 2), "ps --no-trunc --format {{json .}} --all --filter label=hoist.run=r1 "
        .. "--filter label=team=core --filter status=running")
      local images = docker.images { reference = "acme/app" }
      t.eq({ images[1].repository, images[1].tag, images[1].id }, { "acme/app", "1", "sha256:ab" })
      t.eq(calls[2][#calls[2]], "acme/app")
    end)
end)

---------------------------------------------------------------- wait_healthy

local function state_json(state) return '[{"Id":"' .. ID .. '","State":' .. state .. "}]" end
local RUNNING = '{"Status":"running","Running":true,"ExitCode":0}'

t.case("wait_healthy: a container that exits fails at once with its exit code and logs", function()
  with_docker({ { match = "^inspect ", stdout = state_json('{"Status":"exited","Running":false,"ExitCode":3,"OOMKilled":false}') },
                { match = "^logs ", stdout = "2026-04-06T10:00:00.000000001Z starting\n2026-04-06T10:00:00.000000002Z boom: no config\n" } },
    function()
      local started = hoist.now()
      local err = t.raises(function() docker.wait_healthy { name = "web", url = "http://127.0.0.1:1/health", timeout = 30 } end,
        "rollout_failed", "container web exited with code 3 before it became healthy; last log lines:\n  | starting\n  | boom: no config")
      t.ok(hoist.now() - started < 5, "reported at once, not after the timeout")
      t.eq(err.details.container_exit_code, 3)
      t.eq(err.details.reason, "exited")
      t.eq(err.details.logs, { "starting", "boom: no config" })
      t.eq(err.details.statuses, { "container exited" })
    end)
end)

t.case("wait_healthy: HTTP checks until the URL answers", function()
  with_docker({ { match = "^inspect ", stdout = state_json(RUNNING) } }, function()
    local answers, asked = { 503, 503, 200 }, 0
    health.http = function(req)
      asked = asked + 1
      t.eq(req.method, "GET")
      if asked == 1 then hoist.error { code = "unavailable", message = "connection refused" } end
      return { status = answers[asked] }
    end
    local r = docker.wait_healthy { name = "web", url = "http://127.0.0.1:8080/health", interval = 0.01, timeout = 10 }
    t.eq({ r.attempts, r.status, r.id }, { 3, 200, ID })
  end)
end)

t.case("wait_healthy: HEALTHCHECK status, unhealthy fails at once", function()
  with_docker({ { match = "^inspect ", reply = function(_, n)
    local h = n < 3 and "starting" or "healthy"
    return { stdout = state_json('{"Status":"running","Running":true,"Health":{"Status":"' .. h .. '","Log":[]}}') }
  end } }, function()
    local r = docker.wait_healthy { name = "web", healthcheck = true, interval = 0.01 }
    t.eq({ r.attempts, r.health }, { 3, "healthy" })
  end)
  with_docker({ { match = "^inspect ", stdout = state_json('{"Status":"running","Running":true,"Health":{"Status":"unhealthy",'
                  .. '"Log":[{"ExitCode":1,"Output":"wget: server returned error: HTTP/1.0 404 Not Found\\n"}]}}') },
                { match = "^logs " } }, function()
    local err = t.raises(function() docker.wait_healthy { name = "web", healthcheck = true } end, "rollout_failed", "is unhealthy")
    t.eq(err.details.health_log, { "exit 1: wget: server returned error: HTTP/1.0 404 Not Found" })
  end)
end)

t.case("wait_healthy: timeout keeps the statuses seen", function()
  with_docker({ { match = "^inspect ", stdout = state_json(RUNNING) }, { match = "^logs " } }, function()
    health.http = function() return { status = 500 } end
    local err = t.raises(function()
      docker.wait_healthy { name = "web", url = "http://127.0.0.1:8080/", timeout = 0.05, interval = 0.01 }
    end, "rollout_failed", "was not healthy after 0.05s")
    t.eq(err.details.reason, "timeout")
    t.match(err.details.statuses[#err.details.statuses], "GET http://127.0.0.1:8080/ %-> 500")
  end)
end)

t.case("wait_healthy: a removed container and bad options", function()
  with_docker({ { match = "^inspect ", code = 1, stderr = "Error: No such object: web\n" } }, function()
    t.raises(function() docker.wait_healthy { name = "web", healthcheck = true } end, "rollout_failed", "is gone")
  end)
  with_docker({ { match = "^inspect ", stdout = state_json(RUNNING) } }, function()
    t.raises(function() docker.wait_healthy { name = "web", healthcheck = true } end, "invalid_argument", "has no HEALTHCHECK")
  end)
  t.raises(function() docker.wait_healthy { name = "web" } end, "invalid_argument", "give url=")
  t.raises(function() docker.wait_healthy { url = "http://x/" } end, "invalid_argument", "option 'name' is required")
  t.raises(function() docker.wait_healthy { name = "w", url = "ftp://x/" } end, "invalid_argument", "url must start with http")
  t.raises(function() docker.wait_healthy { name = "w", url = "http://x/", timeout = "5" } end, "invalid_argument", "option timeout")
end)
