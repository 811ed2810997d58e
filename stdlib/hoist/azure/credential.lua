--- hoist.azure.credential: Entra ID tokens from the first source that applies (or the one
--- named): client secret (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET or the
--- AZURE_CREDENTIALS JSON), workload identity (AZURE_FEDERATED_TOKEN_FILE), GitHub OIDC
--- (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN), managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER,
--- or IMDS), and the az CLI last. Tokens are cached for the run per source, identity and
--- scope, and renewed before they expire. Every secret, assertion and token is a registered
--- secret. See docs/azure.md.
local native = require "hoist.native.azure"
local util = require "hoist.util"

local await = util.await

local M = {}

--- Token defaults; change them here for the whole run (or per credential).
---@class hoist.azure.CredentialDefaults
---@field refresh_margin number seconds before expiry a cached token is renewed (at most half its life)
---@field timeout number seconds per token request
M.defaults = { refresh_margin = 300, timeout = 60 }

M.sources = { "client_secret", "workload_identity", "oidc", "managed_identity", "az_cli", "static" }

local spec = {
  source = { type = "string", allowed = M.sources },
  tenant_id = "string",
  client_id = "string",
  client_secret = { type = "string", secret = true },
  token = { type = "string", secret = true },
  az = "string",
  refresh_margin = "number",
  timeout = "number",
}

---@class hoist.azure.Token
---@field token string the access token (a registered secret)
---@field expires_on number unix seconds

---@class hoist.azure.Credential
---@field source string the source that answers: "client_secret", "workload_identity", "oidc", "managed_identity", "az_cli" or "static"
---@field subscription_id string AZURE_SUBSCRIPTION_ID, else AZURE_CREDENTIALS' subscriptionId, else ""
---@field native userdata
local Credential = {}
Credential.__index = Credential

--- A token for `scope` (default: Resource Manager's), from the run's cache when it is fresh.
---@param scope? string e.g. "https://management.azure.com/.default"
---@return hoist.azure.Token
function Credential:get_token(scope)
  scope = util.check_opt("hoist.azure.credential:get_token", "scope", scope,
    { type = "string", default = "https://management.azure.com/.default" })
  return await(self.native:get_token(scope, { timeout = self.timeout }))
end

function Credential:__tostring() return ("hoist.azure.Credential(%s)"):format(self.source) end

---@class hoist.azure.CredentialOptions
---@field source? string one of M.sources; default: the first that applies
---@field tenant_id? string beats AZURE_TENANT_ID
---@field client_id? string beats AZURE_CLIENT_ID
---@field client_secret? string beats AZURE_CLIENT_SECRET
---@field token? string source "static": a token obtained elsewhere
---@field az? string the az executable (default "az" on PATH)
---@field refresh_margin? number
---@field timeout? number

--- Picks a credential source now. Raises unauthorized naming exactly what is missing (the
--- Internal: hoist.azure.credential{} is the public constructor.
--- variables of the source asked for, or of every source when none applies).
---@param opts? hoist.azure.CredentialOptions
---@return hoist.azure.Credential
function M.new(opts)
  local o = util.check_opts("hoist.azure.credential", opts, spec)
  for k, d in pairs(M.defaults) do if o[k] == nil then o[k] = d end end
  local n = native.credential(o)
  return setmetatable({ native = n, source = n:source(), subscription_id = n:subscription_id(),
                        timeout = o.timeout }, Credential)
end

--- True when `v` is a credential made by M.new.
--- Internal: for the stdlib's modules that accept a credential or its options.
---@param v any
---@return boolean
function M.is(v) return getmetatable(v) == Credential end

return M
