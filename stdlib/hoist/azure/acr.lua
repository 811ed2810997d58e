--- hoist.azure.acr: Azure Container Registry. The registry resource (get, ensure with a SKU
--- and the admin user off, geo-replications), the AcrPull role for a managed identity (what
--- `az aks update --attach-acr` does), admin credentials, server-side `importImage`, and the
--- data plane with only Azure credentials: `login` registers the registry host with the
--- registry client (hoist.registry.credentials), so hoist.registry.copy/tags/... and
--- `docker login` work with an Entra token exchanged for ACR's (what `az acr login` does).
--- See docs/azure.md, "Container Registry".
local util = require "hoist.util"

local fail = util.fail

local M = {}

--- AcrPull, the built-in role that may pull images (the same id in every tenant).
M.ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
--- The user name that says "the password is an ACR refresh token".
M.TOKEN_USER = "00000000-0000-0000-0000-000000000000"
local SKUS = { "Basic", "Standard", "Premium" }

local function azure() return require "hoist.azure" end

local common = { resource_group = "string", subscription = "string", credential = "table|string", poll_interval = "number" }
local function spec(extra) return util.spec(common, extra) end

local function check_name(fname, name)
  if type(name) ~= "string" or not name:match("^%w+$") or #name < 5 or #name > 50 then
    fail("invalid_argument", ("%s: a registry name is 5-50 letters and digits, got %s"):format(fname, tostring(name)),
      { registry = name })
  end
end

-- credential, subscription and the registry's resource id
local function where(fname, o)
  if not o.resource_group then
    fail("invalid_argument", fname .. ": option 'resource_group' is required", { option = "resource_group" })
  end
  local c = azure().credential_of(fname, o.credential)
  local sub = azure().subscription(o.subscription, c)
  local id = azure().resource_id(sub, o.resource_group, "Microsoft.ContainerRegistry/registries", o.registry or o.name)
  return c, sub, id
end

-- a container group or registry settles in seconds: poll each second unless told otherwise
local function call(c, o, r)
  r.poll_interval = r.poll_interval or o.poll_interval or 1
  return azure().call(c, o, r)
end

---@class hoist.azure.acr.Registry
---@field id string
---@field name string
---@field location string
---@field sku {name: string}
---@field login_server string properties.loginServer: "myacr.azurecr.io"
---@field properties table

local function shaped(body)
  if type(body) ~= "table" then return body end
  body.login_server = body.properties and body.properties.loginServer
  return body
end

--- The registry, or nil when it does not exist.
---@param opts {name: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return hoist.azure.acr.Registry|nil
function M.get(opts)
  local fname = "hoist.azure.acr.get"
  local o = util.check_opts(fname, opts, spec { name = { type = "string", required = true } }, "name")
  check_name(fname, o.name)
  local c, _, id = where(fname, o)
  local r = call(c, o, { path = id, what = "get container registry " .. o.name, missing_ok = true })
  return r and shaped(r.body)
end

--- Creates the registry unless it exists: the SKU given (default Basic), the admin user off
--- (pulls use Entra identities or tokens, not a shared password). An existing registry is
--- returned as it is, with a warning when its SKU differs. Returns the registry and whether
--- it was created; under --dry-run a missing registry is a plan step.
---@param opts {name: string, resource_group: string, location: string, sku?: "Basic"|"Standard"|"Premium", tags?: table<string, string>, subscription?: string, credential?: string|hoist.azure.Credential}
---@return hoist.azure.acr.Registry|{planned: boolean}, boolean created
function M.ensure(opts)
  local fname = "hoist.azure.acr.ensure"
  local o = util.check_opts(fname, opts, spec { name = { type = "string", required = true }, location = "string",
    sku = { type = "string", default = "Basic", allowed = SKUS }, tags = "table" })
  check_name(fname, o.name)
  local got = M.get { name = o.name, resource_group = o.resource_group, subscription = o.subscription, credential = o.credential }
  if got then
    if got.sku and got.sku.name ~= o.sku then
      hoist.log.warn(("registry %s exists with SKU %s, not %s: left as it is"):format(o.name, tostring(got.sku.name), o.sku),
        { registry = o.name })
    end
    return got, false
  end
  if not o.location then fail("invalid_argument", fname .. ": option 'location' is required to create a registry", { option = "location" }) end
  local c, _, id = where(fname, o)
  local r = call(c, o, { method = "PUT", path = id, action = "azure.acr.create", what = "create container registry " .. o.name,
    body = { location = o.location, sku = { name = o.sku }, tags = o.tags, properties = { adminUserEnabled = false } } })
  if r.planned then return { planned = true, name = o.name }, true end
  return shaped(r.body), true
end

--- Makes sure the registry has a geo-replication in `location` (Premium registries only;
--- Azure's own error otherwise).
---@param opts {registry: string, location: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return table replication
function M.replication_ensure(opts)
  local fname = "hoist.azure.acr.replication_ensure"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true },
                                                location = { type = "string", required = true } })
  check_name(fname, o.registry)
  local c, _, id = where(fname, o)
  local path = id .. "/replications/" .. o.location:lower():gsub("%s", "")
  local ok, r = pcall(call, c, o, { path = path, what = "get replication " .. o.location })
  if ok then return r.body end
  if not hoist.is_error(r, "not_found") then error(r, 0) end
  return call(c, o, { method = "PUT", path = path, body = { location = o.location }, action = "azure.acr.replicate",
                      what = ("replicate registry %s to %s"):format(o.registry, o.location) }).body
end

--- Gives a managed identity (its principal id) the AcrPull role on the registry, unless it
--- has it: what `az aks update --attach-acr` does for the kubelet identity
--- (hoist.azure.identity.assign on the registry). Returns the role assignment and whether it
--- was created.
---@param opts {registry: string, principal_id: string, resource_group: string, principal_type?: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return table assignment, boolean created
function M.attach(opts)
  local fname = "hoist.azure.acr.attach"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true },
    principal_id = { type = "string", required = true }, principal_type = { type = "string", default = "ServicePrincipal" } })
  check_name(fname, o.registry)
  if not o.principal_id:match("^%x+%-%x+%-%x+%-%x+%-%x+$") then
    fail("invalid_argument", ("%s: principal_id must be an object id (a GUID), got %s"):format(fname, o.principal_id))
  end
  local c, sub, id = where(fname, o)
  local r = require("hoist.azure.identity").assign { principal_id = o.principal_id, principal_type = o.principal_type,
    role = "AcrPull", scope = id, subscription = sub, credential = c }
  return r.assignment or { id = r.id, planned = r.planned }, r.changed
end

---@class hoist.azure.acr.Credentials
---@field username string
---@field passwords {name: string, value: string}[] values are registered secrets

local function secret_credentials(body)
  body = body or {}
  for _, p in ipairs(body.passwords or {}) do
    if type(p.value) == "string" and #p.value >= 4 then hoist.secret(p.value) end
  end
  return { username = body.username, passwords = body.passwords or {} }
end

--- The admin user's name and passwords (registered as secrets). Azure refuses while the
--- admin user is off (its error says so).
---@param opts {registry: string, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return hoist.azure.acr.Credentials
function M.credentials(opts)
  local fname = "hoist.azure.acr.credentials"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true } }, "registry")
  check_name(fname, o.registry)
  local c, _, id = where(fname, o)
  return secret_credentials(call(c, o, { method = "POST", path = id .. "/listCredentials", safe = true,
                                         what = "list credentials of registry " .. o.registry }).body)
end

--- Regenerates one admin password ("password" or "password2"); the new ones, as secrets.
---@param opts {registry: string, name?: "password"|"password2", resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return hoist.azure.acr.Credentials
function M.regenerate(opts)
  local fname = "hoist.azure.acr.regenerate"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true },
    name = { type = "string", default = "password", allowed = { "password", "password2" } } })
  check_name(fname, o.registry)
  local c, _, id = where(fname, o)
  local r = call(c, o, { method = "POST", path = id .. "/regenerateCredential", body = { name = o.name },
                         action = "azure.acr.regenerate", what = "regenerate " .. o.name .. " of registry " .. o.registry })
  if r.planned then return { planned = true, passwords = {} } end
  return secret_credentials(r.body)
end

--- Imports an image into the registry server-side (`importImage`, no pull through this
--- machine): `source` is "host/repository:tag" (or @digest) of a registry Azure can reach, or
--- {resource_id=, image=} for another ACR; `target` the tags to write (default: the source's
--- repository and tag). `force = false` fails when a target tag exists.
---@param opts {registry: string, source: string|{resource_id: string, image: string}, target?: string|string[], username?: string, password?: string, force?: boolean, resource_group: string, subscription?: string, credential?: string|hoist.azure.Credential}
---@return {planned?: boolean}
function M.import(opts)
  local fname = "hoist.azure.acr.import"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true },
    source = { type = "string|table", required = true }, target = "string|table", username = "string", password = "string",
    force = { type = "boolean", default = true } })
  check_name(fname, o.registry)
  local c, _, id = where(fname, o)
  local source
  if type(o.source) == "string" then
    local ref = hoist.image.parse(o.source)
    local image = ref.path .. (ref.digest and ("@" .. ref.digest) or (":" .. (ref.tag or "latest")))
    source = { registryUri = ref.registry, sourceImage = image }
  else
    if type(o.source.resource_id) ~= "string" or type(o.source.image) ~= "string" then
      fail("invalid_argument", fname .. ": option 'source' must be \"host/repository:tag\" or {resource_id=, image=}")
    end
    source = { resourceId = o.source.resource_id, sourceImage = o.source.image }
  end
  if o.username then
    source.credentials = { username = o.username, password = o.password and hoist.secret(o.password) or nil }
  end
  local targets = type(o.target) == "string" and { o.target } or o.target
  local r = call(c, o, { method = "POST", path = id .. "/importImage", action = "azure.acr.import",
    what = ("import %s into registry %s"):format(source.sourceImage, o.registry),
    body = { source = source, targetTags = targets, mode = o.force and "Force" or "NoForce" } })
  return { planned = r.planned or nil, status = r.status }
end

--- Registers the registry's login server with the registry client so every hoist.registry
--- call to it uses `credential` (Entra token -> ACR refresh token -> access token, no
--- daemon); with `docker = true` also logs docker in with the refresh token (password on
--- stdin; `config` = a private docker config folder). `registry` is a login server
--- ("myacr.azurecr.io", or the emulator's 127.0.0.1:5002), or a registry name with
--- `resource_group` to read its login server.
---@param opts {registry: string, credential?: string|hoist.azure.Credential, resource_group?: string, subscription?: string, docker?: boolean, config?: string}
---@return {login_server: string, username: string, password: string} password: the refresh token (a secret)
function M.login(opts)
  local fname = "hoist.azure.acr.login"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true }, docker = "boolean",
                                                config = "string" }, "registry")
  local server = o.registry
  if not server:find("[.:]") then
    if o.resource_group then
      local got = M.get { name = server, resource_group = o.resource_group, subscription = o.subscription, credential = o.credential }
      if not got then fail("not_found", ("%s: registry %s does not exist in resource group %s"):format(fname, server, o.resource_group)) end
      server = got.login_server
    else
      server = server:lower() .. ".azurecr.io"
    end
  end
  local c = azure().credential_of(fname, o.credential)
  hoist.registry.credentials { host = server, acr = c }
  local refresh = hoist.registry.acr_refresh_token { registry = server }
  if o.docker then
    hoist.docker.login { registry = server, username = M.TOKEN_USER, password = refresh, config = o.config }
  end
  return { login_server = server, username = M.TOKEN_USER, password = refresh }
end

-- The registry's login server, with credentials for its data plane set: `registry` is a login
-- server (credentials only when one is given), or a name whose server M.login reads and signs in to.
local function data_plane(fname, o)
  local named = not o.registry:find("[.:]")
  local server = o.registry
  if named then
    server = M.login { registry = o.registry, resource_group = o.resource_group, subscription = o.subscription,
                       credential = o.credential }.login_server
  end
  if o.credential or named then
    hoist.registry.credentials { host = server, acr = azure().credential_of(fname, o.credential) }
  end
  return server
end

local function sorted(list)
  table.sort(list)
  return list
end

--- The repositories of a registry, sorted, through its data plane (like `az acr repository
--- list`). `registry`: a login server, or a name (with resource_group to read its server).
---@param opts {registry: string, resource_group?: string, credential?: string|hoist.azure.Credential}
---@return string[]
function M.repositories(opts)
  local fname = "hoist.azure.acr.repositories"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true } }, "registry")
  return sorted(hoist.registry.catalog { registry = data_plane(fname, o) })
end

--- The tags of a repository, sorted (like `az acr repository show-tags`).
---@param opts {registry: string, repository: string, resource_group?: string, credential?: string|hoist.azure.Credential}
---@return string[]
function M.tags(opts)
  local fname = "hoist.azure.acr.tags"
  local o = util.check_opts(fname, opts, spec { registry = { type = "string", required = true },
                                                repository = { type = "string", required = true } })
  return sorted(hoist.registry.tags { repository = data_plane(fname, o) .. "/" .. o.repository })
end

return M
