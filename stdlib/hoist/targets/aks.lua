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

local clients = {} -- "<sub>/<rg>/<cluster>/<admin>" -> {client, text}, one fetch per process

-- The credential the cluster options name: an object as is, else the source (nil: the chain).
local function credential_of(w)
  local azure = require "hoist.azure"
  if type(w.credential) == "table" then return azure.credential_of("hoist.targets.aks", w.credential) end
  return azure.credential(w.credential and { source = w.credential } or nil)
end

-- The cluster's client and kubeconfig text: the kubeconfig from ARM (its keys and tokens
-- registered as secrets), read from a 0600 file removed at once.
-- A hoist.k8s client of a kubeconfig text, read from a 0600 file of a private folder removed
-- at once; `namespace`: its default namespace instead of the context's.
local function client_from(text, namespace)
  local dir = hoist.exec({ "mktemp", "-d", "/tmp/hoist-aks.XXXXXX", check = true }).stdout:match("%S+")
  local path = dir .. "/kubeconfig"
  hoist.fs.write_file(path, text, { mode = "0600" })
  local ok, c = pcall(hoist.k8s.client, { kubeconfig = path, namespace = namespace })
  hoist.fs.remove(dir, { recursive = true })
  if not ok then error(c, 0) end
  return c
end

local function fetch(w)
  local azure = require "hoist.azure"
  for _, k in ipairs { "resource_group", "cluster" } do
    if type(w[k]) ~= "string" or w[k] == "" then fail("invalid_argument", ("targets.aks: option '%s' is required"):format(k)) end
  end
  local cred = credential_of(w)
  local sub = azure.subscription(w.subscription, cred)
  local key = table.concat({ sub, w.resource_group, w.cluster, tostring(w.admin == true) }, "/")
  if clients[key] then return clients[key].client, clients[key].text end
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
  local c = client_from(text)
  hoist.log.info(("AKS cluster %s/%s: %s (context %s, %s)"):format(w.resource_group, w.cluster, action, c.context, c.server))
  clients[key] = { client = c, text = text }
  return c, text
end

-- A client for the cluster (the kubernetes target's connect).
local function connect(w) return (fetch(w)) end

-- The cluster options of a call outside the target (helm, a script): checked, defaults in.
local function cluster_of(fname, opts)
  local o = util.check_opts(fname, opts, cluster_options)
  if not o.cluster then fail("invalid_argument", fname .. ": option 'cluster' is required", { option = "cluster" }) end
  return o
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
--- A client of the AKS cluster (hoist.k8s.client), its kubeconfig fetched from ARM once per
--- process (listClusterUserCredential, or listClusterAdminCredential with `admin`): what `az
--- aks get-credentials` gives, without writing it to ~/.kube/config.
---@param opts {resource_group: string, cluster: string, subscription?: string, admin?: boolean, credential?: string|hoist.azure.Credential, namespace?: string}
---@return hoist.k8s.Client
function T.client(opts)
  local ns = type(opts) == "table" and opts.namespace or nil
  local o = {}
  for k, v in pairs(type(opts) == "table" and opts or {}) do if k ~= "namespace" then o[k] = v end end
  local w = cluster_of("hoist.targets.aks.client", o)
  local c, text = fetch(w)
  if ns == nil or ns == c.namespace then return c end
  if type(ns) ~= "string" then fail("invalid_argument", "hoist.targets.aks.client: option 'namespace' must be a string") end
  -- one more client per namespace (the default namespace is the client's), made once per process
  local key = table.concat({ c.server, w.resource_group, w.cluster, tostring(w.admin == true), ns }, "/")
  clients[key] = clients[key] or { client = client_from(text, ns), text = text }
  return clients[key].client
end

--- The AKS cluster's kubeconfig (YAML text; its client keys and tokens are registered as
--- secrets), for a tool that reads a kubeconfig file (helm): write it to a 0600 file and
--- remove it after the call, as hoist.k8s.helm does with its `aks` option.
---@param opts {resource_group: string, cluster: string, subscription?: string, admin?: boolean, credential?: string|hoist.azure.Credential}
---@return string
function T.kubeconfig(opts)
  local _, text = fetch(cluster_of("hoist.targets.aks.kubeconfig", opts))
  return text
end

--- Standard base64 to bytes (exposed for its test).
---@type fun(text: string): string
T.base64_decode = base64_decode
return T
