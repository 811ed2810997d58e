--- hoist.azure.containerapp: Azure Container Apps over hoist.azure.request: managed
--- environments, apps, revisions (a template change makes one, named by its suffix), external
--- ingress and target port, traffic weights, activate/deactivate, and the console and system
--- logs of a revision (what `az containerapp logs show` gives). `wait_revision` waits until a
--- revision is provisioned, healthy and has running replicas: a PUT's operation ends when the
--- revision is provisioned, before it is healthy (the official deploy action stops there and
--- shows green for a revision that never serves). See docs/azure.md.
local util = require "hoist.util"

local fail, dry_run = util.fail, util.dry_run

local M = {}

--- Policy: a revision gets `timeout` seconds to become healthy (image pull and start included).
---@class hoist.azure.containerapp.Defaults
M.defaults = { timeout = 600, poll_interval = 2, log_lines = 20 }

local function azure() return require "hoist.azure" end
local function enc(s) return azure().encode(s) end

local common = {
  subscription = "string", resource_group = { type = "string", required = true },
  name = { type = "string", required = true }, credential = "table", endpoint = "string",
}
local function spec(extra) return util.spec(common, extra) end

---@class hoist.azure.containerapp.Ref which app
---@field resource_group string
---@field name string the container app
---@field subscription? string
---@field credential? hoist.azure.Credential
---@field endpoint? string

local function locate(fname, o, kind)
  local az = azure()
  local c = az.credential_of(fname, o.credential)
  local sub = az.subscription(o.subscription, c)
  return c, az.resource_id(sub, o.resource_group, "Microsoft.App/" .. (kind or "containerApps"), o.name), sub
end

local function call(c, o, r) return azure().call(c, o, r) end

local function get(fname, o, kind, what)
  local c, p = locate(fname, o, kind)
  local r = call(c, o, { path = p, what = what, missing_ok = true })
  return r and r.body
end

--- Creates or updates a managed environment (Consumption).
---@param opts {resource_group: string, name: string, location: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return table environment (or {planned = true})
function M.environment(opts)
  local fname = "hoist.azure.containerapp.environment"
  local o = util.check_opts(fname, opts, spec { location = { type = "string", required = true } })
  local existing = get(fname, o, "managedEnvironments", "get managed environment " .. o.name)
  if existing then return existing end
  local c, p = locate(fname, o, "managedEnvironments")
  local r = call(c, o, { method = "PUT", path = p, action = "azure.containerapp.environment", poll_interval = 1,
                         what = "create managed environment " .. o.name,
                         body = { location = o.location, properties = { workloadProfiles = { { name = "Consumption",
                           workloadProfileType = "Consumption" } } } } })
  return r.planned and { planned = true, id = p } or r.body
end

--- The container app, or nil.
---@param opts hoist.azure.containerapp.Ref
---@return table|nil
function M.get(opts)
  local fname = "hoist.azure.containerapp.get"
  local o = util.check_opts(fname, opts, spec())
  return get(fname, o, nil, "get container app " .. o.name)
end

--- `https://<fqdn>` of the app's ingress, or nil without one.
---@param app table a container app (M.get)
---@return string|nil
function M.url(app)
  local ingress = app and app.properties and app.properties.configuration and app.properties.configuration.ingress
  return ingress and ingress.fqdn and ("https://" .. ingress.fqdn) or nil
end

local body_spec = spec { body = { type = "table", required = true } }

-- PUT or PATCH `o.body` on the app; the operation polled until it ends.
local function send(fname, o, method, verb)
  local c, p = locate(fname, o)
  local r = call(c, o, { method = method, path = p, body = o.body, action = "azure.containerapp." .. method:lower(),
                         poll_interval = 1, what = verb .. " container app " .. o.name })
  return r.planned and { planned = true, id = p } or r.body
end

--- Creates the app or replaces its definition (PUT): `body` is the ARM body without secrets'
--- values shown anywhere (configuration.secrets values are registered here). The operation
--- ends when the new revision is provisioned; wait_revision waits for it to be healthy.
---@param opts hoist.azure.containerapp.Ref|{body: table}
---@return table app (or {planned = true})
function M.put(opts)
  local fname = "hoist.azure.containerapp.put"
  local o = util.check_opts(fname, opts, body_spec)
  local conf = (o.body.properties or {}).configuration or {}
  for _, s in ipairs(conf.secrets or {}) do
    if type(s.value) == "string" and #s.value >= 4 then hoist.secret(s.value) end
  end
  return send(fname, o, "PUT", "deploy")
end

--- Changes part of the app (PATCH, a JSON merge): e.g. `{properties = {template = {...}}}`
--- for a new revision, or the ingress traffic.
---@param opts hoist.azure.containerapp.Ref|{body: table}
---@return table app (or {planned = true})
function M.patch(opts)
  local fname = "hoist.azure.containerapp.patch"
  return send(fname, util.check_opts(fname, opts, body_spec), "PATCH", "update")
end

--- Deletes the app; absent is fine.
---@param opts hoist.azure.containerapp.Ref
---@return {deleted: boolean, planned?: boolean}
function M.delete(opts)
  local fname = "hoist.azure.containerapp.delete"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "DELETE", path = p, action = "azure.containerapp.delete", poll_interval = 1,
                         what = "delete container app " .. o.name, missing_ok = true })
  if not r then return { deleted = false } end
  return { deleted = not r.planned, planned = r.planned or nil }
end

---------------------------------------------------------------- revisions and traffic

--- Every revision of the app (name, active, healthState, runningState, replicas, trafficWeight, ...).
---@param opts hoist.azure.containerapp.Ref
---@return table[]
function M.revisions(opts)
  local fname = "hoist.azure.containerapp.revisions"
  local o = util.check_opts(fname, opts, spec())
  local c, p = locate(fname, o)
  return azure().list { credential = c, endpoint = o.endpoint, path = p .. "/revisions", what = "list revisions of " .. o.name }
end

--- One revision, or nil.
---@param opts hoist.azure.containerapp.Ref|{revision: string}
---@return table|nil
function M.revision(opts)
  local fname = "hoist.azure.containerapp.revision"
  local o = util.check_opts(fname, opts, spec { revision = { type = "string", required = true } })
  local c, p = locate(fname, o)
  local r = call(c, o, { path = p .. "/revisions/" .. enc(o.revision), what = "get revision " .. o.revision,
                         missing_ok = true })
  return r and r.body
end

--- Sets the traffic weights: `weights` maps revision names to percentages adding up to 100.
---@param opts hoist.azure.containerapp.Ref|{weights: table<string, integer>}
---@return table app (or {planned = true})
function M.set_traffic(opts)
  local fname = "hoist.azure.containerapp.set_traffic"
  local o = util.check_opts(fname, opts, spec { weights = { type = "table", required = true } })
  local traffic, total = {}, 0
  for _, rev in ipairs(util.sorted_keys(o.weights)) do
    local w = o.weights[rev]
    if type(w) ~= "number" or w < 0 or w ~= math.floor(w) then
      fail("invalid_argument", ("%s: the weight of %s must be a whole number >= 0, got %s"):format(fname, rev, tostring(w)))
    end
    total = total + w
    traffic[#traffic + 1] = { revisionName = rev, weight = w }
  end
  if total ~= 100 then
    fail("invalid_argument", ("%s: the weights add up to %d, not 100"):format(fname, total), { weights = o.weights })
  end
  local r = M.patch { resource_group = o.resource_group, name = o.name, subscription = o.subscription,
                      credential = o.credential, endpoint = o.endpoint,
                      body = { properties = { configuration = { ingress = { traffic = traffic } } } } }
  local shown = {}
  for _, tr in ipairs(traffic) do shown[#shown + 1] = ("%s %d%%"):format(tr.revisionName, tr.weight) end
  hoist.log.event("containerapp.traffic", ("%straffic of %s: %s"):format(dry_run() and "dry run: " or "", o.name,
    table.concat(shown, ", ")), { name = o.name, weights = o.weights })
  return r
end

local function revision_action(fname, opts, action)
  local o = util.check_opts(fname, opts, spec { revision = { type = "string", required = true } })
  local c, p = locate(fname, o)
  local r = call(c, o, { method = "POST", path = p .. "/revisions/" .. enc(o.revision) .. "/" .. action,
                         action = "azure.containerapp." .. action, what = action .. " revision " .. o.revision })
  return { planned = r.planned or nil }
end

--- Deactivates a revision (its replicas go; it must have no traffic).
---@param opts hoist.azure.containerapp.Ref|{revision: string}
---@return {planned?: boolean}
function M.deactivate(opts) return revision_action("hoist.azure.containerapp.deactivate", opts, "deactivate") end

--- Activates a revision again.
---@param opts hoist.azure.containerapp.Ref|{revision: string}
---@return {planned?: boolean}
function M.activate(opts) return revision_action("hoist.azure.containerapp.activate", opts, "activate") end

---------------------------------------------------------------- logs

--- The console or system log lines of the app (optionally of one revision), newest last:
--- what `az containerapp logs show [--type system]` prints. Uses getAuthToken and the app's
--- log stream endpoint (through the proxy variables); the token is a registered secret.
---@param opts hoist.azure.containerapp.Ref|{revision?: string, type?: "console"|"system", tail?: integer}
---@return table[] lines each {TimeStamp, Log or Msg, RevisionName, ...}
function M.logs(opts)
  local fname = "hoist.azure.containerapp.logs"
  local o = util.check_opts(fname, opts, spec { revision = "string", type = { type = "string", default = "console",
    allowed = { "console", "system" } }, tail = "integer" })
  local app = M.get { resource_group = o.resource_group, name = o.name, subscription = o.subscription,
                      credential = o.credential, endpoint = o.endpoint }
  if not app then fail("not_found", ("container app %s not found"):format(o.name)) end
  local c, p = locate(fname, o)
  local tok = call(c, o, { method = "POST", path = p .. "/getAuthToken", safe = true, what = "log token of " .. o.name })
  local token = ((tok.body or {}).properties or {}).token
  if type(token) ~= "string" or #token < 4 then
    fail("unavailable", ("getAuthToken of %s gave no token"):format(o.name))
  end
  hoist.secret(token)
  local url = app.properties.eventStreamEndpoint
  local r = hoist.http.request { url = url, headers = { Authorization = "Bearer " .. token }, timeout = 30,
    query = { type = o.type, tailLines = o.tail or M.defaults.log_lines, revisionName = o.revision, follow = "false" } }
  if r.status >= 300 then
    fail("unavailable", ("the log stream of %s answered HTTP %d: %s"):format(o.name, r.status, (r.body or ""):sub(1, 200)))
  end
  local out = {}
  for line in (r.body or ""):gmatch("[^\n]+") do
    local ok, v = pcall(hoist.json.decode, line)
    out[#out + 1] = ok and v or { Log = line }
  end
  return out
end

--- Log lines (M.logs) as text, one "<time> <message>" line each.
---@param lines table[]
---@return string
local function log_text(lines)
  local t = {}
  for _, l in ipairs(lines or {}) do t[#t + 1] = ("%s %s"):format(tostring(l.TimeStamp), tostring(l.Log or l.Msg)) end
  return table.concat(t, "\n")
end
M.log_text = log_text

-- Every this many polls of a revision that is not healthy yet, its console log is read for
-- the port the app says it listens on (three requests: app, getAuthToken, the stream).
local PORT_CHECK_EVERY = 3

--- Waits until a revision is provisioned, healthy and running with replicas. Raises
--- rollout_failed as soon as it is Unhealthy or its provisioning failed, with its
--- runningStateDetails and the revision's system and console logs as evidence; timeout
--- after `timeout` seconds. With `port` (the ingress targetPort), it also fails as soon as
--- the revision's console log says the app listens on another port (hoist.azure.ports),
--- naming both, instead of waiting out the timeout; a timeout names the image's EXPOSE
--- (`image`) when that differs.
---@param opts hoist.azure.containerapp.Ref|{revision: string, timeout?: number, poll_interval?: number, port?: integer, image?: string}
---@return table revision
function M.wait_revision(opts)
  local fname = "hoist.azure.containerapp.wait_revision"
  local o = util.check_opts(fname, opts, spec { revision = { type = "string", required = true }, timeout = "number",
                                                poll_interval = "number", port = "integer", image = "string" })
  if dry_run() then return { name = o.revision, planned = true } end
  local deadline = hoist.now() + (o.timeout or M.defaults.timeout)
  local ref = { resource_group = o.resource_group, name = o.name, subscription = o.subscription,
                credential = o.credential, endpoint = o.endpoint }
  local function evidence(rev)
    local r2 = {}
    for k, v in pairs(ref) do r2[k] = v end
    r2.revision = rev
    local d = {}
    for _, kind in ipairs { "system", "console" } do
      r2.type = kind
      local ok, lines = util.try(M.logs, r2)
      d[kind] = ok and log_text(lines) or ("(no " .. kind .. " logs: " .. tostring(hoist.is_error(lines) and lines.message or lines) .. ")")
    end
    return d
  end
  -- the port the console log (or, at the end, EXPOSE) names when it is not targetPort
  local function wrong_port(expose_only, rev)
    if not o.port then return nil end
    -- the first container's lines only: a sidecar announces its own port
    local first = ((((rev or {}).properties or {}).template or {}).containers or {})[1]
    local container = first and first.name
    local r2 = {}
    for k, v in pairs(ref) do r2[k] = v end
    r2.revision, r2.type, r2.tail = o.revision, "console", 50
    local ok, lines = pcall(M.logs, r2)
    if not ok and hoist.is_error(lines, "cancelled") then error(lines, 0) end
    local mine = {}
    for _, l in ipairs(ok and lines or {}) do
      if not container or l.ContainerName == nil or l.ContainerName == container then
        mine[#mine + 1] = tostring(l.Log or l.Msg or "")
      end
    end
    return require("hoist.azure.ports").mismatch { port = o.port, setting = "container_port",
      waits = "the ingress sends traffic to (targetPort)", image = o.image, logs = table.concat(mine, "\n"), expose_only = expose_only }
  end
  local polls = 0
  while true do
    local q = {}
    for k, v in pairs(ref) do q[k] = v end
    q.revision = o.revision
    local rev = M.revision(q)
    polls = polls + 1
    local p = rev and rev.properties or {}
    if p.provisioningState == "Failed" then
      local d = evidence(o.revision)
      fail("rollout_failed", ("revision %s failed to provision: %s"):format(o.revision,
        hoist.json.encode(p.provisioningError or "")), { revision = o.revision, logs = d })
    end
    if p.healthState == "Unhealthy" then
      local d = evidence(o.revision)
      fail("rollout_failed", ("revision %s is unhealthy (%s): %s"):format(o.revision, tostring(p.runningState),
        tostring(p.runningStateDetails)), { revision = o.revision, logs = d })
    end
    if p.provisioningState == "Provisioned" and p.healthState == "Healthy" and p.runningState == "Running"
        and (p.replicas or 0) > 0 then
      return rev
    end
    if p.provisioningState == "Provisioned" and polls % PORT_CHECK_EVERY == 0 then
      local wrong = wrong_port(false, rev)
      if wrong then
        fail("rollout_failed", ("revision %s cannot become healthy: %s"):format(o.revision, wrong),
          { revision = o.revision, reason = "port", logs = evidence(o.revision) })
      end
    end
    if hoist.now() > deadline then
      local wrong = wrong_port(true, rev)
      fail("timeout", ("revision %s is still %s/%s/%s after %gs%s"):format(o.revision, tostring(p.provisioningState),
        tostring(p.healthState), tostring(p.runningState), o.timeout or M.defaults.timeout,
        wrong and (": " .. wrong) or ""), { revision = o.revision, logs = evidence(o.revision) })
    end
    hoist.sleep(o.poll_interval or M.defaults.poll_interval)
  end
end

return M
