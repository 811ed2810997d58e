--- hoist.registry: a native OCI Distribution client. Resolve tags to digests, list tags and
--- repositories, read manifests, copy images by digest (cross-repository mounts inside a
--- registry, streamed blobs across registries, multi-platform indexes), retag and delete.
--- Auth: explicit credentials, docker's config.json and credential helpers, Basic and Bearer
--- token challenges, ACR's refresh-token exchange. Mutating calls honour dry-run.
---
--- Policy lives here: the retry defaults below are what the engine applies to each request
--- (429, 5xx and connection errors, with exponential backoff, jitter and Retry-After).
local native = require "hoist.native.registry"

local M = {}

local util = require "hoist.util"
local await, fail = util.await, util.fail

--- Retry and transfer defaults; change them here for the whole run (or per call).
---@class hoist.registry.Defaults
---@field attempts integer tries per request (1 = no retry)
---@field backoff number first delay in seconds; doubles each try, with jitter
---@field max_backoff number longest delay between tries (Retry-After may ask for more)
---@field timeout number seconds per request (blob streams have none)
---@field concurrency integer blobs copied at once
---@field buffer integer bytes held between a source download and a destination upload
M.defaults = { attempts = 4, backoff = 0.2, max_backoff = 10, timeout = 300, concurrency = 4, buffer = 8 * 1024 * 1024 }

---@class hoist.registry.Auth
---@field username? string
---@field password? string
---@field token? string a registry bearer token, sent as is
---@field identity_token? string a refresh token (docker's identitytoken)
---@field aad_token? string ACR: an Azure AD access token, exchanged for a refresh token

---@class hoist.registry.CallOptions
---@field auth? hoist.registry.Auth credentials for this call (beat login and config.json)
---@field insecure_registries? string[] registries to reach over plain HTTP (loopback always is)
---@field attempts? integer
---@field backoff? number
---@field max_backoff? number
---@field timeout? number
---@field dry_run? boolean plan only (also on with `hoist run --dry-run`)

local option_types = util.spec(util.rest_options, {
  image = "string", repository = "string", registry = "string", from = "string", to = "string",
  tag = "string", auth = "table", from_auth = "table", to_auth = "table", insecure_registries = "table",
  concurrency = "number", buffer = "number", n = "number", limit = "number",
  username = "string", password = "string", token = "string", identity_token = "string",
  aad_token = "string",
})

-- Credential providers by registry host (M.credentials): a call to that host without
-- explicit auth gets a fresh Entra token from the provider's Azure credential, which the
-- engine exchanges for ACR tokens.
local providers = {}

-- The host of an option's value (an image, repository or registry), nil when it does not parse.
local function host_of(key, value)
  if type(value) ~= "string" then return nil end
  if key == "registry" then return value end
  local ok, ref = pcall(function() return require("hoist.image").parse(value) end)
  return ok and ref.registry or nil
end

-- auth = {aad_token = ...} from the host's provider, unless the call brings its own.
local function provided_auth(host)
  local p = host and providers[host]
  if not p then return nil end
  local token = p.acr:get_token("https://management.azure.com/.default").token
  return { aad_token = token }
end

-- f("ref") or f{key = "ref", ...}: validated options (util.check_opts) with the defaults
-- of M.defaults filled in (read at each call: a script may change them).
local function options(fn, v, key, allowed)
  local spec = {}
  for k in pairs(allowed) do spec[k] = option_types[k] end
  spec[key] = { type = option_types[key], required = true }
  local o = util.check_opts("hoist.registry." .. fn, v, spec, key)
  for k, d in pairs(M.defaults) do
    if allowed[k] and o[k] == nil then o[k] = d end
  end
  if next(providers) then
    if allowed.from_auth then
      o.from_auth = o.from_auth or o.auth or provided_auth(host_of("from", o.from))
      o.to_auth = o.to_auth or o.auth or provided_auth(host_of("to", o.to))
    elseif allowed.auth and not o.auth then
      o.auth = provided_auth(host_of(key, o[key]))
    end
  end
  for _, k in ipairs { "auth", "from_auth", "to_auth" } do
    local a = o[k]
    if a then
      for field, value in pairs(a) do
        if type(value) == "string" and #value >= 4 and field ~= "username" then hoist.secret(value) end
      end
    end
  end
  return o
end

local function set(...)
  local s = { auth = true, insecure_registries = true, attempts = true, backoff = true,
              max_backoff = true, timeout = true }
  for _, k in ipairs { ... } do s[k] = true end
  return s
end

---@class hoist.registry.Resolved
---@field digest string "sha256:..."
---@field media_type string
---@field size integer manifest size in bytes
---@field image string repository@digest

--- Resolves an image reference to the digest the registry serves (HEAD, GET when needed).
---@param opts string|{image: string}|hoist.registry.CallOptions
---@return hoist.registry.Resolved
function M.resolve(opts)
  return await(native.resolve(options("resolve", opts, "image", set("image"))))
end

--- True when the image (tag or digest) exists; false on 404; other failures raise.
---@param opts string|{image: string}|hoist.registry.CallOptions
---@return boolean
function M.exists(opts)
  return await(native.exists(options("exists", opts, "image", set("image"))))
end

--- Every tag of a repository, following pagination (`n` per page).
---@param opts string|{repository: string, n?: integer, limit?: integer}|hoist.registry.CallOptions
---@return string[]
function M.tags(opts)
  return await(native.tags(options("tags", opts, "repository", set("repository", "n", "limit"))))
end

--- Every repository of a registry (`/v2/_catalog`), following pagination.
---@param opts string|{registry: string, n?: integer, limit?: integer}|hoist.registry.CallOptions
---@return string[]
function M.catalog(opts)
  return await(native.catalog(options("catalog", opts, "registry", set("registry", "n", "limit"))))
end

---@class hoist.registry.Manifest: hoist.registry.Resolved
---@field raw string the manifest bytes as served (their sha256 is `digest`)
---@field manifest table the decoded manifest

--- Reads a manifest (an index or an image manifest), its digest verified.
---@param opts string|{image: string}|hoist.registry.CallOptions
---@return hoist.registry.Manifest
function M.manifest(opts)
  return await(native.manifest(options("manifest", opts, "image", set("image"))))
end

---@class hoist.registry.Plan
---@field planned boolean true: dry-run, nothing changed
---@field steps {method: string, url: string, action: string, digest?: string, size?: integer, manifest?: table}[]

--- Deletes a manifest (a tag is resolved to its digest first: every tag of it goes).
---@param opts string|{image: string}|hoist.registry.CallOptions
---@return {digest: string, image: string, deleted?: boolean}|hoist.registry.Plan
function M.delete(opts)
  return await(native.delete(options("delete", opts, "image", set("image", "dry_run"))))
end

---@class hoist.registry.CopyResult
---@field digest string the copied manifest's digest (the same at both ends)
---@field media_type string
---@field image string destination repository[:tag]@digest
---@field blobs_copied integer streamed through hoist
---@field blobs_mounted integer mounted from the source repository (same registry)
---@field blobs_skipped integer already at the destination
---@field manifests integer manifests written (children of an index included)
---@field bytes integer blob bytes streamed
---@field planned? boolean
---@field steps? table[]

--- Copies an image by digest, with all children of an index. The destination tag (that of
--- `to`, else that of `from`) is written last: a failed copy leaves no new tag.
---@param opts {from: string, to: string, from_auth?: hoist.registry.Auth, to_auth?: hoist.registry.Auth, concurrency?: integer, buffer?: integer}|hoist.registry.CallOptions
---@return hoist.registry.CopyResult
function M.copy(opts)
  local o = options("copy", opts, "from", set("from", "to", "from_auth", "to_auth", "concurrency", "buffer", "dry_run"))
  if o.to == nil then fail("invalid_argument", "hoist.registry.copy: option 'to' is required") end
  if o.concurrency < 1 then fail("invalid_argument", "hoist.registry.copy: option 'concurrency' must be >= 1") end
  return await(native.copy(o))
end

--- Tags an existing manifest again in the same repository (no blob is touched).
---@param opts {image: string, tag: string}|hoist.registry.CallOptions
---@return {digest: string, media_type: string, image: string}|hoist.registry.Plan
function M.retag(opts)
  local o = options("retag", opts, "image", set("image", "tag", "dry_run"))
  if o.tag == nil then fail("invalid_argument", "hoist.registry.retag: option 'tag' is required") end
  return await(native.retag(o))
end

--- Keeps credentials for a registry for the rest of the run (they become secrets).
--- ACR: username 00000000-0000-0000-0000-000000000000 with a refresh token as password, or
--- `aad_token` to exchange an Azure AD token.
---@param opts {registry: string, username?: string, password?: string, token?: string, identity_token?: string, aad_token?: string}
---@return string registry the normalized host
function M.login(opts)
  local o = options("login", opts, "registry",
    { registry = true, username = true, password = true, token = true, identity_token = true, aad_token = true })
  for _, k in ipairs { "password", "token", "identity_token", "aad_token" } do
    if o[k] and #o[k] >= 4 then hoist.secret(o[k]) end
  end
  return native.login(o)
end

---@class hoist.registry.CredentialProvider
---@field host string a registry host: "myacr.azurecr.io", "127.0.0.1:5002"
---@field acr hoist.azure.Credential an Azure credential: its Entra tokens are exchanged for the registry's

--- Registers where the credentials of a registry host come from for the rest of the run:
--- `acr` = an Azure credential. Every call to that host without its own `auth` (resolve,
--- tags, catalog, copy, ...) asks the credential for an Entra token (cached and renewed by
--- the credential) and the engine exchanges it for ACR tokens: no `az acr login`, no daemon.
--- `acr = false` removes the host's provider.
---@param opts hoist.registry.CredentialProvider|{host: string, acr: false}
---@return string host the normalized host
function M.credentials(opts)
  local o = util.check_opts("hoist.registry.credentials", opts,
    { host = { type = "string", required = true }, acr = { type = "table|boolean", required = true } })
  local host = o.host:lower()
  if o.acr == false then
    providers[host] = nil
    return host
  end
  if not require("hoist.azure.credential").is(o.acr) then
    fail("invalid_argument", "hoist.registry.credentials: option 'acr' must come from hoist.azure.credential{} (or be false)")
  end
  providers[host] = { acr = o.acr }
  return host
end

--- ACR: the refresh token of a registry for an Azure credential (the host's provider when
--- `credential` is not given): the password of `docker login -u 00000000-0000-0000-0000-000000000000`,
--- as `az acr login --expose-token` gives. A registered secret.
---@param opts {registry: string, credential?: hoist.azure.Credential, timeout?: number, attempts?: number}
---@return string
function M.acr_refresh_token(opts)
  local o = util.check_opts("hoist.registry.acr_refresh_token", opts,
    { registry = { type = "string", required = true }, credential = "table", timeout = "number", attempts = "number" },
    "registry")
  local host = o.registry:lower()
  local c = o.credential or (providers[host] or {}).acr
  if not c then
    fail("invalid_argument", ("hoist.registry.acr_refresh_token: no Azure credential for %s: pass credential= or register one "
      .. "with hoist.registry.credentials{host=, acr=}"):format(o.registry), { registry = o.registry })
  end
  local token = c:get_token("https://management.azure.com/.default").token
  local refresh = await(native.exchange_acr_token { registry = o.registry, aad_token = token,
    timeout = o.timeout or M.defaults.timeout, attempts = o.attempts or M.defaults.attempts,
    backoff = M.defaults.backoff, max_backoff = M.defaults.max_backoff })
  return hoist.secret(refresh)
end

--- Forgets the credentials and tokens of a registry.
---@param opts string|{registry: string}
function M.logout(opts)
  native.logout(options("logout", opts, "registry", { registry = true }))
end

--- Splits a reference: the same as hoist.image.parse (one parser, one spelling of each noun).
---@param image string
---@return hoist.image.Ref
function M.parse(image) return require("hoist.image").parse(image) end

return M
