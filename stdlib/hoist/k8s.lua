--- hoist.k8s: a Kubernetes client. Clients come from kubeconfig (KUBECONFIG with several
--- files, contexts, certificates, tokens, exec credential plugins such as kubelogin) or the
--- in-cluster service account; they get, list, watch, create, patch, delete and apply
--- (server-side apply, field manager "hoist") any kind the server's discovery knows, CRDs
--- included. `classify` says how a rollout stands from one object (kubectl's rules).
--- Mutating calls are plan steps under --dry-run; `server_dry_run` asks the server instead.
--- Reference: docs/kubernetes.md.
local native = require "hoist.native.k8s"
local util = require "hoist.util"

local await, fail = util.await, util.fail

local M = {}

--- Retry defaults for every request of every client (change them here for the whole run, or
--- per call). 429 and 5xx answers and connection errors are retried with backoff, jitter and
--- the server's Retry-After.
---@class hoist.k8s.Defaults
---@field attempts integer tries per request (1 = no retry)
---@field backoff number first delay in seconds; doubles each try
---@field max_backoff number longest delay between tries
---@field timeout number seconds per request
---@field crashloop_restarts integer a crashed container restarted this often is failing (classify)
M.defaults = { attempts = 4, backoff = 0.2, max_backoff = 10, timeout = 60, crashloop_restarts = 2 }

local call_spec = util.spec(util.rest_options, { server_dry_run = "boolean" })

-- fname's options: the call options, the target fields given, and `extra`; defaults filled in.
local function options(fname, opts, extra)
  local o = util.check_opts(fname, opts, util.spec(call_spec, extra))
  for _, k in ipairs { "attempts", "backoff", "max_backoff", "timeout" } do
    if o[k] == nil then o[k] = M.defaults[k] end
  end
  return o
end

local target = {
  kind = { type = "string", required = true }, name = "string", api_version = "string", namespace = "string",
}
local function with_target(extra) return util.spec(target, extra) end
local named = with_target { name = { type = "string", required = true } }

---@class hoist.k8s.Client
---@field context string the kubeconfig context ("" in-cluster)
---@field namespace string the default namespace of calls
---@field server string
local Client = {}
Client.__index = Client
Client.__tostring = function(self) return tostring(self.native) end

---@class hoist.k8s.ClientOptions
---@field kubeconfig? string files joined by ':' (default: $KUBECONFIG, else ~/.kube/config)
---@field context? string default: current-context
---@field namespace? string default: the context's, else "default"
---@field service_account_dir? string in-cluster credentials (default /var/run/secrets/kubernetes.io/serviceaccount)
---@field max_requests? integer requests in flight at once, watch streams not counted (default 8): each holds a connection

--- A client for one kubeconfig context (or the in-cluster service account when there is no
--- kubeconfig). Credentials are read now; tokens and keys become secrets of the run.
---@param opts? hoist.k8s.ClientOptions
---@return hoist.k8s.Client
function M.client(opts)
  local o = util.check_opts("hoist.k8s.client", opts, {
    kubeconfig = "string", context = "string", namespace = "string", service_account_dir = "string", max_requests = "integer",
  })
  if o.max_requests and o.max_requests < 1 then
    fail("invalid_argument", "hoist.k8s.client: max_requests must be at least 1, got " .. o.max_requests)
  end
  local n = native.client(o)
  local info = n:info()
  return setmetatable({ native = n, context = info.context, namespace = info.namespace, server = info.server,
                        source = info.source }, Client)
end

---@class hoist.k8s.CallOptions
---@field attempts? integer
---@field backoff? number
---@field max_backoff? number
---@field timeout? number
---@field dry_run? boolean plan only (also on with `hoist run --dry-run`)
---@field server_dry_run? boolean the server validates and stores nothing (?dryRun=All)

---@class hoist.k8s.Target: hoist.k8s.CallOptions
---@field kind string Kind, plural, singular or short name: "Deployment", "deployments", "deploy"
---@field api_version? string "apps/v1"; absent: the server's preferred version of the kind
---@field name? string
---@field namespace? string default: the client's

--- One object. With `missing_ok`, nil when it does not exist (else a not_found error).
---@param opts hoist.k8s.Target|{missing_ok?: boolean}
---@return table|nil
function Client:get(opts)
  local o = options("hoist.k8s.get", opts, with_target { name = { type = "string", required = true }, missing_ok = "boolean" })
  local ok, res = self.native:get(o)
  if not ok and o.missing_ok and type(res) == "table" and res.code == "not_found" then return nil end
  return await(ok, res)
end

--- Every object of a kind (all pages: `page_size` per request), as the server's List:
--- {apiVersion, kind, metadata = {resourceVersion}, items}. Each item carries its kind.
---@param opts hoist.k8s.Target|{all_namespaces?: boolean, label_selector?: string, field_selector?: string, limit?: integer, page_size?: integer}
---@return {items: table[], metadata: table}
function Client:list(opts)
  return await(self.native:list(options("hoist.k8s.list", opts, with_target {
    all_namespaces = "boolean", label_selector = "string", field_selector = "string", limit = "integer", page_size = "integer",
  })))
end

--- Creates an object (POST). AlreadyExists raises a conflict error.
---@param object table
---@param opts? hoist.k8s.CallOptions|{namespace?: string}
---@return table created the object as stored, or {planned = true, ...} in dry-run
function Client:create(object, opts)
  local o = options("hoist.k8s.create", opts, { namespace = "string" })
  o.object = object
  return await(self.native:create(o))
end

--- Server-side apply of one object (field manager "hoist"). A conflict with another field
--- manager raises `conflict` unless `force`.
---@param object table
---@param opts? hoist.k8s.CallOptions|{namespace?: string, force?: boolean}
---@return table applied the object as stored, or {planned = true, ...} in dry-run
function Client:apply(object, opts)
  local o = options("hoist.k8s.apply", opts, { namespace = "string", force = "boolean" })
  o.object = object
  return await(self.native:apply(o))
end

--- Patches an object: `type` "merge" (RFC 7386, the default), "strategic" (Kubernetes'
--- strategic merge) or "json" (RFC 6902); `patch` a table or the patch's text.
---@param opts hoist.k8s.Target|{patch: table|string, type?: "merge"|"strategic"|"json"}
---@return table
function Client:patch(opts)
  local spec = with_target { name = { type = "string", required = true }, patch = { type = "table|string", required = true },
                             type = { type = "string", allowed = { "merge", "strategic", "json" }, default = "merge" } }
  return await(self.native:patch(options("hoist.k8s.patch", opts, spec)))
end

--- Deletes an object; `propagation` Foreground, Background or Orphan (default: the
--- server's). With `missing_ok`, a missing object is not an error (returns nil).
---@param opts hoist.k8s.Target|{propagation?: "Foreground"|"Background"|"Orphan", missing_ok?: boolean}
---@return table|nil status the server's answer
function Client:delete(opts)
  local o = options("hoist.k8s.delete", opts, with_target {
    name = { type = "string", required = true }, missing_ok = "boolean",
    propagation = { type = "string", allowed = { "Foreground", "Background", "Orphan" } },
  })
  local ok, res = self.native:delete(o)
  if not ok and o.missing_ok and type(res) == "table" and res.code == "not_found" then return nil end
  return await(ok, res)
end

--- The REST resource of a kind, from discovery (cached per client).
---@param opts {kind: string, api_version?: string}
---@return {group: string, version: string, api_version: string, kind: string, name: string, namespaced: boolean, verbs: string[]}
function Client:resource(opts)
  return await(self.native:resource(options("hoist.k8s.resource", opts, { kind = { type = "string", required = true }, api_version = "string" })))
end

--- The last lines a pod's container wrote; `previous` for the run before its last restart.
---@param opts {name: string, namespace?: string, container?: string, tail_lines?: integer, previous?: boolean}|hoist.k8s.CallOptions
---@return string
function Client:logs(opts)
  return await(self.native:logs(options("hoist.k8s.logs", opts, {
    name = { type = "string", required = true }, namespace = "string", container = "string", tail_lines = "integer",
    previous = "boolean",
  })))
end

--- How many streams the client's shared watches (`watch{shared = true}`) hold open now.
---@return integer
function Client:shared_streams() return self.native:info().shared_streams end

---@class hoist.k8s.Watch
local Watch = {}
Watch.__index = Watch

---@class hoist.k8s.WatchEvent
---@field type "LIST"|"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"
---@field object table the object; for LIST the whole list ({items, metadata}): replace what you knew

--- The next event; nil after `timeout` seconds without one (0 or nil: wait). Raises the
--- watch's error once it failed (a 410 or a dropped stream never does: they relist or
--- reconnect).
---@param timeout? number
---@return hoist.k8s.WatchEvent|nil
function Watch:next(timeout) return await(self.native:next(timeout or 0)) end

--- {resource_version, reconnects, relists}
---@return {resource_version: string, reconnects: integer, relists: integer}
function Watch:info() return self.native:info() end

--- Stops the watch (also when the object is collected).
function Watch:close() self.native:close() end

--- Watches a kind: first a LIST event (unless `resource_version` is given), then every
--- change. Reconnects from the last resourceVersion when a stream ends or drops; relists on
--- 410 Gone. At most `max_queued` events wait for next() before the watch fails. `shared`:
--- join this client's one stream of the kind in the namespace (opened by the first shared
--- watch, closed with the last), its selectors evaluated by hoist (label selectors in full,
--- field selectors on metadata.name and metadata.namespace); no BOOKMARK events, no
--- `resource_version`.
---@param opts hoist.k8s.Target|{all_namespaces?: boolean, label_selector?: string, field_selector?: string, resource_version?: string, timeout_seconds?: integer, bookmarks?: boolean, max_queued?: integer, page_size?: integer, shared?: boolean}
---@return hoist.k8s.Watch
function Client:watch(opts)
  local o = options("hoist.k8s.watch", opts, with_target {
    all_namespaces = "boolean", label_selector = "string", field_selector = "string", resource_version = "string",
    timeout_seconds = "integer", bookmarks = "boolean", max_queued = "integer", page_size = "integer", shared = "boolean",
  })
  return setmetatable({ native = self.native:watch(o) }, Watch)
end

--- Objects from manifests: YAML or JSON text with any number of documents, one object, or a
--- list of objects; `kind: List` expanded. Each must have apiVersion, kind and metadata.name.
---@param manifests string|table
---@return table[]
function M.parse_manifests(manifests)
  if type(manifests) ~= "string" and type(manifests) ~= "table" then
    fail("invalid_argument", "hoist.k8s.parse_manifests: expected YAML text or a table, got " .. type(manifests))
  end
  return native.parse_manifests(manifests)
end

-- Namespaces and CRDs first: the objects that live in them or are of their kind need them.
local first = { Namespace = 1, CustomResourceDefinition = 2 }

--- Checks every object before any is written: its kind and apiVersion by discovery, then the
--- apply itself as a server-side dry run (admission, schema, immutable fields), unless the
--- run is a dry run (then discovery only). Raises the first problem, naming the document and
--- saying nothing was changed: an unknown kind or apiVersion is `invalid_argument`; a
--- refusal keeps the server's code, message and causes in `details`.
---@param objects table[] objects (hoist.k8s.parse_manifests)
---@param opts {client: hoist.k8s.Client, namespace?: string, force?: boolean}
function M.check_manifests(objects, opts)
  local o = util.check_opts("hoist.k8s.check_manifests", opts, { client = { type = "table", required = true },
                                                                 namespace = "string", force = "boolean" })
  for i, obj in ipairs(objects) do
    local m = obj.metadata or {}
    local what = ("document %d (%s %s, apiVersion %s)"):format(i, tostring(obj.kind), tostring(m.name), tostring(obj.apiVersion))
    local step = "discovery"
    local ok, err = pcall(function()
      o.client:resource { kind = obj.kind, api_version = obj.apiVersion }
      step = "dry run"
      if not util.dry_run() then
        o.client:apply(obj, { namespace = o.namespace, force = o.force, server_dry_run = true })
      end
    end)
    if not ok then
      if not hoist.is_error(err) or err.code == "cancelled" then error(err, 0) end
      local details = { document = i, kind = obj.kind, name = m.name, api_version = obj.apiVersion, server = err.details }
      -- a kind or version the server does not serve is the manifest's fault
      local code = (step == "discovery" and err.code == "not_found") and "invalid_argument" or err.code
      fail(code, ("%s: %s; nothing was changed"):format(what, err.message), details, err.retryable)
    end
  end
end

--- Applies manifests in order (Namespaces and CustomResourceDefinitions first), each with
--- server-side apply, after checking them all (hoist.k8s.check_manifests): a bad document
--- fails the call before any write. Returns what the server stored, in the order applied.
--- `client` or the client options choose the cluster.
---@param manifests string|table YAML text, one object or a list of objects
---@param opts? hoist.k8s.ClientOptions|hoist.k8s.CallOptions|{client?: hoist.k8s.Client, force?: boolean}
---@return table[]
function M.apply(manifests, opts)
  local o = util.check_opts("hoist.k8s.apply", opts, util.spec(call_spec, {
    client = "table", kubeconfig = "string", context = "string", namespace = "string", force = "boolean",
  }))
  local objects = M.parse_manifests(manifests)
  local client = o.client or M.client { kubeconfig = o.kubeconfig, context = o.context, namespace = o.namespace }
  for i, obj in ipairs(objects) do obj = { i = i, obj = obj }; objects[i] = obj end
  table.sort(objects, function(a, b)
    local ra, rb = first[a.obj.kind] or 3, first[b.obj.kind] or 3
    if ra ~= rb then return ra < rb end
    return a.i < b.i
  end)
  local sorted = {}
  for i, x in ipairs(objects) do sorted[i] = x.obj end
  -- a Namespace or CRD the later documents need does not exist before the first write: the
  -- server cannot dry-run those documents, so they are checked after that write
  local early = 0
  for i, x in ipairs(objects) do if first[x.obj.kind] then early = i end end
  local check = { client = client, namespace = o.namespace, force = o.force }
  M.check_manifests(early > 0 and { unpack(sorted, 1, early) } or sorted, check)
  local out = {}
  for i, x in ipairs(objects) do
    if early > 0 and i == early + 1 then M.check_manifests({ unpack(sorted, i) }, check) end
    out[i] = client:apply(x.obj, { namespace = o.namespace, force = o.force, attempts = o.attempts, backoff = o.backoff,
                                   max_backoff = o.max_backoff, timeout = o.timeout, dry_run = o.dry_run,
                                   server_dry_run = o.server_dry_run })
  end
  return out
end

---@class hoist.k8s.Classification
---@field verdict "done"|"progressing"|"failed"|"suspended"|"unknown"
---@field reason string ProgressDeadlineExceeded, ImagePullBackOff, ErrImagePull, InvalidImageName, CrashLoopBackOff, OOMKilled, CreateContainerConfigError, Unschedulable, ...
---@field message string kubectl's words where kubectl has some
---@field progress? {replicas: integer, current: integer, updated: integer, ready: integer, available: integer}
---@field details? table container, image, restarts, exit_code, missing = {kind, name}, ...

--- How a rollout stands from one object: Deployment, StatefulSet, DaemonSet (kubectl
--- rollout status's rules), Job, Pod (the failure reasons), ReplicaSet, Service, Ingress, PVC.
---@param object table
---@param opts? {crashloop_restarts?: integer}
---@return hoist.k8s.Classification
function M.classify(object, opts)
  local o = util.check_opts("hoist.k8s.classify", opts, { crashloop_restarts = "integer" })
  if type(object) ~= "table" then fail("invalid_argument", "hoist.k8s.classify: expected an object table, got " .. type(object)) end
  return native.classify(object, o.crashloop_restarts or M.defaults.crashloop_restarts)
end

--- Waits for a Deployment, StatefulSet, DaemonSet or Job to roll out, watching it, its
--- ReplicaSets, Pods and Events (one watch each); emits `k8s.rollout.progress` events ("2/3
--- updated, 1 ready, 1 available"); fails fast with `rollout_failed` and a typed reason
--- (ImagePullBackOff, ErrImagePull, InvalidImageName, CrashLoopBackOff, OOMKilled,
--- CreateContainerConfigError, Unschedulable, ReadinessTimeout, ProgressDeadlineExceeded,
--- ...) with the evidence in `details` (pods, events, logs); `timeout` when not done in time.
---@param opts hoist.k8s.RolloutOptions
---@return hoist.k8s.RolloutResult
function M.rollout(opts) return require("hoist.k8s.rollout").run(opts) end

--- The manifests of a web service (Deployment + Service, and HPA, PDB, ServiceAccount) with
--- the scenarios' production defaults; see docs/kubernetes.md, "Manifests".
---@param spec hoist.k8s.AppSpec
---@return table[] manifests in the order to apply them
function M.app(spec) return require("hoist.k8s.app").app(spec) end

--- Rolls a Deployment back to its previous revision (or `to_revision`) as `kubectl rollout
--- undo` does; idempotent. See docs/kubernetes.md, "Rollback".
---@param opts hoist.k8s.UndoOptions
---@return hoist.k8s.UndoResult
function M.undo(opts) return require("hoist.k8s.undo").undo(opts) end

--- Where a Service answers from this machine: `url` when given, else the Kubernetes
--- emulator's published address (annotation hoist.dev/emulator-address), else its first
--- LoadBalancer ingress with its first port; nil when it has none (or does not exist).
---@param opts {name: string, namespace?: string, client: hoist.k8s.Client, url?: string}
---@return string|nil url "http://host:port", no trailing slash
function M.service_url(opts)
  local o = util.check_opts("hoist.k8s.service_url", opts, { name = { type = "string", required = true }, namespace = "string",
                                                             client = { type = "table", required = true }, url = "string" })
  if o.url then return (o.url:gsub("/+$", "")) end
  local svc = o.client:get { kind = "Service", api_version = "v1", name = o.name, namespace = o.namespace, missing_ok = true }
  if not svc then return nil end
  local addr = ((svc.metadata or {}).annotations or {})["hoist.dev/emulator-address"]
  if addr then return "http://" .. addr end
  local ingress = (((svc.status or {}).loadBalancer or {}).ingress or {})[1]
  local port = (((svc.spec or {}).ports or {})[1] or {}).port or 80
  if ingress then return ("http://%s:%d"):format(ingress.hostname or ingress.ip, port) end
end

-- hoist.k8s.<name> reaches the submodules stdlib/hoist/k8s/<name>.lua (hoist.k8s.app, ...).
setmetatable(M, {
  __index = function(t, k)
    local name = "hoist.k8s." .. tostring(k)
    if package.loaded[name] or package.preload[name] then
      local v = require(name)
      rawset(t, k, v)
      return v
    end
  end,
})

return M
