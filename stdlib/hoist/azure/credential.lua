--- hoist.azure.credential: Entra ID tokens from the first source that applies (or the one
--- named): client secret (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET or the
--- AZURE_CREDENTIALS JSON), workload identity (AZURE_FEDERATED_TOKEN_FILE), GitHub OIDC
--- (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN), Azure Pipelines' service connection idToken
--- (SYSTEM_OIDCREQUESTURI/SYSTEM_ACCESSTOKEN/AZURESUBSCRIPTION_SERVICE_CONNECTION_ID), managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER,
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

M.sources = { "client_secret", "workload_identity", "oidc", "azure_pipelines", "managed_identity", "az_cli", "static" }

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
---@field source string the source that answers: "client_secret", "workload_identity", "oidc", "azure_pipelines", "managed_identity", "az_cli" or "static"
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

--- Who the credential signs in as, from its Resource Manager token's claims: `client_id`
--- (appid), `object_id` (oid: the principal role assignments name) and `tenant_id`; a field
--- the token lacks is nil. Fetches a token (from the cache when fresh).
---@return {client_id?: string, object_id?: string, tenant_id?: string}
function Credential:principal()
  local claims = util.jwt_claims(self:get_token().token) or {}
  return { client_id = claims.appid or claims.azp, object_id = claims.oid, tenant_id = claims.tid }
end

-- credential -> {client_id, client_secret}, for service_principal: out of the object, so that
-- no dump or iteration of a credential shows the secret
local principals = setmetatable({}, { __mode = "k" })

--- The service principal's own client id and secret when the source is "client_secret" (what
--- ACR takes as a docker login when the principal holds AcrPull: a pull credential that lasts
--- as long as the secret, unlike any token); nil for every other source. The secret is a
--- registered secret.
---@return {client_id: string, client_secret: string}|nil
function Credential:service_principal()
  local sp = principals[self]
  return sp and { client_id = sp.client_id, client_secret = sp.client_secret } or nil
end

-- What the client_secret source uses, in its order (engine/azure/sources.cpp): the option,
-- else AZURE_CLIENT_SECRET with AZURE_CLIENT_ID, else the AZURE_CREDENTIALS JSON.
local function principal_of(o)
  local secret = o.client_secret or os.getenv("AZURE_CLIENT_SECRET")
  if secret == "" then secret = nil end
  local id = o.client_id or os.getenv("AZURE_CLIENT_ID")
  if not secret then
    local ok, doc = pcall(hoist.json.decode, os.getenv("AZURE_CREDENTIALS") or "")
    if not ok or type(doc) ~= "table" then return nil end
    secret, id = doc.clientSecret, o.client_id or doc.clientId
  end
  if type(secret) ~= "string" or type(id) ~= "string" or id == "" then return nil end
  return { client_id = id, client_secret = hoist.secret(secret) }
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
  local c = setmetatable({ native = n, source = n:source(), subscription_id = n:subscription_id(),
                           timeout = o.timeout }, Credential)
  if c.source == "client_secret" then principals[c] = principal_of(o) end
  return c
end

--- True when `v` is a credential made by M.new.
--- Internal: for the stdlib's modules that accept a credential or its options.
---@param v any
---@return boolean
function M.is(v) return getmetatable(v) == Credential end

return M
