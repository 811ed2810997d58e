--- hoist.k8s.helm: Helm releases through the helm v3 CLI, with hoist's own rollout tracking.
--- `upgrade` writes the values (a Lua table) to a private JSON values file, runs `helm upgrade
--- --install` without `--wait` (helm's wait sits out its timeout on a pod that will never
--- start), then tracks every Deployment, StatefulSet, DaemonSet and Job of the release's
--- manifest with hoist.k8s.rollout, in parallel, failing with the first reason the cluster
--- shows. The compensation `k8s.helm_rollback {release, namespace, revision}` (or
--- `k8s.helm_uninstall` for a first install) is journaled BEFORE the upgrade, so `hoist
--- rollback <id>` can run it from a later process. Reference: docs/kubernetes.md, "Helm".
local util = require "hoist.util"
local json = require "hoist.json"

local fail = util.fail

local M = {}

--- Policy: helm's timeout for the upgrade itself (hoist tracks the rollout after it), and the
--- extra seconds hoist gives the helm process over its own --timeout before killing it.
---@class hoist.k8s.helm.Defaults
---@field timeout number seconds, helm's --timeout and hoist's rollout budget
---@field grace number seconds the helm process may run past its --timeout
M.defaults = { timeout = 600, grace = 30 }

local HOW_TO = "install helm v3 (https://helm.sh/docs/intro/install/) on PATH or set HOIST_HELM=/path/to/helm"

--- The helm program: `given` (a call's `helm` option), else $HOIST_HELM (a path, or a name
--- Internal: how hoist.k8s.helm finds helm (HOIST_HELM, then PATH).
--- looked up on PATH), else helm on PATH. Raises tool_missing saying how to get one.
---@param given? string
---@return string
function M.binary(given)
  local env = given or os.getenv("HOIST_HELM")
  if env and env ~= "" then
    local path = env:find("/", 1, true) and env or hoist.which(env)
    if not path or not hoist.fs.exists(path) then
      fail("tool_missing", ("%s=%s: no such program; %s"):format(given and "helm" or "HOIST_HELM", env, HOW_TO), { tool = "helm" })
    end
    return path
  end
  local path = hoist.which("helm")
  if not path then fail("tool_missing", "helm is not installed: " .. HOW_TO, { tool = "helm" }) end
  return path
end

-- helm's words -> error code, first match wins: "another operation ... in progress" is a
-- conflict even inside an "UPGRADE FAILED:" line, and "not found" must not catch it.
local classes = {
  { "conflict", { "another operation (install/upgrade/rollback) is in progress", "cannot re-use a name that is still in use" } },
  { "unauthorized", { "unauthorized", "you must be logged in" } },
  { "forbidden", { "forbidden" } },
  { "unavailable", { "connection refused", "no such host", "i/o timeout", "kubernetes cluster unreachable" } },
  { "timeout", { "timed out waiting for the condition", "context deadline exceeded" } },
  { "invalid_argument", { "unknown flag", "unknown command", "requires", "invalid argument", "parse error",
                          "path .* not found", "chart.yaml file is missing", "values don't meet the specifications" } },
  { "not_found", { "release: not found", "has no deployed releases", "not found" } },
}

local function classify(text)
  local low = text:lower()
  for _, c in ipairs(classes) do
    for _, p in ipairs(c[2]) do
      if low:find(p, 1, not p:find("%.%*")) then return c[1] end
    end
  end
  return "tool_failed"
end

-- The argv's common tail: cluster selection and namespace (never a secret: helm reads the
-- kubeconfig itself).
local AKS_KUBECONFIG = {} -- stands in the argv for the AKS kubeconfig file run() writes

local function cluster_args(argv, o)
  if o.aks then argv[#argv + 1] = "--kubeconfig"; argv[#argv + 1] = AKS_KUBECONFIG end
  if o.kubeconfig then argv[#argv + 1] = "--kubeconfig"; argv[#argv + 1] = o.kubeconfig end
  if o.context then argv[#argv + 1] = "--kube-context"; argv[#argv + 1] = o.context end
  argv[#argv + 1] = "--namespace"
  argv[#argv + 1] = o.namespace
  return argv
end

-- Runs helm; a non-zero exit raises with helm's own "Error: ..." line as the message.
-- With `aks`, helm reads the cluster's kubeconfig from a 0600 file in a private folder that
-- lives for this one call.
local function run(what, argv, o, timeout)
  local spec = { timeout = timeout or (o.timeout + M.defaults.grace) }
  local dir
  for i, a in ipairs(argv) do
    if a == AKS_KUBECONFIG then
      dir = hoist.exec({ "mktemp", "-d", "/tmp/hoist-helm-aks.XXXXXX", check = true }).stdout:match("%S+")
      hoist.fs.write_file(dir .. "/kubeconfig", require("hoist.targets.aks").kubeconfig(o.aks), { mode = "0600" })
      a = dir .. "/kubeconfig"
      argv[i] = a
    end
    spec[i] = a
  end
  local ok, r = pcall(hoist.exec, spec)
  if dir then
    hoist.fs.remove(dir, { recursive = true })
    for i, a in ipairs(argv) do if a == dir .. "/kubeconfig" then argv[i] = AKS_KUBECONFIG end end
  end
  if not ok then error(r, 0) end
  if r.code == 0 then return r end
  local text = (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "")
  local last = text:match("Error: ([^\n]*)[^\n]*$") or text:match("([^\n]*)$") or ""
  local code = r.timed_out and "timeout" or classify(text)
  fail(code, ("helm %s %s in %s: %s"):format(what, o.release or "", o.namespace, last ~= "" and last or ("exit code " .. r.code)),
    { tool = "helm", argv = argv, exit_code = r.code, stderr = text:sub(-2000), release = o.release, namespace = o.namespace })
end

local common = {
  release = { type = "string", required = true }, namespace = "string", kubeconfig = "string", context = "string",
  client = "table", timeout = "number", helm = "string", aks = "table",
}
local function spec_with(extra) return util.spec(common, extra) end

-- Options checked, namespace filled in (the call's, else the client's, else the kubeconfig's).
local function options(fname, opts, extra)
  local o = util.check_opts(fname, opts, spec_with(extra))
  if #o.release > 53 or not o.release:match("^[a-z0-9][%-a-z0-9]*$") or not o.release:match("[a-z0-9]$") then
    fail("invalid_argument", ("%s: release %q must be a lower-case RFC 1123 name of at most 53 characters"):format(fname, o.release),
      { option = "release" })
  end
  o.timeout = o.timeout or M.defaults.timeout
  if o.aks then
    if o.kubeconfig or o.context then
      fail("invalid_argument", ("%s: give aks or kubeconfig/context, not both"):format(fname), { option = "aks" })
    end
    -- the cluster's kubeconfig from ARM (hoist.targets.aks), as `az aks get-credentials` would
    o.client = o.client or require("hoist.targets.aks").client(o.aks)
  end
  if not o.namespace then
    o.client = o.client or hoist.k8s.client { kubeconfig = o.kubeconfig, context = o.context }
    o.namespace = o.client.namespace
  end
  o.helm = M.binary(o.helm)
  return o
end

-- The common options of a checked call, to pass on to another call of this module.
local function common_of(o, extra)
  local out = { release = o.release, namespace = o.namespace, kubeconfig = o.kubeconfig, context = o.context, client = o.client,
                timeout = o.timeout, helm = o.helm, aks = o.aks }
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

---@class hoist.k8s.helm.Revision
---@field revision integer
---@field status string deployed, superseded, failed, pending-install, pending-upgrade, pending-rollback, uninstalled
---@field chart string "app-0.1.0"
---@field app_version string
---@field description string
---@field updated string

--- The release's revisions, oldest first ({} when there is no such release).
---@param opts {release: string, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, timeout?: number}
---@return hoist.k8s.helm.Revision[]
function M.history(opts)
  local o = options("hoist.k8s.helm.history", opts)
  local argv = cluster_args({ o.helm, "history", o.release, "--output", "json" }, o)
  local ok, r = pcall(run, "history", argv, o, 120)
  if not ok then
    if hoist.is_error(r, "not_found") then return {} end
    error(r, 0)
  end
  local rows = json.decode(r.stdout)
  local out = {}
  for i, row in ipairs(rows) do
    out[i] = { revision = tonumber(row.revision), status = row.status, chart = row.chart, app_version = row.app_version,
               description = row.description, updated = row.updated }
  end
  return out
end

--- The release's latest revision as helm reports it: {name, namespace, version, info = {status,
--- description, ...}} (helm status -o json), or nil when there is no such release.
---@param opts {release: string, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, revision?: integer}
---@return table|nil
function M.status(opts)
  local o = options("hoist.k8s.helm.status", opts, { revision = "integer" })
  local argv = cluster_args({ o.helm, "status", o.release, "--output", "json" }, o)
  if o.revision then argv[#argv + 1] = "--revision"; argv[#argv + 1] = tostring(o.revision) end
  local ok, r = pcall(run, "status", argv, o, 120)
  if not ok then
    if hoist.is_error(r, "not_found") then return nil end
    error(r, 0)
  end
  return json.decode(r.stdout)
end

--- The objects a revision of the release applied (`helm get manifest`), parsed.
---@param opts {release: string, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, revision?: integer}
---@return table[]
function M.manifest(opts)
  local o = options("hoist.k8s.helm.manifest", opts, { revision = "integer" })
  local argv = cluster_args({ o.helm, "get", "manifest", o.release }, o)
  if o.revision then argv[#argv + 1] = "--revision"; argv[#argv + 1] = tostring(o.revision) end
  local text = run("get manifest", argv, o, 120).stdout
  if not text:find("%S") then return {} end
  return hoist.k8s.parse_manifests(text)
end

-- The last revision that was deployed (what a rollback goes back to), or nil.
local function last_deployed(history)
  for i = #history, 1, -1 do
    if history[i].status == "deployed" then return history[i] end
  end
end

--- Rolls the release back to `revision` (default: the one before the latest), as `helm
--- rollback` does: a new revision with that revision's manifest and values. Idempotent: when
--- the latest revision is already a deployed rollback to `revision`, nothing is done. With
--- `track` (default true) the workloads are then tracked like after an upgrade.
---@param opts {release: string, revision?: integer, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, timeout?: number, track?: boolean}
---@return {release: string, namespace: string, revision: integer, to: integer, skipped?: boolean, planned?: boolean, workloads?: table[]}
function M.rollback(opts)
  local o = options("hoist.k8s.helm.rollback", opts, { revision = "integer", track = { type = "boolean", default = true } })
  local function argv_to(to)
    return cluster_args({ o.helm, "rollback", o.release, tostring(to), "--timeout", ("%ds"):format(math.ceil(o.timeout)) }, o)
  end
  if util.dry_run() then
    util.plan { action = "k8s.helm_rollback", argv = o.revision and argv_to(o.revision) or
                { o.helm, "rollback", o.release, "--namespace", o.namespace } }
    return { release = o.release, namespace = o.namespace, revision = 0, to = o.revision or 0, planned = true }
  end
  local history = M.history(common_of(o))
  if #history == 0 then fail("not_found", ("helm rollback: release %q not found in namespace %s"):format(o.release, o.namespace)) end
  local to = o.revision or (history[#history - 1] and history[#history - 1].revision)
  if not to then fail("not_found", ("helm rollback %s: revision %d is the only one, nothing to go back to"):format(o.release, history[1].revision)) end
  local latest = history[#history]
  if latest.status == "deployed" and (latest.description == ("Rollback to %d"):format(to) or latest.revision == to) then
    return { release = o.release, namespace = o.namespace, revision = latest.revision, to = to, skipped = true }
  end
  hoist.log.event("k8s.helm.rollback", ("helm rollback %s to revision %d in %s"):format(o.release, to, o.namespace),
    { release = o.release, namespace = o.namespace, to = to })
  run("rollback", argv_to(to), o)
  local now = last_deployed(M.history(common_of(o))) or {}
  local out = { release = o.release, namespace = o.namespace, revision = now.revision, to = to }
  if o.track then out.workloads = M.track(common_of(o, { revision = now.revision }))  end
  return out
end

--- Uninstalls the release (its objects and its history). Idempotent: a missing release is not
--- an error.
---@param opts {release: string, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, timeout?: number}
---@return {release: string, namespace: string, removed: boolean, planned?: boolean}
function M.uninstall(opts)
  local o = options("hoist.k8s.helm.uninstall", opts)
  local argv = cluster_args({ o.helm, "uninstall", o.release, "--ignore-not-found", "--timeout", ("%ds"):format(math.ceil(o.timeout)) }, o)
  if util.dry_run() then
    util.plan { action = "k8s.helm_uninstall", argv = argv }
    return { release = o.release, namespace = o.namespace, removed = false, planned = true }
  end
  local r = run("uninstall", argv, o)
  return { release = o.release, namespace = o.namespace, removed = r.stdout:find("uninstalled", 1, true) ~= nil }
end

local trackable = { Deployment = true, StatefulSet = true, DaemonSet = true, Job = true }

--- Tracks the workloads (Deployments, StatefulSets, DaemonSets, Jobs) of a release revision
--- with hoist.k8s.rollout, all at once; the first failure cancels the others and is raised
--- (rollout_failed, with `details.release` and `details.revision` added to the rollout's
--- evidence). Returns each workload's rollout result.
---@param opts {release: string, revision?: integer, namespace?: string, kubeconfig?: string, context?: string, client?: hoist.k8s.Client, timeout?: number, crashloop_restarts?: integer, ready_timeout?: number}
---@return hoist.k8s.RolloutResult[]
function M.track(opts)
  local o = options("hoist.k8s.helm.track", opts, { revision = "integer", crashloop_restarts = "integer", ready_timeout = "number" })
  local client = o.client or hoist.k8s.client { kubeconfig = o.kubeconfig, context = o.context, namespace = o.namespace }
  local workloads = {}
  for _, obj in ipairs(M.manifest(common_of(o, { revision = o.revision }))) do
    if trackable[obj.kind] then workloads[#workloads + 1] = { kind = obj.kind, name = obj.metadata.name,
                                                              namespace = obj.metadata.namespace or o.namespace } end
  end
  local ok, res = pcall(hoist.map, workloads, function(w)
    return hoist.k8s.rollout { kind = w.kind, name = w.name, namespace = w.namespace, client = client, timeout = o.timeout,
                               crashloop_restarts = o.crashloop_restarts, ready_timeout = o.ready_timeout }
  end)
  if ok then return res end
  if type(res) == "table" and res.details then
    res.details.release, res.details.revision = o.release, o.revision
    res.message = ("helm release %s revision %s: %s"):format(o.release, tostring(o.revision or "latest"), res.message)
  end
  error(res, 0)
end

---@class hoist.k8s.helm.UpgradeOptions
---@field release string the release name (RFC 1123, at most 53 characters)
---@field chart string a chart folder, packaged chart or repo/chart reference
---@field namespace? string default: the client's (kubeconfig context's)
---@field create_namespace? boolean helm's --create-namespace
---@field values? table values as a Lua table: written to a 0600 JSON values file (JSON is YAML), removed after
---@field values_files? string[] more values files, before `values` (later files win, as in helm)
---@field set? table<string, string|number|boolean> helm --set a.b=v (never a secret: those go in `values`)
---@field version? string chart version (helm --version)
---@field timeout? number seconds: helm's --timeout and the rollout budget (default 600)
---@field atomic? boolean helm's own --atomic (default false: hoist tracks and compensates itself)
---@field track? boolean track the release's workloads after the upgrade (default true)
---@field crashloop_restarts? integer passed to hoist.k8s.rollout
---@field ready_timeout? number passed to hoist.k8s.rollout
---@field ctx? hoist.StageContext registers the compensation (k8s.helm_rollback or k8s.helm_uninstall) before the upgrade
---@field kubeconfig? string
---@field aks? {resource_group: string, cluster: string, subscription?: string, admin?: boolean, credential?: string|hoist.azure.Credential} an AKS cluster whose kubeconfig hoist fetches from ARM (hoist.targets.aks.kubeconfig) for each helm call, instead of kubeconfig
---@field context? string
---@field client? hoist.k8s.Client

---@class hoist.k8s.helm.UpgradeResult
---@field release string
---@field namespace string
---@field revision integer the new revision
---@field previous? integer the revision deployed before (nil on a first install)
---@field status string helm's status of the new revision
---@field workloads hoist.k8s.RolloutResult[] the tracked rollouts
---@field planned? boolean dry run: nothing changed

-- What a later process needs to reach the AKS cluster again: its names and the credential's
-- source name (a credential object is not JSON: the later process configures that source).
local function journaled_aks(a)
  if not a then return nil end
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  if type(a.credential) == "table" then out.credential = a.credential.source end
  return out
end

--- `helm upgrade --install`, then hoist's tracking of the release's workloads; see the module
--- comment. Raises tool_missing without helm, invalid_argument for bad options, helm's failure
--- mapped to a code (tool_failed, conflict, not_found, ...) with its words, or the rollout's
--- rollout_failed with the evidence.
---@param opts hoist.k8s.helm.UpgradeOptions
---@return hoist.k8s.helm.UpgradeResult
function M.upgrade(opts)
  local o = options("hoist.k8s.helm.upgrade", opts, {
    chart = { type = "string", required = true }, create_namespace = "boolean", values = "table", values_files = "table",
    set = "table", version = "string", atomic = { type = "boolean", default = false },
    track = { type = "boolean", default = true }, crashloop_restarts = "integer", ready_timeout = "number", ctx = "table",
  })
  local argv = { o.helm, "upgrade", o.release, o.chart, "--install", "--timeout", ("%ds"):format(math.ceil(o.timeout)),
                 "--output", "json" }
  cluster_args(argv, o)
  if o.create_namespace then argv[#argv + 1] = "--create-namespace" end
  if o.atomic then argv[#argv + 1] = "--atomic" end
  if o.version then argv[#argv + 1] = "--version"; argv[#argv + 1] = o.version end
  for i, f in ipairs(o.values_files or {}) do
    if type(f) ~= "string" then fail("invalid_argument", ("hoist.k8s.helm.upgrade: values_files[%d] must be a path"):format(i)) end
    if not hoist.fs.exists(f) then fail("not_found", ("hoist.k8s.helm.upgrade: values file %s does not exist"):format(f)) end
    argv[#argv + 1] = "--values"; argv[#argv + 1] = f
  end
  local values_file
  if o.values then
    values_file = os.tmpname()
    argv[#argv + 1] = "--values"; argv[#argv + 1] = values_file
  end
  for _, k in ipairs(util.sorted_keys(o.set)) do
    local v = o.set[k]
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
      fail("invalid_argument", ("hoist.k8s.helm.upgrade: set[%s] must map a path to a string, number or boolean"):format(tostring(k)))
    end
    if hoist.scrub(tostring(v)) ~= tostring(v) then
      fail("invalid_argument", ("hoist.k8s.helm.upgrade: set[%s] holds a secret; pass it in values (a 0600 file), never on helm's command line"):format(k))
    end
    argv[#argv + 1] = "--set"; argv[#argv + 1] = k .. "=" .. tostring(v)
  end
  if util.dry_run() then
    if values_file then os.remove(values_file) end
    util.plan { action = "k8s.helm_upgrade", argv = argv }
    return { release = o.release, namespace = o.namespace, revision = 0, status = "planned", workloads = {}, planned = true }
  end

  local history = M.history(common_of(o))
  local prev = last_deployed(history)
  local base = { release = o.release, namespace = o.namespace, kubeconfig = o.kubeconfig, context = o.context, helm = opts.helm,  -- the caller's words, not a resolved path
                 aks = journaled_aks(o.aks) }
  if o.ctx then  -- journaled before helm changes anything
    if prev then
      base.revision = prev.revision
      o.ctx:on_rollback("k8s.helm_rollback", base)
    elseif #history == 0 then
      o.ctx:on_rollback("k8s.helm_uninstall", base)
    end
  end
  hoist.log.event("k8s.helm.upgrade", ("helm upgrade --install %s (%s) in %s"):format(o.release, o.chart, o.namespace),
    { release = o.release, chart = o.chart, namespace = o.namespace, previous = prev and prev.revision })
  local ok, r = pcall(function()
    if values_file then hoist.fs.write_file(values_file, json.encode(o.values), { mode = "0600" }) end
    return run("upgrade", argv, o)
  end)
  if values_file then os.remove(values_file) end
  if not ok then error(r, 0) end
  local rel = json.decode(r.stdout)
  local out = { release = o.release, namespace = o.namespace, revision = rel.version, previous = prev and prev.revision,
                status = rel.info and rel.info.status, workloads = {} }
  if o.track then
    out.workloads = M.track(common_of(o, { revision = rel.version, crashloop_restarts = o.crashloop_restarts,
                                                ready_timeout = o.ready_timeout }))
  end
  return out
end

-- Named compensations: plain JSON arguments, runnable from `hoist rollback <id>` (with `aks`,
-- the later process fetches the kubeconfig again: it is never journaled).
hoist.pipeline.action("k8s.helm_rollback", function(args)
  M.rollback { helm = args.helm, release = args.release, namespace = args.namespace, revision = args.revision, kubeconfig = args.kubeconfig,
               context = args.context, aks = args.aks }
end)
hoist.pipeline.action("k8s.helm_uninstall", function(args)
  M.uninstall { helm = args.helm, release = args.release, namespace = args.namespace, kubeconfig = args.kubeconfig, context = args.context,
                aks = args.aks }
end)

return M
