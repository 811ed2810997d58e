--- hoist.targets.containerapp: deploys a container to Azure Container Apps as a new revision,
--- with a canary.
---
--- The app runs in Multiple revision mode with external ingress on `container_port`. A first
--- deploy creates the group, the environment and the app. A later deploy adds a revision
--- (suffix from the run id) with no traffic, waits until it is provisioned, healthy and has
--- running replicas (fails fast, with its system and console logs, when it is unhealthy),
--- gives it `canary` percent of the traffic, checks the new revision on its own hostname
--- (`<app>--<suffix>.<domain>`) and samples the app's hostname at that share, then moves all
--- traffic to it. The previous revision stays active (a rollback is one traffic change).
---
--- Compensation "containerapp.traffic_back" (journaled before the change; `hoist rollback
--- <id>` runs it from a later process): traffic back to the previous revision, the new one
--- deactivated; or, after a first deploy, the app deleted.
---
--- Where it works (credential, subscription, the resource group created in `location` when
--- missing, Microsoft.App registered) and the deploy lock come from hoist.targets.azure: the
--- lock is ARM-side (a tag on the resource group), so two hosts cannot deploy one app at once.
local M = {}

M.name = "containerapp"

local azt = require "hoist.targets.azure"
local util = require "hoist.util"
local fail, dry_run = util.fail, util.dry_run

--- The options only this target takes, with those of every Azure target (hoist.targets.azure).
M.options = azt.merge_options {
  environment = { type = "string", description = "Managed environment name or id (default <name>-env, created when missing)" },
  canary = { type = "number", default = 20, min = 0, max = 99, description = "Percent of traffic the new revision gets before all of it (0: none)" },
  registry_server = { type = "string", description = "Registry the app pulls from (default: the image's)" },
  registry_username = { type = "string", description = "Registry user" },
  registry_password = { type = "string", secret = true, description = "Registry password (kept as an app secret)" },
  revision_timeout = { type = "number", default = 600, min = 1, description = "Seconds a new revision gets to become healthy" },
}

--- The named rollback actions deploy registers.
M.compensations = { "containerapp.traffic_back" }

local function svc() return require "hoist.azure.containerapp" end

-- The app `o` names (deploy options, a compensation's arguments resolved, a target context),
-- with `extra` fields (revision, weights, body, ...).
local function ref_of(o, extra)
  local r = { resource_group = o.resource_group, name = o.name, subscription = o.subscription, credential = o.credential,
              endpoint = o.endpoint }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

---------------------------------------------------------------- compensation

-- Moves the traffic back over the app as it is once no operation runs on it (`app`).
local function traffic_back_over(a, r, app)
  local s = svc()
  if not app then return end
  if not a.previous then
    s.delete(r)
    hoist.log.event("containerapp.restored", ("deleted %s, which this run created"):format(a.name), { name = a.name })
    return
  end
  local weights, other = {}, false
  for _, rev in ipairs(s.revisions(r)) do
    local w = rev.properties.trafficWeight or 0
    if w > 0 and rev.name ~= a.previous and rev.name ~= a.revision then other = rev.name end
    weights[rev.name] = w
  end
  if other then
    hoist.log.event("containerapp.superseded", ("not moving the traffic of %s: revision %s, deployed since, has some")
      :format(a.name, other), { name = a.name, revision = other })
    return
  end
  if weights[a.previous] ~= 100 then
    local prev = ref_of(r, { revision = a.previous })
    local got = s.revision(prev)
    if got and not got.properties.active then
      s.activate(prev)
      s.wait_revision(prev)
    end
    s.set_traffic(ref_of(r, { weights = { [a.previous] = 100 } }))
  end
  local new = a.revision and ref_of(r, { revision = a.revision })
  local got = new and s.revision(new)
  if got and got.properties.active then s.deactivate(new) end
  hoist.log.event("containerapp.restored", ("%s: all traffic on %s again, %s deactivated"):format(a.name, a.previous,
    tostring(a.revision)), { name = a.name, previous = a.previous, revision = a.revision })
end

-- traffic_back_over, once no operation runs on the app (a run cancelled while the PATCH of its
-- revision was being polled: Azure answers 409 AnotherOperationInProgress until it ends, and the
-- revision it creates would stay active beside the previous one).
local function traffic_back(a)
  -- the journal keeps a credential's source name only: else the chain
  local r = ref_of { resource_group = a.resource_group, name = a.name, subscription = a.subscription, endpoint = a.endpoint,
                     credential = azt.credential(a.credential) }
  return require("hoist.azure").when_settled({ what = "container app " .. a.name, timeout = a.timeout,
    get = function() return svc().get(r) end }, function(app) return traffic_back_over(a, r, app) end)
end

hoist.pipeline.action("containerapp.traffic_back", function(a) azt.holding(M.name, a, traffic_back, a) end,
  { args = azt.journal_args { revision = "string", previous = { type = "string|boolean", required = true } } })

---------------------------------------------------------------- deploy

local test_pause = azt.test_pause

local function options_of(opts)
  local o = azt.deploy_options("hoist.targets.containerapp.deploy", opts, M.options)
  if o.canary < 0 or o.canary >= 100 or o.canary ~= math.floor(o.canary) then
    fail("invalid_argument", ("targets.containerapp: canary must be a whole percent from 0 to 99, got %s"):format(o.canary))
  end
  return o
end

-- The template, secrets and registries of a revision running `image`.
local function template_of(o, image, suffix)
  local env, secrets = {}, {}
  for _, k in ipairs(util.sorted_keys(o.env)) do env[#env + 1] = { name = k, value = tostring(o.env[k]) } end
  for _, k in ipairs(util.sorted_keys(o.secret_env)) do
    local sname = ("env-%s"):format(k:lower():gsub("[^a-z0-9]", "-"))
    secrets[#secrets + 1] = { name = sname, value = hoist.secret(tostring(o.secret_env[k])) }
    env[#env + 1] = { name = k, secretRef = sname }
  end
  local registries = {}
  local server = o.registry_server or hoist.image.parse(image).registry
  if o.registry_password then
    require("hoist.azure.pull").check("targets.containerapp", o) -- kept for every later pull: must not expire
    secrets[#secrets + 1] = { name = "registry-password", value = o.registry_password }
    registries[1] = { server = server, username = o.registry_username, passwordSecretRef = "registry-password" }
  elseif o.registry_identity then
    registries[1] = { server = server, identity = o.registry_identity }
  end
  return { revisionSuffix = suffix, containers = { { name = o.name, image = image, env = env } } }, secrets, registries
end

-- The app's identity block with the pull identity `rid` (a user-assigned identity's id, or
-- "system") in it, keeping those the app has (`current`): Container Apps pulls only with an
-- identity assigned to the app. nil without `rid`.
local function with_identity(current, rid)
  if not rid then return nil end
  current = type(current) == "table" and current or {}
  local kinds, users = {}, {}
  if tostring(current.type or ""):lower():find("systemassigned", 1, true) or rid:lower() == "system" then
    kinds[1] = "SystemAssigned"
  end
  if type(current.userAssignedIdentities) == "table" then
    for k in pairs(current.userAssignedIdentities) do users[k] = {} end
  end
  if rid:lower() ~= "system" then users[rid] = {} end
  if next(users) then kinds[#kinds + 1] = "UserAssigned" end
  return { type = table.concat(kinds, ","), userAssignedIdentities = next(users) and users or nil }
end

local function suffix_of(run)
  return ("h" .. tostring(run):lower():gsub("[^a-z0-9]", "")):sub(1, 30)
end

local function verify_url(url, path, verify)
  if dry_run() or not url then return end
  verify = verify or {}
  return hoist.verify.http { url = url .. path, expect_status = 200, retries = verify.retries or 30,
                             interval = verify.interval or 1, timeout = verify.timeout or 10 }
end

-- Requests sent through the app's hostname while the canary has its share: each must hold.
local CANARY_SAMPLE = 20

-- The canary is judged on the new revision itself: first its own hostname
-- (`<app>--<suffix>.<domain>`), retried as the switch's check is, since the app's hostname
-- reaches the stable revision most of the time and a check there holds for a broken canary;
-- then a sample through the app's hostname at the canary's share, every answer counted, as
-- hoist.k8s.canary samples through its Service.
local function check_canary(o, rev, app_url)
  if dry_run() then return end
  local fqdn = rev and rev.properties and rev.properties.fqdn
  if type(fqdn) ~= "string" or fqdn == "" then
    fail("rollout_failed", ("revision %s has no hostname of its own (properties.fqdn): the canary cannot be checked")
      :format(tostring(rev and rev.name)), { revision = rev and rev.name })
  end
  local v = o.verify or {}
  hoist.verify.http { url = "https://" .. fqdn .. o.health_path, name = ("canary revision %s (GET https://%s%s)")
    :format(rev.name, fqdn, o.health_path), expect_status = 200, retries = v.retries or 30, interval = v.interval or 1,
    timeout = v.timeout or 10 }
  if not app_url then return end
  local checks = {}
  for i = 1, CANARY_SAMPLE do
    checks[i] = { url = app_url .. o.health_path, retries = 0, timeout = v.timeout or 10,
                  name = ("%s at the canary's %d%%, request %d of %d"):format(app_url .. o.health_path, o.canary, i,
                    CANARY_SAMPLE) }
  end
  hoist.verify.all { checks = checks, limit = 4 }
end

local function deploy(o)
  local jargs = azt.journal(o) -- before the credential is resolved: the journal keeps only its source name
  local where = azt.prepare("targets.containerapp", o, "Microsoft.App")
  o.credential, o.subscription, o.location = where.credential, where.subscription, o.location or where.location
  jargs.subscription = o.subscription
  local s = svc()
  local on_rollback = function(action, args) if o.ctx then o.ctx:on_rollback(action, args) end end
  local ref = ref_of(o)
  local image = o.image
  local digest = hoist.image.parse(image).digest
  local suffix = suffix_of(o.run)
  local revision = o.name .. "--" .. suffix
  if not (o.registry_password or o.registry_username or o.registry_identity) then
    -- no pull credential given: one that never expires where the deployer may make it
    local id, how = require("hoist.azure.pull").ensure_identity("targets.containerapp", o, where)
    o.registry_identity = id and id.id
    hoist.log.event("azure.pull_credential", ("%s: pulls %s with %s"):format(o.name, image, id and how
      or ("no credential (as before: the registry must allow it): " .. how)), { name = o.name, identity = id and id.id })
  end
  local template, secrets, registries = template_of(o, image, suffix)
  jargs.revision = revision
  local app = s.get(ref)
  local previous
  if not app then
    local env_id = o.environment or (o.name .. "-env")
    if not env_id:find("/", 1, true) then
      env_id = s.environment(ref_of(o, { name = env_id, location = o.location })).id
    end
    jargs.previous = false
    on_rollback("containerapp.traffic_back", jargs)
    local body = { location = o.location, tags = o.labels, identity = with_identity(nil, o.registry_identity),
      properties = { environmentId = env_id,
      configuration = { activeRevisionsMode = "Multiple", secrets = secrets, registries = registries,
                        ingress = { external = true, targetPort = o.container_port, transport = "auto",
                                    traffic = { { revisionName = revision, weight = 100 } } } },
      template = template } }
    app = s.put(ref_of(o, { body = body }))
    s.wait_revision(ref_of(o, { revision = revision, timeout = o.revision_timeout,
                                      port = o.container_port, image = image }))
  else
    for _, rev in ipairs(s.revisions(ref)) do
      local wgt = rev.properties.trafficWeight or 0
      if wgt > 0 and (not previous or wgt > previous.w) then previous = { name = rev.name, w = wgt } end
    end
    previous = previous and previous.name
    if previous == revision then
      fail("conflict", ("revision %s already serves: this run deployed it"):format(revision))
    end
    jargs.previous = previous or false
    on_rollback("containerapp.traffic_back", jargs)
    local traffic = previous and { { revisionName = previous, weight = 100 } } or nil
    local conf = { activeRevisionsMode = "Multiple", ingress = { external = true, targetPort = o.container_port,
                                                                 traffic = traffic } }
    if #secrets > 0 then conf.secrets = secrets end
    if #registries > 0 then conf.registries = registries end
    s.patch(ref_of(o, { body = { identity = with_identity(app.identity, o.registry_identity),
                                 properties = { configuration = conf, template = template } } }))
    test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "with revision " .. revision .. " created")
    local rev = s.wait_revision(ref_of(o, { revision = revision, timeout = o.revision_timeout,
                                      port = o.container_port, image = image }))
    app = s.get(ref) or app
    if previous and o.canary > 0 then
      s.set_traffic(ref_of(o, { weights = { [revision] = o.canary, [previous] = 100 - o.canary } }))
      check_canary(o, rev, s.url(app))
    end
    local weights = { [revision] = 100 }
    if previous then weights[previous] = 0 end
    s.set_traffic(ref_of(o, { weights = weights }))
    test_pause("HOIST_TEST_PAUSE_AFTER_SWITCH", "after all traffic went to " .. revision)
  end
  local url = s.url(app)
  verify_url(url, o.health_path, o.verify)
  hoist.log.event("containerapp.deployed", ("%s%s: revision %s serves %s (%s)"):format(dry_run() and "dry run: " or "",
    o.name, revision, image, tostring(url)), { name = o.name, revision = revision, image = image })
  return { service = o.service, url = url, image = image, digest = digest, revision = revision, previous = previous,
           planned = dry_run() or nil }
end

---@class hoist.targets.containerapp.DeployResult: hoist.targets.DeployResult
---@field revision string the revision that serves
---@field previous? string the revision that served before
---@field digest? string

--- Deploys `image` as a new revision of the container app, holding its ARM-side deploy lock.
--- Raises rollout_failed when the revision does not become healthy (with its system and
--- console logs in details.logs) or the hostname's check fails; the compensation registered
--- on `ctx` moves the traffic back and deactivates the new revision.
---@param opts hoist.targets.DeployOptions|{resource_group: string, name?: string, location?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, environment?: string, canary?: integer, registry_server?: string, registry_username?: string, registry_password?: string, registry_identity?: string, revision_timeout?: number}
---@return hoist.targets.containerapp.DeployResult
function M.deploy(opts)
  local o = options_of(opts)
  return azt.holding(M.name, o, deploy, o)
end

--- The ARM-side deploy lock of the container app (hoist.targets.azure.lock: a tag on its
--- resource group).
---@type fun(opts: hoist.targets.azure.LockOptions): hoist.targets.Lock
M.lock = azt.lock_of(M.name)

--- What the app serves now: the revisions with traffic. Changes nothing.
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string}
---@return hoist.targets.Status|{revisions: table<string, integer>}
function M.status(opts)
  local r = ref_of(azt.context("targets.containerapp.status", opts))
  local s = svc()
  local app = s.get(r)
  if not app then return { service = opts.service, serving = false } end
  local weights, image, top = {}, nil, -1
  for _, rev in ipairs(s.revisions(r)) do
    local w = rev.properties.trafficWeight or 0
    if w > 0 then weights[rev.name] = w end
    if w > top and rev.properties.active then
      top, image = w, (((rev.properties.template or {}).containers or {})[1] or {}).image
    end
  end
  return { service = opts.service, serving = next(weights) ~= nil, image = image, url = s.url(app), revisions = weights }
end

--- Deletes the container app (the environment stays: other apps may share it), holding the
--- deploy lock. Idempotent.
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, endpoint?: string, lock_timeout?: number}
---@return {removed: string[], planned?: boolean}
function M.remove(opts)
  return azt.removing(M.name, opts, function(c)
    local r = ref_of(c)
    local existed = svc().get(r) ~= nil -- a DELETE of nothing answers 204, which is no error either
    local d = svc().delete(r)
    return { removed = (existed and d.deleted) and { c.name } or {}, planned = d.planned }
  end)
end

-- Options a script may pass that are not parameters (an ARM endpoint, a credential object),
-- and the checks before a deploy (credential, subscription, resource group, names).
M.extra_options = azt.extra_options
--- The Azure actions a deploy with `o` performs in the resource group (the preflight checks
--- the deployer holds them): the app's read, write and delete (the rollback of a first
--- deploy), its revisions' activate and deactivate (traffic moves, rollback), its log token;
--- the environment's read, write (created when missing) and join; attaching a
--- `registry_identity` of the same group.
---@param o table the deploy options
---@return string[]
function M.actions(o)
  local out = {}
  for _, a in ipairs { "read", "write", "delete", "revisions/read", "revisions/activate/action",
                       "revisions/deactivate/action", "getAuthToken/action" } do
    out[#out + 1] = "Microsoft.App/containerApps/" .. a
  end
  out[#out + 1] = "Microsoft.App/managedEnvironments/read"
  out[#out + 1] = "Microsoft.App/managedEnvironments/join/action"
  if not (o.environment or ""):find("/", 1, true) then out[#out + 1] = "Microsoft.App/managedEnvironments/write" end
  return azt.identity_actions(out, o)
end

M.preflight = azt.preflight_of(M.name, "Microsoft.App", M.actions)
return require("hoist.targets").define(M)
