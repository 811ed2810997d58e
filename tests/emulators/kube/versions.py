"""Resources served in a second version and stored in the first's: autoscaling/v1
HorizontalPodAutoscalers (what `kubectl autoscale` 1.32 writes), stored as autoscaling/v2.
The conversion is the API server's for the fields v1 has: the CPU utilization target is v2's
Resource metric `cpu` of type Utilization."""

import copy

import discovery


def storage(res):
    """The stored resource of a served one (itself when it is stored as served)."""
    return discovery.BY_KEY[res.key]


def to_storage(res, obj):
    if res is storage(res) or not isinstance(obj, dict):
        return obj
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = storage(res).api_version
    spec = obj.get("spec")
    if isinstance(spec, dict) and "targetCPUUtilizationPercentage" in spec:
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": spec.pop("targetCPUUtilizationPercentage")}}}]
    obj.pop("status", None)
    return obj


def from_storage(res, obj):
    if res is storage(res) or not isinstance(obj, dict) or obj.get("kind") == "Status":
        return obj
    if obj.get("kind", "").endswith("List"):
        return dict(obj, apiVersion=res.api_version, items=[from_storage(res, o) for o in obj.get("items", [])])
    obj = copy.deepcopy(obj)
    if "apiVersion" in obj:
        obj["apiVersion"] = res.api_version
    spec = obj.get("spec") or {}
    for m in spec.pop("metrics", None) or []:
        r = m.get("resource") or {}
        if m.get("type") == "Resource" and r.get("name") == "cpu" and \
                (r.get("target") or {}).get("type") == "Utilization":
            spec["targetCPUUtilizationPercentage"] = r["target"].get("averageUtilization")
    spec.pop("behavior", None)
    st = obj.get("status") or {}
    obj["status"] = {k: st[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                        "desiredReplicas") if k in st}
    obj["status"].setdefault("currentReplicas", 0)
    obj["status"].setdefault("desiredReplicas", 0)
    return obj
