"""meta.k8s.io/v1 Table responses for `kubectl get` (columns like the real printers)."""

import time

from objects import parse_time


def age(obj):
    ts = obj["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    s = max(0, int(time.time() - parse_time(ts)))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _col(name, typ="string", fmt="", prio=0, desc=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": prio}


def _pod_row(o):
    st = o.get("status", {})
    cs = st.get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in cs)
    reason = st.get("reason") or st.get("phase", "Pending")
    for c in cs:
        state = c.get("state", {})
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [o["metadata"]["name"], f"{ready}/{total}", reason, restarts, age(o),
            st.get("podIP", "<none>"), (o.get("spec") or {}).get("nodeName", "<none>")]


def _svc_ports(o):
    ps = (o.get("spec") or {}).get("ports") or []
    return ",".join(f'{p.get("port")}/{p.get("protocol", "TCP")}' for p in ps) or "<none>"


def _job_status(o):
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            return c["type"]
    return "Running"


def _job_duration(o):
    st = o.get("status") or {}
    if not st.get("startTime"):
        return ""
    end = parse_time(st["completionTime"]) if st.get("completionTime") else time.time()
    return f"{max(0, int(end - parse_time(st['startTime'])))}s"


def _node_row(o):
    st = o.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (o["metadata"].get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/"))
    addr = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [o["metadata"]["name"], status, ",".join(roles) or "<none>", age(o), info.get("kubeletVersion", ""),
            addr.get("InternalIP", "<none>"), addr.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


COLUMNS = {
    "nodes": ([_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
               _col("Internal-IP", prio=1), _col("External-IP", prio=1), _col("OS-Image", prio=1),
               _col("Kernel-Version", prio=1), _col("Container-Runtime", prio=1)], _node_row),
    "pods": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "integer"),
              _col("Age"), _col("IP", prio=1), _col("Node", prio=1)], _pod_row),
    "deployments": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"),
                     _col("Available", "integer"), _col("Age")],
                    lambda o: [o["metadata"]["name"],
                               f'{o.get("status", {}).get("readyReplicas", 0)}/{o["spec"].get("replicas", 0)}',
                               o.get("status", {}).get("updatedReplicas", 0),
                               o.get("status", {}).get("availableReplicas", 0), age(o)]),
    "replicasets": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                     _col("Ready", "integer"), _col("Age")],
                    lambda o: [o["metadata"]["name"], o["spec"].get("replicas", 0),
                               o.get("status", {}).get("replicas", 0),
                               o.get("status", {}).get("readyReplicas", 0), age(o)]),
    "statefulsets": ([_col("Name", fmt="name"), _col("Ready"), _col("Age")],
                     lambda o: [o["metadata"]["name"],
                                f'{o.get("status", {}).get("readyReplicas", 0)}/{o["spec"].get("replicas", 0)}', age(o)]),
    "daemonsets": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                    _col("Ready", "integer"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                    _col("Node Selector"), _col("Age")],
                   lambda o: [o["metadata"]["name"]] + [o.get("status", {}).get(k, 0) for k in (
                       "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
                       "numberAvailable")] + [",".join(f"{k}={v}" for k, v in sorted(
                           (((o["spec"].get("template") or {}).get("spec") or {}).get("nodeSelector") or {}).items()))
                           or "<none>", age(o)]),
    "jobs": ([_col("Name", fmt="name"), _col("Status"), _col("Completions"), _col("Duration"), _col("Age")],
             lambda o: [o["metadata"]["name"], _job_status(o),
                        f'{o.get("status", {}).get("succeeded", 0)}/{o["spec"].get("completions", 1)}',
                        _job_duration(o), age(o)]),
    "services": ([_col("Name", fmt="name"), _col("Type"), _col("Cluster-IP"), _col("External-IP"),
                  _col("Port(s)"), _col("Age")],
                 lambda o: [o["metadata"]["name"], o["spec"].get("type", "ClusterIP"),
                            o["spec"].get("clusterIP", "<none>"),
                            (o["metadata"].get("annotations") or {}).get("hoist.dev/emulator-address", "<none>"),
                            _svc_ports(o), age(o)]),
    "namespaces": ([_col("Name", fmt="name"), _col("Status"), _col("Age")],
                   lambda o: [o["metadata"]["name"], o.get("status", {}).get("phase", ""), age(o)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
               lambda o: [age(o), o.get("type", ""), o.get("reason", ""),
                          f'{(o.get("involvedObject") or {}).get("kind", "").lower()}/'
                          f'{(o.get("involvedObject") or {}).get("name", "")}', o.get("message", "")]),
}


def table(res, items, list_meta, include="Metadata"):
    cols, row = COLUMNS.get(res.plural, ([_col("Name", fmt="name"), _col("Age")],
                                         lambda o: [o["metadata"]["name"], age(o)]))
    rows = []
    for o in items:
        if include == "Object":
            meta = dict(o, kind=res.kind, apiVersion=res.api_version)
        else:
            meta = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"]}
        rows.append({"cells": row(o), "object": meta} if include != "None" else {"cells": row(o)})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": cols, "rows": rows}
