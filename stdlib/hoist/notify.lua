--- hoist.notify: tells people how a run ended. Slack incoming webhooks (text + Block Kit
--- blocks), Microsoft Teams workflow webhooks (an Adaptive Card in the `attachments`
--- envelope) and a generic JSON webhook (`hoist.notify/v1`), on success, failure and rollback,
--- with the run's summary: pipeline and run, image and digest, target and URL, the verify
--- result, the failure's code, message and evidence, what was rolled back, a report link.
--- Sent over hoist.http with its retries (429, 5xx, no answer; Retry-After honoured); every
--- field is scrubbed of registered secrets, the webhook URLs are secrets themselves. A
--- notification that cannot be delivered is logged as a warning and never changes the run's
--- outcome. A pipeline turns it on with its `notify` field (hoist.pipeline.define);
--- container@1 and the examples with the `notify*` parameters. Reference: docs/notify.md.
local http = require "hoist.http"
local json = require "hoist.json"
local util = require "hoist.util"
local core = require "hoist.native.core"
local payloads = require "hoist.notify.payloads"
local ci = require "hoist.ci"

local M = {}

local EVENTS = { "success", "failure", "rollback" }
local KINDS = { slack = true, teams = true, webhook = true }

--- The schema name of the generic webhook's JSON document; a change that is not backwards
--- compatible gets a new one.
M.schema = "hoist.notify/v1"

-- Delivery: few tries, short waits. A notification is not worth holding a finished run (or
-- a SIGTERM'd one) for minutes; a Retry-After beyond 30 s is capped to it.
M.defaults = { timeout = 10, retry = { attempts = 4, backoff = 0.5, max_backoff = 8, max_retry_after = 30 },
               cancelled_timeout = 5 }

---@class hoist.NotifyChannel
---@field kind "slack"|"teams"|"webhook"
---@field url string the webhook URL (a registered secret)
---@field name string how logs name it: kind, number and host, never the URL

---@class hoist.NotifyConfig
---@field channels? (string|hoist.NotifyChannel)[] URLs (kind told by host, or by a "slack:", "teams:", "webhook:" prefix) or {kind=, url=}
---@field slack? string|string[] Slack incoming webhook URL(s)
---@field teams? string|string[] Teams workflow webhook URL(s)
---@field webhook? string|string[] generic JSON webhook URL(s)
---@field on? string[] events that send: "success", "failure", "rollback" (default all)
---@field report_url? string base URL of run reports: the link is <base>/<run id>, or "{run}" in it replaced
---@field facts? table|fun(result: hoist.PipelineResult): table image=, digest=, target=, service=, url=, and any other facts
---@field verify_stages? string[] the stages whose result is the "verify" result (default {"verify"})
---@field timeout? number seconds per request (default 10)
---@field retry? hoist.HttpRetry tries and backoff (default 4 tries, 0.5 s doubling, Retry-After capped at 30 s)

---@class hoist.NotifySummary
---@field event "success"|"failure"|"rollback"
---@field status string the run's status: succeeded, failed, rolled_back, rollback_failed
---@field title string one line
---@field pipeline string
---@field version string
---@field run string the run id
---@field duration? number seconds
---@field dry_run boolean
---@field image? string
---@field digest? string
---@field target? string
---@field service? string
---@field url? string where the service answers
---@field verify {status: string, checks: {stage: string, status: string, message: string}[]}
---@field error? {code: string, message: string, stage?: string, cause?: string, evidence?: table}
---@field rolled_back string[] the compensations that ran ("action (stage)")
---@field left string[] those that failed: `hoist rollback <run>` finishes them
---@field report_url? string
---@field ci_url? string the GitHub Actions run's page, when the run is one's step
---@field facts table every other fact the pipeline gave

---@class hoist.NotifyResult
---@field channel string the channel's name (kind, number, host)
---@field ok boolean delivered (2xx)
---@field status? integer the last HTTP status
---@field attempts? integer
---@field error? string why it was not delivered (scrubbed)

---------------------------------------------------------------- channels

-- Hosts of the services, to tell a URL's kind without a prefix. Teams workflow webhooks are
-- Power Automate (Logic Apps) trigger URLs; *.webhook.office.com are the retired Office 365
-- connectors, which take the same card envelope.
local function kind_of_host(host)
  host = host:lower()
  if host == "hooks.slack.com" or host:match("%.slack%.com$") then return "slack" end
  for _, suffix in ipairs { "%.logic%.azure%.com$", "%.powerplatform%.com$", "%.powerautomate%.com$",
                            "^api%.powerautomate%.com$", "^flow%.microsoft%.com$", "%.webhook%.office%.com$" } do
    if host:match(suffix) then return "teams" end
  end
  return "webhook"
end

-- The host of an http(s) URL (no user, no port), nil for anything else.
local function host_of(url)
  local authority = url:match("^[Hh][Tt][Tt][Pp][Ss]?://([^/?#]+)")
  if not authority then return nil end
  local host = authority:gsub("^.*@", ""):gsub(":%d*$", "")
  return host ~= "" and host or nil
end

local function bad(message, details) util.fail("invalid_argument", "hoist.notify: " .. message, details) end

-- Registers the URL, and its path and query alone, as secrets: a Slack webhook URL is its
-- token, and a log line that shows only the path must not show it either.
local function register(url)
  hoist.secret(url)
  local rest = url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+([/?].+)$")
  if rest and #rest >= 8 then hoist.secret(rest) end
end

local function channel(spec, n)
  local kind, url
  if type(spec) == "table" then
    kind, url = spec.kind, spec.url
  elseif type(spec) == "string" then
    local prefix, rest = spec:match("^(%a+):([Hh][Tt][Tt][Pp][Ss]?://.*)$")
    if prefix and KINDS[prefix:lower()] then kind, url = prefix:lower(), rest else url = spec end
  end
  if type(url) ~= "string" then bad(("channel %d: expected a URL or {kind=, url=}"):format(n)) end
  register(url) -- first: an error below must not print it
  if spec ~= url and type(spec) == "string" then hoist.secret(spec) end
  local host = host_of(url)
  if not host then bad(("channel %d: expected an http:// or https:// URL"):format(n), { channel = n }) end
  kind = kind or kind_of_host(host)
  if not KINDS[kind] then bad(("channel %d: kind must be slack, teams or webhook, got %q"):format(n, tostring(kind))) end
  return { kind = kind, url = url, name = ("%s #%d (%s)"):format(kind, n, host) }
end

local function list_of(v)
  if v == nil then return {} end
  if type(v) == "string" then return { v } end
  return v
end

--- The channels of a configuration: its `channels`, then `slack`, `teams` and `webhook`,
--- each URL registered as a secret and checked (http or https). Raises invalid_argument
--- naming the channel by number, never by its URL.
---@param cfg hoist.NotifyConfig
---@return hoist.NotifyChannel[]
function M.channels(cfg)
  local out = {}
  for _, spec in ipairs(list_of(cfg.channels)) do out[#out + 1] = channel(spec, #out + 1) end
  for _, kind in ipairs { "slack", "teams", "webhook" } do
    for _, url in ipairs(list_of(cfg[kind])) do
      if type(url) ~= "string" then bad(("%s: expected URL strings"):format(kind)) end
      out[#out + 1] = channel({ kind = kind, url = url }, #out + 1)
    end
  end
  return out
end

local config_spec = {
  channels = "table", slack = "string|table", teams = "string|table", webhook = "string|table",
  on = { type = "table" }, report_url = { type = "string", pattern = "https?://.+", hint = "an http(s) URL" },
  facts = "table|function", verify_stages = "table", timeout = { type = "number", min = 0 },
  retry = "table", _checked = "boolean",
}

--- Checks a configuration (option names and types, the events, the URLs) and returns it
--- ready for hoist.notify.run_finished: channels resolved, URLs registered as secrets.
--- Returns nil when it has no channel: nothing to notify.
---@param cfg hoist.NotifyConfig
---@return hoist.NotifyConfig|nil
function M.configure(cfg)
  if cfg == nil then return nil end
  if type(cfg) ~= "table" then bad("expected a configuration table") end
  if cfg._checked then return cfg end
  -- the URLs first: an error about another option must not come before they are secrets
  local channels = M.channels(cfg)
  util.check_opts("hoist.notify", cfg, config_spec)
  local on = {}
  for _, e in ipairs(cfg.on or EVENTS) do
    local known = false
    for _, x in ipairs(EVENTS) do known = known or x == e end
    if not known then bad(("on: %q is not an event (success, failure, rollback)"):format(tostring(e))) end
    on[e] = true
  end
  if #channels == 0 then return nil end
  local out = {}
  for k, v in pairs(cfg) do out[k] = v end
  out.channels, out.on_set, out._checked = channels, on, true
  return out
end

---------------------------------------------------------------- the summary

local MAX_TEXT = 2000

-- A string for a payload: scrubbed of every registered secret, valid UTF-8, cut to `max` bytes.
local function clean(v, max)
  if v == nil then return nil end
  return payloads.cut(payloads.valid_utf8(core.scrub(tostring(v))), max or MAX_TEXT)
end

-- A JSON-safe, scrubbed and bounded copy of what an error's details hold (the evidence):
-- strings cut, lists of at most 20 items, 6 levels, functions and the like left out.
local function evidence_copy(v, depth)
  local t = type(v)
  if t == "string" then return clean(v) end
  if t == "number" then return (v ~= v or v == math.huge or v == -math.huge) and tostring(v) or v end
  if t == "boolean" then return v end
  if t ~= "table" or depth > 6 then return nil end
  if v == json.null then return v end
  local out, n = {}, 0
  local is_list = #v > 0 or json.kind(v) == "array"
  if is_list then
    for i = 1, math.min(#v, 20) do out[#out + 1] = evidence_copy(v[i], depth + 1) end
    return json.array(out)
  end
  for k, x in pairs(v) do
    if type(k) == "string" and k ~= "traceback" then
      out[payloads.valid_utf8(k)] = evidence_copy(x, depth + 1)
      n = n + 1
    end
  end
  return n > 0 and out or nil
end

--- The event a run's result stands for, and every event it is: a run that succeeded is a
--- success; one that failed a failure; one that failed and undid changes (rolled_back, or
--- rollback_failed when some undo failed) a rollback, and a failure too.
---@param result hoist.PipelineResult
---@return "success"|"failure"|"rollback" event
---@return table<string, boolean> all
function M.event_of(result)
  if result.status == "succeeded" then return "success", { success = true } end
  if result.status == "rolled_back" or result.status == "rollback_failed" then
    return "rollback", { failure = true, rollback = true }
  end
  return "failure", { failure = true }
end

local FACT_KEYS = { "image", "digest", "target", "service", "url" }

-- Facts found in the stages' outputs, in stage order, the first of each kind: what every
-- pipeline's stages tend to return (image/reference, digest, service, url).
local function facts_from_outputs(result, skip)
  local found = {}
  for _, st in ipairs(result.stages or {}) do
    local o = not skip[st.name] and (result.outputs or {})[st.name]
    if type(o) == "table" then
      -- a pushed reference (repository:tag@digest) says more than a built image's tag
      if found.reference == nil and type(o.reference) == "string" then found.reference = o.reference end
      if found.image == nil and type(o.image) == "string" then found.image = o.image end
      if found.digest == nil and type(o.digest) == "string" and o.digest:match("^sha256:") then found.digest = o.digest end
      for _, k in ipairs { "service", "url", "target" } do
        if found[k] == nil and type(o[k]) == "string" then found[k] = o[k] end
      end
    end
  end
  found.image, found.reference = found.reference or found.image, nil
  return found
end

local function first_line(s) return (tostring(s or ""):match("^[^\n]*")) end

-- The verify result: each verify stage's status and a line saying why.
local function verify_of(result, stages)
  local wanted, checks = {}, json.array()
  for _, name in ipairs(stages) do wanted[name] = true end
  local status = "not run"
  for _, st in ipairs(result.stages or {}) do
    if wanted[st.name] then
      local o, message = (result.outputs or {})[st.name] or {}, st.status
      if st.status == "succeeded" then
        message = o.planned and "planned (dry run)" or ("passed" .. (o.url and (" " .. o.url) or "")
          .. (o.attempts and (" after %d attempt(s)"):format(o.attempts) or ""))
      elseif st.error then
        message = ("%s: %s"):format(tostring(st.error.code), first_line(st.error.message))
      end
      checks[#checks + 1] = { stage = st.name, status = st.status, message = clean(message) }
      if st.status == "failed" or st.status == "cancelled" then status = "failed"
      elseif status ~= "failed" and st.status == "succeeded" then status = "passed" end
    end
  end
  return { status = status, checks = checks }
end

local TITLE = { success = "succeeded", failure = "failed", rollback = "failed and was rolled back" }

local function report_link(base, run)
  if not base then return nil end
  if base:find("{run}", 1, true) then return (base:gsub("{run}", run)) end
  return base:gsub("/+$", "") .. "/" .. run
end

--- The summary of a finished run, as every channel shows it: the event, the pipeline and
--- run, image, digest, target, service and URL (from `cfg.facts`, else found in the
--- stages' outputs), the verify result, the error with its evidence, what was rolled back
--- and the report link. Every string in it is scrubbed of registered secrets.
---@param result hoist.PipelineResult
---@param cfg? hoist.NotifyConfig
---@return hoist.NotifySummary
function M.summary(result, cfg)
  cfg = cfg or {}
  local event = M.event_of(result)
  local verify_stages = cfg.verify_stages or { "verify" }
  local skip = {}
  for _, name in ipairs(verify_stages) do skip[name] = true end
  local facts = facts_from_outputs(result, skip)
  local given = cfg.facts
  if type(given) == "function" then
    local ok, f = util.try(given, result)
    if ok and type(f) == "table" then given = f
    else
      if not ok then hoist.log.warn("notify: the pipeline's facts function failed: " .. clean(tostring(f), 500)) end
      given = nil
    end
  end
  local extra = {}
  for k, v in pairs(given or {}) do
    if type(k) == "string" and v ~= nil then facts[k] = v end
  end
  local s = {
    event = event, status = result.status, pipeline = clean(result.pipeline or "?"), version = clean(result.version or ""),
    run = clean(result.run or ""), duration = result.duration, dry_run = result.dry_run == true,
    verify = verify_of(result, verify_stages), rolled_back = json.array(), left = json.array(),
    report_url = clean(report_link(cfg.report_url, result.run or "")), ci_url = clean(ci.run_url()),
  }
  for _, k in ipairs(FACT_KEYS) do s[k] = clean(facts[k]) end
  for k, v in pairs(facts) do
    local is_key = false
    for _, f in ipairs(FACT_KEYS) do is_key = is_key or f == k end
    if not is_key then extra[k] = evidence_copy(v, 0) end
  end
  s.facts = json.object(extra)
  for i, l in ipairs(result.rolled_back or {}) do s.rolled_back[i] = clean(l) end
  for i, l in ipairs(result.left or {}) do s.left[i] = clean(l) end
  local e = result.error
  if e then
    local d = type(e.details) == "table" and e.details or {}
    local cause = type(d.cause) == "table" and d.cause or {}
    s.error = { code = clean(cause.code or e.code), message = clean(e.message, 3000), stage = clean(d.stage),
                cause = clean(cause.message, 3000), evidence = evidence_copy(cause.details, 0) }
  end
  s.title = clean(("%s %s %s%s"):format(s.pipeline, s.version, TITLE[event], s.dry_run and " (dry run)" or ""))
  if result.status == "rollback_failed" then s.title = s.title .. ", rollback incomplete" end
  return s
end

---------------------------------------------------------------- payloads


--- The JSON body a channel of `kind` gets for a summary: Slack `{text, blocks}`, Teams
--- `{type = "message", attachments = {{contentType, content = <AdaptiveCard>}}}`, webhook
--- the summary with `schema = "hoist.notify/v1"`.
---@param kind "slack"|"teams"|"webhook"
---@param summary hoist.NotifySummary
---@return table
function M.payload(kind, summary)
  if not KINDS[kind] then bad(("payload: kind must be slack, teams or webhook, got %q"):format(tostring(kind))) end
  return payloads[kind](summary, M.schema)
end

---------------------------------------------------------------- sending

local function deliver(ch, body, cfg)
  local retry = {}
  for k, v in pairs(M.defaults.retry) do retry[k] = v end
  for k, v in pairs(cfg.retry or {}) do retry[k] = v end
  local ok, r = util.try(http.request, { url = ch.url, method = "POST", body = body, timeout = cfg.timeout or M.defaults.timeout,
    headers = { ["Content-Type"] = "application/json" }, retry = retry })
  if not ok then
    local e = r
    return { channel = ch.name, ok = false, attempts = type(e) == "table" and e.details and e.details.attempts or retry.attempts,
             error = clean(hoist.is_error(e) and (e.code .. ": " .. e.message) or tostring(e), 500) }
  end
  if r.planned then return { channel = ch.name, ok = true, planned = true, attempts = 0 } end
  local res = { channel = ch.name, ok = r.status >= 200 and r.status < 300, status = r.status, attempts = r.attempts }
  if not res.ok then res.error = clean(("HTTP %d: %s"):format(r.status, first_line(r.body)), 500) end
  return res
end

--- Sends a summary to every channel of a configuration, each with its retries, and
--- returns what happened to each. Never raises for a channel that fails (a warning is
--- logged, scrubbed, naming the channel by kind and host); only a cancellation goes
--- through. In a dry run nothing is sent: each channel becomes a plan step.
---@param cfg hoist.NotifyConfig
---@param summary hoist.NotifySummary
---@return hoist.NotifyResult[]
function M.send(cfg, summary)
  cfg = M.configure(cfg)
  local results = {}
  if not cfg then return results end
  for i, ch in ipairs(cfg.channels) do
    local body
    local ok, err = pcall(function() body = core.scrub(json.encode(M.payload(ch.kind, summary))) end)
    local res
    if not ok then
      res = { channel = ch.name, ok = false, error = clean("the payload could not be encoded: " .. tostring(err), 500) }
    elseif util.dry_run() then
      util.plan { action = "notify." .. ch.kind, message = ("notify %s of %s"):format(ch.name, summary.event) }
      res = { channel = ch.name, ok = true, planned = true, attempts = 0 }
    else
      res = deliver(ch, body, cfg)
    end
    results[i] = res
    if res.ok and not res.planned then
      hoist.log.event("notify.sent", ("notified %s of %s"):format(ch.name, summary.event),
        { channel = ch.name, event = summary.event, status = res.status, attempts = res.attempts })
    elseif not res.ok then
      hoist.log.event("notify.failed", ("could not notify %s of %s (%s); the run's outcome is unchanged"):format(
        ch.name, summary.event, res.error or "?"),
        { channel = ch.name, event = summary.event, status = res.status, attempts = res.attempts, error = res.error }, "warn")
    end
  end
  return results
end

--- The end-of-run hook (hoist.pipeline calls it once per run, after the rollback if any):
--- when the run's event is one of `cfg.on` (a rolled-back run is a rollback and a failure),
--- builds the summary and sends it. Never raises: whatever goes wrong is a warning.
---@param cfg hoist.NotifyConfig
---@param result hoist.PipelineResult
---@return hoist.NotifyResult[]
function M.run_finished(cfg, result)
  local ok, out = util.try(function()
    cfg = M.configure(cfg)
    if not cfg then return {} end
    local _, all = M.event_of(result)
    local wanted = false
    for e in pairs(all) do wanted = wanted or cfg.on_set[e] == true end
    if not wanted then return {} end
    local summary = M.summary(result, cfg)
    if summary.error and summary.error.code == "cancelled" then
      -- SIGTERM'd: whoever stops the run (a CI cancel, kubelet) kills it soon; one short try
      local quick = {}
      for k, v in pairs(cfg) do quick[k] = v end
      quick.retry = { attempts = 1 }
      quick.timeout = math.min(cfg.timeout or M.defaults.timeout, M.defaults.cancelled_timeout)
      cfg = quick
    end
    return M.send(cfg, summary)
  end)
  if ok then return out end
  hoist.log.warn("notify: " .. clean(hoist.is_error(out) and out.message or tostring(out), 500)
    .. "; the run's outcome is unchanged")
  return {}
end

---------------------------------------------------------------- pipeline parameters

--- The parameters that turn notifications on in a pipeline (container@1 and the examples
--- declare them): notify (URLs, kind told by host or prefix), notify_slack, notify_teams,
--- notify_webhook (secrets), notify_on (events), notify_report_url.
---@type table<string, hoist.ParamSpec>
M.params = {
  notify = { type = "list", secret = true, env = "HOIST_NOTIFY",
             description = "Notification webhook URLs (secrets): Slack, Teams workflow or generic JSON, told apart by "
               .. "host (hooks.slack.com; *.logic.azure.com, *.powerplatform.com, ...) or by a slack:, teams: or webhook: prefix" },
  notify_slack = { type = "list", secret = true, env = "HOIST_NOTIFY_SLACK", description = "Slack incoming webhook URLs (secrets)" },
  notify_teams = { type = "list", secret = true, env = "HOIST_NOTIFY_TEAMS",
                   description = "Microsoft Teams workflow webhook URLs (secrets): an Adaptive Card is posted" },
  notify_webhook = { type = "list", secret = true, env = "HOIST_NOTIFY_WEBHOOK",
                     description = "Generic webhook URLs (secrets): the run summary as JSON (schema hoist.notify/v1)" },
  notify_on = { type = "list", default = { "success", "failure", "rollback" }, allowed = EVENTS,
                description = "Events that notify: success, failure, rollback (a rolled-back run is also a failure)" },
  notify_report_url = { type = "string", pattern = "https?://.+", hint = "an http(s) URL",
                        description = "Base URL of run reports: the notification links <base>/<run id> ({run} in it is replaced)" },
}

--- `params` with the notification parameters (hoist.notify.params) added; a parameter the
--- pipeline declares itself keeps its own spec.
---@param params table<string, hoist.ParamSpec>
---@return table<string, hoist.ParamSpec>
function M.with_params(params)
  for k, spec in pairs(M.params) do
    if params[k] == nil then
      local copy = {}
      for f, v in pairs(spec) do copy[f] = type(v) == "table" and { unpack(v) } or v end
      params[k] = copy
    end
  end
  return params
end

--- The configuration the notification parameters ask for (nil when they name no channel),
--- with `extra` merged in (facts, verify_stages, more channels).
---@param p table the run's parameters
---@param extra? hoist.NotifyConfig
---@return hoist.NotifyConfig|nil
function M.from_params(p, extra)
  local cfg = { channels = {}, slack = p.notify_slack, teams = p.notify_teams, webhook = p.notify_webhook,
                on = p.notify_on, report_url = p.notify_report_url }
  for _, u in ipairs(p.notify or {}) do cfg.channels[#cfg.channels + 1] = u end
  for k, v in pairs(extra or {}) do
    if k == "channels" then
      for _, u in ipairs(v) do cfg.channels[#cfg.channels + 1] = u end
    elseif k == "webhook" or k == "slack" or k == "teams" then
      local merged = {}
      for _, u in ipairs(list_of(cfg[k])) do merged[#merged + 1] = u end
      for _, u in ipairs(list_of(v)) do merged[#merged + 1] = u end
      cfg[k] = merged
    else
      cfg[k] = v
    end
  end
  return M.configure(cfg)
end

return M
