-- The journal, rollback from another process and the CLI around runs, through the real
-- `hoist` executable: SIGKILL in the middle of a stage then `hoist rollback`, `hoist runs`,
-- exit codes, `--help`, `--dry-run`, GitHub Actions output, the HTML report, and that no
-- secret parameter's value reaches any file or output.
local t = require "hoist.test"
local native = require "hoist.native.journal"

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local PIPES = support.root .. "/tests/pipelines/"

-- Children never think they run in GitHub Actions unless a test says so.
local function hoist_cli(args, env)
  local e = { GITHUB_ACTIONS = "false", NO_COLOR = "1" }
  for k, v in pairs(env or {}) do e[k] = v end
  return support.run_hoist(args, { env = e, timeout = 60 })
end

local function lit(s) return (s:gsub("%p", "%%%0")) end -- a plain string as a pattern

local tmpdir, read = support.tmpdir, support.read

local function only_run(state)
  local runs = native.list_runs(state)
  t.eq(#runs, 1, "one run folder in " .. state)
  return runs[1].id, runs[1].dir
end

t.case("SIGKILL in the middle of a stage, then `hoist rollback` runs the compensation once", function()
  local dir = tmpdir()
  local state, marker = dir .. "/state", dir .. "/marker"
  local runner = hoist.spawn(function()
    return hoist_cli { "run", PIPES .. "slow.lua", "--set", "marker=" .. marker, "--state-dir", state }
  end)
  -- wait until the journal shows the registered compensation
  local pid, id
  for _ = 1, 200 do
    local runs = native.list_runs(state)
    if runs[1] and runs[1].journal then
      local entries = native.read(runs[1].dir .. "/journal.jsonl")
      for _, e in ipairs(entries) do
        if e.kind == "run.start" then pid = e.pid end
        if e.kind == "compensation.registered" then id = runs[1].id end
      end
    end
    if id and pid then break end
    hoist.sleep(0.05)
  end
  t.ok(id and pid, "the journal showed a registered compensation")
  hoist.exec { "kill", "-9", tostring(pid), check = true }
  local r = runner:wait()
  t.eq(r.signal, 9, "the runner died of SIGKILL")
  t.eq(read(marker), nil, "nothing was undone by the killed process")

  local runs = hoist_cli { "runs", "--state-dir", state }
  t.match(runs.stdout, lit(id) .. "%s+died")
  t.match(runs.stdout, "hoist rollback " .. lit(id))

  local rb = hoist_cli { "rollback", id, "--state-dir", state }
  t.eq(rb.code, 0, rb.stderr)
  t.eq(read(marker), "undone change\n")
  local again = hoist_cli { "rollback", id, "--state-dir", state }
  t.eq(again.code, 0, again.stderr)
  t.eq(read(marker), "undone change\n", "a second rollback skips what is done")

  local list = hoist.json.decode(hoist_cli { "runs", "--state-dir", state, "--json" }.stdout)
  t.eq(list[1].status, "rolled_back")
  t.eq(list[1].pipeline, "slow")
  hoist.exec { "rm", "-rf", dir }
end, { timeout = 90 })

t.case("`hoist rollback` of an unknown run is a usage error", function()
  local dir = tmpdir()
  local r = hoist_cli { "rollback", "20200101-000000-0000", "--state-dir", dir }
  t.eq(r.code, 2)
  t.match(r.stderr, "no journal")
  hoist.exec { "rm", "-rf", dir }
end)

t.cases("exit codes and messages of `hoist run`", {
  { name = "rolled back", args = { "run", PIPES .. "fail.lua", "--set", "marker=M" }, code = 1,
    err = "stage three failed %(rolled back 2 change%(s%)%): the new version never became healthy", marker = "two\none\n" },
  { name = "rollback incomplete", args = { "run", PIPES .. "fail.lua", "--set", "marker=M", "--set", "bad_undo=true" }, code = 3,
    err = "NOT undone: test.fail_undo %(one%)", marker = "two\n" },
  { name = "policy gate", args = { "run", PIPES .. "fail.lua", "--set", "marker=M", "--set", "policy=yes" }, code = 4,
    err = "policy_violation: stage three failed %(rolled back 2 change%(s%)%): 2 critical" },
  { name = "bad parameter", args = { "run", PIPES .. "fail.lua", "--set", "marker=M", "--set", "bad_undo=perhaps" }, code = 2,
    err = 'bad_undo: expected true or false, got "perhaps"', marker = false },
  { name = "unknown parameter", args = { "run", PIPES .. "fail.lua", "--set", "markr=M" }, code = 2,
    err = 'unknown parameter "markr" %(did you mean "marker"%?%)' },
  { name = "missing parameter", args = { "run", PIPES .. "fail.lua" }, code = 2, err = "marker: required string parameter is missing" },
  { name = "requires a newer engine", args = { "run", PIPES .. "future.lua" }, code = 2, err = "requires hoist >=99, but this is hoist" },
  { name = "version not shipped", args = { "run", "demo@1.0.0" }, code = 2, err = "demo@1%.0%.0 is not shipped" },
  { name = "major not shipped", args = { "run", "demo@9" }, code = 2, err = "demo@9 is not shipped" },
  { name = "demo@1", args = { "run", "demo@1" }, code = 0, log = "demo 1%.2%.0: run" },
  { name = "demo@2", args = { "run", "demo@2", "--set", "times=2" }, code = 0, log = "demo 2%.0%.1: run" },
  { name = "demo newest", args = { "run", "demo" }, code = 0, log = "demo 2%.0%.1: run" },
  { name = "demo exact", args = { "run", "demo@1.2.0" }, code = 0, log = "demo 1%.2%.0: run" },
}, function(row)
  local dir = tmpdir()
  local args = {}
  for i, a in ipairs(row.args) do args[i] = a == "marker=M" and ("marker=" .. dir .. "/marker") or a end
  args[#args + 1] = "--state-dir"
  args[#args + 1] = dir .. "/state"
  local r = hoist_cli(args)
  t.eq(r.code, row.code, r.stderr)
  if row.err then t.match(r.stderr, row.err) end
  if row.log then t.match(r.stderr, row.log) end
  if row.marker then t.eq(read(dir .. "/marker"), row.marker) end
  if row.marker == false then t.eq(read(dir .. "/marker"), nil, "nothing ran") end
  hoist.exec { "rm", "-rf", dir }
end)

t.case("--params-file gives typed values; --set wins over it", function()
  local dir = tmpdir()
  local file = dir .. "/params.json"
  local f = assert(io.open(file, "w"))
  f:write(hoist.json.encode { marker = dir .. "/marker", bad_undo = true, policy = false })
  f:close()
  local r = hoist_cli { "run", PIPES .. "fail.lua", "--params-file", file, "--state-dir", dir .. "/state" }
  t.eq(r.code, 3, r.stderr)
  r = hoist_cli { "run", PIPES .. "fail.lua", "--params-file", file, "--set", "bad_undo=false", "--state-dir", dir .. "/state" }
  t.eq(r.code, 1, r.stderr)
  hoist.exec { "rm", "-rf", dir }
end)

t.case("`hoist pipelines` lists every shipped version", function()
  local r = hoist_cli { "pipelines" }
  t.eq(r.code, 0)
  t.match(r.stdout, "demo%s+1%.2%.0%s+Logs a greeting")
  t.match(r.stdout, "demo%s+2%.0%.1%s+Logs a message")
end)

t.cases("`hoist run X --help` prints the parameters", {
  { name = "bundled", target = "demo@2", want = { "demo 2%.0%.1", "times %(number, default 1%)", "Usage: hoist run demo@2" } },
  { name = "user file", target = PIPES .. "ok.lua", want = { "ok 1%.0%.0: Succeeds", "password %(string, secret%)", "from env: %$OK_PASSWORD" } },
}, function(row)
  local r = hoist_cli { "run", row.target, "--help" }
  t.eq(r.code, 0, r.stderr)
  for _, w in ipairs(row.want) do t.match(r.stdout, w) end
end)

t.case("`--help` on a plain script does not run it", function()
  local dir = tmpdir()
  local script = dir .. "/plain.lua"
  local f = assert(io.open(script, "w"))
  f:write(("io.open(%q, 'w'):close()\n"):format(dir .. "/ran"))
  f:close()
  local r = hoist_cli { "run", script, "--help" }
  t.eq(r.code, 0)
  t.match(r.stdout, "is a plain script")
  t.eq(read(dir .. "/ran"), nil)
  hoist.exec { "rm", "-rf", dir }
end)

t.case("--dry-run prints a numbered plan, writes plan.json and journals a dry run", function()
  local dir = tmpdir()
  local r = hoist_cli { "run", PIPES .. "ok.lua", "--dry-run", "--state-dir", dir }
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, "Plan: dry run of ok 1%.0%.0 %(run [%w%-]+%), 2 change%(s%) it would make:\n  1%. %[deploy%] deploy registry%.local/app:1\n  2%. %[deploy%] PUT http://127%.0%.0%.1:1/apps/app")
  local id, run_dir = only_run(dir)
  local plan = hoist.json.decode(read(run_dir .. "/plan.json"))
  t.eq(#plan.steps, 2)
  t.eq(plan.steps[1].argv, { "deploy", "--image", "registry.local/app:1" })
  t.eq(plan.steps[2].method, "PUT")
  local j = hoist.json.decode(hoist_cli({ "run", PIPES .. "ok.lua", "--dry-run", "--state-dir", dir, "--log-format", "json" }).stdout)
  t.eq(#j.steps, 2)
  t.match(hoist_cli({ "runs", "--state-dir", dir }).stdout, lit(id) .. "%s+succeeded %(dry%)")
  hoist.exec { "rm", "-rf", dir }
end)

local SECRET = "Pa55-w0rd-never-printed"

local function all_files(dir)
  local r = hoist.exec { "find", dir, "-type", "f", check = true }
  local out = {}
  for line in r.stdout:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

t.case("GitHub Actions: masks first, a group per stage, the step summary; the secret only in ::add-mask::", function()
  local dir = tmpdir()
  local summary = dir .. "/summary.md"
  local r = hoist_cli({ "run", PIPES .. "ok.lua", "--state-dir", dir .. "/state" },
    { GITHUB_ACTIONS = "true", GITHUB_STEP_SUMMARY = summary, OK_PASSWORD = SECRET })
  t.eq(r.code, 0, r.stderr)
  local first = r.stdout:match("^[^\n]*")
  t.eq(first, "::add-mask::" .. SECRET, "the mask is the first line")
  local rest = r.stdout:sub(#first + 2)
  t.no_match(rest, SECRET)
  t.no_match(r.stderr, SECRET)
  t.match(rest, "::group::build\n::endgroup::\n::group::parallel: scan, sbom\n::endgroup::\n::group::deploy\n::endgroup::")
  local md = read(summary)
  t.match(md, "### ✅ ok 1%.0%.0: succeeded")
  t.match(md, "| build | ✅ succeeded |")
  t.match(md, "#### Image\n%- registry%.local/app:1@sha256:0123")
  t.no_match(md, SECRET)
  local _, run_dir = only_run(dir .. "/state")
  t.match(read(run_dir .. "/journal.jsonl"), '"password":"%*%*%*"')
  t.match(read(run_dir .. "/events.jsonl"), "building with password %*%*%*")

  -- the HTML report of that run
  local html_path = dir .. "/report.html"
  local id = run_dir:match("([^/]+)$")
  local rep = hoist_cli { "report", id, "--html", html_path, "--state-dir", dir .. "/state" }
  t.eq(rep.code, 0, rep.stderr)
  local html = read(html_path)
  t.match(html, "^<!DOCTYPE html>")
  for _, name in ipairs { "build", "scan", "sbom", "deploy" } do t.match(html, 'data%-stage="' .. name .. '"') end
  t.match(html, "registry%.local/app:1@sha256:0123")
  t.no_match(html, "src=")
  t.no_match(html, "href=")
  t.match(hoist_cli({ "report", id, "--state-dir", dir .. "/state" }).stdout, "ok 1%.0%.0 · run " .. lit(id) .. " · succeeded")

  for _, file in ipairs(all_files(dir)) do t.no_match(read(file), SECRET, file) end
  hoist.exec { "rm", "-rf", dir }
end)

t.case("GitHub Actions: a failure gets an ::error annotation with file and line", function()
  local dir = tmpdir()
  local summary = dir .. "/summary.md"
  local r = hoist_cli({ "run", PIPES .. "fail.lua", "--set", "marker=" .. dir .. "/m", "--state-dir", dir .. "/state" },
    { GITHUB_ACTIONS = "true", GITHUB_STEP_SUMMARY = summary, FAIL_TOKEN = SECRET })
  t.eq(r.code, 1)
  t.match(r.stdout, "^::add%-mask::" .. lit(SECRET) .. "\n")
  t.match(r.stdout, "::error file=[^,]*tests/pipelines/fail%.lua,line=%d+,title=fail 0%.1%.0%%3A stage three failed::rollout_failed: stage three failed %(rolled back 2 change%(s%)%): the new")
  local md = read(summary)
  t.match(md, "#### Rollback\n%- ↩️ undone: test%.fail_undo %(two%)")
  t.match(md, "#### Error\n> %*%*rollout_failed%*%*")
  local _, run_dir = only_run(dir .. "/state")
  local rep = hoist_cli { "report", run_dir:match("([^/]+)$"), "--html", dir .. "/r.html", "--state-dir", dir .. "/state" }
  t.eq(rep.code, 0, rep.stderr)
  local html = read(dir .. "/r.html")
  t.match(html, "<h2>Compensations</h2>")
  t.match(html, "<h2>Errors</h2>")
  t.match(html, "the new version never became healthy")
  for _, file in ipairs(all_files(dir)) do
    local text = read(file)
    t.no_match(text, SECRET, file)
  end
  hoist.exec { "rm", "-rf", dir }
end)

---------------------------------------------------------------- runs and reports of every kind of run

-- A run folder written by hand: journal.jsonl from `entries` (ts given), no process behind it.
local function fake_run(state, id, entries)
  local lines = {}
  for i, e in ipairs(entries) do lines[i] = hoist.json.encode(e) end
  hoist.fs.write_file(("%s/runs/%s/journal.jsonl"):format(state, id), table.concat(lines, "\n") .. "\n")
end

local DEAD_PID = 2147483646 -- no such process

t.case("`hoist report`: a stage cut short is interrupted; a succeeded run's compensations are not needed", function()
  local state = tmpdir()
  fake_run(state, "20260101-000000-dead", {
    { kind = "run.start", ts = 1000, run = "20260101-000000-dead", pipeline = "p", version = "1.0.0", pid = DEAD_PID },
    { kind = "stage.start", ts = 1001, stage = "deploy", attempt = 1 },
  })
  fake_run(state, "20260101-000000-good", {
    { kind = "run.start", ts = 2000, run = "20260101-000000-good", pipeline = "p", version = "1.0.0", pid = DEAD_PID },
    { kind = "stage.start", ts = 2001, stage = "deploy", attempt = 1 },
    { kind = "compensation.registered", ts = 2002, id = 1, stage = "deploy", action = "x.undo", args = {} },
    { kind = "stage.end", ts = 2003, stage = "deploy", status = "succeeded", duration = 2 },
    { kind = "run.end", ts = 2004, status = "succeeded", duration = 4 },
  })
  local dead = hoist_cli { "report", "20260101-000000-dead", "--state-dir", state }
  t.eq(dead.code, 0, dead.stderr)
  t.match(dead.stdout, "deploy%s+interrupted")
  t.no_match(dead.stdout, "running")
  local good = hoist_cli { "report", "20260101-000000-good", "--state-dir", state }
  t.eq(good.code, 0, good.stderr)
  t.match(good.stdout, "compensation 1 x%.undo %(deploy%): not_needed")
  t.no_match(good.stdout, "pending")
  local list = hoist.json.decode(hoist_cli({ "runs", "--state-dir", state, "--json" }).stdout)
  t.eq({ list[1].id, list[1].pending, list[2].id, list[2].status }, { "20260101-000000-good", 0, "20260101-000000-dead", "died" })
  hoist.exec { "rm", "-rf", state }
end)

t.case("`hoist runs` orders runs by start time, not by id", function()
  local state = tmpdir()
  -- ids sort the other way round from their start times
  fake_run(state, "b-early", { { kind = "run.start", ts = 1000, run = "b-early", pipeline = "p", version = "1.0.0", pid = DEAD_PID },
                               { kind = "run.end", ts = 1001, status = "succeeded" } })
  fake_run(state, "a-late", { { kind = "run.start", ts = 3000, run = "a-late", pipeline = "p", version = "1.0.0", pid = DEAD_PID },
                              { kind = "run.end", ts = 3001, status = "succeeded" } })
  fake_run(state, "c-middle", { { kind = "run.start", ts = 2000, run = "c-middle", pipeline = "p", version = "1.0.0", pid = DEAD_PID },
                                { kind = "run.end", ts = 2001, status = "failed" } })
  local list = hoist.json.decode(hoist_cli({ "runs", "--state-dir", state, "--json" }).stdout)
  t.eq({ list[1].id, list[2].id, list[3].id }, { "a-late", "c-middle", "b-early" })
  hoist.exec { "rm", "-rf", state }
end)

t.case("a plain script: --dry-run prints the plan and writes plan.json; `hoist report` shows its run", function()
  local dir = tmpdir()
  local script = dir .. "/plain.lua"
  support.write(script, [[
hoist.docker.tag("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:2")
hoist.http.post("http://127.0.0.1:1/hooks/deployed", { json = { version = 2 } })
print("script done")
]])
  local r = hoist_cli { "run", script, "--dry-run", "--state-dir", dir .. "/state" }
  t.eq(r.code, 0, r.stderr)
  t.match(r.stdout, "Plan: dry run of " .. lit(script) .. " %(run [%w%-]+%), 2 change%(s%) it would make:\n"
    .. "  1%. docker tag 127%.0%.0%.1:5000/app:1 127%.0%.0%.1:5000/app:2\n  2%. POST http://127%.0%.0%.1:1/hooks/deployed")
  local id, run_dir = only_run(dir .. "/state")
  local plan = hoist.json.decode(read(run_dir .. "/plan.json"))
  t.eq({ #plan.steps, plan.steps[1].action, plan.steps[2].method }, { 2, "docker.tag", "POST" })
  local rep = hoist_cli { "report", id, "--state-dir", dir .. "/state" }
  t.eq(rep.code, 0, rep.stderr)
  t.match(rep.stdout, "^script · run " .. lit(id) .. " · succeeded")
  local html = hoist_cli { "report", id, "--state-dir", dir .. "/state", "--html", dir .. "/r.html" }
  t.eq(html.code, 0, html.stderr)
  t.match(read(dir .. "/r.html"), "POST http://127%.0%.0%.1:1/hooks/deployed")
  local list = hoist.json.decode(hoist_cli({ "runs", "--state-dir", dir .. "/state", "--json" }).stdout)
  t.eq({ list[1].id, list[1].dry_run }, { id, true })
  hoist.exec { "rm", "-rf", dir }
end)

t.case("the HTML report wraps long errors and arguments inside the page width", function()
  local long = ("https://example.invalid/" .. ("x"):rep(400))
  local html = require("hoist.pipeline.html").render {
    run = { id = "r1", status = "failed", dry_run = false, started = 1, duration = 1,
            stages = { { name = "deploy", status = "failed", started = 1, duration = 1, error = { code = "tool_failed", message = long } } },
            compensations = { { id = 1, action = "x.undo", stage = "deploy", status = "failed", args = { url = long },
                                error = { message = long } } },
            error = { code = "tool_failed", message = long } },
    t0 = 1, t1 = 2, sections = {}, errors = { { message = long } }, plan = {}, dir = "/tmp/r1",
  }
  -- every element that holds such text may break it anywhere (no space to break it at)
  local wraps = {}
  for selectors, body in html:match("<style>(.-)</style>"):gmatch("([^{}]+)(%b{})") do
    if body:find("overflow%-wrap:anywhere") then
      for sel in selectors:gmatch("[^,%s]+") do wraps[sel] = true end
    end
  end
  for _, sel in ipairs { "td", "li", "pre", "code", ".err" } do t.ok(wraps[sel], sel .. " does not wrap long text") end
  t.match(html, '<td class="err">tool_failed: https://example%.invalid/xxx')
  t.match(html, '<pre class="err">tool_failed: https://example%.invalid/xxx')
  t.match(html, '<td><code>{&quot;url&quot;:&quot;https://example%.invalid/xxx')
end)

-- Issue 13: a compensation's arguments go through the one option check, when registered and
-- when run (a journal edited or from another version is refused naming the argument).
t.case("a compensation's arguments are checked against its spec when registered and when run", function()
  local ran = {}
  hoist.pipeline.action("jt.checked", function(a) ran[#ran + 1] = a end,
    { args = { name = { type = "string", required = true }, count = { type = "integer", default = 1 } } })
  local state = os.tmpname() .. ".d"
  -- registered with a bad argument: the stage fails before its change
  local def = hoist.pipeline.define { name = "jt-args", version = "1.0.0", stages = {
    { name = "s", run = function(ctx) ctx:on_rollback("jt.checked", { nmae = "x" }) end } } }
  local r = hoist.pipeline.run(def, {}, { state_dir = state, quiet = true, raise = false })
  t.eq(r.status, "failed")
  t.match(r.error.message, "rollback action jt.checked: unknown option 'nmae'")
  -- a good registration, then the journal edited: the rollback refuses it and says why
  def = hoist.pipeline.define { name = "jt-args2", version = "1.0.0", stages = {
    { name = "s", run = function(ctx) ctx:on_rollback("jt.checked", { name = "x" }); error("boom") end } } }
  r = hoist.pipeline.run(def, {}, { state_dir = state, quiet = true, raise = false })
  t.eq(r.status, "rolled_back")
  t.eq(#ran, 1)
  t.eq(ran[1], { name = "x", count = 1 }, "run with the defaults filled in")
  local actions = require "hoist.pipeline.actions"
  t.raises(function() actions.check_args("jt.checked", { name = 3 }) end, "invalid_argument",
    "rollback action jt.checked: option 'name' must be a string, got number")
  t.raises(function() actions.check_args("jt.checked", {}) end, "invalid_argument",
    "rollback action jt.checked: option 'name' is required")
end)
