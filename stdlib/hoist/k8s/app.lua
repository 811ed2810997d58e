--- hoist.k8s.app: the Deployment + Service (+ HorizontalPodAutoscaler, PodDisruptionBudget,
--- ServiceAccount) that platform teams write by hand for a web service, from a few options.
--- The defaults are the production values of our users' AKS scenarios: 3 replicas, zero-downtime
--- rolling updates (maxUnavailable 0, maxSurge 1), startup/readiness/liveness probes on one
--- HTTP path, requests and limits, an HPA from 3 to 20 replicas at 70% CPU, a PDB keeping all but
--- one pod, 30 s of grace on termination. Reference: docs/kubernetes.md, "Manifests".
local util = require "hoist.util"
local image = require "hoist.image"
local json = require "hoist.json"

local M = {}

-- an RFC 1123 label, as Kubernetes checks names: lower-case alphanumerics and '-', at most
-- 63, starting and ending with an alphanumeric
local function valid_name(s)
  return #s <= 63 and s:match("^[a-z0-9][%-a-z0-9]*$") ~= nil and s:match("[a-z0-9]$") ~= nil
end

---@class hoist.k8s.Probes
---@field path? string HTTP path of every probe (default "/healthz")
---@field port? integer|string container port or its name (default the app's port)
---@field startup? table|false fields merged into the startup probe; false: none
---@field readiness? table|false fields merged into the readiness probe; false: none
---@field liveness? table|false fields merged into the liveness probe; false: none

---@class hoist.k8s.Hpa
---@field min? integer minimum replicas (default: replicas)
---@field max? integer maximum replicas (default 20)
---@field cpu? integer target average CPU utilisation in percent (default 70)

---@class hoist.k8s.ServiceAccount
---@field name? string default: the app's name
---@field create? boolean make the ServiceAccount too (default true)
---@field client_id? string Entra client id for Azure Workload Identity: annotates the account and labels the pods

---@class hoist.k8s.AppSpec
---@field name string the Deployment, Service, HPA and PDB name (an RFC 1123 label)
---@field image string the full image reference, best by digest
---@field namespace? string metadata.namespace of every object (default: none, the client's namespace)
---@field replicas? integer default 3
---@field port? integer the container port (default 8000)
---@field service_port? integer the Service's port (default 80)
---@field service_type? "ClusterIP"|"LoadBalancer"|"NodePort" default "ClusterIP"
---@field probes? hoist.k8s.Probes|false default: HTTP probes on /healthz; false: none
---@field resources? table|false container resources (default requests 250m/256Mi, limits 1/512Mi); false: none
---@field hpa? hoist.k8s.Hpa|false default {min = replicas, max = 20, cpu = 70}; false: no HPA
---@field pdb? table|false default {max_unavailable = 1} when replicas > 1; false: none
---@field env? table<string, string|{secret: string, key: string}|{config_map: string, key: string}> environment variables
---@field service_account? string|hoist.k8s.ServiceAccount a name, or the account to make
---@field labels? table<string, string> extra labels on every object and the pods
---@field annotations? table<string, string> extra annotations on the pod template
---@field command? string[] the container's command (entrypoint)
---@field args? string[] the container's arguments
---@field grace? integer terminationGracePeriodSeconds (default 30)
---@field max_surge? integer|string default 1
---@field max_unavailable? integer|string default 0
---@field progress_deadline? integer progressDeadlineSeconds (default 600)
---@field image_pull_secrets? string[] names of docker-registry Secrets
---@field container? string the container's name (default "app")

local SPEC = {
  name = { type = "string", required = true },
  image = { type = "string", required = true },
  namespace = "string",
  replicas = { type = "integer", default = 3 },
  port = { type = "integer", default = 8000 },
  service_port = { type = "integer", default = 80 },
  service_type = { type = "string", default = "ClusterIP", allowed = { "ClusterIP", "LoadBalancer", "NodePort" } },
  probes = { type = "table|boolean", default = {} },
  resources = { type = "table|boolean" },
  hpa = { type = "table|boolean", default = {} },
  pdb = { type = "table|boolean" },
  env = { type = "table", default = {} },
  service_account = "string|table",
  labels = { type = "table", default = {} },
  annotations = { type = "table", default = {} },
  command = "table",
  args = "table",
  grace = { type = "integer", default = 30 },
  max_surge = { type = "integer|string", default = 1 },
  max_unavailable = { type = "integer|string", default = 0 },
  progress_deadline = { type = "integer", default = 600 },
  image_pull_secrets = "table",
  container = { type = "string", default = "app" },
}

local DEFAULT_RESOURCES = {
  requests = { cpu = "250m", memory = "256Mi" },
  limits = { cpu = "1", memory = "512Mi" },
}

local function fail(msg) util.fail("invalid_argument", "hoist.k8s.app: " .. msg) end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then fail(("expected string keys, got %s"):format(type(k))) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

local function merge(base, over)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over or {}) do out[k] = v end
  return out
end

local function copy_deep(v, depth)
  if type(v) ~= "table" then return v end
  if depth > 32 then fail("a value nested deeper than 32 levels") end
  local out = {}
  for k, x in pairs(v) do out[k] = copy_deep(x, depth + 1) end
  return setmetatable(out, getmetatable(v))
end

local function env_list(env)
  local list = json.array()
  for _, name in ipairs(sorted_keys(env)) do
    local v = env[name]
    if type(v) == "string" or type(v) == "number" or type(v) == "boolean" then
      list[#list + 1] = { name = name, value = tostring(v) }
    elseif type(v) == "table" and v.secret then
      list[#list + 1] = { name = name, valueFrom = { secretKeyRef = { name = v.secret, key = v.key or name } } }
    elseif type(v) == "table" and v.config_map then
      list[#list + 1] = { name = name, valueFrom = { configMapKeyRef = { name = v.config_map, key = v.key or name } } }
    else
      fail(("env '%s' must be a string, {secret=, key=} or {config_map=, key=}"):format(name))
    end
  end
  return list
end

local function probes_of(o, container)
  if o.probes == false then return end
  local p = o.probes == true and {} or o.probes
  local check = util.check_opts("hoist.k8s.app", p, {
    path = { type = "string", default = "/healthz" },
    port = { type = "integer|string", default = "http" },
    startup = "table|boolean", readiness = "table|boolean", liveness = "table|boolean",
  })
  local get = { path = check.path, port = check.port }
  local defaults = {
    -- up to 60 s to start; then readiness every 5 s, liveness every 10 s (3 misses restart)
    startup = { httpGet = get, periodSeconds = 2, failureThreshold = 30 },
    readiness = { httpGet = get, periodSeconds = 5, failureThreshold = 3 },
    liveness = { httpGet = get, periodSeconds = 10, failureThreshold = 3 },
  }
  for kind, field in pairs({ startup = "startupProbe", readiness = "readinessProbe", liveness = "livenessProbe" }) do
    local over = check[kind]
    if over ~= false then
      container[field] = merge(defaults[kind], type(over) == "table" and over or nil)
    end
  end
end

--- The manifests of a web service, in the order to apply them: ServiceAccount (when made),
--- Service, Deployment, HorizontalPodAutoscaler, PodDisruptionBudget. Each is a plain Lua
--- table that `hoist.k8s` applies (or `hoist.json.encode` prints).
---@param spec hoist.k8s.AppSpec
---@return table[] manifests
function M.app(spec)
  local o = util.check_opts("hoist.k8s.app", spec, SPEC)
  if not valid_name(o.name) then
    fail(("name '%s' is not a valid Kubernetes name (lower-case letters, digits and '-', at most 63)"):format(o.name))
  end
  if not image.valid(o.image) then fail(("image '%s' is not a valid image reference"):format(o.image)) end
  if o.replicas < 0 then fail("replicas must be 0 or more") end
  if o.port < 1 or o.port > 65535 then fail(("port %d is out of range"):format(o.port)) end

  local labels = merge({ ["app.kubernetes.io/managed-by"] = "hoist" }, o.labels)
  labels["app.kubernetes.io/name"] = o.name
  local selector = { ["app.kubernetes.io/name"] = o.name }
  local function meta(name, extra)
    local m = { name = name, labels = copy_deep(labels, 0) }
    if o.namespace then m.namespace = o.namespace end
    for k, v in pairs(extra or {}) do m[k] = v end
    return m
  end

  local out = {}
  local pod_labels = copy_deep(labels, 0)
  local sa_name
  if o.service_account then
    local sa = type(o.service_account) == "string" and { name = o.service_account, create = false }
      or util.check_opts("hoist.k8s.app", o.service_account, {
        name = { type = "string", default = o.name },
        create = { type = "boolean", default = true },
        client_id = "string",
      })
    sa_name = sa.name
    if sa.create then
      local annotations = nil
      if sa.client_id then annotations = { ["azure.workload.identity/client-id"] = sa.client_id } end
      out[#out + 1] = { apiVersion = "v1", kind = "ServiceAccount", metadata = meta(sa.name, { annotations = annotations }) }
    end
    if sa.client_id then pod_labels["azure.workload.identity/use"] = "true" end
  end

  out[#out + 1] = {
    apiVersion = "v1", kind = "Service", metadata = meta(o.name),
    spec = {
      type = o.service_type,
      selector = selector,
      ports = json.array { { name = "http", port = o.service_port, targetPort = "http", protocol = "TCP" } },
    },
  }

  local container = {
    name = o.container,
    image = o.image,
    ports = json.array { { name = "http", containerPort = o.port, protocol = "TCP" } },
  }
  if o.command then container.command = json.array(copy_deep(o.command, 0)) end
  if o.args then container.args = json.array(copy_deep(o.args, 0)) end
  if next(o.env) then container.env = env_list(o.env) end
  if o.resources ~= false then
    container.resources = copy_deep(type(o.resources) == "table" and o.resources or DEFAULT_RESOURCES, 0)
  end
  probes_of(o, container)

  local pod_spec = {
    containers = json.array { container },
    terminationGracePeriodSeconds = o.grace,
  }
  if sa_name then pod_spec.serviceAccountName = sa_name end
  if o.image_pull_secrets then
    local list = json.array()
    for _, n in ipairs(o.image_pull_secrets) do list[#list + 1] = { name = n } end
    pod_spec.imagePullSecrets = list
  end
  local template_meta = { labels = pod_labels }
  if next(o.annotations) then template_meta.annotations = copy_deep(o.annotations, 0) end

  out[#out + 1] = {
    apiVersion = "apps/v1", kind = "Deployment", metadata = meta(o.name),
    spec = {
      replicas = o.replicas,
      revisionHistoryLimit = 10,
      progressDeadlineSeconds = o.progress_deadline,
      selector = { matchLabels = selector },
      strategy = { type = "RollingUpdate", rollingUpdate = { maxSurge = o.max_surge, maxUnavailable = o.max_unavailable } },
      template = { metadata = template_meta, spec = pod_spec },
    },
  }

  if o.hpa ~= false then
    local h = util.check_opts("hoist.k8s.app", o.hpa == true and {} or o.hpa, {
      min = { type = "integer", default = math.max(o.replicas, 1) },
      max = { type = "integer", default = math.max(20, o.replicas) },
      cpu = { type = "integer", default = 70 },
    })
    if h.min < 1 or h.max < h.min then fail(("hpa needs 1 <= min <= max, got min %d, max %d"):format(h.min, h.max)) end
    if h.cpu < 1 or h.cpu > 100 then fail(("hpa cpu must be a percentage (1-100), got %d"):format(h.cpu)) end
    out[#out + 1] = {
      apiVersion = "autoscaling/v2", kind = "HorizontalPodAutoscaler", metadata = meta(o.name),
      spec = {
        scaleTargetRef = { apiVersion = "apps/v1", kind = "Deployment", name = o.name },
        minReplicas = h.min, maxReplicas = h.max,
        metrics = json.array { { type = "Resource", resource = { name = "cpu",
          target = { type = "Utilization", averageUtilization = h.cpu } } } },
      },
    }
  end

  local pdb = o.pdb
  if pdb == nil then pdb = o.replicas > 1 and {} or false end
  if pdb ~= false then
    local p = util.check_opts("hoist.k8s.app", pdb == true and {} or pdb, {
      max_unavailable = "integer|string", min_available = "integer|string",
    })
    if p.max_unavailable and p.min_available then fail("pdb takes max_unavailable or min_available, not both") end
    local spec_ = { selector = { matchLabels = selector } }
    if p.min_available then spec_.minAvailable = p.min_available else spec_.maxUnavailable = p.max_unavailable or 1 end
    out[#out + 1] = { apiVersion = "policy/v1", kind = "PodDisruptionBudget", metadata = meta(o.name), spec = spec_ }
  end
  return out
end

return M
