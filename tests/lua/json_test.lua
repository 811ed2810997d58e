local t = require "hoist.test"
local json = require "hoist.json"
local ffi = require "ffi"

local null = json.null

-- {value, text}: value encodes to exactly text, and text decodes back to value
t.cases("round trip", {
  { name = "object", value = { a = 1, b = "x" }, text = '{"a":1,"b":"x"}' },
  { name = "keys sorted", value = { zeta = 1, alpha = 2, Mid = 3 }, text = '{"Mid":3,"alpha":2,"zeta":1}' },
  { name = "array", value = { 1, 2, 3 }, text = "[1,2,3]" },
  { name = "nested", value = { a = { b = { 1, { c = true } } } }, text = '{"a":{"b":[1,{"c":true}]}}' },
  { name = "empty table is an object", value = {}, text = "{}" },
  { name = "empty array", value = json.array(), text = "[]" },
  { name = "empty object", value = json.object(), text = "{}" },
  { name = "marked empties inside", value = { a = json.array(), o = json.object {} }, text = '{"a":[],"o":{}}' },
  { name = "null keeps array length", value = { 1, null, 3 }, text = "[1,null,3]" },
  { name = "null in object", value = { a = null }, text = '{"a":null}' },
  { name = "object with number keys", value = json.object { [1] = "a", [10] = "b" }, text = '{"1":"a","10":"b"}',
    back = { ["1"] = "a", ["10"] = "b" } },
  { name = "integral double", value = 3.0, text = "3" },
  { name = "negative", value = -17, text = "-17" },
  { name = "fraction", value = 1.5, text = "1.5" },
  { name = "2^53", value = 2 ^ 53, text = "9007199254740992" },
  { name = "big double", value = 1e300, text = "1e+300" },
  { name = "small double", value = 1.25e-10, text = "1.25e-10" },
  { name = "true", value = true, text = "true" },
  { name = "string", value = "hi", text = '"hi"' },
  { name = "escapes", value = 'a"b\\c\n\t\1', text = '"a\\"b\\\\c\\n\\t\\u0001"' },
  { name = "UTF-8 kept", value = "héllo ✓ 😀", text = '"héllo ✓ 😀"' },
  { name = "int64 cdata", value = 1234567890123456789LL, text = "1234567890123456789" },
  { name = "int64 in object", value = { id = 9007199254740993LL }, text = '{"id":9007199254740993}' },
}, function(row)
  t.eq(json.encode(row.value), row.text)
  t.eq(json.decode(row.text), row.back or row.value)
end)

-- 64-bit integers past 2^53 come back as int64_t / uint64_t cdata with every digit
t.cases("64-bit integers", {
  { text = "9007199254740993", value = 9007199254740993LL, ctype = "int64_t" },
  { text = "-9007199254740993", value = -9007199254740993LL, ctype = "int64_t" },
  { text = "9223372036854775807", value = 9223372036854775807LL, ctype = "int64_t" },
  { text = "-9223372036854775808", value = -9223372036854775807LL - 1, ctype = "int64_t" },
  { text = "9223372036854775808", value = 9223372036854775808ULL, ctype = "uint64_t" },
  { text = "18446744073709551615", value = 18446744073709551615ULL, ctype = "uint64_t" },
}, function(row)
  local v = json.decode(row.text)
  t.eq(type(v), "cdata")
  t.ok(ffi.istype(row.ctype, v), row.text .. " is a " .. row.ctype)
  t.ok(v == row.value, row.text .. " kept every digit, got " .. tostring(v))
  t.eq(json.encode(v), row.text)
  t.eq(json.encode(json.decode("[" .. row.text .. "]")), "[" .. row.text .. "]")
end)

t.case("integers up to 2^53 stay plain numbers", function()
  t.eq(type(json.decode("9007199254740992")), "number")
  t.eq(type(json.decode("-9007199254740992")), "number")
  t.eq(json.decode("1.0"), 1)
  t.eq(json.encode(json.decode("1.0")), "1")
end)

t.case("a null document is nil; null inside is the sentinel", function()
  t.eq(json.decode("null"), nil)
  t.ok(json.decode('{"a":null}').a == null)
  local list = json.decode("[null,null]")
  t.eq(#list, 2)
  t.eq(tostring(null), "hoist.json.null")
  t.eq(json.encode(null), "null")
  t.eq(json.encode(nil), "null")
end)

t.case("decoded arrays and objects keep their kind", function()
  local v = json.decode('{"a":[],"b":{},"c":[1],"d":{"x":1}}')
  t.eq(json.kind(v.a), "array"); t.eq(json.kind(v.b), "object")
  t.eq(json.encode(v), '{"a":[],"b":{},"c":[1],"d":{"x":1}}')
  v.c[1] = nil; v.d.x = nil -- emptied later: still what they were
  t.eq(json.encode(v), '{"a":[],"b":{},"c":[],"d":{}}')
  t.eq(json.kind({}), nil)
end)

t.case("markers return the table and accept existing markers", function()
  local t1 = { 1, 2 }
  t.ok(json.array(t1) == t1)
  t.ok(json.object(json.array()) ~= nil)
  t.eq(json.encode(json.object(json.array())), "{}")
end)

t.cases("encode options", {
  { value = { a = { 1, 2 } }, opts = { pretty = true }, text = '{\n  "a": [\n    1,\n    2\n  ]\n}' },
  { value = { a = 1 }, opts = { indent = 4 }, text = '{\n    "a": 1\n}' },
  { value = { a = 1 }, opts = { pretty = false }, text = '{"a":1}' },
  { value = "é✓", opts = { ascii = true }, text = '"\\u00e9\\u2713"' },
}, function(row)
  t.eq(json.encode(row.value, row.opts), row.text)
end)

local function deep(n)
  local root = {}
  local cur = root
  for _ = 1, n do cur.x = {}; cur = cur.x end
  return root
end

local cycle = {}
cycle.a = { b = cycle }

-- {name, fn, code, pattern}: every way encode, decode and the markers refuse input
t.cases("errors", {
  { name = "function", fn = function() json.encode { a = { b = { 1, 2, print } } } end,
    pattern = "cannot encode a function at %$%.a%.b%[3%]" },
  { name = "userdata", fn = function() json.encode { x = io.stdout } end, pattern = "cannot encode a userdata at %$%.x" },
  { name = "thread", fn = function() json.encode { coroutine.create(print) } end, pattern = "a thread at %$%[1%]" },
  { name = "cycle", fn = function() json.encode(cycle) end, pattern = "contains itself %(a cycle%) at %$%.a%.b" },
  { name = "NaN", fn = function() json.encode { n = 0 / 0 } end, pattern = "NaN.* at %$%.n" },
  { name = "infinity", fn = function() json.encode { 1, math.huge } end, pattern = "infinity.* at %$%[2%]" },
  { name = "invalid UTF-8", fn = function() json.encode { s = "ab\255c" } end,
    pattern = "invalid UTF%-8 in a string at byte 3 %(0xFF%) at %$%.s" },
  { name = "truncated UTF-8", fn = function() json.encode { "ok", "x\195" } end, pattern = "invalid UTF%-8 in a string.* at %$%[2%]" },
  { name = "invalid UTF-8 key", fn = function() json.encode { ["k\255"] = 1 } end, pattern = "invalid UTF%-8 in a key" },
  { name = "odd key path", fn = function() json.encode { ["a b"] = { print } } end, pattern = 'at %$%["a b"%]%[1%]' },
  { name = "sparse array", fn = function() json.encode { 1, nil, 3 } end, pattern = "sparse array at %$ %(index 3 set, 2 items%)" },
  { name = "mixed keys", fn = function() json.encode { 1, x = 2 } end, pattern = "mixes list items and keys like 'x' at %$; hoist.json.object" },
  { name = "number and string key", fn = function() json.encode(json.object { [1] = "a", ["1"] = "b" }) end,
    pattern = "both a number and a string key '1'" },
  { name = "boolean key", fn = function() json.encode { [true] = 1 } end, pattern = "key of type boolean at %$" },
  { name = "array marker with a key", fn = function() json.encode(json.array { x = 1 }) end,
    pattern = "array%-marked table with the key 'x'" },
  { name = "other cdata", fn = function() json.encode { ffi.new("int32_t[2]") } end, pattern = "cannot encode a ctype<int" },
  { name = "too deep", fn = function() json.encode(deep(1100)) end, pattern = "nesting deeper than 1000" },
  { name = "unknown option", fn = function() json.encode(1, { sort_keys = true }) end,
    pattern = "unknown option 'sort_keys' %(known: ascii, indent, pretty%)" },
  { name = "option type", fn = function() json.encode(1, { pretty = "yes" }) end, pattern = "'pretty' must be a boolean, got string" },
  { name = "options not a table", fn = function() json.encode(1, "pretty") end, pattern = "options must be a table" },
  { name = "indent range", fn = function() json.encode(1, { indent = 99 }) end, pattern = "'indent' must be an integer from 0 to 16" },
  { name = "decode nil", fn = function() json.decode(nil) end, pattern = "expected JSON text %(a string%), got nil" },
  { name = "decode number", fn = function() json.decode(42) end, pattern = "got number" },
  { name = "decode too deep", fn = function() json.decode(("["):rep(2000) .. ("]"):rep(2000)) end, pattern = "line 1, column 1001: nested deeper than 1000 levels" },
  { name = "array of a string", fn = function() json.array("x") end, pattern = "hoist.json.array: expected a table or nil, got string" },
  { name = "object over a metatable", fn = function() json.object(setmetatable({}, {})) end,
    pattern = "already has a metatable" },
}, function(row)
  t.raises(row.fn, row.code or "invalid_argument", row.pattern)
end)

-- {text, line, column, pattern}: malformed JSON names where
t.cases("malformed JSON", {
  { text = '{"a": 1,\n "b": }', line = 2, column = 7, pattern = "unexpected '}'" },
  { text = "[1, 2", line = 1, column = 6, pattern = "unexpected end of input" },
  { text = "", line = 1, column = 1, pattern = "unexpected end of input" },
  { text = '{"a":1}\n\n  ]', line = 3, column = 3, pattern = "expected end of input" },
  { text = "{x", line = 1, column = 2, pattern = "invalid literal" },
  { text = '"abc\ndef"', line = 1, column = 5, pattern = "control character" },
  { text = "[1,\n 1e400]", line = 2, column = 2, pattern = "number overflow" },
  { text = '["\255"]', line = 1, column = 3, pattern = "UTF%-8" },
  { text = "[1,]", line = 1, column = 4, pattern = "unexpected ']'" },
}, function(row)
  local err = t.raises(function() json.decode(row.text) end, "invalid_argument")
  t.match(err.message, ("^malformed JSON at line %d, column %d: "):format(row.line, row.column))
  t.match(err.message, row.pattern)
  t.eq(err.details.line, row.line)
  t.eq(err.details.column, row.column)
end)

---------------------------------------------------------------- recorded fixtures

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local read = support.must_read

local files = support.fixture_files(nil, { "*.json", "*.json.golden", "*.sarif.golden" })
if not files then
  t.case("recorded JSON fixtures", function() support.skip_shared() end)
else
  t.case("recorded JSON fixtures are there", function() t.ok(#files >= 20, "found " .. #files) end)
  t.cases("recorded fixture round trip", files, function(row)
    local value = json.decode(read(row.path))
    t.eq(json.decode(json.encode(value)), value)
    t.eq(json.decode(json.encode(value, { pretty = true })), value)
    -- decoding is stable: the same text twice gives the same encoding
    t.eq(json.encode(json.decode(json.encode(value))), json.encode(value))
  end)
  -- an independent reader agrees that what we write is the same document
  t.case("python3's json module reads our encoding as the original", function()
    if hoist.exec({ "sh", "-c", "command -v python3" }).code ~= 0 then t.skip("python3 not installed") end
    local out = os.tmpname()
    local pairs_file = assert(io.open(out, "w"))
    for _, row in ipairs(files) do
      local mine = os.tmpname()
      local f = assert(io.open(mine, "w"))
      f:write(json.encode(json.decode(read(row.path))))
      f:close()
      pairs_file:write(row.path, "\t", mine, "\n")
    end
    pairs_file:close()
    local r = hoist.exec { "python3", "-c", [[
import json, sys
bad = []
for line in open(sys.argv[1]):
    orig, mine = line.rstrip("\n").split("\t")
    if json.load(open(orig)) != json.load(open(mine)):
        bad.append(orig)
print("\n".join(bad))
]], out }
    for line in io.lines(out) do os.remove(line:match("\t(.*)$")) end
    os.remove(out)
    t.eq(r.code, 0, r.stderr)
    t.eq(r.stdout, "\n", "files python3 reads differently")
  end)
end
