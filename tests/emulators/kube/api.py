"""The generic resource API: create, get, list, update, patch (4 kinds), delete, watch setup.

Every verb raises objects.ApiError for a Status answer. `internal=True` marks writes by the
emulator's own controllers and kubelet (no managedFields bookkeeping, no admission of status).
"""

import base64
import copy
import json
import random
import string
import threading
import time

import apply as ssa
import discovery
import patch as patches
import schema
from objects import (ApiError, already_exists, apply_defaults, bad_request, canonical,
                     check_depth, drop_nulls, conflict, fields_match, labels_match, not_found, now,
                     parse_field_selector, parse_label_selector, validate, validate_update)

STATUS_SUBRESOURCE = {"pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "services",
                      "horizontalpodautoscalers", "poddisruptionbudgets", "namespaces", "nodes"}
RETURNS_OBJECT_ON_DELETE = {"pods", "namespaces", "services"}


def rand_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def _spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def default_manager(user_agent):
    ua = (user_agent or "unknown").split("/")[0].split(" ")[0]
    return ua or "unknown"


FIELD_VALIDATION = ("Ignore", "Strict", "Warn")


def check_fields(res, obj, query, warnings):
    """fieldValidation of a create, update or (non-apply) patch: Strict refuses an object with
    fields its kind lacks (400 naming them), Warn (the server's default) drops them and says so
    in a Warning header, Ignore drops them."""
    mode = query.get("fieldValidation") or "Warn"
    if mode not in FIELD_VALIDATION:
        raise bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: '
                          + ", ".join(f'"{m}"' for m in FIELD_VALIDATION))
    if mode == "Strict":
        found = schema.unknown(res, obj)
        if found:
            raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: strict '
                              "decoding error: " + ", ".join(f'unknown field "{f}"' for f in found))
        return
    dropped = schema.prune(res, obj)
    if mode == "Warn" and warnings is not None:
        warnings.extend(f'unknown field "{f}"' for f in dropped)


def check_apply_fields(res, ns, name, cfg):
    """Server-side apply refuses fields the kind lacks, whatever fieldValidation says; the API
    server answers that with a 500 Status without a reason (kubernetes#122480)."""
    found = schema.unknown(res, cfg, keyed=True)
    if not found:
        return
    errs = [f"{f}: field not declared in schema" for f in found]
    text = errs[0] if len(errs) == 1 else "\n".join(["errors:"] + ["  " + e for e in errs])
    raise ApiError(500, None, f"failed to create typed patch object ({ns or ''}/{name}; {res.group}/{res.version}, "
                              f"Kind={res.kind}): {text}")


class Api:
    def __init__(self, store, events_ttl=3600):
        self.store = store
        self.on_pod_delete = None          # kubelet hook: fn(pod) -> True when it handles grace
        self.gc_queue = []
        self.gc_cv = threading.Condition()
        store.listeners.append(self._on_event)

    # ---------------------------------------------------------------------------------
    def _on_event(self, key, etype, obj, old):
        if etype == "DELETED":
            with self.gc_cv:
                self.gc_queue.append(obj["metadata"]["uid"])
                self.gc_cv.notify()

    def _ns_must_exist(self, res, ns):
        if res.namespaced:
            if not ns:
                raise bad_request(f"the namespace of the {res.kind} is required")
            nsobj = self.store.get("/namespaces", "", ns)
            if nsobj is None:
                raise not_found(discovery.BY_KEY["/namespaces"], ns)
            if nsobj["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'{res.plural}{"." + res.group if res.group else ""} is forbidden: '
                               f"unable to create new content in namespace {ns} because it is being terminated",
                               {"name": "", "group": res.group, "kind": res.plural,
                                "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                            "message": f"namespace {ns} is being terminated"}]})
            return nsobj
        return None

    # ---------------------------------------------------------------------------------
    def get(self, res, ns, name):
        obj = self.store.get(res.key, ns if res.namespaced else "", name)
        if obj is None:
            raise not_found(res, name)
        return obj

    def list(self, res, ns, query):
        lsel = parse_label_selector(query.get("labelSelector", ""))
        fsel = parse_field_selector(query.get("fieldSelector", ""), res)
        items, rv = self.store.list(res.key, ns if res.namespaced else None)
        items = [o for o in items if labels_match(lsel, o["metadata"].get("labels"))
                 and fields_match(fsel, o)]
        meta = {"resourceVersion": str(rv)}
        cont = query.get("continue")
        if cont:
            try:
                tok = json.loads(base64.b64decode(cont))
                start = tuple(tok["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request(f'continue key is not valid: "{cont}"')
            if tok.get("rv", 0) < self.store.oldest_rv:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue "
                               "parameter, or use the continue token in this response to retrieve the "
                               "remainder of the results. Continuing with the provided token results in "
                               "an inconsistent list - objects that were created, modified, or deleted "
                               "between the time the first chunk was returned and now may show up in the list.")
            items = [o for o in items
                     if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit = query.get("limit")
        if limit:
            try:
                n = int(limit)
            except ValueError:
                raise bad_request(f'limit "{limit}" is not a number')
            if 0 < n < len(items):
                last = items[n - 1]["metadata"]
                rest = len(items) - n
                items = items[:n]
                tok = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
                meta["continue"] = base64.b64encode(json.dumps(tok).encode()).decode()
                meta["remainingItemCount"] = rest
        out_items = []
        for o in items:
            o = dict(o)
            o.pop("apiVersion", None)
            o.pop("kind", None)
            out_items.append(o)
        return {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
                "items": out_items}, items

    # ---------------------------------------------------------------------------------
    def _prepare_new(self, res, ns, obj):
        if not isinstance(obj, dict):
            raise bad_request(f"the body of a {res.kind} must be a JSON object")
        check_depth(obj, res, (obj.get("metadata") or {}).get("name", ""))
        obj = copy.deepcopy(obj)
        drop_nulls(obj)
        kind, av = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != res.kind:
            raise bad_request(f'the kind "{kind}" does not match the resource {res.plural} (kind {res.kind})')
        if av and av != res.api_version:
            raise bad_request(f'the apiVersion "{av}" does not match {res.api_version} for {res.plural}')
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if res.namespaced:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace "
                                  "sent on the request")
            md["namespace"] = ns or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation", "selfLink"):
            md.pop(k, None)
        return obj

    def create(self, res, ns, body, query=None, manager=None, internal=False, warnings=None):
        query = query or {}
        obj = self._prepare_new(res, ns, body)
        if not internal:
            check_fields(res, obj, query, warnings)
        md = obj["metadata"]
        dry = query.get("dryRun") == "All"
        with self.store.lock:
            self._ns_must_exist(res, md.get("namespace"))
            if not md.get("name") and md.get("generateName"):
                for _ in range(20):
                    cand = md["generateName"] + rand_suffix()
                    if self.store.get(res.key, md.get("namespace", ""), cand) is None:
                        md["name"] = cand
                        break
            apply_defaults(res, obj)
            validate(res, obj)
            if self.store.get(res.key, md.get("namespace", ""), md["name"]) is not None:
                raise already_exists(res, md["name"])
            if "spec" in obj and res.plural != "namespaces":
                md["generation"] = 1
            if res.plural == "namespaces":
                obj["status"] = {"phase": "Active"}
            if not internal:
                ssa.record_update(None, obj, manager or "unknown")
            return self.store.create(res.key, obj, dry)

    def _check_rv(self, res, name, live, new):
        want = (new.get("metadata") or {}).get("resourceVersion")
        if want and want != live["metadata"]["resourceVersion"]:
            raise conflict(res, name, "the object has been modified; please apply your changes to the "
                                      "latest version and try again")

    def _commit(self, res, live, new, sub, manager, dry, internal, record_sub=None):
        """Common tail of update, patch and apply: keep what the verb may not change."""
        name = live["metadata"]["name"]
        md = new.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if md.get("name", name) != name:
            raise bad_request(f'the name of the object ({md.get("name")}) does not match the name on '
                              f'the URL ({name})')
        new["kind"], new["apiVersion"] = res.kind, res.api_version
        for k in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in live["metadata"]:
                md[k] = live["metadata"][k]
            else:
                md.pop(k, None)
        md["name"] = name
        if not internal and res.plural == "namespaces":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if sub == "status":
            # only the status changes through /status
            keep = {k: v for k, v in live.items() if k != "status"}
            keep["metadata"] = dict(live["metadata"])
            if "status" in new:
                keep["status"] = new["status"]
            new = keep
        elif res.plural in STATUS_SUBRESOURCE and not internal:
            if "status" in live:
                new["status"] = live["status"]
            else:
                new.pop("status", None)
        check_depth(new, res, name)
        drop_nulls(new)
        if sub != "status":
            apply_defaults(res, new)
            validate(res, new)
            validate_update(res, live, new)
        md = new["metadata"]
        if "generation" in live["metadata"]:
            gen = live["metadata"]["generation"]
            md["generation"] = gen + 1 if canonical(_spec_part(new)) != canonical(_spec_part(live)) else gen
        if not internal:
            ssa.record_update(live, new, manager or "unknown", record_sub or sub)
        elif "managedFields" in live["metadata"] and sub != "status":
            md["managedFields"] = live["metadata"]["managedFields"]
        md["resourceVersion"] = live["metadata"]["resourceVersion"]
        if new == live:
            return live                       # a no-op write does not bump resourceVersion
        if md.get("deletionTimestamp") and not md.get("finalizers") and res.plural != "pods":
            self.store.remove(res.key, md.get("namespace", ""), name, dry)
            return new
        return self.store.replace(res.key, new, dry)

    def update(self, res, ns, name, body, query=None, sub=None, manager=None, internal=False, warnings=None):
        query = query or {}
        if not isinstance(body, dict):
            raise bad_request(f"the body of a {res.kind} must be a JSON object")
        if sub == "scale":
            return self._scale_write(res, ns, name, body, query, manager)
        with self.store.lock:
            live = self.get(res, ns, name)
            new = copy.deepcopy(body)
            if not internal and sub is None:
                check_fields(res, new, query, warnings)
            self._check_rv(res, name, live, new)
            return self._commit(res, live, new, sub, manager, query.get("dryRun") == "All", internal)

    def patch(self, res, ns, name, body, ctype, query=None, sub=None, manager=None, internal=False, warnings=None):
        query = query or {}
        ctype = (ctype or "").split(";")[0].strip()
        dry = query.get("dryRun") == "All"
        if sub == "scale":
            with self.store.lock:
                cur = self.scale(res, ns, name)
                new = self._patched(cur, body, ctype)
                return self._scale_write(res, ns, name, new, query, manager)
        if ctype == "application/apply-patch+yaml":
            return self.apply(res, ns, name, body, query, sub)
        with self.store.lock:
            live = self.get(res, ns, name)
            new = self._patched(live, body, ctype)
            if not isinstance(new, dict):
                raise bad_request("the patched object is not a JSON object")
            if not internal and sub is None:
                check_fields(res, new, query, warnings)
            self._check_rv(res, name, live, new)
            return self._commit(res, live, new, sub, manager, dry, internal)

    def _patched(self, live, body, ctype):
        p = patches.parse_json(body, "patch")
        if ctype == "application/merge-patch+json":
            if not isinstance(p, dict):
                raise bad_request("a merge patch must be a JSON object")
            return patches.merge_patch(live, p)
        if ctype == "application/json-patch+json":
            return patches.json_patch(live, p)
        if ctype == "application/strategic-merge-patch+json":
            if not isinstance(p, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            return patches.strategic_merge(live, p)
        raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                       f'accepted media types include: application/json-patch+json, '
                       f'application/merge-patch+json, application/apply-patch+yaml, '
                       f'application/strategic-merge-patch+json (got "{ctype}")')

    def apply(self, res, ns, name, body, query, sub=None):
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                           "Required value: is required for apply patch",
                           {"causes": [{"reason": "FieldValueRequired", "field": "fieldManager",
                                        "message": "Required value: is required for apply patch"}]})
        try:
            cfg = json.loads(body or b"")
        except ValueError:
            raise ApiError(415, "UnsupportedMediaType", "the emulator reads apply patches written as JSON "
                           "(YAML's JSON subset); this body is not JSON")
        if not isinstance(cfg, dict):
            raise bad_request("an apply patch must be an object")
        md = cfg.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise bad_request(f'the name of the object ({md["name"]}) does not match the name on the URL ({name})')
        if not cfg.get("apiVersion") or not cfg.get("kind"):
            raise bad_request("apiVersion and kind are required in an apply patch")
        if cfg.get("kind") != res.kind or cfg.get("apiVersion") != res.api_version:
            raise bad_request(f'the apply patch is a {cfg.get("apiVersion")} {cfg.get("kind")}, the URL '
                              f'names {res.api_version} {res.kind}')
        if sub is None:
            check_apply_fields(res, ns if res.namespaced else "", name, cfg)
        force = query.get("force") in ("true", "1")
        dry = query.get("dryRun") == "All"
        with self.store.lock:
            live = self.store.get(res.key, ns if res.namespaced else "", name)
            if live is None:
                if sub:
                    raise not_found(res, name)
                new = ssa.server_side_apply(None, cfg, manager, force)
                new.setdefault("metadata", {})["name"] = name
                mf = new["metadata"].pop("managedFields")
                obj = self._prepare_new(res, ns, new)
                obj["metadata"]["managedFields"] = mf
                self._ns_must_exist(res, obj["metadata"].get("namespace"))
                apply_defaults(res, obj)
                validate(res, obj)
                if "spec" in obj and res.plural != "namespaces":
                    obj["metadata"]["generation"] = 1
                return self.store.create(res.key, obj, dry)
            new = ssa.server_side_apply(live, cfg, manager, force, sub)
            rv = (cfg.get("metadata") or {}).get("resourceVersion")
            if rv and rv != live["metadata"]["resourceVersion"]:
                raise conflict(res, name, "the object has been modified; please apply your changes "
                                          "to the latest version and try again")
            mf = new["metadata"].get("managedFields")
            result = self._commit(res, live, new, sub, manager, dry, internal=True)
            if result is not live and mf is not None and result.get("metadata", {}).get("managedFields") != mf:
                result["metadata"]["managedFields"] = mf
            return result

    # -- scale subresource -------------------------------------------------------------
    def scale(self, res, ns, name):
        obj = self.get(res, ns, name)
        sel = obj["spec"].get("selector", {}).get("matchLabels", {})
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns, "uid": obj["metadata"]["uid"],
                             "resourceVersion": obj["metadata"]["resourceVersion"],
                             "creationTimestamp": obj["metadata"]["creationTimestamp"]},
                "spec": {"replicas": obj["spec"].get("replicas", 0)},
                "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items()))}}

    def _scale_write(self, res, ns, name, body, query, manager):
        reps = (body.get("spec") or {}).get("replicas")
        if not isinstance(reps, int) or reps < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                           f"Invalid value: {json.dumps(reps)}: must be greater than or equal to 0",
                           {"name": name, "group": "autoscaling", "kind": "Scale",
                            "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                        "message": f"Invalid value: {json.dumps(reps)}: must be greater "
                                                   "than or equal to 0"}]})
        with self.store.lock:
            live = self.get(res, ns, name)
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != live["metadata"]["resourceVersion"]:
                raise conflict(res, name, "the object has been modified; please apply your changes to "
                                          "the latest version and try again")
            new = copy.deepcopy(live)
            new["spec"]["replicas"] = reps
            self._commit(res, live, new, None, manager, query.get("dryRun") == "All", False, "scale")
            return self.scale(res, ns, name) if query.get("dryRun") != "All" else dict(
                self.scale(res, ns, name), spec={"replicas": reps})

    # -- delete ------------------------------------------------------------------------
    def delete(self, res, ns, name, opts=None, query=None, internal=False):
        opts = dict(opts or {})
        query = query or {}
        for k in ("propagationPolicy", "gracePeriodSeconds", "dryRun"):
            if k in query and k not in opts:
                opts[k] = query[k]
        dry = opts.get("dryRun") in ("All", ["All"])
        policy = opts.get("propagationPolicy") or ("Orphan" if opts.get("orphanDependents") else "Background")
        if policy not in ("Background", "Foreground", "Orphan"):
            raise bad_request(f'propagationPolicy "{policy}" is not one of Background, Foreground, Orphan')
        with self.store.lock:
            live = self.get(res, ns, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != live["metadata"]["uid"]:
                raise conflict(res, name, f'Precondition failed: UID in precondition: {pre["uid"]}, '
                                          f'UID in object meta: {live["metadata"]["uid"]}')
            if pre.get("resourceVersion") and pre["resourceVersion"] != live["metadata"]["resourceVersion"]:
                raise conflict(res, name, "Precondition failed: ResourceVersion in precondition: "
                                          f'{pre["resourceVersion"]}, ResourceVersion in object meta: '
                                          f'{live["metadata"]["resourceVersion"]}')
            if dry:
                return self._delete_answer(res, live)
            if policy == "Orphan":
                self._orphan(live["metadata"]["uid"])
            md = live["metadata"]
            finalizers = list(md.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if res.plural == "namespaces":
                finalizers = finalizers or ["hoist.dev/namespace-content"]
            grace = None
            if res.plural == "pods":
                g = opts.get("gracePeriodSeconds")
                grace = int(g) if g is not None else (live.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                if md.get("deletionTimestamp") and grace > 0:
                    return live               # already terminating: only a zero grace period forces it
                if md.get("deletionTimestamp") is None and grace > 0 and (live.get("spec") or {}).get("nodeName") \
                        and self.on_pod_delete is not None:
                    new = copy.deepcopy(live)
                    new["metadata"]["deletionTimestamp"] = now()
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    new["metadata"]["finalizers"] = finalizers or None
                    if not new["metadata"]["finalizers"]:
                        new["metadata"].pop("finalizers")
                    stored = self.store.replace(res.key, new)
                    self.on_pod_delete(stored)
                    return stored
            if finalizers:
                if md.get("deletionTimestamp") is None:
                    new = copy.deepcopy(live)
                    new["metadata"]["deletionTimestamp"] = now()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    new["metadata"]["finalizers"] = finalizers
                    if res.plural == "namespaces":
                        new["status"] = {"phase": "Terminating"}
                    live = self.store.replace(res.key, new)
                    with self.gc_cv:
                        self.gc_queue.append(("finalize", res.key, md.get("namespace", ""), name))
                        self.gc_cv.notify()
                return live
            gone = self.store.remove(res.key, md.get("namespace", ""), name)
            return self._delete_answer(res, gone)

    def _delete_answer(self, res, obj):
        if res.plural in RETURNS_OBJECT_ON_DELETE:
            return obj
        d = {"name": obj["metadata"]["name"], "kind": res.plural, "uid": obj["metadata"]["uid"]}
        if res.group:
            d["group"] = res.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}

    def remove_now(self, res, ns, name):
        """The last step of a graceful deletion (kubelet) or of finalization."""
        return self.store.remove(res.key, ns, name)

    def _orphan(self, uid):
        for key, objs in list(self.store.objects.items()):
            for o in list(objs.values()):
                refs = o["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    new = copy.deepcopy(o)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    self.store.replace(key, new)

    def dependents(self, uid):
        out = []
        with self.store.lock:
            for key, objs in self.store.objects.items():
                for o in objs.values():
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or []):
                        out.append((key, o))
        return out

    def delete_collection(self, res, ns, query, opts):
        lst, items = self.list(res, ns, query)
        for o in items:
            try:
                self.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"], opts, query)
            except ApiError:
                pass
        return lst

    # -- the garbage collector (background/foreground propagation, namespace content) ----
    def gc_loop(self, stop):
        pending = []
        while not stop.is_set():
            with self.gc_cv:
                if not self.gc_queue:
                    self.gc_cv.wait(0.5)
                work, self.gc_queue = self.gc_queue, []
            pending.extend(w for w in work if isinstance(w, tuple))
            for uid in (w for w in work if isinstance(w, str)):
                for key, o in self.dependents(uid):
                    self._gc_delete(key, o)
            still = []
            for item in pending:
                if not self._finalize(*item[1:]):
                    still.append(item)
            pending = still

    def _gc_delete(self, key, o, policy="Background"):
        res = discovery.BY_KEY[key]
        try:
            self.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"],
                        {"propagationPolicy": policy})
        except ApiError:
            pass

    def _finalize(self, key, ns, name):
        """Foreground deletion and namespace deletion: True when done."""
        res = discovery.BY_KEY[key]
        with self.store.lock:
            live = self.store.get(key, ns, name)
            if live is None:
                return True
            fins = list(live["metadata"].get("finalizers") or [])
            left = False
            if "foregroundDeletion" in fins:
                deps = self.dependents(live["metadata"]["uid"])
                for k, o in deps:                 # dependents go in foreground too
                    if not o["metadata"].get("deletionTimestamp"):
                        self._gc_delete(k, o, "Foreground")
                if deps:
                    left = True
                else:
                    fins.remove("foregroundDeletion")
            if "hoist.dev/namespace-content" in fins:
                content = []
                for r in discovery.RESOURCES:
                    if r.namespaced:
                        content += [(r.key, o) for o in self.store.list(r.key, name)[0]]
                for k, o in content:
                    if not o["metadata"].get("deletionTimestamp"):
                        self._gc_delete(k, o)
                if content:
                    left = True
                else:
                    fins.remove("hoist.dev/namespace-content")
            if fins != list(live["metadata"].get("finalizers") or []):
                new = copy.deepcopy(live)
                new["metadata"]["finalizers"] = fins
                if not fins:
                    self.store.remove(key, ns, name)
                    return True
                self.store.replace(key, new)
            return not left and not fins
