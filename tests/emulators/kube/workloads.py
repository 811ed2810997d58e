"""StatefulSet, DaemonSet and Job controllers (run by controllers.Controllers' worker thread).

Close enough to kube-controller-manager's that `kubectl rollout status statefulset|daemonset`,
`kubectl rollout history` and `kubectl wait --for=condition=complete job/x` see what a real
cluster shows:
- StatefulSet: ControllerRevisions `<name>-<hash>`, pods `<name>-0..N-1` labelled
  controller-revision-hash (the revision's name) and statefulset.kubernetes.io/pod-name,
  OrderedReady (one pod at a time, each Running and Ready before the next) or Parallel,
  RollingUpdate from the highest ordinal down to the partition, one pod at a time, each
  Ready before the next; OnDelete; status with current/update revisions.
- DaemonSet: one node (hoist-emulator), so one pod when the template's nodeSelector matches
  it; RollingUpdate (maxUnavailable: the old pod goes first; maxSurge: the new pod first),
  OnDelete; pods labelled controller-revision-hash and pod-template-generation.
- Job: completions, parallelism, backoffLimit (failed pods, or container restarts with
  restartPolicy OnFailure), activeDeadlineSeconds, suspend; a retry after a failed pod waits a
  back-off doubling from the kubelet's --crash-backoff; conditions SuccessCriteriaMet and
  Complete, or FailureTarget and Failed (BackoffLimitExceeded, DeadlineExceeded).
"""

import copy
import re
import time

import discovery
from controllers import POD, active, controller_ref, owner_ref, pod_available, pod_ready, resolve, template_hash
from objects import ApiError, canonical, labels_match, now, parse_time, selector_from_label_selector

STS = discovery.BY_KEY["apps/statefulsets"]
DS = discovery.BY_KEY["apps/daemonsets"]
CR = discovery.BY_KEY["apps/controllerrevisions"]
JOB = discovery.BY_KEY["batch/jobs"]
NODE = "hoist-emulator"
REV_LABEL = "controller-revision-hash"
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
GENERATION = "pod-template-generation"
MAX_JOB_BACKOFF = 360.0


def deleting(o):
    return bool(o["metadata"].get("deletionTimestamp"))


def phase(p):
    return (p.get("status") or {}).get("phase")


def healthy(p):
    return not deleting(p) and phase(p) == "Running" and pod_ready(p)[0]


def plain_template(tpl):
    """A template as compared between revisions: without the $patch marker and null fields."""
    t = copy.deepcopy(tpl or {})
    t.pop("$patch", None)
    return canonical(t)


class Workloads:
    def __init__(self, ctl):
        self.c = ctl
        self.api = ctl.api
        self.store = ctl.store

    # -- events -> work --------------------------------------------------------------------
    def on_event(self, key, obj):
        md = obj["metadata"]
        ns = md.get("namespace", "")
        if key == STS.key:
            self.c.enqueue(("sts", ns, md["name"]))
        elif key == DS.key:
            self.c.enqueue(("ds", ns, md["name"]))
        elif key == JOB.key:
            self.c.enqueue(("job", ns, md["name"]))
        elif key == POD.key:
            ref = controller_ref(obj) or {}
            kind = {"StatefulSet": "sts", "DaemonSet": "ds", "Job": "job"}.get(ref.get("kind"))
            if kind:
                self.c.enqueue((kind, ns, ref["name"]))

    def sync(self, kind, ns, name):
        if kind == "sts":
            self.sync_statefulset(ns, name)
        elif kind == "ds":
            self.sync_daemonset(ns, name)
        elif kind == "job":
            self.sync_job(ns, name)
        else:
            return False
        return True

    def resync(self):
        for res, kind in ((STS, "sts"), (DS, "ds"), (JOB, "job")):
            for o in self.store.list(res.key)[0]:
                if kind == "job" and any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                                         for c in (o.get("status") or {}).get("conditions") or []):
                    continue
                self.c.enqueue((kind, o["metadata"]["namespace"], o["metadata"]["name"]))

    # -- shared ----------------------------------------------------------------------------
    def event(self, obj, etype, reason, message, component):
        self.c.event(obj, etype, reason, message, component)

    def delete_pod(self, owner, pod, component):
        try:
            self.api.delete(POD, pod["metadata"]["namespace"], pod["metadata"]["name"], {})
            self.event(owner, "Normal", "SuccessfulDelete", f"delete Pod {pod['metadata']['name']} in "
                       f"{owner['kind']} {owner['metadata']['name']} successful" if owner["kind"] == "StatefulSet"
                       else f"Deleted pod: {pod['metadata']['name']}", component)
        except ApiError:
            pass

    def create_pod(self, owner, pod, component):
        ns = owner["metadata"]["namespace"]
        try:
            created = self.api.create(POD, ns, pod, internal=True)
        except ApiError as e:
            self.event(owner, "Warning", "FailedCreate", f"create Pod {pod['metadata'].get('name', '')} in "
                       f"{owner['kind']} {owner['metadata']['name']} failed error: {e.message}", component)
            return None
        msg = f"create Pod {created['metadata']['name']} in StatefulSet {owner['metadata']['name']} successful" \
            if owner["kind"] == "StatefulSet" else f"Created pod: {created['metadata']['name']}"
        self.event(owner, "Normal", "SuccessfulCreate", msg, component)
        return created

    def revision(self, owner, res):
        """The ControllerRevision of owner's current template (created, or an old one renumbered)."""
        ns, name, uid = owner["metadata"]["namespace"], owner["metadata"]["name"], owner["metadata"]["uid"]
        tpl = owner["spec"].get("template") or {}
        want = plain_template(tpl)
        revs = self.c.owned(CR, ns, uid)
        top = max([r.get("revision", 0) for r in revs] or [0])
        match = next((r for r in revs if plain_template(((r.get("data") or {}).get("spec") or {}).get("template"))
                      == want), None)
        if match is not None:
            if match.get("revision", 0) < top:       # back to an older template: it is the newest again

                def bump(o, n=top + 1):
                    o["revision"] = n
                match = self.c.mutate(CR, ns, match["metadata"]["name"], bump) or match
            return match
        collisions = 0
        for _ in range(5):
            h = template_hash(tpl, collisions)
            existing = self.store.get(CR.key, ns, f"{name}-{h}")
            if existing is None:
                break
            collisions += 1
        labels = dict((owner["spec"].get("selector") or {}).get("matchLabels") or {})
        labels[REV_LABEL] = h
        data_tpl = copy.deepcopy(tpl)
        data_tpl["$patch"] = "replace"
        cr = {"metadata": {"name": f"{name}-{h}", "labels": labels,
                           "ownerReferences": [owner_ref(owner, owner["kind"], "apps/v1")]},
              "data": {"spec": {"template": data_tpl}}, "revision": top + 1}
        created = self.api.create(CR, ns, cr, internal=True)
        self.prune_revisions(owner)
        return created

    def prune_revisions(self, owner, keep_names=()):
        ns = owner["metadata"]["namespace"]
        limit = owner["spec"].get("revisionHistoryLimit", 10)
        revs = sorted(self.c.owned(CR, ns, owner["metadata"]["uid"]), key=lambda r: r.get("revision", 0))
        old = [r for r in revs[:-1] if r["metadata"]["name"] not in keep_names]
        for r in old[:max(0, len(old) - limit)]:
            try:
                self.api.delete(CR, ns, r["metadata"]["name"], {})
            except ApiError:
                pass

    def put_status(self, res, ns, name, status):
        def put(o):
            if o.get("status") == status:
                return False
            o["status"] = status
        self.c.mutate(res, ns, name, put, "status")

    # -- StatefulSet -----------------------------------------------------------------------
    def sts_pod(self, s, cr, ordinal):
        name = f"{s['metadata']['name']}-{ordinal}"
        tpl = copy.deepcopy(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
        tpl.pop("$patch", None)
        md = tpl.get("metadata") or {}
        md = {k: v for k, v in md.items() if k in ("labels", "annotations")}
        md["name"] = name
        md.setdefault("labels", {}).update({REV_LABEL: cr["metadata"]["name"], POD_NAME: name,
                                            POD_INDEX: str(ordinal)})
        md["ownerReferences"] = [owner_ref(s, "StatefulSet", "apps/v1")]
        spec = tpl.get("spec") or {}
        spec["hostname"] = name
        if s["spec"].get("serviceName"):
            spec["subdomain"] = s["spec"]["serviceName"]
        return {"metadata": md, "spec": spec}

    def sync_statefulset(self, ns, name):
        s = self.store.get(STS.key, ns, name)
        if s is None or deleting(s):
            return
        spec = s["spec"]
        upd = self.revision(s, STS)
        upd_name = upd["metadata"]["name"]
        st = s.get("status") or {}
        cur = self.store.get(CR.key, ns, st.get("currentRevision") or "") or upd
        cur_name = cur["metadata"]["name"]
        replicas = spec.get("replicas", 1)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate")
        partition = int((ru or {}).get("partition") or 0) if rolling else 0
        parallel = spec.get("podManagementPolicy") == "Parallel"
        ordinal_re = re.compile(re.escape(name) + r"-(\d+)$")
        pods = {}
        for p in self.c.owned(POD, ns, s["metadata"]["uid"]):
            m = ordinal_re.match(p["metadata"]["name"])
            if m:
                pods[int(m.group(1))] = p

        def rev(p):
            return (p["metadata"].get("labels") or {}).get(REV_LABEL)
        comp = "statefulset-controller"
        # a failed pod is deleted, then created again
        for _, p in sorted(pods.items()):
            if phase(p) == "Failed" and not deleting(p):
                self.delete_pod(s, p, comp)
        blocked = False
        for o in range(replicas):
            p = pods.get(o)
            if p is None:
                if blocked:
                    continue
                use_current = rolling and ((ru is None and o < st.get("currentReplicas", 0)) or
                                           (ru is not None and o < partition))
                created = self.create_pod(s, self.sts_pod(s, cur if use_current else upd, o), comp)
                if created is not None:
                    pods[o] = created
                if not parallel:
                    blocked = True
            elif not parallel and not healthy(p):
                blocked = True
        condemned = sorted((o for o in pods if o >= replicas), reverse=True)
        for o in condemned:
            if blocked:
                break
            if not deleting(pods[o]):
                self.delete_pod(s, pods[o], comp)
            if not parallel:
                blocked = True
        if rolling and not blocked and not condemned:
            for o in range(replicas - 1, partition - 1, -1):
                p = pods.get(o)
                if p is None:
                    break
                if rev(p) != upd_name and not deleting(p):
                    self.delete_pod(s, p, comp)
                    break
                if not healthy(p):
                    break
        self.statefulset_status(s, upd_name, cur_name, rolling)

    def statefulset_status(self, s, upd_name, cur_name, rolling):
        ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
        pods = [p for p in self.c.owned(POD, ns, s["metadata"]["uid"]) if not deleting(p)]
        t = time.time()
        min_ready = s["spec"].get("minReadySeconds", 0)

        def rev(p):
            return (p["metadata"].get("labels") or {}).get(REV_LABEL)
        count = len(pods)
        ready = sum(1 for p in pods if pod_ready(p)[0])
        updated = sum(1 for p in pods if rev(p) == upd_name)
        current = sum(1 for p in pods if rev(p) == cur_name)
        if updated == count and ready == count and count == s["spec"].get("replicas", 1):
            cur_name, current = upd_name, updated     # the rolling update is complete
        status = {"observedGeneration": s["metadata"].get("generation", 1), "replicas": count}
        for k, v in (("readyReplicas", ready), ("currentReplicas", current), ("updatedReplicas", updated)):
            if v:
                status[k] = v
        status.update(currentRevision=cur_name, updateRevision=upd_name, collisionCount=0,
                      availableReplicas=sum(1 for p in pods if pod_available(p, min_ready, t)))
        self.put_status(STS, ns, name, status)
        self.prune_revisions(s, {upd_name, cur_name} | {rev(p) for p in pods})

    # -- DaemonSet -------------------------------------------------------------------------
    def sync_daemonset(self, ns, name):
        d = self.store.get(DS.key, ns, name)
        if d is None or deleting(d):
            return
        cr = self.revision(d, DS)
        h = cr["metadata"]["labels"][REV_LABEL]
        gen = str(d["metadata"].get("generation", 1))
        spec = d["spec"]
        node = self.store.get("/nodes", "", NODE)
        node_labels = (node or {}).get("metadata", {}).get("labels") or {}
        sel = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
        desired = 1 if node is not None and all(node_labels.get(k) == v for k, v in sel.items()) else 0
        comp = "daemonset-controller"
        pods = self.c.owned(POD, ns, d["metadata"]["uid"])
        for p in pods:
            if phase(p) == "Failed" and not deleting(p):
                self.delete_pod(d, p, comp)
        live = [p for p in pods if not deleting(p) and phase(p) != "Failed"]
        going = [p for p in pods if deleting(p)]

        def updated(p):
            return (p["metadata"].get("labels") or {}).get(REV_LABEL) == h
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve(ru.get("maxSurge", 0), desired, True) if rolling else 0
        if desired == 0:
            for p in live:
                self.delete_pod(d, p, comp)
        else:
            new = [p for p in live if updated(p)]
            old = [p for p in live if not updated(p)]
            if not live and not going or (rolling and surge > 0 and old and not new):
                tpl = copy.deepcopy(spec.get("template") or {})
                md = {k: v for k, v in (tpl.get("metadata") or {}).items() if k in ("labels", "annotations")}
                md.setdefault("labels", {}).update({REV_LABEL: h, GENERATION: gen})
                md["generateName"] = name + "-"
                md["ownerReferences"] = [owner_ref(d, "DaemonSet", "apps/v1")]
                self.create_pod(d, {"metadata": md, "spec": tpl.get("spec") or {}}, comp)
            elif rolling and old:
                t = time.time()
                if surge == 0 or any(pod_available(p, spec.get("minReadySeconds", 0), t) for p in new):
                    for p in old:
                        self.delete_pod(d, p, comp)
            for p in (new or old)[1:]:              # one pod per node
                self.delete_pod(d, p, comp)
        pods = [p for p in self.c.owned(POD, ns, d["metadata"]["uid"]) if not deleting(p) and phase(p) != "Failed"]
        t = time.time()
        ready = sum(1 for p in pods if pod_ready(p)[0])
        available = sum(1 for p in pods if pod_available(p, spec.get("minReadySeconds", 0), t))
        status = {"currentNumberScheduled": min(1, len(pods)), "numberMisscheduled": 0,
                  "desiredNumberScheduled": desired, "numberReady": min(1, ready),
                  "observedGeneration": d["metadata"].get("generation", 1)}
        if any(updated(p) for p in pods):
            status["updatedNumberScheduled"] = 1
        if available:
            status["numberAvailable"] = min(1, available)
        if desired - min(1, available) > 0:
            status["numberUnavailable"] = desired - min(1, available)
        self.put_status(DS, ns, name, status)
        self.prune_revisions(d, {cr["metadata"]["name"]})

    # -- Job -------------------------------------------------------------------------------
    def sync_job(self, ns, name):
        j = self.store.get(JOB.key, ns, name)
        if j is None or deleting(j):
            return
        spec, st = j["spec"], copy.deepcopy(j.get("status") or {})
        comp = "job-controller"
        conds = st.get("conditions") or []
        pods = self.c.owned(POD, ns, j["metadata"]["uid"])
        running = [p for p in pods if active(p)]
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds):
            for p in running:                        # a finished job leaves no pod running
                self.delete_pod(j, p, comp)
            return
        sel = selector_from_label_selector(spec.get("selector"))
        pods = [p for p in pods if labels_match(sel, p["metadata"].get("labels"))]
        running = [p for p in pods if active(p)]
        terminating = [p for p in pods if deleting(p) and phase(p) not in ("Succeeded", "Failed")]
        succeeded = max(st.get("succeeded", 0), sum(1 for p in pods if phase(p) == "Succeeded"))
        failed_pods = [p for p in pods if phase(p) == "Failed"]
        failed = max(st.get("failed", 0), len(failed_pods))
        completions, parallelism = spec.get("completions"), spec.get("parallelism", 1)
        backoff = spec.get("backoffLimit", 6)
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        restarts = 0
        if policy == "OnFailure":                    # restarts in place count against backoffLimit
            restarts = sum(cs.get("restartCount", 0) for p in running
                           for cs in (p.get("status") or {}).get("containerStatuses") or [])
        ts = now()
        suspended = spec.get("suspend") is True
        if not suspended and not st.get("startTime"):
            st["startTime"] = ts
        finished = None
        if (completions is not None and succeeded >= completions) or \
                (completions is None and succeeded > 0 and not running):
            finished = ("Complete", "SuccessCriteriaMet", "CompletionsReached",
                        "Reached expected number of succeeded pods")
        elif failed > backoff or (policy == "OnFailure" and (restarts >= backoff if backoff > 0 else restarts > 0)):
            finished = ("Failed", "FailureTarget", "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit")
        elif spec.get("activeDeadlineSeconds") is not None and st.get("startTime") and not suspended and \
                parse_time(st["startTime"]) + spec["activeDeadlineSeconds"] <= time.time():
            finished = ("Failed", "FailureTarget", "DeadlineExceeded",
                        "Job was active longer than specified deadline")

        def cond(ctype, reason, message, status="True"):
            old = next((c for c in conds if c.get("type") == ctype), None)
            if old and old.get("status") == status and old.get("reason") == reason:
                return
            c = {"type": ctype, "status": status, "lastProbeTime": ts, "lastTransitionTime": ts,
                 "reason": reason, "message": message}
            conds[:] = [x for x in conds if x.get("type") != ctype] + [c]
        if finished:
            final, interim, reason, message = finished
            cond(interim, reason, message)
            cond(final, reason, message)
            for p in running:
                self.delete_pod(j, p, comp)
            if final == "Complete":
                st["completionTime"] = ts
                self.event(j, "Normal", "Completed", "Job completed", comp)
            else:
                self.event(j, "Warning", reason, message, comp)
            running = []
        elif suspended:
            for p in running:
                self.delete_pod(j, p, comp)
            running = []
            cond("Suspended", "JobSuspended", "Job suspended")
        else:
            if any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conds):
                cond("Suspended", "JobResumed", "Job resumed", "False")
            want = parallelism if completions is None else min(parallelism, completions - succeeded)
            if completions is None and succeeded > 0:
                want = 0                             # a work queue: no new pod once one succeeded
            if len(running) < want and self.retry_due(failed_pods):
                for _ in range(want - len(running)):
                    tpl = copy.deepcopy(spec.get("template") or {})
                    md = {k: v for k, v in (tpl.get("metadata") or {}).items() if k in ("labels", "annotations")}
                    md["generateName"] = name + "-"
                    md["ownerReferences"] = [owner_ref(j, "Job", "batch/v1")]
                    created = self.create_pod(j, {"metadata": md, "spec": tpl.get("spec") or {}}, comp)
                    if created is None:
                        break
                    running.append(created)
        status = {k: v for k, v in st.items() if k in ("startTime", "completionTime")}
        if conds:
            status["conditions"] = conds
        if running:
            status["active"] = len(running)
        if succeeded:
            status["succeeded"] = succeeded
        if failed:
            status["failed"] = failed
        status.update(ready=sum(1 for p in running if pod_ready(p)[0]), terminating=len(terminating),
                      uncountedTerminatedPods={})
        self.put_status(JOB, ns, name, status)

    def retry_due(self, failed_pods):
        """A new pod after failed ones waits a back-off (the kubelet's, doubling per failure)."""
        if not failed_pods:
            return True
        base = getattr(getattr(self.c.srv, "kubelet", None), "backoff", 1.0) or 1.0
        last = 0.0
        for p in failed_pods:
            for cs in (p.get("status") or {}).get("containerStatuses") or []:
                fin = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
                if fin:
                    last = max(last, parse_time(fin))
        delay = min(MAX_JOB_BACKOFF, base * 2 ** (len(failed_pods) - 1))
        return time.time() >= last + delay
