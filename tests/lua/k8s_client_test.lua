-- hoist.k8s against tests/k8s/fake_apiserver.py (started here; needs only python3): kubeconfig
-- and exec plugins end to end, discovery, CRUD, server-side apply, patch types, delete
-- propagation, dry runs, Status errors, 429 retries, and watch through a dropped stream and
-- a 410. The rollout cases against the Kubernetes emulator live in k8s_rollout_test.lua.
local t = require "hoist.test"
local k8s = hoist.k8s

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local fake = dofile(here .. "/k8s_fake.lua")
local PLUGIN = support.root .. "/tests/tools/fake-kube-credential"
local TOKEN = fake.TOKEN

local function server() return (fake.start()) end
local function kubeconfig(name, user) return fake.kubeconfig(name, user) end
local function client() return k8s.client { kubeconfig = kubeconfig("token") } end
local control, requests = fake.control, fake.requests
local function last_request() local r = requests(); return r[#r] end
local function reset() control("reset") end

local function cm(name, extra)
  local o = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name }, data = { k = "v" } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

---------------------------------------------------------------- kubeconfig and auth

t.case("a client from kubeconfig: context, namespace, server", function()
  local c = client()
  t.eq(c.context, "fake")
  t.eq(c.namespace, "team")
  t.eq(c.server, server())
  t.match(tostring(c), "hoist.Kube%(fake")
  t.eq(k8s.client { kubeconfig = kubeconfig("token", "{token: x}"), namespace = "other" }.namespace, "other")
end)

t.cases("client options and kubeconfig errors name the problem", {
  { name = "unknown option", opts = { cluster = "x" }, pattern = "unknown option 'cluster'" },
  { name = "missing file", opts = { kubeconfig = "/nonexistent/config" }, pattern = "/nonexistent/config does not exist" },
  { name = "missing context", opts = function() return { kubeconfig = kubeconfig("token", "{token: x}"), context = "nope" } end,
    pattern = 'context "nope" not found %(known: fake%)' },
}, function(row)
  server()
  local opts = type(row.opts) == "function" and row.opts() or row.opts
  t.raises(function() k8s.client(opts) end, "invalid_argument", row.pattern)
end)

t.case("a wrong token is unauthorized, with the server's words, and the token stays secret", function()
  server()
  local c = k8s.client { kubeconfig = kubeconfig("wrong", "{token: wrong-token-9876}") }
  local ok, err = pcall(c.get, c, { kind = "ConfigMap", name = "x", attempts = 1 })
  t.ok(not ok)
  t.eq(err.code, "unauthorized")
  t.match(err.message, "Unauthorized")
  t.no_match(tostring(err), "wrong-token-9876")
end)

t.case("an exec plugin's token reaches the server; the plugin runs once for many calls", function()
  server()
  local _, dir = fake.start()
  local log = dir .. "/plugin.log"
  os.remove(log)
  local c = k8s.client { kubeconfig = kubeconfig("exec", ([==[

    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %s
      args: [get-token]
      interactiveMode: Never
      env: [{name: FAKE_TOKEN, value: %s}, {name: FAKE_LOG, value: %s}]]==]):format(PLUGIN, TOKEN, log)) }
  t.eq(#c:list { kind = "ConfigMap" }.items >= 0, true)
  c:get { kind = "ConfigMap", name = "nothing", missing_ok = true }
  local runs = 0
  for _ in support.read(log):gmatch("[^\n]+") do runs = runs + 1 end
  t.eq(runs, 1)
end)

---------------------------------------------------------------- discovery

t.cases("discovery maps any spelling of a kind to its resource", {
  { kind = "Deployment", name = "deployments", api_version = "apps/v1", namespaced = true },
  { kind = "deploy", name = "deployments", api_version = "apps/v1", namespaced = true },
  { kind = "configmaps", name = "configmaps", api_version = "v1", namespaced = true },
  { kind = "ns", name = "namespaces", api_version = "v1", namespaced = false },
  { kind = "CronTab", name = "crontabs", api_version = "stable.example.com/v1", namespaced = true },
  { kind = "Pod", given = "v1", name = "pods", api_version = "v1", namespaced = true },
}, function(row)
  local r = client():resource { kind = row.kind, api_version = row.given }
  t.eq(r.name, row.name)
  t.eq(r.api_version, row.api_version)
  t.eq(r.namespaced, row.namespaced)
end)

t.case("an unknown kind or group version is not_found, naming it", function()
  local c = client()
  t.raises(function() c:resource { kind = "Widget" } end, "not_found", 'no resource for kind "Widget"')
  t.raises(function() c:resource { kind = "Widget", api_version = "apps/v1" } end, "not_found",
    'no kind "Widget" in apps/v1 %(known: Deployment, ReplicaSet%)')
  t.raises(function() c:resource { kind = "Thing", api_version = "example.com/v9" } end, "not_found",
    'no API group version "example.com/v9"')
end)

---------------------------------------------------------------- verbs

t.case("create, get, list across pages, delete with propagation", function()
  reset()
  local c = client()
  for i = 1, 5 do c:create(cm("cfg-" .. i)) end
  local got = c:get { kind = "ConfigMap", name = "cfg-3" }
  t.eq(got.metadata.namespace, "team")
  t.eq(got.data.k, "v")
  local list = c:list { kind = "ConfigMap", page_size = 2 }
  t.eq(#list.items, 5)
  t.eq(list.items[1].kind, "ConfigMap")
  t.ok(tonumber(list.metadata.resourceVersion) > 100)
  local pages = 0
  for _, r in ipairs(requests()) do if r.method == "GET" and r.path == "/api/v1/namespaces/team/configmaps" then pages = pages + 1 end end
  t.eq(pages, 3)
  t.eq(#c:list { kind = "ConfigMap", page_size = 2, limit = 3 }.items, 3)
  c:delete { kind = "ConfigMap", name = "cfg-1", propagation = "Foreground" }
  t.eq(hoist.json.decode(last_request().body).propagationPolicy, "Foreground")
  t.eq(c:get { kind = "ConfigMap", name = "cfg-1", missing_ok = true }, nil)
  t.eq(c:delete { kind = "ConfigMap", name = "cfg-1", missing_ok = true }, nil)
  t.raises(function() c:delete { kind = "ConfigMap", name = "cfg-1" } end, "not_found", 'configmaps "cfg%-1" not found')
  t.raises(function() c:delete { kind = "ConfigMap", name = "x", propagation = "Later" } end, "invalid_argument", "propagation")
end)

t.case("Status errors: AlreadyExists is a conflict, Invalid carries the field causes", function()
  reset()
  local c = client()
  c:create(cm("dup"))
  t.raises(function() c:create(cm("dup")) end, "conflict", 'configmaps "dup" already exists %(AlreadyExists%)')
  local ok, err = pcall(c.create, c, cm("Bad"))
  t.ok(not ok)
  t.eq(err.code, "invalid_argument")
  t.eq(err.details.causes[1].field, "metadata.name")
  t.eq(err.details.status, 422)
  t.match(err.details.request_ids["audit-id"], "^audit%-")
end)

t.case("server-side apply: apply-patch+yaml, fieldManager=hoist, force only when asked", function()
  reset()
  local c = client()
  local applied = c:apply(cm("app", { metadata = { name = "app", labels = { tier = "web" } } }))
  t.eq(applied.metadata.labels.tier, "web")
  local r = last_request()
  t.eq(r.method, "PATCH")
  t.eq(r.path, "/api/v1/namespaces/team/configmaps/app")
  t.eq(r.content_type, "application/apply-patch+yaml")
  t.eq(r.query.fieldManager, "hoist")
  t.eq(r.query.force, nil)
  -- another manager owns a field: a conflict, unless forced
  c:apply(cm("owned", { metadata = { name = "owned", annotations = { owner = "other" } } }))
  t.raises(function() c:apply(cm("owned")) end, "conflict", "conflict with \"other\"")
  c:apply(cm("owned"), { force = true })
  t.eq(last_request().query.force, "true")
end)

t.cases("patch types and their media types", {
  { type = nil, media = "application/merge-patch+json", patch = { data = { k = "merged" } } },
  { type = "strategic", media = "application/strategic-merge-patch+json", patch = { data = { k = "merged" } } },
  { type = "json", media = "application/json-patch+json", patch = '[{"op":"replace","path":"/data/k","value":"merged"}]' },
}, function(row)
  reset()
  local c = client()
  c:create(cm("p"))
  local out = c:patch { kind = "ConfigMap", name = "p", patch = row.patch, type = row.type }
  t.eq(out.data.k, "merged")
  t.eq(last_request().content_type, row.media)
end)

t.case("dry runs: hoist's plans and sends nothing; the server's validates and stores nothing", function()
  reset()
  local c = client()
  local before = #requests()
  local planned = c:apply(cm("plan-only"), { dry_run = true })
  t.eq(planned.planned, true)
  t.eq(planned.method, "PATCH")
  t.eq(planned.action, "k8s.apply")
  t.eq(planned.object.metadata.name, "plan-only")
  for i = before + 1, #requests() do t.eq(requests()[i].method, "GET") end  -- discovery only
  local validated = c:create(cm("server-only"), { server_dry_run = true })
  t.eq(validated.metadata.name, "server-only")
  t.eq(last_request().query.dryRun, "All")
  t.eq(c:get { kind = "ConfigMap", name = "server-only", missing_ok = true }, nil)
  t.eq(c:delete { kind = "ConfigMap", name = "nothing", dry_run = true }.planned, true)
end)

t.case("a Secret's values are secrets of the run, and masked in a dry run's plan", function()
  reset()
  local c = client()
  local secret = { apiVersion = "v1", kind = "Secret", metadata = { name = "db" },
                   data = { password = "czNjcjN0LXBhc3N3b3Jk" }, stringData = { token = "plain-token-4242" } }
  local planned = c:apply(secret, { dry_run = true })
  t.eq(planned.object.data.password, "***")
  t.eq(planned.object.stringData.token, "***")
  t.eq(hoist.scrub("s3cr3t-password and plain-token-4242"), "*** and ***")  -- base64 decoded, and as written
  c:apply(secret)
  t.eq(hoist.json.decode(last_request().body).stringData.token, "plain-token-4242")  -- the real call sends them
end)

t.case("429 is retried after Retry-After; with no tries left it is throttled", function()
  reset()
  local c = client()
  c:resource { kind = "ConfigMap" }  -- discovery cached: the throttled call is the list
  control("throttle?n=1")
  t.eq(#c:list { kind = "ConfigMap" }.items, 0)
  control("throttle?n=1")
  local ok, err = pcall(c.list, c, { kind = "ConfigMap", attempts = 1 })
  t.ok(not ok)
  t.eq(err.code, "throttled")
  t.eq(err.details.retry_after, 1)
end)

t.case("a 500 whose Status says the field is not in the schema is invalid_argument, sent once", function()
  reset()
  local c = client()
  c:resource { kind = "ConfigMap" }  -- discovery cached: the requests counted are the apply's
  local before = #requests()
  local ok, err = pcall(c.apply, c, cm("bad", { data = { k = "v" }, notInSchema = true }), { backoff = 0.01 })
  t.ok(not ok)
  t.eq(err.code, "invalid_argument", tostring(err))
  t.eq(err.retryable, false)
  t.match(err.message, "%.notInSchema: field not declared in schema")
  t.eq(#requests() - before, 1, "not retried: the same body comes back each time")
end)

---------------------------------------------------------------- watch

-- The next event that is not a bookmark (within 10 s).
local function next_change(w)
  for _ = 1, 100 do
    local ev = w:next(10)
    if ev == nil then error("no event within 10 s") end
    if ev.type ~= "BOOKMARK" then return ev end
  end
  error("only bookmarks")
end

t.case("watch: a LIST, then changes; a dropped stream reconnects without losing one", function()
  reset()
  local c = client()
  c:create(cm("w-1"))
  local w = c:watch { kind = "ConfigMap" }
  local first = next_change(w)
  t.eq(first.type, "LIST")
  t.eq(#first.object.items, 1)
  c:create(cm("w-2"))
  local added = next_change(w)
  t.eq(added.type, "ADDED")
  t.eq(added.object.metadata.name, "w-2")
  control("drop")
  c:patch { kind = "ConfigMap", name = "w-2", patch = { data = { k = "after-drop" } } }
  local modified = next_change(w)
  t.eq(modified.type, "MODIFIED")
  t.eq(modified.object.data.k, "after-drop")
  t.ok(w:info().reconnects >= 1)
  t.eq(w:info().relists, 0)
  c:delete { kind = "ConfigMap", name = "w-1" }
  t.eq(next_change(w).type, "DELETED")
  w:close()
  t.raises(function() w:next(1) end, "invalid_argument", "the watch is closed")
end)

t.case("watch: 410 Gone relists, and the new list carries what happened meanwhile", function()
  reset()
  local c = client()
  local w = c:watch { kind = "ConfigMap" }
  t.eq(next_change(w).type, "LIST")
  control("compact")  -- the watch's version is now too old to resume from
  control("drop")
  local ev = next_change(w)
  t.eq(ev.type, "LIST")
  t.eq(w:info().relists, 1)
  c:create(cm("after-relist"))
  local added = next_change(w)
  t.eq(added.type, "ADDED")
  t.eq(added.object.metadata.name, "after-relist")
  w:close()
end)

t.case("watch: a version older than the server's history relists at once", function()
  reset()
  local c = client()
  c:create(cm("old"))
  control("compact")
  local w = c:watch { kind = "ConfigMap", resource_version = "1" }
  local ev = next_change(w)
  t.eq(ev.type, "LIST")
  t.eq(ev.object.items[1].metadata.name, "old")
  t.eq(w:info().relists, 1)
  w:close()
end)

---------------------------------------------------------------- manifests, apply, classify

t.case("hoist.k8s.apply: YAML documents, Namespaces first, each applied server-side", function()
  reset()
  local c = client()
  local out = k8s.apply([[
apiVersion: v1
kind: ConfigMap
metadata: {name: m1}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
]], { client = c })
  t.eq(#out, 2)
  t.eq(out[1].kind, "Namespace")
  t.eq(out[2].metadata.name, "m1")
  t.raises(function() k8s.apply("kind: ConfigMap\n", { client = c }) end, "invalid_argument", "manifest document 1 has no apiVersion")
  t.raises(function() k8s.apply({}, { client = c, bogus = 1 }) end, "invalid_argument", "unknown option 'bogus'")
end)

t.case("hoist.k8s.classify from Lua", function()
  local c = k8s.classify {
    kind = "Pod", metadata = { name = "p" }, spec = { restartPolicy = "Always" },
    status = { phase = "Pending", containerStatuses = { { name = "app", image = "x", restartCount = 0,
      state = { waiting = { reason = "ImagePullBackOff", message = "Back-off pulling image \"x\"" } } } } },
  }
  t.eq(c.verdict, "failed")
  t.eq(c.reason, "ImagePullBackOff")
  t.eq(c.details.container, "app")
  t.raises(function() k8s.classify("x") end, "invalid_argument", "expected an object table")
  t.raises(function() k8s.classify({}, { crashloop = 1 }) end, "invalid_argument", "unknown option 'crashloop'")
end)
