-- Every public Lua function of the stdlib has LuaCATS annotations and is named in docs/.
--
-- A function is public when it is a field of a module's table (`function M.name(`, or
-- `function M:name(`) in a module under stdlib/hoist that is not internal. Internal are a
-- module whose header says "Internal to <module>" (hoist.docker.cli, the parts of
-- hoist.pipeline) and a function whose annotation block holds a line `--- Internal: <why>`
-- (the stdlib's own helpers that other stdlib modules call). A public function needs a `---`
-- annotation block right above it and its name in docs/*.md: `<module>.<name>`,
-- `<last part of the module>.<name>`, `` `<name>` ``, or a call of it (`x.<name>{`,
-- `x:<name>(`, or `` `<name>{ `` in a module's table of functions).
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local root = support.root

local function lua_files(dir, out)
  for _, name in ipairs(hoist.fs.list(dir)) do
    local path = dir .. "/" .. name
    if hoist.fs.kind(path) == "directory" then lua_files(path, out)
    elseif name:match("%.lua$") then out[#out + 1] = path end
  end
  return out
end

local function docs_text()
  local parts = {}
  for _, name in ipairs(hoist.fs.list(root .. "/docs")) do
    if name:match("%.md$") then parts[#parts + 1] = support.must_read(root .. "/docs/" .. name) end
  end
  return table.concat(parts, "\n")
end

-- The module-table functions of one file's text: { {line, name, annotated, internal} }
-- (hoist.lsp's scan: `hoist lsp-defs` writes a definition for each public one).
local scan = require("hoist.lsp").functions

-- { {file, line, module, name, annotated, internal} } for every module-table function.
local function public_functions()
  local out = {}
  for _, path in ipairs(lua_files(root .. "/stdlib/hoist", {})) do
    local rel = path:sub(#root + 2)
    local module = rel:gsub("^stdlib/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    for _, f in ipairs(scan(support.must_read(path))) do
      f.file, f.module = rel, module
      out[#out + 1] = f
    end
  end
  return out
end

t.case("every public stdlib function has a LuaCATS annotation block", function()
  local missing = {}
  for _, f in ipairs(public_functions()) do
    if not f.internal and not f.annotated then missing[#missing + 1] = ("%s:%d %s.%s"):format(f.file, f.line, f.module, f.name) end
  end
  t.eq(missing, {}, "functions without annotations")
end)

t.case("every public stdlib function is named in docs/", function()
  local docs = docs_text()
  local missing = {}
  local count = 0
  for _, f in ipairs(public_functions()) do
    if not f.internal then
      count = count + 1
      local last = f.module:match("([%w_]+)$")
      local found = false
      for _, p in ipairs { f.module .. "." .. f.name, last .. "." .. f.name, "`" .. f.name .. "`" } do
        if docs:find(p, 1, true) then found = true; break end
      end
      -- a call: `x.name{`, `x:name(`, `name {` at the start of a table cell, ...
      found = found or docs:find("[.:`]" .. f.name .. "%s?[{(]") ~= nil
      if not found then missing[#missing + 1] = ("%s:%d %s.%s"):format(f.file, f.line, f.module, f.name) end
    end
  end
  t.ok(count > 100, "the scan found the stdlib's functions (" .. count .. ")")
  t.eq(missing, {}, "public functions that docs/ does not name")
end)

t.case("the scan tells annotated, bare and internal functions apart", function()
  local found = scan("--- hoist.fake: nothing\nlocal M = {}\n--- Does a thing.\n---@return nil\nfunction M.documented() end\n" ..
                     "function M.bare() end\n--- A helper.\n--- Internal: for hoist.other\nfunction M:helper() end\n" ..
                     "local function hidden() end\nfunction M._private() end\nreturn M\n")
  t.eq(found, { { line = 5, name = "documented", annotated = true, internal = false },
                { line = 6, name = "bare", annotated = false, internal = false },
                { line = 9, name = "helper", annotated = true, internal = true } })
  local module = scan("--- hoist.fake.cli: how hoist.fake runs it. Internal to hoist.fake.\nlocal M = {}\nfunction M.run() end\n")
  t.eq(module, { { line = 3, name = "run", annotated = false, internal = true } })
end)
