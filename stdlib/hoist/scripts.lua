--- hoist.scripts: the pipelines bundled with the engine (scripts/<name>/v<major>.lua).
local M = {}

local function usage_error(message, details)
  details = details or {}
  details.exit_code = 2
  hoist.error { code = "invalid_argument", message = message, details = details }
end

--- Names and majors of the bundled pipelines: { name = {1, 2}, ... }
---@return table<string, integer[]>
function M.list()
  local out = {}
  for mod in pairs(package.preload) do
    local name, major = mod:match("^scripts%.([%w_%-]+)%.v(%d+)$")
    if name then
      out[name] = out[name] or {}
      table.insert(out[name], tonumber(major))
    end
  end
  for _, majors in pairs(out) do table.sort(majors) end
  return out
end

--- Parses "name", "name@1", "name@1.2.0".
---@param spec string
---@return string name, string? version
function M.parse(spec)
  local name, version = spec:match("^([%w_%-]+)@?([%d%.]*)$")
  if not name then usage_error(("bad pipeline name %q: expected NAME, NAME@MAJOR or NAME@X.Y.Z"):format(spec)) end
  return name, version ~= "" and version or nil
end

--- Finds the module of a bundled pipeline, e.g. "scripts.container.v1".
---@param spec string
---@return string module
function M.resolve(spec)
  local name, version = M.parse(spec)
  local majors = M.list()[name]
  if not majors then
    local names = {}
    for n in pairs(M.list()) do names[#names + 1] = n end
    table.sort(names)
    usage_error(("no bundled pipeline named %q (bundled: %s)"):format(name, table.concat(names, ", ")))
  end
  local major = version and tonumber(version:match("^(%d+)")) or majors[#majors]
  local found = false
  for _, m in ipairs(majors) do found = found or m == major end
  if not found then
    usage_error(("pipeline %s has no version %s (shipped majors: %s)"):format(name, version, table.concat(majors, ", ")))
  end
  return ("scripts.%s.v%d"):format(name, major), version
end

--- Runs a bundled pipeline with its arguments.
---@param spec string
---@param args table
function M.run(spec, args)
  local module, version = M.resolve(spec)
  local ok_pipeline, pipeline = pcall(require, "hoist.pipeline")
  local loaded = require(module)
  if ok_pipeline and type(loaded) == "table" and pipeline.is_pipeline and pipeline.is_pipeline(loaded) then
    return pipeline.run(loaded, args, { version = version })
  elseif type(loaded) == "function" then
    return loaded(args)
  end
  return loaded
end

--- Text for `hoist run NAME --help`.
---@param spec string
---@return string
function M.help(spec)
  local module = M.resolve(spec)
  local ok_pipeline, pipeline = pcall(require, "hoist.pipeline")
  local loaded = require(module)
  if ok_pipeline and pipeline.help and type(loaded) == "table" then return pipeline.help(loaded) end
  return ("%s: %s"):format(spec, type(loaded) == "table" and (loaded.description or "") or "")
end

--- Prints the bundled pipelines (for `hoist pipelines`).
function M.print_list()
  local names = {}
  for name in pairs(M.list()) do names[#names + 1] = name end
  table.sort(names)
  if #names == 0 then print("no bundled pipelines") end
  for _, name in ipairs(names) do
    for _, major in ipairs(M.list()[name]) do
      local loaded = require(("scripts.%s.v%d"):format(name, major))
      local version = type(loaded) == "table" and loaded.version or ("v" .. major)
      local description = type(loaded) == "table" and loaded.description or ""
      print(("%-16s %-10s %s"):format(name, version, description))
    end
  end
end

return M
