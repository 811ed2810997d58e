"""Microsoft.App: managed environments and container apps whose revisions run for real on the
local Docker engine.

- Each change of an app's template makes a revision `<app>--<suffix>` (template.revisionSuffix,
  else generated) with max(1, scale.minReplicas) replicas; a replica is one docker container per
  template container (the second and later join the first's network, as in a pod), the first
  publishing the ingress targetPort and the probes' ports on 127.0.0.1.
- A PUT or PATCH is a long-running operation that ends when the new revision is *provisioned*
  (image pulled, containers created), not when it is healthy, as Azure's does; an image that
  cannot be pulled fails it. A monitor thread then checks every replica each
  `containerapp_probe_interval` seconds: the container's state and restarts, and the readiness
  probe (httpGet or tcpSocket), else a TCP connection to targetPort. All replicas ready: the
  revision is Healthy/Running; a crashing container: Unhealthy/Degraded with the exit code; no
  answer after `containerapp_start_time_limit` seconds: Unhealthy/Degraded with the port.
- Single mode: the newest healthy revision takes all traffic and the older ones are deactivated
  (their containers removed); until it is healthy the previous one keeps serving. Multiple mode:
  traffic follows configuration.ingress.traffic (latestRevision = the latest healthy one).
- `<app>.<defaultDomain>` (the environment's `<unique>.<region>.azurecontainerapps.io`) reaches a
  ready replica through the proxy, the revision chosen per request by the traffic weights;
  `<app>--<suffix>.<domain>` one revision, `<app>---<label>.<domain>` a label. HTTPS on 443 (TLS
  ended at the proxy); plain HTTP on 80 is redirected to https unless ingress.allowInsecure.
- Logs: system events and console output per revision, through getAuthToken and the
  eventStreamEndpoint `https://<region>.azurecontainerapps.dev/subscriptions/.../containerApps/
  <app>/eventstream` (README.md).
"""

import collections
import copy
import hashlib
import json
import random
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse

from .. import docker, registry_auth
from ..arm import ArmError, Context, ResourceType, check_api_version, now_iso, route
from .resources import check_sub, require_rg

API = {"2022-01-01-preview", "2022-03-01", "2022-06-01-preview", "2022-10-01", "2022-11-01-preview",
       "2023-04-01-preview", "2023-05-01", "2023-05-02-preview", "2023-08-01-preview",
       "2023-11-02-preview", "2024-02-02-preview", "2024-03-01", "2024-08-02-preview",
       "2024-10-02-preview", "2025-01-01", "2025-02-02-preview", "2025-07-01"}
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
SUFFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
EVENTS = 500
DRAIN = 1.0  # seconds a deactivated revision's containers live on for requests already sent
TOKENS = {}  # log stream token -> (app id lower, expiry)


def iso(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t or time.time()))


def h8(text):
    return hashlib.sha256(text.lower().encode()).hexdigest()[:8]


def region(loc):
    return (loc or "eastus").replace(" ", "").lower()


class ManagedEnvironments(ResourceType):
    key = "Microsoft.App/managedEnvironments"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        props = copy.deepcopy((existing or {}).get("properties") or {})
        props.update(copy.deepcopy(body.get("properties") or {}))
        loc = body.get("location") or (existing or {}).get("location")
        name = ctx.name
        unique = "%s-%s" % (re.sub(r"[^a-z0-9]", "", name.lower())[:20] or "env", h8(ctx.sub + ctx.rg + name))
        props.update({"defaultDomain": "%s.%s.azurecontainerapps.io" % (unique, region(loc)),
                      "staticIp": "192.0.2.%d" % (int(h8(name), 16) % 200 + 20),
                      "eventStreamEndpoint": "https://%s.azurecontainerapps.dev/subscriptions/%s/resourceGroups/"
                                             "%s/managedEnvironments/%s/eventstream" % (region(loc), ctx.sub, ctx.rg, name),
                      "deploymentErrors": None})
        props.setdefault("zoneRedundant", False)
        props.setdefault("workloadProfiles", [{"name": "Consumption", "workloadProfileType": "Consumption"}])
        props.setdefault("kedaConfiguration", {"version": "2.16.1"})
        props.setdefault("daprConfiguration", {"version": "1.13.6"})
        props.setdefault("infrastructureResourceGroup", "ME_%s_%s_%s" % (name, ctx.rg, region(loc)))
        props.setdefault("peerAuthentication", {"mtls": {"enabled": False}})
        props.setdefault("peerTrafficConfiguration", {"encryption": {"enabled": False}})
        cdc = props.setdefault("customDomainConfiguration", {})
        cdc.setdefault("customDomainVerificationId", hashlib.sha256(name.encode()).hexdigest().upper())
        res = {"location": loc, "properties": props}
        for k in ("tags", "identity", "kind"):
            if body.get(k) is not None:
                res[k] = body[k]
        res.setdefault("tags", (existing or {}).get("tags", {}))
        return res


class Replica:
    def __init__(self, name, dnames):
        self.name, self.dnames = name, dnames
        self.created = iso()
        self.host_ports = {}  # container port -> 127.0.0.1 port (first container)
        self.ready = False
        self.restarts = 0
        self.states = {}      # docker name -> state_of
        self.exit_codes = {}  # docker name -> its last exit code
        self.restart_counts = {}
        self.next_restart = {}


class Revision:
    def __init__(self, app_id, name, template, target_port):
        self.app_id, self.name = app_id, name
        self.template = copy.deepcopy(template)
        self.target_port = target_port
        self.created = iso()
        self.last_active = self.created
        self.active = True
        self.provisioning, self.running, self.health = "Provisioning", "Processing", "None"
        self.error = None         # provisioningError
        self.details = None       # runningStateDetails
        self.replicas = []
        self.events = collections.deque(maxlen=EVENTS)
        self.started = None       # monotonic time its replicas started
        self.was_ready = False
        self.lock = threading.Lock()

    def event(self, reason, msg, kind="Normal", replica=""):
        with self.lock:
            last = self.events[-1] if self.events else None
            if last and last["Reason"] == reason and last["Msg"] == msg and last["ReplicaName"] == replica:
                last["Count"] += 1
                last["TimeStamp"] = iso()
                return
            self.events.append({"TimeStamp": iso(), "Type": kind, "ContainerAppName": self.app_id.split("/")[-1],
                                "RevisionName": self.name, "ReplicaName": replica, "Msg": msg,
                                "Reason": reason, "EventSource": "ContainerAppController", "Count": 1})


class AppRuntime:
    def __init__(self):
        self.revisions = collections.OrderedDict()  # name -> Revision
        self.latest = None
        self.latest_ready = None


class ContainerApps(ResourceType):
    key = "Microsoft.App/containerApps"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"

    def __init__(self, arm):
        self.arm = arm
        self.runtime = {}  # app id lower -> AppRuntime
        self.lock = threading.RLock()

    # --- body -------------------------------------------------------------------------
    def create(self, ctx, existing, body):
        name = ctx.name
        if not APP_NAME_RE.match(name) or "--" in name:
            raise ArmError(400, "ContainerAppInvalidName", "Invalid ContainerApp name '%s'. A name must "
                           "consist of lower case alphanumeric characters or '-', start with a letter, end "
                           "with an alphanumeric character, cannot have '--', and be 2-32 characters long." % name)
        props = copy.deepcopy(body.get("properties") or {})
        old = (existing or {}).get("properties") or {}
        env_id = props.get("environmentId") or props.get("managedEnvironmentId") or old.get("environmentId")
        env = self.arm.get(env_id or "")
        if env is None:
            raise ArmError(404, "ManagedEnvironmentNotFound", "The managed environment '%s' was not found."
                           % (env_id or "").rstrip("/").split("/")[-1], target="properties.environmentId")
        props["environmentId"] = props["managedEnvironmentId"] = env["id"]
        conf = props.setdefault("configuration", {})
        hidden = copy.deepcopy((existing or {}).get("_hidden") or {"secrets": {}})
        if "secrets" in conf:  # ARM never returns them; listSecrets does
            secrets_ = conf.pop("secrets") or []
            for s in secrets_:
                if not s.get("name"):
                    raise bad("ContainerAppSecretInvalid", "Every secret needs a name.", "configuration.secrets")
            hidden["secrets"] = {s["name"]: s.get("value") for s in secrets_}
        mode = conf.setdefault("activeRevisionsMode", old.get("configuration", {}).get("activeRevisionsMode", "Single"))
        if mode not in ("Single", "Multiple", "Labels"):
            raise bad("ContainerAppInvalidActiveRevisionsMode", "activeRevisionsMode must be Single or Multiple, "
                      "not '%s'." % mode, "configuration.activeRevisionsMode")
        for r in conf.get("registries") or []:
            if not r.get("server"):
                raise bad("ContainerAppRegistryInvalid", "A registry needs a server.", "configuration.registries")
            ref = r.get("passwordSecretRef")
            if ref and ref not in hidden["secrets"]:
                raise bad("ContainerAppSecretRefNotFound", "The registry '%s' refers to the secret '%s', which "
                          "is not in configuration.secrets." % (r["server"], ref), "configuration.registries")
            if not ref and not r.get("identity"):
                raise bad("ContainerAppRegistryInvalid", "The registry '%s' needs passwordSecretRef or "
                          "identity." % r["server"], "configuration.registries")
        template = props.get("template") or old.get("template")
        if not isinstance(template, dict) or not template.get("containers"):
            raise bad("ContainerAppInvalidTemplate", "template.containers must have at least one container.",
                      "template.containers")
        props["template"] = template
        for rule in (template.get("scale") or {}).get("rules") or []:
            custom = rule.get("custom") or {}
            if custom.get("type") in ("http", "tcp") and rule.get(custom["type"]) is None:
                # a custom rule of KEDA type http/tcp is the built-in rule: Azure shows it so
                rule[custom["type"]] = {"metadata": custom.get("metadata") or {}}
                rule.pop("custom")
        for c in template["containers"]:
            c.setdefault("resources", {"cpu": 0.5, "memory": "1Gi", "ephemeralStorage": "2Gi"})
            if not c.get("name") or not c.get("image"):
                raise bad("ContainerAppInvalidTemplate", "Every container needs a name and an image.",
                          "template.containers")
            for e in c.get("env") or []:
                if e.get("secretRef") and e["secretRef"] not in hidden["secrets"]:
                    raise bad("ContainerAppSecretRefNotFound", "The environment variable '%s' of container "
                              "'%s' refers to the secret '%s', which is not in configuration.secrets."
                              % (e.get("name"), c["name"], e["secretRef"]), "template.containers.env")
        suffix = template.get("revisionSuffix")
        if suffix is not None and suffix != "" and not SUFFIX_RE.match(suffix):
            raise bad("ContainerAppInvalidRevisionSuffix", "The revision suffix '%s' is invalid: lower case "
                      "alphanumerics and '-'." % suffix, "template.revisionSuffix")
        rt = self.runtime.get(ctx_id(ctx).lower())
        new_revision = None
        old_template = json.dumps(old.get("template"), sort_keys=True) if existing else None
        if existing is None or json.dumps(template, sort_keys=True) != old_template or rt is None \
                or not rt.revisions:
            suffix = suffix or "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(7))
            new_revision = "%s--%s" % (name, suffix)
            if rt and new_revision in rt.revisions:
                raise bad("ContainerAppRevisionSuffixInUse", "The revision '%s' already exists: give the new "
                          "template another revisionSuffix." % new_revision, "template.revisionSuffix")
        ingress = conf.get("ingress")
        if ingress:
            if not isinstance(ingress.get("targetPort"), int):
                raise bad("ContainerAppInvalidIngress", "ingress.targetPort must be a port number.",
                          "configuration.ingress.targetPort")
            ingress.setdefault("external", False)
            ingress.setdefault("transport", "auto")
            ingress.setdefault("allowInsecure", False)
            traffic = ingress.setdefault("traffic", [{"latestRevision": True, "weight": 100}])
            known = set(rt.revisions) if rt else set()
            if new_revision:
                known.add(new_revision)
            total, labels = 0, set()
            for t in traffic:
                w = t.get("weight", 0)
                if not isinstance(w, int) or w < 0:
                    raise bad("ContainerAppInvalidTrafficWeight", "A traffic weight must be a non-negative "
                              "integer.", "configuration.ingress.traffic")
                total += w
                if not t.get("latestRevision") and t.get("revisionName") not in known:
                    raise bad("ContainerAppRevisionNotFound", "The traffic refers to the revision '%s', which "
                              "does not exist (known: %s)." % (t.get("revisionName"), ", ".join(sorted(known))),
                              "configuration.ingress.traffic")
                if t.get("label"):
                    if t["label"] in labels:
                        raise bad("ContainerAppDuplicateTrafficLabel", "The traffic label '%s' is used twice."
                                  % t["label"], "configuration.ingress.traffic")
                    labels.add(t["label"])
            if traffic and total != 100:
                raise bad("ContainerAppInvalidTrafficWeight", "The traffic weights add up to %d, not 100." % total,
                          "configuration.ingress.traffic")
        res = {"location": body.get("location") or (existing or {}).get("location"), "properties": props,
               "_hidden": hidden}
        for k in ("tags", "identity", "managedBy", "kind", "extendedLocation"):
            if body.get(k) is not None:
                res[k] = body[k]
        if new_revision:
            res["_new_revision"] = new_revision
        res["_latest"] = new_revision or (existing or {}).get("_latest")
        return res

    def patch_request(self, ctx, rid, existing, body):
        merged = {k: v for k, v in copy.deepcopy(existing).items() if not k.startswith("_")}
        merged["properties"] = merge_patch(merged.get("properties") or {}, body.get("properties") or {})
        merged["properties"].setdefault("configuration", {})["secrets"] = [
            {"name": k, "value": v} for k, v in existing["_hidden"]["secrets"].items()]
        if "secrets" in ((body.get("properties") or {}).get("configuration") or {}):
            merged["properties"]["configuration"]["secrets"] = body["properties"]["configuration"]["secrets"]
        for k in ("tags", "identity"):
            if k in body:
                merged[k] = body[k]
        return self.arm.put(ctx, self, rid, existing["name"], merged)

    def provision(self, ctx, res):
        name = res.pop("_new_revision", None)
        if not name:
            return None
        rt = self.rt(res)
        props = res["properties"]
        ingress = props["configuration"].get("ingress") or {}
        rev = Revision(res["id"], name, props["template"], ingress.get("targetPort"))
        with self.lock:
            rt.revisions[name] = rev
            rt.latest = name
        rev.event("RevisionCreation", "Creating new revision '%s'" % name)
        err = self.start_replicas(res, rev)
        if err:
            return {"code": "ContainerAppOperationError", "message": "Failed to provision revision for container "
                    "app '%s'. Error details: %s" % (res["name"], err)}
        return None

    def remove(self, ctx, res):
        with self.lock:
            rt = self.runtime.pop(res["id"].lower(), None)
        if rt:
            for rev in rt.revisions.values():
                self.stop_replicas(rev)

    def rt(self, res):
        with self.lock:
            return self.runtime.setdefault(res["id"].lower(), AppRuntime())

    # --- running ----------------------------------------------------------------------
    def start_replicas(self, res, rev):
        """Pulls and starts the revision's replicas; an error text, or None."""
        props = res["properties"]
        secrets_ = res["_hidden"]["secrets"]
        template = rev.template
        containers = template["containers"]
        pulled = set()
        for c in containers:
            image = c["image"]
            if image in pulled:
                continue
            rev.event("PullingImage", "Pulling image '%s'" % image)
            try:
                creds = self.credentials(image, props["configuration"].get("registries") or [], secrets_,
                                         res.get("identity"))
                ok, msg = docker.pull(image, creds)
            except RuntimeError as e:
                ok, msg = False, str(e)
            if not ok:
                text = "Failed to pull image '%s': %s" % (image, msg)
                rev.event("ImagePullFailure", text, "Warning")
                with rev.lock:
                    rev.provisioning, rev.running, rev.health = "Failed", "Failed", "Unhealthy"
                    rev.error = text
                    rev.details = text
                return ("The following field(s) are either invalid or missing. Field 'template.containers.%s.image' "
                        "is invalid with details: 'Invalid value: \"%s\": %s'" % (c["name"], image, msg))
            pulled.add(image)
            rev.event("PulledImage", "Successfully pulled image '%s'" % image)
        count = max(1, int((template.get("scale") or {}).get("minReplicas") or 0))
        ports = set()
        if rev.target_port:
            ports.add(rev.target_port)
        for p in (containers[0].get("probes") or []):
            port = ((p.get("httpGet") or {}).get("port") or (p.get("tcpSocket") or {}).get("port"))
            if isinstance(port, int):
                ports.add(port)
        for i in range(count):
            rname = "%s-%s-%s" % (rev.name, h8(rev.name + "rs")[:10], h8("%s%d%f" % (rev.name, i, time.time()))[:5])
            dnames = ["azemu-%s-%s-%s" % (h8(res["id"]), rname, c["name"]) for c in containers]
            replica = Replica(rname, dnames)
            with rev.lock:
                if not rev.active:
                    break
                rev.replicas.append(replica)
            for n, (c, dname) in enumerate(zip(containers, dnames)):
                env = [(e["name"], e["value"] if "value" in e else (secrets_.get(e.get("secretRef")) or ""))
                       for e in c.get("env") or [] if e.get("name")]
                env += [("CONTAINER_APP_NAME", res["name"]), ("CONTAINER_APP_REVISION", rev.name),
                        ("CONTAINER_APP_REPLICA_NAME", rname),
                        ("CONTAINER_APP_ENV_DNS_SUFFIX", self.domain(res) or "")]
                if rev.target_port:
                    env.append(("CONTAINER_APP_PORT", str(rev.target_port)))
                docker.remove([dname])
                ok, out = docker.start(dname, c["image"], {"hoist-azure-containerapp": res["id"].lower(),
                                                            "hoist-azure-revision": rev.name},
                                       sorted(ports) if n == 0 else [], env, c.get("command"), "Never",
                                       args=c.get("args"), network=("container:" + dnames[0]) if n else None)
                if not ok:
                    text = "Failed to create container '%s': %s" % (c["name"], out)
                    rev.event("ContainerCreateFailure", text, "Warning", rname)
                    with rev.lock:
                        rev.provisioning, rev.running, rev.health, rev.error = "Failed", "Failed", "Unhealthy", text
                    return text
                rev.event("ContainerCreated", "Created container '%s'" % c["name"], replica=rname)
                rev.event("ContainerStarted", "Started container '%s'" % c["name"], replica=rname)
            info = docker.inspect(dnames[0])
            replica.host_ports = {p: docker.host_port(info, p) for p in ports}
            if self.arm.get(res["id"]) is None:  # the app was deleted meanwhile: leave nothing behind
                self.stop_replicas(rev)
                return "the container app was deleted"
        with rev.lock:
            if rev.provisioning != "Failed":
                rev.provisioning = "Provisioned"
            rev.started = time.monotonic()
        rev.event("RevisionProvisioned", "Revision '%s' provisioned with %d replica(s)" % (rev.name, count))
        return None

    def stop_replicas(self, rev):
        with rev.lock:
            names = [d for r in rev.replicas for d in reversed(r.dnames)]
            rev.replicas = []
        docker.remove(names)

    def credentials(self, image, registries, secrets_, res_identity=None):
        server = image.split("/", 1)[0] if "/" in image else "docker.io"
        for r in registries:
            if r.get("server") != server:
                continue
            if r.get("passwordSecretRef"):
                return [{"server": server, "username": r.get("username") or "",
                         "password": secrets_.get(r["passwordSecretRef"]) or ""}]
            client_id, oid = registry_auth.principal_of(res_identity, r.get("identity"))
            return registry_auth.managed_identity_credentials(self.arm.state, server, client_id, oid)
        return []

    def domain(self, res):
        env = self.arm.get(res["properties"].get("environmentId") or "")
        return env["properties"].get("defaultDomain") if env else None

    # --- health monitor ---------------------------------------------------------------
    def monitor(self):
        while True:
            time.sleep(max(0.2, self.arm.state.setting("containerapp_probe_interval")))
            with self.lock:
                apps = list(self.runtime.items())
            for app_id, rt in apps:
                res = self.arm.get(app_id)
                if res is None:
                    continue
                for rev in list(rt.revisions.values()):
                    try:
                        self.check(res, rt, rev)
                    except Exception:  # noqa: BLE001 - one revision's trouble must not stop the monitor
                        import traceback
                        traceback.print_exc()

    def check(self, res, rt, rev):
        if not rev.active or rev.provisioning != "Provisioned" or rev.started is None:
            return
        containers = rev.template["containers"]
        probe = next((p for p in containers[0].get("probes") or [] if (p.get("type") or "").lower() == "readiness"),
                     None)
        problems = []
        crashed = False
        for replica in list(rev.replicas):
            ready = True
            for c, dname in zip(containers, replica.dnames):
                info = docker.inspect(dname)
                state = docker.state_of(info)
                if state == "exited":
                    # the emulator restarts crashed containers itself (not docker's restart policy),
                    # so it sees every exit code, with a back-off like Kubernetes'
                    code = ((info or {}).get("State") or {}).get("ExitCode")
                    if replica.states.get(dname) != "exited":
                        replica.exit_codes[dname] = code
                        rev.event("ContainerTerminated", "Container '%s' was terminated with exit code '%s'"
                                  % (c["name"], code), "Warning", replica.name)
                        rev.event("ContainerCrashing", "Container '%s' crashing: back-off restarting failed "
                                  "container" % c["name"], "Warning", replica.name)
                    if time.monotonic() >= replica.next_restart.get(dname, 0):
                        n = replica.restart_counts.get(dname, 0) + 1
                        replica.restart_counts[dname] = n
                        replica.next_restart[dname] = time.monotonic() + min(10.0, 0.5 * 2 ** n)
                        docker.run(["start", dname], timeout=60)
                if state == "absent":  # docker did not answer (or the revision is going away)
                    sys.stderr.write("containerapps: docker inspect %s found nothing\n" % dname)
                    ready = False
                    continue
                replica.states[dname] = state
                replica.restarts = sum(replica.restart_counts.values())
                if state != "running":
                    ready = False
                    crashed = True
                    problems.append("Container '%s' was terminated with exit code '%s'"
                                    % (c["name"], replica.exit_codes.get(dname, "unknown")))
                elif dname == replica.dnames[0]:
                    replica.host_ports = {p: docker.host_port(info, p) for p in replica.host_ports} or {}
            if ready and replica.restarts and time.monotonic() - rev.started > 1 and not replica.ready:
                # it runs now, but it has crashed before and never became ready: a crash loop
                code = replica.exit_codes.get(replica.dnames[0], "unknown")
                crashed = True
                problems.append("Container '%s' was terminated with exit code '%s'" % (containers[0]["name"], code))
            if ready:
                ok, why = self.probe(replica, probe, rev.target_port)
                if not ok:
                    ready = False
                    problems.append(why)
                    if time.monotonic() - rev.started > 2 * max(1, self.arm.state.setting("containerapp_probe_interval")):
                        rev.event("ProbeFailed", why, "Warning", replica.name)
            replica.ready = ready
        all_ready = bool(rev.replicas) and all(r.ready for r in rev.replicas)
        late = time.monotonic() - rev.started > self.arm.state.setting("containerapp_start_time_limit")
        with rev.lock:
            if all_ready:
                rev.running, rev.health, rev.details = "Running", "Healthy", None
                rev.last_active = iso()
            elif crashed or late or rev.was_ready:
                rev.running, rev.health = "Degraded", "Unhealthy"
                rev.details = "%d/%d replicas ready. %s" % (sum(r.ready for r in rev.replicas), len(rev.replicas),
                                                           problems[0] if problems else "")
            else:
                rev.running, rev.health = "Processing", "None"
            first_ready = all_ready and not rev.was_ready
            if all_ready:
                rev.was_ready = True
        if first_ready:
            rev.event("RevisionReady", "Revision ready")
            self.became_ready(res, rt, rev)

    def probe(self, replica, probe, target_port):
        """(ok, why not) for one replica: the readiness probe, else a TCP check of targetPort."""
        if probe and probe.get("httpGet"):
            g = probe["httpGet"]
            port = replica.host_ports.get(g.get("port"))
            if not port:
                return False, "Readiness probe failed: port %s is not published" % g.get("port")
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", g.get("path") or "/", headers={h["name"]: h["value"]
                                                                  for h in g.get("httpHeaders") or []})
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException) as e:
                return False, "Readiness probe failed: Get \"http://%s:%s%s\": %s" % (
                    replica.name, g.get("port"), g.get("path") or "/", e)
            finally:
                conn.close()
            if 200 <= status < 400:
                return True, None
            return False, "Readiness probe failed: HTTP probe failed with statuscode: %d" % status
        port_in = ((probe or {}).get("tcpSocket") or {}).get("port") or target_port
        if not port_in:
            return True, None
        port = replica.host_ports.get(port_in)
        if port and tcp_answers(port):
            return True, None
        return False, ("The TargetPort %s does not match the listening port of the container: dial tcp :%s: "
                       "connect: connection refused" % (port_in, port_in))

    def became_ready(self, res, rt, rev):
        with self.lock:
            names = list(rt.revisions)
            if rt.latest_ready is None or names.index(rev.name) > names.index(rt.latest_ready):
                rt.latest_ready = rev.name
            single = res["properties"]["configuration"].get("activeRevisionsMode", "Single") == "Single"
            old = [r for r in rt.revisions.values() if r is not rev and r.active] \
                if single and rt.latest_ready == rev.name else []
        for r in old:  # Single mode: the new healthy revision takes over, the others go
            with r.lock:
                r.active = False  # the proxy picks it no more; what it already sent may finish
            r.event("RevisionDeactivating", "Deactivating old revision '%s': '%s' is ready" % (r.name, rev.name))
            threading.Timer(DRAIN, self.stop_replicas, args=(r,)).start()

    # --- traffic ----------------------------------------------------------------------
    def effective_traffic(self, res, rt):
        """[(revision name, weight, label)] as the ingress routes it now."""
        conf = res["properties"]["configuration"]
        latest = rt.latest_ready or rt.latest
        if conf.get("activeRevisionsMode", "Single") == "Single":
            return [(latest, 100, None)] if latest else []
        out = []
        for t in (conf.get("ingress") or {}).get("traffic") or []:
            name = latest if t.get("latestRevision") else t.get("revisionName")
            out.append((name, t.get("weight", 0), t.get("label")))
        return out

    def resolve(self, host, port):
        if port not in (80, 443):
            return None
        if host.endswith(".azurecontainerapps.dev"):
            return (front_port(self.arm), True) if port == 443 else front_port(self.arm)
        if not host.endswith(".azurecontainerapps.io"):
            return None
        label, _, domain = host.partition(".")
        with self.arm.lock:
            apps = [r for r in self.arm.resources.values() if r["type"] == self.key]
        for res in apps:
            ingress = res["properties"]["configuration"].get("ingress") or {}
            if not ingress.get("external") or (self.domain(res) or "").lower() != domain:
                continue
            name = res["name"].lower()
            if label != name and not label.startswith(name + "--"):
                continue
            rt = self.runtime.get(res["id"].lower())
            if rt is None:
                continue
            if port == 80 and not ingress.get("allowInsecure"):
                return front_port(self.arm)  # the front end redirects to https
            target = self.pick(res, rt, label[len(name):])
            if target is None:
                target = front_port(self.arm)  # the front end says: no healthy upstream
            return (target, True) if port == 443 else target
        return None

    def pick(self, res, rt, rest):
        """A ready replica's host port for the app's targetPort: rest '' (weighted), '--<suffix>'
        (a revision) or '---<label>'."""
        traffic = self.effective_traffic(res, rt)
        if rest.startswith("---"):
            choices = [(n, 1) for n, w, l in traffic if l and l.lower() == rest[3:]]
        elif rest.startswith("--"):
            choices = [(n, 1) for n in rt.revisions if n.lower() == res["name"].lower() + rest]
        else:
            choices = [(n, w) for n, w, _ in traffic if w > 0]
        if not choices:
            return None
        name = random.choices([c[0] for c in choices], weights=[c[1] for c in choices])[0]
        rev = rt.revisions.get(name)
        if rev is None or not rev.active:
            return None
        ready = [r for r in rev.replicas if r.ready and r.host_ports.get(rev.target_port)]
        return random.choice(ready).host_ports[rev.target_port] if ready else None

    def front(self, host, h):
        if host.endswith(".azurecontainerapps.dev"):
            return log_stream(self, h)
        if not host.endswith(".azurecontainerapps.io"):
            return False
        if h.headers.get("X-Forwarded-Proto") != "https":
            h.send(301, "", [("Location", "https://%s%s" % (host, h.path))], ctype="text/plain")
        else:
            h.send(503, "no healthy upstream", ctype="text/plain")
        return True

    # --- views ------------------------------------------------------------------------
    def view(self, res):
        res = copy.deepcopy(res)
        hidden = res.pop("_hidden", {})
        latest = res.pop("_latest", None)
        res.pop("_new_revision", None)
        p = res["properties"]
        conf = p["configuration"]
        conf["secrets"] = [{"name": k} for k in hidden.get("secrets", {})]
        domain = self.domain(res) or ""
        rt = self.runtime.get(res["id"].lower())
        ingress = conf.get("ingress")
        if ingress:
            ingress["fqdn"] = ("%s.%s" if ingress.get("external") else "%s.internal.%s") % (res["name"], domain)
        p["latestRevisionName"] = (rt.latest if rt else None) or latest
        p["latestReadyRevisionName"] = rt.latest_ready if rt else None
        p["latestRevisionFqdn"] = ("%s.%s" % (p["latestRevisionName"], domain)) if p["latestRevisionName"] else ""
        p["runningStatus"] = "Running"
        p["outboundIpAddresses"] = ["192.0.2.30"]
        p["customDomainVerificationId"] = hashlib.sha256(res["id"].lower().encode()).hexdigest().upper()
        p["eventStreamEndpoint"] = "https://%s.azurecontainerapps.dev/subscriptions/%s/resourceGroups/%s/" \
                                   "containerApps/%s/eventstream" % (region(res.get("location")), res["id"].split("/")[2],
                                                                     res["id"].split("/")[4], res["name"])
        p.setdefault("workloadProfileName", "Consumption")
        return res

    def revision_view(self, res, rt, rev):
        weights = collections.Counter()
        labels = {}
        for n, w, l in self.effective_traffic(res, rt):
            weights[n] += w
            if l:
                labels[n] = l
        with rev.lock:
            out = {"id": "%s/revisions/%s" % (res["id"], rev.name), "name": rev.name,
                   "type": "Microsoft.App/containerApps/revisions",
                   "properties": {"createdTime": rev.created, "lastActiveTime": rev.last_active,
                                  "fqdn": "%s.%s" % (rev.name, self.domain(res) or ""),
                                  "template": copy.deepcopy(rev.template), "active": rev.active,
                                  "replicas": sum(1 for r in rev.replicas if r.states.get(r.dnames[0], "running")
                                                  == "running") if rev.active else 0,
                                  "trafficWeight": weights.get(rev.name, 0) if rev.active else 0,
                                  "provisioningError": rev.error, "healthState": rev.health,
                                  "provisioningState": rev.provisioning, "runningState": rev.running,
                                  "runningStateDetails": rev.details}}
        if rev.name in labels:
            out["properties"]["labels"] = labels[rev.name]
        return out

    def replica_view(self, res, rev, replica):
        containers = []
        for c, dname in zip(rev.template["containers"], replica.dnames):
            info = docker.inspect(dname)
            state = docker.state_of(info)
            containers.append({"name": c["name"], "containerId": (info or {}).get("Id", ""),
                               "ready": replica.ready, "started": state == "running",
                               "restartCount": replica.restart_counts.get(dname, 0),
                               "runningState": {"running": "Running", "exited": "Terminated"}.get(state, "Waiting"),
                               "runningStateDetails": "" if state == "running" else "exit code %s" % (
                                   ((info or {}).get("State") or {}).get("ExitCode")),
                               "logStreamEndpoint": "%s/revisions/%s/replicas/%s/containers/%s/logstream" % (
                                   self.view(res)["properties"]["eventStreamEndpoint"].rsplit("/eventstream", 1)[0],
                                   rev.name, replica.name, c["name"]),
                               "execEndpoint": ""})
        running = all(c["runningState"] == "Running" for c in containers)
        return {"id": "%s/revisions/%s/replicas/%s" % (res["id"], rev.name, replica.name), "name": replica.name,
                "type": "Microsoft.App/containerApps/revisions/replicas",
                "properties": {"createdTime": replica.created, "runningState": "Running" if running else "NotRunning",
                               "runningStateDetails": "" if running else "a container is not running",
                               "containers": containers, "initContainers": []}}


def bad(code, message, target=None):
    return ArmError(400, code, message, target=target)


def ctx_id(ctx):
    return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/containerApps/%s" % (ctx.sub, ctx.rg, ctx.name)


def merge_patch(target, patch):
    """RFC 7396 merge of PATCH into TARGET (iterative: no recursion the input controls)."""
    out = copy.deepcopy(target)
    stack = [(out, patch)]
    while stack:
        t, p = stack.pop()
        for k, v in p.items():
            if v is None:
                t.pop(k, None)
            elif isinstance(v, dict) and isinstance(t.get(k), dict):
                stack.append((t[k], v))
            else:
                t[k] = copy.deepcopy(v)
    return out


def tcp_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(0.3)
            try:
                # a published port with nothing listening inside: docker-proxy accepts, then closes
                return s.recv(1, socket.MSG_PEEK) != b""
            except socket.timeout:
                return True
    except OSError:
        return False


def front_port(arm):
    return int(arm.state.hosts["front"].rsplit(":", 1)[1])


# --- revisions, replicas, secrets, the log stream token --------------------------------------

def app_op(arm, h, m):
    check_sub(arm, m.group(1))
    rg = require_rg(arm, m.group(2))
    check_api_version(h, API, "'Microsoft.App/containerApps'")
    apps = arm.types[ContainerApps.key.lower()]
    res = arm.get("%s/providers/Microsoft.App/containerApps/%s" % (rg["id"], m.group(3)))
    if res is None:
        raise ArmError(404, "ResourceNotFound", "The Resource 'Microsoft.App/containerApps/%s' under resource "
                       "group '%s' was not found." % (m.group(3), rg["name"]))
    arm.poke(res["id"])
    rt = apps.rt(res)
    parts = m.group(4).strip("/").split("/")
    op = parts[0].lower()

    def method(*allowed):
        if h.command not in allowed:
            raise ArmError(405, "MethodNotAllowed", "%s accepts %s, not %s." % (m.group(4), "/".join(allowed),
                                                                               h.command))
    if op == "listsecrets":
        method("POST")
        return 200, {"value": [{"name": k, "value": v} for k, v in res["_hidden"]["secrets"].items()]}, []
    if op == "getauthtoken":
        method("POST")
        token = secrets.token_urlsafe(32)
        expires = time.time() + 3600
        for t, (_, exp) in list(TOKENS.items()):
            if exp < time.time():
                TOKENS.pop(t, None)
        TOKENS[token] = (res["id"].lower(), expires)
        return 200, {"id": res["id"] + "/authtoken", "name": "authtoken", "type": "Microsoft.App/containerApps/authtoken",
                     "location": res.get("location"), "properties": {"token": token, "expires": iso(expires)}}, []
    # revisions
    if len(parts) == 1:
        method("GET")
        return 200, arm.page(h, [apps.revision_view(res, rt, r) for r in list(rt.revisions.values())]), []
    rev = next((r for n, r in rt.revisions.items() if n.lower() == parts[1].lower()), None)
    if rev is None:
        raise ArmError(404, "ContainerAppRevisionNotFound", "The revision '%s' of container app '%s' was not found."
                       % (parts[1], res["name"]))
    if len(parts) == 2:
        method("GET")
        return 200, apps.revision_view(res, rt, rev), []
    action = parts[2].lower()
    if action == "replicas":
        method("GET")
        if len(parts) == 3:
            return 200, {"value": [apps.replica_view(res, rev, r) for r in list(rev.replicas)]}, []
        replica = next((r for r in rev.replicas if r.name == parts[3]), None)
        if replica is None:
            raise ArmError(404, "ContainerAppReplicaNotFound", "The replica '%s' of revision '%s' was not found."
                           % (parts[3], rev.name))
        return 200, apps.replica_view(res, rev, replica), []
    method("POST")
    with arm.lock:
        busy = res["id"].lower() in arm.pending
    if busy:
        # as ARM answers a change to a resource whose operation still runs
        raise ArmError(409, "AnotherOperationInProgress", "Another operation on the container app '%s' is in "
                       "progress; retry when it has finished." % res["name"])
    if action == "deactivate":
        weight = sum(w for n, w, _ in apps.effective_traffic(res, rt) if n == rev.name)
        if weight and rev.active:
            raise ArmError(400, "ContainerAppRevisionInUse", "The revision '%s' receives %d%% of the traffic; move "
                           "the traffic away before deactivating it." % (rev.name, weight))
        with rev.lock:
            rev.active = False
            rev.running, rev.health = "Stopped" if rev.provisioning != "Failed" else rev.running, "None"
        rev.event("RevisionDeactivating", "Deactivating revision '%s'" % rev.name)
        apps.stop_replicas(rev)
        return 200, None, []
    if action == "activate":
        if not rev.active and rev.provisioning != "Failed":
            with rev.lock:
                rev.active, rev.was_ready, rev.started = True, False, None
                rev.running, rev.health, rev.provisioning = "Processing", "None", "Provisioning"
            rev.event("RevisionActivating", "Activating revision '%s'" % rev.name)
            threading.Thread(target=apps.start_replicas, args=(res, rev), daemon=True).start()
        return 200, None, []
    if action == "restart":
        rev.event("RevisionRestarting", "Restarting revision '%s'" % rev.name)
        names = [d for r in rev.replicas for d in r.dnames]
        if names:
            docker.run(["restart", "-t", "2"] + names, timeout=120)
        return 200, None, []
    raise ArmError(404, "NotFound", "No HTTP resource was found for '%s'." % m.group(4))


def log_stream(apps, h):
    """GET https://<region>.azurecontainerapps.dev/subscriptions/{s}/resourceGroups/{rg}/containerApps/
    {app}/eventstream (system logs; ?type=console for console logs) and .../revisions/{r}/replicas/{p}/
    containers/{c}/logstream (console logs), with `Authorization: Bearer <getAuthToken token>`."""
    m = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/containerApps/([^/]+)/(eventstream|revisions/"
                 r"([^/]+)/replicas/([^/]+)/containers/([^/]+)/logstream)$", h.url_path, re.I)
    if not m:
        h.send(404, {"error": "no log stream at %s" % h.url_path})
        return True
    res = apps.arm.get("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/containerApps/%s"
                       % (m.group(1), m.group(2), m.group(3)))
    auth = h.headers.get("Authorization") or ""
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    got = TOKENS.get(token)
    if res is None or got is None or got[0] != res["id"].lower() or got[1] < time.time():
        h.send(401, {"error": "a valid token from getAuthToken of this container app is required"})
        return True
    rt = apps.rt(res)
    q = h.query
    tail = q.get("tailLines", "20")
    if not tail.isdigit() or not 0 <= int(tail) <= 300:
        h.send(400, {"error": "tailLines must be an integer from 0 to 300, not %r" % tail})
        return True
    kind = "console" if m.group(5) else (q.get("type") or "system").lower()
    if kind not in ("console", "system"):
        h.send(400, {"error": "type must be console or system, not %r" % kind})
        return True
    revision = m.group(5) or q.get("revisionName") or q.get("revision")
    replica_name, container = m.group(6) or q.get("replicaName"), m.group(7) or q.get("containerName")
    revs = [r for n, r in rt.revisions.items() if not revision or n.lower() == revision.lower()]
    if revision and not revs:
        h.send(404, {"error": "no revision %r in container app %r" % (revision, res["name"])})
        return True
    lines = []
    if kind == "system":
        for rev in revs:
            with rev.lock:
                lines += [dict(e) for e in rev.events]
        lines.sort(key=lambda e: e["TimeStamp"])
    else:
        for rev in revs:
            for replica in list(rev.replicas):
                if replica_name and replica.name != replica_name:
                    continue
                for c, dname in zip(rev.template["containers"], replica.dnames):
                    if container and c["name"] != container:
                        continue
                    text = docker.logs(dname, int(tail) or 0, True) or ""
                    for line in text.splitlines():
                        ts, _, msg = line.partition(" ")
                        lines.append({"TimeStamp": ts, "Log": msg, "ContainerAppName": res["name"],
                                      "RevisionName": rev.name, "ReplicaName": replica.name, "ContainerName": c["name"]})
        lines.sort(key=lambda e: e["TimeStamp"])
    lines = lines[-int(tail):] if int(tail) else []
    if (q.get("output") or "json").lower() == "text":
        body = "".join("%s %s\n" % (e["TimeStamp"], e.get("Log") or e.get("Msg")) for e in lines)
    else:
        body = "".join(json.dumps(e) + "\n" for e in lines)
    h.send(200, body, ctype="text/plain; charset=utf-8")
    return True


def install(arm):
    arm.register(ManagedEnvironments(arm))
    apps = ContainerApps(arm)
    arm.register(apps)
    arm.state.proxy_resolvers.append(apps.resolve)
    arm.state.front_routes.append(apps.front)
    threading.Thread(target=apps.monitor, name="containerapps-monitor", daemon=True).start()
    route(arm, r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.App/containerApps/([^/]+)/"
               r"(revisions(?:/[^/]+(?:/(?:activate|deactivate|restart|replicas(?:/[^/]+)?))?)?|listSecrets|"
               r"getAuthToken)/?$", app_op)
