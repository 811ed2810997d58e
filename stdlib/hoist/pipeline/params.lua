--- hoist.pipeline.params: declared pipeline parameters: checking the declarations,
--- coercing `--set` strings and `--params-file` JSON values, validation and `--help` text.
--- Internal to hoist.pipeline (docs/pipeline.md is its API).
local M = {}

local TYPES = { string = true, number = true, boolean = true, list = true, map = true }
local ITEM_TYPES = { string = true, number = true, boolean = true, any = true, table = true }
local SPEC_FIELDS = {
  type = true, items = true, default = true, required = true, description = true,
  secret = true, env = true, allowed = true, pattern = true, hint = true, min = true, max = true, integer = true, max_length = true,
  fields = true, key = true, inherit = true, max_items = true,
}

local function bad_definition(message)
  hoist.error { code = "invalid_argument", message = message }
end

--- Checks the `params` table of a definition (raises invalid_argument naming the field).
---@param params table<string, hoist.ParamSpec>?
---@return table<string, hoist.ParamSpec>
function M.check_specs(params)
  params = params or {}
  if type(params) ~= "table" then bad_definition("pipeline: params must be a table of name = {type=...}") end
  for name, spec in pairs(params) do
    local where = ("pipeline: parameter %q"):format(tostring(name))
    if type(name) ~= "string" or not name:match("^[%a_][%w_%-%.]*$") then
      bad_definition(where .. ": a name must be letters, digits, '_', '-' or '.'")
    end
    if type(spec) ~= "table" then bad_definition(where .. ": expected a table {type=...}") end
    for k in pairs(spec) do
      if not SPEC_FIELDS[k] then bad_definition(("%s: unknown field %q"):format(where, tostring(k))) end
    end
    spec.type = spec.type or "string"
    if not TYPES[spec.type] then
      bad_definition(("%s: unknown type %q (string, number, boolean, list, map)"):format(where, tostring(spec.type)))
    end
    if spec.items ~= nil and not ITEM_TYPES[spec.items] then
      bad_definition(("%s: unknown items type %q (string, number, boolean, any)"):format(where, tostring(spec.items)))
    end
    if spec.allowed ~= nil and (type(spec.allowed) ~= "table" or #spec.allowed == 0) then
      bad_definition(where .. ": allowed must be a non-empty list")
    end
    if spec.pattern ~= nil and type(spec.pattern) ~= "string" then bad_definition(where .. ": pattern must be a string") end
    if spec.hint ~= nil and type(spec.hint) ~= "string" then bad_definition(where .. ": hint must be a string") end
    for _, bound in ipairs { "min", "max" } do
      if spec[bound] ~= nil and type(spec[bound]) ~= "number" then bad_definition(("%s: %s must be a number"):format(where, bound)) end
    end
    if spec.env ~= nil and type(spec.env) ~= "string" then bad_definition(where .. ": env must be a variable name") end
    if spec.max_items ~= nil and (type(spec.max_items) ~= "number" or spec.max_items < 1) then
      bad_definition(where .. ": max_items must be a number >= 1")
    end
    if spec.items == "table" then
      -- a list of tables: each item is a set of parameters of its own, checked against
      -- `fields`; the bound keeps a params file from asking for thousands of them
      if spec.type ~= "list" then bad_definition(where .. ": items \"table\" is for a list") end
      if type(spec.fields) ~= "table" then bad_definition(where .. ": a list of tables needs fields = {name = {type=...}}") end
      if not spec.max_items then bad_definition(where .. ": a list of tables needs max_items (a bound on its count)") end
      M.check_specs(spec.fields)
      if spec.key ~= nil and (type(spec.key) ~= "string" or not spec.fields[spec.key]) then
        bad_definition(where .. ": key must name one of its fields")
      end
    elseif spec.fields ~= nil or spec.key ~= nil or spec.inherit ~= nil then
      bad_definition(where .. ": fields, key and inherit are for a list of tables (items = \"table\")")
    end
  end
  return params
end

-- Scalars: returns value or nil, "what was expected".
local function to_scalar(kind, v)
  local t = type(v)
  if kind == "any" then return v end
  if kind == "table" then -- a JSON object: a set of parameters (an empty table decodes as either)
    if t == "table" and (next(v) == nil or #v == 0) then return v end
    return nil, "a table"
  end
  if kind == "string" then
    if t == "string" then return v end
    if t == "number" then return v == math.floor(v) and ("%d"):format(v) or tostring(v) end
    return nil, "a string"
  elseif kind == "number" then
    if t == "number" then return v end
    -- decimal only: Lua's tonumber would also take 0x10, 1e3, inf and nan
    local s = t == "string" and v:gsub("^%s+", ""):gsub("%s+$", "") or ""
    if s:match("^[-+]?%d+$") or s:match("^[-+]?%d+%.%d*$") or s:match("^[-+]?%.%d+$") then return tonumber(s) end
    return nil, "a number (decimal: digits with an optional sign and point, like 3, -2 or 0.5)"
  elseif kind == "boolean" then
    if t == "boolean" then return v end
    if t == "string" then
      local s = v:lower()
      if s == "true" or s == "yes" or s == "1" or s == "on" then return true end
      if s == "false" or s == "no" or s == "0" or s == "off" then return false end
    end
    return nil, "true or false"
  end
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function decode_json(text)
  local ok, v = pcall(require("hoist.native.json").decode, text)
  if ok then return v end
  return nil
end

local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function to_list(v, items)
  if type(v) == "string" then
    local s = trim(v)
    if s:sub(1, 1) == "[" then
      v = decode_json(s)
      if v == nil then return nil, "a list (this JSON does not parse)" end
    elseif s == "" then
      v = {}
    else
      local out = {}
      for item in (s .. ","):gmatch("(.-),") do out[#out + 1] = trim(item) end
      v = out
    end
  end
  if not is_array(v) then return nil, "a list (a,b,c or a JSON array)" end
  local out = {}
  for i, item in ipairs(v) do
    local x, want = to_scalar(items, item)
    if x == nil then
      return nil, ("a list of %s (item %d is not)"):format(items == "table" and "tables (a JSON array of objects)" or items, i)
    end
    out[i] = x
  end
  return out
end

-- secret: the text of a bad pair is not quoted (a typo like NAME:value holds the value)
local function to_map(v, items, secret)
  if type(v) == "string" then
    local s = trim(v)
    if s:sub(1, 1) == "{" then
      v = decode_json(s)
      if v == nil then return nil, "a map (this JSON does not parse)" end
    else
      local out = {}
      local n = 0
      for pair in (s .. ","):gmatch("(.-),") do
        pair = trim(pair)
        n = n + 1
        if pair ~= "" then
          local k, val = pair:match("^([^=]+)=(.*)$")
          if not k then
            local which = secret and ("item %d"):format(n) or ("%q"):format(pair)
            return nil, ("a map (k=v,k2=v2 or a JSON object; %s has no '=')"):format(which)
          end
          out[trim(k)] = trim(val)
        end
      end
      v = out
    end
  end
  if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then return nil, "a map (k=v,k2=v2 or a JSON object)" end
  local out = {}
  for k, item in pairs(v) do
    local x = to_scalar(items, item)
    if x == nil then return nil, ("a map of %s values (%q is not)"):format(items, tostring(k)) end
    out[tostring(k)] = x
  end
  return out
end

--- Coerces one raw value to the declared type; returns nil and what was expected on failure.
---@param spec hoist.ParamSpec
---@param v any
---@return any value, string? expected
function M.coerce(spec, v)
  local kind = spec.type or "string"
  if kind == "list" then return to_list(v, spec.items or "string") end
  if kind == "map" then return to_map(v, spec.items or "string", spec.secret) end
  return to_scalar(kind, v)
end

local function show(spec, v)
  if spec.secret then return "(secret value)" end
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

-- Checks allowed/pattern/min/max of one scalar (hoist.util.value_problem: the one place
-- these rules live); returns a problem or nil.
local function check_scalar(spec, v, label)
  local p = require("hoist.util").value_problem(spec, v)
  return p and label .. p or nil
end

-- Edit distance where swapping two neighbours counts as one edit (the commonest typo).
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == b:sub(j, j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

--- The declared name closest to `name`, when close enough to be a typo.
---@param name string
---@param specs table<string, any>
---@return string?
function M.suggest(name, specs)
  local best, best_d
  for known in pairs(specs) do
    local d = distance(name:lower(), known:lower())
    if (not best_d or d < best_d or (d == best_d and known < best)) then best, best_d = known, d end
  end
  if best and best_d <= math.max(1, math.min(3, math.ceil(#name / 3))) then return best end
end

local sorted_keys = require("hoist.util").sorted_keys

-- Every string a secret parameter's value holds: its items, and for a list or map given as
-- text also each piece and each value after '=', parsed or not, so a typo ("NAME:value")
-- leaves no part of it unmasked. Shorter than 4 bytes cannot be masked.
local function secret_strings(spec, v)
  local out = {}
  local function add(s)
    if type(s) == "string" and #s >= 4 then out[#out + 1] = s end
  end
  if type(v) == "table" then
    for _, s in pairs(v) do add(s) end
    return out
  end
  add(v)
  if type(v) == "string" and (spec.type == "map" or spec.type == "list") then
    for piece in (v .. ","):gmatch("(.-),") do
      add(trim(piece))
      add(trim(piece:match("=(.*)$") or ""))
    end
    local parsed = M.coerce(spec, v)
    if type(parsed) == "table" then
      for _, s in pairs(parsed) do add(s) end
    end
  end
  return out
end

--- Registers the secret parameters' values (given or from env) before anything is printed;
--- a secret list or map registers each of its string values too. Returns what it registered.
---@param specs table<string, hoist.ParamSpec>
---@param raw table
---@return string[]
function M.register_secrets(specs, raw)
  local values = {}
  for _, name in ipairs(sorted_keys(specs)) do
    local spec = specs[name]
    if spec.items == "table" then -- each item's own secrets (secret_env of one service)
      local list = M.coerce(spec, raw[name])
      for _, item in ipairs(type(list) == "table" and list or {}) do
        for _, s in ipairs(M.register_secrets(spec.fields, item)) do values[#values + 1] = s end
      end
    elseif spec.secret then
      local v = raw[name]
      if v == nil and spec.env then v = os.getenv(spec.env) end
      if v == nil then v = spec.default end
      for _, s in ipairs(secret_strings(spec, v)) do
        hoist.secret(s)
        values[#values + 1] = s
      end
    end
  end
  return values
end

-- The items of a list of tables (items = "table"): each one a set of parameters checked by
-- this same M.validate against spec.fields, over the top-level values given for the same
-- names when spec.inherit (the key excepted). Returns the typed items and the problems, each
-- naming its item: `services[2] (web): port: must be from 1 to 65535, got 70000`.
local function validate_items(name, spec, items, raw)
  if #items > spec.max_items then
    return nil, { ("%s: at most %d items, got %d"):format(name, spec.max_items, #items) }
  end
  local out, problems, seen = {}, {}, {}
  for i, item in ipairs(items) do
    local id = spec.key and item[spec.key]
    local label = ("%s[%d]%s"):format(name, i, id ~= nil and (" (%s)"):format(tostring(id)) or "")
    local merged = {}
    if spec.inherit then
      for k, v in pairs(raw) do
        if spec.fields[k] and k ~= spec.key then merged[k] = v end
      end
    end
    for k, v in pairs(item) do merged[k] = v end
    if spec.key and id == nil then
      problems[#problems + 1] = ("%s: %s is missing (every item is named by it)"):format(label, spec.key)
    elseif spec.key and seen[tostring(id)] then
      problems[#problems + 1] = ("%s: %s %q is %s's too (each must be unique)"):format(label, spec.key, tostring(id), seen[tostring(id)])
    end
    if id ~= nil then seen[tostring(id)] = seen[tostring(id)] or ("%s[%d]"):format(name, i) end
    local ok, typed = pcall(M.validate, spec.fields, merged)
    if ok then
      out[i] = typed
    elseif hoist.is_error(typed, "invalid_argument") then
      problems[#problems + 1] = label .. ": " .. tostring(typed.message):gsub("^invalid parameters?: ", "")
    else
      error(typed, 0)
    end
  end
  return out, problems
end

--- Validates raw parameters against the declarations. Returns the typed values, or raises
--- invalid_argument (details.exit_code = 2) listing every problem, each naming its parameter.
--- A list of tables (items = "table") is checked item by item against its `fields`.
---@param specs table<string, hoist.ParamSpec>
---@param raw table<string, any>
---@return table<string, any>
function M.validate(specs, raw)
  raw = raw or {}
  local out, problems, by_name = {}, {}, {}
  local function problem(name, text)
    problems[#problems + 1] = name .. ": " .. text
    by_name[name] = text
  end
  for _, name in ipairs(sorted_keys(raw)) do
    if specs[name] == nil then
      local hint = M.suggest(name, specs)
      local text = ("unknown parameter %q"):format(tostring(name)) .. (hint and (" (did you mean %q?)"):format(hint) or "")
      problems[#problems + 1] = text
      by_name[tostring(name)] = text
    end
  end
  -- a required parameter that the items of a given list of tables (inherit) declare is
  -- required of each item instead: the top level only gives their defaults
  local per_item = {}
  for name, spec in pairs(specs) do
    local given = raw[name]
    if spec.items == "table" and spec.inherit and (type(given) == "string" or (type(given) == "table" and #given > 0)) then
      for k in pairs(spec.fields) do per_item[k] = true end
    end
  end
  for _, name in ipairs(sorted_keys(specs)) do
    local spec = specs[name]
    local v, from = raw[name], "given"
    if v == nil and spec.env then v, from = os.getenv(spec.env), "env " .. spec.env end
    if v == nil and spec.default ~= nil then v, from = spec.default, "default" end
    if v == nil then
      if spec.required and not per_item[name] then
        problem(name, ("required %s parameter is missing (--set %s=...)"):format(spec.type, name))
      end
    else
      local value, expected = M.coerce(spec, v)
      if value == nil then
        problem(name, ("expected %s, got %s"):format(expected, show(spec, type(v) == "table" and "a table" or v)))
      elseif spec.items == "table" then
        local items, item_problems = validate_items(name, spec, value, raw)
        for _, text in ipairs(item_problems) do problems[#problems + 1] = text end
        if #item_problems > 0 then by_name[name] = table.concat(item_problems, "; ") end
        out[name] = items
      else
        local items = spec.type == "list" and value or (spec.type == "map" and {} or { value })
        for i, item in ipairs(items) do
          local p = check_scalar(spec, item, spec.type == "list" and ("item %d "):format(i) or "")
          if p then problem(name, p) break end
        end
        if spec.type == "map" then
          for _, k in ipairs(sorted_keys(value)) do
            local p = check_scalar(spec, value[k], ("value of %q "):format(k))
            if p then problem(name, p) break end
          end
        end
        out[name] = value
      end
    end
  end
  if #problems > 0 then
    hoist.error {
      code = "invalid_argument",
      message = (#problems == 1 and "invalid parameter: " or "invalid parameters: ") .. table.concat(problems, "; "),
      details = { exit_code = 2, params = by_name },
    }
  end
  return out
end

--- A copy of typed params with the secret ones replaced by "***" (for the journal).
---@param specs table<string, hoist.ParamSpec>
---@param values table
---@return table
function M.redact(specs, values)
  local out = {}
  for k, v in pairs(values) do
    local spec = specs[k]
    if spec and spec.items == "table" and type(v) == "table" then
      local items = {}
      for i, item in ipairs(v) do items[i] = M.redact(spec.fields, item) end
      out[k] = items
    else
      out[k] = (spec and spec.secret) and "***" or v
    end
  end
  return out
end

local function show_default(spec)
  local d = spec.default
  if d == nil then return nil end
  if spec.secret then return "(set)" end
  if type(d) == "table" then
    local ok, text = pcall(require("hoist.native.json").encode, d)
    return ok and text or "(table)"
  end
  if type(d) == "string" then return ("%q"):format(d) end
  return tostring(d)
end

--- The parameters section of `--help`.
---@param specs table<string, hoist.ParamSpec>
---@return string
function M.help(specs)
  local names = sorted_keys(specs)
  -- required ones first: they are what a newcomer must supply
  table.sort(names, function(a, b)
    local ra, rb = specs[a].required and 0 or 1, specs[b].required and 0 or 1
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  if #names == 0 then return "Parameters: none\n" end
  local lines = { "Parameters (--set NAME=VALUE, or --params-file FILE.json):" }
  for _, name in ipairs(names) do
    local spec = specs[name]
    local kind = spec.type .. ((spec.type == "list" or spec.type == "map") and spec.items and ("<" .. spec.items .. ">") or "")
    local tags = { kind }
    if spec.required then tags[#tags + 1] = "required" end
    local d = show_default(spec)
    if d then tags[#tags + 1] = "default " .. d end
    if spec.secret then tags[#tags + 1] = "secret" end
    lines[#lines + 1] = ("  %s (%s)"):format(name, table.concat(tags, ", "))
    if spec.description then lines[#lines + 1] = "      " .. spec.description end
    if spec.allowed then
      local a = {}
      for i, v in ipairs(spec.allowed) do a[i] = tostring(v) end
      lines[#lines + 1] = "      allowed: " .. table.concat(a, ", ")
    end
    if spec.pattern then lines[#lines + 1] = "      pattern: " .. spec.pattern .. (spec.hint and (" (" .. spec.hint .. ")") or "") end
    if spec.min or spec.max then
      lines[#lines + 1] = ("      range: %s to %s%s"):format(spec.min or "-inf", spec.max or "inf", spec.integer and ", whole numbers" or "")
    end
    if spec.env then lines[#lines + 1] = "      from env: $" .. spec.env .. " when not set" end
    if spec.items == "table" then
      lines[#lines + 1] = ("      each item: a table of parameters%s%s; at most %d items"):format(
        spec.key and (", named by its field " .. spec.key .. " (required, unique)") or "",
        spec.inherit and ", the top-level values being its defaults" or "", spec.max_items)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

return M
