--- hoist.azure.resources: resource groups (get, ensure) and resource providers (get, ensure
--- registered), over hoist.azure.request. Reached as hoist.azure.resource_groups and
--- hoist.azure.providers.
local util = require "hoist.util"

local fail = util.fail

local M = { resource_groups = {}, providers = {} }

-- hoist.azure requires this module: reach it at call time, not load time
local function azure() return require "hoist.azure" end

local common = {
  subscription = "string", credential = "table", endpoint = "string", dry_run = "boolean",
  timeout = util.rest_options.timeout, attempts = util.rest_options.attempts,
}
local function spec(extra) return util.spec(common, extra) end

-- {credential, subscription} of a call
local function context(fname, o)
  local az = azure()
  local c = az.credential_of(fname, o.credential)
  return c, az.subscription(o.subscription, c)
end

local function call(c, o, r) return azure().call(c, o, r, { "dry_run", "timeout", "attempts" }) end

local function enc(s) return azure().encode(s) end

---------------------------------------------------------------- resource groups

---@class hoist.azure.ResourceGroup
---@field id string
---@field name string
---@field location string
---@field tags? table<string, string>
---@field properties {provisioningState: string}

local group_spec = spec { name = { type = "string", required = true }, location = "string", tags = "table" }

local function group_path(sub, name) return ("/subscriptions/%s/resourcegroups/%s"):format(enc(sub), enc(name)) end

--- The resource group, or nil when it does not exist.
---@param opts {name: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.ResourceGroup|nil
function M.resource_groups.get(opts)
  local o = util.check_opts("hoist.azure.resource_groups.get", opts, group_spec, "name")
  local c, sub = context("hoist.azure.resource_groups.get", o)
  local r = call(c, o, { path = group_path(sub, o.name), what = "get resource group " .. o.name, missing_ok = true })
  return r and r.body
end

--- Creates the resource group unless it exists. A group that exists in another location is a
--- conflict (Azure would refuse the PUT). Returns the group and whether it was created; under
--- --dry-run a missing group is a plan step and the result has `planned = true`.
---@param opts {name: string, location: string, tags?: table<string, string>, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.ResourceGroup|{planned: boolean}, boolean created
function M.resource_groups.ensure(opts)
  local o = util.check_opts("hoist.azure.resource_groups.ensure", opts, group_spec)
  if not o.location then fail("invalid_argument", "hoist.azure.resource_groups.ensure: option 'location' is required", { option = "location" }) end
  local c, sub = context("hoist.azure.resource_groups.ensure", o)
  local got = M.resource_groups.get { name = o.name, subscription = sub, credential = c, endpoint = o.endpoint }
  local function norm(l) return (l or ""):lower():gsub("%s", "") end
  if got then
    if norm(got.location) ~= norm(o.location) then
      fail("conflict", ("resource group %s exists in %s, not %s"):format(o.name, tostring(got.location), o.location),
        { resource_group = o.name, location = got.location, wanted = o.location })
    end
    return got, false
  end
  local body = { location = o.location, tags = o.tags }
  local r = call(c, o, { method = "PUT", path = group_path(sub, o.name), body = body,
                         what = "create resource group " .. o.name, action = "azure.resource_group.create" })
  if r.planned then return { planned = true, name = o.name, location = o.location }, true end
  return r.body, true
end

--- The group's resources (its top-level ones, every page), as ARM's Resources - List By
--- Resource Group gives them: {id, name, type, location, tags, ...}. Raises not_found when
--- the group does not exist.
---@param opts {name: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return table[]
function M.resource_groups.resources(opts)
  local o = util.check_opts("hoist.azure.resource_groups.resources", opts, group_spec, "name")
  local c, sub = context("hoist.azure.resource_groups.resources", o)
  return call(c, o, { path = group_path(sub, o.name) .. "/resources", api_version = "2021-04-01", paged = true,
                      what = "list the resources of resource group " .. o.name }).body.value or {}
end

--- Deletes the resource group, and with it EVERYTHING in it (ARM's long-running delete,
--- followed to its end). Idempotent: a missing group is not an error. A plan step under
--- --dry-run.
---@param opts {name: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string, poll_interval?: number}
---@return {deleted: boolean, planned?: boolean}
function M.resource_groups.delete(opts)
  local o = util.check_opts("hoist.azure.resource_groups.delete", opts, spec {
    name = { type = "string", required = true }, poll_interval = "number" }, "name")
  local c, sub = context("hoist.azure.resource_groups.delete", o)
  local r = call(c, o, { method = "DELETE", path = group_path(sub, o.name), poll_interval = o.poll_interval,
                         what = "delete resource group " .. o.name, action = "azure.resource_group.delete", missing_ok = true })
  if not r then return { deleted = false } end
  return { deleted = not r.planned, planned = r.planned }
end

---------------------------------------------------------------- providers

---@class hoist.azure.Provider
---@field namespace string "Microsoft.ContainerInstance"
---@field registrationState string "Registered", "NotRegistered", "Registering", ...
---@field planned? boolean

local provider_spec = spec {
  namespace = { type = "string", required = true }, wait_timeout = "number", poll_interval = "number",
}

local function check_namespace(fname, ns)
  if not ns:match("^%a[%w]*%.[%w%.]+$") then
    fail("invalid_argument", ("%s: '%s' is not a resource provider namespace (like Microsoft.ContainerInstance)"):format(fname, ns),
      { namespace = ns })
  end
end

local function provider_path(sub, ns) return ("/subscriptions/%s/providers/%s"):format(enc(sub), ns) end

--- The resource provider's registration in the subscription.
---@param opts {namespace: string, subscription?: string, credential?: hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.Provider
function M.providers.get(opts)
  local o = util.check_opts("hoist.azure.providers.get", opts, provider_spec, "namespace")
  check_namespace("hoist.azure.providers.get", o.namespace)
  local c, sub = context("hoist.azure.providers.get", o)
  return call(c, o, { path = provider_path(sub, o.namespace), what = "get resource provider " .. o.namespace }).body
end

--- Registers the resource provider unless it is registered, and waits until it is. When the
--- identity may not register it, says so, naming the namespace and the command an owner runs.
---@param opts {namespace: string, subscription?: string, wait_timeout?: number, poll_interval?: number, credential?: hoist.azure.Credential, endpoint?: string}
---@return hoist.azure.Provider
function M.providers.ensure(opts)
  local fname = "hoist.azure.providers.ensure"
  local o = util.check_opts(fname, opts, provider_spec, "namespace")
  check_namespace(fname, o.namespace)
  local c, sub = context(fname, o)
  local ns = o.namespace
  local p = M.providers.get { namespace = ns, subscription = sub, credential = c, endpoint = o.endpoint }
  if p.registrationState == "Registered" then return p end
  if p.registrationState ~= "Registering" then
    local ok, r = pcall(call, c, o, { method = "POST", path = provider_path(sub, ns) .. "/register",
                                       what = "register resource provider " .. ns, action = "azure.provider.register" })
    if not ok then
      if hoist.is_error(r, "forbidden") then
        fail("forbidden", ("resource provider %s is not registered in subscription %s, and this identity may not register it: "
          .. "an owner runs `az provider register --namespace %s` (Azure said: %s)"):format(ns, sub, ns, r.message),
          { namespace = ns, subscription = sub, cause = r.details })
      end
      error(r, 0)
    end
    if r.planned then return { namespace = ns, registrationState = p.registrationState, planned = true } end
  end
  local deadline = hoist.now() + (o.wait_timeout or 600)
  while true do
    hoist.sleep(o.poll_interval or 5)
    p = M.providers.get { namespace = ns, subscription = sub, credential = c, endpoint = o.endpoint }
    if p.registrationState == "Registered" then return p end
    if hoist.now() > deadline then
      fail("timeout", ("resource provider %s is still %s after %ds"):format(ns, tostring(p.registrationState), o.wait_timeout or 600),
        { namespace = ns, state = p.registrationState })
    end
  end
end

return M
