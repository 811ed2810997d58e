-- The pipeline runtime in this process: definitions, stage outputs, parallel groups,
-- timeouts and retries, compensations (order, once, failures), dry runs, exit codes,
-- cancellation, and version picking of bundled pipelines.
local t = require "hoist.test"
local pipeline = hoist.pipeline
local semver = require "hoist.semver"
local scripts = require "hoist.scripts"

local undo_log = {} -- what the compensations did, in order
local flaky_failures = 0

pipeline.action("ptest.record", function(args)
  if args.fail then hoist.error { code = "unavailable", message = "cannot undo " .. args.label } end
  undo_log[#undo_log + 1] = args.label
end)

pipeline.action("ptest.flaky", function(args)
  if flaky_failures > 0 then
    flaky_failures = flaky_failures - 1
    hoist.error { code = "unavailable", message = "flaky undo of " .. args.label }
  end
  undo_log[#undo_log + 1] = args.label
end)

local function run(def, raw, opts)
  opts = opts or {}
  opts.quiet = true
  if opts.raise == nil then opts.raise = false end
  return pipeline.run(pipeline.define(def), raw or {}, opts)
end

local function stage(name, fn, extra)
  local s = { name = name, run = fn }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local function tmpdir() return support.tmpdir() end

---------------------------------------------------------------- definitions

t.cases("define rejects bad definitions, naming the field", {
  { name = "no name", def = { version = "1.0.0", stages = { stage("a", print) } }, pattern = "name must be" },
  { name = "bad version", def = { name = "p", version = "one", stages = { stage("a", print) } }, pattern = 'version semver: "one" is not a version' },
  { name = "bad requires", def = { name = "p", version = "1.0.0", requires = "bananas", stages = { stage("a", print) } }, pattern = "requires" },
  { name = "no stages", def = { name = "p", version = "1.0.0", stages = {} }, pattern = "stages must be a non%-empty list" },
  { name = "stage without run", def = { name = "p", version = "1.0.0", stages = { { name = "a" } } }, pattern = 'stage "a": run must be a function' },
  { name = "duplicate stage", def = { name = "p", version = "1.0.0", stages = { stage("a", print), stage("a", print) } }, pattern = 'stage "a" is defined twice' },
  { name = "unknown stage field", def = { name = "p", version = "1.0.0", stages = { stage("a", print, { tiemout = 3 }) } }, pattern = 'unknown field "tiemout"' },
  { name = "bad timeout", def = { name = "p", version = "1.0.0", stages = { stage("a", print, { timeout = -1 }) } }, pattern = "timeout must be" },
  { name = "bad retry", def = { name = "p", version = "1.0.0", stages = { stage("a", print, { retry = { attempts = 0 } }) } }, pattern = "retry must be" },
  { name = "nested parallel", def = { name = "p", version = "1.0.0", stages = { { parallel = { { parallel = { stage("a", print) } } } } } }, pattern = "do not nest" },
  { name = "bad param", def = { name = "p", version = "1.0.0", params = { x = { type = "date" } }, stages = { stage("a", print) } }, pattern = 'unknown type "date"' },
}, function(row)
  t.raises(function() pipeline.define(row.def) end, "invalid_argument", row.pattern)
end)

---------------------------------------------------------------- stages

t.case("stage outputs flow to later stages and into the result", function()
  local seen
  local r = run({
    name = "outputs", version = "1.0.0", params = { n = { type = "number", default = 2 } },
    stages = {
      stage("build", function(ctx) return { digest = "sha256:abc", n = ctx.params.n } end),
      stage("deploy", function(ctx)
        seen = { digest = ctx.outputs.build.digest, n = ctx.outputs.build.n, stage = ctx.stage, attempt = ctx.attempt,
                 id = ctx.run.id, pipeline = ctx.run.pipeline, dry = ctx.dry_run }
      end),
    },
  }, { n = "5" })
  t.eq(r.status, "succeeded")
  t.eq(seen.digest, "sha256:abc")
  t.eq(seen.n, 5)
  t.eq(seen.stage, "deploy")
  t.eq(seen.attempt, 1)
  t.eq(seen.pipeline, "outputs")
  t.eq(seen.dry, false)
  t.ok(#seen.id > 0, "ctx.run.id is set")
  t.eq(r.outputs.build.digest, "sha256:abc")
  t.eq(r.outputs.deploy, {})
end)

t.case("a parallel group runs its stages concurrently and keeps every output", function()
  local started = hoist.now()
  local r = run { name = "par", version = "1.0.0", stages = {
    { parallel = {
      stage("a", function() hoist.sleep(0.2); return { v = 1 } end),
      stage("b", function() hoist.sleep(0.2); return { v = 2 } end),
    } },
    stage("after", function(ctx) return { sum = ctx.outputs.a.v + ctx.outputs.b.v } end),
  } }
  t.eq(r.status, "succeeded")
  t.eq(r.outputs.after.sum, 3)
  t.ok(hoist.now() - started < 0.38, "two 0.2 s stages overlapped")
end)

t.case("a failing stage of a group cancels its siblings", function()
  local r = run { name = "par", version = "1.0.0", stages = {
    { parallel = {
      stage("slow", function() hoist.sleep(5) end),
      stage("bad", function() hoist.sleep(0.05); hoist.error { code = "conflict", message = "boom" } end),
    } },
    stage("never", function() error("must not run") end),
  } }
  t.eq(r.status, "failed")
  t.eq(r.error.code, "conflict")
  t.eq(r.error.details.stage, "bad")
  local status = {}
  for _, s in ipairs(r.stages) do status[s.name] = s.status end
  t.eq(status, { slow = "cancelled", bad = "failed" })
end)

t.case("a stage over its timeout fails with timeout", function()
  local r = run { name = "to", version = "1.0.0", stages = { stage("hang", function() hoist.sleep(10) end, { timeout = 0.1 }) } }
  t.eq(r.error.code, "timeout")
  t.match(r.error.message, "stage hang timed out after 0.1s")
end)

t.case("a stage's timeout may be a function of the run's parameters", function()
  local seen
  local def = { name = "to", version = "1.0.0", params = { n = { type = "number", default = 1 } }, stages = {
    stage("hang", function() hoist.sleep(10) end, { timeout = function(p) seen = p.n; return 0.05 * p.n end }) } }
  local r = run(def, { n = "3" })
  t.eq(seen, 3, "the function got the checked parameters")
  t.eq(r.error.code, "timeout")
  t.match(r.error.message, "stage hang timed out after 0.15s")
  t.match(pipeline.help(pipeline.define(def)), "hang %(timeout by the parameters%)") -- p.n is nil: it cannot say
  local fixed = { name = "to", version = "1.0.0", stages = { stage("s", print, { timeout = function() return 60 end }) } }
  t.match(pipeline.help(pipeline.define(fixed)), "s %(timeout 60s, more by the parameters%)")
  def.stages[1].timeout = function() return -1 end
  r = run(def)
  t.eq(r.error.code, "internal")
  t.match(r.error.message, "stage hang: its timeout function gave %-1, not a number of seconds > 0")
  t.raises(function() pipeline.define { name = "to", version = "1.0.0", stages = { stage("a", print, { timeout = "1m" }) } } end,
    "invalid_argument", "timeout must be a number of seconds > 0, or a function%(params%) giving one")
end)

t.cases("retries only retryable errors", {
  { name = "retryable, then success", code = "unavailable", fails = 2, attempts = 3, status = "succeeded", calls = 3 },
  { name = "throttled exhausts its attempts", code = "throttled", fails = 9, attempts = 2, status = "failed", calls = 2 },
  { name = "not retryable: one attempt", code = "invalid_argument", fails = 9, attempts = 3, status = "failed", calls = 1 },
  { name = "a plain Lua error is a bug: one attempt", lua_error = true, fails = 9, attempts = 3, status = "failed", calls = 1 },
}, function(row)
  local calls = 0
  local r = run { name = "retry", version = "1.0.0", stages = {
    stage("flaky", function(ctx)
      calls = calls + 1
      t.eq(ctx.attempt, calls)
      if calls <= row.fails then
        if row.lua_error then error("oops") end
        hoist.error { code = row.code, message = "try " .. calls }
      end
      return { calls = calls }
    end, { retry = { attempts = row.attempts, backoff = 0.01 } }),
  } }
  t.eq(r.status, row.status)
  t.eq(calls, row.calls)
  t.eq(r.stages[1].attempts, row.calls)
end)

t.case("a timed-out attempt is retried", function()
  local calls = 0
  local r = run { name = "retry", version = "1.0.0", stages = {
    stage("slow_once", function()
      calls = calls + 1
      if calls == 1 then hoist.sleep(5) end
    end, { timeout = 0.1, retry = { attempts = 2, backoff = 0 } }),
  } }
  t.eq(r.status, "succeeded")
  t.eq(calls, 2)
end)

t.case("`when` returning false skips a stage", function()
  local r = run { name = "when", version = "1.0.0", params = { go = { type = "boolean", default = false } }, stages = {
    stage("maybe", function() error("must not run") end, { when = function(ctx) return ctx.params.go end }),
  } }
  t.eq(r.status, "succeeded")
  t.eq(r.stages[1].status, "skipped")
end)

t.case("a stage that returns a non-table fails, naming the stage", function()
  local r = run { name = "ret", version = "1.0.0", stages = { stage("s", function() return "digest" end) } }
  t.eq(r.error.code, "invalid_argument")
  t.match(r.error.message, "stage s returned a string")
end)

---------------------------------------------------------------- compensations

local function changes(n, fail_at, opts)
  opts = opts or {}
  local stages = {}
  for i = 1, n do
    stages[i] = stage("s" .. i, function(ctx)
      ctx:on_rollback(opts.action or "ptest.record", { label = "c" .. i, fail = opts.bad == i })
      if i == fail_at then hoist.error { code = opts.code or "rollout_failed", message = "stage " .. i .. " failed" } end
    end)
  end
  return { name = "comp", version = "1.0.0", stages = stages }
end

t.case("compensations run in reverse order, once each, and the run ends rolled_back", function()
  undo_log = {}
  local r = run(changes(4, 4))
  t.eq(undo_log, { "c4", "c3", "c2", "c1" })
  t.eq(r.status, "rolled_back")
  t.eq(r.rolled_back, { "ptest.record (s4)", "ptest.record (s3)", "ptest.record (s2)", "ptest.record (s1)" })
  t.eq(r.error.code, "rollout_failed")
  t.eq(r.error.details.exit_code, 1)
  t.match(r.error.message, "stage s4 failed %(rolled back 4 change%(s%)%): stage 4 failed")
  t.match(r.error.where, "pipeline_test.lua:%d+$")
  local kinds = {}
  for _, e in ipairs(r.journal) do
    if e.kind:match("^compensation%.[se]") then kinds[#kinds + 1] = e.kind .. ":" .. e.id end
  end
  t.eq(kinds, { "compensation.start:4", "compensation.end:4", "compensation.start:3", "compensation.end:3",
                "compensation.start:2", "compensation.end:2", "compensation.start:1", "compensation.end:1" })
  t.eq(r.journal[#r.journal].kind, "run.end")
  t.eq(r.journal[#r.journal].status, "rolled_back")
end)

t.case("a successful run runs no compensation", function()
  undo_log = {}
  local r = run(changes(3, nil))
  t.eq(r.status, "succeeded")
  t.eq(undo_log, {})
end)

t.case("a failing compensation does not stop the others: rollback_failed, exit code 3", function()
  undo_log = {}
  local r = run(changes(3, 3, { bad = 2 }))
  t.eq(undo_log, { "c3", "c1" })
  t.eq(r.status, "rollback_failed")
  t.eq(r.left, { "ptest.record (s2)" })
  t.eq(r.error.details.exit_code, 3)
  t.match(r.error.message, "stage s3 failed %(rollback incomplete: 1 change%(s%) left, see hoist rollback [%w%-]+%): stage 3 failed")
end)

t.cases("exit codes of failed runs", {
  { name = "policy gate", code = "policy_violation", exit = 4 },
  { name = "ordinary failure", code = "tool_failed", exit = 1 },
}, function(row)
  local r = run(changes(1, 1, { code = row.code }))
  t.eq(r.error.code, row.code)
  t.eq(r.error.details.exit_code, row.exit)
end)

t.case("a failed run raises its final error unless raise = false", function()
  t.raises(function() pipeline.run(pipeline.define(changes(1, 1)), {}, { quiet = true }) end, "rollout_failed", "rolled back 1 change")
end)

t.case("on_rollback refuses unknown actions and arguments that hold a secret", function()
  local secret = hoist.secret("pw-ABCDEF-123456")
  local r = run { name = "bad", version = "1.0.0", stages = { stage("s", function(ctx) ctx:on_rollback("no.such", {}) end) } }
  t.match(r.error.message, 'unknown rollback action "no.such"')
  r = run { name = "bad", version = "1.0.0", stages = { stage("s", function(ctx) ctx:on_rollback("ptest.record", { label = secret }) end) } }
  t.match(r.error.message, "args contain a secret value")
  t.eq(undo_log[#undo_log] ~= secret, true)
end)

t.case("rollback from the journal finishes what the run could not, and skips what is done", function()
  local dir = tmpdir()
  undo_log, flaky_failures = {}, 1
  local r = run(changes(3, 3, { action = "ptest.flaky" }), {}, { state_dir = dir })
  t.eq(r.status, "rollback_failed")
  t.eq(undo_log, { "c2", "c1" }) -- c3 failed once
  local rb = pipeline.rollback { run = r.run, state_dir = dir }
  t.eq(rb.status, "rolled_back")
  t.eq(undo_log, { "c2", "c1", "c3" }, "only the pending compensation ran")
  local again = pipeline.rollback { run = r.run, state_dir = dir }
  t.eq(again.status, "nothing_to_do")
  t.eq(#undo_log, 3)
  local runs = pipeline.runs { state_dir = dir }
  t.eq(runs[1].id, r.run)
  t.eq(runs[1].status, "rolled_back")
  t.eq(runs[1].pending, 0)
  hoist.exec { "rm", "-rf", dir }
end)

t.case("rollback refuses unknown runs and dry runs with exit code 2", function()
  local dir = tmpdir()
  local e = t.raises(function() pipeline.rollback { run = "nope", state_dir = dir } end, "invalid_argument", "no journal")
  t.eq(e.details.exit_code, 2)
  local r = run(changes(1, 1), {}, { state_dir = dir, dry_run = true })
  e = t.raises(function() pipeline.rollback { run = r.run, state_dir = dir } end, "invalid_argument", "dry run")
  t.eq(e.details.exit_code, 2)
  r = run(changes(1, nil), {}, { state_dir = dir })
  t.raises(function() pipeline.rollback { run = r.run, state_dir = dir } end, "invalid_argument", "succeeded; pass %-%-force")
  hoist.exec { "rm", "-rf", dir }
end)

---------------------------------------------------------------- dry run

t.case("a dry run passes dry_run to stages, records the plan and runs no compensation", function()
  undo_log = {}
  local inside
  local r = run({ name = "dry", version = "1.0.0", stages = {
    stage("push", function(ctx)
      inside = pipeline.dry_run()
      ctx:on_rollback("ptest.record", { label = "push" })
      ctx:plan { argv = { "docker", "push", "reg/app:1" } }
      pipeline.plan { method = "PUT", url = "http://127.0.0.1:1/x", body = { a = 1 } }
    end),
    stage("fail", function() hoist.error { code = "conflict", message = "x" } end),
  } }, {}, { dry_run = true })
  t.eq(inside, true)
  t.eq(pipeline.dry_run(), hoist.run.dry_run == true, "outside the run, dry_run() is the engine's flag")
  t.eq(undo_log, {})
  t.eq(r.status, "failed")
  t.eq(#r.plan, 2)
  t.eq(r.plan[1].message, "docker push reg/app:1")
  t.eq(r.plan[1].stage, "push")
  t.eq(r.plan[2].message, "PUT http://127.0.0.1:1/x")
  t.eq(r.plan[2].stage, "push")
end)

---------------------------------------------------------------- cancellation, requires

t.case("a cancelled run still runs its compensations, then reports cancelled (exit 130)", function()
  undo_log = {}
  local task = hoist.spawn(function()
    return run { name = "cancel", version = "1.0.0", stages = {
      stage("change", function(ctx) ctx:on_rollback("ptest.record", { label = "change" }) end),
      stage("wait", function() hoist.sleep(10) end),
    } }
  end)
  hoist.sleep(0.1)
  task:cancel()
  local ok, r = pcall(task.wait, task)
  t.ok(ok, "the run returned its result: " .. tostring(r))
  t.eq(undo_log, { "change" })
  t.eq(r.status, "rolled_back")
  t.eq(r.error.code, "cancelled")
  t.eq(r.error.details.exit_code, 130)
end)

t.case("a pipeline whose requires excludes this engine fails with exit code 2", function()
  local e = t.raises(function()
    pipeline.run(pipeline.define { name = "future", version = "1.0.0", requires = ">=99", stages = { stage("s", print) } }, {}, { quiet = true })
  end, "invalid_argument", "requires hoist >=99, but this is hoist")
  t.eq(e.details.exit_code, 2)
end)

t.case("bad parameters fail before any stage runs", function()
  local ran = false
  local e = t.raises(function()
    run({ name = "p", version = "1.0.0", params = { n = { type = "number" } }, stages = { stage("s", function() ran = true end) } },
      { n = "x" })
  end, "invalid_argument", "n: expected a number")
  t.eq(e.details.exit_code, 2)
  t.eq(ran, false)
end)

t.case("help shows version, requires, parameters and stages", function()
  local text = pipeline.help(pipeline.define {
    name = "h", version = "1.2.3", requires = ">=0.1", description = "Helpful",
    params = { image = { type = "string", required = true, description = "The image" } },
    stages = { stage("build", print, { timeout = 60, retry = { attempts = 3 } }),
               { parallel = { stage("scan", print), stage("sbom", print) } } },
  }, { spec = "h@1" })
  t.match(text, "^h 1%.2%.3: Helpful\nrequires hoist >=0%.1")
  t.match(text, "Usage: hoist run h@1 ")
  t.match(text, "image %(string, required%)\n      The image")
  t.match(text, "1%. build %(timeout 60s, 3 attempts%)")
  t.match(text, "2%. in parallel:\n       %- scan\n       %- sbom")
end)

---------------------------------------------------------------- versions

t.cases("semver ranges", {
  { v = "0.1.0", range = ">=0.1 <2", want = true },
  { v = "2.0.0", range = ">=0.1 <2", want = false },
  { v = "1.9.9", range = ">=0.1 <2", want = true },
  { v = "0.0.9", range = ">=0.1 <2", want = false },
  { v = "1.4.0", range = "^1.2", want = true },
  { v = "2.0.0", range = "^1.2", want = false },
  { v = "0.2.5", range = "^0.2", want = true },
  { v = "0.3.0", range = "^0.2", want = false },
  { v = "1.2.9", range = "~1.2", want = true },
  { v = "1.3.0", range = "~1.2", want = false },
  { v = "1.2.3", range = "1.2.x", want = true },
  { v = "1.5.0", range = "1", want = true },
  { v = "2.0.0-rc.1", range = "<2", want = false },
  { v = "3.1.0", range = "1.x || >=3", want = true },
  { v = "1.0.0", range = "*", want = true },
  { v = "1.2.0", range = "> 1.1", want = true },
  { v = "1.1.5", range = ">1.1", want = false },
  { v = "1.2.0", range = "<=1.2", want = true },
}, function(row)
  t.eq(semver.satisfies(row.v, row.range), row.want, row.v .. " in " .. row.range)
end)

t.case("semver compares prereleases before releases", function()
  t.eq(semver.compare("1.0.0-rc.1", "1.0.0"), -1)
  t.eq(semver.compare("1.0.0-rc.2", "1.0.0-rc.10"), -1)
  t.eq(semver.compare("1.10.0", "1.9.0"), 1)
  t.eq(semver.newest({ "1.0.0", "1.10.0", "1.9.3" }), "1.10.0")
  t.raises(function() semver.parse("1.2.3.4") end, "invalid_argument", "more than three")
end)

t.cases("bundled pipeline versions: NAME, NAME@MAJOR, NAME@X.Y.Z", {
  { spec = "demo@1", want = "1.2.0" },
  { spec = "demo@2", want = "2.0.1" },
  { spec = "demo", want = "2.0.1" },
  { spec = "demo@1.2", want = "1.2.0" },
  { spec = "demo@1.2.0", want = "1.2.0" },
  { spec = "demo@2.0.1", want = "2.0.1" },
  { spec = "demo@1.0.0", err = "demo@1%.0%.0 is not shipped with this engine %(shipped: 1%.2%.0, 2%.0%.1%)" },
  { spec = "demo@9", err = "demo@9 is not shipped" },
  { spec = "nosuch@1", err = 'no bundled pipeline named "nosuch"' },
  { spec = "demo@@1", err = "bad pipeline name" },
}, function(row)
  if row.err then
    local e = t.raises(function() scripts.resolve(row.spec) end, "invalid_argument", row.err)
    t.eq(e.details.exit_code, 2)
  else
    local module, def = scripts.resolve(row.spec)
    t.eq(def.version, row.want)
    t.match(module, "^scripts%.demo%.v%d$")
  end
end)
