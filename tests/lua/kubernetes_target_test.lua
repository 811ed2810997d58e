-- hoist.test slow
-- The kubernetes target against the Kubernetes emulator of tests/env (its controllers run the
-- pods as real containers on the local Docker engine, from the local registry): container@1
-- with target=kubernetes as a user runs it (a good rollout, a failing readiness and a crash
-- loop each rolled back, SIGKILL mid-rollout then `hoist rollback`, two runs on one
-- Deployment and its Lease), and the target called directly (an image that cannot be pulled;
-- a dropped watch and a 410 mid-rollout). A prober requests the Service throughout and counts
-- failed requests. Needs tests/env (Docker, registry, emulator with its kubelet); run it under
-- flock /tmp/hoist-docker.lock. Skipped without them; failed instead when CI=true.
local t = require "hoist.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local root, read, hoist_bin = support.root, support.read, support.hoist_bin
local E = os.getenv
local BASE = E("HOIST_TEST_BASE_IMAGE") or "hoist-test/busybox:latest"
local REGISTRY = E("HOIST_TEST_REGISTRY") or "127.0.0.1:5000"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local ID = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local SLOW = { timeout = 900 }

local S = {
  ns = "hoist-kt-" .. ID, service = "web-" .. ID, repo = REGISTRY .. "/hoist-kt-" .. ID .. "/app",
  failed = {}, times = {},
}

local cluster = dofile(here .. "/k8s_cluster.lua")

local function need_env()
  support.need_docker("kubernetes target test")
  cluster.need()
  if S.ready then return S.kube end
  if S.kube then -- an earlier probe skipped: skip again (the probes remember)
    cluster.need_controllers(S.kube)
    cluster.need_kubelet(S.kube, REGISTRY .. "/hoist-test/busybox:latest")
  end
  -- a kubeconfig whose current context is the emulator's with this test's namespace, in
  -- front of the environment's (kubectl's merge: the first file's current-context wins)
  S.state = support.tmpdir("hoist-kt")
  S.kubeconfig_file = S.state .. "/kubeconfig"
  local base = hoist.k8s.client {}
  local kc = hoist.yaml.decode(read(E("KUBECONFIG"):match("[^:]+")))
  local ctx
  for _, c in ipairs(kc.contexts) do if c.name == base.context then ctx = c.context end end
  support.write(S.kubeconfig_file, hoist.json.encode { apiVersion = "v1", kind = "Config", ["current-context"] = "kt",
    contexts = { { name = "kt", context = { cluster = ctx.cluster, user = ctx.user, namespace = S.ns } } } })
  S.kubeconfig = S.kubeconfig_file .. ":" .. E("KUBECONFIG")
  S.kube = hoist.k8s.client { kubeconfig = S.kubeconfig }
  t.eq(S.kube.namespace, S.ns)
  S.kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = S.ns } }
  cluster.need_controllers(S.kube)
  cluster.need_kubelet(S.kube, REGISTRY .. "/hoist-test/busybox:latest")
  S.ready = true
  return S.kube
end

local function esc(s) return (s:gsub("%p", "%%%0")) end
local function show(r) return ("exit %s\n--- stdout\n%s\n--- stderr\n%s"):format(tostring(r.code), r.stdout, r.stderr) end

-- container@1 with target=kubernetes, in its own process.
local function container_argv(version, extra)
  local p = { image = S.repo, context = root .. "/examples/app", name = S.service, target = "kubernetes", tag = version,
              build_args = ("BASE_IMAGE=%s,VERSION=%s,HEALTHY=true"):format(BASE, version), verify_timeout = 15, scan = "off",
              lock_timeout = 120 }
  for k, v in pairs(extra or {}) do p[k] = v end
  return support.run_argv("container@1", S.state, p)
end

local function run_container(version, extra, env)
  local argv = container_argv(version, extra)
  argv.env, argv.timeout = { KUBECONFIG = S.kubeconfig }, 600
  for k, v in pairs(env or {}) do argv.env[k] = v end
  local started = hoist.now()
  local r = hoist.exec(argv)
  r.seconds = hoist.now() - started
  return r
end

local function deployment() return S.kube:get { kind = "Deployment", name = S.service, missing_ok = true } end
local function image_now() local d = deployment(); return d and d.spec.template.spec.containers[1].image end
local function service_address()
  local svc = S.kube:get { kind = "Service", name = S.service }
  return svc.metadata.annotations["hoist.dev/emulator-address"]
end
local function version_now()
  local ok, r = pcall(hoist.http.request, { url = "http://" .. service_address() .. "/version", timeout = 5 })
  return ok and r.status == 200 and r.body or nil
end

-- Requests the Service until stopped; counts the requests that did not answer 200.
local function start_prober()
  local url = "http://" .. service_address() .. "/version"
  local p = { total = 0, failed = 0, errors = {}, seen = {}, stop = false }
  p.task = hoist.spawn(function()
    while not p.stop do
      local ok, r = pcall(hoist.http.request, { url = url, timeout = 5 })
      p.total = p.total + 1
      if ok and r.status == 200 then
        p.seen[r.body] = (p.seen[r.body] or 0) + 1
      else
        p.failed = p.failed + 1
        if #p.errors < 5 then p.errors[#p.errors + 1] = ok and ("status " .. r.status) or tostring(r) end
      end
      hoist.sleep(0.02)
    end
  end)
  function p:finish(label)
    self.stop = true
    self.task:wait()
    local seen = {}
    for body, n in pairs(self.seen) do seen[#seen + 1] = ("%s x%d"):format(body, n) end
    table.sort(seen)
    print(("prober during %s: %d requests, %d failed (%s)%s"):format(label, self.total, self.failed, table.concat(seen, ", "),
      #self.errors > 0 and ("; first errors: " .. table.concat(self.errors, " | ")) or ""))
    S.failed[label] = self.failed
    return self
  end
  return p
end

local function control(what)
  hoist.http.post(E("HOIST_TEST_KUBE_CONTROL") .. "/" .. what,
    { body = "", headers = { Authorization = "Bearer " .. E("HOIST_TEST_KUBE_TOKEN") } })
end

local function wait_for(what, fn, seconds)
  local deadline = hoist.now() + (seconds or 60)
  while hoist.now() < deadline do
    local v = fn()
    if v then return v end
    hoist.sleep(0.1)
  end
  error("timed out waiting for " .. what)
end

---------------------------------------------------------------- container@1

t.case("container@1 target=kubernetes: a first deploy applies, rolls out, verifies through the Service", function()
  need_env()
  local r = run_container("v1")
  S.times.v1 = r.seconds
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v1")
  t.match(image_now(), "^" .. esc(S.repo) .. "@sha256:")
  local d = deployment()
  t.eq(d.spec.replicas, 3)
  t.match(d.metadata.annotations["hoist.dev/run"], "%S")
  t.match(r.stdout .. r.stderr, esc(S.service) .. " serves http://127%.0%.0%.1:%d+")
  local lease = S.kube:get { kind = "Lease", name = "hoist-lock-deployment-" .. S.service, missing_ok = true }
  t.eq(lease, nil, "the Lease is deleted at the end of the run (not left with a dead pid)")
end, SLOW)

t.case("v2: a good rollout without a failed request", function()
  need_env()
  local prober = start_prober()
  local r = run_container("v2")
  hoist.sleep(0.5)
  prober:finish("the good rollout v1 -> v2")
  S.times.v2 = r.seconds
  t.eq(r.code, 0, show(r))
  t.eq(version_now(), "v2")
  S.v2_image = image_now()
  t.ok((prober.seen.v2 or 0) > 0, "the prober saw v2")
  t.eq(prober.failed, 0, "failed requests during the good rollout")
end, SLOW)

t.case("v3 with a failing readiness probe: rolled back with the reason, v2 answers throughout", function()
  need_env()
  local prober = start_prober()
  local r = run_container("v3", { build_args = ("BASE_IMAGE=%s,VERSION=v3,HEALTHY=false"):format(BASE) })
  prober:finish("the failing readiness v2 -> v3")
  print(("readiness failure verdict and rollback: %.1fs (ready_timeout 15s from verify_timeout)"):format(r.seconds))
  t.eq(r.code, 1, show(r))
  local out = r.stdout .. r.stderr
  t.match(out, "ReadinessTimeout")
  t.match(out, "not ready after 15s")
  t.match(out, "rolled back to revision 2")
  t.match(out, "pod " .. esc(S.service) .. "%-%w+%-%w+ %(new%): Running")
  t.eq(image_now(), S.v2_image)
  t.eq(prober.seen.v3, nil, "v3 never served")
  t.eq(prober.failed, 0, "failed requests during the failed rollout")
end, SLOW)

t.case("a crash loop: rolled back with the reason, the exit code and the container's last lines", function()
  need_env()
  local ctx = support.tmpdir("hoist-kt-crash")
  support.write(ctx .. "/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
    .. 'CMD ["sh", "-c", "echo starting the crashing app; echo boom: no config >&2; exit 3"]\n')
  local prober = start_prober()
  local r = run_container("crash", { context = ctx, build_args = "BASE_IMAGE=" .. BASE })
  prober:finish("the crash loop v2 -> crash")
  print(("crash loop verdict and rollback: %.1fs"):format(r.seconds))
  t.eq(r.code, 1, show(r))
  local out = r.stdout .. r.stderr
  t.match(out, "CrashLoopBackOff")
  t.match(out, "boom: no config")
  t.match(out, "rolled back to revision")
  t.eq(image_now(), S.v2_image)
  t.eq(prober.failed, 0, "failed requests during the crash loop")
end, SLOW)

t.case("SIGKILL of hoist mid-rollout, then hoist rollback <id>: the previous revision serves again", function()
  need_env()
  local before = deployment().metadata.annotations["hoist.dev/run"]
  local pidfile = S.state .. "/killed.pid"
  local quoted = {}
  for i, a in ipairs(container_argv("v4")) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local prober = start_prober()
  local task = hoist.spawn(function()
    return hoist.exec { "sh", "-c", ("echo $$ > %s; exec %s"):format(pidfile, table.concat(quoted, " ")),
                        env = { KUBECONFIG = S.kubeconfig }, timeout = 600 }
  end)
  -- the moment: the Deployment names the new run and its new ReplicaSet exists
  local run_id = wait_for("the v4 rollout to start", function()
    local d = deployment()
    local run = d.metadata.annotations["hoist.dev/run"]
    if run ~= before and (d.status or {}).updatedReplicas ~= nil and d.status.observedGeneration == d.metadata.generation then
      return run
    end
  end, 300)
  hoist.exec { "kill", "-KILL", read(pidfile):match("%d+"), check = true }
  t.eq(task:wait().signal, 9, "the run was killed")
  t.ok(image_now() ~= S.v2_image, "the killed run had applied v4")
  local rb = hoist.exec { hoist_bin(), "rollback", run_id, "--state-dir", S.state, "--no-color",
                          env = { KUBECONFIG = E("KUBECONFIG") }, timeout = 300 }
  t.eq(rb.code, 0, show(rb))
  t.match(rb.stdout .. rb.stderr, "kubernetes.rollout_undo")
  t.eq(image_now(), S.v2_image, "back to v2's template")
  hoist.k8s.rollout { client = S.kube, name = S.service, timeout = 120 }
  hoist.sleep(0.5)
  prober:finish("SIGKILL mid-rollout v2 -> v4, then hoist rollback")
  t.eq(version_now(), "v2")
  t.eq(prober.failed, 0, "failed requests around the kill and the rollback")
  -- again: nothing to do
  local again = hoist.exec { hoist_bin(), "rollback", run_id, "--state-dir", S.state, "--no-color", "--force", timeout = 300,
                             env = { KUBECONFIG = E("KUBECONFIG") } }
  t.ok(again.code == 0, show(again))
end, SLOW)

t.case("two runs on one Deployment: the second waits on the Lease naming the first", function()
  need_env()
  -- the first run holds the Lease 30 s before it applies, so the second (building its image
  -- meanwhile) reaches the Lease while the first holds it however slow the machine is
  local a = hoist.spawn(function() return run_container("v5", nil, { HOIST_TEST_PAUSE_IN_DEPLOY = "30" }) end)
  local holder = wait_for("the first run to hold the Lease", function()
    local l = S.kube:get { kind = "Lease", name = "hoist-lock-deployment-" .. S.service, missing_ok = true }
    local id = l and l.spec.holderIdentity or ""
    return id ~= "" and id:match("^[^:]+") or nil
  end, 300)
  local b = run_container("v6")
  local ra = a:wait()
  t.eq(ra.code, 0, show(ra))
  t.eq(b.code, 0, show(b))
  t.match(b.stdout .. b.stderr, "waiting for run " .. esc(holder) .. " %(host")
  t.eq(version_now(), "v6")
end, SLOW)

---------------------------------------------------------------- the target called directly

local target = require "hoist.targets.kubernetes"

local function deploy(extra)
  local o = { service = S.service, kubeconfig = S.kubeconfig, container_port = 8080, health_path = "/health",
              verify = { retries = 30, interval = 0.5 }, run = "kt-direct-" .. ID }
  for k, v in pairs(extra) do o[k] = v end
  return target.deploy(o)
end

t.case("an image that cannot be pulled: ErrImagePull within seconds, rolled back, v6 answers throughout", function()
  need_env()
  local v6 = image_now()
  local prober = start_prober()
  local started = hoist.now()
  local ok, err = pcall(deploy, { image = S.repo .. ":missing" })
  local took = hoist.now() - started
  prober:finish("an image pull failure v6 -> missing")
  print(("image pull failure verdict and rollback: %.2fs"):format(took))
  t.ok(not ok, "the deploy fails")
  t.eq(err.code, "rollout_failed")
  t.ok(err.message:find("ErrImagePull", 1, true) or err.message:find("ImagePullBackOff", 1, true), err.message)
  t.match(err.message, ":missing")
  t.match(err.message, "rolled back to revision")
  t.ok(#err.details.pods > 0 and #err.details.events > 0, "the evidence: pods and events")
  t.eq(err.details.rolled_back.image, v6)
  t.eq(image_now(), v6)
  t.eq(prober.failed, 0, "failed requests during the image pull failure")
end, SLOW)

t.case("a dropped watch and a 410 mid-rollout do not lose the verdict", function()
  need_env()
  local v6 = image_now()
  local done
  local task = hoist.spawn(function()
    done = deploy { image = v6, app = { annotations = { ["hoist.test/round"] = "watch-" .. ID } } }
  end)
  wait_for("the rollout to start", function()
    local d = deployment()
    return d.metadata.generation == (d.status or {}).observedGeneration and (d.status or {}).updatedReplicas
      and d.status.updatedReplicas < 3 or nil
  end, 120)
  control("drop-watches")
  hoist.sleep(0.3)
  control("compact")
  task:wait()
  t.ok(done, "the deploy returned")
  t.eq(done.url, "http://" .. service_address())
  t.eq(version_now(), "v6")
  t.eq(deployment().status.updatedReplicas, 3)
end, SLOW)

-- Issue 15 §5: the fourth workflow runs kubectl set image and kubectl set env together: env
-- with set_image goes in the same patch, one rollout.
t.case("set_image changes only the image (and env, as kubectl set env) in one rollout; the rest of the Deployment stays", function()
  need_env()
  local prober = start_prober()
  local before = deployment()
  local r = deploy { image = S.v2_image, set_image = true, env = { HOIST_SET_ENV = "set-" .. ID } }
  prober:finish("set_image v6 -> v2")
  t.eq(r.previous ~= nil, true)
  t.eq(version_now(), "v2")
  local d = deployment()
  t.eq(d.metadata.generation, before.metadata.generation + 1, "one change of the Deployment: one rollout")
  local env = {}
  for _, e in ipairs(d.spec.template.spec.containers[1].env or {}) do env[e.name] = e.value end
  t.eq(env.HOIST_SET_ENV, "set-" .. ID, "the env entry is set")
  for _, e in ipairs(before.spec.template.spec.containers[1].env or {}) do
    if e.name ~= "HOIST_SET_ENV" then t.eq(env[e.name], e.value, "the other env entries stay: " .. e.name) end
  end
  t.eq(d.spec.replicas, 3)
  t.ok(d.spec.template.spec.containers[1].readinessProbe, "the probes stay")
  t.eq(d.spec.template.metadata.annotations["hoist.test/round"], "watch-" .. ID, "the template's annotations stay")
  t.eq(prober.failed, 0, "failed requests during set_image")
end, SLOW)

t.case("a first deploy that fails deletes what it created, its Secret included; the secret never shows", function()
  need_env()
  local name = "first-" .. ID
  local secret = "first-secret-" .. ID
  local ok, err = pcall(deploy, { service = name, image = S.repo .. ":missing", secret_env = { API_KEY = secret } })
  t.ok(not ok, "the deploy fails")
  t.eq(err.code, "rollout_failed")
  t.match(err.message, "nothing served before: what this run created was deleted")
  t.eq(err.details.rolled_back.deleted >= 3, true, "Secret, Service, Deployment (and HPA, PDB)")
  t.no_match(hoist.json.encode(err), secret)
  for _, kind in ipairs { "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget" } do
    t.eq(S.kube:get { kind = kind, name = name, missing_ok = true }, nil, kind .. " deleted")
  end
  local left = S.kube:list { kind = "Secret", label_selector = "app.kubernetes.io/name=" .. name }.items
  t.eq(#left, 0, "the run's Secret deleted")
end, SLOW)

t.case("status and bad options", function()
  need_env()
  local st = target.status { service = S.service, kubeconfig = S.kubeconfig }
  t.eq(st.serving, true)
  t.eq(st.namespace, S.ns)
  t.match(st.url, "^http://127%.0%.0%.1:%d+$")
  t.raises(function() deploy { image = "x", service = "Not_A_Label" } end, "invalid_argument", "RFC 1123 label")
  t.raises(function() deploy { image = "x", rollout_timeout = -1 } end, "invalid_argument", "option 'rollout_timeout' must be >= 0%.001, got %-1")
  t.raises(function() deploy { image = "x", set_image = true, container = "nope" } end, "invalid_argument", 'has no container "nope"')
  t.raises(function() deploy { image = "x", set_image = true, secret_env = { K = "v" } } end, "invalid_argument",
    "set_image sets plain env only")
  t.raises(function() deploy { image = "x", manifests = { { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "c" } } } } end,
    "invalid_argument", "no Deployment to roll out")
end, SLOW)

t.case("remove deletes what the target made; the numbers", function()
  need_env()
  local r = target.remove { service = S.service, kubeconfig = S.kubeconfig }
  t.ok(#r.removed >= 2, "Deployment and Service at least")
  t.eq(deployment(), nil)
  local labels, counts = {}, {}
  for k, v in pairs(S.failed) do labels[#labels + 1] = k; counts[#counts + 1] = ("%s: %d"):format(k, v) end
  table.sort(counts)
  print("failed requests through the Service: " .. table.concat(counts, "; "))
  S.kube:delete { kind = "Namespace", name = S.ns, missing_ok = true }
end, SLOW)
