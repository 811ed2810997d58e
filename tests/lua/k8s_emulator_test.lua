-- hoist.k8s against the Kubernetes emulator of tests/env (KUBECONFIG and HOIST_TEST_KUBE_* from
-- /tmp/hoist-env/env.sh): client certificates over HTTPS with the test CA, CRUD in a namespace
-- of its own, server-side apply against kubectl's field manager, watch through the emulator's
-- dropped watches and compaction, and rollouts (success, ImagePullBackOff) when the emulator
-- runs its controllers and kubelet. Skipped without the emulator; failed instead when CI=true.
local t = require "hoist.test"
local k8s = hoist.k8s

local E = os.getenv
local SERVER, CONTROL = E("HOIST_TEST_KUBE_SERVER"), E("HOIST_TEST_KUBE_CONTROL")
local IMAGE = E("HOIST_TEST_KUBE_IMAGE") or ((E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/hoist-test/busybox:latest")
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-k8s-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))

local function need_emulator()
  if SERVER and E("KUBECONFIG") then return end
  local why = "the Kubernetes emulator is not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
  if E("CI") == "true" then error(why) end
  t.skip(why)
end

local kube
local function client()
  need_emulator()
  if not kube then
    kube = k8s.client { namespace = NS }
    kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  end
  return kube
end

local function control(what)
  local token = E("HOIST_TEST_KUBE_TOKEN")
  hoist.http.post(CONTROL .. "/" .. what, { body = "", headers = { Authorization = "Bearer " .. token } })
end

local function next_change(w)
  for _ = 1, 200 do
    local ev = w:next(15)
    if ev == nil then error("no event within 15 s") end
    if ev.type ~= "BOOKMARK" then return ev end
  end
  error("only bookmarks")
end

t.case("emulator: CRUD over HTTPS with the kubeconfig's client certificate", function()
  local c = client()
  t.match(c.server, "^https://127%.0%.0%.1:")
  c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "crud" }, data = { a = "1" } }
  t.raises(function() c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "crud" } } end, "conflict", "already exists")
  t.eq(c:get { kind = "ConfigMap", name = "crud" }.data.a, "1")
  t.eq(c:patch { kind = "cm", name = "crud", patch = { data = { a = "2" } } }.data.a, "2")
  t.eq(c:patch { kind = "ConfigMap", name = "crud", type = "json", patch = '[{"op":"replace","path":"/data/a","value":"3"}]' }.data.a, "3")
  for i = 1, 5 do c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "page-" .. i } } end
  t.ok(#c:list { kind = "ConfigMap", page_size = 2 }.items >= 6)
  local ok, err = pcall(c.create, c, { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "Bad_Name" } })
  t.ok(not ok)
  t.eq(err.code, "invalid_argument")
  t.ok(err.details.causes and #err.details.causes >= 1)
  c:delete { kind = "ConfigMap", name = "crud", propagation = "Background" }
  t.eq(c:get { kind = "ConfigMap", name = "crud", missing_ok = true }, nil)
end)

t.case("emulator: a field the kind lacks fails create, patch and apply naming it (not dropped)", function()
  local c = client()
  local typo = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "typo" }, dta = { a = "1" } }
  t.raises(function() c:create(typo) end, "invalid_argument", 'unknown field "dta"')
  t.raises(function() c:apply(typo) end, "invalid_argument", "%.dta: field not declared in schema")
  c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "typo" }, data = { a = "1" } }
  t.raises(function() c:patch { kind = "ConfigMap", name = "typo", patch = { dta = { a = "2" } } } end,
    "invalid_argument", 'unknown field "dta"')
  t.eq(c:get { kind = "ConfigMap", name = "typo" }.data.a, "1")
  c:delete { kind = "ConfigMap", name = "typo" }
end)

t.case("emulator: server-side apply conflicts with kubectl's field manager unless forced", function()
  local c = client()
  local cm = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "ssa" }, data = { owner = "hoist" } }
  c:apply(cm)
  local other = os.tmpname()
  local f = assert(io.open(other, "w"))
  f:write(('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa","namespace":"%s"},"data":{"owner":"kubectl"}}'):format(NS))
  f:close()
  hoist.exec { "kubectl", "apply", "--server-side", "--force-conflicts", "--field-manager=other", "-f", other, check = true }
  os.remove(other)
  t.raises(function() c:apply(cm) end, "conflict", "conflict")
  t.eq(c:apply(cm, { force = true }).data.owner, "hoist")
  local dry = c:apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "ssa-dry" } }, { server_dry_run = true })
  t.eq(dry.metadata.name, "ssa-dry")
  t.eq(c:get { kind = "ConfigMap", name = "ssa-dry", missing_ok = true }, nil)
end)

t.case("emulator: a watch survives dropped streams and compaction without losing a change", function()
  local c = client()
  local w = c:watch { kind = "ConfigMap", label_selector = "watch=yes" }
  t.eq(next_change(w).type, "LIST")
  c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "w1", labels = { watch = "yes" } } }
  t.eq(next_change(w).object.metadata.name, "w1")
  control("drop-watches")
  c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "w2", labels = { watch = "yes" } } }
  local ev = next_change(w)
  t.eq(ev.type, "ADDED")
  t.eq(ev.object.metadata.name, "w2")
  control("compact")
  control("drop-watches")
  c:create { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "w3", labels = { watch = "yes" } } }
  local seen = false
  for _ = 1, 5 do
    ev = next_change(w)
    if ev.type == "ADDED" and ev.object.metadata.name == "w3" then seen = true break end
    if ev.type == "LIST" then
      for _, item in ipairs(ev.object.items) do if item.metadata.name == "w3" then seen = true end end
      if seen then break end
    end
  end
  t.ok(seen, "w3 arrived, as an event or in a relist")
  t.ok(w:info().reconnects + w:info().relists >= 2)
  w:close()
end)

-- A Deployment of `image` serving on 8080 (the emulator's kubelet runs it on Docker).
local function deployment(name, image)
  return { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name },
           spec = { replicas = 2, progressDeadlineSeconds = 120, selector = { matchLabels = { app = name } },
                    template = { metadata = { labels = { app = name } }, spec = { terminationGracePeriodSeconds = 1,
                      containers = { { name = "app", image = image, ports = { { containerPort = 8080 } },
                        command = { "sh", "-c", "mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www" },
                        readinessProbe = { httpGet = { path = "/", port = 8080 }, periodSeconds = 1 } } } } } } }
end

-- The emulator of main may run without controllers: a Deployment's status then never moves.
local function need_controllers(c)
  c:apply(deployment("probe-controllers", IMAGE))
  local w = c:watch { kind = "Deployment", field_selector = "metadata.name=probe-controllers" }
  local deadline = hoist.now() + 30
  while hoist.now() < deadline do
    local ev = w:next(1)
    if ev and ev.object and ((ev.object.status or {}).observedGeneration or (ev.type == "LIST" and ev.object.items[1]
        and (ev.object.items[1].status or {}).observedGeneration)) then
      w:close()
      return
    end
  end
  w:close()
  t.skip("the emulator runs without its deployment controller (no status.observedGeneration within 30 s)")
end

-- The workload image in the registry the kubelet pulls from (a fresh machine has only the
-- base image in the local engine): pushed once, unless HOIST_TEST_KUBE_IMAGE names another.
local pushed = false
local function push_image()
  if pushed or E("HOIST_TEST_KUBE_IMAGE") then return end
  local r = hoist.exec { "skopeo", "copy", "--dest-tls-verify=false",
    "docker-daemon:" .. (E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"), "docker://" .. IMAGE }
  if r.code ~= 0 then error("cannot push the test image " .. IMAGE .. ": " .. r.stderr) end
  pushed = true
end

t.case("emulator: a rollout succeeds by kubectl's rule; a missing image fails it in seconds", function()
  local c = client()
  push_image()
  need_controllers(c)
  c:apply(deployment("good", IMAGE))
  local r = k8s.rollout { name = "good", client = c, timeout = 180 }
  t.eq(r.verdict, "done")
  t.eq(r.message, 'deployment "good" successfully rolled out')
  c:apply(deployment("bad", (E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000") .. "/hoist-test/missing:never"))
  local ok, err = pcall(k8s.rollout, { name = "bad", client = c, timeout = 180 })
  t.eq(ok, false)
  t.eq(err.code, "rollout_failed")
  t.ok(err.details.reason == "ErrImagePull" or err.details.reason == "ImagePullBackOff", err.details.reason)
  t.match(err.message, "missing:never")
end, { timeout = 400 })

t.case("emulator: clean up the namespace", function()
  local c = client()
  c:delete { kind = "Namespace", name = NS, missing_ok = true }
end)
