-- The aks target against the Azure emulator (its AKS clusters' credentials are kubeconfigs of
-- the Kubernetes emulator of tests/env): the kubeconfig from listClusterAdminCredential and
-- listClusterUserCredential (an exec entry running kubelogin: tests/tools/kubelogin, on PATH in
-- a child process), the Lease lock through it, a dry-run deploy, status, the errors, and a
-- compensation run from another process that fetches the kubeconfig again. The deploy path
-- itself is the kubernetes target's (kubernetes_target_test.lua). Skipped without the
-- emulators; failed instead when CI=true.
local t = require "hoist.test"
local azure = hoist.azure

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local support = dofile(here .. "/support.lua")
local E = os.getenv
local SUB = E("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
math.randomseed(os.time() + math.floor(hoist.now() * 1000) % 100000)
local RUN = ("%x%04x"):format(os.time() % 0x100000, math.random(0, 0xffff))
local RG, CLUSTER = "hoist-aks-" .. RUN, "aks-" .. RUN
local API = "2024-05-01"

local S = {}
local function need_env()
  if not (E("HOIST_TEST_AZURE_CONTROL") and E("HOIST_TEST_KUBE_SERVER")) then
    local why = "the Azure and Kubernetes emulators are not up: run tests/env/up.sh, then `. /tmp/hoist-env/env.sh`"
    if E("CI") == "true" then error(why) end
    t.skip("*** aks target test skipped *** " .. why)
  end
  if S.cred then return end
  S.cred = azure.credential { source = "client_secret", tenant_id = E("HOIST_TEST_AZURE_TENANT_ID"),
                              client_id = E("HOIST_TEST_AZURE_CLIENT_ID"), client_secret = E("HOIST_TEST_AZURE_CLIENT_SECRET") }
  azure.providers.ensure { namespace = "Microsoft.ContainerService", credential = S.cred, subscription = SUB }
  azure.resource_groups.ensure { name = RG, location = "westeurope", credential = S.cred, subscription = SUB }
  azure.request { method = "PUT", credential = S.cred, api_version = API, poll_interval = 0.2,
    path = ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerService/managedClusters/%s"):format(SUB, RG, CLUSTER),
    body = { location = "westeurope", properties = { dnsPrefix = "hoistaks" } } }
end

local function opts(extra)
  local o = { service = "web-" .. RUN, subscription = SUB, resource_group = RG, cluster = CLUSTER, credential = S.cred,
              admin = true, namespace = "default", run = "aks-test-" .. RUN }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local aks = require "hoist.targets.aks"

t.case("the admin kubeconfig: status reaches the cluster, a missing service does not serve", function()
  need_env()
  local st = aks.status { service = "absent-" .. RUN, subscription = SUB, resource_group = RG, cluster = CLUSTER,
                          credential = S.cred, admin = true }
  t.eq(st.serving, false)
  t.eq(st.namespace, "default")
end)

t.case("the Lease lock through the AKS kubeconfig", function()
  need_env()
  local h = aks.lock(opts { timeout = 0 })
  t.eq(h.lease, "hoist-lock-deployment-web-" .. RUN)
  t.match(h.key, "^aks/default/web%-")
  local kube = hoist.k8s.client {}
  t.match(kube:get { kind = "Lease", namespace = "default", name = h.lease }.spec.holderIdentity, "^aks%-test%-")
  h:release()
  -- the Lease this lock created goes with its release
  t.eq(kube:get { kind = "Lease", namespace = "default", name = h.lease, missing_ok = true }, nil)
end)

t.case("a dry-run deploy plans the apply steps and changes nothing", function()
  need_env()
  local core = require "hoist.native.core"
  local previous = core.set_dry_run(true)
  local ok, r = pcall(aks.deploy, opts { image = "127.0.0.1:5000/app@sha256:" .. ("ab"):rep(32), secret_env = { TOKEN = "s3cr3t-aks-value" } })
  core.set_dry_run(previous)
  t.ok(ok, tostring(r))
  t.eq(r.planned, true)
  t.eq(hoist.k8s.client {}:get { kind = "Deployment", namespace = "default", name = "web-" .. RUN, missing_ok = true }, nil)
end)

t.cases("errors name what is wrong", {
  { name = "no resource group", o = { resource_group = false }, code = "invalid_argument", pat = "option 'resource_group' is required" },
  { name = "no such cluster", o = { cluster = "absent-" .. RUN }, code = "not_found", pat = "absent%-" },
  { name = "bad service name", o = { service = "Web_1" }, code = "invalid_argument", pat = "RFC 1123 label" },
}, function(row)
  need_env()
  local o = opts(row.o)
  if row.o.resource_group == false then o.resource_group = nil end
  o.image = "127.0.0.1:5000/app:v1"
  t.raises(function() aks.deploy(o) end, row.code, row.pat)
end)

t.case("base64 of the kubeconfig", function()
  t.eq(aks.base64_decode("aGVsbG8gd29ybGQ="), "hello world")
  t.eq(aks.base64_decode("YQ=="), "a")
  t.eq(aks.base64_decode("YWI=\n"), "ab")
  t.raises(function() aks.base64_decode("a$b") end, "invalid_argument", "not base64")
end)

t.case("another process: the user kubeconfig runs kubelogin; aks.restore fetches the kubeconfig again", function()
  need_env()
  local kube = hoist.k8s.client {}
  local name = "made-by-" .. RUN
  kube:apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name, namespace = "default",
               annotations = { ["hoist.dev/run"] = "aks-test-" .. RUN } } }
  local script = support.tmpdir("hoist-aks") .. "/restore.lua"
  support.write(script, ([[
local aks = require "hoist.targets.aks"
local st = aks.status { service = "absent", resource_group = %q, cluster = %q }
print("user kubeconfig ok, serving=" .. tostring(st.serving))
local action = require("hoist.pipeline.actions").get("aks.restore")
action.fn { where = { resource_group = %q, cluster = %q, admin = false, credential = "client_secret" }, namespace = "default",
            service = "web-%s", run = "aks-test-%s", manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = %q } } }
print("restored")
]]):format(RG, CLUSTER, RG, CLUSTER, RUN, RUN, name))
  local r = support.run_hoist({ "run", script, "--no-color" }, { timeout = 120, env = {
    PATH = support.root .. "/tests/tools:" .. E("PATH"), AZURE_TENANT_ID = E("HOIST_TEST_AZURE_TENANT_ID"),
    AZURE_CLIENT_ID = E("HOIST_TEST_AZURE_CLIENT_ID"), AZURE_CLIENT_SECRET = E("HOIST_TEST_AZURE_CLIENT_SECRET"),
    AZURE_SUBSCRIPTION_ID = SUB } })
  t.eq(r.code, 0, r.stdout .. r.stderr)
  t.match(r.stdout, "user kubeconfig ok, serving=false")
  t.match(r.stdout .. r.stderr, "listClusterUserCredential")
  t.no_match(r.stdout .. r.stderr, E("HOIST_TEST_AZURE_CLIENT_SECRET"))
  t.eq(kube:get { kind = "ConfigMap", namespace = "default", name = name, missing_ok = true }, nil, "deleted")
end)

t.case("cleanup", function()
  if not S.cred then return end
  azure.request { method = "DELETE", credential = S.cred, poll_interval = 0.2,
                  path = ("/subscriptions/%s/resourcegroups/%s"):format(SUB, RG) }
end)
