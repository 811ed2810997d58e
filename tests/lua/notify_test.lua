-- hoist.notify against tests/servers/notify_receiver.py, a local receiver that answers like
-- Slack's incoming webhooks, Teams workflow webhooks and a generic webhook and checks each body
-- against the shape the service documents (Block Kit fields and limits; the message envelope
-- and Adaptive Card basics). Channel kinds, summaries, payloads (Slack's limits, UTF-8),
-- retries (503 then 200; 429 with Retry-After), a receiver that is down, a dry run, the
-- pipeline hook (once per run, on success, failure and rollback; SIGTERM), and a scan for
-- known secrets of everything sent and logged. The container@1 cases (local target, real
-- Docker engine) are at the end and skip without it.
local t = require "hoist.test"
local notify = hoist.notify
local json = hoist.json

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local root = support.root

local R = {} -- the receiver: base URL, task, folder

local function receiver()
  if R.base then return R.base end
  R.dir = support.tmpdir("hoist-notify")
  R.task = hoist.spawn(hoist.exec, { "python3", root .. "/tests/servers/notify_receiver.py", "--port-file", R.dir .. "/port",
                                     "--max-time", "900", timeout = 1000 })
  for _ = 1, 200 do
    if support.read(R.dir .. "/port") then break end
    hoist.sleep(0.05)
  end
  local port = (support.read(R.dir .. "/port") or ""):match("%d+")
  assert(port, "the notification receiver did not write its port")
  R.base = "http://127.0.0.1:" .. port
  return R.base
end

local function received()
  return hoist.http.get(receiver() .. "/_requests").json
end

local function reset() hoist.http.get(receiver() .. "/_reset") end

-- A port where nothing listens: a receiver that is down.
local function down_url() return ("http://127.0.0.1:%d/hook/down"):format(support.free_port()) end

local FAST = { attempts = 3, backoff = 0.05, max_backoff = 0.2 }

-- A finished run as hoist.pipeline returns it, of each kind.
local function result_of(status)
  local r = {
    status = status, pipeline = "container", version = "1.1.0", run = "20261207-150000-abcd", duration = 12.5,
    stages = { { name = "build", status = "succeeded" }, { name = "push", status = "succeeded" },
               { name = "deploy", status = "succeeded" }, { name = "verify", status = "succeeded" } },
    outputs = { build = { image = "127.0.0.1:5000/app:1a2b3c" },
                push = { digest = "sha256:" .. ("ab"):rep(32), reference = "127.0.0.1:5000/app:1a2b3c@sha256:" .. ("ab"):rep(32) },
                deploy = { service = "web", url = "http://127.0.0.1:8080" },
                verify = { url = "http://127.0.0.1:8080/health", attempts = 2 } },
    rolled_back = json.array(), left = json.array(),
  }
  if status ~= "succeeded" then
    r.stages[4] = { name = "verify", status = "failed", error = { code = "rollout_failed", message = "service never answered 200\nsecond line" } }
    r.outputs.verify = nil
    local cause = { code = "rollout_failed", message = "service http://127.0.0.1:8080/health never answered 200",
                    details = { url = "http://127.0.0.1:8080/health", attempts = 16, evidence = { { status = 503, body_start = "<html>down & out</html>" } } } }
    if status ~= "failed" then r.rolled_back = json.array { "local.restore (deploy)" } end
    if status == "rollback_failed" then r.left = json.array { "local.remove (deploy)" } end
    r.error = hoist.new_error { code = "rollout_failed", message = "stage verify failed: " .. cause.message,
                                details = { stage = "verify", status = status, cause = cause } }
  end
  return r
end

---------------------------------------------------------------- channels and configuration

t.case("channels: the kind from the host or a prefix; each URL and its path become secrets", function()
  local slack = "https://hooks.slack.com/services/T0NOTIFY1/B0NOTIFY1/slacktoken0123456789"
  local teams = "https://prod-07.westeurope.logic.azure.com:443/workflows/0a1b2c/triggers/manual/paths/invoke?api-version=2016-06-01&sig=teamssig0123456789"
  local pp = "https://default0a1b.2c.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/9f/triggers/manual/paths/invoke?sig=ppsig0123456789"
  local chans = notify.channels { channels = { slack, teams, pp, "https://example.org/hook", "teams:http://127.0.0.1:1/teams/x" },
                                  webhook = "http://127.0.0.1:1/hook/y" }
  local kinds, names = {}, {}
  for i, c in ipairs(chans) do kinds[i], names[i] = c.kind, c.name end
  t.eq(kinds, { "slack", "teams", "teams", "webhook", "teams", "webhook" })
  t.eq(names[1], "slack #1 (hooks.slack.com)")
  t.eq(names[2], "teams #2 (prod-07.westeurope.logic.azure.com)")
  t.no_match(hoist.scrub("posting to " .. slack), "slacktoken0123456789")
  t.no_match(hoist.scrub("path /services/T0NOTIFY1/B0NOTIFY1/slacktoken0123456789"), "slacktoken0123456789")
  t.no_match(hoist.scrub(teams), "teamssig0123456789")
end)

t.case("a bad channel or event is refused, naming the channel by number and not by its URL", function()
  local ok, err = pcall(notify.configure, { channels = { "https://example.org/ok", "ftp://hooks.slack.com/services/T0/B0/ftpsecret99" } })
  t.ok(not ok and err.code == "invalid_argument", "refused")
  t.match(err.message, "channel 2: expected an http:// or https:// URL")
  t.no_match(tostring(err), "ftpsecret99")
  t.raises(function() notify.configure { webhook = "https://example.org/h", on = { "sucess" } } end, "invalid_argument",
    '"sucess" is not an event')
  t.raises(function() notify.configure { webhook = "https://example.org/h", colour = "red" } end, "invalid_argument", "unknown option 'colour'")
  t.eq(notify.configure { on = { "failure" } }, nil, "no channel: nothing to notify")
  t.eq(notify.from_params { notify_on = { "success" } }, nil)
end)

---------------------------------------------------------------- the summary

t.cases("the summary of a run, of each outcome", {
  { name = "succeeded", status = "succeeded", event = "success", verify = "passed", title = "container 1.1.0 succeeded" },
  { name = "failed", status = "failed", event = "failure", verify = "failed", title = "container 1.1.0 failed" },
  { name = "rolled back", status = "rolled_back", event = "rollback", verify = "failed", title = "container 1.1.0 failed and was rolled back",
    undone = { "local.restore (deploy)" } },
  { name = "rollback incomplete", status = "rollback_failed", event = "rollback", verify = "failed",
    title = "container 1.1.0 failed and was rolled back, rollback incomplete", undone = { "local.restore (deploy)" }, left = { "local.remove (deploy)" } },
}, function(row)
  local s = notify.summary(result_of(row.status), { report_url = "https://ci.example/hoist/runs/", facts = { target = "local", model = "churn" } })
  t.eq(s.event, row.event)
  t.eq(s.status, row.status)
  t.eq(s.title, row.title)
  t.eq(s.run, "20261207-150000-abcd")
  t.eq(s.image, "127.0.0.1:5000/app:1a2b3c@sha256:" .. ("ab"):rep(32), "the pushed reference")
  t.eq(s.digest, "sha256:" .. ("ab"):rep(32))
  t.eq({ s.target, s.service, s.url }, { "local", "web", "http://127.0.0.1:8080" })
  t.eq(s.facts.model, "churn")
  t.eq(s.verify.status, row.verify)
  t.eq(s.report_url, "https://ci.example/hoist/runs/20261207-150000-abcd")
  t.eq(s.rolled_back, row.undone or {})
  t.eq(s.left, row.left or {})
  if row.event == "success" then
    t.eq(s.error, nil)
    t.match(s.verify.checks[1].message, "passed http://127.0.0.1:8080/health after 2 attempt")
  else
    t.eq({ s.error.code, s.error.stage }, { "rollout_failed", "verify" })
    t.match(s.error.cause, "never answered 200")
    t.eq(s.error.evidence.attempts, 16)
    t.eq(s.error.evidence.evidence[1].status, 503)
    t.eq(s.verify.checks[1].message, "rollout_failed: service never answered 200")
  end
  local _, all = notify.event_of(result_of(row.status))
  t.eq(all.failure == true, row.event ~= "success")
end)

t.case("the report link: <base>/<run id>, or {run} replaced", function()
  t.eq(notify.summary(result_of("succeeded"), { report_url = "https://r.example/x?run={run}" }).report_url,
    "https://r.example/x?run=20261207-150000-abcd")
  t.eq(notify.summary(result_of("succeeded"), {}).report_url, nil)
end)

t.case("in GitHub Actions the summary links the workflow run", function()
  local dir = support.tmpdir("hoist-notify-gh")
  support.write(dir .. "/s.lua", 'print("CI=" .. tostring(hoist.notify.summary({ status = "succeeded", run = "r" }).ci_url))')
  local env = { GITHUB_ACTIONS = "true", GITHUB_SERVER_URL = "https://github.example/", GITHUB_REPOSITORY = "org/app",
                GITHUB_RUN_ID = "4242" }
  local r = support.run_hoist({ "run", dir .. "/s.lua", "--state-dir", dir .. "/state" }, { env = env })
  env.GITHUB_RUN_ID = nil
  local without = support.run_hoist({ "run", dir .. "/s.lua", "--state-dir", dir .. "/state" }, { env = env })
  hoist.exec { "rm", "-rf", dir }
  t.match(r.stdout, "CI=https://github.example/org/app/actions/runs/4242\n")
  t.match(without.stdout, "CI=nil\n")
end)

---------------------------------------------------------------- payloads, checked by the receiver

t.cases("each channel's payload passes the checks of the shape its service documents", {
  { name = "success" }, { name = "failure", status = "failed" }, { name = "rollback", status = "rolled_back" },
}, function(row)
  reset()
  local base = receiver()
  local cfg = { channels = { "slack:" .. base .. "/slack/services/T0/B0/x", "teams:" .. base .. "/teams/workflows/1" },
                webhook = base .. "/hook/1", report_url = "https://ci.example/runs", retry = FAST }
  local s = notify.summary(result_of(row.status or "succeeded"), cfg)
  local results = notify.send(cfg, s)
  t.eq(#results, 3)
  for _, r in ipairs(results) do t.ok(r.ok, r.channel .. ": " .. tostring(r.error)) end
  t.eq({ results[1].status, results[2].status, results[3].status }, { 200, 202, 200 })
  local seen = received()
  t.eq(#seen, 3)
  for _, q in ipairs(seen) do t.eq(q.problems, {}, q.path) end
  local slack, teams, hook = seen[1].json, seen[2].json, seen[3].json
  t.match(slack.text, s.title, "the fallback text names the outcome")
  t.eq(slack.blocks[1].type, "header")
  local card = teams.attachments[1].content
  t.eq(teams.attachments[1].contentType, "application/vnd.microsoft.card.adaptive")
  t.eq({ card.type, card.version }, { "AdaptiveCard", "1.4" })
  t.eq(card.actions[1], { type = "Action.OpenUrl", title = "Run report", url = "https://ci.example/runs/20261207-150000-abcd" })
  t.eq({ hook.schema, hook.event, hook.run }, { "hoist.notify/v1", s.event, s.run })
  local texts = json.encode(slack) .. json.encode(card)
  if s.error then
    t.match(texts, "rollout_failed")
    t.match(texts, "never answered 200")
    t.match(texts, "attempts: 16", "the evidence")
    t.eq(hook.error.evidence.evidence[1].body_start, "<html>down & out</html>")
    t.match(json.encode(slack), "&lt;html&gt;down &amp; out", "Slack markup escaped")
  end
  if s.event == "rollback" then t.match(texts, "local.restore %(deploy%)") end
end)

t.case("Slack's limits hold for a long failure: sections of at most 3000 characters, cut between characters, bytes that are not UTF-8 replaced", function()
  reset()
  local r = result_of("rolled_back")
  r.error.message = "x" .. ("é"):rep(5000) -- cut anywhere but inside a character: JSON is UTF-8
  r.error.details.cause.message = "y" .. ("↩"):rep(3000)
  r.error.details.cause.details = { logs = { ["pod/app"] = ("log line\n"):rep(2000) }, reason = "CrashLoopBackOff",
                                    body_start = "binary \255\254 then \237\160\128 (a surrogate) and \192\128 (overlong), ok é" }
  local cfg = { slack = receiver() .. "/slack/long", teams = receiver() .. "/teams/long", webhook = receiver() .. "/hook/long", retry = FAST }
  local results = notify.send(cfg, notify.summary(r, cfg))
  for _, res in ipairs(results) do t.ok(res.ok, res.channel .. ": " .. tostring(res.error)) end
  local seen = received()
  t.eq(#seen, 3)
  t.eq(seen[3].json.error.evidence.body_start, "binary ?? then ??? (a surrogate) and ?? (overlong), ok é",
    "bytes that are not UTF-8 become ?")
  for _, q in ipairs(received()) do t.eq(q.problems, {}, q.path) end
end)

---------------------------------------------------------------- delivery

t.case("503 then 200: delivered on the second try", function()
  reset()
  local cfg = { webhook = receiver() .. "/hook/flaky?fail=1&fail_status=503", retry = FAST }
  local results = notify.send(cfg, notify.summary(result_of("succeeded"), cfg))
  t.eq({ results[1].ok, results[1].status, results[1].attempts }, { true, 200, 2 })
  local seen = received()
  t.eq(#seen, 2)
  t.eq({ seen[1].status, seen[2].status }, { 503, 200 })
  t.eq(seen[1].body, seen[2].body, "the same body both times")
end)

t.case("a 400 is not retried: a warning, and the other channels still get theirs", function()
  reset()
  local cfg = { channels = { receiver() .. "/nowhere", receiver() .. "/hook/after" }, retry = FAST }
  local results = notify.send(cfg, notify.summary(result_of("failed"), cfg))
  t.eq({ results[1].ok, results[1].status, results[1].attempts }, { false, 400, 1 })
  t.match(results[1].error, "HTTP 400")
  t.eq({ results[2].ok, results[2].status }, { true, 200 })
end)

t.case("a receiver that is down: not delivered, nothing raised", function()
  local cfg = { webhook = down_url(), retry = { attempts = 2, backoff = 0.05 } }
  local results = notify.send(cfg, notify.summary(result_of("failed"), cfg))
  t.eq({ results[1].ok, results[1].attempts }, { false, 2 })
  t.match(results[1].error, "^unavailable")
end)

t.case("a dry run sends nothing: each channel is a plan step", function()
  reset()
  local def = hoist.pipeline.define { name = "notify-dry", version = "1.0.0", params = {},
    notify = { webhook = receiver() .. "/hook/dry" }, stages = { { name = "s", run = function() end } } }
  local r = hoist.pipeline.run(def, {}, { dry_run = true, quiet = true, state_dir = support.tmpdir() })
  t.eq(#received(), 0)
  t.eq(r.notified[1].planned, true)
  local last = r.plan[#r.plan]
  t.eq({ last.action, last.stage }, { "notify.webhook", "notify" })
end)

---------------------------------------------------------------- the pipeline hook

hoist.pipeline.action("notifytest.undo", function() end)

local function hook_run(stages, params, extra)
  local def = hoist.pipeline.define {
    name = "notify-hook", version = "1.0.0", params = notify.with_params {},
    notify = function(p) return notify.from_params(p, extra or { retry = FAST }) end,
    stages = stages }
  return hoist.pipeline.run(def, params, { quiet = true, raise = false, state_dir = support.tmpdir() })
end

local ok_stage = { name = "deploy", run = function() return { digest = "sha256:" .. ("cd"):rep(32), url = "http://svc.example" } end }
local undo_stage = { name = "deploy", run = function(ctx) ctx:on_rollback("notifytest.undo", {}); return {} end }
local bad_stage = { name = "verify", run = function() hoist.error { code = "rollout_failed", message = "health answered 500",
                                                                  details = { status = 500, body_start = "boom" } } end }

t.cases("the pipeline notifies once per run, on success, failure and rollback", {
  { name = "success", stages = { ok_stage }, status = "succeeded", event = "success" },
  { name = "failure", stages = { ok_stage, bad_stage }, status = "failed", event = "failure" },
  { name = "failed and rolled back", stages = { undo_stage, bad_stage }, status = "rolled_back", event = "rollback" },
  { name = "a rollback is a failure too", stages = { undo_stage, bad_stage }, on = "failure", status = "rolled_back", event = "rollback" },
  { name = "not an event asked for", stages = { ok_stage, bad_stage }, on = "success", status = "failed", sent = 0 },
  { name = "only rollbacks, a plain failure", stages = { ok_stage, bad_stage }, on = "rollback", status = "failed", sent = 0 },
}, function(row)
  reset()
  local r = hook_run(row.stages, { notify = { "webhook:" .. receiver() .. "/hook/run" }, notify_on = row.on })
  t.eq(r.status, row.status)
  local seen = received()
  t.eq(#seen, row.sent or 1, "notifications sent")
  if (row.sent or 1) == 0 then return end
  local doc = seen[1].json
  t.eq({ doc.event, doc.status, doc.run, doc.pipeline }, { row.event, row.status, r.run, "notify-hook" })
  if row.event == "success" then
    t.eq({ doc.digest, doc.url }, { "sha256:" .. ("cd"):rep(32), "http://svc.example" })
  else
    t.eq({ doc.error.code, doc.error.stage, doc.error.cause }, { "rollout_failed", "verify", "health answered 500" })
    t.eq(doc.error.evidence, { status = 500, body_start = "boom" })
  end
  if row.event == "rollback" then t.eq(doc.rolled_back, { "notifytest.undo (deploy)" }) end
end)

t.case("the GitHub step summary lists the channels and what became of each", function()
  reset()
  local r = hook_run({ ok_stage }, { notify = { "webhook:" .. receiver() .. "/hook/md", down_url() } }, { retry = { attempts = 1 } })
  local md = require("hoist.pipeline.report").markdown(r)
  t.match(md, "#### Notified\n%- ✅ webhook #1 %(127%.0%.0%.1%)\n%- ❌ webhook #2 %(127%.0%.0%.1%): unavailable")
end)

t.case("a pipeline whose notify parameters name no channel runs and notifies no one", function()
  reset()
  local r = hook_run({ ok_stage }, { notify_on = { "success" } })
  t.eq(r.status, "succeeded", r.error and r.error.message)
  t.eq(r.notified, nil)
  t.eq(#received(), 0)
end)

t.case("a notification that cannot be delivered leaves the run's outcome as it was", function()
  local r = hook_run({ ok_stage }, { notify_webhook = { down_url() } }, { retry = { attempts = 1 } })
  t.eq(r.status, "succeeded")
  t.eq(r.error, nil)
  t.eq(r.notified[1].ok, false)
  local failed = hook_run({ undo_stage, bad_stage }, { notify_webhook = { down_url() } }, { retry = { attempts = 1 } })
  t.eq(failed.status, "rolled_back")
  t.eq(failed.error.code, "rollout_failed", "the run's own error, not the notification's")
end)

t.case("a bad notification URL stops the run before anything runs (exit code 2)", function()
  local ran = false
  local def = hoist.pipeline.define { name = "notify-bad", version = "1.0.0", params = notify.with_params {},
    notify = notify.from_params, stages = { { name = "s", run = function() ran = true end } } }
  local ok, err = pcall(hoist.pipeline.run, def, { notify = { "hooks.slack.com/services/T0/B0/nohttpsecret" } },
    { quiet = true, state_dir = support.tmpdir() })
  t.ok(not ok, "refused")
  t.eq(err.details.exit_code, 2)
  t.ok(not ran, "no stage ran")
  t.no_match(tostring(err), "nohttpsecret")
end)

---------------------------------------------------------------- a child process: Retry-After and every byte logged

-- A pipeline run by `hoist run` in its own process, with debug JSON logs: what it logs, the
-- files of its run and what the receiver got are scanned for the secrets.
local CHILD = [[
local notify = hoist.notify
hoist.pipeline.action("notifychild.undo", function() end)
return hoist.pipeline.define {
  name = "notify-child", version = "1.0.0",
  params = notify.with_params { token = { type = "string", secret = true, env = "NOTIFY_TEST_TOKEN" } },
  notify = function(p) return notify.from_params(p, { retry = { attempts = 3, backoff = 0, max_backoff = 0 } }) end,
  stages = {
    { name = "deploy", run = function(ctx)
        ctx:on_rollback("notifychild.undo", {})
        return { url = "http://svc.example/?t=" .. ctx.params.token }
      end },
    { name = "verify", run = function(ctx)
        hoist.error { code = "rollout_failed", message = "the service echoed " .. ctx.params.token,
                      details = { body_start = "token=" .. ctx.params.token, hook = ctx.params.notify_slack[1] } }
      end },
  },
}
]]

t.case("Retry-After is honoured, and no secret is in anything sent or logged", function()
  reset()
  local dir = support.tmpdir("hoist-notify-child")
  local file = dir .. "/pipeline.lua"
  support.write(file, CHILD)
  local token = "tok-" .. ("%x"):format(math.random(0x10000000, 0x7fffffff)) .. "-secret"
  local slack_token = "slk" .. ("%x"):format(math.random(0x10000000, 0x7fffffff)) .. "webhooktoken"
  local slack = receiver() .. "/slack/services/T0CHILD/B0CHILD/" .. slack_token .. "?fail=1&fail_status=429&retry_after=1"
  local r = support.run_hoist({ "run", file, "--state-dir", dir .. "/state", "--no-color", "--log-level", "debug", "--log-format", "json",
                                "--set", "notify_report_url=https://ci.example/runs" },
    { env = { NOTIFY_TEST_TOKEN = token, HOIST_NOTIFY_SLACK = slack, HOIST_NOTIFY_TEAMS = receiver() .. "/teams/child" },
      timeout = 120 })
  t.eq(r.code, 1, r.stderr)
  local retry
  for line in r.stderr:gmatch("[^\n]+") do
    local ok, ev = pcall(json.decode, line)
    if ok and type(ev) == "table" and ev.kind == "http.retry" then retry = ev.fields end
  end
  t.ok(retry, "an http.retry event")
  t.eq({ retry.reason, retry.wait }, { "HTTP 429", 1 }, "waited what Retry-After said (the computed backoff is 0)")
  local seen = received()
  t.eq(#seen, 3, "429, then 200 to Slack; 202 from Teams")
  t.eq({ seen[1].status, seen[2].status, seen[3].status }, { 429, 200, 202 })
  for _, q in ipairs(seen) do t.eq(q.problems, {}, q.path) end
  t.eq(seen[2].json.blocks[1].text.text, "↩️ notify-child 1.0.0 failed and was rolled back")
  local everything = { r.stdout, r.stderr }
  for _, q in ipairs(seen) do everything[#everything + 1] = q.body end
  local files = hoist.exec({ "sh", "-c", "cat " .. dir .. "/state/runs/*/*" }).stdout
  everything[#everything + 1] = files
  t.ok(#files > 0, "the run's files were read")
  local all = table.concat(everything, "\n")
  t.no_match(all, token, "the secret parameter")
  t.no_match(all, slack_token, "the Slack webhook's token")
  t.no_match(all, "/T0CHILD/B0CHILD/", "the Slack webhook's path")
  t.match(seen[2].body, "the service echoed %*%*%*", "the message was sent, scrubbed")
  hoist.fs.remove(dir, { recursive = true })
end, { timeout = 180 })

t.case("a run stopped by SIGTERM is rolled back, then notified with one try (exit 130)", function()
  reset()
  local dir = support.tmpdir("hoist-notify-term")
  support.write(dir .. "/pipeline.lua", [[
hoist.pipeline.action("notifyterm.undo", function() end)
return hoist.pipeline.define { name = "notify-term", version = "1.0.0", params = hoist.notify.with_params {},
  notify = hoist.notify.from_params,
  stages = { { name = "deploy", run = function(ctx) ctx:on_rollback("notifyterm.undo", {}) end },
             { name = "verify", run = function() io.stdout:write("WAITING\n"); io.stdout:flush(); hoist.sleep(60) end } } }
]])
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", 'echo $$ > "$1"; exec "$2" run --no-color --state-dir "$3" "$4" > "$5" 2>&1', "sh",
                        dir .. "/pid", support.hoist_bin(), dir .. "/state", dir .. "/pipeline.lua", dir .. "/log",
                        env = { HOIST_NOTIFY_WEBHOOK = receiver() .. "/hook/term?fail=1" }, timeout = 120 }
  end)
  for _ = 1, 600 do
    if (support.read(dir .. "/log") or ""):find("WAITING", 1, true) or task:status() ~= "running" then break end
    hoist.sleep(0.05)
  end
  hoist.exec { "kill", "-TERM", support.must_read(dir .. "/pid"):match("%d+"), check = true }
  local r = task:wait()
  local log = support.read(dir .. "/log") or ""
  hoist.exec { "rm", "-rf", dir }
  t.eq(r.code, 130, log)
  local seen = received()
  t.eq(#seen, 1, "one try only, as the run was cancelled: " .. log)
  t.eq(seen[1].status, 503)
  t.match(log, "could not notify webhook #1 %(127%.0%.0%.1%) of rollback %(HTTP 503")
  local doc = seen[1].json
  t.eq({ doc.event, doc.status, doc.error.code, doc.error.stage }, { "rollback", "rolled_back", "cancelled", "verify" })
  t.eq(doc.rolled_back, { "notifyterm.undo (deploy)" })
end, { timeout = 180 })

---------------------------------------------------------------- container@1 with the local target

local BASE = os.getenv("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = os.getenv("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local C = { service = "hoist-notify-" .. ID, repo = REGISTRY .. "/hoist-notify-" .. ID .. "/app" }

local function container_run(version, healthy, notify_urls)
  C.state = C.state or support.tmpdir("hoist-notify-ct")
  C.port = C.port or support.free_port()
  local argv = support.run_argv("container@1", C.state, {
    image = C.repo, context = root .. "/examples/app", name = C.service, port = C.port, tag = version,
    build_args = ("BASE_IMAGE=%s,VERSION=%s,HEALTHY=%s"):format(BASE, version, healthy and "true" or "false"),
    verify_timeout = 4, drain = 0, notify_report_url = "https://ci.example/runs",
  })
  argv.env = { HOIST_TRIVY = root .. "/tests/tools/trivy", HOIST_TRIVY_FIXTURE = root .. "/tests/fixtures/trivy/hoist-clean.json",
               HOIST_NOTIFY = table.concat(notify_urls, ",") }
  argv.timeout = 600
  return hoist.exec(argv)
end

local function show(r) return ("exit %d\n--- stdout\n%s\n--- stderr\n%s"):format(r.code, r.stdout, r.stderr) end

t.case("container@1 notifies Slack, Teams and a webhook of a deploy that succeeded; a receiver down is a warning", function()
  support.need_docker("container@1 notifications")
  reset()
  local r = container_run("v1", true, { "slack:" .. receiver() .. "/slack/ct", "teams:" .. receiver() .. "/teams/ct",
                                        down_url(), "webhook:" .. receiver() .. "/hook/ct" })
  t.eq(r.code, 0, show(r))
  t.match(r.stderr, "could not notify webhook #3 %(127%.0%.0%.1%) of success")
  t.match(r.stderr, "outcome is unchanged")
  t.match(r.stderr, "Notified\n +✓ slack #1 %(127%.0%.0%.1%)\n +✓ teams #2 %(127%.0%.0%.1%)\n +✗ webhook #3 %(127%.0%.0%.1%): unavailable",
    "the summary block lists the channels")
  local seen = received()
  t.eq(#seen, 3, show(r))
  for _, q in ipairs(seen) do t.eq(q.problems, {}, q.path) end
  local doc = seen[3].json
  t.eq({ doc.event, doc.status, doc.target, doc.service }, { "success", "succeeded", "local", C.service })
  t.match(doc.digest, "^sha256:%x+$")
  t.match(doc.image, "@sha256:")
  t.eq(doc.url, ("http://127.0.0.1:%d"):format(C.port))
  t.eq(doc.verify.status, "passed")
  t.match(doc.report_url, "^https://ci.example/runs/%d+%-")
end, { timeout = 600 })

t.case("container@1 notifies a failed version with its error and what was rolled back", function()
  support.need_docker("container@1 notifications")
  if not C.state then t.skip("the first deploy did not run") end
  reset()
  local r = container_run("v2", false, { "webhook:" .. receiver() .. "/hook/ct", "slack:" .. receiver() .. "/slack/ct" })
  t.eq(r.code, 1, show(r))
  local seen = received()
  t.eq(#seen, 2, show(r))
  for _, q in ipairs(seen) do t.eq(q.problems, {}, q.path) end
  local doc = seen[1].json
  t.eq({ doc.event, doc.status, doc.target }, { "rollback", "rolled_back", "local" })
  t.ok(doc.error and doc.error.code and doc.error.message, "the error")
  t.ok(#doc.rolled_back > 0, "what was rolled back")
  t.ok(doc.error.evidence ~= nil, "the evidence: " .. json.encode(doc.error))
  t.eq({ doc.error.stage, doc.verify.status, doc.verify.checks[1].stage }, { "deploy", "failed", "deploy" })
  t.match(doc.error.message, "did not become healthy")
  t.eq(doc.error.evidence.check.last.status, 404, "the failed check's last answer")
  t.match(doc.error.evidence.logs, "version v2 listening", "the container's last log lines")
  local slack = json.encode(seen[2].json)
  t.match(seen[2].json.text, "failed and was rolled back")
  t.match(slack, "status 404, expected 200")
  t.match(slack, "version v2 listening")
  t.match(slack, "local.remove_candidate %(deploy%)")
end, { timeout = 600 })

t.case("notify: clean up", function()
  if C.state then
    pcall(function() require("hoist.targets.local").remove { service = C.service, state_dir = C.state } end)
    for _, tag in ipairs { "v1", "v2" } do pcall(hoist.docker.rmi, { image = C.repo .. ":" .. tag, force = true, missing_ok = true }) end
    hoist.exec { "rm", "-rf", C.state }
  end
  if R.task then R.task:cancel() end
  if R.dir then hoist.exec { "rm", "-rf", R.dir } end
end)
