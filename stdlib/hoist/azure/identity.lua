--- hoist.azure.identity: what a workflow sets up by hand with `az identity create`, `az
--- identity federated-credential create` and `az role assignment create`, each ensured (it
--- exists with the right values, or is created or corrected; nothing changes when it already
--- is right), planned under --dry-run, and the checks the targets make before a deploy: which
--- role a principal lacks at a scope, named exactly, and which actions the deployer itself may
--- not perform there (its effective permissions, as Azure evaluates them). See docs/azure.md,
--- "Identity and access".
local util = require "hoist.util"

local fail = util.fail

local M = {}

local function azure() return require "hoist.azure" end

local common = { subscription = "string", credential = "table|string", endpoint = "string" }
local function spec(extra) return util.spec(common, extra) end

local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- GitHub Actions' OIDC issuer, the default of federated().
M.GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
--- The audience Entra expects in a federated token.
M.AUDIENCE = "api://AzureADTokenExchange"

--- Roles that include every other one's permissions at their scope (a role a check asks for is
--- also held through them), besides the role itself. Contributor does not grant access
--- management: it does not stand in for Owner or User Access Administrator.
local COVERING = { Owner = { "*" }, Contributor = { except = { Owner = true, ["User Access Administrator"] = true } } }

local function where(fname, o)
  local c = azure().credential_of(fname, o.credential)
  return c, azure().subscription(o.subscription, c)
end

local function random_guid()
  local b = {}
  for i = 1, 16 do b[i] = math.random(0, 255) end
  b[7] = (b[7] % 16) + 0x40
  b[9] = (b[9] % 64) + 0x80
  local h = {}
  for i = 1, 16 do h[i] = ("%02x"):format(b[i]) end
  local s = table.concat(h)
  return ("%s-%s-%s-%s-%s"):format(s:sub(1, 8), s:sub(9, 12), s:sub(13, 16), s:sub(17, 20), s:sub(21, 32))
end

---@class hoist.azure.identity.Identity
---@field id string
---@field name string
---@field client_id string
---@field principal_id string the object id role assignments name
---@field tenant_id string
---@field changed boolean created by this call
---@field planned? boolean dry run: what would be created

--- Ensures a user-assigned managed identity (`az identity create`): returns it, created when
--- missing (in `location`, default the group's).
---@param opts {name: string, resource_group: string, location?: string, tags?: table<string, string>, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.identity.Identity
function M.ensure(opts)
  local fname = "hoist.azure.identity.ensure"
  local o = util.check_opts(fname, opts, spec { name = { type = "string", required = true, pattern = "[%w][%w_%-]*",
      hint = "3-128 letters, digits, '-' and '_' starting with a letter or digit", max_length = 128 },
    resource_group = { type = "string", required = true }, location = "string", tags = "table" })
  local c, sub = where(fname, o)
  local id = azure().resource_id(sub, o.resource_group, "Microsoft.ManagedIdentity/userAssignedIdentities", o.name)
  local function shaped(body, changed)
    local p = body.properties or {}
    return { id = body.id or id, name = o.name, client_id = p.clientId, principal_id = p.principalId, tenant_id = p.tenantId,
             changed = changed, planned = body.planned }
  end
  local got = azure().call(c, o, { method = "GET", path = id, missing_ok = true, what = "managed identity " .. o.name })
  if got and got.body then return shaped(got.body, false) end
  local location = o.location
  if not location then
    local rg = azure().resource_groups.get { name = o.resource_group, subscription = sub, credential = c, endpoint = o.endpoint }
    if not rg then
      fail("not_found", ("%s: resource group %s does not exist in subscription %s"):format(fname, o.resource_group, sub),
        { resource_group = o.resource_group })
    end
    location = rg.location
  end
  local r = azure().call(c, o, { method = "PUT", path = id, body = { location = location, tags = o.tags },
                                 action = "azure.identity.ensure", what = "create managed identity " .. o.name })
  hoist.log.event("azure.identity.created", ("managed identity %s %s"):format(o.name,
    util.dry_run() and "would be created" or "created"), { identity = id })
  return shaped((r and r.body) or { planned = true }, true)
end

--- A GitHub Actions OIDC subject: `repo:OWNER/REPO:ref:refs/heads/BRANCH`, `...:environment:ENV`,
--- `...:pull_request` or `...:ref:refs/tags/TAG`, what a federated credential's subject must be.
---@param opts {repo: string, branch?: string, environment?: string, pull_request?: boolean, tag?: string}
---@return string
function M.github_subject(opts)
  local fname = "hoist.azure.identity.github_subject"
  local o = util.check_opts(fname, opts, { repo = { type = "string", required = true, pattern = "[%w_.%-]+/[%w_.%-]+",
      hint = "OWNER/REPO" }, branch = "string", environment = "string", pull_request = "boolean", tag = "string" })
  local n = (o.branch and 1 or 0) + (o.environment and 1 or 0) + (o.pull_request and 1 or 0) + (o.tag and 1 or 0)
  if n ~= 1 then fail("invalid_argument", fname .. ": give exactly one of branch, environment, pull_request, tag") end
  local base = "repo:" .. o.repo
  if o.branch then return base .. ":ref:refs/heads/" .. o.branch end
  if o.tag then return base .. ":ref:refs/tags/" .. o.tag end
  if o.environment then return base .. ":environment:" .. o.environment end
  return base .. ":pull_request"
end

--- Ensures a federated identity credential on a user-assigned identity (`az identity
--- federated-credential create`): a token of `issuer` (default GitHub Actions') whose subject
--- is `subject` signs in as the identity. Returns {id, changed} (changed: created or corrected).
---@param opts {identity: string, resource_group: string, name: string, subject: string, issuer?: string, audience?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return {id: string, changed: boolean, planned?: boolean}
function M.federated(opts)
  local fname = "hoist.azure.identity.federated"
  local o = util.check_opts(fname, opts, spec { identity = { type = "string", required = true },
    resource_group = { type = "string", required = true },
    name = { type = "string", required = true, pattern = "[%w][%w_%-]*", max_length = 120,
             hint = "3-120 letters, digits, '-' and '_' starting with a letter or digit" },
    subject = { type = "string", required = true }, issuer = { type = "string", default = M.GITHUB_ISSUER, pattern = "https://.+",
      hint = "an https URL" }, audience = { type = "string", default = M.AUDIENCE } })
  local c, sub = where(fname, o)
  local id = azure().resource_id(sub, o.resource_group, "Microsoft.ManagedIdentity/userAssignedIdentities", o.identity,
    "federatedIdentityCredentials", o.name)
  local want = { issuer = o.issuer, subject = o.subject, audiences = { o.audience } }
  local got = azure().call(c, o, { method = "GET", path = id, missing_ok = true,
                                   what = ("federated credential %s of %s"):format(o.name, o.identity) })
  local p = got and got.body and got.body.properties
  if p and p.issuer == want.issuer and p.subject == want.subject and type(p.audiences) == "table"
      and #p.audiences == 1 and p.audiences[1] == o.audience then
    return { id = id, changed = false }
  end
  local r = azure().call(c, o, { method = "PUT", path = id, body = { properties = want }, action = "azure.identity.federated",
                                 what = ("%s federated credential %s of %s (issuer %s, subject %s)"):format(
                                   p and "correct" or "create", o.name, o.identity, o.issuer, o.subject) })
  return { id = id, changed = true, planned = (r == nil or r.planned) or nil }
end

local role_ids = {} -- "<sub>\n<name>" -> role definition id (the built-in ones are the same everywhere)

--- The id of the role named `role` ("AcrPull", "Contributor", ...) as role assignments name
--- it (/subscriptions/<sub>/providers/Microsoft.Authorization/roleDefinitions/<guid>).
--- Raises not_found naming the role when there is none by that name.
---@param opts {role: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return string
function M.role_id(opts)
  local fname = "hoist.azure.identity.role_id"
  local o = util.check_opts(fname, opts, spec { role = { type = "string", required = true } }, "role")
  local c, sub = where(fname, o)
  local key = sub .. "\n" .. o.role:lower()
  if role_ids[key] then return role_ids[key] end
  local list = azure().list { path = ("/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions"):format(sub),
    credential = c, endpoint = o.endpoint, query = { ["$filter"] = ("roleName eq '%s'"):format(o.role:gsub("'", "''")) },
    what = "role definition " .. o.role }
  local found = list[1]
  if not found then
    fail("not_found", ("%s: no role named %q in subscription %s"):format(fname, o.role, sub), { role = o.role })
  end
  role_ids[key] = ("/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s"):format(sub, found.name)
  return role_ids[key]
end

-- The role definition's guid, lower-cased.
local function guid_of(id) return (tostring(id):match("([%x%-]+)$") or ""):lower() end

-- The role assignments of `principal` at `scope` and above it (Azure's atScope() does not
-- take a principal filter: the principal's are listed at the scope, which includes those
-- inherited from above).
local function assignments(c, o, principal, scope)
  return azure().list { path = scope .. "/providers/Microsoft.Authorization/roleAssignments", credential = c,
    endpoint = o.endpoint, query = { ["$filter"] = ("principalId eq '%s'"):format(principal) },
    what = ("role assignments of %s at %s"):format(principal, scope) }
end

local function above(scope, at)
  local s, a = scope:lower(), at:lower():gsub("/+$", "")
  return s == a or s:sub(1, #a + 1) == a .. "/"
end

--- Ensures `principal_id` holds `role` at `scope` (`az role assignment create --assignee-object-id
--- ... --role ... --scope ...`); an assignment of that role at the scope itself counts, one
--- inherited from above does not (ask for the scope you mean). Returns {id, changed,
--- assignment} (the role assignment as Azure returns it).
---@param opts {principal_id: string, role: string, scope: string, principal_type?: "ServicePrincipal"|"User"|"Group", subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return {id?: string, changed: boolean, assignment?: table, planned?: boolean}
function M.assign(opts)
  local fname = "hoist.azure.identity.assign"
  local o = util.check_opts(fname, opts, spec { principal_id = { type = "string", required = true, pattern = GUID:sub(2, -2),
      hint = "an object id (a GUID)" }, role = { type = "string", required = true },
    scope = { type = "string", required = true, pattern = "/subscriptions/.+", hint = "a resource id (/subscriptions/...)" },
    principal_type = { type = "string", default = "ServicePrincipal", allowed = { "ServicePrincipal", "User", "Group" } } })
  local c = where(fname, o)
  local role = M.role_id { role = o.role, subscription = o.subscription or o.scope:match("^/subscriptions/([^/]+)"),
                           credential = c, endpoint = o.endpoint }
  for _, a in ipairs(assignments(c, o, o.principal_id, o.scope)) do
    local p = a.properties or {}
    if guid_of(p.roleDefinitionId) == guid_of(role) and tostring(p.scope or ""):lower():gsub("/+$", "")
        == o.scope:lower():gsub("/+$", "") then
      return { id = a.id, changed = false, assignment = a }
    end
  end
  local what = ("give %s the role %s at %s"):format(o.principal_id, o.role, o.scope)
  local ok, r = pcall(azure().call, c, o, { method = "PUT", action = "azure.identity.assign", what = what,
    path = o.scope .. "/providers/Microsoft.Authorization/roleAssignments/" .. random_guid(),
    body = { properties = { roleDefinitionId = role, principalId = o.principal_id, principalType = o.principal_type } } })
  if not ok then
    -- another run made it meanwhile
    if hoist.is_error(r, "conflict") and tostring(r.message):find("RoleAssignmentExists", 1, true) then
      return { changed = false }
    end
    error(r, 0)
  end
  hoist.log.event("azure.identity.assigned", what, { principal = o.principal_id, role = o.role, scope = o.scope })
  return { id = r and r.body and r.body.id, changed = true, assignment = r and r.body, planned = (r == nil or r.planned) or nil }
end

---@class hoist.azure.identity.Need
---@field role string the role's name ("AcrPull")
---@field scope string the resource id it is needed at
---@field why? string what needs it, for the message ("the container group pulls from myacr")

--- The roles `principal_id` lacks among `need`: each {role, scope, why} that no assignment of
--- that role (or of Owner; or of Contributor, for a role that does not manage access) at the
--- scope or above it gives. {} when it has them all. Reads role assignments only.
---@param opts {principal_id: string, need: hoist.azure.identity.Need[], subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.identity.Need[]
function M.missing(opts)
  local fname = "hoist.azure.identity.missing"
  local o = util.check_opts(fname, opts, spec { principal_id = { type = "string", required = true },
    need = { type = "table", required = true } })
  local c = where(fname, o)
  local out = {}
  local by_scope = {}
  for i, n in ipairs(o.need) do
    if type(n) ~= "table" or type(n.role) ~= "string" or type(n.scope) ~= "string" then
      fail("invalid_argument", ("%s: need[%d] must be {role = <name>, scope = <resource id>}"):format(fname, i))
    end
    local sub = n.scope:match("^/subscriptions/([^/]+)")
    by_scope[n.scope] = by_scope[n.scope] or assignments(c, o, o.principal_id, n.scope)
    local held = false
    for _, a in ipairs(by_scope[n.scope]) do
      local p = a.properties or {}
      if above(n.scope, tostring(p.scope or "")) then
        local g = guid_of(p.roleDefinitionId)
        for _, name in ipairs { n.role, "Owner", "Contributor" } do
          local cover = COVERING[name]
          local counts = name == n.role or (cover and (cover[1] == "*" or not (cover.except or {})[n.role]))
          if counts and g == guid_of(M.role_id { role = name, subscription = sub, credential = c, endpoint = o.endpoint }) then
            held = true
          end
        end
      end
    end
    if not held then out[#out + 1] = { role = n.role, scope = n.scope, why = n.why } end
  end
  return out
end


---------------------------------------------------------------- the caller's own permissions

-- Azure's action wildcard as a Lua pattern: '*' stands for any run of characters ('/' too).
local function action_pattern(p)
  return "^" .. p:lower():gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$"
end

local function any_matches(list, action)
  for _, p in ipairs(type(list) == "table" and list or {}) do
    if type(p) == "string" and action:match(action_pattern(p)) then return true end
  end
  return false
end

--- Whether `permissions` (the entries of Azure's Permissions - List: `{actions, notActions}`,
--- one per role the caller holds) grant `action`, as Azure evaluates them: an entry grants it
--- when one of its `actions` matches and none of its `notActions` does ('*' stands for any run
--- of characters, '/' included; no case). A notAction takes away from its own entry only:
--- Contributor's `Microsoft.Authorization/*/Write` does not undo what User Access
--- Administrator grants.
---@param permissions {actions?: string[], notActions?: string[]}[]
---@param action string e.g. "Microsoft.Web/sites/write"
---@return boolean
function M.granted(permissions, action)
  local a = action:lower()
  for _, p in ipairs(permissions or {}) do
    if type(p) == "table" and any_matches(p.actions, a) and not any_matches(p.notActions, a) then return true end
  end
  return false
end

---@class hoist.azure.identity.MissingActions
---@field missing string[] the actions of `actions` not granted at the scope, in their order
---@field no_role boolean Azure refused to list the permissions (403): the caller holds no role at the scope
---@field scope string

--- The actions among `actions` the CALLER (the credential's principal) may not perform at
--- `scope` (a subscription, resource group or resource id), from Azure's own answer
--- (`GET {scope}/providers/Microsoft.Authorization/permissions`: the caller's effective
--- permissions, roles held through groups and custom roles included). When Azure refuses that
--- call (403: no role at the scope), every action is missing and `no_role` is true. Reads only.
---@param opts {scope: string, actions: string[], credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.identity.MissingActions
function M.missing_actions(opts)
  local fname = "hoist.azure.identity.missing_actions"
  local o = util.check_opts(fname, opts, spec { scope = { type = "string", required = true, pattern = "/subscriptions/.+",
      hint = "a subscription, resource group or resource id" }, actions = { type = "table", required = true } })
  for i, a in ipairs(o.actions) do
    if type(a) ~= "string" or not a:match("^[%w%.]+/.+") then
      fail("invalid_argument", ("%s: actions[%d] must be an action like Microsoft.Web/sites/write, got %s")
        :format(fname, i, tostring(a)))
    end
  end
  local c = azure().credential_of(fname, o.credential)
  local scope = o.scope:gsub("/+$", "")
  local ok, list = util.try(azure().list, { path = scope .. "/providers/Microsoft.Authorization/permissions",
    api_version = "2022-04-01", credential = c, endpoint = o.endpoint, what = "the caller's permissions at " .. scope })
  if not ok then
    if not hoist.is_error(list, "forbidden") then error(list, 0) end
    local all = {}
    for i, a in ipairs(o.actions) do all[i] = a end
    return { missing = all, no_role = true, scope = scope }
  end
  local missing = {}
  for _, a in ipairs(o.actions) do
    if not M.granted(list, a) then missing[#missing + 1] = a end
  end
  return { missing = missing, no_role = false, scope = scope }
end

return M
