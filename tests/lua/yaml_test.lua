local t = require "hoist.test"
local yaml = require "hoist.yaml"
local json = require "hoist.json"

local null = yaml.null

-- {yaml, value}: how a scalar reads (YAML 1.2 core schema: quoted stays a string)
t.cases("scalar typing", {
  { yaml = "a: true", value = true },
  { yaml = "a: False", value = false },
  { yaml = "a: yes", value = "yes" }, -- a YAML 1.1 boolean, a string in 1.2
  { yaml = "a: null", value = null },
  { yaml = "a: ~", value = null },
  { yaml = "a:", value = null },
  { yaml = "a: 1", value = 1 },
  { yaml = "a: -17", value = -17 },
  { yaml = "a: +5", value = 5 },
  { yaml = "a: 0o17", value = 15 },
  { yaml = "a: 0x1F", value = 31 },
  { yaml = "a: 0755", value = 755 }, -- decimal in 1.2 (octal 493 in 1.1)
  { yaml = "a: 1.5", value = 1.5 },
  { yaml = "a: 1.10", value = 1.1 }, -- the version pitfall
  { yaml = "a: '1.10'", value = "1.10" },
  { yaml = 'a: "1.0"', value = "1.0" },
  { yaml = 'a: "true"', value = "true" },
  { yaml = "a: 1e3", value = 1000 },
  { yaml = "a: .5", value = 0.5 },
  { yaml = "a: .inf", value = math.huge },
  { yaml = "a: -.Inf", value = -math.huge },
  { yaml = "a: !!str 12", value = "12" },
  { yaml = "a: !!float 1", value = 1 },
  { yaml = "a: !!int '7'", value = 7 },
  { yaml = "a: !custom x", value = "x" },
  { yaml = "a: 2001-12-14", value = "2001-12-14" },
  { yaml = "a: 1.2.3", value = "1.2.3" },
  { yaml = "a: nginx:1.25", value = "nginx:1.25" },
  { yaml = "a: 9007199254740993", value = 9007199254740993LL },
  { yaml = "a: -9223372036854775808", value = -9223372036854775807LL - 1 },
  { yaml = "a: 18446744073709551615", value = 18446744073709551615ULL },
  { yaml = "a: |\n  x\n  y\n", value = "x\ny\n" },
  { yaml = "a: |-\n  x\n", value = "x" },
  { yaml = "a: >\n  x\n  y\n", value = "x y\n" },
  { yaml = "a: [1, two, {b: c}]", value = { 1, "two", { b = "c" } } },
  { yaml = "a: []", value = json.array() },
  { yaml = "a: {}", value = {} },
  { yaml = "1: x\ntrue: y", value = nil, whole = { ["1"] = "x", ["true"] = "y" } },
}, function(row)
  local v = yaml.decode(row.yaml)
  if row.whole then return t.eq(v, row.whole) end
  t.eq(v.a, row.value, row.yaml)
  t.eq(type(v.a), type(row.value), row.yaml)
end)

t.case("NaN and empty containers keep their kind", function()
  local v = yaml.decode("n: .nan\nl: []\nm: {}\n")
  t.ok(v.n ~= v.n, "NaN")
  t.eq(yaml.kind(v.l), "array"); t.eq(yaml.kind(v.m), "object")
  t.eq(yaml.encode(v), 'l: []\nm: {}\n"n": .nan\n') -- n is a YAML 1.1 boolean: quoted
end)

t.case("anchors, aliases and merge keys resolve", function()
  local v = yaml.decode [[
base: &b {x: 1, y: 2}
other: &o {z: 9, x: 7}
derived:
  <<: [*b, *o]
  y: 3
list: [*b, *b]
]]
  t.eq(v.derived, { x = 1, y = 3, z = 9 })
  t.eq(v.list, { { x = 1, y = 2 }, { x = 1, y = 2 } })
end)

-- {value, yaml}: value writes exactly yaml and reads back as value
t.cases("encode", {
  { value = { b = "x", a = 1 }, yaml = "a: 1\nb: x\n" },
  { value = { v = "1.10" }, yaml = 'v: "1.10"\n' },
  { value = { v = "true" }, yaml = 'v: "true"\n' },
  { value = { v = "yes" }, yaml = 'v: "yes"\n' },
  { value = { v = "Off" }, yaml = 'v: "Off"\n' },
  { value = { v = "null" }, yaml = 'v: "null"\n' },
  { value = { v = "~" }, yaml = 'v: "~"\n' },
  { value = { v = "" }, yaml = 'v: ""\n' },
  { value = { v = "0755" }, yaml = 'v: "0755"\n' },
  { value = { v = "1_000" }, yaml = 'v: "1_000"\n' },
  { value = { v = "1:20" }, yaml = 'v: "1:20"\n' },
  { value = { v = "2024-01-02" }, yaml = 'v: "2024-01-02"\n' },
  { value = { ["80"] = "http" }, yaml = '"80": http\n' },
  { value = { v = "nginx:1.25" }, yaml = "v: nginx:1.25\n" },
  { value = { list = { 1, 2 } }, yaml = "list:\n  - 1\n  - 2\n" },
  { value = { list = { { a = 1, b = 2 } } }, yaml = "list:\n  - a: 1\n    b: 2\n" },
  { value = { a = json.array(), o = json.object() }, yaml = "a: []\no: {}\n" },
  { value = { a = null }, yaml = "a: null\n" },
  { value = { a = 1.5, b = 0.1, c = 1e20 }, yaml = "a: 1.5\nb: 0.1\nc: 1e+20\n" },
  { value = { a = math.huge, b = -math.huge }, yaml = "a: .inf\nb: -.inf\n" },
  { value = { a = true }, yaml = "a: true\n" },
  { value = { id = 9007199254740993LL }, yaml = "id: 9007199254740993\n" },
  { value = { a = "line1\nline2\n" }, yaml = "a: |\n  line1\n  line2\n" },
  { value = { a = "no newline\nat end" }, yaml = 'a: "no newline\\nat end"\n' },
  { value = "plain", yaml = "plain\n" },
  { value = { 1, "x" }, yaml = "- 1\n- x\n" },
  { value = null, yaml = "null\n" },
}, function(row)
  t.eq(yaml.encode(row.value), row.yaml)
  local back = yaml.decode(row.yaml)
  if row.value == null then return t.eq(back, nil) end
  t.eq(back, row.value)
end)

-- strings that are easy to get wrong come back as the same string
t.cases("tricky strings round-trip", {
  { s = "yes" }, { s = "no" }, { s = "on" }, { s = "y" }, { s = "N" }, { s = "=" }, { s = "<<" },
  { s = "0b101" }, { s = "0x1F" }, { s = "0o17" }, { s = "+1" }, { s = "-.inf" }, { s = ".NaN" },
  { s = "1e3" }, { s = "-" }, { s = "- x" }, { s = "#x" }, { s = "a #b" }, { s = "a: b" }, { s = "[x]" },
  { s = "{x}" }, { s = "*x" }, { s = "&x" }, { s = "!x" }, { s = "|" }, { s = "> x" }, { s = "'q'" },
  { s = '"d"' }, { s = "  lead" }, { s = "trail " }, { s = "%x" }, { s = "@x" }, { s = "`x" },
  { s = "tab\tin" }, { s = "é ✓ 😀" }, { s = "\n\nx\n" }, { s = " x\n" }, { s = "x\r\n" }, { s = "a\n\n" },
  { s = "  indented\n  block\n" }, { s = "key: value\nother: 1\n" }, { s = "ctl\1\127" },
  { s = ("long "):rep(300) }, { s = "---" }, { s = "..." }, { s = "?" }, { s = "? x" }, { s = "x:" },
  -- fuzz/corpus/yaml: characters outside YAML's printable set (U+FFFF, U+FFFE, NEL, U+2028,
  -- BOM, DEL, C0 next to non-ASCII text), and a key made long by its escapes
  { s = "x\239\191\191y" }, { s = "\239\191\190" }, { s = "a\194\133b" }, { s = "a\226\128\168b" },
  { s = "\239\187\191bom" }, { s = "del\127" }, { s = "\1\195\169t\195\169\2" }, { s = ("\0"):rep(300) },
  { s = "line\239\191\191\nnext\n" },
}, function(row)
  local text = yaml.encode { s = row.s, list = { row.s }, [row.s] = 1 }
  local back = yaml.decode(text)
  t.eq(back.s, row.s, text)
  t.eq(back.list[1], row.s, text)
  t.eq(back[row.s], 1, text)
end)

t.case("empty streams and documents", function()
  t.eq(yaml.decode(""), nil)
  t.eq(yaml.decode("# only a comment\n"), nil)
  t.eq(yaml.decode("---\n"), nil)
  t.eq(yaml.decode("a: 1\n---\n"), { a = 1 })
  local all = yaml.decode_all("")
  t.eq(#all, 0); t.eq(yaml.kind(all), "array")
  t.eq(yaml.encode_all {}, "")
end)

local manifest = [[
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: 127.0.0.1:5000/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          ports:
            - containerPort: 8080
          env:
            - name: FEATURE_ON
              value: "true"
            - name: VERSION
              value: "1.10"
          args: []
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
---
]]

t.case("multi-document manifest: Deployment + Service", function()
  local docs = yaml.decode_all(manifest)
  t.eq(#docs, 2)
  t.eq(docs[1].kind, "Deployment"); t.eq(docs[2].kind, "Service")
  local c = docs[1].spec.template.spec.containers[1]
  t.eq(c.env[1].value, "true"); t.eq(c.env[2].value, "1.10")
  t.eq(c.ports[1].containerPort, 8080)
  t.eq(yaml.kind(c.args), "array")
  local text = yaml.encode_all(docs)
  t.match(text, "\n%-%-%-\napiVersion: v1\nkind: Service\n")
  t.match(text, 'value: "true"'); t.match(text, 'value: "1.10"'); t.match(text, "args: %[%]")
  t.eq(yaml.decode_all(text), docs)
  -- the same documents through JSON and back
  t.eq(json.decode(json.encode(docs)), docs)
  local err = t.raises(function() yaml.decode(manifest) end, "invalid_argument", "holds 2 documents; hoist.yaml.decode_all")
  t.eq(err.details.documents, 2)
end)

local kubeconfig = [[
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
    server: https://127.0.0.1:6443
  name: dev
contexts:
- context:
    cluster: dev
    namespace: apps
    user: dev-admin
  name: dev
current-context: dev
preferences: {}
users:
- name: dev-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubelogin
      args:
      - get-token
      - --server-id
      - 6dae42f8-4368-4678-94ff-3960e28e3630
      env: null
      interactiveMode: IfAvailable
      provideClusterInfo: false
]]

t.case("kubeconfig round trip", function()
  local cfg = yaml.decode(kubeconfig)
  t.eq(cfg["current-context"], "dev")
  t.eq(cfg.clusters[1].cluster.server, "https://127.0.0.1:6443")
  t.eq(cfg.contexts[1].context.namespace, "apps")
  local exec = cfg.users[1].user.exec
  t.eq(exec.args, { "get-token", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630" })
  t.ok(exec.env == null); t.eq(exec.provideClusterInfo, false)
  t.eq(yaml.kind(cfg.preferences), "object")
  local text = yaml.encode(cfg)
  t.match(text, "\npreferences: {}\n"); t.match(text, "\n +env: null\n")
  t.eq(yaml.decode(text), cfg)
end)

-- {yaml, line, column, pattern}: malformed YAML names where
t.cases("malformed YAML", {
  { yaml = "a: [1, 2\nb: 3\n", line = 2, column = 2, pattern = "end of sequence flow not found" },
  { yaml = "a: b: c\n", line = 1, column = 5, pattern = "illegal map value" },
  { yaml = "a: *nope\n", line = 1, column = 4, pattern = "anchor is not defined" },
  { yaml = "a: 1\nb: 2\na: 3\n", line = 3, column = 1, pattern = "duplicate key 'a'" },
  { yaml = "x:\n  a: !!int nine\n", line = 2, column = 6, pattern = "'nine' is not an !!int" },
  { yaml = "a: !!bool yes\n", line = 1, column = 4, pattern = "is not a !!bool" },
  { yaml = "a: 0x1FFFFFFFFFFFFFFFFF\n", line = 1, column = 4, pattern = "does not fit in 64 bits" },
  { yaml = "? [1, 2]\n: x\n", line = 1, column = 3, pattern = "mapping key must be a scalar, not a sequence" },
  { yaml = "a:\n  <<: 5\n", line = 2, column = 7, pattern = "merge key needs a mapping" },
}, function(row)
  local err = t.raises(function() yaml.decode(row.yaml) end, "invalid_argument")
  t.match(err.message, ("^malformed YAML at line %d, column %d: "):format(row.line, row.column))
  t.match(err.message, row.pattern)
  t.eq(err.details.line, row.line); t.eq(err.details.column, row.column)
end)

local loop = {}
loop.me = loop

-- {fn, pattern}: the other ways encode and decode refuse input
t.cases("errors", {
  { fn = function() yaml.encode { a = { print } } end, pattern = "cannot encode a function at %$%.a%[1%]" },
  { fn = function() yaml.encode(loop) end, pattern = "a cycle%) at %$%.me" },
  { fn = function() yaml.encode { "bad\255" } end, pattern = "invalid UTF%-8 in a string at byte 4" },
  { fn = function() yaml.encode_all "x" end, pattern = "expected a list of documents, got string" },
  { fn = function() yaml.encode_all { a = 1 } end, pattern = "got a table with keys" },
  { fn = function() yaml.decode(nil) end, pattern = "expected YAML text %(a string%), got nil" },
  { fn = function() yaml.decode_all(false) end, pattern = "got boolean" },
  { fn = function() yaml.decode("a: &x [*x]\n") end, pattern = "line 1, column 8: an alias refers to the node that contains it" },
  { fn = function() -- a billion laughs: 10 levels of 10 aliases each
      local lines = { "l0: &l0 [x, x, x, x, x, x, x, x, x, x]" }
      for i = 1, 9 do
        local refs = ("*l%d, "):format(i - 1):rep(10):sub(1, -3)
        lines[#lines + 1] = ("l%d: &l%d [%s]"):format(i, i, refs)
      end
      yaml.decode(table.concat(lines, "\n"))
    end, pattern = "aliases expand the stream to more than 100%d+ nodes" },
}, function(row)
  t.raises(row.fn, "invalid_argument", row.pattern)
end)

-- What decode returns, encode writes back: a string that is not UTF-8 is refused where it is
-- read (it could not be written: YAML has no escape for a raw byte).
t.cases("text that is not UTF-8 is refused by decode, naming where", {
  { name = "a value", yaml = "a: \255\n", line = 1, column = 4, pattern = "byte 1 %(0xFF%)" },
  { name = "inside a value", yaml = "a: ok\nb: x\192\175y\n", line = 2, column = 4, pattern = "byte 2 %(0xC0%)" },
  { name = "a key", yaml = "k\237\160\128: 1\n", line = 1, column = 1, pattern = "byte 2 %(0xED%)" },
  { name = "in a sequence, quoted", yaml = "- 'a\254'\n", line = 1, column = 3, pattern = "byte 2 %(0xFE%)" },
}, function(row)
  local err = t.raises(function() yaml.decode(row.yaml) end, "invalid_argument")
  t.match(err.message, ("^malformed YAML at line %d, column %d: invalid UTF%%-8 in a scalar at "):format(row.line, row.column))
  t.match(err.message, row.pattern)
end)

t.case("valid UTF-8 and escapes decode and encode back to the same strings", function()
  for _, text in ipairs { "a: h\195\169\n", 'a: "\\xff \\u00e9 \\U0001F600"\n', "- \240\159\152\128\n" } do
    local v = yaml.decode(text)
    t.eq(yaml.decode(yaml.encode(v)), v)
  end
end)

-- yaml-cpp stops a path of about 500 nodes with "bad file": hoist stops first, both ways, at
-- one documented depth, and says so.
local function nested(style, n)
  if style == "flow" then return ("["):rep(n) .. ("]"):rep(n) end
  if style == "sequence" then return ("- "):rep(n) .. "x\n" end
  local lines = {}
  for i = 1, n do lines[i] = ("  "):rep(i - 1) .. (style == "map" and "a:" or "- a:") end
  return table.concat(lines, "\n") .. " 1\n"
end
t.cases("nesting: 400 levels read and write back; 401 are refused naming the depth", {
  { name = "flow" }, { name = "sequence" }, { name = "map" }, { name = "sequence of maps" },
}, function(row)
  local style = row.name == "sequence of maps" and "seqmap" or row.name
  local v = yaml.decode(nested(style, style == "seqmap" and 200 or 400))
  t.eq(yaml.decode(yaml.encode(v)), v)
  local err = t.raises(function() yaml.decode(nested(style, style == "seqmap" and 201 or 401)) end, "invalid_argument")
  t.match(err.message, "nesting deeper than 400 levels")
  -- far deeper text is refused the same way, before the parser's own limit
  t.raises(function() yaml.decode(nested(style, 2000)) end, "invalid_argument", "nesting deeper than 400 levels")
end)

t.case("encode refuses a value nested deeper than YAML reads back", function()
  local v = {}
  local at = v
  for _ = 2, 401 do at[1] = {}; at = at[1] end
  t.raises(function() yaml.encode(v) end, "invalid_argument", "cannot write YAML: nesting deeper than 400 levels")
  v = {}
  at = v
  for _ = 2, 400 do at[1] = {}; at = at[1] end
  at[1] = "leaf"
  t.eq(yaml.decode(yaml.encode(v)), v)
end)

---------------------------------------------------------------- hostile input

-- What one stream may cost is bounded, and no scalar's length reaches a recursion.
t.cases("hostile YAML fails fast with a clear error", {
  { name = "a stray comma after a scalar", text = "'',", pattern = "line 1, column 3: unexpected ','" },
  { name = "a stray comma after a flow map", text = "{},", pattern = "line 1, column 3: unexpected ','" },
  { name = "30k digits", text = ("7"):rep(30000), pattern = "number '7777.-' %(30000 bytes%) is out of range" },
  { name = "30k digits tagged !!float", text = "a: !!float " .. ("1"):rep(30000) .. "x", pattern = "line 1, column 4: '1111.-' %(30001 bytes%) is not a !!float" },
}, function(row)
  t.raises(function() yaml.decode(row.text) end, "invalid_argument", row.pattern)
end)

t.cases("long strings that look like numbers encode and read back", {
  { name = "digits", s = ("1"):rep(30000) },
  { name = "sign and digits", s = "-" .. ("2"):rep(30000) },
  { name = "dot", s = "." .. ("3"):rep(30000) },
  { name = "underscores", s = "1" .. ("_0"):rep(15000) },
  { name = "base 60", s = "1" .. (":30"):rep(10000) },
  { name = "digits then a letter", s = ("4"):rep(30000) .. "x" },
}, function(row)
  local text = yaml.encode({ v = row.s })
  t.eq(yaml.decode(text).v, row.s)
end)

-- Random short texts from YAML's punctuation: each either decodes or raises invalid_argument,
-- and none runs away (yaml-cpp loops on some of them).
t.case("random punctuation decodes or fails cleanly", function()
  local alphabet = { "'", '"', ",", "[", "]", "{", "}", ":", "-", "?", "&a", "*a", "!", "|", ">", " ", "\n", "#",
    "%", "@", "a", "1", "<<", "---", "..." }
  math.randomseed(7)
  for _ = 1, 3000 do
    local parts = {}
    for i = 1, math.random(1, 8) do parts[i] = alphabet[math.random(#alphabet)] end
    local text = table.concat(parts)
    local ok, err = pcall(yaml.decode_all, text)
    if not ok then t.eq(err.code, "invalid_argument", ("%q: %s"):format(text, tostring(err))) end
  end
end)

---------------------------------------------------------------- recorded fixtures

local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")
local files = support.fixture_files("k8s", { "*.yaml" })
-- Recorded files with a duplicate mapping key: refused as kubectl's strict decoding does,
-- naming the key and its line.
local DUPLICATE_KEYS = {
  ["gitops-engine-statefulset-ondelete.yaml"] = "line 94, column 3: duplicate key 'updateStrategy'",
}
if files then
  t.case("recorded Kubernetes YAML fixtures are there", function() t.ok(#files >= 4, "found " .. #files) end)
  t.cases("recorded Kubernetes YAML round trip", files, function(row)
    local f = assert(io.open(row.path, "rb"))
    local text = f:read("*a")
    f:close()
    local duplicate = DUPLICATE_KEYS[row.path:match("[^/]+$")]
    if duplicate then
      t.raises(function() yaml.decode_all(text) end, "invalid_argument", duplicate)
      return
    end
    local docs = yaml.decode_all(text)
    t.ok(#docs >= 1)
    for _, doc in ipairs(docs) do
      t.ok(type(doc.kind) == "string" and type(doc.metadata) == "table", "a Kubernetes object")
      t.eq(yaml.decode(yaml.encode(doc)), doc)
      t.eq(json.decode(json.encode(doc)), doc)
    end
  end)
else
  t.case("recorded Kubernetes YAML fixtures", function() support.skip_shared() end)
end
