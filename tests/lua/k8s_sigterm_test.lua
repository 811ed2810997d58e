-- SIGTERM at each phase of a Kubernetes rollout (container@1 target=kubernetes against the
-- Kubernetes emulator of tests/env): before the apply, while the rollout is awaited, after the
-- switch. Each time the run ends with exit 130 after its rollback, the previous version
-- serves, and the process ends within a bounded wait (a pcall that swallowed the cancellation
-- once made the rollout wait spin at 100 % CPU, its memory growing, until its timeout).
-- Needs tests/env (Docker, registry, emulator with its kubelet); run it under
-- flock /tmp/hoist-docker.lock. Skipped without them; failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local cluster = dofile(here .. "/k8s_cluster.lua")
local root, read = support.root, support.read
local E = os.getenv
local BASE = E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
local SLOW = { timeout = 900 }
-- how long a cancelled run may take to roll back and end; the spin ran until the rollout's
-- timeout (rollout_timeout, 600 s by default), so this bound tells the two apart
local BOUND = 180

local ns = cluster.namespace("hoist-k8sfix-sig")
local S = { ns = ns, service = "sig-" .. ns:match("(%x+)$"), repo = REGISTRY .. "/" .. ns .. "/app" }

local function need_env()
  support.need_docker("k8s SIGTERM test")
  cluster.need()
  if S.kube then return S.kube end
  S.state = support.tmpdir("hoist-k8sfix-sig")
  local base = hoist.k8s.client {}
  local kc = hoist.yaml.decode(read(E("KUBECONFIG"):match("[^:]+")))
  local ctx
  for _, c in ipairs(kc.contexts) do if c.name == base.context then ctx = c.context end end
  local file = S.state .. "/kubeconfig"
  support.write(file, hoist.json.encode { apiVersion = "v1", kind = "Config", ["current-context"] = "sig",
    contexts = { { name = "sig", context = { cluster = ctx.cluster, user = ctx.user, namespace = S.ns } } } })
  S.kubeconfig = file .. ":" .. E("KUBECONFIG")
  S.kube = hoist.k8s.client { kubeconfig = S.kubeconfig }
  S.kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = S.ns } }
  cluster.need_controllers(S.kube)
  cluster.need_kubelet(S.kube, REGISTRY .. "/hoist-test/busybox:latest")
  return S.kube
end

local function esc(s) return (s:gsub("%p", "%%%0")) end
local function quote(a) return "'" .. a:gsub("'", "'\\''") .. "'" end

local function argv_of(version, healthy, extra)
  local p = { image = S.repo, context = root .. "/examples/app", name = S.service, target = "kubernetes", tag = version,
              build_args = ("BASE_IMAGE=%s,VERSION=%s,HEALTHY=%s"):format(BASE, version, healthy and "true" or "false"),
              verify_timeout = 300, scan = "off", lock_timeout = 120, replicas = 2 }
  for k, v in pairs(extra or {}) do p[k] = v end
  return support.run_argv("container@1", S.state, p)
end

local function deployment() return S.kube:get { kind = "Deployment", name = S.service, missing_ok = true } end
local function image_now() local d = deployment(); return d and d.spec.template.spec.containers[1].image end
local function version_now()
  local svc = S.kube:get { kind = "Service", name = S.service }
  local ok, r = pcall(hoist.http.request, { url = "http://" .. svc.metadata.annotations["hoist.dev/emulator-address"] .. "/version",
                                            timeout = 5 })
  return ok and r.status == 200 and r.body or nil
end

local function wait_for(what, fn, seconds)
  local deadline = hoist.now() + seconds
  while hoist.now() < deadline do
    local v = fn()
    if v then return v end
    hoist.sleep(0.2)
  end
  error("timed out waiting for " .. what)
end

-- Starts the run in its own process (output to a file), waits until `ready(output)`, sends
-- SIGTERM, and returns the process result and its output. The process is killed if it has
-- not ended BOUND seconds after the signal (then r.signal is 9 and the test fails).
local function sigterm_when(argv, env, ready)
  local log, pidfile = S.state .. "/run.log", S.state .. "/run.pid"
  os.remove(log)
  os.remove(pidfile)
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = quote(a) end
  local e = { KUBECONFIG = S.kubeconfig }
  for k, v in pairs(env or {}) do e[k] = v end
  local signalled
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s > %s 2>&1"):format(pidfile, table.concat(quoted, " "), log),
                        env = e, timeout = 900 }
  end)
  wait_for("the phase to signal at", function() return ready(read(log) or "") end, 600)
  local pid = read(pidfile):match("%d+")
  hoist.exec { "kill", "-TERM", pid, check = true }
  signalled = hoist.now()
  local killer = hoist.spawn(function()
    hoist.sleep(BOUND)
    hoist.exec { "kill", "-KILL", pid }
  end)
  local r = task:wait()
  killer:cancel()
  r.after_signal = hoist.now() - signalled
  r.output = read(log) or ""
  print(("SIGTERM -> exit %s in %.1fs"):format(tostring(r.code), r.after_signal))
  return r
end

local function show(r) return ("exit %s signal %s\n%s"):format(tostring(r.code), tostring(r.signal), r.output) end

t.case("setup: v1 serves", function()
  need_env()
  local argv = argv_of("v1", true)
  argv.env, argv.timeout = { KUBECONFIG = S.kubeconfig }, 600
  local r = hoist.exec(argv)
  t.eq(r.code, 0, r.stdout .. r.stderr)
  t.eq(version_now(), "v1")
  S.v1_image = image_now()
end, SLOW)

t.case("SIGTERM before the apply: exit 130, nothing changed, v1 serves", function()
  need_env()
  local r = sigterm_when(argv_of("v2", true), { HOIST_TEST_PAUSE_IN_DEPLOY = "300" },
    function(out) return out:find("HOIST_TEST_PAUSE_IN_DEPLOY: pausing", 1, true) end)
  t.eq(r.code, 130, show(r))
  t.eq(image_now(), S.v1_image)
  t.eq(version_now(), "v1")
end, SLOW)

-- A SIGTERM'd run: exit 130, the undo ran, the template is v1's again and v1 serves.
local function rolled_back_to_v1(r)
  t.eq(r.code, 130, show(r))
  t.match(r.output, "kubernetes%.rollout_undo")
  t.eq(image_now(), S.v1_image, "back to v1's template")
  hoist.k8s.rollout { client = S.kube, name = S.service, timeout = 120 }
  t.eq(version_now(), "v1")
end

t.case("SIGTERM while the rollout is awaited: exit 130 in bounded time, rolled back, v1 serves", function()
  need_env()
  -- the new pods never become ready (HEALTHY=false) and the wait is long (verify_timeout 300):
  -- only the signal ends it
  local r = sigterm_when(argv_of("v3", false), nil, function(out)
    return out:find("updated, ", 1, true) and out:find(esc(S.service) .. ": [1-9]%d*/%d+ updated") end)
  rolled_back_to_v1(r)
end, SLOW)

t.case("SIGTERM after the switch: exit 130, rolled back, v1 serves", function()
  need_env()
  local r = sigterm_when(argv_of("v4", true), { HOIST_TEST_PAUSE_AFTER_SWITCH = "300" },
    function(out) return out:find("HOIST_TEST_PAUSE_AFTER_SWITCH: pausing", 1, true) end)
  rolled_back_to_v1(r)
end, SLOW)

t.case("cleanup", function()
  need_env()
  S.kube:delete { kind = "Namespace", name = S.ns, missing_ok = true }
  for _, v in ipairs { "v1", "v2", "v3", "v4" } do hoist.exec { "docker", "rmi", S.repo .. ":" .. v } end
end, SLOW)
