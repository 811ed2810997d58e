--- hoist.http: HTTP and HTTPS requests on the engine's loop (libcurl underneath): proxies
--- from the environment, TLS options, redirects, timeouts, connection reuse. A request waits
--- in its own task only; others go on, so `hoist.map` over URLs runs them concurrently.
---
--- Any HTTP status is a response (`resp.status`) unless `check = true`. Errors are raised
--- for what is not a response: `unavailable` (refused, DNS, TLS, reset; retryable),
--- `timeout`, `cancelled`, `invalid_argument` (bad options). The full reference:
--- docs/http.md.
local native = require "hoist.native.http"
local core = require "hoist.native.core"
local json = require "hoist.json"
local util = require "hoist.util"

local M = {}

local await = util.await

local function invalid(message) util.fail("invalid_argument", "hoist.http: " .. message) end

---@class hoist.HttpRequest
---@field url string http:// or https:// URL
---@field method? string GET (default), POST, PUT, PATCH, DELETE, HEAD, ...
---@field headers? table<string, string|number> request headers; Authorization values become secrets
---@field body? string request body, sent as is
---@field json? any encoded as the body, with Content-Type: application/json unless given
---@field query? table<string, string|number|boolean|(string|number)[]> appended to the URL, encoded
---@field timeout? number seconds for the whole request (default 30; 0 = none)
---@field connect_timeout? number seconds to connect (default 10)
---@field insecure? boolean skip TLS verification
---@field cacert? string CA bundle file (PEM)
---@field client_cert? string client certificate file (PEM), for mutual TLS
---@field client_key? string its private key file (PEM)
---@field unix_socket? string connect to this unix socket (e.g. /var/run/docker.sock)
---@field follow_redirects? boolean default true; Authorization never goes to another host
---@field max_redirects? integer default 10
---@field check? boolean raise on a status >= 400 (code from the status: 404 not_found, ...)
---@field safe? boolean this POST/PUT/PATCH/DELETE only reads (a query API): it is sent in a dry run too
---@field retry? boolean|hoist.HttpRetry try again on 408/429/5xx and on no response, with backoff and Retry-After (true: the defaults)

---@class hoist.HttpRetry
---@field attempts? integer tries in all (default 4; 1 = none)
---@field backoff? number first delay in seconds; doubles each try, times a random factor in [0.5, 1] (default 0.2)
---@field max_backoff? number cap of the computed delay (default 10)
---@field max_retry_after? number cap of a server's Retry-After, seconds (default 300)
---@field statuses? integer[] statuses worth another try (default 408, 429, 500, 502, 503, 504)
---@field connection_errors? boolean retry `unavailable` and `timeout` (no response) too (default true)

---@class hoist.HttpResponse
---@field status integer
---@field headers table<string, string> lower-cased names, final response only; repeats joined by ", "
---@field body string
---@field json? any the decoded body when the Content-Type is JSON (nil if it does not parse)
---@field url string the URL after redirects
---@field duration number seconds
---@field planned? boolean true in a dry run: the request was recorded as a plan step, not sent (status 0)
---@field attempts? integer with `retry`: how many tries it took

local known = {
  url = { type = "string", required = true }, json = "any", method = "string", headers = "table", body = "string", query = "table",
  timeout = "number", connect_timeout = "number", insecure = "boolean", cacert = "string",
  client_cert = "string", client_key = "string", unix_socket = "string",
  follow_redirects = "boolean", max_redirects = "number", check = "boolean", safe = "boolean",
  retry = "boolean|table",
}

-- The retry policy of the engine's REST layer (docs/rest.md, rest::RetryPolicy), with its
-- defaults, so that a script's own request retries the way the registry, ARM and Kubernetes
-- clients do.
M.retry_defaults = { attempts = 4, backoff = 0.2, max_backoff = 10, max_retry_after = 300,
                     statuses = { 408, 429, 500, 502, 503, 504 }, connection_errors = true }

local retry_spec = {
  attempts = { type = "integer", min = 1 }, backoff = { type = "number", min = 0 },
  max_backoff = { type = "number", min = 0 }, max_retry_after = { type = "number", min = 0 },
  statuses = "table", connection_errors = "boolean",
}

-- Methods that change something on the server: in a dry run they become plan steps.
local MUTATING = { POST = true, PUT = true, PATCH = true, DELETE = true }

-- A dry run's stand-in for a mutating request: a plan step (method, URL with secrets masked,
-- the body; the event bus scrubs registered secrets) and a response that says so.
local function plan_request(req, opts)
  local method = (req.method or "GET"):upper()
  local url = native.redact_url(req.url)
  local body = opts.json
  if body == nil and req.body ~= nil then body = #req.body <= 4096 and req.body or (req.body:sub(1, 4096) .. "...") end
  util.plan { action = "http." .. method:lower(), method = method, url = url, body = body }
  return { status = 0, headers = {}, body = "", url = url, duration = 0, planned = true }
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Appends `query` to the URL, keys sorted so the same table gives the same URL.
local function with_query(url, query)
  local keys = {}
  for k in pairs(query) do
    if type(k) ~= "string" then invalid("query: keys must be strings") end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = query[k]
    local values = type(v) == "table" and v or { v }
    for _, item in ipairs(values) do
      local t = type(item)
      if t ~= "string" and t ~= "number" and t ~= "boolean" then
        invalid(("query: value of '%s' must be a string, number or boolean, got %s"):format(k, t))
      end
      parts[#parts + 1] = escape(k) .. "=" .. escape(item)
    end
  end
  if #parts == 0 then return url end
  local hash = url:find("#", 1, true)
  local base, fragment = url, ""
  if hash then base, fragment = url:sub(1, hash - 1), url:sub(hash) end
  local sep = base:find("?", 1, true) and (base:match("[?&]$") and "" or "&") or "?"
  return base .. sep .. table.concat(parts, "&") .. fragment
end

local function has_header(headers, name)
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

local function is_json_type(ctype)
  if not ctype then return false end
  local mime = ctype:lower():match("^%s*([^;%s]+)")
  return mime ~= nil and (mime == "application/json" or mime:match("^application/.+%+json$") ~= nil)
end

-- Checks the options and builds what the native request takes.
local function prepare(opts)
  util.check_opts("hoist.http.request", opts, known)
  if not opts.url:match("^[Hh][Tt][Tt][Pp][Ss]?://") then
    invalid(("option 'url' must be an http:// or https:// URL, got %q"):format(native.redact_url(opts.url)))
  end
  if opts.body ~= nil and opts.json ~= nil then invalid("options 'body' and 'json' are exclusive") end
  local req = {}
  for k, v in pairs(opts) do req[k] = v end
  req.query, req.json, req.check, req.safe, req.retry = nil, nil, nil, nil, nil
  if opts.query then req.url = with_query(opts.url, opts.query) end
  if opts.json ~= nil then
    req.body = json.encode(opts.json)
    req.headers = {}
    for k, v in pairs(opts.headers or {}) do req.headers[k] = v end
    if not has_header(req.headers, "content-type") then req.headers["Content-Type"] = "application/json" end
    req.method = req.method or "POST"
  end
  return req
end

---------------------------------------------------------------- retries

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

-- Seconds since 1970-01-01 of a UTC date and time (days from the civil calendar, as
-- Howard Hinnant's days_from_civil counts them), so the local time zone plays no part.
local function epoch(y, m, d, hh, mm, ss)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return ((era * 146097 + doe - 719468) * 24 + hh) * 3600 + mm * 60 + ss
end

-- Seconds a Retry-After value asks to wait (RFC 9110 10.2.3): delta-seconds, or an HTTP-date
-- in any of its three forms (IMF-fixdate, the obsolete RFC 850 and asctime ones); nil when
-- it is neither, and then the computed backoff applies.
local function retry_after(v)
  if not v then return nil end
  local n = v:match("^%s*(%d+)%s*$")
  if n then return tonumber(n) end
  local d, mon, y, hh, mm, ss = v:match("^%s*%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if not d then
    d, mon, y, hh, mm, ss = v:match("^%s*%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
    if y then y = tostring(tonumber(y) + (tonumber(y) < 70 and 2000 or 1900)) end -- RFC 9110: 50 years ahead at most
  end
  if not d then mon, d, hh, mm, ss, y = v:match("^%s*%a%a%a (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)%s*$") end
  local month = mon and MONTHS[mon:lower()]
  if not month then return nil end
  local at = epoch(tonumber(y), month, tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss))
  return math.max(0, at - os.time())
end
M._retry_after = retry_after -- for tests

local function retry_policy(r)
  local given = util.check_opts("hoist.http.request: retry", r == true and {} or r, retry_spec)
  local p = {}
  for k, v in pairs(M.retry_defaults) do p[k] = given[k] == nil and v or given[k] end
  p.retry_on = {}
  for _, s in ipairs(p.statuses) do p.retry_on[s] = true end
  return p
end

-- The delay before try `attempt + 1`: backoff doubled each try, capped, times a random
-- factor in [0.5, 1] so that clients that failed together do not come back together.
local function backoff(p, attempt)
  return math.min(p.backoff * 2 ^ (attempt - 1), p.max_backoff) * (0.5 + math.random() / 2)
end

-- The request sent up to `p.attempts` times: again after a status of `p.statuses` (waiting
-- what Retry-After says, capped, else the backoff) or no response at all. The last response
-- is returned whatever its status; the last transport error is raised with details.attempts.
-- A cancellation is never retried (util.try raises it again).
local function send_with_retry(req, p)
  local method = (req.method or "GET"):upper()
  for attempt = 1, p.attempts do
    local ok, resp = util.try(function() return await(native.request(req)) end)
    local last, wait, why = attempt == p.attempts, nil, nil
    if ok then
      resp.attempts = attempt
      if last or not p.retry_on[resp.status] then return resp end
      local after = retry_after(resp.headers["retry-after"])
      wait = after and math.min(after, p.max_retry_after) or backoff(p, attempt)
      why = "HTTP " .. resp.status
    else
      local transport = core.is_error(resp) and (resp.code == "unavailable" or resp.code == "timeout")
      if last or not transport or not p.connection_errors then
        if core.is_error(resp) and attempt > 1 then
          resp.details = resp.details or {}
          resp.details.attempts = attempt
        end
        error(resp, 0)
      end
      wait, why = backoff(p, attempt), resp.code
    end
    core.log("debug", ("%s %s: %s; try %d of %d in %.2fs"):format(method, native.redact_url(req.url), why, attempt + 1,
      p.attempts, wait), { method = method, url = native.redact_url(req.url), attempt = attempt, wait = wait, reason = why },
      "http.retry")
    await(core.sleep(wait))
  end
end

---------------------------------------------------------------- requests

--- Sends one request and waits for its response (other tasks go on meanwhile). In a dry
--- run a POST, PUT, PATCH or DELETE is not sent: it becomes a plan step and the response is
--- `{status = 0, planned = true}`, unless the call says `safe = true` (it only reads). With
--- `retry`, a 408, 429 or 5xx answer and a connection failure are tried again (backoff,
--- Retry-After), as the engine's REST clients do; the last answer is returned.
---@param opts hoist.HttpRequest
---@return hoist.HttpResponse
function M.request(opts)
  local req = prepare(opts)
  local policy = opts.retry and retry_policy(opts.retry) -- checked in a dry run too
  if MUTATING[(req.method or "GET"):upper()] and not opts.safe and util.dry_run() then
    return plan_request(req, opts)
  end
  local resp
  if policy then resp = send_with_retry(req, policy) else resp = await(native.request(req)) end
  if is_json_type(resp.headers["content-type"]) and resp.body ~= "" then
    local ok, doc = pcall(json.decode, resp.body)
    if ok then resp.json = doc end
  end
  if opts.check and resp.status >= 400 then
    local snippet = core.scrub(resp.body:sub(1, 500))
    util.fail(native.code_for_status(resp.status),
      ("%s %s: HTTP %d"):format((req.method or "GET"):upper(), native.redact_url(resp.url), resp.status),
      { status = resp.status, url = native.redact_url(resp.url), body = snippet })
  end
  return resp
end

local function with_method(method, url, opts)
  if type(url) ~= "string" then
    invalid(("%s: expected a URL string as the first argument, got %s"):format(method:lower(), type(url)))
  end
  if opts ~= nil and type(opts) ~= "table" then
    invalid(("%s: options must be a table, got %s"):format(method:lower(), type(opts)))
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.url, o.method = url, method
  return M.request(o)
end

--- GET `url`.
---@param url string
---@param opts? hoist.HttpRequest (url and method are taken from the arguments)
---@return hoist.HttpResponse
function M.get(url, opts) return with_method("GET", url, opts) end

--- POST to `url` (give `body` or `json` in opts).
---@param url string
---@param opts? hoist.HttpRequest
---@return hoist.HttpResponse
function M.post(url, opts) return with_method("POST", url, opts) end

--- PUT to `url`.
---@param url string
---@param opts? hoist.HttpRequest
---@return hoist.HttpResponse
function M.put(url, opts) return with_method("PUT", url, opts) end

--- DELETE `url`.
---@param url string
---@param opts? hoist.HttpRequest
---@return hoist.HttpResponse
function M.delete(url, opts) return with_method("DELETE", url, opts) end

--- The URL with passwords and secret-looking query values (sig, token, ...) masked, for logs.
---@param url string
---@return string
function M.redact_url(url) return native.redact_url(url) end

M._with_query = with_query -- for tests

return M
