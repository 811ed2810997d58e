--- hoist.targets.kubernetes: deploys to any Kubernetes cluster a kubeconfig context reaches.
---
--- deploy = server-side apply of the manifests (by default hoist.k8s.app's Deployment +
--- Service + HPA + PDB from the common options; or your own; or, with `set_image`, only the
--- image of an existing Deployment, like `kubectl set image`), then hoist.k8s.rollout (watch
--- based, failing fast with the reason), then a check through the Service. When the rollout
--- or the check fails, the Deployment goes back to its previous revision (kubectl rollout
--- undo; what the run created is deleted instead) and the error gives the reason and the
--- evidence; with maxUnavailable 0 the previous pods serve throughout.
---
--- Each change is journaled BEFORE it is made, as a named compensation (JSON arguments):
--- `kubernetes.rollout_undo` (back to the revision that served before) for a Deployment that
--- existed, `kubernetes.restore` (delete) for what did not exist. Every object carries the
--- annotation hoist.dev/run; a compensation leaves an object another run changed since.
---
--- Deploys, compensations and remove hold the workload's Lease (hoist.k8s.lease), so two
--- hosts never roll one Deployment at once. hoist.targets.aks is this module with the
--- kubeconfig fetched from Azure (`make`). Reference: docs/targets.md, "kubernetes".
local util = require "hoist.util"
local undo = require "hoist.k8s.undo"
local lease = require "hoist.k8s.lease"

local fail, dry_run = util.fail, util.dry_run
local RUN = undo.RUN_ANNOTATION
local PATCH = {} -- key marking an object to patch (set_image) rather than apply

local M = {}

--- The options of the kubernetes target (the common ones are hoist.targets.options).
local own_options = {
  kubeconfig = { type = "string", description = "kubeconfig file(s) joined by ':' (default: $KUBECONFIG, else ~/.kube/config)" },
  -- not `context`: container@1's `context` is the build folder, and a target's options
  -- become container@1 parameters
  kube_context = { type = "string", description = "kubeconfig context (default: its current-context)" },
  namespace = { type = "string", description = "Namespace; it must exist (the preflight refuses a missing one before the build; default: the context's, else default)" },
  manifests = { type = "string|table", description = "YAML text, a file path, or Lua tables to apply instead of hoist.k8s.app's" },
  set_image = { type = "boolean", default = false, description = "Only change the image of the existing Deployment <service> (kubectl set image), and its env entries when env is given (kubectl set env), in one rollout" },
  container = { type = "string", description = "set_image: the container whose image changes (default: the first)" },
  replicas = { type = "number", default = 3, integer = true, min = 1, description = "Replicas of the default manifests" },
  service_port = { type = "number", default = 80, integer = true, min = 1, max = 65535, description = "Service port of the default manifests" },
  app = { type = "table", description = "More hoist.k8s.app options for the default manifests (probes, resources, hpa, ...)" },
  url = { type = "string", description = "Where the Service answers from here (default: the emulator's address, else the LoadBalancer ingress)" },
  rollout_timeout = { type = "number", default = 600, min = 0.001, description = "Seconds the rollout may take" },
  ready_timeout = { type = "number", min = 0.001, description = "Seconds a new pod may run unready (default: verify's retries x interval, else 60)" },
  crashloop_restarts = { type = "number", default = 2, integer = true, min = 1, description = "Restarts of a crashing container that fail the rollout" },
}

local function meta(o) return (o and o.metadata) or {} end
local function what_of(kind, ns, name) return ("%s %s/%s"):format(kind:lower(), ns, name) end

---------------------------------------------------------------- manifests

-- A file path, YAML text or tables -> objects.
local function parse(manifests)
  if type(manifests) == "string" and not manifests:find("\n", 1, true) and hoist.fs.exists(manifests) then
    manifests = hoist.fs.read_file(manifests)
  end
  return hoist.k8s.parse_manifests(manifests)
end

-- The Secret of secret_env: a new name for each run, so the previous revision keeps its own.
local function secret_of(o, run, ns)
  local name = ("%s-env-%s"):format(o.service, run:lower():gsub("[^a-z0-9-]", "-")):sub(1, 253):gsub("-+$", "")
  local data, refs = {}, {}
  for k, v in pairs(o.secret_env) do
    data[k] = hoist.secret(tostring(v))
    refs[k] = { secret = name, key = k }
  end
  return { apiVersion = "v1", kind = "Secret", type = "Opaque", stringData = data,
           metadata = { name = name, namespace = ns, labels = { ["app.kubernetes.io/name"] = o.service,
                                                               ["app.kubernetes.io/managed-by"] = "hoist" } } }, refs
end

local function default_manifests(o, run, ns)
  local env, out = {}, {}
  for k, v in pairs(o.env or {}) do env[k] = v end
  if next(o.secret_env or {}) then
    local secret, refs = secret_of(o, run, ns)
    out[1] = secret
    for k, r in pairs(refs) do env[k] = r end
  end
  local spec = { name = o.service, image = o.image, namespace = ns, replicas = o.replicas, port = o.container_port,
                 service_port = o.service_port, probes = { path = o.health_path }, env = env, labels = o.labels }
  for k, v in pairs(o.app or {}) do spec[k] = v end
  for _, m in ipairs(hoist.k8s.app(spec)) do out[#out + 1] = m end
  return out
end

-- The objects to apply, each annotated with the run; the Deployment named service, or the first.
local function manifests_of(o, client, run, ns)
  local objects
  if o.set_image then
    local d = client:get { kind = "Deployment", api_version = "apps/v1", name = o.service, namespace = ns }
    local containers = d.spec.template.spec.containers
    local c = containers[1]
    for _, x in ipairs(containers) do if x.name == o.container then c = x end end
    if o.container and c.name ~= o.container then
      local names = {}
      for i, x in ipairs(containers) do names[i] = x.name end
      fail("invalid_argument", ("deployment %s/%s has no container %q (containers: %s)"):format(ns, o.service, o.container,
        table.concat(names, ", ")))
    end
    if next(o.secret_env or {}) then
      fail("invalid_argument", "targets.kubernetes: set_image sets plain env only (as kubectl set env NAME=value); "
        .. "for secret_env reference a Secret in the Deployment, or deploy without set_image")
    end
    -- a strategic merge patch, as kubectl set image (and set env, in the same rollout: env
    -- entries merge by name, the others stay): a partial server-side apply would drop the
    -- fields an earlier full apply by hoist owns
    local patched = { name = c.name, image = o.image }
    local names = util.sorted_keys(o.env)
    if #names > 0 then
      patched.env = {}
      for i, k in ipairs(names) do patched.env[i] = { name = k, value = tostring(o.env[k]) } end
    end
    objects = { { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = o.service, namespace = ns },
                  spec = { template = { spec = { containers = { patched } } } }, [PATCH] = true } }
  elseif o.manifests then
    if next(o.secret_env or {}) then
      fail("invalid_argument", "targets.kubernetes: secret_env needs the default manifests; with your own, reference a Secret")
    end
    objects = parse(o.manifests)
  else
    objects = default_manifests(o, run, ns)
  end
  local workload
  for _, m in ipairs(objects) do
    m.metadata = m.metadata or {}
    m.metadata.annotations = m.metadata.annotations or {}
    m.metadata.annotations[RUN] = run
    if m.kind == "Deployment" and (not workload or m.metadata.name == o.service) then workload = m end
  end
  if not workload then fail("invalid_argument", "targets.kubernetes: the manifests have no Deployment to roll out") end
  return objects, workload
end

---------------------------------------------------------------- verify and evidence

-- Where the Service answers from here: `url`, the emulator's published address, else a
-- LoadBalancer's ingress.
local function service_url(o, client, ns, name)
  if o.url then return (o.url:gsub("/+$", "")) end
  local svc = client:get { kind = "Service", api_version = "v1", name = name, namespace = ns, missing_ok = true }
  if not svc then return nil end
  local addr = (meta(svc).annotations or {})["hoist.dev/emulator-address"]
  if addr then return "http://" .. addr end
  local ingress = (((svc.status or {}).loadBalancer or {}).ingress or {})[1]
  local port = (((svc.spec or {}).ports or {})[1] or {}).port or 80
  if ingress then return ("http://%s:%d"):format(ingress.hostname or ingress.ip, port) end
end

-- The evidence of a failed rollout as a few log lines: pods, events, container logs.
local function print_evidence(d)
  if type(d) ~= "table" then return end
  for _, p in ipairs(d.pods or {}) do
    local states = {}
    for _, c in ipairs(p.containers or {}) do
      states[#states + 1] = ("%s %s%s (restarts %d)"):format(c.name, c.state, c.detail and (": " .. c.detail) or "", c.restarts or 0)
    end
    hoist.log.info(("  pod %s%s: %s; %s"):format(p.name, p.current and " (new)" or "", tostring(p.phase), table.concat(states, "; ")))
  end
  local events = d.events or {}
  for i = math.max(1, #events - 5), #events do
    local e = events[i]
    hoist.log.info(("  event %s %s %s: %s"):format(tostring(e.type), tostring(e.reason), tostring(e.object), tostring(e.message)))
  end
  for where, text in pairs(d.logs or {}) do
    hoist.log.info(("  last log lines of %s:\n%s"):format(where, text))
  end
end

---------------------------------------------------------------- make

local function positive(o, name)
  if o[name] ~= nil and (type(o[name]) ~= "number" or o[name] <= 0) then
    fail("invalid_argument", ("targets.%s: %s must be a number > 0, got %s"):format(o.target_name, name, tostring(o[name])))
  end
end

--- A Kubernetes target module named `name` whose clusters `connect` reaches:
--- Internal: how the kubernetes and aks targets share their code.
--- `connect(where)` returns a hoist.k8s.Client, `where` being the target's cluster options
--- (JSON values only: they travel in the journal to a later process); `cluster_options`
--- lists their names. hoist.targets.kubernetes is make("kubernetes", kubeconfig client);
--- hoist.targets.aks the same with the kubeconfig from Azure.
---@param name string
---@param connect fun(where: table): hoist.k8s.Client
---@param cluster_options table<string, table> option specs that choose the cluster
---@param module string the module defining the target (for the compensations' origin)
---@param pin? fun(where: table, client: hoist.k8s.Client): table the cluster options a later process needs to reach the same cluster
---@return table target module
function M.make(name, connect, cluster_options, module, pin)
  local T = { name = name }
  T.options = {}
  for k, v in pairs(own_options) do if k ~= "kubeconfig" and k ~= "kube_context" then T.options[k] = v end end
  for k, v in pairs(cluster_options) do T.options[k] = v end
  T.compensations = { name .. ".rollout_undo", name .. ".restore" }

  local function where_of(o)
    local w = {}
    for k in pairs(cluster_options) do w[k] = o[k] end
    return w
  end

  local function checked(opts)
    if type(opts) ~= "table" then util.check_opts("hoist.targets." .. name .. ".deploy", opts, {}) end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local common = require("hoist.targets").options
    for k, spec in pairs(T.options) do
      o[k] = util.check_opt("hoist.targets." .. name, k, o[k], { type = spec.type == "number" and "number" or spec.type, default = spec.default })
    end
    o.container_port = o.container_port or common.container_port.default
    o.health_path = o.health_path or common.health_path.default
    o.target_name = name
    if type(o.service) ~= "string" or not o.service:match("^[a-z0-9][%-a-z0-9]*$") or #o.service > 63 then
      fail("invalid_argument", ("targets.%s: service must be an RFC 1123 label (lower-case letters, digits, '-'), got %s")
        :format(name, tostring(o.service)))
    end
    util.check_opt("hoist.targets." .. name, "image", o.image, { type = "string", required = true })
    if o.health_path:sub(1, 1) ~= "/" then
      fail("invalid_argument", ("targets.%s: health_path must start with '/', got %s"):format(name, o.health_path))
    end
    for _, k in ipairs { "rollout_timeout", "ready_timeout", "replicas", "service_port", "crashloop_restarts" } do positive(o, k) end
    o.run = o.run or (o.ctx and o.ctx.run and o.ctx.run.id) or hoist.run.id or "run"
    return o
  end

  local function client_of(o)
    local c = o.client or connect(where_of(o))
    return c, o.namespace or c.namespace
  end

  --- The workload's Lease (hoist.k8s.lease): container@1 holds it until the run is over.
  ---@param opts hoist.targets.LockOptions|table plus the cluster options and namespace
  ---@return hoist.k8s.LeaseLock
  function T.lock(opts)
    local c, ns = client_of(opts)
    return lease.acquire { client = c, namespace = ns, kind = "Deployment", name = opts.service, run = opts.run,
                           timeout = opts.timeout, target = name }
  end

  local function locked(args, fn)
    local c = connect(args.where or {})
    local ns = args.namespace or c.namespace
    local h = lease.acquire { client = c, namespace = ns, name = args.service, run = args.run,
                              timeout = args.lock_timeout, target = name }
    require("hoist.targets.lock").holding(h, fn, c, ns)
  end

  local function k8s_args(extra)
    return util.spec({ where = "table", namespace = "string", service = { type = "string", required = true },
                       run = "string", lock_timeout = "number" }, extra)
  end
  hoist.pipeline.action(name .. ".rollout_undo", function(args)
    locked(args, function(c, ns)
      undo.rollout_undo { client = c, namespace = ns, name = args.name, revision = args.revision,
                          template_hash = args.template_hash, run = args.run, timeout = args.timeout }
    end)
  end, { module = module, args = k8s_args { name = { type = "string", required = true }, revision = "number",
                                            template_hash = "string", timeout = "number" } })
  hoist.pipeline.action(name .. ".restore", function(args)
    locked(args, function(c, ns)
      undo.restore { client = c, namespace = ns, manifest = args.manifest, existed = args.existed, previous = args.previous,
                     run = args.run }
    end)
  end, { module = module, args = k8s_args { manifest = { type = "table", required = true }, existed = "boolean",
                                            previous = "table" } })

  -- The other objects that existed are put back as they were; one that cannot be (a Secret)
  -- is named, and the others are still restored.
  local function restore_changed(c, ns, o, changed)
    local left = {}
    for i = #changed, 1, -1 do
      local a = changed[i]
      local ok, err = util.try(undo.restore, { client = c, namespace = ns, manifest = a.manifest, existed = true,
                                               previous = a.previous, run = o.run })
      if not ok then left[#left + 1] = hoist.is_error(err) and err.message or tostring(err) end
    end
    return #left > 0 and ("; NOT restored: " .. table.concat(left, "; ")) or ""
  end

  -- Back to what served before: the previous revision, or nothing when this run created it.
  local function roll_back(c, ns, o, before, created, changed)
    if before then
      undo.rollout_undo { client = c, namespace = ns, name = before.name, revision = before.revision,
                          template_hash = before.template_hash, run = o.run, timeout = o.rollout_timeout }
      return ("rolled back to revision %s (%s), which serves"):format(tostring(before.revision), tostring(before.image))
        .. restore_changed(c, ns, o, changed)
    end
    for i = #created, 1, -1 do undo.restore { client = c, namespace = ns, manifest = created[i], run = o.run } end
    return "nothing served before: what this run created was deleted" .. restore_changed(c, ns, o, changed)
  end

  local function deploy(o, c, ns)
    require("hoist.targets").test_pause("HOIST_TEST_PAUSE_IN_DEPLOY", "holding the Lease of " .. o.service)
    local on_rollback = function(action, args) if o.ctx then o.ctx:on_rollback(action, args) end end
    local objects, workload = manifests_of(o, c, o.run, ns)
    local wname = workload.metadata.name
    local before, created = nil, {}
    local live = c:get { kind = "Deployment", api_version = "apps/v1", name = wname, namespace = ns, missing_ok = true }
    if live then
      local rss = undo.replica_sets(c, live)
      local current = (meta(live).annotations or {})["deployment.kubernetes.io/revision"]
      for _, rs in ipairs(rss) do
        if (meta(rs).annotations or {})["deployment.kubernetes.io/revision"] == current then
          before = { name = wname, revision = tonumber(current), template_hash = (meta(rs).labels or {})["pod-template-hash"] }
        end
      end
      local cs = live.spec.template.spec.containers
      if before then before.image = cs[1] and cs[1].image end
    end
    -- every document checked (discovery, server-side dry run) before the first write
    local checked_objects = {}
    for _, m in ipairs(objects) do if not m[PATCH] then checked_objects[#checked_objects + 1] = m end end
    hoist.k8s.check_manifests(checked_objects, { client = c, namespace = ns, force = true })
    local changed = {}
    local where = where_of(o)
    if pin then where = pin(where, c) end
    local common = { where = where, namespace = ns, service = o.service, run = o.run, lock_timeout = o.lock_timeout }
    for _, m in ipairs(objects) do
      local mns = meta(m).namespace or ns
      local exists = (m == workload and live) or c:get { kind = m.kind, api_version = m.apiVersion, name = m.metadata.name,
                                                          namespace = mns, missing_ok = true }
      local args = {}
      for k, v in pairs(common) do args[k] = v end
      if m == workload and before then
        args.name, args.revision, args.template_hash, args.timeout = wname, before.revision, before.template_hash, o.rollout_timeout
        on_rollback(name .. ".rollout_undo", args)  -- journaled before the apply
      elseif not exists then
        -- what names the object (all restore needs to delete it): no spec, no secret values
        local ref = { apiVersion = m.apiVersion, kind = m.kind, metadata = { name = m.metadata.name, namespace = meta(m).namespace } }
        args.manifest = ref
        on_rollback(name .. ".restore", args)
        created[#created + 1] = ref
      elseif m ~= workload then
        -- an object that existed: its compensation puts back the state recorded now (a
        -- Secret's values are never journaled: its restore fails, the run exits 3)
        local ref = { apiVersion = m.apiVersion, kind = m.kind, metadata = { name = m.metadata.name, namespace = meta(m).namespace } }
        args.manifest, args.existed = ref, true
        args.previous = m.kind ~= "Secret" and undo.previous_of(exists) or nil
        on_rollback(name .. ".restore", args)
        changed[#changed + 1] = args
      end
      if m[PATCH] then
        m[PATCH] = nil
        c:patch { kind = "Deployment", api_version = "apps/v1", name = m.metadata.name, namespace = mns, type = "strategic",
                  patch = { metadata = { annotations = m.metadata.annotations }, spec = m.spec } }
      else
        c:apply(m, { namespace = ns, force = true })
      end
    end
    local result = { service = o.service, image = o.image, namespace = ns, deployment = wname, previous = before and before.image,
                     context = c.context, planned = dry_run() or nil }
    if dry_run() then
      result.url = o.url or ("http://%s.%s.svc"):format(o.service, ns)
      return result
    end
    local verify = o.verify or {}
    local ready = o.ready_timeout or (verify.retries and (verify.retries * (verify.interval or 1))) or 60
    local ok, err = pcall(hoist.k8s.rollout, { client = c, name = wname, namespace = ns, timeout = o.rollout_timeout,
                                               ready_timeout = ready, crashloop_restarts = math.floor(o.crashloop_restarts) })
    local url
    if ok then
      result.revision = err.revision
      url = service_url(o, c, ns, o.service)
      if not url then
        err = hoist.new_error { code = "rollout_failed", message = ("service %s/%s has no address reachable from here "
          .. "(no LoadBalancer ingress): give the target option url"):format(ns, o.service) }
        ok = false
      else
        local vok, verr = pcall(hoist.verify.http, { name = ("GET %s%s (service %s)"):format(url, o.health_path, o.service),
          url = url .. o.health_path, expect_status = 200, retries = verify.retries or 10, interval = verify.interval or 1,
          timeout = verify.timeout or 5 })
        if not vok then ok, err = false, verr end
      end
    end
    if not ok then
      if hoist.is_error(err, "cancelled") then error(err, 0) end
      local d = hoist.is_error(err) and err.details or {}
      hoist.log.error(hoist.is_error(err) and err.message or tostring(err), { reason = d.reason, pod = d.pod, container = d.container })
      print_evidence(d)
      local back = roll_back(c, ns, o, before, created, changed)
      local details = {}
      for k, v in pairs(type(d) == "table" and d or {}) do details[k] = v end
      details.rolled_back = before and { revision = before.revision, image = before.image } or { deleted = #created }
      fail("rollout_failed", ("%s; %s"):format(hoist.is_error(err) and err.message or tostring(err), back), details)
    end
    result.url = url
    require("hoist.targets").test_pause("HOIST_TEST_PAUSE_AFTER_SWITCH", "after the rollout of " .. wname)
    hoist.log.event(name .. ".deployed", ("%s serves %s from %s (revision %s)"):format(what_of("Deployment", ns, wname), url,
      o.image, tostring(result.revision)), { namespace = ns, name = wname, image = o.image, url = url })
    return result
  end

  --- Applies, tracks the rollout, verifies through the Service; rolls back and raises
  --- rollout_failed (reason and evidence in details) when the rollout or the check fails.
  ---@param opts hoist.targets.DeployOptions|table
  ---@return hoist.targets.DeployResult|table
  function T.deploy(opts)
    local o = checked(opts)
    local c, ns = client_of(o)
    o.client, o.namespace = c, ns
    local h = lease.acquire { client = c, namespace = ns, name = o.service, run = o.run, timeout = o.lock_timeout, target = name }
    local ok, r = pcall(deploy, o, c, ns)
    h:release()
    if not ok then error(r, 0) end
    return r
  end

  --- What serves now: the Deployment's image and availability, the Service's URL.
  ---@param opts {service: string, namespace?: string, url?: string}|table plus the cluster options
  ---@return hoist.targets.Status|{namespace: string, revision?: string, replicas?: table}
  function T.status(o) -- checked by hoist.targets.define
    local c, ns = client_of(o)
    local d = c:get { kind = "Deployment", api_version = "apps/v1", name = o.service, namespace = ns, missing_ok = true }
    local cs = d and d.spec.template.spec.containers or {}
    return { service = o.service, namespace = ns, serving = d ~= nil and ((d.status or {}).availableReplicas or 0) > 0,
             image = cs[1] and cs[1].image, url = d and service_url(o, c, ns, o.service) or nil,
             revision = d and (meta(d).annotations or {})["deployment.kubernetes.io/revision"],
             replicas = d and d.status }
  end

  --- Deletes what the target made for the service (labelled app.kubernetes.io/name=<service>
  --- and managed-by hoist), holding its Lease. Idempotent; plans under dry-run.
  ---@param opts {service: string, namespace?: string, lock_timeout?: number}|table plus the cluster options
  ---@return {removed: string[], namespace: string, planned?: boolean}
  function T.remove(opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    if type(o.service) ~= "string" then fail("invalid_argument", ("targets.%s.remove: expected {service=}"):format(name)) end
    local c, ns = client_of(o)
    local h = lease.acquire { client = c, namespace = ns, name = o.service, run = hoist.run.id or "teardown",
                              timeout = o.lock_timeout, target = name }
    local ok, r = pcall(function()
      local removed = {}
      local sel = ("app.kubernetes.io/name=%s,app.kubernetes.io/managed-by=hoist"):format(o.service)
      for _, kind in ipairs { "PodDisruptionBudget", "HorizontalPodAutoscaler", "Deployment", "Service", "Secret", "ServiceAccount" } do
        for _, item in ipairs(c:list { kind = kind, namespace = ns, label_selector = sel }.items) do
          c:delete { kind = kind, name = item.metadata.name, namespace = ns, propagation = "Background", missing_ok = true }
          removed[#removed + 1] = kind .. "/" .. item.metadata.name
        end
      end
      return { removed = removed, namespace = ns, planned = dry_run() or nil }
    end)
    h:release()
    if not ok then error(r, 0) end
    return r
  end

  --- Before a build: the service name by Kubernetes' rule, the cluster reached with the
  --- kubeconfig (or, for aks, Azure's), the namespace there, and your own `manifests`
  --- (hoist.k8s.check_manifests: server-side dry runs store nothing).
  ---@param o table the deploy options, checked
  ---@return string[] what was checked
  function T.preflight(o)
    if not o.service:match("^[a-z0-9][%-a-z0-9]*$") or #o.service > 63 or o.service:sub(-1) == "-" then
      fail("invalid_argument", ("targets.%s: service must be an RFC 1123 label (1-63 lower-case letters, digits and '-', "
        .. "beginning and ending with a letter or digit), got %q"):format(name, o.service), { option = "service", exit_code = 2 })
    end
    local c, ns = client_of(o)
    local got = c:get { kind = "Namespace", api_version = "v1", name = ns, missing_ok = true }
    if not got then
      fail("invalid_argument", ("targets.%s: namespace %s does not exist in cluster %s (context %s): create it first "
        .. "(kubectl create namespace %s) or give namespace="):format(name, ns, tostring(c.server), tostring(c.context), ns),
        { namespace = ns, exit_code = 2 })
    end
    -- What the deploy will write, as a server-side dry run: the manifests (with the image to
    -- come; set_image reads the Deployment it patches) and the workload's Lease. The server
    -- checks them as it would the real writes: the schema, admission, and whether this
    -- user may write them (RBAC authorizes a dry run like the write), so a missing role is
    -- found before the build.
    local planned = setmetatable({ image = o.image or "registry.invalid/hoist-preflight:0" }, { __index = o })
    local objects = manifests_of(planned, c, o.run or "preflight", ns)
    objects[#objects + 1] = { apiVersion = "coordination.k8s.io/v1", kind = "Lease",
                              metadata = { name = lease.name("Deployment", o.service), namespace = ns } }
    local ok, err = pcall(hoist.k8s.check_manifests, objects, { client = c, namespace = ns, force = true }) -- as the deploy applies
    if not ok then
      if not hoist.is_error(err) or err.code == "cancelled" then error(err, 0) end
      if err.code == "forbidden" or err.code == "unauthorized" or err.code == "invalid_argument" then
        err.message = ("targets.%s: the deploy would be refused: %s"):format(name, err.message)
        err.details = err.details or {}
        err.details.exit_code = 2
      end
      error(err, 0)
    end
    return { ("cluster %s answers (context %s)"):format(tostring(c.server), tostring(c.context)), ("namespace %s exists"):format(ns),
             ("the server accepts the %d objects and the Lease as a dry run (schema, admission, this user's roles)"):format(#objects - 1) }
  end

  -- Options a script may pass that are not parameters: a hoist.k8s client it made itself.
  T.extra_options = { client = "table" }
  return require("hoist.targets").define(T)
end

-- The kubernetes target: a kubeconfig context.
-- A rollback from a later process (another $KUBECONFIG, another current-context) must reach
-- the same cluster: the journal keeps the files and the context this deploy used.
local target = M.make("kubernetes", function(w)
  return hoist.k8s.client { kubeconfig = w.kubeconfig, context = w.kube_context }
end, { kubeconfig = own_options.kubeconfig, kube_context = own_options.kube_context }, "hoist.targets.kubernetes", function(w, c)
  return { kubeconfig = w.kubeconfig or os.getenv("KUBECONFIG"), kube_context = c.context ~= "" and c.context or nil }
end)
target.make = M.make
return target
