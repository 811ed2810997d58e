--- hoist.semver: semantic versions and ranges, for pipeline versions and the engine
--- versions a pipeline `requires`.
local M = {}

---@class hoist.Version
---@field major integer
---@field minor integer
---@field patch integer
---@field pre? string prerelease ("rc.1"), sorts before the release

local function bad(message)
  require("hoist.util").fail("invalid_argument", message)
end

--- Parses "1.2.3", "1.2", "1", "v1.2.3-rc.1" (missing parts are 0; build metadata ignored).
---@param text string|hoist.Version
---@return hoist.Version
function M.parse(text)
  if type(text) == "table" then return text end
  if type(text) ~= "string" then bad("semver: expected a version string, got " .. type(text)) end
  local core, pre = text:match("^v?([%d%.]+)%-?([%w%.%-]*)")
  local rest = text:sub(#(text:match("^v?[%d%.]+%-?[%w%.%-]*") or "") + 1)
  if not core or (rest ~= "" and not rest:match("^%+[%w%.%-]+$")) then
    bad(("semver: %q is not a version (expected MAJOR.MINOR.PATCH)"):format(text))
  end
  local parts = {}
  for p in (core .. "."):gmatch("([^%.]*)%.") do parts[#parts + 1] = p end
  if #parts > 3 then bad(("semver: %q has more than three numbers"):format(text)) end
  for i, p in ipairs(parts) do
    if not p:match("^%d+$") then bad(("semver: %q is not a version (empty part)"):format(text)) end
    parts[i] = tonumber(p)
  end
  return { major = parts[1], minor = parts[2] or 0, patch = parts[3] or 0, pre = pre ~= "" and pre or nil,
           parts = #parts }
end

--- "1.2.3" or "1.2.3-rc.1"
---@param v hoist.Version
---@return string
function M.format(v)
  return ("%d.%d.%d"):format(v.major, v.minor, v.patch) .. (v.pre and ("-" .. v.pre) or "")
end

local function compare_pre(a, b)
  if a == b then return 0 end
  if not a then return 1 end -- a release sorts after its prereleases
  if not b then return -1 end
  local ia, ib = a:gmatch("[^%.]+"), b:gmatch("[^%.]+")
  while true do
    local x, y = ia(), ib()
    if not x and not y then return 0 end
    if not x then return -1 end
    if not y then return 1 end
    local nx, ny = tonumber(x), tonumber(y)
    if nx and ny then
      if nx ~= ny then return nx < ny and -1 or 1 end
    elseif nx or ny then
      return nx and -1 or 1 -- numeric identifiers sort first
    elseif x ~= y then
      return x < y and -1 or 1
    end
  end
end

--- -1, 0 or 1.
---@param a string|hoist.Version
---@param b string|hoist.Version
---@return integer
function M.compare(a, b)
  a, b = M.parse(a), M.parse(b)
  for _, k in ipairs { "major", "minor", "patch" } do
    if a[k] ~= b[k] then return a[k] < b[k] and -1 or 1 end
  end
  return compare_pre(a.pre, b.pre)
end

-- Bounds of a partial version: "1.2" covers [1.2.0, 1.3.0).
local function upper_of(v)
  if v.parts <= 1 then return { major = v.major + 1, minor = 0, patch = 0, pre = "0" } end
  if v.parts == 2 then return { major = v.major, minor = v.minor + 1, patch = 0, pre = "0" } end
  return nil
end

-- One comparator -> list of {op, version} that must all hold.
local function comparator(text)
  local op, ver = text:match("^([<>=~%^]*)%s*(.+)$")
  if not op then bad(("semver: bad range element %q"):format(text)) end
  ver = ver:gsub("%.[xX*]", ""):gsub("^[xX*]$", "0")
  if ver == "0" and text:match("[xX*]$") and op == "" then return {} end -- "*" matches all
  local v = M.parse(ver)
  if op == "" or op == "=" then
    local up = upper_of(v)
    if up then return { { ">=", v }, { "<", up } } end
    return { { "=", v } }
  elseif op == "~" then
    local up = v.parts <= 1 and { major = v.major + 1, minor = 0, patch = 0, pre = "0" }
        or { major = v.major, minor = v.minor + 1, patch = 0, pre = "0" }
    return { { ">=", v }, { "<", up } }
  elseif op == "^" then
    local up
    if v.major > 0 or v.parts == 1 then
      up = { major = v.major + 1, minor = 0, patch = 0, pre = "0" }
    elseif v.minor > 0 or v.parts == 2 then
      up = { major = 0, minor = v.minor + 1, patch = 0, pre = "0" }
    else
      up = { major = 0, minor = 0, patch = v.patch + 1, pre = "0" }
    end
    return { { ">=", v }, { "<", up } }
  elseif op == "<=" then
    local up = upper_of(v) -- "<=1.2" means anything in 1.2.x
    if up then return { { "<", up } } end
    return { { "<=", v } }
  elseif op == ">" then
    local up = upper_of(v) -- ">1.2" means 1.3.0 and later
    if up then return { { ">=", { major = up.major, minor = up.minor, patch = 0 } } } end
    return { { ">", v } }
  elseif op == "<" then
    -- "<2" must not let 2.0.0-rc.1 in: compare with the lowest prerelease of 2.0.0
    if not v.pre then return { { "<", { major = v.major, minor = v.minor, patch = v.patch, pre = "0" } } } end
    return { { "<", v } }
  elseif op == ">=" then
    return { { op, v } }
  end
  bad(("semver: unknown operator %q in %q"):format(op, text))
end

local function holds(v, op, w)
  local c = M.compare(v, w)
  if op == ">=" then return c >= 0 elseif op == ">" then return c > 0
  elseif op == "<=" then return c <= 0 elseif op == "<" then return c < 0 end
  return c == 0
end

--- True when `version` is inside `range` (">=0.1 <2", "^1.2", "1.x || >=3"). An empty
--- range or "*" matches everything.
---@param version string|hoist.Version
---@param range string
---@return boolean
function M.satisfies(version, range)
  if type(range) ~= "string" then bad("semver: range must be a string") end
  local v = M.parse(version)
  for alt in (range .. "||"):gmatch("(.-)||") do
    local all = true
    -- "1.2 - 2" style hyphen ranges are rare in requires; comparators are space-separated
    local text = alt:gsub("([<>=~%^]+)%s+", "%1")
    for item in text:gmatch("%S+") do
      for _, c in ipairs(comparator(item)) do
        if not holds(v, c[1], c[2]) then all = false end
      end
    end
    if all then return true end
  end
  return false
end

--- The highest version of the list (inside `range` when given), or nil.
---@param versions string[]
---@param range? string
---@return string?
function M.newest(versions, range)
  local best
  for _, v in ipairs(versions) do
    if (not range or M.satisfies(v, range)) and (not best or M.compare(v, best) > 0) then best = v end
  end
  return best
end

return M
