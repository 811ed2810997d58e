--- hoist.azure.aci: Azure Container Instances container groups. create_or_update builds the
--- group from plain options (image, cpu, memory, ports, DNS label, public or private IP, env
--- and secure env, registry credentials or a managed identity, restart policy, command),
--- recreates it when cpu or memory change (Azure refuses that update), and waits until it
--- runs, reading the instance view: an image that cannot be pulled (already while the PUT's
--- operation runs: Azure retries a failing pull for minutes before it fails), a container that
--- crashes (with its restart count) or a quota fails fast as `rollout_failed` with the reason,
--- the events and the last log lines. logs, restart and delete. See docs/azure.md.
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- Policy: a group counts as running once every container has run `stable` seconds without
--- a restart (a crash loop restarts within a few seconds); `timeout` covers a slow pull.
--- `pull_failures`: failed pulls of a container's image after which the deploy fails, while
--- Azure would go on retrying for minutes before its operation fails (one failure may pass:
--- an AcrPull role assignment or a tag just pushed can take a moment to reach the registry).
M.defaults = { cpu = 1, memory = 1.5, restart_policy = "Always", os_type = "Linux", timeout = 600, interval = 1,
               stable = 5, log_lines = 20, container = nil, pull_failures = 2 }

local function azure() return require "hoist.azure" end

local common = { resource_group = "string", subscription = "string", credential = "table|string", poll_interval = "number",
                 name = { type = "string", required = true } }
local function spec(extra) return util.spec(common, extra) end

local function where(fname, o)
  if not o.resource_group then fail("invalid_argument", fname .. ": option 'resource_group' is required", { option = "resource_group" }) end
  if not o.name:match("^[a-z0-9][a-z0-9-]*$") or #o.name > 63 then
    fail("invalid_argument", ("%s: a container group name is 1-63 lower-case letters, digits and '-', got %s"):format(fname, o.name),
      { name = o.name })
  end
  local c = azure().credential_of(fname, o.credential)
  local sub = azure().subscription(o.subscription, c)
  return c, azure().resource_id(sub, o.resource_group, "Microsoft.ContainerInstance/containerGroups", o.name)
end

-- a container group or registry settles in seconds: poll each second unless told otherwise
local function call(c, o, r)
  r.poll_interval = r.poll_interval or o.poll_interval or 1
  return azure().call(c, o, r)
end

--- The container group (as Azure shows it: secrets never come back), or nil.
---@param opts {name: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return table|nil
function M.get(opts)
  local o = util.check_opts("hoist.azure.aci.get", opts, spec(), "name")
  local c, id = where("hoist.azure.aci.get", o)
  local r = call(c, o, { path = id, what = "get container group " .. o.name, missing_ok = true })
  return r and r.body
end

---------------------------------------------------------------- the definition

---@class hoist.azure.aci.Options
---@field name string the container group (also its container's name)
---@field resource_group string
---@field location? string default: the resource group's
---@field image string
---@field cpu? number cores (default 1)
---@field memory? number GB (default 1.5)
---@field ports? integer[] TCP ports the container listens on (all published on the group's IP)
---@field dns_label? string the FQDN's first label: <label>.<region>.azurecontainer.io
---@field ip? "public"|"private"|"none" default public when ports are given
---@field env? table<string, string>
---@field secure_env? table<string, string> values are secrets (ACI's secureValue; never shown back)
---@field registry? {server: string, username: string, password: string} registry credentials for the pull
---@field registry_identity? string resource id of a user-assigned identity that pulls the image
---@field restart_policy? "Always"|"OnFailure"|"Never"
---@field command? string[]
---@field tags? table<string, string>
---@field subscription? string
---@field credential? string|hoist.azure.Credential

local def_spec = spec {
  location = "string", image = { type = "string", required = true }, cpu = "number", memory = "number", ports = "table",
  dns_label = "string", ip = { type = "string", allowed = { "public", "private", "none" } }, env = "table",
  secure_env = "table", registry = "table", registry_identity = "string",
  restart_policy = { type = "string", allowed = { "Always", "OnFailure", "Never" } }, command = "table", tags = "table",
  timeout = "number", stable = "number", wait = "boolean", subnet_ids = "table",
}

--- The container group's ARM body for the options (secrets registered, never logged).
---@param o hoist.azure.aci.Options
---@return table
function M.definition(o)
  local env = {}
  for _, k in ipairs(util.sorted_keys(o.env)) do env[#env + 1] = { name = k, value = tostring(o.env[k]) } end
  for _, k in ipairs(util.sorted_keys(o.secure_env)) do
    env[#env + 1] = { name = k, secureValue = hoist.secret(tostring(o.secure_env[k])) }
  end
  local ports = {}
  for i, p in ipairs(o.ports or {}) do
    if type(p) ~= "number" or p ~= math.floor(p) or p < 1 or p > 65535 then
      fail("invalid_argument", ("hoist.azure.aci: ports[%d] must be a port number, got %s"):format(i, tostring(p)))
    end
    ports[i] = { port = p, protocol = "TCP" }
  end
  local props = {
    osType = M.defaults.os_type, restartPolicy = o.restart_policy or M.defaults.restart_policy,
    containers = { { name = o.name, properties = {
      image = o.image, command = o.command, environmentVariables = env, ports = #ports > 0 and ports or nil,
      resources = { requests = { cpu = o.cpu or M.defaults.cpu, memoryInGB = o.memory or M.defaults.memory } } } } },
  }
  local ip = o.ip or (#ports > 0 and "public" or "none")
  if ip ~= "none" then
    if #ports == 0 then fail("invalid_argument", "hoist.azure.aci: an IP address needs ports") end
    props.ipAddress = { type = ip == "public" and "Public" or "Private", ports = ports, dnsNameLabel = o.dns_label }
    if ip == "private" and o.dns_label then
      fail("invalid_argument", "hoist.azure.aci: a DNS label needs a public IP (ip = \"public\")")
    end
  end
  if o.subnet_ids then props.subnetIds = o.subnet_ids end
  local body = { location = o.location, tags = o.tags, properties = props }
  if o.registry then
    local r = o.registry
    if type(r.server) ~= "string" or type(r.username) ~= "string" or type(r.password) ~= "string" then
      fail("invalid_argument", "hoist.azure.aci: registry must be {server=, username=, password=}")
    end
    props.imageRegistryCredentials = { { server = r.server, username = r.username, password = hoist.secret(r.password) } }
  elseif o.registry_identity then
    local server = hoist.image.parse(o.image).registry
    props.imageRegistryCredentials = { { server = server, identity = o.registry_identity } }
    body.identity = { type = "UserAssigned", userAssignedIdentities = { [o.registry_identity] = {} } }
  end
  return body
end

-- {container name -> {cpu, memory}} of a body
local function requests(body)
  local out = {}
  for _, c in ipairs(((body or {}).properties or {}).containers or {}) do
    local r = ((c.properties or {}).resources or {}).requests or {}
    out[c.name] = { cpu = tonumber(r.cpu), memory = tonumber(r.memoryInGB) }
  end
  return out
end

--- Why an existing group cannot be updated in place into `body` (Azure refuses a change of
--- Internal: the aci target's choice between a PUT and a recreate.
--- cpu or memory, of the OS type or of the restart policy... of a container), nil when it can.
---@param existing table
---@param body table
---@return string|nil
function M.needs_recreate(existing, body)
  local before, after = requests(existing), requests(body)
  for name, a in pairs(after) do
    local b = before[name]
    if b and (b.cpu ~= a.cpu or b.memory ~= a.memory) then
      return ("container %s changes from %s cpu / %s GB to %s cpu / %s GB, which Azure does not update in place")
        :format(name, tostring(b.cpu), tostring(b.memory), tostring(a.cpu), tostring(a.memory))
    end
  end
  return nil
end

---------------------------------------------------------------- waiting and evidence

--- The last log lines of a container ("" when there are none or they cannot be read).
---@param opts {name: string, container?: string, tail?: integer, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return string
function M.logs(opts)
  local o = util.check_opts("hoist.azure.aci.logs", opts, spec { container = "string", tail = "integer" }, "name")
  local c, id = where("hoist.azure.aci.logs", o)
  local r = call(c, o, { path = ("%s/containers/%s/logs"):format(id, o.container or o.name),
                         query = { tail = tostring(o.tail or M.defaults.log_lines) }, what = "logs of " .. o.name })
  return (r.body or {}).content or ""
end

-- Events of every container, oldest first, as {container, name, type, count, message}.
local function events_of(group)
  local out = {}
  for _, c in ipairs(((group or {}).properties or {}).containers or {}) do
    for _, e in ipairs(((c.properties or {}).instanceView or {}).events or {}) do
      out[#out + 1] = { container = c.name, name = e.name, type = e.type, count = e.count, message = e.message }
    end
  end
  return out
end

--- Why the group's image cannot be pulled, or nil: a container that does not run whose own
--- image has failed to pull at least `failures` times (default M.defaults.pull_failures), as
--- its instance view counts them (`Failed` events "Failed to pull image "<image>": ..."). The
--- reason names the image, Azure's last message (the registry's words) and what to check.
---@param group table|nil the container group as Azure shows it
---@param failures? integer
---@return string|nil
function M.pull_failure(group, failures)
  failures = failures or M.defaults.pull_failures
  for _, c in ipairs(((group or {}).properties or {}).containers or {}) do
    local cp = c.properties or {}
    local iv = cp.instanceView or {}
    local n, last = 0, nil
    for _, e in ipairs(iv.events or {}) do
      local m = tostring(e.message or "")
      -- this image's only: after an update the events of the one before may still be there
      if e.name == "Failed" and m:find("pull", 1, true) and (not cp.image or m:find(cp.image, 1, true)) then
        n, last = n + (tonumber(e.count) or 1), m
      end
    end
    if n >= math.max(1, failures) and (iv.currentState or {}).state ~= "Running" then
      return ("the image %s of container %s cannot be pulled: %d failed pull(s) (%s), the last: %s. Check the image "
        .. "reference (registry, repository and tag as pushed) and the pull credential (registry_username and "
        .. "registry_password, or registry_identity with AcrPull on the registry)"):format(tostring(cp.image), c.name, n,
        tostring((iv.currentState or {}).detailStatus or "no state"), last)
    end
  end
  return nil
end

-- The reason a group does not run: "image_pull", "crash", "quota" or nil (not yet known).
-- `pulls`: failed pulls that decide (1 once Azure's operation has failed).
local function diagnose(group, restarts_before, pulls)
  local pull = M.pull_failure(group, pulls)
  if pull then return "image_pull", pull end
  local props = (group or {}).properties or {}
  for _, c in ipairs(props.containers or {}) do
    local iv = (c.properties or {}).instanceView or {}
    local cur = iv.currentState or {}
    local restarts = iv.restartCount or 0
    if restarts > (restarts_before[c.name] or 0) or tostring(cur.detailStatus):find("CrashLoopBackOff", 1, true)
        or (cur.state == "Terminated" and props.restartPolicy == "Always") then
      local prev = iv.previousState or cur
      return "crash", ("container %s crashed (exit code %s, %d restart(s), now %s)"):format(c.name,
        tostring(prev.exitCode), restarts, tostring(cur.state))
    end
  end
  return nil
end

local function failure(o, c, id, reason, why, group, cause)
  local logs = ""
  if reason ~= "image_pull" then
    local ok, l = util.try(M.logs, { name = o.name, resource_group = o.resource_group, subscription = o.subscription,
                                  credential = c })
    if ok then logs = l end
  end
  local lines = {}
  for line in logs:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local last = {}
  for i = math.max(1, #lines - M.defaults.log_lines + 1), #lines do last[#last + 1] = lines[i] end
  local tail = #last > 0 and (" Last log lines: " .. table.concat(last, " | ")) or ""
  fail("rollout_failed", ("container group %s did not start: %s%s"):format(o.name, why, tail),
    { reason = reason, events = events_of(group), logs = table.concat(last, "\n"), group = id,
      cause = cause and (hoist.is_error(cause) and { code = cause.code, message = cause.message } or tostring(cause)) or nil })
end

local function restarts_of(group)
  local out = {}
  for _, c in ipairs(((group or {}).properties or {}).containers or {}) do
    out[c.name] = (((c.properties or {}).instanceView or {}).restartCount) or 0
  end
  return out
end

--- Waits until every container of the group runs and has run `stable` seconds without a
--- restart. Fails fast with rollout_failed (details.reason "image_pull", "crash", "quota",
--- "provisioning" or "timeout"; details.events; details.logs) as soon as the instance view
--- shows why it will not.
---@param opts {name: string, resource_group: string, timeout?: number, stable?: number, subscription?: string, credential?: string|hoist.azure.Credential}
---@return table group
function M.wait_running(opts)
  local o = util.check_opts("hoist.azure.aci.wait_running", opts, spec { timeout = "number", stable = "number" }, "name")
  local c, id = where("hoist.azure.aci.wait_running", o)
  local deadline = hoist.now() + (o.timeout or M.defaults.timeout)
  local stable = o.stable or M.defaults.stable
  local running_since, baseline, group
  while true do
    group = call(c, o, { path = id, what = "get container group " .. o.name }).body
    local props = group.properties or {}
    if props.provisioningState == "Failed" then
      local reason, why = diagnose(group, {}, 1)
      failure(o, c, id, reason or "provisioning", why or "provisioning failed", group)
    end
    baseline = baseline or restarts_of(group)
    local reason, why = diagnose(group, baseline)
    if reason then failure(o, c, id, reason, why, group) end
    local state = (props.instanceView or {}).state
    if state == "Running" then
      running_since = running_since or hoist.now()
      if hoist.now() - running_since >= stable then return group end
    else
      running_since = nil
    end
    if hoist.now() > deadline then
      failure(o, c, id, "timeout", ("still %s after %gs"):format(tostring(state), o.timeout or M.defaults.timeout), group)
    end
    hoist.sleep(M.defaults.interval)
  end
end

---------------------------------------------------------------- changes

-- While the PUT's operation runs: Azure retries a pull that fails for minutes before the
-- operation fails, so the instance view decides. Raises rollout_failed (image_pull) once the
-- image has failed to pull M.defaults.pull_failures times; returns once `state.done` (the
-- PUT's end wakes state.alarm, cutting the sleep short).
local function watch_pull(c, o, id, state)
  while not state.alarm:sleep(o.poll_interval or M.defaults.interval) do
    local got = call(c, o, { path = id, what = "get container group " .. o.name, missing_ok = true })
    local why = not state.done and got and M.pull_failure(got.body)
    if why then failure(o, c, id, "image_pull", why, got.body) end
  end
end

-- The PUT, followed to the end of its operation, and beside it watch_pull: the first to fail
-- stops the other (Azure's operation then goes on: a compensation deletes the group, which
-- cancels it).
local function put_watched(c, o, id, body)
  local req = { method = "PUT", path = id, body = body, action = "azure.aci.put",
                what = "create or update container group " .. o.name }
  if util.dry_run() then return call(c, o, req) end
  local state, r = { alarm = util.alarm() }, nil
  hoist.parallel(function()
    r = call(c, o, req)
    state.done = true
    state.alarm:wake()
  end, function() watch_pull(c, o, id, state) end)
  return r
end

local function put(c, o, id, body)
  local ok, r = pcall(put_watched, c, o, id, body)
  if ok then return r end
  if hoist.is_error(r, "cancelled") or hoist.is_error(r, "rollout_failed") then error(r, 0) end
  -- a failed operation: say why from the instance view when there is one
  if hoist.is_error(r) and r.code ~= "invalid_argument" and r.code ~= "unauthorized" and r.code ~= "forbidden" then
    local msg = tostring(r.message)
    if msg:find("Quota", 1, true) or msg:find("quota", 1, true) then failure(o, c, id, "quota", msg, nil, r) end
    local got = M.get { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = c }
    local reason, why = diagnose(got, {}, 1)
    if reason or (got and (got.properties or {}).provisioningState == "Failed") then
      failure(o, c, id, reason or "provisioning", why or msg, got, r)
    end
  end
  error(r, 0)
end

--- Deletes the container group (its containers go with it); idempotent.
---@param opts {name: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return {deleted: boolean, planned?: boolean}
function M.delete(opts)
  local o = util.check_opts("hoist.azure.aci.delete", opts, spec(), "name")
  local c, id = where("hoist.azure.aci.delete", o)
  local r = call(c, o, { method = "DELETE", path = id, action = "azure.aci.delete", what = "delete container group " .. o.name })
  return { deleted = r.status == 200 or r.status == 202, planned = r.planned or nil }
end

--- Restarts the group's containers in place.
---@param opts {name: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
function M.restart(opts)
  local o = util.check_opts("hoist.azure.aci.restart", opts, spec(), "name")
  local c, id = where("hoist.azure.aci.restart", o)
  call(c, o, { method = "POST", path = id .. "/restart", action = "azure.aci.restart", what = "restart container group " .. o.name })
end

---@class hoist.azure.aci.Result
---@field group table the group as it ended (instance view included)
---@field fqdn? string
---@field recreated boolean cpu or memory changed: the group was deleted and created again
---@field created boolean there was no group before
---@field planned? boolean

--- Creates or updates the container group (options: hoist.azure.aci.Options, or `body` = a
--- full ARM definition) and, unless `wait = false`, waits until it runs (M.wait_running).
--- When cpu or memory change, the group is deleted and created again (a plan step says why).
---@param opts hoist.azure.aci.Options|{body: table, wait?: boolean, timeout?: number, stable?: number}
---@return hoist.azure.aci.Result
function M.create_or_update(opts)
  local fname = "hoist.azure.aci.create_or_update"
  local body
  local s = spec { body = "table" }
  for k, v in pairs(def_spec) do s[k] = v end
  if type(opts) == "table" and opts.body then s.image = "string" end
  local o = util.check_opts(fname, opts, s)
  local c, id = where(fname, o)
  body = o.body or M.definition(o)
  body.location = body.location or o.location
  local existing = M.get { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = c }
  if not body.location then
    body.location = existing and existing.location or
      (azure().resource_groups.get { name = o.resource_group, subscription = o.subscription, credential = c } or {}).location
  end
  local recreated = false
  local why = existing and M.needs_recreate(existing, body)
  if why then
    if util.dry_run() then
      util.plan { action = "azure.aci.recreate", message = ("recreate container group %s: %s"):format(o.name, why) }
    else
      hoist.log.info(("recreating container group %s: %s"):format(o.name, why), { group = id, reason = why })
    end
    M.delete { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = c }
    recreated = true
  end
  local r = put(c, o, id, body)
  if r.planned then return { planned = true, created = existing == nil, recreated = recreated } end
  local group = r.body
  if o.wait ~= false then
    group = M.wait_running { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = c,
                             timeout = o.timeout, stable = o.stable }
  end
  return { group = group, fqdn = ((group.properties or {}).ipAddress or {}).fqdn, recreated = recreated,
           created = existing == nil }
end

return M
