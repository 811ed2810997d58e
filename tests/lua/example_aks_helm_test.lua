-- examples/aks-helm end to end, run as `hoist run` in a child with GitHub OIDC variables from
-- the Azure emulator (federated client id, no client secret), the Trivy and helm stand-ins,
-- and the Kubernetes emulator: a good run lands the image in ACR (the token registry) and the
-- release rolls out with the production values; an image with CRITICAL findings is refused by
-- the gate (exit 4) before it reaches ACR or the cluster. Skips without tests/env (fails
-- when CI=true); run under flock /tmp/hoist-docker.lock.
local t = require "hoist.test"
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/support.lua")

local E = os.getenv
local EXAMPLE = support.root .. "/examples/aks-helm/pipeline.lua"
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local NS = ("hoist-aks-%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local ACR = E("HOIST_TEST_REGISTRY_TOKEN") or "127.0.0.1:5002"

local function need_env()
  local why
  if not (E("HOIST_TEST_KUBE_SERVER") and E("KUBECONFIG")) then why = "the Kubernetes emulator is not up"
  elseif not E("HOIST_TEST_AZURE_OIDC_URL") then why = "the Azure emulator is not up"
  elseif E("HOIST_TEST_DOCKER") ~= "1" then why = "tests/env is not up" end
  if not why then return end
  why = why .. ": run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
  if E("CI") == "true" then error(why) end
  t.skip(why)
end

local kube
local function setup()
  need_env()
  if kube then return kube end
  kube = hoist.k8s.client { namespace = NS }
  kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }
  -- what `az aks update --attach-acr` gives an AKS kubelet, as a pull secret for the emulator's
  local auth = hoist.exec { "base64", "-w0", check = true,
                            stdin = E("HOIST_TEST_REGISTRY_TOKEN_USER") .. ":" .. E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") }.stdout
  local config = hoist.exec { "base64", "-w0", check = true, stdin = hoist.json.encode { auths = { [ACR] = { auth = auth } } } }.stdout
  kube:apply { apiVersion = "v1", kind = "Secret", metadata = { name = "acr-pull" }, type = "kubernetes.io/dockerconfigjson",
               data = { [".dockerconfigjson"] = config } }
  return kube
end

local function run(tag, fixture, extra, extra_env)
  local argv = { "run", EXAMPLE, "--set", "acr=" .. ACR, "--set", "repository=" .. NS .. "/web", "--set", "tag=" .. tag,
                 "--set", "namespace=" .. NS, "--set", "workload_client_id=" .. E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"),
                 "--set", "image_pull_secret=acr-pull", "--set", "timeout=180", "--set", "build_args=VERSION=" .. tag }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local env = {
      ACTIONS_ID_TOKEN_REQUEST_URL = E("HOIST_TEST_AZURE_OIDC_URL"), ACTIONS_ID_TOKEN_REQUEST_TOKEN = E("HOIST_TEST_AZURE_OIDC_TOKEN"),
      AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
      AZURE_CLIENT_SECRET = "", AZURE_CREDENTIALS = "",
      HOIST_TRIVY = support.root .. "/tests/tools/trivy",
      HOIST_TRIVY_FIXTURE = support.root .. "/tests/fixtures/trivy/" .. fixture,
      HOIST_HELM = support.root .. "/tests/tools/helm",
  }
  for k, v in pairs(extra_env or {}) do env[k] = v end
  return support.run_hoist(argv, { timeout = 400, env = env })
end

local function in_acr(tag)
  local ok, r = pcall(hoist.registry.resolve, { image = ("%s/%s/web:%s"):format(ACR, NS, tag),
    auth = { username = E("HOIST_TEST_REGISTRY_TOKEN_USER"), password = E("HOIST_TEST_REGISTRY_TOKEN_PASSWORD") } })
  return ok and r.digest or nil
end

t.case("aks-helm: OIDC push to ACR, helm upgrade --install with values.prod.yaml, rollout tracked", function()
  local c = setup()
  local r = run("1", "hoist-clean.json")
  t.eq(r.code, 0, r.stderr)
  t.no_match(r.stdout .. r.stderr, E("HOIST_TEST_AZURE_OIDC_TOKEN"))
  t.match(in_acr("1") or "", "^sha256:")
  local d = c:get { kind = "Deployment", name = "web" }
  t.eq(d.spec.replicas, 3)
  t.eq(d.spec.template.spec.containers[1].image, ("%s/%s/web:1"):format(ACR, NS))
  t.eq(d.spec.template.spec.containers[1].resources.limits.memory, "512Mi")
  t.eq(d.spec.template.spec.serviceAccountName, "web")
  t.eq(d.spec.template.metadata.labels["azure.workload.identity/use"], "true")
  local hpa = c:get { kind = "HorizontalPodAutoscaler", name = "web" }
  t.eq({ hpa.spec.minReplicas, hpa.spec.maxReplicas, hpa.spec.metrics[1].resource.target.averageUtilization }, { 3, 20, 70 })
  t.eq(c:get { kind = "ServiceAccount", name = "web" }.metadata.annotations["azure.workload.identity/client-id"],
    E("HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"))
  t.eq((d.status or {}).readyReplicas, 3)
end, { timeout = 500 })

t.case("aks-helm: CRITICAL findings stop the run before ACR and the cluster (exit 4)", function()
  local c = setup()
  local r = run("2-critical", "hoist-demo.json")
  t.eq(r.code, 4, r.stderr)
  t.match(r.stderr, "CRITICAL")
  t.eq(in_acr("2-critical"), nil)
  t.eq(c:get { kind = "Deployment", name = "web" }.spec.template.spec.containers[1].image, ("%s/%s/web:1"):format(ACR, NS))
end, { timeout = 300 })

t.case("aks-helm: a release that never gets ready is rolled back with helm rollback; version 1 answers throughout", function()
  local c = setup()
  local before = c:get { kind = "Deployment", name = "web" }
  if (before.status or {}).readyReplicas ~= 3 then t.skip("the good release did not run first") end
  local svc = c:get { kind = "Service", name = "web" }
  local prober = support.prober("http://" .. svc.metadata.annotations["hoist.dev/emulator-address"] .. "/version")
  local r = run("3-unready", "hoist-clean.json", { "--set", "build_args=VERSION=3-unready,HEALTHY=false", "--set", "ready_timeout=10" })
  prober:stop()
  t.ok(r.code ~= 0, "the run failed")
  t.match(r.stderr, "not ready after 10s")
  t.match(r.stderr, "k8s.helm_rollback")
  -- the cause, and the details of the new release's pods only, bounded
  t.match(r.stderr, "last event of pod web%-%w+%-%w+: Unhealthy: %a+ probe failed: HTTP probe failed with statuscode: 404")
  local details = r.stderr:match("\n%s*details: ([^\n]*)") or ""
  print(("aks-helm: the failure's details: %d bytes"):format(#details))
  t.ok(#details > 0 and #details < 3000, "details of the failure: " .. #details .. " bytes")
  t.no_match(details, "replica set web%-%w+ from 0 to 3", "the old release's events")
  t.no_match(r.stdout .. r.stderr, E("HOIST_TEST_AZURE_OIDC_TOKEN"))
  hoist.k8s.rollout { name = "web", client = c, timeout = 120 }
  local d = c:get { kind = "Deployment", name = "web" }
  t.eq(d.spec.template.spec.containers[1].image, ("%s/%s/web:1"):format(ACR, NS))
  local history = hoist.k8s.helm.history { release = "web", namespace = NS, helm = support.root .. "/tests/tools/helm" }
  t.eq(#history, 3, "install, the failed upgrade, the rollback")
  local failed = prober:failures()
  print(("aks-helm: %d requests during the failed upgrade and its rollback, %d failed; versions answering: %s"):format(
    #prober.samples, failed, table.concat(prober:versions(), ", ")))
  t.ok(#prober.samples > 10)
  t.eq(failed, 0)
  t.eq(prober:versions(), { "1" })
end, { timeout = 500 })

-- Issue 15 §5: the workflow's `az aks get-credentials`, done by the aks target's credential
-- fetch: no kubeconfig on the runner (KUBECONFIG empty), the cluster's from ARM with the same
-- OIDC credential, never printed nor left on disk.
t.case("aks-helm: the cluster's kubeconfig from ARM (aks_cluster) with the OIDC credential, none on the runner", function()
  local c = setup()
  local aks = support.aks_cluster(NS .. "-rg", "aks-" .. NS)
  local sub, rg, cluster = aks.sub, aks.rg, aks.cluster
  local before = {}
  for _, f in ipairs(hoist.fs.list("/tmp")) do before[f] = true end
  local ok, err = pcall(function()
    local r = run("4", "hoist-clean.json", { "--set", "aks_resource_group=" .. rg, "--set", "aks_cluster=" .. cluster,
                                             "--set", "aks_admin=true" }, { KUBECONFIG = "", AZURE_SUBSCRIPTION_ID = sub })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout .. r.stderr, "AKS cluster " .. rg:gsub("%p", "%%%0") .. "/" .. cluster:gsub("%p", "%%%0") .. ": listClusterAdminCredential")
    t.no_match(r.stdout .. r.stderr, "client%-key%-data")
    t.eq(c:get { kind = "Deployment", name = "web" }.spec.template.spec.containers[1].image, ("%s/%s/web:4"):format(ACR, NS))
    for _, f in ipairs(hoist.fs.list("/tmp")) do
      if not before[f] then t.no_match(f, "^hoist%-helm%-aks", "no kubeconfig left on disk") end
    end
  end)
  aks.drop()
  if not ok then error(err, 0) end
end, { timeout = 500 })

t.case("aks-helm: clean up", function()
  if kube then kube:delete { kind = "Namespace", name = NS, missing_ok = true } end
end)
