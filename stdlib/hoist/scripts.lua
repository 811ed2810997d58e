--- hoist.scripts: the pipelines bundled with the engine: scripts/<name>/v<major>.lua, one
--- file per major version, each declaring its full version. `demo@1` is the newest 1.x,
--- `demo@1.2` the newest 1.2.x, `demo@1.2.0` exactly that one, `demo` the newest.
local semver = require "hoist.semver"

local M = {}

local function usage_error(message, details)
  details = details or {}
  details.exit_code = 2
  require("hoist.util").fail("invalid_argument", message, details)
end

-- With HOIST_LUA_PATH the scripts on disk count too (new ones need no rebuild).
local function disk_scripts(out)
  local root = os.getenv("HOIST_LUA_PATH")
  if not root or root == "" then return end
  local fs = require "hoist.fs"
  for _, name in ipairs(fs.list(root .. "/scripts")) do
    if name:match("^[%w_%-]+$") then
      for _, file in ipairs(fs.list(root .. "/scripts/" .. name)) do
        local major = file:match("^v(%d+)%.lua$")
        if major then
          out[name] = out[name] or {}
          out[name][tonumber(major)] = true
        end
      end
    end
  end
end

--- Names and majors of the bundled pipelines: { name = {1, 2}, ... }
---@return table<string, integer[]>
function M.list()
  local found = {}
  for mod in pairs(package.preload) do
    local name, major = mod:match("^scripts%.([%w_%-]+)%.v(%d+)$")
    if name then
      found[name] = found[name] or {}
      found[name][tonumber(major)] = true
    end
  end
  disk_scripts(found)
  local out = {}
  for name, majors in pairs(found) do
    out[name] = {}
    for m in pairs(majors) do out[name][#out[name] + 1] = m end
    table.sort(out[name])
  end
  return out
end

--- Parses "name", "name@1", "name@1.2", "name@1.2.0".
---@param spec string
---@return string name, string? version
function M.parse(spec)
  local name, version = tostring(spec):match("^([%w_%-]+)@?([%w%.%-]*)$")
  if not name or (version ~= "" and not version:match("^%d+[%.%d]*[%-%w%.]*$")) then
    usage_error(("bad pipeline name %q: expected NAME, NAME@MAJOR or NAME@X.Y.Z"):format(tostring(spec)))
  end
  return name, version ~= "" and version or nil
end

-- Loads the definition of one shipped major.
local function load(name, major)
  local module = ("scripts.%s.v%d"):format(name, major)
  local def = require(module)
  if type(def) ~= "table" or not def.version then
    hoist.error { code = "internal", message = ("%s does not return a pipeline definition with a version"):format(module) }
  end
  local v = semver.parse(def.version)
  if v.major ~= major then
    hoist.error { code = "internal", message = ("%s declares version %s: its major must be %d"):format(module, def.version, major) }
  end
  return module, def
end

--- The shipped versions of a pipeline, oldest first: { {version=, module=, def=}, ... }
--- Internal: for `hoist run <name>@<major>` and `hoist scripts`.
---@param name string
---@return table[]
function M.versions(name)
  local majors = M.list()[name]
  if not majors then
    local names = {}
    for n in pairs(M.list()) do names[#names + 1] = n end
    table.sort(names)
    local hint = require("hoist.pipeline.params").suggest(name, M.list())
    usage_error(("no bundled pipeline named %q%s (bundled: %s)"):format(name,
      hint and (", did you mean %q?"):format(hint) or "", #names > 0 and table.concat(names, ", ") or "none"))
  end
  local out = {}
  for _, major in ipairs(majors) do
    local module, def = load(name, major)
    out[#out + 1] = { version = def.version, module = module, def = def }
  end
  table.sort(out, function(a, b) return semver.compare(a.version, b.version) < 0 end)
  return out
end

--- Finds a bundled pipeline. Raises invalid_argument (exit code 2) when no shipped version matches.
---@param spec string
---@return string module, hoist.Pipeline def
function M.resolve(spec)
  local name, want = M.parse(spec)
  local shipped = M.versions(name)
  local pick
  for _, s in ipairs(shipped) do
    local v, w = semver.parse(s.version), want and semver.parse(want)
    local match
    if not w then
      match = true
    elseif w.parts == 3 then
      match = semver.compare(v, w) == 0
    else
      match = semver.satisfies(v, want) -- "1" or "1.2": the newest inside it
    end
    if match then pick = s end
  end
  if not pick then
    local list = {}
    for i, s in ipairs(shipped) do list[i] = s.version end
    usage_error(("pipeline %s@%s is not shipped with this engine (shipped: %s)"):format(name, want, table.concat(list, ", ")),
      { shipped = list })
  end
  return pick.module, pick.def
end

--- Runs a bundled pipeline with its arguments.
---@param spec string
---@param args table
function M.run(spec, args)
  local module, def = M.resolve(spec)
  local pipeline = require "hoist.pipeline"
  if pipeline.is_pipeline(def) then
    return pipeline.run(def, args, { spec = spec, source = { module = module } })
  elseif type(def) == "function" then
    return def(args)
  end
  return def
end

--- Text for `hoist run NAME --help`.
---@param spec string
---@return string
function M.help(spec)
  local _, def = M.resolve(spec)
  local pipeline = require "hoist.pipeline"
  if pipeline.is_pipeline(def) then return pipeline.help(def, { spec = spec }) end
  return ("%s: %s"):format(spec, def.description or "")
end

--- Prints the bundled pipelines (for `hoist pipelines`).
function M.print_list()
  local names = {}
  for name in pairs(M.list()) do names[#names + 1] = name end
  table.sort(names)
  if #names == 0 then print("no bundled pipelines") end
  for _, name in ipairs(names) do
    for _, s in ipairs(M.versions(name)) do
      local fits = not s.def.requires or not hoist.version or semver.satisfies(hoist.version, s.def.requires)
      print(("%-16s %-10s %s%s"):format(name, s.version, s.def.description or "",
        fits and "" or ("  [needs hoist " .. s.def.requires .. "]")))
    end
  end
end

return M
