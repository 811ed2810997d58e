--- hoist.json: JSON text <-> Lua values (nlohmann_json underneath).
---
--- Lua has one table type and JSON two: a table with keys 1..n is an array, one with string
--- keys an object, an empty one an object unless marked with `hoist.json.array()`. Decoded
--- arrays and objects carry that marker, so they encode back the same even once emptied.
--- JSON null inside arrays and objects decodes to `hoist.json.null` (nil cannot be stored in
--- a table, and an array must keep its length); a document that is only `null` decodes to nil.
--- Integers beyond +-2^53 decode to LuaJIT int64_t / uint64_t cdata (`1234567890123456789LL`)
--- and such cdata encode as exact integers. The full rules: docs/json-yaml.md.
local native = require "hoist.native.json"
local core = require "hoist.native.core"

---@class hoist.json
local M = {}

--- Stands for JSON null inside arrays and objects; distinct from nil (`tostring` gives
--- "hoist.json.null"). Encodes as null in JSON and YAML.
---@type userdata
M.null = native.null

local util = require "hoist.util"

local function invalid(message) util.fail("invalid_argument", message) end

---@class hoist.json.EncodeOptions
---@field pretty? boolean indent nested values by 2 spaces, one member per line (default false)
---@field indent? integer indent by this many spaces (0..16); implies pretty
---@field ascii? boolean escape every non-ASCII character as \uXXXX (default false: UTF-8 as is)

--- Encodes a Lua value as JSON text. Object keys are always sorted (Lua tables have no
--- order; sorted output is deterministic). Raises invalid_argument naming the path
--- (`at $.a.b[2]`, Lua indexes) for a function, userdata, thread, cycle, NaN/infinity,
--- invalid UTF-8, a sparse array or a table mixing list items and keys.
---@param value any
---@param opts? hoist.json.EncodeOptions
---@return string
function M.encode(value, opts)
  util.check_opts("hoist.json.encode", opts, { pretty = "boolean", indent = "number", ascii = "boolean" })
  return native.encode(value, opts)
end

--- Decodes JSON text. Malformed text raises invalid_argument with "line L, column C" in its
--- message and details {line=, column=, offset=, reason=}.
---@param text string
---@return any value nil for the document `null`
function M.decode(text)
  return native.decode(text)
end

local function mark(fname, t, mt)
  if t == nil then t = {} end
  if type(t) ~= "table" then invalid(("%s: expected a table or nil, got %s"):format(fname, type(t))) end
  local old = getmetatable(t)
  if old ~= nil and old ~= native.array_mt and old ~= native.object_mt then
    invalid(fname .. ": the table already has a metatable")
  end
  return setmetatable(t, mt)
end

--- Marks a table as a JSON array (so an empty one encodes as `[]`) and returns it.
---@generic T: table
---@param t? T a table with keys 1..n only; a new one when nil
---@return T
function M.array(t) return mark("hoist.json.array", t, native.array_mt) end

--- Marks a table as a JSON object (so an empty one encodes as `{}` and number keys are
--- written as strings) and returns it.
---@generic T: table
---@param t? T a new one when nil
---@return T
function M.object(t) return mark("hoist.json.object", t, native.object_mt) end

--- "array", "object" or nil: what a marked table encodes as.
---@param t any
---@return "array"|"object"|nil
function M.kind(t)
  local mt = type(t) == "table" and getmetatable(t)
  if mt == native.array_mt then return "array" end
  if mt == native.object_mt then return "object" end
  return nil
end

return M
