--- hoist.azure.pull: the registry credential an Azure service keeps to pull the deployed image
--- again later. ACI, App Service and Container Apps pull at every restart, scale-out or host
--- move, hours or months after the deploy, with the secret stored at deploy time: a token that
--- expires turns the next restart into an image pull failure. So a stored pull secret must be
--- made for pulling and outlive the deploy (a managed identity with AcrPull where the service
--- supports it, an ACR token with a pull-only scope map, the service principal's own secret),
--- never an ACR refresh token (about 3 hours) or a GitHub Actions GITHUB_TOKEN (the job's
--- lifetime). See docs/azure.md.
local util = require "hoist.util"

local fail = util.fail

local M = {}

-- The expiry (seconds since the epoch) of a JWT, nil when `s` is none or has no exp.
local function jwt_expiry(s)
  local claims = util.jwt_claims(s)
  return claims and tonumber(claims.exp) or nil
end

--- Why `username`/`password` must not be kept as a pull secret, or nil: an ACR refresh token
--- (its user is 00000000-0000-0000-0000-000000000000), a GitHub token that ends with the job
--- or within hours (`ghs_`, `ghu_`), or any JWT with an expiry.
---@param username? string
---@param password? string
---@return string|nil reason
function M.expiring(username, password)
  if username == require("hoist.azure.acr").TOKEN_USER then
    return ("it is an ACR refresh token (user %s), valid about 3 hours"):format(username)
  end
  if type(password) ~= "string" then return nil end
  if password:match("^ghs_") then
    return "it is a GitHub Actions GITHUB_TOKEN (ghs_...), valid only while the job runs"
  end
  if password:match("^ghu_") then return "it is a GitHub user-to-server token (ghu_...), valid 8 hours" end
  local exp = jwt_expiry(password)
  if exp then return ("it is a token that expires at %s"):format(os.date("!%Y-%m-%dT%H:%M:%SZ", exp)) end
  return nil
end

--- Refuses a pull secret that expires (M.expiring): invalid_argument (exit 2) naming the
--- option, the reason and what to give instead. `what` names the target ("targets.aci").
---@param what string
---@param o {registry_username?: string, registry_password?: string}
function M.check(what, o)
  local why = M.expiring(o.registry_username, o.registry_password)
  if why then
    fail("invalid_argument", ("%s: registry_username/registry_password would be stored as the pull secret, but %s: "
      .. "the service pulls again at every restart, after it has expired. Give a credential made for pulling "
      .. "(an ACR token with a pull-only scope map: az acr token create --scope-map _repositories_pull; for ghcr.io, "
      .. "a token with read:packages), or a managed identity with AcrPull (registry_identity; appservice: "
      .. "managed_identity=true)"):format(what, why), { option = "registry_password", exit_code = 2 })
  end
end

local PULL_ROLES = { "AcrPull", "AcrPush", "Contributor", "Owner" }

--- Checks the user-assigned identity `o.registry_identity` (a resource id; "system" is not
--- checked: it exists only once the resource does) before a deploy: it exists and holds a
--- role that pulls (AcrPull, AcrPush, Contributor or Owner) on a registry, a resource group or
--- the subscription; else invalid_argument (exit code 2) naming the identity, its principal
--- and the assignment to make. Returns the check's line for the preflight's list, or nil.
---@param what string names the target in the error
---@param o {registry_identity?: string}
---@param ctx {credential: hoist.azure.Credential, subscription: string, endpoint?: string}
---@return string|nil
function M.check_identity(what, o, ctx)
  local id = o.registry_identity
  if not id or id:lower() == "system" then return nil end
  local azure = require "hoist.azure"
  local got = azure.request { method = "GET", path = id, credential = ctx.credential, endpoint = ctx.endpoint,
                              missing_ok = true, what = "registry_identity " .. id }
  local principal = got and got.body and got.body.properties and got.body.properties.principalId
  if not principal then
    fail("invalid_argument", ("%s: registry_identity %s does not exist (create it: hoist.azure.identity.ensure, or az "
      .. "identity create)"):format(what, id), { option = "registry_identity", exit_code = 2 })
  end
  local sub = id:match("^/subscriptions/([^/]+)") or ctx.subscription
  local ids = {}
  for _, role in ipairs(PULL_ROLES) do
    ids[(require("hoist.azure.identity").role_id { role = role, subscription = sub, credential = ctx.credential,
                                                   endpoint = ctx.endpoint }):match("([%x%-]+)$"):lower()] = role
  end
  local list = azure.list { path = ("/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments"):format(sub),
    credential = ctx.credential, endpoint = ctx.endpoint, query = { ["$filter"] = ("principalId eq '%s'"):format(principal) },
    what = "role assignments of registry_identity " .. id }
  for _, a in ipairs(list) do
    local p = a.properties or {}
    local role = ids[(tostring(p.roleDefinitionId):match("([%x%-]+)$") or ""):lower()]
    local scope = tostring(p.scope or "")
    if role and (scope:match("^/subscriptions/[^/]+/?$") or scope:lower():match("^/subscriptions/[^/]+/resourcegroups/[^/]+/?$")
        or scope:lower():find("/providers/microsoft.containerregistry/registries/[^/]+$")) then
      return ("registry_identity %s (principal %s) holds %s at %s"):format(id:match("([^/]+)$"), principal, role, scope)
    end
  end
  fail("invalid_argument", ("%s: registry_identity %s (principal %s) has no AcrPull role on a registry: the service "
    .. "could not pull the image (ACR answers unauthorized). Give it AcrPull on the registry: "
    .. "hoist.azure.identity.assign{principal_id = %q, role = \"AcrPull\", scope = <registry id>}, or az role assignment "
    .. "create --assignee-object-id %s --assignee-principal-type ServicePrincipal --role AcrPull --scope <registry id>")
    :format(what, id, principal, principal, principal), { option = "registry_identity", principal = principal, exit_code = 2 })
end

-- The registry of the subscription that serves `server` (its loginServer): its id, or nil and
-- why not. Login servers are unique on Azure; where several registries answer at one (an
-- emulator), the one in `resource_group` is taken when it is alone there.
local function registry_at(server, ctx, resource_group)
  local list = require("hoist.azure").list { path = ("/subscriptions/%s/providers/Microsoft.ContainerRegistry/registries")
    :format(ctx.subscription), credential = ctx.credential, endpoint = ctx.endpoint,
    what = "the registries of subscription " .. ctx.subscription }
  local found, here = {}, {}
  for _, r in ipairs(list) do
    if type(r.properties) == "table" and tostring(r.properties.loginServer):lower() == server:lower() then
      found[#found + 1] = r.id
      if r.id:lower():find("/resourcegroups/" .. resource_group:lower() .. "/", 1, true) then here[#here + 1] = r.id end
    end
  end
  if #found == 1 then return found[1] end
  if #here == 1 then return here[1] end
  if #found == 0 then return nil, ("no registry of subscription %s has the login server %s"):format(ctx.subscription, server) end
  return nil, ("%d registries of subscription %s answer at %s, none alone in resource group %s"):format(#found,
    ctx.subscription, server, resource_group)
end

-- What a pull identity needs the deployer to do: create and attach it in the group, give it a
-- role on the registry (Owner or User Access Administrator there; Contributor may not).
local IDENTITY_ACTIONS = { "Microsoft.ManagedIdentity/userAssignedIdentities/write",
                           "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action" }
local ASSIGN_ACTION = "Microsoft.Authorization/roleAssignments/write"

--- The default pull credential that never expires, where the service pulls with a managed
--- identity (Container Apps, App Service): for an image in an ACR of the subscription, when
--- the deployer may create a user-assigned identity in the deploy's group and give it a role on
--- the registry (hoist.azure.identity.missing_actions: `userAssignedIdentities/write` and
--- `/assign/action` at the group, `roleAssignments/write` at the registry), the identity
--- `<name>-pull` is ensured there and given AcrPull on the registry (both idempotent) and
--- returned, with what was done; else nil and why not (the caller keeps its own default and
--- says so). Under --dry-run both are plan steps.
---@param what string names the target in messages
---@param o {name: string, service?: string, image: string, resource_group: string, registry_server?: string}
---@param ctx {credential: hoist.azure.Credential, subscription: string, endpoint?: string, location?: string, group_id: string}
---@return hoist.azure.identity.Identity|nil identity the identity (id, client_id, principal_id, ...)
---@return string how what was done, or why not
function M.ensure_identity(what, o, ctx)
  local server = o.registry_server or hoist.image.parse(o.image).registry
  if not server then return nil, ("the image %s names no registry"):format(tostring(o.image)) end
  local registry, why = registry_at(server, ctx, o.resource_group)
  if not registry then return nil, why end
  local identity = require "hoist.azure.identity"
  local where = { credential = ctx.credential, endpoint = ctx.endpoint }
  local lacking = {}
  for _, check in ipairs { { scope = ctx.group_id, actions = IDENTITY_ACTIONS }, { scope = registry, actions = { ASSIGN_ACTION } } } do
    local r = identity.missing_actions { scope = check.scope, actions = check.actions, credential = where.credential,
                                         endpoint = where.endpoint }
    for _, a in ipairs(r.missing) do lacking[#lacking + 1] = ("%s at %s"):format(a, check.scope) end
  end
  if #lacking > 0 then
    return nil, ("the deployer may not make a pull identity (it lacks %s; Owner or User Access Administrator on the "
      .. "registry gives the role assignment)"):format(table.concat(lacking, ", "))
  end
  local id = identity.ensure { name = o.name .. "-pull", resource_group = o.resource_group, location = ctx.location,
    tags = { ["hoist-service"] = o.service or o.name }, subscription = ctx.subscription, credential = ctx.credential,
    endpoint = ctx.endpoint }
  local rname = registry:match("([^/]+)$")
  if id.principal_id then
    identity.assign { principal_id = id.principal_id, role = "AcrPull", scope = registry, subscription = ctx.subscription,
                      credential = ctx.credential, endpoint = ctx.endpoint }
  end
  return id, ("the user-assigned identity %s (principal %s) with AcrPull on registry %s: a pull credential that "
    .. "never expires"):format(id.name, tostring(id.principal_id or "to be created"), rname)
end

--- The pull credential of an image when none was given: nil when the image's registry has no
--- Azure credential (a public image); the service principal's own client id and secret when
--- the credential is a client secret (ACR accepts them when it holds AcrPull); else refused,
--- naming the alternatives. Never an ACR refresh token.
---@param what string names the target in the error
---@param image string
---@param credential hoist.azure.Credential the run's credential
---@return {server: string, username: string, password: string}|nil
function M.default(what, image, credential)
  local server = hoist.image.parse(image).registry
  local ok, err = pcall(hoist.registry.acr_refresh_token, { registry = server })
  if not ok then
    if hoist.is_error(err, "invalid_argument") then return nil end -- no Azure credential for it: a public image
    error(err, 0)
  end
  local sp = credential and credential.service_principal and credential:service_principal()
  if sp then return { server = server, username = sp.client_id, password = sp.client_secret } end
  fail("invalid_argument", ("%s: no pull credential for %s that outlives the deploy: the Azure credential (%s) gives "
    .. "only short-lived tokens (an ACR refresh token lasts about 3 hours, and the service pulls again at every restart). "
    .. "Give registry_identity (a user-assigned identity with AcrPull on the registry), or registry_username/"
    .. "registry_password of an ACR token with a pull-only scope map"):format(what, server,
    tostring(credential and credential.source or "chain")), { registry = server, exit_code = 2 })
end

return M
