-- The `hoist` command itself: usage errors and their exit codes, the failure paragraph,
-- the JSON log and events.jsonl, version. Runs the real executable.
local t = require "hoist.test"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")

local function script(dir, name, text)
  local path = dir .. "/" .. name
  support.write(path, text)
  return path
end

local function cli(args, opts)
  opts = opts or {}
  opts.env = opts.env or { NO_COLOR = "1", GITHUB_ACTIONS = "false" }
  opts.timeout = opts.timeout or 60
  return support.run_hoist(args, opts)
end

-- Usage errors: a clear message naming the bad thing, exit code 2, nothing ran.
t.cases("usage errors exit 2 and name the bad thing", {
  { name = "missing script file", args = { "run", "/nonexistent/deploy.lua" }, says = "no such script file: /nonexistent/deploy.lua" },
  { name = "--set without =", args = { "run", "@SCRIPT", "--set", "novalue" }, says = "%-%-set expects key=value, got 'novalue'" },
  { name = "--set with an empty key", args = { "run", "@SCRIPT", "--set", "=x" }, says = "%-%-set expects key=value" },
  { name = "--set with a bad key", args = { "run", "@SCRIPT", "--set", "a b=1" }, says = "key 'a b'" },
  { name = "--params-file missing", args = { "run", "@SCRIPT", "--params-file", "/nonexistent.json" }, says = "/nonexistent.json" },
  { name = "--params-file malformed", args = { "run", "@SCRIPT", "--params-file", "@BADJSON" }, says = "not valid JSON.*line 2" },
  { name = "--params-file not an object", args = { "run", "@SCRIPT", "--params-file", "@ARRAYJSON" }, says = "must hold a JSON object" },
  { name = "bad --log-format", args = { "run", "@SCRIPT", "--log-format", "xml" }, says = "%-%-log%-format must be text or json" },
  { name = "bad --log-level", args = { "run", "@SCRIPT", "--log-level", "verbose" }, says = "%-%-log%-level: verbose not in {debug,info,warn,error}" },
  { name = "--params-file a directory", args = { "run", "@SCRIPT", "--params-file", "@DIR" }, says = "cannot read %-%-params%-file .*hoist%-cli%.%w+: it is a directory" },
  { name = "--params-file nested 90k deep", args = { "run", "@SCRIPT", "--params-file", "@DEEPJSON" },
    says = "%-%-params%-file .*deep%.json is not valid JSON: malformed JSON at line 1, column 1006: nested deeper than 1000 levels" },
  { name = "--params-file with a parameter nested too deep", args = { "run", "@SCRIPT", "--params-file", "@DEEPPARAM" },
    says = "%-%-params%-file .*param%.json: parameter 'config' nests deeper than 100 levels" },
  { name = "unknown command", args = { "deploy" }, says = "unknown command 'deploy'" },
  { name = "unknown pipeline", args = { "run", "nosuchpipeline" }, says = "no bundled pipeline named \"nosuchpipeline\" %(bundled:" },
  { name = "a pipeline name with a typo", args = { "run", "contaner@1" },
    says = "^hoist: invalid_argument: no bundled pipeline named \"contaner\", did you mean \"container\"%? %(bundled: " },
  { name = "--params-file /dev/zero", args = { "run", "@SCRIPT", "--params-file", "/dev/zero" },
    says = "%-%-params%-file /dev/zero is larger than 4 MiB" },
  { name = "--params-file larger than 4 MiB", args = { "run", "@SCRIPT", "--params-file", "@BIGJSON" },
    says = "%-%-params%-file .*big%.json is larger than 4 MiB" },
}, function(row)
  local dir = support.tmpdir("hoist-cli")
  local subst = {
    ["@SCRIPT"] = script(dir, "ok.lua", "return 1\n"),
    ["@BADJSON"] = script(dir, "bad.json", '{"a": 1,\n  "b": }\n'),
    ["@ARRAYJSON"] = script(dir, "array.json", "[1, 2]\n"),
    ["@DIR"] = dir,
    ["@DEEPJSON"] = script(dir, "deep.json", '{"a": ' .. ("["):rep(90000) .. ("]"):rep(90000) .. "}"),
    ["@DEEPPARAM"] = script(dir, "param.json", '{"config": ' .. ("["):rep(150) .. ("]"):rep(150) .. "}"),
  }
  if row.args[4] == "@BIGJSON" then subst["@BIGJSON"] = script(dir, "big.json", '{"a": "' .. ("x"):rep(4 * 1024 * 1024) .. '"}') end
  local args = {}
  for i, a in ipairs(row.args) do args[i] = subst[a] or a end
  args[#args + 1] = args[1] == "run" and "--state-dir" or nil
  args[#args + 1] = args[1] == "run" and (dir .. "/state") or nil
  local r = cli(args)
  t.eq(r.code, 2, r.stderr)
  t.match(r.stderr, row.says)
  -- a usage error ran nothing: no run folder, nothing for `hoist runs`, so no run id to name
  t.ok(not r.stderr:find("run %S+ failed"), "a usage error names a run id: " .. r.stderr)
  t.eq(hoist.exec({ "sh", "-c", "ls \"$1\"/state/runs 2>/dev/null", "sh", dir }).stdout, "")
end)

t.case("hoist doctor --json prints JSON and leaves dry-run off", function()
  -- a stand-in doctor (HOIST_LUA_PATH overrides one stdlib file) reports what the engine gave it
  local dir = support.tmpdir("hoist-cli")
  hoist.exec { "mkdir", "-p", dir .. "/stdlib/hoist", check = true }
  script(dir, "stdlib/hoist/doctor.lua", "return { main = function(a) print(hoist.json.encode { json = a.json, dry_run = hoist.run.dry_run }) end }\n")
  for _, row in ipairs { { args = { "doctor", "--json" }, json = true }, { args = { "doctor" }, json = false } } do
    local r = cli(row.args, { env = { NO_COLOR = "1", GITHUB_ACTIONS = "false", HOIST_LUA_PATH = dir } })
    t.eq(r.code, 0, r.stderr)
    local out = hoist.json.decode(r.stdout)
    t.eq(out.json, row.json)
    t.eq(out.dry_run, false)
  end
end)

t.case("hoist runs names a plain script by its file; --json has every key, pipeline null for a script", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "deploy-web.lua", "return 1\n")
  local r = cli { "run", path, "--state-dir", dir .. "/state" }
  t.eq(r.code, 0, r.stderr)
  local p = cli { "run", support.root .. "/tests/pipelines/fail.lua", "--set", "marker=" .. dir .. "/m", "--state-dir", dir .. "/state" }
  t.eq(p.code, 1, p.stderr)
  local text = cli { "runs", "--state-dir", dir .. "/state" }
  t.eq(text.code, 0, text.stderr)
  t.match(text.stdout, "\n%S+%s+succeeded%s+deploy%-web%.lua%s")
  local runs = cli { "runs", "--state-dir", dir .. "/state", "--json" }
  t.eq(runs.code, 0, runs.stderr)
  local list = hoist.json.decode(runs.stdout)
  t.eq(#list, 2)
  local by = {}
  for _, e in ipairs(list) do by[e.status] = e end
  t.eq(by.succeeded.pipeline, hoist.json.null)
  t.eq(by.succeeded.script, path)
  t.eq(by.rolled_back.pipeline, "fail")
  t.eq(by.rolled_back.script, hoist.json.null)
end)

t.case("bad pipeline parameters are a usage error that records no run", function()
  local dir = support.tmpdir("hoist-cli")
  local r = cli { "run", support.root .. "/tests/pipelines/slow.lua", "--state-dir", dir .. "/state" }
  t.eq(r.code, 2, r.stderr)
  t.match(r.stderr, "marker: required string parameter is missing")
  t.eq(hoist.exec({ "sh", "-c", "ls \"$1\"/state/runs 2>/dev/null", "sh", dir }).stdout, "")
  local runs = cli { "runs", "--state-dir", dir .. "/state", "--json" }
  t.eq(runs.code, 0, runs.stderr)
  t.no_match(runs.stdout, "slow")
end)

t.case("--log-format json: only JSON lines, the failure as an error event, no glyphs", function()
  local dir = support.tmpdir("hoist-cli")
  local r = cli { "run", support.root .. "/tests/pipelines/fail.lua", "--set", "marker=" .. dir .. "/m",
    "--log-format", "json", "--state-dir", dir .. "/state" }
  t.eq(r.code, 1, r.stderr)
  local last, ended
  for _, stream in ipairs { r.stdout, r.stderr } do
    for line in stream:gmatch("[^\n]+") do
      local ok, e = pcall(hoist.json.decode, line)
      t.ok(ok and type(e) == "table" and e.level and e.kind, "not a JSON event: " .. line)
      t.no_match(e.message, "▶"); t.no_match(e.message, "✓"); t.no_match(e.message, "✗"); t.no_match(e.message, "↺")
      if e.kind == "pipeline.end" then ended = e end
      last = e
    end
  end
  t.eq(last.kind, "run.failed")
  t.eq(last.level, "error")
  t.match(last.message, "^run %S+ failed at .*fail%.lua:%d+: rollout_failed: stage three failed")
  t.eq(last.fields.error.code, "rollout_failed")
  t.eq(ended.level, "error")
  t.eq(ended.fields.status, "rolled_back")
end)

t.case("hoist.log fields show on the terminal as key=value, masked", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "fields.lua", [[
local s = hoist.secret("fields-secret-4242")
hoist.log.info("deployed", { service = "web", replicas = 3, token = s, note = "two words", tags = { "a" } })
]])
  local r = cli { "run", path, "--state-dir", dir .. "/state" }
  t.eq(r.code, 0, r.stderr)
  t.match(r.stderr, 'deployed note="two words" replicas=3 service=web tags=%["a"%] token=%*%*%*')
  t.no_match(r.stderr, "fields-secret-4242")
end)

t.case("the engine's run id generator is the one Lua uses", function()
  local id = require("hoist.native.core").new_run_id()
  t.match(id, "^%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d%-%x%x%x%x$")
end)

t.case("a script error prints one paragraph with file:line, code and message; exit 1", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "fails.lua", "local x = 1\n\nhoist.error { code = 'not_found', message = 'no app named web' }\n")
  local r = cli { "run", path, "--state-dir", dir .. "/state" }
  t.eq(r.code, 1)
  t.match(r.stderr, "failed at " .. path:gsub("%p", "%%%0") .. ":3")
  t.match(r.stderr, "not_found: no app named web")
end)

t.case("a syntax error names the file and line; exit 1", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "syntax.lua", "local ok = true\nlocal = 2\n")
  local r = cli { "run", path, "--state-dir", dir .. "/state" }
  t.eq(r.code, 1)
  t.match(r.stderr, "syntax error: " .. path:gsub("%p", "%%%0") .. ":2:")
end)

t.case("a plain Lua runtime error keeps its location", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "nil.lua", "local t = nil\nreturn t.field\n")
  local r = cli { "run", path, "--state-dir", dir .. "/state" }
  t.eq(r.code, 1)
  t.match(r.stderr, "nil.lua:2")
  t.match(r.stderr, "internal: .*attempt to index")
end)

t.case("--set and --params-file reach hoist.args; --set wins; the target may follow --set", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "args.lua", "print(hoist.json.encode(hoist.args))\n")
  local params = script(dir, "p.json", '{"a": "from-file", "n": 3}')
  local r = cli { "run", "--set", "a=from-set", path, "--params-file", params, "--set", "b=x=y", "--state-dir", dir .. "/s" }
  t.eq(r.code, 0, r.stderr)
  t.eq(hoist.json.decode(r.stdout), { a = "from-set", b = "x=y", n = 3 })
end)

t.case("--log-format json writes one JSON object per line; events.jsonl is written, secrets masked", function()
  local dir = support.tmpdir("hoist-cli")
  local path = script(dir, "log.lua", [[
local s = hoist.secret("cli-test-secret-7781")
hoist.log.info("token " .. s, { token = s })
hoist.log.warn("careful")
]])
  local r = cli { "run", path, "--log-format", "json", "--state-dir", dir .. "/state" }
  t.eq(r.code, 0, r.stderr)
  local kinds = {}
  for line in r.stderr:gmatch("[^\n]+") do
    local e = hoist.json.decode(line)
    t.ok(e.ts and e.level and e.kind, "every line is an event: " .. line)
    kinds[#kinds + 1] = e.level
  end
  t.ok(#kinds >= 2, "info and warn lines")
  t.no_match(r.stderr, "cli-test-secret-7781")
  local runs = hoist.exec { "ls", dir .. "/state/runs", check = true }.stdout:gsub("%s+$", "")
  local events = support.must_read(dir .. "/state/runs/" .. runs .. "/events.jsonl")
  t.match(events, '"message":"token %*%*%*"')
  t.no_match(events, "cli-test-secret-7781")
end)

t.case("hoist version names the engine and its libraries", function()
  local r = cli { "version" }
  t.eq(r.code, 0)
  for _, lib in ipairs { "^hoist %d+%.%d+%.%d+", "LuaJIT 2%.1", "libcurl %d", "Boost 1%.%d+", "nlohmann_json 3" } do
    t.match(r.stdout, lib)
  end
end)

t.case("hoist --help lists the commands and the exit codes", function()
  local r = cli { "--help" }
  t.eq(r.code, 0)
  for _, cmd in ipairs { "run", "test", "doctor", "version", "pipelines", "runs", "rollback", "report" } do
    t.match(r.stdout, "\n%s+" .. cmd .. "%s")
  end
  t.match(r.stdout, "Exit codes: 0 succeeded")
end)

-- SIGINT and SIGTERM cancel the run: compensations run, the paragraph prints, exit 130.
t.cases("a signal mid-pipeline rolls back and exits 130", { { name = "TERM" }, { name = "INT" } }, function(row)
  local dir = support.tmpdir("hoist-cli")
  local marker = dir .. "/undone"
  -- wait until the compensation is journaled (the run sleeps in its second stage), then signal
  local sh = [[
"$1" run "$2" --set marker="$3" --state-dir "$4" 2>"$4.err" &
pid=$!
i=0
until grep -qs test.slow_undo "$4"/runs/*/journal.jsonl; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.05; done
sleep 0.2
kill -]] .. row.name .. [[ $pid
wait $pid
echo "exit=$?"
]]
  local r = hoist.exec { "sh", "-c", sh, "sh", support.hoist_bin(), support.root .. "/tests/pipelines/slow.lua",
    marker, dir .. "/state", env = { NO_COLOR = "1", GITHUB_ACTIONS = "false" }, timeout = 60 }
  local stderr = support.read(dir .. "/state.err") or ""
  t.match(r.stdout, "exit=130", stderr)
  t.no_match(stderr, "bad_function_call")
  t.match(stderr, "received SIG" .. row.name)
  t.match(stderr, "hoist: run %S+ failed")
  t.match(stderr, "cancelled")
  t.eq(support.read(marker), "undone change\n")
end)
