--- hoist.azure: Azure Resource Manager from Lua. `credential` picks an Entra ID token source,
--- `request` is the generic call (any resource, with long-running operations followed to
--- their end), `list` follows nextLink pages, and `resource_groups` / `providers` cover the
--- Resources API. Mutating calls are plan steps under --dry-run. See docs/azure.md.
local native = require "hoist.native.azure"
local util = require "hoist.util"
local credential = require "hoist.azure.credential"

local await, fail = util.await, util.fail

local M = {}

--- Request defaults; change them here for the whole run (or per call).
---@class hoist.azure.Defaults
---@field attempts integer tries per request (429, 5xx and connection errors are retried)
---@field backoff number first delay between tries, seconds
---@field max_backoff number
---@field timeout number seconds per request
---@field poll_interval number seconds between polls of an operation that gives no Retry-After
---@field wait_timeout number seconds a long-running operation may take
M.defaults = { attempts = 4, backoff = 0.5, max_backoff = 30, timeout = 120, poll_interval = 5, wait_timeout = 1800 }

--- Makes a credential (see hoist.azure.credential.new).
---@param opts? hoist.azure.CredentialOptions
---@return hoist.azure.Credential
function M.credential(opts) return credential.new(opts) end

local request_spec = util.spec(util.rest_options, {
  method = { type = "string", default = "GET", allowed = { "GET", "PUT", "PATCH", "POST", "DELETE", "HEAD" } },
  path = { type = "string", required = true },
  api_version = "string",
  query = "table",
  body = "table|string|number|boolean",
  headers = "table",
  wait = { type = "boolean", default = true },
  paged = "boolean",
  safe = "boolean",
  credential = "table",
  endpoint = "string",
  audience = "string",
  what = "string",
  action = "string",
  poll_interval = "number", wait_timeout = "number",
  missing_ok = "boolean",
})

-- credentials by source name, so tokens are cached across the calls of one run
local by_source = {}

--- The credential of a call: the one given (checked), the credential of a source named
--- (`"client_secret"`, `"oidc"`, ...: one per source and process, so its tokens are reused),
--- else a new chain. For modules over hoist.azure (hoist.azure.resources, acr, aci, targets).
---@param fname string the public name, for the error
---@param c? string|hoist.azure.Credential
---@return hoist.azure.Credential
local function credential_of(fname, c)
  if c == nil then return credential.new() end
  if type(c) == "string" then
    by_source[c] = by_source[c] or credential.new { source = c }
    return by_source[c]
  end
  if not credential.is(c) then
    fail("invalid_argument", fname .. ": option 'credential' must be a source name or come from hoist.azure.credential{}")
  end
  return c
end
M.credential_of = credential_of

---@class hoist.azure.RequestOptions
---@field method? "GET"|"PUT"|"PATCH"|"POST"|"DELETE"|"HEAD"
---@field path string "/subscriptions/..." on the Resource Manager endpoint, or an absolute URL
---@field api_version? string default: the version pinned for the path's resource type
---@field query? table<string, string> more query parameters
---@field body? table|string the JSON body
---@field headers? table<string, string>
---@field wait? boolean follow a long-running operation to its end (default true)
---@field paged? boolean follow nextLink: the result's body is {value = every item}
---@field safe? boolean a POST that only reads (list* actions are by default): sent under --dry-run
---@field credential? hoist.azure.Credential default: the chain
---@field endpoint? string default: AZURE_RESOURCE_MANAGER_ENDPOINT or https://management.azure.com
---@field audience? string the token audience, default https://management.azure.com/
---@field what? string names the call in errors
---@field action? string the plan step's name
---@field attempts? integer
---@field timeout? number
---@field poll_interval? number
---@field wait_timeout? number
---@field dry_run? boolean
---@field missing_ok? boolean a 404 (the resource, or its group, is not there) returns nil instead of raising not_found

---@class hoist.azure.Response
---@field status integer the final status
---@field body any the resource, the action's result, or nil
---@field headers table<string, string> of the last response (names lower-cased)
---@field planned boolean dry run: recorded as a plan step, not sent
---@field operation_status? string a long-running operation's end: "Succeeded"
---@field poll_url? string wait = false: where the operation's status is
---@field polls integer

--- A path segment percent-encoded (RFC 3986 unreserved characters kept): a resource group
--- or resource name never changes the path it is put in.
---@param s string
---@return string
function M.encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

--- The Resource Manager id of a resource group (`resource_id(sub, rg)`) or of a resource in it
--- (`resource_id(sub, rg, "Microsoft.Web/sites", "web")`, a child: `..., "web", "slots",
--- "staging"`), every name segment percent-encoded (hoist.azure.encode); `type` is the
--- provider and resource type as Azure spells them.
---@param sub string
---@param rg string
---@param rtype? string
---@param ... string the resource name, then child type and name pairs
---@return string
function M.resource_id(sub, rg, rtype, ...)
  local id = ("/subscriptions/%s/resourceGroups/%s"):format(M.encode(sub), M.encode(rg))
  if not rtype then return id end
  id = id .. "/providers/" .. rtype
  for i = 1, select("#", ...) do
    local seg = select(i, ...)
    -- names are encoded; a child's type (the even positions after the name) is Azure's word
    id = id .. "/" .. (i % 2 == 1 and M.encode(seg) or seg)
  end
  return id
end

--- One call of a domain module (hoist.azure.aci, acr, appservice, containerapp, resources):
--- `r` (hoist.azure.RequestOptions) with the credential `c`, the module's `endpoint` option
--- and those of its options named in `carry` (e.g. {"timeout", "attempts"}: only where the
--- module's option means the same as the request's), `r`'s own first.
---@param c hoist.azure.Credential
---@param o table the module function's checked options
---@param r hoist.azure.RequestOptions
---@param carry? string[]
---@return hoist.azure.Response|nil
function M.call(c, o, r, carry)
  r.credential = c
  if r.endpoint == nil then r.endpoint = o.endpoint end
  for _, k in ipairs(carry or {}) do
    if r[k] == nil then r[k] = o[k] end
  end
  return M.request(r)
end

--- The generic Resource Manager call. Errors keep Azure's code, message, target and details
--- (`details.error`) and its request ids (`details.request_ids`); an operation that ends
--- Failed or Canceled raises its own error. With `missing_ok`, a resource that is not there
--- (not_found) returns nil: how every get and delete of the domain modules reads absence.
---@param opts hoist.azure.RequestOptions
---@return hoist.azure.Response|nil
function M.request(opts)
  local o = util.check_opts("hoist.azure.request", opts, request_spec)
  for k, d in pairs(M.defaults) do if o[k] == nil then o[k] = d end end
  local c = credential_of("hoist.azure.request", o.credential)
  o.credential = nil
  local missing_ok = o.missing_ok
  o.missing_ok = nil
  local ok, r = util.try(await, native.request(c.native, o))
  if not ok then
    if missing_ok and hoist.is_error(r, "not_found") then return nil end
    error(r, 0)
  end
  if r.body == hoist.json.null then r.body = nil end
  return r
end

--- Every item of a list, following nextLink.
---@param opts hoist.azure.RequestOptions
---@return table[]
function M.list(opts)
  local o = {}
  for k, v in pairs(util.check_opts("hoist.azure.list", opts, request_spec)) do o[k] = v end
  o.paged = true
  return M.request(o).body.value
end

--- The subscription a call works in: `given`, else AZURE_SUBSCRIPTION_ID, else the
--- subscriptionId of AZURE_CREDENTIALS.
---@param given? string
---@param cred? hoist.azure.Credential
---@return string
function M.subscription(given, cred)
  if given and given ~= "" then return given end
  local s = os.getenv("AZURE_SUBSCRIPTION_ID")
  if (not s or s == "") and cred then s = cred.subscription_id end
  if not s or s == "" then
    fail("invalid_argument", "no Azure subscription: pass subscription= or set AZURE_SUBSCRIPTION_ID")
  end
  return s
end

--- The api-version pinned for a path's resource type ("" when none is).
---@param path string
---@return string
function M.api_version(path) return native.api_version(path) end

---------------------------------------------------------------- an operation in flight

-- The Resource Manager RPC's terminal provisioning states: any other means an operation runs.
local TERMINAL = { Succeeded = true, Failed = true, Canceled = true }

--- Whether `err` is Azure's 409 for an operation still running on the resource (e.g. the PUT
--- of a run that was cancelled while it was being polled): ARM's AnotherOperationInProgress, or
--- App Service's Conflict "Cannot modify this site because another operation is in progress.
--- Details: ..., OperationName: SwapSiteSlots, ..." (its own envelope, read as ARM's).
---@param err any
---@return boolean
function M.another_operation(err)
  if not hoist.is_error(err, "conflict") then return false end
  local e = type(err.details) == "table" and err.details.error
  if type(e) ~= "table" then return false end
  return e.code == "AnotherOperationInProgress"
    or (e.code == "Conflict" and tostring(e.message or ""):find("another operation is in progress", 1, true) ~= nil)
end

--- Whether an operation runs on the resource: its provisioningState is there and not terminal
--- (Succeeded, Failed, Canceled).
---@param res table|nil the resource as Azure shows it
---@return boolean
function M.in_progress(res)
  local state = res and type(res.properties) == "table" and res.properties.provisioningState or nil
  return state ~= nil and not TERMINAL[state]
end

---@class hoist.azure.SettleOptions
---@field what string names the resource in messages ("container group web")
---@field get fun(): table|nil the resource as Azure shows it, nil when absent
---@field timeout? number seconds to wait in all (default 600)
---@field poll_interval? number seconds between GETs (default 2)

--- Waits until no operation runs on a resource: its provisioningState is terminal
--- (Succeeded, Failed, Canceled) or it is gone. Returns it as it is then (nil: gone). What a
--- compensation does first after a cancelled run whose operation the service still runs.
---@param opts hoist.azure.SettleOptions
---@return table|nil
function M.settled(opts)
  local deadline = hoist.now() + (opts.timeout or 600)
  local said = false
  while true do
    local res = opts.get()
    if not M.in_progress(res) then return res end
    local state = res.properties.provisioningState
    if hoist.now() > deadline then
      fail("timeout", ("%s: an operation is still in progress on it (provisioningState %s) after %gs"):format(opts.what,
        tostring(state), opts.timeout or 600), { provisioning_state = state })
    end
    if not said then
      hoist.log.event("azure.operation_wait", ("%s: an operation is in progress on it (provisioningState %s); waiting for "
        .. "it to end"):format(opts.what, tostring(state)), { what = opts.what, state = state })
      said = true
    end
    hoist.sleep(opts.poll_interval or 2)
  end
end

--- Runs `change` (a PUT, PATCH, DELETE or action on the resource) once no operation runs on
--- it: first M.settled, then `change`; when Azure still answers 409 for an operation in
--- progress (M.another_operation: one started meanwhile, or one no GET shows, as App Service's
--- swap), says once that it waits, naming it, then M.settled again and `change` again, within
--- `timeout` in all.
---@generic T
---@param opts hoist.azure.SettleOptions
---@param change fun(current: table|nil): T gets the resource as it is once settled
---@return T
function M.when_settled(opts, change)
  local deadline = hoist.now() + (opts.timeout or 600)
  local said = false
  while true do
    local left = {}
    for k, v in pairs(opts) do left[k] = v end
    left.timeout = math.max(1, deadline - hoist.now())
    local current = M.settled(left)
    local ok, r = pcall(change, current)
    if ok then return r end
    -- anything else (cancellation included) goes on up
    if not M.another_operation(r) or hoist.now() > deadline then error(r, 0) end
    if not said then
      local azure_said = tostring(r.details.error.message or r.details.error.code)
      hoist.log.event("azure.operation_wait", ("%s: an operation is in progress on it (Azure: %s); waiting for it to end")
        :format(opts.what, azure_said), { what = opts.what, error = r.details.error.code })
      said = true
    end
    hoist.sleep(opts.poll_interval or 2)
  end
end

local resources = require "hoist.azure.resources"
M.resource_groups = resources.resource_groups
M.providers = resources.providers
-- service modules (they reach hoist.azure at call time, so loading them here is safe)
M.acr = require "hoist.azure.acr"
M.aci = require "hoist.azure.aci"

-- hoist.azure.<name> reaches the service modules stdlib/hoist/azure/<name>.lua
-- (hoist.azure.appservice, hoist.azure.containerapp, ...), as hoist.k8s.<name> does.
setmetatable(M, {
  __index = function(t, k)
    local name = "hoist.azure." .. tostring(k)
    -- (searchpath: a new file under the HOIST_LUA_PATH override, not compiled in yet)
    if package.loaded[name] or package.preload[name]
        or (package.searchpath and package.searchpath(name, package.path)) then
      local v = require(name)
      rawset(t, k, v)
      return v
    end
  end,
})

return M
