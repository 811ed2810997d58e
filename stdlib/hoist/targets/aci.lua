--- hoist.targets.aci: deploys a service as an Azure Container Instances container group.
---
--- ACI updates a group in place: a new image replaces the running container (there is no
--- second instance to switch to), so the service does not answer while the new container
--- starts. What the target adds: it waits until the group really runs (the instance view,
--- failing fast with the reason: image pull, crash with restart count, quota), checks the
--- group's FQDN (`http://<label>.<region>.azurecontainer.io:<port><health_path>`, through the
--- standard proxy variables), and puts the previous definition back when either fails.
---
--- Compensations (named, JSON arguments, idempotent, runnable by `hoist rollback <run>`),
--- journaled BEFORE the change: "aci.restore" re-PUTs the previous definition; "aci.delete"
--- deletes the group this run created. ACI never shows secrets back (secure env values,
--- registry passwords), so those of the previous definition travel in a 0600 file of the
--- state folder, never in the journal. Groups carry the tags hoist-service and hoist-run;
--- once another run has deployed the service since, a compensation leaves it alone.
---
--- The deploy lock is ARM-side (hoist.targets.azure.lock: a tag on the resource group), so two
--- hosts cannot deploy one group at once.
local azt = require "hoist.targets.azure"
local aci = require "hoist.azure.aci"
local util = require "hoist.util"

local fail, dry_run = util.fail, util.dry_run

local M = {}

M.name = "aci"

--- The options only this target takes (with those of every Azure target, hoist.targets.azure).
M.options = azt.merge_options {
  cpu = { type = "number", default = 1, min = 0.1, description = "CPU cores of the container (a change recreates the group)" },
  memory = { type = "number", default = 1.5, min = 0.1, description = "Memory in GB of the container (a change recreates the group)" },
  dns_label = { type = "string", description = "DNS name label: <label>.<region>.azurecontainer.io (default: the service name)" },
  ip = { type = "string", default = "public", allowed = { "public", "private" },
         description = "public (with the DNS label) or private (in subnet_ids) IP address" },
  subnet_ids = { type = "list", description = "Subnet resource ids for a private IP" },
  restart_policy = { type = "string", default = "Always", allowed = { "Always", "OnFailure", "Never" },
                     description = "What ACI does when the container exits" },
  command = { type = "list", description = "Command and arguments instead of the image's entrypoint" },
  registry_username = { type = "string", description = "User ACI pulls the image with at every restart (default: the service principal's own when the registry has an Azure credential; never a token that expires)" },
  registry_password = { type = "string", secret = true, description = "Its password (a secret)" },
}

--- The named rollback actions deploy registers.
M.compensations = { "aci.restore", "aci.delete" }

local T_SERVICE, T_RUN = "hoist-service", "hoist-run"

---------------------------------------------------------------- helpers

local function where(o) return { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = o.credential } end

-- The 0600 folder of a service's kept secrets: <state_dir>/aci/<resource group>--<name>/
local function secret_dir(state_dir, rg, name)
  return ("%s/aci/%s--%s"):format(state_dir or hoist.run.state_dir or ".hoist", rg, name)
end

local function read_json(path)
  local text = path and hoist.fs.read_file(path, { missing_ok = true })
  if not text then return nil end
  return hoist.json.decode(text)
end

local function write_secret_file(path, value)
  hoist.fs.mkdir(path:match("^(.*)/[^/]+$"), { mode = "0700" })
  hoist.fs.write_file(path, hoist.json.encode(value), { mode = "0600" })
end

-- {env = {NAME = value}, registries = {server = password}} of a definition we PUT
local function secrets_of(body)
  local out = { env = {}, registries = {} }
  for _, c in ipairs(body.properties.containers or {}) do
    for _, e in ipairs(c.properties.environmentVariables or {}) do
      if e.secureValue ~= nil and e.secureValue ~= hoist.json.null then out.env[e.name] = e.secureValue end
    end
  end
  for _, r in ipairs(body.properties.imageRegistryCredentials or {}) do
    if r.password then out.registries[r.server] = r.password end
  end
  return out
end

local function register(secrets)
  for _, v in pairs(secrets.env or {}) do if type(v) == "string" and #v >= 4 then hoist.secret(v) end end
  for _, v in pairs(secrets.registries or {}) do if type(v) == "string" and #v >= 4 then hoist.secret(v) end end
end

-- A definition Azure showed, made fit to PUT again: read-only fields out, secrets back in from
-- `secrets` (nil when unknown: the restore then says so).
local function redeployable(group)
  local props = group.properties or {}
  local out = { location = group.location, tags = group.tags, identity = group.identity, properties = {
    osType = props.osType, restartPolicy = props.restartPolicy, subnetIds = props.subnetIds,
    imageRegistryCredentials = props.imageRegistryCredentials, containers = {} } }
  if out.identity then
    out.identity = { type = out.identity.type, userAssignedIdentities = out.identity.userAssignedIdentities }
    for k in pairs(out.identity.userAssignedIdentities or {}) do out.identity.userAssignedIdentities[k] = {} end
  end
  if props.ipAddress then
    out.properties.ipAddress = { type = props.ipAddress.type, ports = props.ipAddress.ports,
                                 dnsNameLabel = props.ipAddress.dnsNameLabel }
  end
  for i, c in ipairs(props.containers or {}) do
    local cp = c.properties or {}
    out.properties.containers[i] = { name = c.name, properties = { image = cp.image, command = cp.command,
      ports = cp.ports, environmentVariables = cp.environmentVariables, resources = cp.resources } }
  end
  return out
end

local function with_secrets(def, secrets, what)
  local missing = {}
  for _, c in ipairs(def.properties.containers) do
    for _, e in ipairs(c.properties.environmentVariables or {}) do
      if e.secureValue ~= nil then
        local v = secrets and secrets.env and secrets.env[e.name]
        if v then e.secureValue = v else missing[#missing + 1] = "secure env " .. e.name end
      end
    end
  end
  for _, r in ipairs(def.properties.imageRegistryCredentials or {}) do
    if r.username and not r.identity then
      local v = secrets and secrets.registries and secrets.registries[r.server]
      if v then r.password = v else missing[#missing + 1] = "registry password of " .. r.server end
    end
  end
  if #missing > 0 then
    fail("rollout_failed", ("cannot %s: Azure does not show secrets back and hoist kept none for %s")
      :format(what, table.concat(missing, ", ")), { missing = missing })
  end
  return def
end

local function image_of(group)
  local c = ((group or {}).properties or {}).containers or {}
  return c[1] and c[1].properties and c[1].properties.image or nil
end

local function fqdn_url(group, port, path)
  local ip = ((group or {}).properties or {}).ipAddress or {}
  local host = ip.fqdn or ip.ip
  if not host then return nil end
  return ("http://%s:%d%s"):format(host, port, path or "")
end

local function check_url(url, verify, what)
  verify = verify or {}
  return hoist.verify.http { name = ("GET %s (%s)"):format(url, what), url = url, expect_status = 200,
    retries = verify.retries or 30, interval = verify.interval or 1, timeout = verify.timeout or 5 }
end

-- The port the app listens on when its log (or, once nothing answered, its EXPOSE) names
-- another than the group opens (hoist.azure.ports): fail naming both, instead of waiting out
-- the check on a port nothing listens on.
local function check_port(o, expose_only, cause)
  local ok, logs = pcall(aci.logs, { name = o.name, resource_group = o.resource_group, subscription = o.subscription,
                                     credential = o.credential, tail = 50 })
  if not ok then
    if hoist.is_error(logs, "cancelled") then error(logs, 0) end
    logs = ""
  end
  local wrong = require("hoist.azure.ports").mismatch { port = o.container_port, setting = "container_port",
    waits = "the container group opens", image = o.image, logs = logs, expose_only = expose_only }
  if wrong then
    fail("rollout_failed", wrong, { reason = "port", logs = logs,
      cause = cause and (hoist.is_error(cause) and cause.message or tostring(cause)) or nil })
  end
end

local function locked(args, fn) return azt.holding(M.name, args, fn, args) end

-- True, once said in an event, when another run deployed the group since: its run tag is
-- neither this run nor the one before it. `doing` is the compensation it stops ("restoring").
local function superseded(args, group, doing)
  local run = ((group or {}).tags or {})[T_RUN]
  if not run or run == args.run or run == (args.previous_run or "") then return false end
  hoist.log.event("aci.superseded", ("not %s %s: run %s deployed it since"):format(doing, args.name, run),
    { name = args.name, run = args.run, newer = run })
  return true
end

---------------------------------------------------------------- compensations

-- This run's PUT still in flight with its image failing to pull (the deploy failed fast on
-- it): Azure would retry for minutes before the operation ends, and refuses a PUT meanwhile.
-- Deleting the group cancels the operation, so the compensation need not wait that out.
local function cancel_failing_pull(args)
  local w = where(args)
  local g = aci.get(w)
  if not require("hoist.azure").in_progress(g) or (g.tags or {})[T_RUN] ~= args.run then return end
  local why = aci.pull_failure(g, 1)
  if not why then return end
  aci.delete(w)
  hoist.log.event("aci.pull_cancelled", ("deleted container group %s: its operation (%s) was still retrying the pull; %s")
    :format(args.name, tostring(g.properties.provisioningState), why), { name = args.name, run = args.run })
end

-- Waits for an operation still in flight on the group (a run cancelled while its PUT was
-- being polled: Azure answers 409 AnotherOperationInProgress until it ends), then `change`;
-- one that only retries a failing pull is cancelled instead.
local function when_settled(args, change)
  local w = where(args)
  cancel_failing_pull(args)
  return require("hoist.azure").when_settled({ what = "container group " .. args.name, timeout = args.timeout,
                                               get = function() return aci.get(w) end }, change)
end

-- Puts the previous definition back over `current` (idempotent: nothing to do when it
-- already runs).
local function restore_over(args, current)
  if superseded(args, current, "restoring") then return end
  local secrets = read_json(args.secrets_file) or { env = {}, registries = {} }
  register(secrets)
  local def = with_secrets(args.definition, secrets, "restore the previous definition of " .. args.name)
  if current and image_of(current) == image_of(def) and ((current.tags or {})[T_RUN] == (def.tags or {})[T_RUN])
      and ((current.properties or {}).instanceView or {}).state == "Running" then
    hoist.log.info(("%s already runs its previous definition (%s)"):format(args.name, tostring(image_of(def))))
    return
  end
  local o = where(args)
  o.body, o.timeout, o.stable = def, args.timeout, args.stable
  local r = aci.create_or_update(o)
  local url = args.port and fqdn_url(r.group, args.port, args.health_path)
  if url then check_url(url, args.verify, "restored " .. args.name) end
  hoist.log.event("aci.restored", ("%s runs %s again"):format(args.name, tostring(image_of(def))),
    { name = args.name, image = image_of(def) })
end

-- aci.restore, once no operation runs on the group.
local function restore(args) return when_settled(args, function(current) return restore_over(args, current) end) end

-- Deletes the group this run created (`current`), unless another run deployed it since.
local function delete_over(args, current)
  if not current then return end
  if superseded(args, current, "deleting") then return end
  aci.delete(where(args))
  hoist.log.info(("deleted container group %s created by run %s"):format(args.name, args.run))
end

-- aci.delete, once no operation runs on the group.
local function delete(args) return when_settled(args, function(current) return delete_over(args, current) end) end

-- what both compensations get (the deploy's `common`)
local function aci_args(extra)
  return azt.journal_args(require("hoist.util").spec({ port = "number", health_path = "string", verify = "table" }, extra))
end
hoist.pipeline.action("aci.restore", function(args) locked(args, restore) end, { args = aci_args {
  definition = { type = "table", required = true }, secrets_file = { type = "string", required = true },
  previous_run = "string" } })
hoist.pipeline.action("aci.delete", function(args) locked(args, delete) end, { args = aci_args() })

---------------------------------------------------------------- deploy

local test_pause = azt.test_pause

-- The registry credentials ACI keeps for every later pull (hoist.azure.pull): given (refused
-- when they expire), else none with registry_identity, else the service principal's own when
-- the image's registry has an Azure credential, never an ACR refresh token.
local function pull_credentials(o, credential)
  local pull = require "hoist.azure.pull"
  local server = hoist.image.parse(o.image).registry
  if o.registry_username then
    pull.check("targets.aci", o)
    return { server = server, username = o.registry_username, password = o.registry_password or "" }
  end
  if o.registry_identity then return nil end
  return pull.default("targets.aci", o.image, credential)
end

local function check_options(o)
  local fname = "hoist.targets.aci.deploy"
  if type(o.service) ~= "string" or not o.service:match("^[a-z0-9][a-z0-9-]*$") then
    fail("invalid_argument", ("targets.aci: service must be a container group name (lower-case letters, digits, '-'), got %s")
      :format(tostring(o.service)))
  end
  util.check_opt(fname, "image", o.image, { type = "string", required = true })
  if type(o.container_port) ~= "number" or o.container_port < 1 or o.container_port > 65535 then
    fail("invalid_argument", ("targets.aci: container_port must be a port number, got %s"):format(tostring(o.container_port)))
  end
  if type(o.health_path) ~= "string" or o.health_path:sub(1, 1) ~= "/" then
    fail("invalid_argument", ("targets.aci: health_path must start with '/', got %s"):format(tostring(o.health_path)))
  end
  if (o.registry_password == nil) ~= (o.registry_username == nil) then
    fail("invalid_argument", "targets.aci: registry_username and registry_password: give both or neither")
  end
end

---@class hoist.targets.aci.DeployOptions: hoist.targets.DeployOptions
---@field resource_group string
---@field location? string
---@field subscription? string
---@field name? string the container group (default: service)
---@field credential? string|hoist.azure.Credential
---@field cpu? number
---@field memory? number
---@field dns_label? string
---@field ip? "public"|"private"
---@field restart_policy? string
---@field command? string[]
---@field registry_username? string
---@field registry_password? string
---@field registry_identity? string

---@class hoist.targets.aci.DeployResult: hoist.targets.DeployResult
---@field fqdn? string
---@field group string the container group's resource id
---@field recreated boolean

local function deploy(o, run_id, state_dir)
  local where_ = azt.prepare("targets.aci", o, "Microsoft.ContainerInstance")
  o.name, o.subscription, o.location = where_.name, where_.subscription, o.location or where_.location
  local ctx = o.ctx
  local current = aci.get { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = o.credential }
  local dir = secret_dir(state_dir, o.resource_group, o.name)
  local tags = { [T_SERVICE] = o.service, [T_RUN] = run_id }
  for k, v in pairs(o.labels or {}) do tags[k] = v end
  local env = {}
  for k, v in pairs(o.env or {}) do env[k] = v end
  local secure = {}
  for k, v in pairs(o.secret_env or {}) do secure[k] = hoist.secret(v) end
  local body = aci.definition { name = o.name, location = o.location, image = o.image, cpu = o.cpu, memory = o.memory,
    ports = { o.container_port }, dns_label = o.ip ~= "private" and (o.dns_label or o.service) or nil, ip = o.ip,
    env = env, secure_env = secure, registry = pull_credentials(o, where_.credential), registry_identity = o.registry_identity,
    restart_policy = o.restart_policy, command = o.command, tags = tags, subnet_ids = o.subnet_ids }

  -- the compensation first, with what it needs from a later process
  local common = azt.journal { service = o.service, name = o.name, resource_group = o.resource_group,
                               subscription = o.subscription, credential = o.credential, run = run_id,
                               lock_timeout = o.lock_timeout, state_dir = state_dir }
  common.port, common.health_path, common.verify = o.container_port, o.health_path, o.verify
  local previous_image
  if current then
    previous_image = image_of(current)
    local kept = read_json(dir .. "/current.json") or { env = {}, registries = {} }
    -- what the previous definition needs that it did not keep: this deploy's values by name
    local now = secrets_of(body)
    for k, v in pairs(now.env) do kept.env[k] = kept.env[k] or v end
    for k, v in pairs(now.registries) do kept.registries[k] = kept.registries[k] or v end
    register(kept)
    local secrets_file = dir .. "/" .. run_id .. ".previous.json"
    if not dry_run() then write_secret_file(secrets_file, kept) end
    local args = { definition = redeployable(current), secrets_file = secrets_file,
                   previous_run = (current.tags or {})[T_RUN] or "" }
    for k, v in pairs(common) do args[k] = v end
    if ctx then ctx:on_rollback("aci.restore", args) end
    o.restore_args = args
  else
    if ctx then ctx:on_rollback("aci.delete", common) end
    o.delete_args = common
  end
  test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "before the PUT of " .. o.name)

  local ok, r = pcall(function()
    local res = aci.create_or_update { name = o.name, resource_group = o.resource_group, subscription = o.subscription,
      credential = o.credential, body = body, timeout = (o.verify and o.verify.timeout and o.verify.retries)
        and math.max(60, o.verify.retries * (o.verify.interval or 1)) or nil }
    if res.planned then return res end
    test_pause("HOIST_TEST_PAUSE_AFTER_PUT", "after the PUT of " .. o.name)
    local url = fqdn_url(res.group, o.container_port, o.health_path)
    if url then
      check_port(o, false)
      local held, err = pcall(check_url, url, o.verify, o.name)
      if not held then
        if hoist.is_error(err, "cancelled") or not hoist.is_error(err) then error(err, 0) end
        check_port(o, true, err)
        error(err, 0)
      end
    end
    return res
  end)
  if not ok then
    if hoist.is_error(r, "cancelled") then error(r, 0) end
    -- put back what served before now (the compensation, run again by a rollback, is then a no-op)
    local undo = {}
    for k, v in pairs(o.restore_args or o.delete_args) do undo[k] = v end
    undo.credential = o.credential -- this process's credential (the journal keeps only a source name)
    local undo_ok, undo_err = pcall(locked, undo, o.restore_args and restore or delete)
    local still = not current and "the group it created was deleted"
      or (undo_ok and ("%s (%s) runs again"):format(o.name, tostring(previous_image))
        or ("restoring %s failed too: %s"):format(tostring(previous_image), hoist.is_error(undo_err) and undo_err.message or tostring(undo_err)))
    local details = hoist.is_error(r) and r.details or {}
    fail("rollout_failed", ("the new version of %s did not start (%s); %s"):format(o.name,
      hoist.is_error(r) and r.message or tostring(r), still),
      { reason = details.reason or "verify", events = details.events, logs = details.logs, image = o.image, group = details.group })
  end
  if r.planned then
    return { service = o.service, image = o.image, url = "", previous = previous_image, planned = true, recreated = r.recreated }
  end
  if not dry_run() then write_secret_file(dir .. "/current.json", secrets_of(body)) end
  local url = fqdn_url(r.group, o.container_port, "")
  hoist.log.event("aci.deployed", ("%s serves %s from %s"):format(o.name, tostring(url), o.image),
    { name = o.name, image = o.image, previous = previous_image, recreated = r.recreated })
  return { service = o.service, url = url, image = o.image, previous = previous_image, fqdn = r.fqdn, group = r.group.id,
           recreated = r.recreated }
end

local function absolute(dir)
  dir = dir or hoist.run.state_dir or ".hoist"
  if dir:sub(1, 1) == "/" then return dir end
  return (os.getenv("PWD") or ".") .. "/" .. dir
end

--- Deploys `image` as the container group `name` (default: service) in `resource_group`,
--- holding the ARM-side deploy lock: PUT, wait until it runs, check its FQDN; when either
--- fails, the previous definition is put back (or the new group deleted) and rollout_failed
--- says why (details.reason, events, logs).
---@param opts hoist.targets.aci.DeployOptions
---@return hoist.targets.aci.DeployResult
function M.deploy(opts)
  if type(opts) ~= "table" then util.check_opts("hoist.targets.aci.deploy", opts, {}) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local common = require("hoist.targets").options
  for _, k in ipairs { "container_port", "health_path" } do if o[k] == nil then o[k] = common[k].default end end
  for k, spec in pairs(M.options) do if o[k] == nil and spec.default ~= nil then o[k] = spec.default end end
  check_options(o)
  local run_id = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id
  local state_dir = absolute(o.state_dir)
  local a = { run = run_id }
  for k, v in pairs(o) do if a[k] == nil then a[k] = v end end
  return azt.holding(M.name, a, deploy, o, run_id, state_dir)
end

--- The ARM-side deploy lock of the service's container group (hoist.targets.azure.lock).
---@type fun(opts: hoist.targets.azure.LockOptions): hoist.targets.Lock
M.lock = azt.lock_of(M.name)

---------------------------------------------------------------- inspection and teardown

---@class hoist.targets.aci.Status: hoist.targets.Status
---@field group? table the container group as Azure shows it
---@field state? string the instance view's state (Running, Pending, ...)

--- What runs for a service: its container group. Changes nothing.
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, container_port?: integer}
---@return hoist.targets.aci.Status
function M.status(opts)
  if type(opts) ~= "table" then fail("invalid_argument", "targets.aci.status: expected {service=, resource_group=}") end
  local c = azt.context("targets.aci.status", opts)
  local g = aci.get { name = c.name, resource_group = c.resource_group, subscription = c.subscription, credential = c.credential }
  local state = g and ((g.properties or {}).instanceView or {}).state or nil
  return { service = opts.service, serving = state == "Running", image = image_of(g), group = g, state = state,
           url = g and fqdn_url(g, opts.container_port or require("hoist.targets").options.container_port.default, "") or nil }
end

--- Takes the service down: deletes its container group and the secrets kept for a rollback.
--- Holds the deploy lock. Idempotent; under dry-run it plans the DELETE.
---@param opts {service: string, resource_group: string, name?: string, subscription?: string, credential?: string|hoist.azure.Credential, state_dir?: string, lock_timeout?: number}
---@return {removed: string[], planned?: boolean}
function M.remove(opts)
  return azt.removing(M.name, opts, function(c)
    local o = { name = c.name, resource_group = c.resource_group, subscription = c.subscription, credential = c.credential }
    local existed = aci.get(o) ~= nil
    local d = aci.delete(o)
    if not dry_run() then
      local dir = secret_dir(absolute(opts.state_dir), c.resource_group, c.name)
      for _, f in ipairs(hoist.fs.list(dir)) do os.remove(dir .. "/" .. f) end
      os.remove(dir)
    end
    return { removed = existed and { c.name } or {}, planned = d.planned }
  end)
end

-- Options a script may pass that are not parameters (an ARM endpoint, a credential object),
-- and the checks before a deploy (credential, subscription, resource group, names).
M.extra_options = azt.extra_options
--- The Azure actions a deploy with `o` performs in the resource group (the preflight checks
--- the deployer holds them): the container group's read, write and delete (a cpu or memory
--- change recreates it; the rollback of a first deploy deletes it), and attaching a
--- `registry_identity` of the same group.
---@param o table the deploy options
---@return string[]
function M.actions(o)
  local out = { "Microsoft.ContainerInstance/containerGroups/read", "Microsoft.ContainerInstance/containerGroups/write",
                "Microsoft.ContainerInstance/containerGroups/delete" }
  return azt.identity_actions(out, o)
end

M.preflight = azt.preflight_of(M.name, "Microsoft.ContainerInstance", M.actions)
return require("hoist.targets").define(M)
