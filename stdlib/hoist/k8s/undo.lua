--- hoist.k8s.undo: a Deployment back to an earlier revision, with `kubectl rollout undo`
--- semantics: the ReplicaSet of that revision (found by the revision annotations the
--- deployment controller writes) gives its pod template, without its pod-template-hash label,
--- to the Deployment; the controller then rolls it out as the next revision. Idempotent: when
--- the Deployment's template is that one already, nothing is written.
---
--- Two named rollback actions make it a compensation (JSON arguments, so `hoist rollback
--- <run-id>` runs them from a later process):
---   k8s.rollout_undo {namespace, kind, name, revision, template_hash?, run?, timeout?, kubeconfig?, context?, aks?}:
---                    back to that revision, then waits until it serves
---   k8s.restore      {manifest, existed?, previous?, run?, kubeconfig?, context?, aks?}: deletes what
---                    the run created (it did not exist before), or applies back `previous`,
---                    the object as it was before the run changed it (`existed`)
--- With `run`, both leave an object alone once another run changed it since (its annotation
--- `hoist.dev/run` names that run), and say so. Reference: docs/kubernetes.md, "Rollback".
local util = require "hoist.util"

local fail = util.fail

local M = {}

local REVISION, HISTORY = "deployment.kubernetes.io/revision", "deployment.kubernetes.io/revision-history"
--- The annotation naming the run that last changed an object hoist deployed.
M.RUN_ANNOTATION = "hoist.dev/run"

-- Annotations of a ReplicaSet that are the controller's own, never copied to the Deployment
-- (kubectl's annotationsToSkip).
local skip = {
  [REVISION] = true, [HISTORY] = true, ["deployment.kubernetes.io/desired-replicas"] = true,
  ["deployment.kubernetes.io/max-replicas"] = true, ["kubectl.kubernetes.io/last-applied-configuration"] = true,
}

local function meta(o) return (o and o.metadata) or {} end

-- Deep equality of two JSON values; manifests are shallow, so a depth past 64 is refused
-- rather than followed.
local function same(a, b, depth)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if depth > 64 then fail("invalid_argument", "hoist.k8s.undo: pod template nested deeper than 64 levels") end
  for k, v in pairs(a) do
    if not same(v, b[k], depth + 1) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function copy(v, depth)
  if type(v) ~= "table" then return v end
  if depth > 64 then fail("invalid_argument", "hoist.k8s.undo: pod template nested deeper than 64 levels") end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, depth + 1) end
  return setmetatable(out, getmetatable(v))
end

-- The template a ReplicaSet holds, as the Deployment would hold it.
local function template_of(rs)
  local t = copy((rs.spec or {}).template or {}, 0)
  local labels = t.metadata and t.metadata.labels
  if labels then labels["pod-template-hash"] = nil end
  return t
end

local function revisions_of(rs)
  local a = meta(rs).annotations or {}
  local out = { tonumber(a[REVISION]) }
  for r in tostring(a[HISTORY] or ""):gmatch("%d+") do out[#out + 1] = tonumber(r) end
  return out
end

local function selector_of(d)
  local ml = d.spec and d.spec.selector and d.spec.selector.matchLabels or {}
  local parts = {}
  for k, v in pairs(ml) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, ",")
end

--- The ReplicaSets of a Deployment (owned by it), sorted by revision, newest last.
--- Internal: for hoist.k8s.undo and hoist.k8s.canary.
---@param client hoist.k8s.Client
---@param d table the Deployment
---@return table[]
function M.replica_sets(client, d)
  local list = client:list { kind = "ReplicaSet", api_version = "apps/v1", namespace = meta(d).namespace,
                             label_selector = selector_of(d) }
  local out = {}
  for _, rs in ipairs(list.items) do
    for _, ref in ipairs(meta(rs).ownerReferences or {}) do
      if ref.uid == meta(d).uid then out[#out + 1] = rs break end
    end
  end
  table.sort(out, function(a, b) return (revisions_of(a)[1] or 0) < (revisions_of(b)[1] or 0) end)
  return out
end

-- The ReplicaSet of `revision` (its own or one it came back from), else the one whose
-- pod-template-hash is `hash`; 0 or nil: the previous revision (the second newest), as kubectl.
local function find(rss, revision, hash, what)
  if not revision or revision == 0 then
    if #rss < 2 then
      fail("not_found", ("%s: no previous revision to go back to (%d in its history)"):format(what, #rss),
        { revisions = #rss })
    end
    return rss[#rss - 1]
  end
  for _, rs in ipairs(rss) do
    for _, r in ipairs(revisions_of(rs)) do
      if r == revision then return rs end
    end
  end
  for _, rs in ipairs(rss) do
    if hash and (meta(rs).labels or {})["pod-template-hash"] == hash then return rs end
  end
  local known = {}
  for i, rs in ipairs(rss) do known[i] = tostring(revisions_of(rs)[1]) end
  fail("not_found", ("%s: revision %d not found (revisions: %s)"):format(what, revision,
    #known > 0 and table.concat(known, ", ") or "none"), { revision = revision })
end

---@class hoist.k8s.UndoOptions
---@field name string the Deployment
---@field kind? "Deployment" the only kind with revisions to go back to (default)
---@field namespace? string default: the client's
---@field to_revision? integer default: the previous revision
---@field template_hash? string the pod-template-hash of that revision, when its number is gone
---@field run? string the run id written in the Deployment's annotation hoist.dev/run
---@field client? hoist.k8s.Client default: hoist.k8s.client{kubeconfig=, context=}
---@field kubeconfig? string
---@field context? string

---@class hoist.k8s.UndoResult
---@field changed boolean false when the template was that revision's already
---@field revision integer the revision whose template the Deployment now has
---@field replica_set string its ReplicaSet
---@field image? string its first container's image
---@field planned? boolean dry-run: nothing was written
---@field rollout? hoist.k8s.RolloutResult rollout_undo: the rollout of that revision, waited for

--- Rolls a Deployment back to the previous revision (or `to_revision`), as `kubectl rollout
--- undo` does. Track the result with hoist.k8s.rollout. Under dry-run it plans the patch.
---@param opts hoist.k8s.UndoOptions
---@return hoist.k8s.UndoResult
function M.undo(opts)
  local o = util.check_opts("hoist.k8s.undo", opts, {
    name = { type = "string", required = true }, kind = { type = "string", allowed = { "Deployment" }, default = "Deployment" },
    namespace = "string", to_revision = "integer", template_hash = "string", run = "string", client = "table",
    kubeconfig = "string", context = "string",
  })
  local client = o.client or require("hoist.k8s").client { kubeconfig = o.kubeconfig, context = o.context }
  local ns = o.namespace or client.namespace
  local what = ("deployment %s/%s"):format(ns, o.name)
  local d = client:get { kind = "Deployment", api_version = "apps/v1", name = o.name, namespace = ns }
  local rs = find(M.replica_sets(client, d), o.to_revision, o.template_hash, what)
  local revision = revisions_of(rs)[1]
  local template = template_of(rs)
  local containers = template.spec and template.spec.containers or {}
  local result = { changed = false, revision = revision, replica_set = meta(rs).name,
                   image = containers[1] and containers[1].image }
  if same(template, (d.spec or {}).template or {}, 0) then
    hoist.log.info(("%s: already at the template of revision %s (%s): nothing to undo"):format(what, tostring(revision),
      tostring(result.image)), { namespace = ns, name = o.name, revision = revision })
    return result
  end
  local annotations = {}
  for k, v in pairs(meta(d).annotations or {}) do annotations[k] = v end
  for k, v in pairs(meta(rs).annotations or {}) do
    if not skip[k] then annotations[k] = v end
  end
  if o.run then annotations[M.RUN_ANNOTATION] = o.run end
  client:patch { kind = "Deployment", api_version = "apps/v1", name = o.name, namespace = ns, type = "json", patch = {
    { op = "replace", path = "/spec/template", value = template },
    { op = next(meta(d).annotations or {}) and "replace" or "add", path = "/metadata/annotations", value = annotations },
  } }
  result.changed, result.planned = true, util.dry_run() or nil
  hoist.log.event("k8s.undo", ("%s%s: back to the template of revision %s (%s, replica set %s)"):format(
    util.dry_run() and "dry run: " or "", what, tostring(revision), tostring(result.image), result.replica_set),
    { namespace = ns, name = o.name, revision = revision, image = result.image, replica_set = result.replica_set })
  return result
end

-- The run that changed an object last, when it is not `run` (nil: this run, or unknown).
local function other_run(obj, run)
  local by = (meta(obj).annotations or {})[M.RUN_ANNOTATION]
  if run and by and by ~= run then return by end
end

-- A client for an action's arguments (the same kubeconfig and context as the deploy; with
-- `aks`, the AKS cluster's kubeconfig fetched again from ARM: it is never journaled).
local function client_of(args)
  -- (every call of the actions names the namespace: the client's own is not used)
  if args.aks then return require("hoist.targets.aks").client(args.aks) end
  return require("hoist.k8s").client { kubeconfig = args.kubeconfig, context = args.context, namespace = args.namespace }
end

--- The compensation of a change to an existing Deployment: back to `revision` unless another
--- run deployed it since, then waits until that revision serves (hoist.k8s.rollout, `timeout`
--- seconds, default 300): an undo that returned while the broken pods still served would let
--- the run end before the service is back. `args.client` (not JSON: in-process callers only)
--- skips the kubeconfig.
---@param args {namespace: string, kind?: string, name: string, revision: integer, template_hash?: string, run?: string, timeout?: number, kubeconfig?: string, context?: string, aks?: table, client?: hoist.k8s.Client}
---@return hoist.k8s.UndoResult|nil nil when it left the Deployment to a later run (or it is gone)
function M.rollout_undo(args)
  local client = args.client or client_of(args)
  local d = client:get { kind = "Deployment", api_version = "apps/v1", name = args.name, namespace = args.namespace,
                         missing_ok = true }
  local what = ("deployment %s/%s"):format(args.namespace, args.name)
  if not d then
    hoist.log.warn(what .. " is gone: nothing to undo", { namespace = args.namespace, name = args.name })
    return nil
  end
  local newer = other_run(d, args.run)
  if newer then
    hoist.log.event("k8s.superseded", ("not undoing %s: run %s changed it since (or run %s never did)"):format(what, newer,
      args.run), { namespace = args.namespace, name = args.name, run = args.run, newer = newer })
    return nil
  end
  local r = M.undo { client = client, name = args.name, namespace = args.namespace, to_revision = args.revision,
                     template_hash = args.template_hash, run = args.run }
  if r.changed and not r.planned then
    r.rollout = require("hoist.k8s").rollout { client = client, name = args.name, namespace = args.namespace,
                                               timeout = args.timeout or 300 }
  end
  return r
end

-- Fields of a stored object the server sets: never part of what is applied back.
local server_set = { "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink",
                     "deletionTimestamp", "deletionGracePeriodSeconds" }

--- An object as it was stored, made ready to be applied back by `restore` (JSON; the fields
--- the server sets and the status removed).
--- Internal: for the kubernetes target.
---@param live table the object as read before the change
---@return table
function M.previous_of(live)
  local prev = copy(live, 0)
  prev.status = nil
  prev.metadata = prev.metadata or {}
  for _, k in ipairs(server_set) do prev.metadata[k] = nil end
  return prev
end

--- The compensation of a change to an object: what the run created (it did not exist) is
--- deleted; what existed (`existed`, with `previous` recorded before the write by
--- `previous_of`) is applied back as it was. Either is left alone when another run changed
--- it since. An existing object without `previous` (a Secret, whose values are never
--- journaled) cannot be restored: that is an error, so the rollback is reported incomplete.
---@param args {manifest: {apiVersion: string, kind: string, metadata: {name: string, namespace?: string}}, existed?: boolean, previous?: table, run?: string, namespace?: string, kubeconfig?: string, context?: string, aks?: table, client?: hoist.k8s.Client}
---@return boolean changed deleted or restored
function M.restore(args)
  local m = args.manifest or {}
  local ns = meta(m).namespace or args.namespace
  local what = ("%s %s"):format(tostring(m.kind):lower(), ns and (ns .. "/" .. tostring(meta(m).name)) or tostring(meta(m).name))
  if args.existed and type(args.previous) ~= "table" then
    fail("invalid_argument", ("k8s.restore: %s existed before and its previous state was not recorded (%s): restore it "
      .. "by hand"):format(what, m.kind == "Secret" and "a Secret's values are never journaled" or "no previous object"),
      { kind = m.kind, name = meta(m).name, namespace = ns })
  end
  local client = args.client or client_of(args)
  local target = { kind = m.kind, api_version = m.apiVersion, name = meta(m).name, namespace = ns }
  local live = client:get { kind = target.kind, api_version = target.api_version, name = target.name, namespace = ns,
                            missing_ok = true }
  local newer = live and other_run(live, args.run)
  if newer then
    hoist.log.event("k8s.superseded", ("not %s %s: run %s changed it since"):format(args.existed and "restoring" or "deleting",
      what, newer), { kind = m.kind, name = target.name, namespace = ns, run = args.run, newer = newer })
    return false
  end
  if args.existed then
    client:apply(args.previous, { namespace = ns, force = true })
    hoist.log.info(("restored %s as it was before run %s"):format(what, tostring(args.run)), { kind = m.kind, name = target.name })
    return true
  end
  if not live then return false end
  client:delete { kind = target.kind, api_version = target.api_version, name = target.name, namespace = ns,
                  propagation = "Background", missing_ok = true }
  hoist.log.info(("deleted %s (created by run %s)"):format(what, tostring(args.run)), { kind = m.kind, name = target.name })
  return true
end

hoist.pipeline.action("k8s.rollout_undo", function(args) M.rollout_undo(args) end)
hoist.pipeline.action("k8s.restore", function(args) M.restore(args) end)

return M
