"""The resources the emulator serves and the discovery documents describing them.

Shapes follow the recorded responses in ../shared/fixtures/k8s/discovery (APIVersions,
APIGroupList, APIGroup, APIResourceList). The legacy (non-aggregated) discovery form is
served with Content-Type application/json, which client-go accepts as the fallback when it
asked for the aggregated form first.
"""

VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-hoist-emulator",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
    "platform": "linux/amd64",
}

RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB = ["get", "patch", "update"]


class Resource:
    """One served resource: group/version, plural name, kind, scope and subresources."""

    def __init__(self, group, version, plural, kind, namespaced=True, short=None,
                 categories=None, subresources=(), verbs=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.short = short or []
        self.categories = categories or []
        self.subresources = dict(subresources)   # name -> kind
        self.verbs = verbs or RW

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self):
        """Store key: group/plural (one version per group here)."""
        return f"{self.group}/{self.plural}"

    @property
    def singular(self):
        return self.kind.lower()

    def prefix(self):
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace=None, name=None):
        p = self.prefix()
        if self.namespaced and namespace:
            p += f"/namespaces/{namespace}"
        p += f"/{self.plural}"
        if name:
            p += f"/{name}"
        return p


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"],
             subresources={"status": "Namespace", "finalize": "Namespace"}),
    Resource("", "v1", "nodes", "Node", namespaced=False, short=["no"],
             subresources={"status": "Node"}),
    Resource("", "v1", "pods", "Pod", short=["po"], categories=["all"],
             subresources={"status": "Pod", "log": "Pod", "eviction": "Eviction"}),
    Resource("", "v1", "services", "Service", short=["svc"], categories=["all"],
             subresources={"status": "Service"}),
    Resource("", "v1", "endpoints", "Endpoints", short=["ep"]),
    Resource("", "v1", "events", "Event", short=["ev"]),
    Resource("", "v1", "configmaps", "ConfigMap", short=["cm"]),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"]),
    Resource("apps", "v1", "deployments", "Deployment", short=["deploy"], categories=["all"],
             subresources={"status": "Deployment", "scale": "Scale"}),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short=["rs"], categories=["all"],
             subresources={"status": "ReplicaSet", "scale": "Scale"}),
    Resource("apps", "v1", "statefulsets", "StatefulSet", short=["sts"], categories=["all"],
             subresources={"status": "StatefulSet", "scale": "Scale"}),
    Resource("apps", "v1", "daemonsets", "DaemonSet", short=["ds"], categories=["all"],
             subresources={"status": "DaemonSet"}),
    Resource("apps", "v1", "controllerrevisions", "ControllerRevision"),
    Resource("batch", "v1", "jobs", "Job", categories=["all"], subresources={"status": "Job"}),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
             short=["hpa"], categories=["all"], subresources={"status": "HorizontalPodAutoscaler"}),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=["pdb"],
             subresources={"status": "PodDisruptionBudget"}),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
]
# served in a second version, stored in the first's (what `kubectl autoscale` 1.32 writes):
# create, get, list and delete, converted by versions.py
OLDER = [Resource("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                  short=["hpa"], categories=["all"], verbs=["create", "delete", "get", "list"])]
# answered, not stored: `kubectl auth can-i`
REVIEWS = [Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
                    namespaced=False, verbs=["create"])]

GROUP_ORDER = ["", "apps", "autoscaling", "batch", "policy", "coordination.k8s.io", "authorization.k8s.io"]
GROUP_VERSIONS = {"": "v1", "apps": "v1", "autoscaling": "v2", "batch": "v1", "policy": "v1",
                  "coordination.k8s.io": "v1", "authorization.k8s.io": "v1"}
MORE_VERSIONS = {"autoscaling": ["v1"]}           # after the preferred one

BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES + OLDER + REVIEWS}
BY_KEY = {r.key: r for r in RESOURCES}
BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def lookup(group, version, plural):
    return BY_PATH.get((group, version, plural))


def by_kind(api_version, kind):
    group = api_version.split("/")[0] if "/" in api_version else ""
    return BY_KIND.get((group, kind))


def api_versions():
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "127.0.0.1:5020"}]}


def _group(name):
    vers = [{"groupVersion": f"{name}/{v}", "version": v}
            for v in [GROUP_VERSIONS[name]] + MORE_VERSIONS.get(name, [])]
    return {"name": name, "versions": vers, "preferredVersion": vers[0]}


def api_groups():
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g) for g in GROUP_ORDER if g]}


def api_group(name):
    if name not in GROUP_VERSIONS or not name:
        return None
    return dict(_group(name), kind="APIGroup", apiVersion="v1")


def resource_list(group, version):
    if group not in GROUP_VERSIONS or version not in [GROUP_VERSIONS[group]] + MORE_VERSIONS.get(group, []):
        return None
    out = []
    for r in RESOURCES + OLDER + REVIEWS:
        if r.group != group or r.version != version:
            continue
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": r.verbs}
        if r.short:
            entry["shortNames"] = r.short
        if r.categories:
            entry["categories"] = r.categories
        out.append(entry)
        for sub, kind in r.subresources.items():
            verbs = ["create"] if sub == "eviction" else ["get"] if sub == "log" else SUB
            e = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                 "kind": kind, "verbs": verbs}
            if sub == "scale":
                e.update(group="autoscaling", version="v1")
            if sub == "eviction":
                e.update(group="policy", version="v1")
            out.append(e)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


# ------------------------------------------------------------------------------------------
# OpenAPI v3: only what kubectl reads. `kubectl apply` (and create/replace) first checks
# whether the PATCH operation of the object's group-version-kind lists the fieldValidation
# query parameter; if so it asks the server to validate (fieldValidation=Strict) instead of
# validating against schemas itself. So each group-version document lists the PATCH
# operations with that parameter and the GVK extension; schemas are left out.

def _gv_path(group, version):
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_index():
    paths = {}
    for g in GROUP_ORDER:
        gv = _gv_path(g, GROUP_VERSIONS[g])
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash=hoist-emulator-1"}
    return {"paths": paths}


def openapi_gv(gv_path):
    params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
    for g in GROUP_ORDER:
        if _gv_path(g, GROUP_VERSIONS[g]) != gv_path:
            continue
        paths = {}
        for r in RESOURCES:
            if r.group != g:
                continue
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            p = r.prefix() + ("/namespaces/{namespace}" if r.namespaced else "") + f"/{r.plural}/{{name}}"
            paths[p] = {"patch": {"operationId": f"patch{r.kind}", "parameters": params,
                                  "x-kubernetes-action": "patch",
                                  "x-kubernetes-group-version-kind": gvk,
                                  "responses": {"200": {"description": "OK"}}}}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
                "paths": paths, "components": {"schemas": {}}}
    return None
