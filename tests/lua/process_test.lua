-- hoist.exec, hoist.which, hoist.env; secrets in child output never reach the logs.
local t = require "hoist.test"

t.case("exec returns code, signal, stdout, stderr, duration, timed_out", function()
  local r = hoist.exec { "sh", "-c", "echo out; echo err >&2; exit 3" }
  t.eq(r.code, 3)
  t.eq(r.signal, 0)
  t.eq(r.stdout, "out\n")
  t.eq(r.stderr, "err\n")
  t.eq(r.timed_out, false)
  t.ok(type(r.duration) == "number" and r.duration > 0, "duration is a positive number")
  t.ok(r.pid > 0, "pid")
end)

t.case("a child killed by a signal reports it", function()
  local r = hoist.exec { "sh", "-c", "kill -9 $$" }
  t.eq(r.signal, 9)
  t.eq(r.code, 137)
end)

t.cases("env, cwd and stdin reach the child", {
  { name = "env adds to the inherited environment",
    opts = { "sh", "-c", 'echo "$HOIST_A-${HOME:+home}"', env = { HOIST_A = "x" } }, out = "x-home\n" },
  { name = "a number in env is converted",
    opts = { "sh", "-c", 'echo "$N"', env = { N = 42 } }, out = "42\n" },
  { name = "clear_env leaves only env",
    opts = { "env", clear_env = true, env = { ONLY = "1" } }, out = "ONLY=1\n" },
  { name = "cwd", opts = { "pwd", cwd = "/tmp" }, out = "/tmp\n" },
  { name = "stdin", opts = { "cat", stdin = "line 1\nline 2" }, out = "line 1\nline 2" },
  { name = "no stdin is /dev/null", opts = { "cat" }, out = "" },
  { name = "numbers in argv are converted", opts = { "echo", 1, 2.5 }, out = "1 2.5\n" },
}, function(row)
  t.eq(hoist.exec(row.opts).stdout, row.out)
end)

t.case("timeout ends the child with code 124 and timed_out", function()
  local started = hoist.now()
  local r = hoist.exec { "sh", "-c", "sleep 30 & sleep 30", timeout = 0.2 }
  t.eq(r.code, 124)
  t.eq(r.timed_out, true)
  t.ok(hoist.now() - started < 3, "the whole group died at the timeout")
end)

t.case("check = true raises tool_failed with the program, code and stderr tail", function()
  local script = "for i in $(seq 1 15); do echo line$i >&2; done; exit 7"
  local err = t.raises(function() hoist.exec { "sh", "-c", script, check = true } end,
    "tool_failed", "sh exited with code 7")
  t.match(err.message, "line15$")
  t.match(err.message, "line6\n")
  t.no_match(err.message, "line5\n", "only the last 10 lines go in the message")
  t.eq(err.details.code, 7)
  t.eq(err.details.program, "sh")
  t.match(err.details.stderr, "^line1\n")
  t.eq(hoist.exec { "true", check = true }.code, 0)
end)

t.case("check = true on a timeout raises timeout", function()
  t.raises(function() hoist.exec { "sleep", "5", timeout = 0.1, check = true } end,
    "timeout", "sleep timed out after 0.1s")
end)

t.case("the stderr tail in a check error is scrubbed", function()
  local secret = hoist.secret("tail-secret-8c1f0e")
  local err = t.raises(function()
    hoist.exec { "sh", "-c", 'echo "token $S" >&2; exit 1', env = { S = secret }, check = true }
  end, "tool_failed")
  t.no_match(err.message, secret)
  t.no_match(err.details.stderr, secret)
  t.match(err.message, "token %*%*%*")
end)

t.cases("a program that cannot run is tool_missing", {
  { name = "not on PATH", argv = { "hoist-no-such-tool" }, pattern = "'hoist%-no%-such%-tool': not found on PATH" },
  { name = "no such path", argv = { "/nonexistent/tool" }, pattern = "no such file" },
  { name = "not executable", plain_file = true, pattern = "permission denied" },
}, function(row)
  local argv = row.argv
  if row.plain_file then
    argv = { os.tmpname() } -- created 0600: exists, may not be executed
  end
  t.raises(function() hoist.exec(argv) end, "tool_missing", row.pattern)
  if row.plain_file then os.remove(argv[1]) end
end)

t.cases("bad options are invalid_argument naming the option", {
  { name = "not a table", opts = "ls", pattern = "options table" },
  { name = "empty argv", opts = {}, pattern = "argv is empty" },
  { name = "empty program", opts = { "" }, pattern = "empty string" },
  { name = "boolean argument", opts = { "echo", true }, pattern = "argument 2 must be a string, got boolean" },
  { name = "table argument", opts = { "echo", {} }, pattern = "argument 2 must be a string, got table" },
  { name = "hole in argv", opts = { "echo", nil, "x" }, pattern = "hole" },
  { name = "negative timeout", opts = { "true", timeout = -1 }, pattern = "'timeout' must be >= 0" },
  { name = "timeout not a number", opts = { "true", timeout = "5" }, pattern = "'timeout' must be a number" },
  { name = "env not a table", opts = { "true", env = "A=1" }, pattern = "'env' must be a table" },
  { name = "env value", opts = { "true", env = { A = true } }, pattern = "env 'A' must be a string" },
  { name = "env key with =", opts = { "true", env = { ["A=B"] = "1" } }, pattern = "env key A=B" },
  { name = "cwd not a string", opts = { "true", cwd = 1 }, pattern = "'cwd' must be a string" },
  { name = "cwd missing", opts = { "true", cwd = "/nonexistent/dir" }, pattern = "cwd '/nonexistent/dir'" },
  { name = "stdin not a string", opts = { "cat", stdin = 5 }, pattern = "'stdin' must be a string" },
  { name = "check not a boolean", opts = { "true", check = 1 }, pattern = "'check' must be a boolean" },
  { name = "unknown option", opts = { "true", tiemout = 1 }, pattern = "unknown option 'tiemout'" },
}, function(row)
  t.raises(function() hoist.exec(row.opts) end, "invalid_argument", row.pattern)
end)

t.case("exec runs concurrently under hoist.map", function()
  local started = hoist.now()
  local list = {}
  for i = 1, 20 do list[i] = i end
  local codes = hoist.map(list, function(i)
    return hoist.exec { "sh", "-c", "sleep 0.2; exit " .. i }.code
  end)
  t.eq(codes, list)
  t.ok(hoist.now() - started < 2, "20 children of 0.2 s overlapped")
end)

t.case("cancelling a task kills its child", function()
  local task = hoist.spawn(function() return hoist.exec { "sleep", "30" } end)
  hoist.sleep(0.1)
  local started = hoist.now()
  task:cancel()
  t.raises(function() task:wait() end, "cancelled")
  t.ok(hoist.now() - started < 1, "cancel was immediate")
end)

t.case("which and env", function()
  t.match(hoist.which("sh"), "/sh$")
  t.eq(hoist.which("hoist-no-such-tool"), nil)
  t.raises(function() hoist.which(nil) end, "invalid_argument", "hoist.which")
  t.eq(hoist.env("HOME"), os.getenv("HOME"))
  t.eq(hoist.env("HOIST_SURELY_UNSET_VARIABLE"), nil)
  t.raises(function() hoist.env(1) end, "invalid_argument", "hoist.env")
end)

---------------------------------------------------------------- secrets in child output

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local hoist_bin, read_file = support.hoist_bin, support.must_read

t.case("a secret printed by a child never reaches the JSON log or events.jsonl", function()
  local bin = hoist_bin()
  local dir = hoist.exec { "mktemp", "-d", check = true }.stdout:gsub("%s+$", "")
  local secret = "hunter2-Zq8vLx3-secret"
  local b64 = hoist.exec { "base64", stdin = secret, check = true }.stdout:gsub("%s+$", "")
  -- The script gets the secret from the environment, never from a command line.
  local script = dir .. "/leak.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local s = hoist.secret(hoist.env("LEAK_SECRET"))
local half = math.floor(#s / 2)
hoist.exec{ "sh", "-c", 'printf "whole=%s\n" "$S"', env = { S = s }, stream = true }
hoist.exec{ "sh", "-c", 'printf "split=%s" "$A"; sleep 0.3; printf "%s\n" "$B"',
            env = { A = s:sub(1, half), B = s:sub(half + 1) }, stream = true }
hoist.exec{ "sh", "-c", 'printf "%s" "$S" | base64 | sed "s/^/b64=/" >&2', env = { S = s }, stream = true }
hoist.exec{ "sh", "-c", 'printf "nonl=%s" "$S"', env = { S = s }, stream = true }
]])
  f:close()
  local r = hoist.exec {
    bin, "run", "--log-format", "json", "--log-level", "debug", "--state-dir", dir .. "/state", script,
    env = { LEAK_SECRET = secret },
  }
  t.eq(r.code, 0, "the script ran: " .. r.stderr)
  local files = hoist.exec { "sh", "-c", 'cat "$1"/state/runs/*/events.jsonl', "sh", dir, check = true }.stdout
  hoist.exec { "rm", "-rf", dir }
  for name, text in pairs { ["the JSON log"] = r.stderr, ["events.jsonl"] = files } do
    -- the lines are there, masked: scrubbing ran rather than nothing being logged
    for _, marker in ipairs { "whole=%*%*%*", "split=%*%*%*", "b64=%*%*%*", "nonl=%*%*%*" } do
      t.match(text, '"message":"' .. marker, name)
    end
    t.no_match(text, secret, name)
    t.no_match(text, b64, name)
  end
end)

---------------------------------------------------------------- hoist doctor

-- A PATH holding only stand-ins: git and docker (whose daemon is down) found, trivy through
-- HOIST_TRIVY, the rest missing.
local function fake_tools()
  local dir = hoist.exec { "mktemp", "-d", check = true }.stdout:gsub("%s+$", "")
  local function tool(name, body)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write("#!/bin/sh\n" .. body .. "\n")
    f:close()
    hoist.exec { "chmod", "755", dir .. "/" .. name, check = true }
  end
  tool("git", 'echo "git version 9.8.7"')
  tool("docker", [[
if [ "$1" = "--version" ]; then echo "Docker version 1.2.3, build abc"; exit 0; fi
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1]])
  tool("my-trivy", 'echo "Version: 0.50.1"')
  return dir
end

t.case("hoist doctor --json reports found, missing, versions and the daemon", function()
  local bin, dir = hoist_bin(), fake_tools()
  local r = hoist.exec { bin, "doctor", "--json",
    env = { PATH = dir, HOIST_TRIVY = dir .. "/my-trivy" } }
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.code, 0, "doctor succeeds with tools missing: " .. r.stderr)
  local report = hoist.json.decode(r.stdout)
  local by = {}
  for _, tool in ipairs(report.tools) do by[tool.name] = tool end
  t.eq(by.git.found, true)
  t.eq(by.git.version, "9.8.7")
  t.eq(by.docker.version, "1.2.3")
  t.eq(by.docker.daemon.reachable, false)
  t.match(by.docker.daemon.problem, "Cannot connect to the Docker daemon")
  t.eq(by.trivy.version, "0.50.1")
  for _, name in ipairs { "az", "kubectl", "helm", "skopeo" } do
    t.eq(by[name].found, false, name)
    t.ok(by[name].disables ~= "", name .. " says what it disables")
  end
end)

t.case("hoist doctor prints a table with what a missing tool disables", function()
  local bin, dir = hoist_bin(), fake_tools()
  local r = hoist.exec { bin, "doctor", env = { PATH = dir } }
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.code, 0)
  t.match(r.stdout, "^tool%s+status%s+version%s+notes\n")
  t.match(r.stdout, "\ngit%s+found%s+9%.8%.7")
  t.match(r.stdout, "\nhelm%s+missing%s+%-%s+without it: helm releases on AKS")
  t.match(r.stdout, "\ntrivy%s+missing%s+%-%s+without it: the scan gate")
  t.match(r.stdout, "daemon unreachable")
end)
