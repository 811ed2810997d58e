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

local request_spec = {
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
  attempts = "integer", backoff = "number", max_backoff = "number", timeout = "number",
  poll_interval = "number", wait_timeout = "number", dry_run = "boolean",
}

--- The credential of a call: the one given (checked), else a new chain. For modules over
--- hoist.azure (hoist.azure.resources, targets).
---@param fname string the public name, for the error
---@param c? hoist.azure.Credential
---@return hoist.azure.Credential
local function credential_of(fname, c)
  if c == nil then return credential.new() end
  if not credential.is(c) then
    fail("invalid_argument", fname .. ": option 'credential' must come from hoist.azure.credential{}")
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

---@class hoist.azure.Response
---@field status integer the final status
---@field body any the resource, the action's result, or nil
---@field headers table<string, string> of the last response (names lower-cased)
---@field planned boolean dry run: recorded as a plan step, not sent
---@field operation_status? string a long-running operation's end: "Succeeded"
---@field poll_url? string wait = false: where the operation's status is
---@field polls integer

--- The generic Resource Manager call. Errors keep Azure's code, message, target and details
--- (`details.error`) and its request ids (`details.request_ids`); an operation that ends
--- Failed or Canceled raises its own error.
---@param opts hoist.azure.RequestOptions
---@return hoist.azure.Response
function M.request(opts)
  local o = util.check_opts("hoist.azure.request", opts, request_spec)
  for k, d in pairs(M.defaults) do if o[k] == nil then o[k] = d end end
  local c = credential_of("hoist.azure.request", o.credential)
  o.credential = nil
  local r = await(native.request(c.native, o))
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
