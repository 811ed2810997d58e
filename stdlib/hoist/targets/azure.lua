--- hoist.targets.azure: what the Azure targets (aci, appservice, containerapp) share.
---
--- `options` are the parameter specs every Azure target merges into its own `options` (one
--- name each: subscription, resource_group, location, name, credential, registry_identity);
--- `prepare` resolves the credential and the subscription and makes sure the resource group
--- exists and the resource provider is registered; `lock` is the ARM-side deploy lock.
---
--- The lock is a tag on the RESOURCE GROUP, `hoist-lock.<target>.<name> =
--- <run>:<host>:<pid>:<since>:<expiry>`, written with PATCH + If-Match on the group's ETag: of two
--- hosts that read the same ETag, one PATCH wins and the other gets 412 and reads again. The
--- group rather than the resource carries it because the resource comes and goes inside one
--- deploy (an ACI recreate deletes it; ACI's PUT replaces its tags), and a lock must outlive
--- both. Every write is read back, so a server that ignores If-Match still cannot give the
--- lock to two holders that both look at it after writing. See docs/azure.md, "The deploy lock".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: a lock not renewed for `ttl` seconds is taken over (its holder died); a holder
--- renews it every ttl/3 seconds while it deploys, so a slow deploy keeps it. `settle`: where
--- the group has no ETag, seconds between a write and its read-back (a rival that read the
--- same state writes within a round trip; the later write wins and the earlier sees it).
M.defaults = { ttl = 600, interval = 2, write_attempts = 20, settle = 1 }

--- The options every Azure target takes besides the common ones (hoist.targets.options).
M.options = {
  subscription = { type = "string", env = "AZURE_SUBSCRIPTION_ID",
                   pattern = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x",
                   hint = "a subscription id (a GUID: 8-4-4-4-12 hex digits)",
                   description = "Azure subscription id (default: AZURE_SUBSCRIPTION_ID, else the subscriptionId of AZURE_CREDENTIALS)" },
  resource_group = { type = "string", required = true, max_length = 90, pattern = "[%w_%(%)%.%-]*[%w_%(%)%-]",
                     hint = "a resource group name (letters, digits, '_', '(', ')', '.', '-'; not ending in '.')",
                     description = "Azure resource group (created in location when missing); required for an Azure target" },
  location = { type = "string", description = "Azure region (e.g. westeurope); default: the resource group's" },
  name = { type = "string", description = "Azure resource name (default: the service name)" },
  credential = { type = "string", description = "Azure credential source (client_secret, workload_identity, oidc, azure_pipelines, managed_identity, az_cli; default: the first that applies)" },
  registry_identity = { type = "string", description = "Managed identity that pulls the image instead of registry credentials: a user-assigned identity's resource id (containerapp also: \"system\")" },
}

--- Merges the Azure options into a target's own (the target's win), leaving out those named
--- in `without` (an option the target has no use for, e.g. App Service pulls with its own
--- identity switch, not `registry_identity`).
---@param own table<string, table>
---@param without? string[]
---@return table<string, table>
function M.merge_options(own, without)
  local out = {}
  for k, v in pairs(M.options) do out[k] = v end
  for _, k in ipairs(without or {}) do out[k] = nil end
  for k, v in pairs(own or {}) do out[k] = v end
  return out
end

--- Options of every Azure target that are not parameters: the Resource Manager endpoint and
--- a credential object (hoist.azure.credential{}) in place of a source name.
M.extra_options = { endpoint = "string", credential = "string|table" }

-- Azure's naming rules of each target's resource (the Azure resource naming rules page):
-- length, characters, what may begin and end it.
local NAME_RULES = {
  aci = { min = 1, max = 63, first = "[a-z0-9]", body = "[a-z0-9%-]", last = "[a-z0-9]",
          text = "1-63 lower-case letters, digits and '-', not beginning or ending with '-'" },
  containerapp = { min = 2, max = 32, first = "[a-z]", body = "[a-z0-9%-]", last = "[a-z0-9]", no_double_dash = true,
                   text = "2-32 lower-case letters, digits and '-', beginning with a letter, ending with a letter or digit, no '--'" },
  appservice = { min = 2, max = 60, first = "[%w]", body = "[%w%-]", last = "[%w]",
                 text = "2-60 letters, digits and '-', not beginning or ending with '-'" },
  azureml = { min = 3, max = 32, first = "[%a]", body = "[%w%-]", last = "[%w]",
              text = "3-32 letters, digits and '-', beginning with a letter, ending with a letter or digit" },
}

--- What is wrong with `name` as the resource name of Azure target `target`, or nil.
---@param target string "aci", "containerapp" or "appservice"
---@param name string
---@return string?
function M.name_problem(target, name)
  local r = NAME_RULES[target]
  if not r then return nil end
  local ok = type(name) == "string" and #name >= r.min and #name <= r.max and name:sub(1, 1):match(r.first) ~= nil
    and name:sub(-1):match(r.last) ~= nil and name:match("^" .. r.body .. "*$") ~= nil
    and not (r.no_double_dash and name:find("--", 1, true))
  if ok then return nil end
  return ("must be %s (Azure's rule for a %s name), got %q"):format(r.text, target, tostring(name))
end

-- Built-in roles a message may suggest, the narrowest first, with their permissions as Azure
-- defines them (Contributor's notActions cut to those of access management).
local SUGGESTED_ROLES = {
  { name = "Contributor", permissions = { { actions = { "*" }, notActions = { "Microsoft.Authorization/*/Delete",
    "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action" } } } },
  { name = "Owner", permissions = { { actions = { "*" } } } },
}

--- The built-in role that grants every action of `actions` ("Contributor", else "Owner").
--- Internal: the preflight's message.
---@param actions string[]
---@return string
function M.role_granting(actions)
  local identity = require "hoist.azure.identity"
  for _, r in ipairs(SUGGESTED_ROLES) do
    local all = true
    for _, a in ipairs(actions) do all = all and identity.granted(r.permissions, a) end
    if all then return r.name end
  end
  return "Owner"
end

-- The deployer's own permissions (hoist.azure.identity.missing_actions) at `scope`: its
-- check's line, or invalid_argument (exit 2) naming the principal, the scope, each missing
-- action and a built-in role that grants them. Where Azure does not list permissions (a cloud
-- without the API, a scope it does not take: 400 or 404), the line says they were not checked:
-- Azure's own AuthorizationFailed still names the action then.
local function check_actions(what, ctx, scope, actions)
  if #actions == 0 then return nil end
  local ok, r = util.try(require("hoist.azure.identity").missing_actions,
    { scope = scope, actions = actions, credential = ctx.credential, endpoint = ctx.endpoint })
  if not ok then
    if hoist.is_error(r, "not_found") or hoist.is_error(r, "invalid_argument") then
      return ("the deployer's permissions at %s were not checked (Azure did not list them: %s)"):format(scope, r.message)
    end
    error(r, 0)
  end
  local p = ctx.credential:principal()
  local who = ("the deploying principal (client id %s, object id %s)"):format(tostring(p.client_id), tostring(p.object_id))
  if #r.missing == 0 then
    return ("%s may perform the %d action(s) the deploy needs at %s"):format(who, #actions, scope)
  end
  local role = M.role_granting(r.missing)
  local why = r.no_role and ("holds no role at %s (Azure refused to list its permissions there), and the deploy needs")
    :format(scope) or ("may not perform at %s"):format(scope)
  fail("invalid_argument", ("%s: %s %s: %s. Azure would refuse the deploy with AuthorizationFailed after the build and "
    .. "push. Give it a role that grants them, e.g. %s: az role assignment create --assignee %s --role %s --scope %s")
    :format(what, who, why, table.concat(r.missing, ", "), role, tostring(p.object_id or p.client_id), role, scope),
    { missing_actions = r.missing, scope = scope, principal = p.object_id, client_id = p.client_id, role = role,
      no_role = r.no_role, exit_code = 2 })
end

--- The preflight of Azure target `target` (hoist.targets.define wraps it): the resource name
--- by Azure's rule, the credential (a token is fetched), the subscription, the resource group
--- (it exists, or `location` is given to create it), and the deployer's own permissions: the
--- actions `actions(o)` names at the group (at the subscription when the group is still to be
--- created), the group's write (the deploy lock is a tag on it), and `namespace`'s
--- registration when the provider is not registered yet. Reads only.
---@param target string
---@param namespace? string the target's resource provider, e.g. "Microsoft.ContainerInstance"
---@param actions? fun(o: table): string[] the actions the target's deploy performs in the group
---@return fun(o: table): string[]
function M.preflight_of(target, namespace, actions)
  return function(o)
    local what = "targets." .. target
    local name = o.name or o.service
    local problem = M.name_problem(target, name)
    if problem then
      fail("invalid_argument", ("%s: the resource name (option name, else service) %s"):format(what, problem),
        { option = o.name and "name" or "service", exit_code = 2 })
    end
    require("hoist.azure.pull").check(what, o) -- a pull secret that expires: refused before the build
    local ctx = M.context(what, o)
    local azure = require "hoist.azure"
    local checks = { ("credential %s: a token for subscription %s"):format(ctx.credential.source or "chain", ctx.subscription) }
    -- the identity that will pull holds AcrPull (else the service's pull fails after the build)
    checks[#checks + 1] = require("hoist.azure.pull").check_identity(what, o, ctx)
    local got = azure.resource_groups.get { name = ctx.resource_group, subscription = ctx.subscription,
                                            credential = ctx.credential, endpoint = ctx.endpoint }
    if got then
      checks[#checks + 1] = ("resource group %s exists (%s)"):format(ctx.resource_group, tostring(got.location))
    elseif o.location then
      checks[#checks + 1] = ("resource group %s will be created in %s"):format(ctx.resource_group, o.location)
    else
      fail("invalid_argument", ("%s: resource group %s does not exist in subscription %s; give location= to create it")
        :format(what, ctx.resource_group, ctx.subscription), { resource_group = ctx.resource_group, exit_code = 2 })
    end
    -- the deployer's own permissions (else Azure's AuthorizationFailed comes after the build and push)
    local need = { "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Resources/subscriptions/resourceGroups/write" }
    for _, a in ipairs(actions and actions(o) or {}) do need[#need + 1] = a end
    local sub_scope = "/subscriptions/" .. ctx.subscription
    local sub_need = {}
    if namespace then
      -- (a principal that may not read it is told by the permissions check below)
      local ok, p = util.try(azure.providers.get, { namespace = namespace, subscription = ctx.subscription,
                                                     credential = ctx.credential, endpoint = ctx.endpoint })
      if not ok and not hoist.is_error(p, "forbidden") then error(p, 0) end
      if ok and p.registrationState ~= "Registered" and p.registrationState ~= "Registering" then
        sub_need[1] = namespace .. "/register/action"
      end
    end
    if got then
      checks[#checks + 1] = check_actions(what, ctx, ctx.group_id, need)
      checks[#checks + 1] = check_actions(what, ctx, sub_scope, sub_need)
    else
      for _, a in ipairs(sub_need) do need[#need + 1] = a end
      checks[#checks + 1] = check_actions(what, ctx, sub_scope, need)
    end
    return checks
  end
end

--- `actions` with the attach of `o.registry_identity` (a user-assigned identity: Azure
--- checks Microsoft.ManagedIdentity/userAssignedIdentities/assign/action on it) when it is in
--- the deploy's resource group, the scope the preflight checks.
--- Internal: the Azure targets' `actions`.
---@param actions string[]
---@param o table the deploy options
---@return string[]
function M.identity_actions(actions, o)
  local id = o.registry_identity
  if id and id:lower() ~= "system" and type(o.resource_group) == "string"
      and id:lower():find("/resourcegroups/" .. o.resource_group:lower() .. "/", 1, true) then
    actions[#actions + 1] = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
  end
  return actions
end

-- the chain of the targets' calls without a credential: one per process, its tokens reused
local chain

--- The credential an option names: a hoist.azure.Credential as is, a source name
--- (hoist.azure.credential_of: one per source and process), or nil for the chain (one per
--- process: its tokens are cached).
---@param c? string|hoist.azure.Credential
---@return hoist.azure.Credential
function M.credential(c)
  local azure = require "hoist.azure"
  if c == nil then
    chain = chain or azure.credential()
    return chain
  end
  return azure.credential_of("hoist.targets.azure", c)
end

---------------------------------------------------------------- a group a failed first deploy made

-- The tag a group hoist creates carries: the run that created it. Only that run's
-- compensation may delete the group, and only while it is empty.
local T_CREATED = "hoist-created-by-run"
local created = {}     -- group id (lower case) -> the run of this process that created it
local compensated = {} -- "<group id> <run>" -> true once its compensation is registered

-- Registers "azure.delete_empty_group" with the run's pipeline context when this run created
-- the group (for its deploy lock or its deploy): a failed FIRST deploy leaves nothing behind.
-- Registered before the target's own compensations, it runs after them.
local function on_created_group(o, ctx, run)
  local gid = ctx.group_id:lower()
  if not (o.ctx and run and created[gid] == run) or compensated[gid .. " " .. run] then return end
  compensated[gid .. " " .. run] = true
  o.ctx:on_rollback("azure.delete_empty_group", {
    resource_group = ctx.resource_group, subscription = ctx.subscription, endpoint = ctx.endpoint, run = run,
    credential = type(o.credential) == "string" and o.credential or nil })
end

-- "<run>:<host>:..." of a lock tag value: its run.
local function lock_run(value) return type(value) == "string" and value:match("^(.-):[^:]+:%d+:%d+") or nil end

-- Deletes the group run `a.run` created, when it still is that run's, no other run holds a
-- deploy lock in it, and it holds no resource; else says why it stays. Idempotent.
local function delete_empty_group(a)
  local azure = require "hoist.azure"
  local where = { name = a.resource_group, subscription = a.subscription, credential = M.credential(a.credential),
                  endpoint = a.endpoint }
  local g = azure.resource_groups.get(where)
  if not g then return end
  local tags, why, level = g.tags or {}, nil, "info"
  if tags[T_CREATED] ~= a.run then
    why = ("run %s did not create it (%s = %s)"):format(a.run, T_CREATED, tostring(tags[T_CREATED]))
  end
  for k, v in pairs(tags) do
    local holder = k:match("^hoist%-lock%.") and lock_run(v)
    if not why and holder and holder ~= a.run then why = ("run %s holds its deploy lock %s"):format(holder, k) end
  end
  if not why then
    -- a group whose emptiness cannot be told stays, as it would have without this clean-up:
    -- said, not a failed rollback
    local ok, inside = pcall(azure.resource_groups.resources, where)
    if not ok then
      if hoist.is_error(inside, "cancelled") then error(inside, 0) end
      why, level = "could not list its resources: " .. (hoist.is_error(inside) and inside.message or tostring(inside)), "warn"
    elseif #inside > 0 then
      local names = {}
      for i, r in ipairs(inside) do if i <= 5 then names[i] = tostring(r.type) .. "/" .. tostring(r.name) end end
      why = ("it holds %d resource(s): %s"):format(#inside, table.concat(names, ", "))
    end
  end
  if why then
    hoist.log[level](("keeping resource group %s: %s"):format(a.resource_group, why), { resource_group = a.resource_group })
    return
  end
  where.poll_interval = 1
  azure.resource_groups.delete(where)
  hoist.log.info(("deleted resource group %s, which run %s created and left empty"):format(a.resource_group, a.run),
    { resource_group = a.resource_group, run = a.run })
end

--- The arguments azt.journal keeps for an Azure target's compensation: the spec each of them
--- extends with its own (`azt.journal_args { revision = "string" }`).
---@param extra? table<string, string|hoist.util.OptSpec>
---@return table<string, string|hoist.util.OptSpec>
function M.journal_args(extra)
  return require("hoist.util").spec({
    service = "string", name = { type = "string", required = true }, resource_group = { type = "string", required = true },
    subscription = "string", credential = "string", endpoint = "string", run = "string", lock_timeout = "number",
    state_dir = "string",
  }, extra)
end

hoist.pipeline.action("azure.delete_empty_group", delete_empty_group, { args = {
  resource_group = { type = "string", required = true }, subscription = "string", endpoint = "string",
  run = { type = "string", required = true }, credential = "string" } })

---@class hoist.targets.azure.Context
---@field credential hoist.azure.Credential
---@field subscription string
---@field resource_group string
---@field location string the group's region (or the one given)
---@field name string the Azure resource name
---@field group_id string "/subscriptions/<s>/resourceGroups/<rg>"
---@field endpoint? string the Resource Manager endpoint given (default: hoist.azure's)
---@field planned? boolean dry-run: the group would be created

local function resource_name_ok(v) return type(v) == "string" and v:match("^[%w][%w_.%-]*$") ~= nil end

--- Resolves where an Azure target works: credential, subscription, resource group (created
--- when missing, which needs `location`) and the registration of `namespace` (registered when
--- it is not, or a forbidden error saying exactly what an owner must run).
---@param what string who asks, for messages ("targets.aci")
---@param o {service?: string, name?: string, subscription?: string, resource_group?: string, location?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@param namespace? string resource provider, e.g. "Microsoft.ContainerInstance"
---@return hoist.targets.azure.Context
function M.prepare(what, o, namespace)
  local azure = require "hoist.azure"
  local ctx = M.context(what, o)
  local run = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id
  local where = { name = ctx.resource_group, subscription = ctx.subscription, credential = ctx.credential,
                  endpoint = ctx.endpoint }
  local got = azure.resource_groups.get(where)
  if got then
    ctx.location = ctx.location or got.location
    if o.location then
      where.location = o.location
      azure.resource_groups.ensure(where)
    end
  else
    if not o.location then
      fail("invalid_argument", ("%s: resource group %s does not exist in subscription %s; give location= to create it")
        :format(what, ctx.resource_group, ctx.subscription), { resource_group = ctx.resource_group })
    end
    where.location, where.tags = o.location, run and { [T_CREATED] = run } or nil
    local g, made = azure.resource_groups.ensure(where)
    ctx.planned = g.planned
    if made and not g.planned and run then created[ctx.group_id:lower()] = run end
  end
  on_created_group(o, ctx, run)
  if namespace then
    azure.providers.ensure { namespace = namespace, subscription = ctx.subscription, credential = ctx.credential,
                             endpoint = ctx.endpoint, poll_interval = 1 }
  end
  return ctx
end

--- Like prepare, but changes nothing and reads nothing: the names only (status, remove).
---@param what string
---@param o table
---@return hoist.targets.azure.Context
function M.context(what, o)
  local azure = require "hoist.azure"
  if type(o) ~= "table" then
    fail("invalid_argument", ("%s: expected {service=, resource_group=, ...}, got %s"):format(what, type(o)))
  end
  if type(o.resource_group) ~= "string" or o.resource_group == "" then
    fail("invalid_argument", ("%s: option 'resource_group' is required (the Azure resource group to deploy in)"):format(what),
      { option = "resource_group" })
  end
  local name = o.name or o.service
  if not resource_name_ok(name) then
    fail("invalid_argument", ("%s: the Azure resource name must be [A-Za-z0-9][A-Za-z0-9_.-]*, got %s (option name, else service)")
      :format(what, tostring(name)), { option = "name" })
  end
  local c = M.credential(o.credential)
  local sub = azure.subscription(o.subscription, c)
  return { credential = c, subscription = sub, resource_group = o.resource_group, location = o.location, name = name,
           endpoint = o.endpoint, group_id = azure.resource_id(sub, o.resource_group) }
end

---------------------------------------------------------------- what the targets share

--- A target's deploy options, checked (hoist.targets.check_options with the target's `own`
--- specs; `endpoint` and a credential object allowed too) and completed: `name` (default: the
--- service), `run` (default: ctx's run, else hoist.run.id), `state_dir` (absolute).
---@param fname string e.g. "hoist.targets.appservice.deploy"
---@param opts any
---@param own table<string, table> the target's `options`
---@return table
function M.deploy_options(fname, opts, own)
  local o = require("hoist.targets").check_options(fname, opts, own, M.extra_options)
  o.name = o.name or o.service
  o.run = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id
  o.state_dir = hoist.fs.absolute(o.state_dir or hoist.run.state_dir or ".hoist")
  return o
end

--- The JSON-safe arguments of an Azure target's compensation: what a later process (`hoist
--- rollback <id>`) needs to find the resource and take its deploy lock. A credential object
--- cannot be journaled: only a source name is kept (else the rollback uses the chain).
---@param o {service: string, name?: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, run?: string, lock_timeout?: number, state_dir?: string}
---@return table
function M.journal(o)
  return { service = o.service, name = o.name or o.service, resource_group = o.resource_group,
           subscription = o.subscription, credential = type(o.credential) == "string" and o.credential or nil,
           endpoint = o.endpoint, run = o.run, lock_timeout = o.lock_timeout, state_dir = o.state_dir }
end

--- Runs `fn(...)` holding the ARM-side deploy lock of `target`'s resource that `a` names
--- (deploy options or journaled arguments: service, name, run, lock_timeout, resource_group,
--- subscription, credential, endpoint; with `location` the group is created for the lock when
--- missing), released however `fn` ends.
---@param target string the target's name ("appservice")
---@param a table
---@param fn function
---@return any ...
function M.holding(target, a, fn, ...)
  local h = M.lock { target = target, service = a.service or a.name, name = a.name, run = a.run, timeout = a.lock_timeout,
                     location = a.location, resource_group = a.resource_group, subscription = a.subscription,
                     credential = a.credential, endpoint = a.endpoint }
  return require("hoist.targets.lock").holding(h, fn, ...)
end

--- A target's remove: `fn(ctx)` (ctx: hoist.targets.azure.Context) holding the deploy lock,
--- run as "teardown" outside a run. When the resource group does not exist there is nothing
--- to lock nor to remove: `fn` runs without the lock (its reads find nothing).
---@param target string
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, lock_timeout?: number}
---@param fn fun(ctx: hoist.targets.azure.Context): any
---@return any
function M.removing(target, opts, fn)
  local c = M.context(("targets.%s.remove"):format(target), opts)
  if not util.dry_run() and not require("hoist.azure").resource_groups.get {
      name = c.resource_group, subscription = c.subscription, credential = c.credential, endpoint = c.endpoint } then
    return fn(c)
  end
  return M.holding(target, { service = opts.service, name = c.name, run = hoist.run.id or "teardown",
    lock_timeout = opts.lock_timeout, resource_group = c.resource_group, subscription = c.subscription,
    credential = c.credential, endpoint = c.endpoint }, fn, c)
end

--- The `lock(opts)` member of the Azure target `name` (hoist.targets.lock(name, opts) calls
--- it; container@1 holds it for a whole run): M.lock with `target = name`.
--- Internal: how the aci, appservice and containerapp targets get their `lock` member.
---@param name string
---@return fun(opts: hoist.targets.azure.LockOptions): hoist.targets.Lock
function M.lock_of(name)
  return function(opts)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.target = name
    return M.lock(o)
  end
end

--- The targets' test hook (hoist.targets.test_pause), here for the Azure targets.
--- Internal: see hoist.targets.test_pause.
M.test_pause = function(variable, what) return require("hoist.targets").test_pause(variable, what) end

---------------------------------------------------------------- the ARM-side deploy lock

---@class hoist.targets.azure.LockOptions: hoist.targets.LockOptions
---@field resource_group string
---@field subscription? string
---@field credential? string|hoist.azure.Credential
---@field name? string the resource name (default: service)
---@field location? string creates the group when it is missing
---@field ttl? number seconds a lock lives without renewal (default 600)
---@field endpoint? string the Resource Manager endpoint (default: hoist.azure's)

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

-- "<run>:<host>:<pid>:<since>:<expiry>" (before since was kept: "<run>:<host>:<pid>:<expiry>")
-- -> a hoist.targets.LockHolder; nil when it is not one of ours
local function parse(value)
  if type(value) ~= "string" then return nil end
  local run, host, pid, since, expiry = value:match("^(.+):([^:]+):(%d+):(%d+):(%d+)$")
  if not run then run, host, pid, expiry = value:match("^(.+):([^:]+):(%d+):(%d+)$") end
  if not run then return nil end
  return { run = run, host = host, pid = tonumber(pid), since = since and iso(tonumber(since)), expires = tonumber(expiry),
           stamp = value, note = "lock valid until " .. iso(tonumber(expiry)) }
end

local function value_for(l, me)
  return ("%s:%s:%d:%d:%d"):format(me.run, me.host, me.pid, me.started, os.time() + l.ttl)
end

-- The group with its tags and ETag; nil when the group is gone (a compensation deleted the
-- group this run created: the lock went with it).
local function read_group(l)
  local r = require("hoist.azure").request { path = l.group, credential = l.credential, endpoint = l.endpoint,
                                             what = "read the deploy lock " .. l.tag, missing_ok = true }
  if r then return r.body or {}, r.headers.etag end
end

local function is_precondition_failed(e)
  return hoist.is_error(e, "conflict") and type(e.details) == "table" and e.details.status == 412
end

-- Writes tags[tag] = value (nil: removes it) if the group's ETag is still `etag`; true when
-- written and read back, false when another writer came first.
local function write(l, tags, etag, value)
  local t = {}
  for k, v in pairs(tags or {}) do t[k] = v end
  t[l.tag] = value
  local ok, e = pcall(require("hoist.azure").request, {
    method = "PATCH", path = l.group, credential = l.credential, endpoint = l.endpoint, body = { tags = t },
    headers = etag and { ["If-Match"] = etag } or nil, what = "write the deploy lock " .. l.tag, action = "azure.lock" })
  if not ok then
    if is_precondition_failed(e) then return false end
    error(e, 0)
  end
  -- No ETag (a server without them): last writer wins, so wait until a writer that read the
  -- same state has written too, then see who won.
  if not etag then hoist.sleep(M.defaults.settle) end
  local after = read_group(l)
  return after ~= nil and ((after.tags or {})[l.tag]) == value
end

-- Renews (new expiry) or removes our tag; false when the tag is another holder's.
local function rewrite(l, me, remove)
  for _ = 1, M.defaults.write_attempts do
    local g, etag = read_group(l)
    if not g then return remove end -- the group is gone, and the lock with it
    local tags = g.tags or {}
    local h = parse(tags[l.tag])
    if not h or h.run ~= me.run or h.host ~= me.host or h.pid ~= me.pid then return false end
    if write(l, tags, etag, not remove and value_for(l, me) or nil) then return true end
  end
  return false
end

-- The lock backend (hoist.targets.lock) of a tag on the resource group, guarded by its ETag.
local function arm_backend(l)
  local b = { key = l.key, slot = ("arm:%s/%s"):format(l.group:lower(), l.tag), ttl = l.ttl, interval = M.defaults.interval,
              fields = { tag = l.tag, resource_group = l.resource_group } }
  function b.describe() return ("tag %s on resource group %s"):format(l.tag, l.resource_group) end
  function b.try(_, me, may_take)
    local g, etag = read_group(l)
    if not g then
      if not l.location then
        fail("not_found", ("%s: resource group %s does not exist (it holds the deploy lock); give location= to create it")
          :format(l.what, l.resource_group), { resource_group = l.resource_group })
      end
      M.prepare(l.what, l.opts)
      g, etag = read_group(l)
      if not g then return false, nil end
    end
    local tags = g.tags or {}
    local h = parse(tags[l.tag])
    if h and not may_take(h) then return false, h end
    if not write(l, tags, etag, value_for(l, me)) then return false, nil end
    return true, h
  end
  function b.renew(_, me) return rewrite(l, me, false) end
  function b.release(_, me) return rewrite(l, me, true) end
  return b
end

--- Takes the ARM-side deploy lock of (target, Azure resource): a tag on the resource group,
--- `hoist-lock.<target>.<name> = <run>:<host>:<pid>:<since>:<expiry>`, guarded by the
--- group's ETag, over the one algorithm of hoist.targets.lock (waiting with a message naming
--- the holder, conflict after `timeout`, take-over of a dead or expired holder, renewal every
--- ttl/3, release outside a cancelled scope). `release()` removes the tag. Under dry-run
--- nothing is locked.
---@param opts hoist.targets.azure.LockOptions
---@return hoist.targets.Lock
function M.lock(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "hoist.targets.azure.lock: expected {target=, service=, resource_group=, ...}") end
  if type(opts.target) ~= "string" or not opts.target:match("^[%w][%w_.%-]*$") then
    fail("invalid_argument", ("hoist.targets.azure.lock: target must be a name, got %s"):format(tostring(opts.target)))
  end
  local what = "targets." .. opts.target .. ".lock"
  local timeout = opts.timeout == nil and require("hoist.targets.lock").defaults.timeout or opts.timeout
  if type(timeout) ~= "number" or timeout < 0 then
    fail("invalid_argument", ("%s: timeout must be a number of seconds >= 0, got %s"):format(what, tostring(timeout)))
  end
  local ctx = M.context(what, opts)
  local l = { key = opts.target .. "/" .. ctx.name, what = what, ttl = opts.ttl or M.defaults.ttl,
              tag = ("hoist-lock.%s.%s"):format(opts.target, ctx.name), group = ctx.group_id,
              resource_group = ctx.resource_group, credential = ctx.credential, endpoint = ctx.endpoint,
              location = opts.location, opts = opts }
  return require("hoist.targets.lock").take(arm_backend(l), { run = opts.run, timeout = timeout, what = what })
end

return M
