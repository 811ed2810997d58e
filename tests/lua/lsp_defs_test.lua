-- `hoist lsp-defs DIR`: LuaLS definition files of every stdlib module and a .luarc.json. LuaLS
-- itself is neither in Debian nor on npm: the check here is that every public function (as
-- tests/lua/api_docs_test.lua counts them) has its definition with its annotations, that each
-- file is valid Lua starting with ---@meta, and that .luarc.json points at them, keeping what a
-- user wrote there. The binary runs with its embedded annotations (HOIST_LUA_PATH unset).
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local lsp = require "hoist.lsp"

local function lsp_defs(dir)
  local r = support.run_hoist({ "lsp-defs", dir }, { env = { HOIST_LUA_PATH = "", NO_COLOR = "1" } })
  t.eq(r.code, 0, r.stderr)
  return r
end

local function lua_files(dir, out)
  for _, name in ipairs(hoist.fs.list(dir)) do
    local path = dir .. "/" .. name
    if hoist.fs.kind(path) == "directory" then lua_files(path, out)
    elseif name:match("%.lua$") then out[#out + 1] = path end
  end
  return out
end

local dir = support.tmpdir("hoist-lsp")
lsp_defs(dir)
local lib = dir .. "/" .. lsp.LIBRARY

t.case("every public stdlib function has a definition, with its annotation block", function()
  local missing, count = {}, 0
  local root = support.root .. "/stdlib/hoist"
  for _, path in ipairs(lua_files(root, {})) do
    local rel = path:sub(#root + 2)
    local module = "hoist." .. rel:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    local def_path = lib .. "/hoist/" .. rel:gsub("/init%.lua$", ".lua")
    local defs = support.read(def_path) or ""
    for _, f in ipairs(lsp.functions(support.must_read(path))) do
      if not f.internal then
        count = count + 1
        local at = defs:find("\nfunction M[.:]" .. f.name .. "%(")
        -- the line above the definition is its annotation
        if not at or not defs:sub(1, at):match("\n%-%-%-[^\n]*\n$") then missing[#missing + 1] = module .. "." .. f.name end
      end
    end
  end
  t.ok(count > 100, "public functions found: " .. count)
  t.eq(missing, {})
end)

t.case("each definition file is Lua that LuaJIT loads, marked ---@meta", function()
  local files = lua_files(lib, {})
  t.ok(#files > 40, #files .. " files")
  for _, path in ipairs(files) do
    local text = support.must_read(path)
    t.match(text, "^%-%-%-@meta ", path)
    local chunk, err = loadfile(path)
    t.ok(chunk, tostring(err))
  end
  t.match(support.must_read(lib .. "/hoist/registry.lua"), "\n%-%-%-@class hoist%.registry%.Auth\n")
  t.match(support.must_read(lib .. "/hoist-global.lua"), "\nhoist%.pipeline = require%(\"hoist%.pipeline\"%)\n")
end)

t.case("the bundled pipelines' parameters are classes with typed fields", function()
  local params = support.must_read(lib .. "/hoist-params.lua")
  t.match(params, "\n%-%-%-@class hoist%.params%.container_1 container 1%.%d+%.%d+: ")
  t.match(params, "\n%-%-%-@field image string Repository to push to")
  t.match(params, "\n%-%-%-@field target%? \"local\"|")
  t.match(params, "\n%-%-%-@class hoist%.params%.demo_2 ")
end)

t.case(".luarc.json points at the library, once, keeping the user's settings", function()
  local d = support.tmpdir("hoist-lsp")
  support.write(d .. "/.luarc.json", '{"diagnostics.globals": ["vim"], "workspace.library": ["lib/mine"]}')
  lsp_defs(d)
  lsp_defs(d)
  local rc = hoist.json.decode(support.must_read(d .. "/.luarc.json"))
  t.eq(rc["workspace.library"], { "lib/mine", lsp.LIBRARY })
  t.eq(rc["diagnostics.globals"], { "vim" })
  t.eq(rc["runtime.version"], "LuaJIT")
  support.write(d .. "/.luarc.json", "{broken")
  local r = support.run_hoist({ "lsp-defs", d }, {})
  t.eq(r.code, 1)
  t.match(r.stderr, "%.luarc%.json is not a JSON object")
  local none = support.run_hoist({ "lsp-defs", d .. "/missing" }, {})
  t.match(none.stderr, "is not a folder")
end)
