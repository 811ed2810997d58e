--- hoist.targets.aks: the kubernetes target (hoist.targets.kubernetes) on an Azure Kubernetes
--- Service cluster whose kubeconfig comes from Azure Resource Manager through the Azure
--- credential chain (hoist.azure.credential): `listClusterUserCredential`, or with `admin`
--- `listClusterAdminCredential` (the cluster's local admin certificate). A user kubeconfig of
--- a cluster with Entra ID integration runs `kubelogin` (an exec credential plugin): it must
--- be on PATH. The compensations keep subscription, resource group and cluster, never the
--- kubeconfig, so `hoist rollback <id>` fetches it again. Reference: docs/targets.md, "aks".
local util = require "hoist.util"

local fail = util.fail

-- The options naming the cluster: the Azure targets' names (subscription, resource_group,
-- credential) plus the cluster's.
local cluster_options = {
  subscription = { type = "string", description = "Azure subscription id (default: AZURE_SUBSCRIPTION_ID, else the subscriptionId of AZURE_CREDENTIALS)" },
  resource_group = { type = "string", required = true, description = "The cluster's resource group" },
  cluster = { type = "string", description = "The AKS cluster's name (required)" },
  admin = { type = "boolean", default = false, description = "Use listClusterAdminCredential (local admin account) instead of the user credential" },
  credential = { type = "string|table", description = "Azure credential source (client_secret, workload_identity, oidc, azure_pipelines, managed_identity, az_cli; default: the first that applies), or a hoist.azure.credential{}" },
}

-- Standard base64 (ARM's kubeconfig `value`) to bytes: the engine's one decoder.
local function base64_decode(text)
  local ok, out = pcall(require("hoist.native.core").base64_decode, text, "the kubeconfig from Azure")
  if not ok then fail("invalid_argument", "aks: the kubeconfig from Azure is not base64") end
  return out
end

local clients = {} -- "<sub>/<rg>/<cluster>/<admin>" -> client, one fetch per process

-- The credential the cluster options name: an object as is, else the source (nil: the chain).
local function credential_of(w)
  local azure = require "hoist.azure"
  if type(w.credential) == "table" then return azure.credential_of("hoist.targets.aks", w.credential) end
  return azure.credential(w.credential and { source = w.credential } or nil)
end

-- A client for the cluster: its kubeconfig from ARM, read from a 0600 file removed at once.
local function connect(w)
  local azure = require "hoist.azure"
  for _, k in ipairs { "resource_group", "cluster" } do
    if type(w[k]) ~= "string" or w[k] == "" then fail("invalid_argument", ("targets.aks: option '%s' is required"):format(k)) end
  end
  local cred = credential_of(w)
  local sub = azure.subscription(w.subscription, cred)
  local key = table.concat({ sub, w.resource_group, w.cluster, tostring(w.admin == true) }, "/")
  if clients[key] then return clients[key] end
  local action = w.admin and "listClusterAdminCredential" or "listClusterUserCredential"
  local r = azure.request { method = "POST", credential = cred, safe = true, what = ("AKS cluster %s: %s"):format(w.cluster, action),
    path = azure.resource_id(sub, w.resource_group, "Microsoft.ContainerService/managedClusters", w.cluster) .. "/" .. action }
  local first = type(r.body) == "table" and r.body.kubeconfigs and r.body.kubeconfigs[1]
  if not first or type(first.value) ~= "string" then
    fail("internal", ("AKS cluster %s: %s answered no kubeconfig"):format(w.cluster, action))
  end
  local text = base64_decode(first.value)
  for data in text:gmatch("client%-key%-data:%s*(%S+)") do hoist.secret(data) end
  for token in text:gmatch("\n%s*token:%s*(%S+)") do hoist.secret(token) end
  local dir = hoist.exec({ "mktemp", "-d", "/tmp/hoist-aks.XXXXXX", check = true }).stdout:match("%S+")
  local path = dir .. "/kubeconfig"
  hoist.fs.write_file(path, text, { mode = "0600" })
  local ok, c = pcall(hoist.k8s.client, { kubeconfig = path })
  hoist.fs.remove(dir, { recursive = true })
  if not ok then error(c, 0) end
  hoist.log.info(("AKS cluster %s/%s: %s (context %s, %s)"):format(w.resource_group, w.cluster, action, c.context, c.server))
  clients[key] = c
  return c
end

-- What a later process needs to fetch the kubeconfig again: subscription, group, cluster,
-- admin, and the credential's source name (a credential object is not JSON: the later
-- process uses that source, configured from its environment).
local T = require("hoist.targets.kubernetes").make("aks", connect, cluster_options, "hoist.targets.aks", function(w)
  local out = {}
  for k, v in pairs(w) do out[k] = v end
  if type(w.credential) == "table" then out.credential = w.credential.source end
  -- the subscription the credential names when none was given (AZURE_CREDENTIALS' subscriptionId)
  out.subscription = out.subscription or require("hoist.azure").subscription(nil, credential_of(w))
  return out
end)
--- Standard base64 to bytes (exposed for its test).
---@type fun(text: string): string
T.base64_decode = base64_decode
return T
