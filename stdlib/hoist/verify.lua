--- hoist.verify: checks that what was deployed answers as it should: HTTP checks retried
--- until they hold, with an expected status, body pattern, JSON predicate and latency budget.
--- A check that never holds raises rollout_failed with every attempt as evidence, which is
--- what a pipeline needs to roll back and to say why. See docs/verify.md.
local M = {}


local util = require "hoist.util"
local fail = util.fail

local dry_run = util.dry_run

local function positive(v, name, where, allow_zero)
  if type(v) ~= "number" or v < 0 or (v == 0 and not allow_zero) or v ~= v then
    fail("invalid_argument", ("%s: %s must be a %s number, got %s"):format(where, name,
      allow_zero and "non-negative" or "positive", tostring(v)))
  end
  return v
end

---@class hoist.verify.Check
---@field url string http:// or https:// URL
---@field name? string names the check in messages (default "METHOD url")
---@field method? string default "GET"
---@field headers? table<string, string>
---@field body? string request body
---@field json? table request body sent as JSON
---@field expect_status? integer|integer[] default 200
---@field expect_body? string a Lua pattern the body must contain
---@field expect_json? fun(doc: any, response: table): boolean|nil, string|nil the decoded body must satisfy it
---@field retries? integer attempts after the first (default 30)
---@field interval? number seconds between attempts (default 1)
---@field timeout? number seconds for one attempt (default 5)
---@field latency_budget? number seconds: a slower attempt counts as failed

local SPEC = {
  url = { type = "string", required = true }, name = "string", method = { type = "string", default = "GET" },
  headers = "table", body = "string", json = "any", expect_status = "number|table", expect_body = "string",
  expect_json = "function", retries = { type = "number", default = 30 }, interval = { type = "number", default = 1 },
  timeout = { type = "number", default = 5 }, latency_budget = "number",
}

-- Validated options with defaults (util.check_opts, then what a type cannot say); raises
-- invalid_argument naming the bad field.
local function options(opts, where)
  local o = util.check_opts("hoist." .. where, opts, SPEC)
  if not o.url:match("^https?://[^/]") then
    fail("invalid_argument", ("%s: url must be an http:// or https:// URL, got %s"):format(where, o.url))
  end
  o.method = o.method:upper()
  -- what messages, events and evidence show: passwords and token-looking query values masked
  o.shown = hoist.http.redact_url(o.url)
  o.name = o.name or (o.method .. " " .. o.shown)
  where = ("%s %s"):format(where, o.name)
  if math.floor(positive(o.retries, "retries", where, true)) ~= o.retries then
    fail("invalid_argument", where .. ": retries must be a whole number")
  end
  positive(o.interval, "interval", where, true)
  positive(o.timeout, "timeout", where)
  if o.latency_budget ~= nil then positive(o.latency_budget, "latency_budget", where) end
  local status = o.expect_status == nil and { 200 } or o.expect_status
  if type(status) == "number" then status = { status } end
  if type(status) ~= "table" or #status == 0 then
    fail("invalid_argument", where .. ": expect_status must be a status code or a list of them")
  end
  o.status_set, o.status_text = {}, table.concat(status, " or ")
  for _, s in ipairs(status) do
    if type(s) ~= "number" then fail("invalid_argument", where .. ": expect_status must hold numbers") end
    o.status_set[s] = true
  end
  if o.expect_body ~= nil then
    if type(o.expect_body) ~= "string" or not pcall(string.find, "", o.expect_body) then
      fail("invalid_argument", ("%s: expect_body must be a valid Lua pattern, got %s"):format(
        where, tostring(o.expect_body)))
    end
  end
  if o.expect_json ~= nil and type(o.expect_json) ~= "function" then
    fail("invalid_argument", where .. ": expect_json must be a function(doc, response) -> ok, why")
  end
  if o.headers ~= nil and type(o.headers) ~= "table" then
    fail("invalid_argument", where .. ": headers must be a table")
  end
  return o
end

local function rethrow_cancel(err)
  if hoist.is_error(err, "cancelled") then error(err, 0) end
end

local function describe_error(err)
  if type(err) == "table" and err.code then return err.code .. ": " .. tostring(err.message) end
  return tostring(err)
end

-- What is wrong with one response, or nil when it holds.
local function judge(o, resp, latency)
  if not o.status_set[resp.status] then
    return ("status %s, expected %s"):format(tostring(resp.status), o.status_text)
  end
  if o.latency_budget and latency > o.latency_budget then
    return ("took %.3fs, over the latency budget of %gs"):format(latency, o.latency_budget)
  end
  local body = resp.body or ""
  if o.expect_body and not body:find(o.expect_body) then
    return ("body does not match the pattern %q"):format(o.expect_body)
  end
  if o.expect_json then
    local doc = resp.json
    if doc == nil then
      local ok, decoded = pcall(hoist.json.decode, body)
      if not ok then return "body is not JSON: " .. describe_error(decoded) end
      doc = decoded
    end
    local ok, holds, why = pcall(o.expect_json, doc, resp)
    if not ok then
      rethrow_cancel(holds)
      return "expect_json raised: " .. describe_error(holds)
    end
    if not holds then return "expect_json: " .. tostring(why or ("returned " .. tostring(holds))) end
  end
  return nil
end

-- One request; returns its evidence and whether the check held.
local function attempt(o, n)
  local started = hoist.now()
  local ok, resp = pcall(hoist.http.request, { method = o.method, url = o.url, headers = o.headers,
    body = o.body, json = o.json, timeout = o.timeout })
  local latency = hoist.now() - started
  local ev = { attempt = n, latency = math.floor(latency * 1000 + 0.5) / 1000 }
  if not ok then
    rethrow_cancel(resp)
    ev.error = describe_error(resp)
    return ev, false
  end
  ev.status = resp.status
  ev.body_start = hoist.scrub((resp.body or ""):sub(1, 200))
  ev.error = judge(o, resp, latency)
  return ev, ev.error == nil
end

---@class hoist.verify.Result
---@field ok boolean
---@field planned? boolean true in dry-run: nothing was requested
---@field name string
---@field attempts integer
---@field latency? number seconds of the attempt that held
---@field status? integer
---@field evidence table[] every attempt: {attempt, status, latency, body_start, error}

local function run(o)
  if dry_run() then
    hoist.log.info(("dry-run: would verify %s"):format(o.name), { url = o.shown, method = o.method })
    return { ok = true, planned = true, name = o.name, attempts = 0, evidence = {} }
  end
  local evidence, started = {}, hoist.now()
  for n = 1, o.retries + 1 do
    local ev, held = attempt(o, n)
    evidence[n] = ev
    if held then
      hoist.log.event("verify.ok", ("verify: %s held after %d %s (%.3fs)"):format(o.name, n,
        n == 1 and "attempt" or "attempts", ev.latency), { url = o.shown, attempts = n, latency = ev.latency })
      return { ok = true, name = o.name, attempts = n, latency = ev.latency, status = ev.status, evidence = evidence }
    end
    -- the first miss and every tenth are shown, so a long wait is visibly alive
    local level = (n == 1 or n % 10 == 0) and "info" or "debug"
    hoist.log[level](("verify: %s attempt %d of %d: %s"):format(o.name, n, o.retries + 1, ev.error), { url = o.shown })
    if n <= o.retries then hoist.sleep(o.interval) end
  end
  local last = evidence[#evidence]
  local message = ("verify %s failed after %d %s over %.1fs: %s"):format(o.name, #evidence,
    #evidence == 1 and "attempt" or "attempts", hoist.now() - started, last.error)
  hoist.log.event("verify.failed", message, { url = o.shown, attempts = #evidence }, "error")
  fail("rollout_failed", message, { name = o.name, url = o.shown, method = o.method, attempts = #evidence,
    evidence = evidence })
end

--- Requests `url` until the response holds (status, body pattern, JSON predicate, latency
--- budget) or the attempts run out. In dry-run it requests nothing and returns planned=true.
---@param opts hoist.verify.Check
---@return hoist.verify.Result
function M.http(opts)
  return run(options(opts, "verify.http"))
end

--- Runs several checks concurrently (at most `limit` at once) and reports every failure
--- together: raises rollout_failed whose details.failures lists each failed check with its
--- evidence. Returns {ok = true, results = {...}} (in check order) when all hold.
---@param opts {checks: hoist.verify.Check[], limit?: integer}
---@return {ok: boolean, planned?: boolean, results: hoist.verify.Result[]}
function M.all(opts)
  if type(opts) ~= "table" or type(opts.checks) ~= "table" or #opts.checks == 0 then
    fail("invalid_argument", "verify.all: checks must be a non-empty list of checks")
  end
  if opts.limit ~= nil and (type(opts.limit) ~= "number" or opts.limit < 1) then
    fail("invalid_argument", "verify.all: limit must be a number >= 1")
  end
  local checks = {}
  for i, c in ipairs(opts.checks) do checks[i] = options(c, ("verify.all: checks[%d]"):format(i)) end
  local outcomes = hoist.map(checks, function(o)
    local ok, r = pcall(run, o)
    if ok then return r end
    rethrow_cancel(r)
    return { ok = false, name = o.name, url = o.shown, error = r }
  end, { limit = opts.limit })
  local failures, texts = {}, {}
  for _, r in ipairs(outcomes) do
    if not r.ok then
      local e = r.error
      failures[#failures + 1] = { name = r.name, url = r.url, message = describe_error(e),
        evidence = type(e) == "table" and e.details and e.details.evidence or nil }
      texts[#texts + 1] = describe_error(e):gsub("^rollout_failed: ", "")
    end
  end
  if #failures > 0 then
    fail("rollout_failed", ("verify: %d of %d checks failed: %s"):format(#failures, #checks,
      table.concat(texts, "; ")), { failures = failures, checks = #checks })
  end
  return { ok = true, planned = dry_run() or nil, results = outcomes }
end

return M
