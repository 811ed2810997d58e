"""Controllers: deployment, replicaset, service accounts. One worker thread, driven by the
store's events (plus a 1 s resync for availability and progress deadlines).

The deployment controller follows kube-controller-manager's rules closely enough that
`kubectl rollout status/history/undo` and hoist's tracking see what a real cluster shows:
ReplicaSets <deployment>-<pod-template-hash>, revision annotations, RollingUpdate with
maxSurge/maxUnavailable against pod availability, Recreate, status conditions.
"""

import copy
import math
import threading
import time

import discovery
from objects import ApiError, canonical, labels_match, new_uid, now, parse_time, selector_from_label_selector

DEPLOY = discovery.BY_KEY["apps/deployments"]
RS = discovery.BY_KEY["apps/replicasets"]
POD = discovery.BY_KEY["/pods"]
EVENT = discovery.BY_KEY["/events"]
SA = discovery.BY_KEY["/serviceaccounts"]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH = "pod-template-hash"
SKIP_ANNOTATIONS = {REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS,
                    "kubectl.kubernetes.io/last-applied-configuration"}
SAFE = "bcdfghjklmnpqrstvwxz2456789"
MAX_EVENTS = 2000                     # per namespace


def fnv32a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template, collisions=0):
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH, None)
    raw = canonical(t) + (str(collisions) if collisions else "")
    return "".join(SAFE[ord(c) % len(SAFE)] for c in str(fnv32a(raw.encode())))


def same_template(a, b):
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        (t.setdefault("metadata", {}).get("labels") or {}).pop(HASH, None)
        if t["metadata"].get("labels") == {}:
            t["metadata"].pop("labels")
    return canonical(a) == canonical(b)


def controller_ref(obj):
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def owner_ref(obj, kind, api_version):
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def resolve(value, total, round_up):
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        v = pct * total / 100.0
        return int(math.ceil(v)) if round_up else int(math.floor(v))
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pod_ready(pod):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True", c.get("lastTransitionTime")
    return False, None


def pod_available(pod, min_ready, t):
    ready, since = pod_ready(pod)
    if not ready:
        return False
    if min_ready <= 0 or not since:
        return True
    return parse_time(since) + min_ready <= t


def active(pod):
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Controllers:
    def __init__(self, srv):
        self.srv = srv
        self.api = srv.api
        self.store = srv.store
        self.queue = []
        self.queued = set()
        self.cv = threading.Condition()
        import workloads                          # StatefulSet, DaemonSet, Job (imports this module)
        self.workloads = workloads.Workloads(self)
        self.store.listeners.append(self.on_event)

    # -- events -> work ----------------------------------------------------------------
    def enqueue(self, item):
        with self.cv:
            if item not in self.queued:
                self.queued.add(item)
                self.queue.append(item)
                self.cv.notify()

    def on_event(self, key, etype, obj, old):
        md = obj["metadata"]
        ns = md.get("namespace", "")
        if key == DEPLOY.key:
            self.enqueue(("deploy", ns, md["name"]))
        elif key == RS.key:
            self.enqueue(("rs", ns, md["name"]))
            ref = controller_ref(obj)
            if ref and ref.get("kind") == "Deployment":
                self.enqueue(("deploy", ns, ref["name"]))
        elif key == POD.key:
            ref = controller_ref(obj)
            if ref and ref.get("kind") == "ReplicaSet":
                self.enqueue(("rs", ns, ref["name"]))
        elif key == "/namespaces" and etype == "ADDED":
            self.enqueue(("sa", "", md["name"]))
        self.workloads.on_event(key, obj)

    def run(self):
        last_resync = 0.0
        while not self.srv.stop.is_set():
            with self.cv:
                if not self.queue:
                    self.cv.wait(0.5)
                items, self.queue = self.queue, []
                self.queued.clear()
            for kind, ns, name in items:
                try:
                    if kind == "deploy":
                        self.sync_deployment(ns, name)
                    elif kind == "rs":
                        self.sync_replicaset(ns, name)
                    elif kind == "sa":
                        self.ensure_sa(name)
                    else:
                        self.workloads.sync(kind, ns, name)
                except ApiError as e:
                    if e.code != 404 and e.code != 409:
                        print(f"controller {kind} {ns}/{name}: {e.message}", flush=True)
                    if e.code == 409:
                        self.enqueue((kind, ns, name))
                except Exception:  # noqa: BLE001 - a controller bug must not stop the loop
                    import traceback
                    traceback.print_exc()
            if time.monotonic() - last_resync >= 1.0:
                last_resync = time.monotonic()
                for d in self.store.list(DEPLOY.key)[0]:
                    self.enqueue(("deploy", d["metadata"]["namespace"], d["metadata"]["name"]))
                for r in self.store.list(RS.key)[0]:
                    if r["spec"].get("minReadySeconds"):
                        self.enqueue(("rs", r["metadata"]["namespace"], r["metadata"]["name"]))
                self.workloads.resync()

    # -- helpers -----------------------------------------------------------------------
    def mutate(self, res, ns, name, fn, sub=None):
        """Read-modify-write under the store lock; fn edits the copy (returns False: no write)."""
        with self.store.lock:
            live = self.store.get(res.key, ns, name)
            if live is None:
                return None
            new = copy.deepcopy(live)
            if fn(new) is False:
                return live
            return self.api._commit(res, live, new, sub, None, False, True)

    def event(self, obj, etype, reason, message, component="deployment-controller"):
        record_event(self.api, obj, etype, reason, message, component)

    def ensure_sa(self, ns):
        if self.store.get(SA.key, ns, "default") is None and self.store.get("/namespaces", "", ns):
            try:
                self.api.create(SA, ns, {"metadata": {"name": "default"}}, internal=True)
            except ApiError:
                pass

    def owned(self, res, ns, owner_uid):
        return [o for o in self.store.list(res.key, ns)[0]
                if (controller_ref(o) or {}).get("uid") == owner_uid]

    # -- replicaset controller -----------------------------------------------------------
    def sync_replicaset(self, ns, name):
        rs = self.store.get(RS.key, ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = [p for p in self.owned(POD, ns, rs["metadata"]["uid"]) if active(p)]
        want = rs["spec"].get("replicas", 1)
        diff = want - len(pods)
        if diff > 0:
            tpl = rs["spec"].get("template") or {}
            for _ in range(diff):
                md = copy.deepcopy(tpl.get("metadata") or {})
                md.pop("name", None)
                md["generateName"] = name + "-"
                md["ownerReferences"] = [owner_ref(rs, "ReplicaSet", "apps/v1")]
                pod = {"metadata": md, "spec": copy.deepcopy(tpl.get("spec") or {})}
                try:
                    created = self.api.create(POD, ns, pod, internal=True)
                except ApiError as e:
                    self.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}",
                               "replicaset-controller")
                    break
                pods.append(created)
                self.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                           "replicaset-controller")
        elif diff < 0:
            def rank(p):
                st = p.get("status") or {}
                phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase"), 0)
                ready, since = pod_ready(p)
                return (bool(p["spec"].get("nodeName")), phase, ready,
                        -parse_time(p["metadata"]["creationTimestamp"]))
            victims = sorted(pods, key=rank)[:-diff]
            for p in victims:
                try:
                    self.api.delete(POD, ns, p["metadata"]["name"], {})
                    self.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                               "replicaset-controller")
                except ApiError:
                    pass
                pods.remove(p)
        t = time.time()
        min_ready = rs["spec"].get("minReadySeconds", 0)
        sel = selector_from_label_selector(rs["spec"].get("selector"))
        status = {"replicas": len(pods)}
        for k, v in (("fullyLabeledReplicas", sum(1 for p in pods if labels_match(sel, p["metadata"].get("labels")))),
                     ("readyReplicas", sum(1 for p in pods if pod_ready(p)[0])),
                     ("availableReplicas", sum(1 for p in pods if pod_available(p, min_ready, t)))):
            if v:
                status[k] = v
        status["observedGeneration"] = rs["metadata"].get("generation", 1)

        def put(o):
            if o.get("status") == status:
                return False
            o["status"] = status
        self.mutate(RS, ns, name, put, "status")

    # -- deployment controller -----------------------------------------------------------
    def sync_deployment(self, ns, name):
        d = self.store.get(DEPLOY.key, ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        spec = d["spec"]
        uid = d["metadata"]["uid"]
        rss = self.owned(RS, ns, uid)
        tpl = spec["template"]
        new_rs = next((r for r in rss if same_template(r["spec"]["template"], tpl)), None)
        olds = [r for r in rss if r is not new_rs]
        max_rev = max([int((r["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) for r in olds] or [0])
        replicas = spec.get("replicas", 1)
        strategy = spec.get("strategy") or {}
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve(ru.get("maxSurge", "25%"), replicas, True) if strategy.get("type") != "Recreate" else 0
        unavail = resolve(ru.get("maxUnavailable", "25%"), replicas, False) if strategy.get("type") != "Recreate" else 0
        if surge == 0 and unavail == 0 and strategy.get("type") != "Recreate":
            unavail = 1
        created_now = False
        found_old = False
        paused = spec.get("paused", False)
        if new_rs is None and not paused:
            new_rs = self.create_rs(d, tpl, max_rev + 1, replicas, surge)
            if new_rs is None:
                return
            created_now = True
        elif new_rs is not None:
            rev = int((new_rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0)
            if rev <= max_rev:
                found_old = True
                hist = (new_rs["metadata"].get("annotations") or {}).get(REVISION_HISTORY)
                hist = f"{hist},{rev}" if hist else str(rev)

                def bump(o, r=max_rev + 1, h=hist):
                    a = o["metadata"].setdefault("annotations", {})
                    a[REVISION], a[REVISION_HISTORY] = str(r), h
                new_rs = self.mutate(RS, ns, new_rs["metadata"]["name"], bump) or new_rs
            self.sync_rs_annotations(d, new_rs, replicas, surge)
            new_rs = self.store.get(RS.key, ns, new_rs["metadata"]["name"]) or new_rs
        if new_rs is not None:
            rev = (new_rs["metadata"].get("annotations") or {}).get(REVISION)

            def set_rev(o):
                a = o["metadata"].setdefault("annotations", {})
                if a.get(REVISION) == rev:
                    return False
                a[REVISION] = rev
            d = self.mutate(DEPLOY, ns, name, set_rev) or d
        if not paused and new_rs is not None:
            if strategy.get("type") == "Recreate":
                self.recreate(d, new_rs, olds, replicas)
            else:
                self.rolling(d, new_rs, olds, replicas, surge, unavail)
            self.cleanup(d, new_rs, olds)
        self.update_status(d, ns, new_rs, replicas, unavail, created_now, found_old, paused)

    def create_rs(self, d, tpl, revision, replicas, surge):
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        collisions = (d.get("status") or {}).get("collisionCount", 0)
        for _ in range(5):
            h = template_hash(tpl, collisions)
            rs_name = f"{name}-{h}"
            existing = self.store.get(RS.key, ns, rs_name)
            if existing is None:
                break
            if same_template(existing["spec"]["template"], tpl):
                return existing
            collisions += 1
        t = copy.deepcopy(tpl)
        t.setdefault("metadata", {}).setdefault("labels", {})[HASH] = h
        sel = copy.deepcopy(d["spec"]["selector"])
        sel.setdefault("matchLabels", {})[HASH] = h
        ann = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in SKIP_ANNOTATIONS}
        ann.update({REVISION: str(revision), DESIRED: str(replicas), MAX_REPLICAS: str(replicas + surge)})
        labels = dict(t["metadata"]["labels"])
        rs = {"metadata": {"name": rs_name, "labels": labels, "annotations": ann,
                           "ownerReferences": [owner_ref(d, "Deployment", "apps/v1")]},
              "spec": {"replicas": 0, "selector": sel, "template": t}}
        if d["spec"].get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
        created = self.api.create(RS, ns, rs, internal=True)
        if collisions:
            self.mutate(DEPLOY, ns, name, lambda o: o.setdefault("status", {}).update(collisionCount=collisions),
                        "status")
        return created

    def sync_rs_annotations(self, d, rs, replicas, surge):
        want = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in SKIP_ANNOTATIONS}
        want.update({DESIRED: str(replicas), MAX_REPLICAS: str(replicas + surge)})

        def upd(o):
            a = o["metadata"].setdefault("annotations", {})
            before = dict(a)
            a.update(want)
            if o["spec"].get("minReadySeconds", 0) != d["spec"].get("minReadySeconds", 0):
                o["spec"]["minReadySeconds"] = d["spec"].get("minReadySeconds", 0)
            if a == before and o["spec"].get("minReadySeconds", 0) == d["spec"].get("minReadySeconds", 0):
                return False
        self.mutate(RS, rs["metadata"]["namespace"], rs["metadata"]["name"], upd)

    def scale(self, d, rs, n):
        if rs["spec"].get("replicas", 0) == n:
            return rs
        old = rs["spec"].get("replicas", 0)

        def upd(o):
            o["spec"]["replicas"] = n
        out = self.mutate(RS, rs["metadata"]["namespace"], rs["metadata"]["name"], upd) or rs
        verb = "up" if n > old else "down"
        self.event(d, "Normal", "ScalingReplicaSet", f'Scaled {verb} replica set {rs["metadata"]["name"]} '
                   f"from {old} to {n}")
        return out

    def recreate(self, d, new_rs, olds, replicas):
        for r in olds:
            if r["spec"].get("replicas", 0):
                self.scale(d, r, 0)
        ns = d["metadata"]["namespace"]
        for r in olds:
            if self.owned(POD, ns, r["metadata"]["uid"]):
                return                          # wait until every old pod is gone
        self.scale(d, new_rs, replicas)

    def rolling(self, d, new_rs, olds, replicas, surge, unavail):
        t = time.time()
        min_ready = d["spec"].get("minReadySeconds", 0)
        ns = d["metadata"]["namespace"]
        all_rs = [new_rs] + olds
        total = sum(r["spec"].get("replicas", 0) for r in all_rs)
        # scale up the new ReplicaSet within maxSurge
        cur = new_rs["spec"].get("replicas", 0)
        if cur > replicas:
            new_rs = self.scale(d, new_rs, replicas)
        elif cur < replicas:
            room = replicas + surge - total
            if room > 0:
                new_rs = self.scale(d, new_rs, min(replicas, cur + room))
        # scale down old ReplicaSets within maxUnavailable
        olds = [r for r in olds if r["spec"].get("replicas", 0) > 0]
        if not olds:
            return

        def avail(r):
            return sum(1 for p in self.owned(POD, ns, r["metadata"]["uid"])
                       if active(p) and pod_available(p, min_ready, t))
        all_pods = sum(r["spec"].get("replicas", 0) for r in [new_rs] + olds)
        min_available = replicas - unavail
        new_unavailable = new_rs["spec"].get("replicas", 0) - avail(new_rs)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return
        # first the old pods that are not available anyway
        olds.sort(key=lambda r: parse_time(r["metadata"]["creationTimestamp"]))
        cleaned = 0
        for i, r in enumerate(olds):
            if cleaned >= budget:
                break
            unhealthy = r["spec"]["replicas"] - avail(r)
            if unhealthy <= 0:
                continue
            n = min(unhealthy, budget - cleaned)
            olds[i] = self.scale(d, r, r["spec"]["replicas"] - n)
            cleaned += n
        total_available = sum(avail(r) for r in [new_rs] + olds)
        down = total_available - min_available
        for i, r in enumerate(olds):
            if down <= 0:
                break
            have = r["spec"].get("replicas", 0)
            if have == 0:
                continue
            n = min(have, down)
            self.scale(d, r, have - n)
            down -= n

    def cleanup(self, d, new_rs, olds):
        limit = d["spec"].get("revisionHistoryLimit", 10)
        ns = d["metadata"]["namespace"]
        dead = [r for r in olds if r["spec"].get("replicas", 0) == 0 and
                not (r.get("status") or {}).get("replicas") and
                self.store.get(RS.key, ns, r["metadata"]["name"]) is not None]
        if len(dead) <= limit:
            return
        dead.sort(key=lambda r: int((r["metadata"].get("annotations") or {}).get(REVISION, "0") or 0))
        for r in dead[:len(dead) - limit]:
            try:
                self.api.delete(RS, ns, r["metadata"]["name"], {"propagationPolicy": "Background"})
            except ApiError:
                pass

    def update_status(self, d, ns, new_rs, replicas, unavail, created_now, found_old, paused):
        name = d["metadata"]["name"]
        rss = self.owned(RS, ns, d["metadata"]["uid"])
        new_rs = next((r for r in rss if new_rs is not None and r["metadata"]["uid"] == new_rs["metadata"]["uid"]), None)

        def st(r, k):
            return (r.get("status") or {}).get(k, 0)
        total_spec = sum(r["spec"].get("replicas", 0) for r in rss)
        available = sum(st(r, "availableReplicas") for r in rss)
        status = {"observedGeneration": d["metadata"].get("generation", 1)}
        for k, v in (("replicas", sum(st(r, "replicas") for r in rss)),
                     ("updatedReplicas", st(new_rs, "replicas") if new_rs else 0),
                     ("readyReplicas", sum(st(r, "readyReplicas") for r in rss)),
                     ("availableReplicas", available),
                     ("unavailableReplicas", max(0, total_spec - available))):
            if v:
                status[k] = v
        old = d.get("status") or {}
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        conds = {c["type"]: c for c in copy.deepcopy(old.get("conditions") or [])}
        ts = now()

        def cond(ctype, s, reason, msg, touch=False):
            c = conds.get(ctype)
            if c and c["status"] == s and c["reason"] == reason and c["message"] == msg and not touch:
                return
            conds[ctype] = {"type": ctype, "status": s, "lastUpdateTime": ts,
                            "lastTransitionTime": c["lastTransitionTime"] if c and c["status"] == s else ts,
                            "reason": reason, "message": msg}

        if available >= replicas - unavail:
            cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        prog = conds.get("Progressing")
        if paused:
            cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif new_rs is not None:
            complete = status.get("updatedReplicas", 0) == replicas and status.get("replicas", 0) == replicas \
                and available == replicas
            progressed = any(status.get(k, 0) > old.get(k, 0)
                             for k in ("updatedReplicas", "readyReplicas", "availableReplicas")) or \
                status.get("replicas", 0) < old.get("replicas", 0)
            if complete:
                cond("Progressing", "True", "NewReplicaSetAvailable",
                     f'ReplicaSet "{rs_name}" has successfully progressed.')
            elif created_now:
                cond("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
            elif found_old:
                cond("Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{rs_name}"')
            elif progressed or prog is None or prog.get("reason") in ("NewReplicaSetAvailable", "DeploymentPaused"):
                cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', True)
            else:
                deadline = d["spec"].get("progressDeadlineSeconds")
                if deadline is not None and prog["status"] == "True" and \
                        parse_time(prog["lastUpdateTime"]) + deadline < time.time():
                    cond("Progressing", "False", "ProgressDeadlineExceeded",
                         f'ReplicaSet "{rs_name}" has timed out progressing.')
                    self.event(d, "Warning", "ProgressDeadlineExceeded",
                               f'Deployment "{name}" has timed out progressing.')
        order = [c for c in ("Available", "Progressing", "ReplicaFailure") if c in conds]
        status["conditions"] = [conds[c] for c in order]

        def put(o):
            if o.get("status") == status:
                return False
            o["status"] = status
        self.mutate(DEPLOY, ns, name, put, "status")


def record_event(api, obj, etype, reason, message, component, count_key=None):
    """Creates or bumps an Event about obj (core/v1, with involvedObject)."""
    md = obj["metadata"]
    ns = md.get("namespace") or "default"
    inv = {"kind": obj.get("kind"), "namespace": ns, "name": md["name"], "uid": md.get("uid"),
           "apiVersion": obj.get("apiVersion"), "resourceVersion": md.get("resourceVersion")}
    if count_key:
        inv["fieldPath"] = count_key
    store = api.store
    ts = now()
    with store.lock:
        events = store.list(EVENT.key, ns)[0]
        if len(events) >= MAX_EVENTS:             # bounded, like the apiserver's event TTL
            events.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["resourceVersion"]))
            for e in events[:len(events) - MAX_EVENTS + 1]:
                store.remove(EVENT.key, ns, e["metadata"]["name"])
            events = events[len(events) - MAX_EVENTS + 1:]
        for e in events:
            io = e.get("involvedObject") or {}
            if io.get("uid") == inv["uid"] and e.get("reason") == reason and e.get("message") == message \
                    and io.get("fieldPath") == inv.get("fieldPath"):
                new = copy.deepcopy(e)
                new["count"] = e.get("count", 1) + 1
                new["lastTimestamp"] = ts
                api._commit(EVENT, e, new, None, None, False, True)
                return
        ev = {"metadata": {"name": f'{md["name"]}.{new_uid().replace("-", "")[:16]}', "namespace": ns},
              "involvedObject": {k: v for k, v in inv.items() if v is not None},
              "reason": reason, "message": message, "type": etype,
              "source": {"component": component, **({"host": "hoist-emulator"} if component == "kubelet" else {})},
              "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
              "reportingComponent": component, "reportingInstance": "hoist-emulator"}
        try:
            api.create(EVENT, ns, ev, internal=True)
        except ApiError:
            pass


def start(srv):
    c = Controllers(srv)
    srv.controllers = c
    threading.Thread(target=c.run, daemon=True, name="controllers").start()
    for n in srv.store.list("/namespaces")[0]:
        c.enqueue(("sa", "", n["metadata"]["name"]))
    return c
