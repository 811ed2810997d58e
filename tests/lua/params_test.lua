-- Pipeline parameters: coercion of --set strings and --params-file values, validation,
-- the errors (exit code 2, naming the parameter), secrets, and the --help text.
local t = require "hoist.test"
local params = require "hoist.pipeline.params"

local specs = {
  name = { type = "string", required = true, description = "Who" },
  count = { type = "number", default = 1 },
  flag = { type = "boolean", default = false },
  tags = { type = "list" },
  ports = { type = "list", items = "number" },
  labels = { type = "map" },
  mode = { type = "string", allowed = { "fast", "slow" }, default = "fast" },
  ref = { type = "string", pattern = "[a-z]+%-%d+" },
  envs = { type = "list", allowed = { "dev", "prod" } },
  token = { type = "string", secret = true, pattern = "tok_%w+" },
}

local function validate(raw) return params.validate(specs, raw) end

t.cases("coerces values to the declared type", {
  { name = "string", raw = { name = "x" }, key = "name", want = "x" },
  { name = "number from --set", raw = { name = "x", count = "42" }, key = "count", want = 42 },
  { name = "negative float", raw = { name = "x", count = " -1.5 " }, key = "count", want = -1.5 },
  { name = "number from JSON", raw = { name = "x", count = 7 }, key = "count", want = 7 },
  { name = "boolean true", raw = { name = "x", flag = "true" }, key = "flag", want = true },
  { name = "boolean FALSE", raw = { name = "x", flag = "FALSE" }, key = "flag", want = false },
  { name = "boolean yes", raw = { name = "x", flag = "yes" }, key = "flag", want = true },
  { name = "boolean 0", raw = { name = "x", flag = "0" }, key = "flag", want = false },
  { name = "boolean JSON", raw = { name = "x", flag = true }, key = "flag", want = true },
  { name = "list commas", raw = { name = "x", tags = "a, b ,c" }, key = "tags", want = { "a", "b", "c" } },
  { name = "list JSON", raw = { name = "x", tags = '["a","b"]' }, key = "tags", want = { "a", "b" } },
  { name = "list empty", raw = { name = "x", tags = "" }, key = "tags", want = {} },
  { name = "list typed", raw = { name = "x", ports = "80,443" }, key = "ports", want = { 80, 443 } },
  { name = "list from file", raw = { name = "x", tags = { "p", "q" } }, key = "tags", want = { "p", "q" } },
  { name = "map k=v", raw = { name = "x", labels = "a=1, b = two" }, key = "labels", want = { a = "1", b = "two" } },
  { name = "map JSON", raw = { name = "x", labels = '{"a":"1"}' }, key = "labels", want = { a = "1" } },
  { name = "map from file", raw = { name = "x", labels = { k = "v" } }, key = "labels", want = { k = "v" } },
  { name = "string from a JSON number", raw = { name = 12 }, key = "name", want = "12" },
  { name = "default applies", raw = { name = "x" }, key = "count", want = 1 },
  { name = "allowed value", raw = { name = "x", mode = "slow" }, key = "mode", want = "slow" },
  { name = "pattern ok", raw = { name = "x", ref = "abc-12" }, key = "ref", want = "abc-12" },
  { name = "list allowed", raw = { name = "x", envs = "dev,prod" }, key = "envs", want = { "dev", "prod" } },
}, function(row)
  t.eq(validate(row.raw)[row.key], row.want)
end)

t.cases("rejects bad values with exit code 2, naming the parameter", {
  { name = "missing required", raw = {}, pattern = "name: required string parameter is missing" },
  { name = "not a number", raw = { name = "x", count = "three" }, pattern = 'count: expected a number %(decimal: .-%), got "three"' },
  { name = "nan", raw = { name = "x", count = "nan" }, pattern = "count: expected a number" },
  -- decimal only: Lua's tonumber would take all of these
  { name = "hex", raw = { name = "x", count = "0x10" }, pattern = 'count: expected a number %(decimal: digits with an optional sign and point, like 3, %-2 or 0%.5%), got "0x10"' },
  { name = "exponent", raw = { name = "x", count = "1e3" }, pattern = 'count: expected a number .*got "1e3"' },
  { name = "infinity", raw = { name = "x", count = "inf" }, pattern = 'count: expected a number .*got "inf"' },
  { name = "a lone point", raw = { name = "x", count = "." }, pattern = 'count: expected a number' },
  { name = "not a boolean", raw = { name = "x", flag = "maybe" }, pattern = 'flag: expected true or false, got "maybe"' },
  { name = "list of numbers", raw = { name = "x", ports = "80,http" }, pattern = "ports: expected a list of number %(item 2 is not%)" },
  { name = "broken list JSON", raw = { name = "x", tags = "[1," }, pattern = "tags: expected a list %(this JSON does not parse%)" },
  { name = "list given a map", raw = { name = "x", tags = { a = 1 } }, pattern = "tags: expected a list" },
  { name = "map without =", raw = { name = "x", labels = "a=1,b" }, pattern = 'labels: expected a map .*"b" has no' },
  { name = "map given a list", raw = { name = "x", labels = { "a" } }, pattern = "labels: expected a map" },
  { name = "not allowed", raw = { name = "x", mode = "medium" }, pattern = 'mode: must be one of fast, slow, got "medium"' },
  { name = "list item not allowed", raw = { name = "x", envs = "dev,qa" }, pattern = 'envs: item 2 must be one of dev, prod, got "qa"' },
  { name = "pattern", raw = { name = "x", ref = "ABC-1" }, pattern = "ref: must match the pattern %[a%-z%]%+%%%-%%d%+" },
  { name = "pattern is anchored", raw = { name = "x", ref = "xx abc-1 yy" }, pattern = "ref: must match" },
  { name = "unknown with hint", raw = { name = "x", cuont = "1" }, pattern = 'unknown parameter "cuont" %(did you mean "count"%?%)' },
  { name = "unknown without hint", raw = { name = "x", zzzzzzzz = "1" }, pattern = 'unknown parameter "zzzzzzzz"', no = "did you mean" },
}, function(row)
  local err = t.raises(function() validate(row.raw) end, "invalid_argument", row.pattern)
  t.eq(err.details.exit_code, 2)
  if row.no then t.no_match(tostring(err), row.no) end
end)

t.case("every problem is reported at once, each under its name in details", function()
  local err = t.raises(function() validate { count = "x", mode = "y", bogus = "1" } end, "invalid_argument", "^invalid_argument: invalid parameters: ")
  t.ok(err.details.params.name and err.details.params.count and err.details.params.mode and err.details.params.bogus,
    "details.params names each parameter")
end)

t.case("a secret value never appears in an error", function()
  local err = t.raises(function() validate { name = "x", token = "not-a-token-value" } end, "invalid_argument", "token: must match")
  t.no_match(tostring(err), "not-a-token-value")
  t.match(tostring(err), "%(secret value%)")
end)

t.case("secret parameters are registered at once and redacted for the journal", function()
  local raw = { name = "x", token = "tok_S3cretValue" }
  local registered = params.register_secrets(specs, raw)
  t.eq(registered, { "tok_S3cretValue" })
  t.eq(hoist.scrub("value tok_S3cretValue here"), "value *** here")
  local redacted = params.redact(specs, validate(raw))
  t.eq(redacted.token, "***")
  t.eq(redacted.name, "x")
end)

t.case("a secret can come from the environment named by `env`", function()
  local home = os.getenv("HOME")
  if not home or #home < 4 then t.skip("HOME is not set to something usable") end
  local s = { p = { type = "string", env = "HOME" }, q = { type = "string", env = "HOIST_SURELY_UNSET_VAR", default = "d" } }
  local v = params.validate(s, {})
  t.eq(v.p, home)
  t.eq(v.q, "d")
  t.eq(params.validate(s, { p = "given" }).p, "given", "--set wins over env")
end)

t.cases("rejects bad declarations", {
  { name = "unknown type", specs = { a = { type = "int" } }, pattern = 'parameter "a": unknown type "int"' },
  { name = "unknown field", specs = { a = { type = "string", requird = true } }, pattern = 'parameter "a": unknown field "requird"' },
  { name = "empty allowed", specs = { a = { allowed = {} } }, pattern = "allowed must be a non%-empty list" },
  { name = "bad items", specs = { a = { type = "list", items = "date" } }, pattern = 'unknown items type "date"' },
  { name = "bad name", specs = { ["a b"] = {} }, pattern = 'parameter "a b": a name must be' },
}, function(row)
  t.raises(function() params.check_specs(row.specs) end, "invalid_argument", row.pattern)
end)

t.case("help lists name, type, required, default, allowed, pattern, env and description", function()
  local text = params.help(params.check_specs {
    image = { type = "string", required = true, description = "Image to deploy", pattern = "[%w/:]+" },
    env = { type = "string", default = "staging", allowed = { "staging", "prod" } },
    pw = { type = "string", secret = true, env = "PW", default = "hidden-default" },
    ports = { type = "list", items = "number", default = { 80 } },
  })
  t.match(text, "image %(string, required%)\n      Image to deploy\n      pattern: %[%%w/:%]%+")
  t.match(text, 'env %(string, default "staging"%)\n      allowed: staging, prod')
  t.match(text, "pw %(string, default %(set%), secret%)\n      from env: %$PW when not set")
  t.match(text, "ports %(list<number>, default %[80%]%)")
  t.no_match(text, "hidden-default")
  t.ok(text:find("image") < text:find("env"), "required parameters come first")
end)

---------------------------------------------------------------- lists of tables

-- A list of tables (items = "table"): each item a set of parameters of its own, checked by
-- the same validate against `fields`, over the top-level values (inherit), named by `key`.
local fleet_fields = {
  name = { type = "string", required = true, pattern = "[%w][%w_.%-]*" },
  image = { type = "string", required = true },
  port = { type = "number", default = 8080, integer = true, min = 1, max = 65535 },
  secret_env = { type = "map", secret = true },
}
local fleet_specs = params.check_specs {
  image = { type = "string", required = true },
  port = { type = "number", default = 8080, integer = true, min = 1, max = 65535 },
  secret_env = { type = "map", secret = true },
  services = { type = "list", items = "table", max_items = 3, key = "name", inherit = true, fields = fleet_fields },
}

t.case("a list of tables: every item is checked against its fields, with the top-level values as defaults", function()
  local v = params.validate(fleet_specs, { port = 9000, services = {
    { name = "api", image = "r/api" }, { name = "web", image = "r/web", port = 9001 } } })
  t.eq(v.services[1], { name = "api", image = "r/api", port = 9000 })
  t.eq(v.services[2].port, 9001, "an item's own value wins")
  t.eq(v.image, nil, "the top-level image is required of each item instead")
  -- from --set: JSON text
  local w = params.validate(fleet_specs, { services = '[{"name":"a","image":"x"}]' })
  t.eq(w.services[1].port, 8080)
end)

t.cases("a list of tables: a bad item is named with its index and key", {
  { name = "bad value", raw = { image = "r", services = { { name = "api" }, { name = "web", port = 70000 } } },
    pattern = "services%[2%] %(web%): port: must be from 1 to 65535, got 70000" },
  { name = "unknown field", raw = { image = "r", services = { { name = "api", prot = 1 } } },
    pattern = 'services%[1%] %(api%): unknown parameter "prot" %(did you mean "port"%?%)' },
  { name = "missing key", raw = { image = "r", services = { { port = 1 } } }, pattern = "services%[1%]: name is missing" },
  { name = "duplicate key", raw = { image = "r", services = { { name = "a" }, { name = "a" } } },
    pattern = 'services%[2%] %(a%): name "a" is services%[1%]\'s too' },
  { name = "required per item", raw = { services = { { name = "a" } } },
    pattern = "services%[1%] %(a%): image: required string parameter is missing" },
  { name = "too many", raw = { image = "r", services = { { name = "a" }, { name = "b" }, { name = "c" }, { name = "d" } } },
    pattern = "services: at most 3 items, got 4" },
  { name = "not tables", raw = { image = "r", services = "a,b" }, pattern = "services: expected a list of tables" },
}, function(row)
  local e = t.raises(function() params.validate(fleet_specs, row.raw) end, "invalid_argument", row.pattern)
  t.eq(e.details.exit_code, 2)
end)

t.case("a list of tables: each item's secrets are registered and redacted for the journal", function()
  local raw = { image = "r", services = { { name = "a", secret_env = { TOKEN = "fleet-item-secret-1" } } } }
  local got = params.register_secrets(fleet_specs, raw)
  t.eq(got, { "fleet-item-secret-1" })
  t.eq(hoist.scrub("x fleet-item-secret-1 y"), "x *** y")
  local red = params.redact(fleet_specs, params.validate(fleet_specs, raw))
  t.eq(red.services[1].secret_env, "***")
  t.eq(red.services[1].name, "a")
end)

t.cases("a list of tables: bad declarations", {
  { name = "no bound", specs = { s = { type = "list", items = "table", fields = {} } }, pattern = "needs max_items" },
  { name = "no fields", specs = { s = { type = "list", items = "table", max_items = 2 } }, pattern = "needs fields" },
  { name = "key not a field", specs = { s = { type = "list", items = "table", max_items = 2, fields = {}, key = "n" } },
    pattern = "key must name one of its fields" },
  { name = "fields on a string", specs = { s = { fields = {} } }, pattern = "are for a list of tables" },
}, function(row)
  t.raises(function() params.check_specs(row.specs) end, "invalid_argument", row.pattern)
end)
