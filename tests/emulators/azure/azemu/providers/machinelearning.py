"""Microsoft.MachineLearningServices: workspaces, environment versions (a custom container image
with its inference routes), workspace connections to container registries, and managed online
endpoints whose deployments run for real on the local Docker engine.

- `workspaces/{ws}/environments/{name}/versions/{v}`: `image` and `inferenceConfig`
  {livenessRoute, readinessRoute, scoringRoute: {path, port}}; a version is immutable (a PUT that
  changes it is refused, as Azure ML refuses it).
- `workspaces/{ws}/onlineEndpoints/{e}`: authMode Key; `listKeys` (POST) gives primaryKey and
  secondaryKey; `properties.traffic` {deployment: percent} (every name a deployment of the
  endpoint, the sum 100 or 0); `scoringUri` `https://<e>.<region>.inference.ml.azure.com/score`.
- `.../onlineEndpoints/{e}/deployments/{d}` (kind/endpointComputeType Managed): `environmentId`
  names an environment version of the workspace, `sku.capacity` instances of `instanceType`. The
  PUT is a long-running operation that pulls the image (the workspace's registry through the
  endpoint's identity, a registry connection of the workspace with its credentials, else
  anonymously), starts `capacity` containers with `environmentVariables`, publishing the route
  ports on 127.0.0.1, and ends when every instance answers its readiness route: Failed
  (ResourceNotReady, naming the route and the container's last log lines) when one exits or does
  not answer within readinessProbe.initialDelay + failureThreshold x period. `getLogs` (POST
  {containerType, tail}) gives the container's output. A deployment with traffic cannot be deleted.
- The scoring URI reaches the deployments through the emulator's proxy (TLS ended there):
  `Authorization: Bearer <key>` (401 otherwise), each request sent to a deployment chosen by the
  traffic weights, or the one the `azureml-model-deployment` header names; the answer carries
  `azureml-model-deployment` naming the deployment that served it.
"""

import copy
import hashlib
import http.client
import random
import re
import secrets
import threading
import time
import uuid

from .. import docker, registry_auth
from ..arm import ArmError, ResourceType, now_iso
from .. import apiversions
from . import resources

API = apiversions.of("Microsoft.MachineLearningServices")
NS = "Microsoft.MachineLearningServices"
WORKSPACE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
ENDPOINT_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")  # 3-32, Azure ML's rule
ASSET_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$")
# The managed online endpoints SKU list (a part of it: the CPU sizes)
INSTANCE_TYPES = {"Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2",
                  "Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2",
                  "Standard_E2s_v3", "Standard_E4s_v3", "Standard_E8s_v3", "Standard_E16s_v3", "Standard_E32s_v3"}
HOST_RE = re.compile(r"^([a-z0-9-]+)\.([a-z0-9]+)\.inference\.ml\.azure\.com$")
LOG_TAIL = 20


def bad(message, target=None, code="BadArgument"):
    return ArmError(400, code, message, target=target)


def region(loc):
    return (loc or "eastus").replace(" ", "").lower()


def seconds(duration, default):
    """Seconds of an ISO 8601 duration such as PT10S, PT1M30S, PT0.5S (the probes' fields)."""
    if duration is None:
        return default
    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", str(duration))
    if not m or duration in ("P", "PT"):
        raise bad("'%s' is not an ISO 8601 duration (e.g. PT10S)." % duration)
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def tracked(body, existing):
    res = {"location": body.get("location") or (existing or {}).get("location"),
           "tags": body.get("tags") if body.get("tags") is not None else (existing or {}).get("tags", {})}
    for k in ("identity", "sku", "kind"):
        if body.get(k) is not None:
            res[k] = copy.deepcopy(body[k])
        elif existing and existing.get(k) is not None:
            res[k] = copy.deepcopy(existing[k])
    return res


class Workspaces(ResourceType):
    key = NS + "/workspaces"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        if not WORKSPACE_RE.match(ctx.name):
            raise bad("Workspace name '%s' is invalid: 3-33 letters, digits, '-' and '_', beginning with a letter "
                      "or digit." % ctx.name, "name")
        props = copy.deepcopy((existing or {}).get("properties") or {})
        props.update(copy.deepcopy(body.get("properties") or {}))
        reg = props.get("containerRegistry")
        if reg and self.arm.get(reg) is None:
            raise bad("The container registry '%s' of the workspace does not exist." % reg, "properties.containerRegistry")
        props.setdefault("friendlyName", ctx.name)
        props["workspaceId"] = (existing or {}).get("properties", {}).get("workspaceId") or str(uuid.uuid4())
        loc = region(body.get("location") or (existing or {}).get("location"))
        props["discoveryUrl"] = "https://%s.api.azureml.ms/discovery" % loc
        props["mlFlowTrackingUri"] = "azureml://%s.api.azureml.ms/mlflow/v1.0%s" % (loc, ctx_id(ctx, "workspaces"))
        res = tracked(body, existing)
        res["identity"] = res.get("identity") or {"type": "SystemAssigned"}
        res["properties"] = props
        return res


class Connections(ResourceType):
    """Workspace connections: a ContainerRegistry connection with UsernamePassword credentials is
    how a deployment pulls from a registry other than the workspace's. Credentials never come back."""
    key = NS + "/workspaces/connections"
    api_versions = API
    location_required = False

    def create(self, ctx, existing, body):
        props = copy.deepcopy(body.get("properties") or {})
        if not props.get("category") or not props.get("authType"):
            raise bad("A connection needs properties.category and properties.authType.", "properties")
        if props["authType"] == "UsernamePassword":
            creds = props.get("credentials") or {}
            if not creds.get("username") or not creds.get("password"):
                raise bad("UsernamePassword needs credentials.username and credentials.password.",
                          "properties.credentials")
        return {"properties": props}

    def view(self, res):
        res = copy.deepcopy(res)
        creds = res["properties"].get("credentials")
        if isinstance(creds, dict):
            res["properties"]["credentials"] = {k: v for k, v in creds.items() if k == "username"}
        return res


class EnvironmentContainers(ResourceType):
    key = NS + "/workspaces/environments"
    api_versions = API
    location_required = False

    def create(self, ctx, existing, body):
        if not ASSET_RE.match(ctx.name):
            raise bad("Environment name '%s' is invalid." % ctx.name, "name")
        props = copy.deepcopy((existing or {}).get("properties") or {})
        props.update(copy.deepcopy(body.get("properties") or {}))
        props.setdefault("isArchived", False)
        return {"properties": props}


class EnvironmentVersions(ResourceType):
    key = NS + "/workspaces/environments/versions"
    api_versions = API
    location_required = False

    def create(self, ctx, existing, body):
        if not ASSET_RE.match(ctx.name):
            raise bad("Environment version '%s' is invalid." % ctx.name, "name")
        props = copy.deepcopy(body.get("properties") or {})
        if not props.get("image") and not props.get("build"):
            raise bad("An environment needs properties.image (or build).", "properties.image")
        for k, route in (props.get("inferenceConfig") or {}).items():
            if k not in ("livenessRoute", "readinessRoute", "scoringRoute"):
                raise bad("Unknown inferenceConfig member '%s'." % k, "properties.inferenceConfig")
            if not isinstance(route, dict) or not str(route.get("path", "")).startswith("/") \
                    or not isinstance(route.get("port"), int) or not 1 <= route["port"] <= 65535:
                raise bad("inferenceConfig.%s needs a path starting with '/' and a port from 1 to 65535." % k,
                          "properties.inferenceConfig." + k)
        if existing:
            old = existing["properties"]
            for k in ("image", "inferenceConfig", "build", "condaFile"):
                if old.get(k) != props.get(k):
                    raise ArmError(409, "Conflict", "Environment %s version %s already exists with different "
                                   "properties (%s): environment versions are immutable; create a new version."
                                   % (ctx.names[-2], ctx.name, k))
        props.setdefault("environmentType", "UserCreated")
        props.setdefault("osType", "Linux")
        props.setdefault("isAnonymous", False)
        return {"properties": props}


class Instance:
    def __init__(self, dname):
        self.dname = dname
        self.ports = {}  # container port -> 127.0.0.1 port


class Runtime:
    def __init__(self):
        self.instances = []
        self.env = None       # the environment version's properties
        self.ready = False
        self.lock = threading.Lock()


class OnlineEndpoints(ResourceType):
    key = NS + "/workspaces/onlineEndpoints"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"
    actions = {"listKeys": (("POST",), "list_keys"), "regenerateKeys": (("POST",), "regenerate_keys")}

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        name = ctx.name
        if not ENDPOINT_RE.match(name):
            raise bad("Endpoint name '%s' is invalid: 3-32 characters, letters, digits and '-', beginning with a "
                      "letter and ending with a letter or digit." % name, "name")
        props = copy.deepcopy(body.get("properties") or {})
        old = (existing or {}).get("properties") or {}
        mode = props.get("authMode") or old.get("authMode")
        if mode not in ("Key", "AMLToken", "AADToken"):
            raise bad("properties.authMode must be Key, AMLToken or AADToken, not %r." % mode, "properties.authMode")
        if existing and mode != old.get("authMode"):
            raise bad("The authMode of an endpoint cannot change (%s to %s)." % (old.get("authMode"), mode),
                      "properties.authMode")
        loc = body.get("location") or (existing or {}).get("location")
        with self.arm.lock:
            same = [r for r in self.arm.resources.values() if r["type"] == self.key and r["name"].lower() == name.lower()
                    and region(r.get("location")) == region(loc) and (existing is None or r["id"] != existing["id"])]
        if same:
            raise ArmError(409, "Conflict", "An endpoint named '%s' already exists in %s: endpoint names are unique "
                           "in a region." % (name, region(loc)))
        props["traffic"] = self.check_traffic(ctx_id(ctx, "onlineEndpoints"), props.get("traffic") or {})
        props.setdefault("mirrorTraffic", {})
        res = tracked(body, existing)
        res["identity"] = res.get("identity") or {"type": "SystemAssigned"}
        res["properties"] = props
        res["_keys"] = (existing or {}).get("_keys") or [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
        return res

    def check_traffic(self, eid, traffic):
        if not isinstance(traffic, dict):
            raise bad("properties.traffic must map deployment names to percents.", "properties.traffic")
        known = {r["name"].lower(): r for r in self.arm.children(eid, OnlineDeployments.key)}
        total = 0
        for d, w in traffic.items():
            if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 100:
                raise bad("The traffic of deployment '%s' must be a whole percent from 0 to 100, not %r." % (d, w),
                          "properties.traffic")
            if d.lower() not in known:
                raise bad("Traffic refers to the deployment '%s', which does not exist on this endpoint (deployments: "
                          "%s)." % (d, ", ".join(sorted(known)) or "none"), "properties.traffic")
            if w and known[d.lower()]["properties"].get("provisioningState") != "Succeeded":
                raise bad("Deployment '%s' cannot take traffic: its provisioningState is %s." % (
                    d, known[d.lower()]["properties"].get("provisioningState")), "properties.traffic")
            total += w
        if total not in (0, 100):
            raise bad("The traffic percents add up to %d: they must add up to 100 (or all be 0)." % total,
                      "properties.traffic")
        return dict(traffic)

    def patch(self, ctx, res, body):
        """Azure's PATCH of an endpoint (PartialMinimalTrackedResourceWithIdentity) takes tags and
        identity only: the traffic changes with a PUT of the endpoint (as `az ml online-endpoint
        update --traffic` sends)."""
        extra = set(body) - {"tags", "identity"}
        if extra:
            raise bad("A PATCH of an online endpoint takes tags and identity only, not %s: PUT the endpoint to "
                      "change its properties." % ", ".join(sorted(extra)))
        with self.arm.lock:
            if "tags" in body:
                res["tags"] = body["tags"]
            if "identity" in body:
                res["identity"] = self.arm.identity(body["identity"] or {}, res.get("identity"))
        return res

    def view(self, res):
        res = copy.deepcopy(res)
        res.pop("_keys", None)
        base = "https://%s.%s.inference.ml.azure.com" % (res["name"].lower(), region(res.get("location")))
        res["properties"]["scoringUri"] = base + "/score"
        res["properties"]["swaggerUri"] = base + "/swagger.json"
        res["kind"] = res.get("kind") or "Managed"
        return res

    def list_keys(self, ctx, res, body):
        if res["properties"].get("authMode") != "Key":
            raise bad("Keys are listed for an endpoint whose authMode is Key only.")
        return 200, {"primaryKey": res["_keys"][0], "secondaryKey": res["_keys"][1]}, []

    def regenerate_keys(self, ctx, res, body):
        kind = body.get("keyType")
        if kind not in ("Primary", "Secondary"):
            raise bad("keyType must be Primary or Secondary.", "keyType")
        with self.arm.lock:
            res["_keys"][0 if kind == "Primary" else 1] = body.get("keyValue") or secrets.token_urlsafe(24)
        return 200, None, []


class OnlineDeployments(ResourceType):
    key = NS + "/workspaces/onlineEndpoints/deployments"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"
    actions = {"getLogs": (("POST",), "get_logs")}

    def __init__(self, arm):
        self.arm = arm
        self.runtime = {}  # deployment id lower -> Runtime
        self.lock = threading.Lock()

    def create(self, ctx, existing, body):
        name = ctx.name
        if not ENDPOINT_RE.match(name):
            raise bad("Deployment name '%s' is invalid: 3-32 characters, letters, digits and '-', beginning with a "
                      "letter and ending with a letter or digit." % name, "name")
        props = copy.deepcopy(body.get("properties") or {})
        kind = props.get("endpointComputeType")
        if kind != "Managed":
            raise bad("properties.endpointComputeType must be Managed here (Kubernetes deployments are not "
                      "emulated), not %r." % kind, "properties.endpointComputeType")
        if props.get("instanceType") not in INSTANCE_TYPES:
            raise bad("The instance type '%s' is not supported for managed online deployments." %
                      props.get("instanceType"), "properties.instanceType")
        if existing and existing["properties"].get("instanceType") != props["instanceType"]:
            raise bad("The instanceType of a deployment cannot change: create a new deployment.",
                      "properties.instanceType")
        ws = "/".join(ctx_id(ctx, "workspaces").split("/"))
        env_id = props.get("environmentId") or ""
        env = self.arm.get(env_id)
        if env is None or env["type"] != EnvironmentVersions.key or not env["id"].lower().startswith(ws.lower() + "/"):
            raise bad("properties.environmentId '%s' is not an environment version of workspace '%s'."
                      % (env_id, ctx.names[0]), "properties.environmentId")
        if not env["properties"].get("image"):
            raise bad("The environment '%s' has no image (building from a context is not emulated)." % env_id,
                      "properties.environmentId")
        for k, v in (props.get("environmentVariables") or {}).items():
            if not isinstance(v, str):
                raise bad("environmentVariables.%s must be a string." % k, "properties.environmentVariables")
        for probe in ("livenessProbe", "readinessProbe"):
            p = props.get(probe) or {}
            for f in ("initialDelay", "period", "timeout"):
                seconds(p.get(f), 0)
        sku = copy.deepcopy(body.get("sku") or (existing or {}).get("sku") or {"name": "Default", "capacity": 1})
        cap = sku.get("capacity", 1)
        if not isinstance(cap, int) or cap < 1 or cap > 20:
            raise bad("sku.capacity must be an instance count from 1 to 20, not %r." % cap, "sku.capacity")
        sku["capacity"] = cap
        props.setdefault("scaleSettings", {"scaleType": "Default"})
        props.setdefault("requestSettings", {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1})
        props.setdefault("appInsightsEnabled", False)
        res = tracked(body, existing)
        res["sku"] = sku
        res["kind"] = body.get("kind") or "Managed"
        res["properties"] = props
        return res

    # --- running ----------------------------------------------------------------------
    def rt(self, res):
        with self.lock:
            return self.runtime.setdefault(res["id"].lower(), Runtime())

    def provision(self, ctx, res):
        old = self.runtime.pop(res["id"].lower(), None)
        if old:
            docker.remove([i.dname for i in old.instances])
        rt = self.rt(res)
        props = res["properties"]
        env = self.arm.get(props["environmentId"])["properties"]
        rt.env = copy.deepcopy(env)
        image = env["image"]
        ws_id = res["id"].split("/onlineEndpoints/")[0]
        try:
            creds = self.credentials(ws_id, image)
            ok, msg = docker.pull(image, creds)
        except RuntimeError as e:
            ok, msg = False, str(e)
        if not ok:
            return {"code": "ImagePullFailure", "message": "Failed to pull the image '%s' of the deployment: %s"
                    % (image, msg)}
        routes = env.get("inferenceConfig") or {}
        ports = sorted({r["port"] for r in routes.values()} or {5001})
        envs = sorted((props.get("environmentVariables") or {}).items())
        envs += [("AZUREML_ENDPOINT_NAME", res["id"].split("/")[-3]), ("AZUREML_DEPLOYMENT_NAME", res["name"])]
        label = {"hoist-azure-ml-deployment": res["id"].lower()}
        for i in range(res["sku"]["capacity"]):
            dname = "azemu-ml-%s-%s-%d" % (hashlib.sha256(res["id"].lower().encode()).hexdigest()[:8], res["name"][:40], i)
            docker.remove([dname])
            ok, out = docker.start(dname, image, label, ports, envs, None, "Never")
            inst = Instance(dname)
            with rt.lock:
                rt.instances.append(inst)
            if not ok:
                return {"code": "ResourceNotReady", "message": "Instance %d of deployment '%s' could not start: %s"
                        % (i, res["name"], out)}
            info = docker.inspect(dname)
            inst.ports = {p: docker.host_port(info, p) for p in ports}
        return self.wait_ready(res, rt, routes)

    def wait_ready(self, res, rt, routes):
        probe = res["properties"].get("readinessProbe") or {}
        route = routes.get("readinessRoute") or routes.get("livenessRoute")
        limit = seconds(probe.get("initialDelay"), 10) + \
            (probe.get("failureThreshold") or 30) * seconds(probe.get("period"), 10)
        deadline = time.monotonic() + limit
        why = "no answer"
        while True:
            if self.arm.get(res["id"]) is None:
                return {"code": "OperationCanceled", "message": "the deployment was deleted"}
            pending = 0
            for inst in list(rt.instances):
                info = docker.inspect(inst.dname)
                if docker.state_of(info) != "running":
                    code = ((info or {}).get("State") or {}).get("ExitCode")
                    return self.not_ready(res, inst, "the container exited with code %s before it was ready" % code)
                ok, why = self.probe(inst, route)
                pending += 0 if ok else 1
            if not pending:
                with rt.lock:
                    rt.ready = True
                return None
            if time.monotonic() > deadline:
                return self.not_ready(res, rt.instances[0], "the readiness route %s did not answer 200 within %gs "
                                      "(readinessProbe: initialDelay + failureThreshold x period): %s"
                                      % (route_text(route), limit, why))
            time.sleep(0.2)

    def not_ready(self, res, inst, why):
        tail = (docker.logs(inst.dname, LOG_TAIL) or "").strip()
        return {"code": "ResourceNotReady", "message": "User container has crashed or terminated: deployment '%s': %s. "
                "Last lines of its log: %s" % (res["name"], why, tail[-1500:] or "(empty)")}

    def probe(self, inst, route):
        if not route:
            port = next(iter(inst.ports.values()), None)
            return (port is not None and docker_tcp(port)), "nothing listens"
        port = inst.ports.get(route["port"])
        if not port:
            return False, "port %s is not published" % route["port"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", route["path"])
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            return False, "GET %s: %s" % (route_text(route), e)
        finally:
            conn.close()
        return status == 200, "GET %s answered %d" % (route_text(route), status)

    def credentials(self, ws_id, image):
        server = image.split("/", 1)[0] if "/" in image.split("@")[0] else "docker.io"
        for c in self.arm.children(ws_id, Connections.key):
            p = c["properties"]
            if p.get("category") == "ContainerRegistry" and p.get("target") == server \
                    and p.get("authType") == "UsernamePassword":
                return [{"server": server, "username": p["credentials"]["username"],
                         "password": p["credentials"]["password"]}]
        ws = self.arm.get(ws_id)
        reg = self.arm.get(((ws or {}).get("properties") or {}).get("containerRegistry") or "")
        if reg and (reg.get("properties") or {}).get("loginServer") == server:
            # the endpoint's system-assigned identity pulls from the workspace's registry, where
            # Azure ML grants it AcrPull itself
            return registry_auth.managed_identity_credentials(self.arm.state, server, granted=True)
        return []

    def remove(self, ctx, res):
        with self.lock:
            rt = self.runtime.pop(res["id"].lower(), None)
        if rt:
            docker.remove([i.dname for i in rt.instances])

    def view(self, res):
        res = copy.deepcopy(res)
        err = res["properties"].pop("provisioningError", None)
        if err:
            res["properties"]["provisioningError"] = err
        return res

    def get_logs(self, ctx, res, body):
        kind = body.get("containerType") or "InferenceServer"
        if kind not in ("InferenceServer", "StorageInitializer"):
            raise bad("containerType must be InferenceServer or StorageInitializer.", "containerType")
        tail = body.get("tail")
        if tail is not None and (not isinstance(tail, int) or tail < 0):
            raise bad("tail must be a whole number of lines.", "tail")
        rt = self.runtime.get(res["id"].lower())
        if kind == "StorageInitializer" or rt is None or not rt.instances:
            return 200, {"content": ""}, []
        return 200, {"content": docker.logs(rt.instances[0].dname, tail) or ""}, []

    # --- scoring ----------------------------------------------------------------------
    def endpoint_of(self, host):
        m = HOST_RE.match(host)
        if not m:
            return None
        with self.arm.lock:
            return next((r for r in self.arm.resources.values() if r["type"] == OnlineEndpoints.key
                         and r["name"].lower() == m.group(1) and region(r.get("location")) == m.group(2)), None)

    def resolve(self, host, port):
        if self.endpoint_of(host) is None or port not in (80, 443):
            return None
        return (front_port(self.arm), True) if port == 443 else front_port(self.arm)

    def front(self, host, h):
        ep = self.endpoint_of(host)
        if ep is None:
            return False
        if h.headers.get("X-Forwarded-Proto") != "https":
            h.send(400, {"message": "The scoring URI is served over HTTPS only."})
            return True
        auth = h.headers.get("Authorization") or ""
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if ep["properties"].get("authMode") != "Key" or key not in ep["_keys"]:
            h.send(401, {"message": "Authentication failed: a key of the endpoint is needed in 'Authorization: "
                                    "Bearer <key>'."}, [("WWW-Authenticate", "Bearer")])
            return True
        if h.url_path != "/score":
            h.send(404, {"message": "Not found: %s (the scoring URI is /score)" % h.url_path})
            return True
        wanted = h.headers.get("azureml-model-deployment")
        deps = {r["name"].lower(): r for r in self.arm.children(ep["id"], OnlineDeployments.key)}
        if wanted:
            dep = deps.get(wanted.lower())
            if dep is None:
                h.send(404, {"message": "The deployment '%s' named by azureml-model-deployment does not exist on "
                                        "endpoint '%s'." % (wanted, ep["name"])})
                return True
        else:
            weights = [(n, w) for n, w in (ep["properties"].get("traffic") or {}).items() if w > 0]
            if not weights:
                h.send(404, {"message": "No valid deployments to route to. Please check that the endpoint has at "
                                        "least one deployment with positive weight values or use a deployment "
                                        "specific header to route."})
                return True
            name = random.choices([n for n, _ in weights], weights=[w for _, w in weights])[0]
            dep = deps.get(name.lower())
        rt = self.runtime.get(dep["id"].lower()) if dep else None
        if rt is None or not rt.ready or not rt.instances:
            h.send(503, {"message": "The deployment '%s' is not ready." % (dep or {}).get("name", wanted)})
            return True
        inst = random.choice(rt.instances)
        route = (rt.env.get("inferenceConfig") or {}).get("scoringRoute") or {"path": "/score", "port": 5001}
        port = inst.ports.get(route["port"])
        path = route["path"] + (("?" + h.path.split("?", 1)[1]) if "?" in h.path else "")
        conn = http.client.HTTPConnection("127.0.0.1", port or 1, timeout=60)
        try:
            headers = {"Content-Type": h.headers.get("Content-Type") or "application/json"}
            conn.request(h.command, path, body=h.raw_body or None, headers=headers)
            r = conn.getresponse()
            data, ctype, status = r.read(), r.getheader("Content-Type") or "application/json", r.status
        except (OSError, http.client.HTTPException) as e:
            h.send(502, {"message": "Upstream request to deployment '%s' failed: %s" % (dep["name"], e)})
            return True
        finally:
            conn.close()
        h.send(status, data, [("azureml-model-deployment", dep["name"])], ctype=ctype)
        return True


def route_text(route):
    return ":%s%s" % (route["port"], route["path"]) if route else "(none)"


def docker_tcp(port):
    from .containerapps import tcp_answers
    return tcp_answers(port)


def ctx_id(ctx, kind):
    base = "/subscriptions/%s/resourceGroups/%s/providers/%s/workspaces/%s" % (ctx.sub, ctx.rg, NS, ctx.names[0])
    if kind == "workspaces":
        return base
    return base + "/onlineEndpoints/%s" % ctx.names[1]


def front_port(arm):
    return int(arm.state.hosts["front"].rsplit(":", 1)[1])


def delete_guard(deployments, endpoints, arm):
    """Azure refuses to delete a deployment that still has traffic: wrap the generic DELETE."""
    original = arm.delete

    def delete(ctx, rtype, rid, missing_status=204):
        if rtype is deployments:
            res = arm.get(rid)
            ep = arm.get(rid.rsplit("/deployments/", 1)[0])
            if res is not None and ep is not None:
                w = next((v for k, v in (ep["properties"].get("traffic") or {}).items()
                          if k.lower() == res["name"].lower()), 0)
                if w:
                    raise bad("Deployment '%s' has %d%% of the traffic of endpoint '%s': set its traffic to 0 before "
                              "deleting it." % (res["name"], w, ep["name"]))
        return original(ctx, rtype, rid, missing_status)
    arm.delete = delete


def install(arm):
    resources.DEFAULT_PROVIDERS.setdefault(NS, "NotRegistered")
    arm.providers.setdefault(NS.lower(), {"namespace": NS, "state": "NotRegistered", "polls": 0})
    arm.register(Workspaces(arm))
    arm.register(Connections())
    arm.register(EnvironmentContainers())
    arm.register(EnvironmentVersions())
    endpoints = OnlineEndpoints(arm)
    arm.register(endpoints)
    deployments = OnlineDeployments(arm)
    arm.register(deployments)
    delete_guard(deployments, endpoints, arm)
    arm.state.proxy_resolvers.append(deployments.resolve)
    arm.state.front_routes.append(deployments.front)
