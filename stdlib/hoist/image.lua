--- hoist.image: image references, with the engine's one parser (Docker's grammar:
--- distribution/reference). One spelling per noun:
---   image       a full reference: [registry/]path[:tag][@digest]
---   repository  the name without tag or digest: registry/path ("127.0.0.1:5000/team/app")
---   digest      "sha256:<64 hex>"
--- Docker Hub names are normalised as docker does: "busybox" is
--- "docker.io/library/busybox". Reference: docs/image.md.
local native = require "hoist.native.image"
local util = require "hoist.util"

local M = {}

---@class hoist.image.Ref
---@field registry string host[:port], "docker.io" for Docker Hub
---@field repository string registry/path, without tag or digest
---@field path string the repository inside its registry ("library/busybox")
---@field tag? string
---@field digest? string sha256:...
---@field image string the whole reference, normalised

--- Splits an image reference. Raises invalid_argument naming the reference and what is wrong
--- (uppercase in the path, `a..b`, a name over 255 characters, a bad tag or digest, ...).
---@param image string
---@return hoist.image.Ref
function M.parse(image)
  if type(image) ~= "string" then
    util.fail("invalid_argument", ("hoist.image.parse: expected an image reference (a string), got %s"):format(type(image)))
  end
  return native.parse(image)
end

--- True when `image` is a valid reference; false and the reason when not.
---@param image any
---@return boolean ok
---@return string? why
function M.valid(image)
  local ok, err = pcall(M.parse, image)
  if ok then return true end
  return false, err.message or tostring(err)
end

--- Builds a reference from its parts and checks it: `repository` (a name, registry
--- included; or `registry` and `path`), with `tag` and/or `digest`. Returns the normalised
--- reference.
---@param ref {repository?: string, registry?: string, path?: string, tag?: string, digest?: string}
---@return string
function M.format(ref)
  local o = util.check_opts("hoist.image.format", ref, {
    repository = "string", registry = "string", path = "string", tag = "string", digest = "string", image = "string",
  })
  local name = o.repository
  if o.path then
    if name then util.fail("invalid_argument", "hoist.image.format: give 'repository' or 'path', not both") end
    name = o.registry and (o.registry .. "/" .. o.path) or o.path
  elseif name == nil then
    util.fail("invalid_argument", "hoist.image.format: option 'repository' is required")
  end
  local text = name .. (o.tag and (":" .. o.tag) or "") .. (o.digest and ("@" .. o.digest) or "")
  local r = native.parse(text)
  if r.tag ~= o.tag or (o.registry and r.registry ~= o.registry) then
    -- the repository carried its own tag, or the registry did not stay the registry
    util.fail("invalid_argument", ("hoist.image.format: %q is not a repository with tag %s"):format(name, tostring(o.tag)))
  end
  return r.image
end

--- The repository of an image (registry/path, no tag or digest).
---@param image string
---@return string
function M.repository(image) return M.parse(image).repository end

return M
