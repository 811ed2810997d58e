"""Microsoft.ContainerInstance/containerGroups: each container runs for real on the local Docker
engine (azemu/docker.py), pulled with the group's imageRegistryCredentials and published on
127.0.0.1 with a kernel-chosen port; the fqdn `<dnsNameLabel>.<region>.azurecontainer.io` and
the group's (unroutable, TEST-NET-1) ip reach them through the emulator's proxy.

The instance view is read from `docker inspect` on every GET: state, restartCount, previous
state, and events (Pulling, Pulled, Failed, BackOff, Started, Killing) worded like ACI's.
"""

import copy
import hashlib
import re
import threading
import time

from .. import docker
from .. import apiversions
from ..arm import ArmError, ResourceType, check_api_version, now_iso, route
from .resources import check_sub, require_rg

API = apiversions.of("Microsoft.ContainerInstance")
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
RESTART_POLICIES = ("Always", "OnFailure", "Never")


def event(name, message, kind="Normal", count=1):
    t = now_iso()
    return {"name": name, "type": kind, "count": count, "firstTimestamp": t, "lastTimestamp": t,
            "message": message}


def count(events, name, message, kind):
    """Adds an event, or counts a repeat of the last one of that name and message up."""
    for e in reversed(events):
        if e["name"] == name and e["message"] == message:
            e["count"] += 1
            e["lastTimestamp"] = now_iso()
            return
    events.append(event(name, message, kind))


class Runtime:
    """What the emulator knows of a group beside its ARM body: docker names, events, ip."""

    def __init__(self, ip):
        self.ip = ip
        self.containers = {}  # container name -> docker name
        self.events = {}      # container name -> [event]
        self.failed = {}      # container name -> detailStatus when it never started
        self.gave_up = False  # the create (or start) failed: no more pull retries
        self.stopped = False
        self.lock = threading.Lock()


class ContainerGroups(ResourceType):
    key = "Microsoft.ContainerInstance/containerGroups"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "sync"
    actions = {"restart": (("POST",), "restart"), "stop": (("POST",), "stop"),
               "start": (("POST",), "start")}

    def __init__(self, arm):
        self.arm = arm
        self.runtime = {}   # group id lower -> Runtime
        self.next_ip = 1
        arm.state.proxy_resolvers.append(self.resolve)

    # --- validation ---------------------------------------------------------------------
    def create(self, ctx, existing, body):
        props = copy.deepcopy(body.get("properties") or {})
        bad = lambda code, msg, target=None: ArmError(400, code, msg, target=target)  # noqa: E731
        containers = props.get("containers")
        if not isinstance(containers, list) or not containers:
            raise bad("ContainerGroupContainersEmpty" if containers == [] else "InvalidRequestContent",
                      "The container group '%s' must have at least one container." % ctx.name,
                      "properties.containers")
        if props.get("osType") not in ("Linux", "Windows"):
            raise bad("InvalidOsType", "The osType '%s' is invalid: Linux or Windows."
                      % props.get("osType"), "properties.osType")
        if props["osType"] == "Windows":
            raise bad("UnsupportedOsType", "The emulator runs Linux container groups only.",
                      "properties.osType")
        names = set()
        for c in containers:
            name, cp = c.get("name"), c.get("properties") or {}
            if not name or name in names:
                raise bad("InvalidContainerName", "Container names must be set and unique in a group; "
                          "got %r." % name, "properties.containers")
            names.add(name)
            if not cp.get("image"):
                raise bad("InvalidImageName", "The container '%s' has no image." % name,
                          "properties.containers.image")
            req = (cp.get("resources") or {}).get("requests") or {}
            if not req.get("cpu") or not req.get("memoryInGB"):
                raise bad("InvalidResourceRequests", "The container '%s' must request cpu and "
                          "memoryInGB." % name, "properties.containers.resources.requests")
        restart = props.setdefault("restartPolicy", "Always")
        if restart not in RESTART_POLICIES:
            raise bad("InvalidRestartPolicy", "The restartPolicy '%s' is invalid: %s."
                      % (restart, ", ".join(RESTART_POLICIES)), "properties.restartPolicy")
        ip = props.get("ipAddress")
        if ip:
            label = ip.get("dnsNameLabel")
            if label is not None and not LABEL_RE.match(label):
                raise bad("InvalidDnsNameLabel", "The DNS name label '%s' is invalid: 3-63 lower-case "
                          "letters, digits and '-', starting with a letter." % label,
                          "properties.ipAddress.dnsNameLabel")
            exposed = {p.get("port") for c in containers for p in (c["properties"].get("ports") or [])}
            for p in ip.get("ports") or []:
                if p.get("port") not in exposed:
                    raise bad("InvalidIpAddressPorts", "The port %s of the ipAddress is not a port of "
                              "any container of the group." % p.get("port"), "properties.ipAddress.ports")
            if label and self.group_of_fqdn(self.fqdn(label, body.get("location")), ctx) is not None:
                raise ArmError(409, "DnsNameLabelAlreadyInUse", "The DNS name label '%s' is already "
                               "in use in location '%s'." % (label, body.get("location")))
        if existing:
            old = {c["name"]: (c["properties"].get("resources") or {}).get("requests")
                   for c in existing["properties"]["containers"]}
            for c in containers:
                before = old.get(c["name"])
                req = c["properties"]["resources"]["requests"]
                if before and (float(before.get("cpu")) != float(req.get("cpu")) or
                               float(before.get("memoryInGB")) != float(req.get("memoryInGB"))):
                    raise bad("InvalidContainerGroupUpdate", "The updates on container group '%s' are "
                              "invalid. If you are going to update the os type, restart policy, network "
                              "profile, CPU, memory or GPU resources for a container group, you must "
                              "delete it first and then create a new one." % ctx.name)
        for c in containers:
            for e in c["properties"].get("environmentVariables") or []:
                if "name" not in e:
                    raise bad("InvalidEnvironmentVariable", "An environment variable of the container "
                              "'%s' has no name." % c["name"])
        res = {"location": body.get("location"), "properties": props}
        for k in ("tags", "identity", "zones"):
            if body.get(k) is not None:
                res[k] = body[k]
        return res

    def fqdn(self, label, location):
        return "%s.%s.azurecontainer.io" % (label, (location or "").replace(" ", "").lower())

    def group_of_fqdn(self, fqdn, ctx):
        with self.arm.lock:
            for res in self.arm.resources.values():
                ip = res["properties"].get("ipAddress") or {}
                if res["type"] == self.key and ip.get("dnsNameLabel") and \
                        self.fqdn(ip["dnsNameLabel"], res.get("location")) == fqdn and \
                        res["name"].lower() != (ctx.name or "").lower():
                    return res
        return None

    # --- running ------------------------------------------------------------------------
    def rt(self, res):
        key = res["id"].lower()
        with self.arm.lock:
            if key not in self.runtime:
                self.runtime[key] = Runtime("192.0.2.%d" % (self.next_ip % 254 + 1))
                self.next_ip += 1
            return self.runtime[key]

    def docker_name(self, res, container):
        h = hashlib.sha256(res["id"].lower().encode()).hexdigest()[:8]
        safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", "%s-%s" % (res["name"], container))
        return "azemu-%s-%s" % (h, safe)

    def provision(self, ctx, res):
        rt = self.rt(res)
        props = res["properties"]
        with rt.lock:
            docker.remove(rt.containers.values())
            rt.containers, rt.events, rt.failed, rt.stopped, rt.gave_up = {}, {}, {}, False, False
        for c in props["containers"]:
            name, image = c["name"], c["properties"]["image"]
            if not self.pull(res, rt, c, retry=True):
                rt.gave_up = True
                return {"code": "InaccessibleImage", "message": "The image '%s' in container group "
                        "'%s' is not accessible. Please check the image and registry credential."
                        % (image, res["name"])}
            err = self.run_container(res, rt, c)
            if err:
                rt.gave_up = True
                return err
            if self.arm.get(res["id"]) is not res:  # deleted meanwhile: leave nothing behind
                docker.remove([rt.containers.get(name)])
                return None
        return None

    def pull(self, res, rt, c, retry):
        """Pulls a container's image with the group's credentials; True when it did. With
        `retry`, ACI's create: a failed pull is tried again with a back-off that doubles from
        aci_pull_backoff seconds up to 300 (the kubelet's, which ACI's events show) for
        aci_pull_retry_time seconds: meanwhile the group is Creating and Pending, the container
        Waiting (ErrImagePull, then ImagePullBackOff) with the Pulling, Failed and BackOff
        events counting up. Then it gives up (the operation fails), or stops at once when the
        group is deleted or replaced."""
        name, image = c["name"], c["properties"]["image"]
        creds = [x for x in res["properties"].get("imageRegistryCredentials") or []
                 if image.startswith(x.get("server", "") + "/")]
        events = rt.events.setdefault(name, [])
        pulling = event("Pulling", 'pulling image "%s"' % image)
        events.append(pulling)
        setting = self.arm.state.setting
        t0, delay = time.time(), setting("aci_pull_backoff")
        while True:
            ok, msg = docker.pull(image, creds)
            if ok:
                rt.failed.pop(name, None)
                events.append(event("Pulled", 'Successfully pulled image "%s"' % image))
                return True
            count(events, "Failed", 'Failed to pull image "%s": %s' % (image, msg), "Warning")
            rt.failed[name] = "ErrImagePull"
            count(events, "BackOff", 'Back-off pulling image "%s"' % image, "Normal")
            until = time.time() + delay
            while True:  # read the settings each time: a test may end the retries meanwhile
                now = time.time()
                if not retry or now >= t0 + setting("aci_pull_retry_time") or self.arm.get(res["id"]) is not res:
                    return False
                if now >= until:
                    break
                if now >= until - delay / 2:
                    rt.failed[name] = "ImagePullBackOff"
                time.sleep(min(0.2, until - now))
            delay = min(delay * 2, 300)
            pulling["count"] += 1
            pulling["lastTimestamp"] = now_iso()

    def run_container(self, res, rt, c):
        """docker run of one container of the group (its image pulled); an error or None."""
        props, cp, name = res["properties"], c["properties"], c["name"]
        env = [(e["name"], e.get("value", e.get("secureValue", "")))
               for e in cp.get("environmentVariables") or []]
        dname = self.docker_name(res, name)
        docker.remove([dname])
        ok, out = docker.start(dname, cp["image"], {"hoist-azure-group": res["id"].lower()},
                               [p["port"] for p in cp.get("ports") or []
                                if p.get("protocol", "TCP").upper() == "TCP"],
                               env, cp.get("command"), props.get("restartPolicy", "Always"))
        events = rt.events.setdefault(name, [])
        if not ok:
            events.append(event("Failed", "Error: failed to start container \"%s\": %s" % (name, out),
                                "Warning"))
            rt.failed[name] = "ContainerCannotRun"
            return {"code": "ContainerGroupDeploymentFailed", "message": "The container '%s' could "
                    "not start: %s" % (name, out)}
        with rt.lock:
            rt.containers[name] = dname
        events.append(event("Created", 'Created container %s' % name))
        events.append(event("Started", 'Started container %s' % name))
        return None

    def remove(self, ctx, res):
        with self.arm.lock:
            rt = self.runtime.pop(res["id"].lower(), None)
        if rt:
            docker.remove(rt.containers.values())

    # --- views --------------------------------------------------------------------------
    def view(self, res):
        res = copy.deepcopy(res)
        props = res["properties"]
        rt = self.runtime.get(res["id"].lower())
        # ACI never returns secrets: registry passwords, log workspace keys, secret volumes
        for cred in props.get("imageRegistryCredentials") or []:
            cred.pop("password", None)
        ((props.get("diagnostics") or {}).get("logAnalytics") or {}).pop("workspaceKey", None)
        for vol in props.get("volumes") or []:
            if "secret" in vol:
                vol["secret"] = {}
            (vol.get("azureFile") or {}).pop("storageAccountKey", None)
        states = []
        for c in props["containers"]:
            for e in c["properties"].get("environmentVariables") or []:
                if "secureValue" in e:
                    e["secureValue"] = None
            if rt is None:
                continue
            iv = self.container_view(rt, c["name"])
            c["properties"]["instanceView"] = iv
            states.append(iv["currentState"]["state"])
        ip = props.get("ipAddress")
        if ip is not None and rt is not None:
            ip["ip"] = rt.ip
            if ip.get("dnsNameLabel"):
                ip["fqdn"] = self.fqdn(ip["dnsNameLabel"], res.get("location"))
        if rt is not None:
            always = props.get("restartPolicy", "Always") == "Always"
            if rt.stopped:
                group_state = "Stopped"
            elif states and all(s == "Running" for s in states):
                group_state = "Running"
            elif rt.failed:
                # ACI keeps a group with restart policy Always Pending (it goes on trying), also
                # once the create has failed (the recorded ContainerGroupsGet_Failed example)
                group_state = "Failed" if rt.gave_up and not always else "Pending"
            elif states and not always and all(s == "Terminated" for s in states):
                group_state = "Succeeded"
            else:
                group_state = "Pending"
            props["instanceView"] = {"events": [], "state": group_state}
        props.setdefault("isCreatedFromStandbyPool", False)
        return res

    def container_view(self, rt, name):
        events = list(rt.events.get(name, []))
        dname = rt.containers.get(name)
        info = docker.inspect(dname) if dname else None
        if rt.stopped:
            return {"restartCount": 0, "currentState": {"state": "Terminated", "detailStatus": "Stopped"},
                    "events": events}
        if info is None:
            return {"restartCount": 0, "events": events,
                    "currentState": {"state": "Waiting", "detailStatus": rt.failed.get(name, "")}}
        s = info["State"]
        restarts = int(info.get("RestartCount") or 0)
        if s.get("Running") and not s.get("Restarting"):
            current = {"state": "Running", "startTime": s.get("StartedAt"), "detailStatus": ""}
        elif s.get("Restarting"):
            current = {"state": "Waiting", "detailStatus": "CrashLoopBackOff: Back-off restarting "
                       "failed container"}
        else:
            current = {"state": "Terminated", "exitCode": s.get("ExitCode"),
                       "startTime": s.get("StartedAt"), "finishTime": s.get("FinishedAt"),
                       "detailStatus": "Completed" if s.get("ExitCode") == 0 else "Error"}
        out = {"restartCount": restarts, "currentState": current, "events": events}
        if restarts or current["state"] == "Terminated":
            code = s.get("ExitCode")
            if restarts and current["state"] != "Terminated":  # running again: inspect says 0
                code = docker.last_exit_code(dname)
                code = s.get("ExitCode") if code is None else code
            out["previousState"] = {"state": "Terminated", "exitCode": code,
                                    "finishTime": s.get("FinishedAt"),
                                    "detailStatus": "Error" if code else "Completed"}
        if restarts:
            events.append(event("Killing", "Killing container %s" % name, "Normal", restarts))
            events.append(event("BackOff", "Back-off restarting failed container", "Warning", restarts))
        return out

    # --- actions ------------------------------------------------------------------------
    def restart(self, ctx, res, body):
        """Restarts the containers in place; an image whose tag has moved is pulled again and
        its container made anew from it (ACI's restart: "if container image has updates, new
        image will be downloaded")."""
        rt = self.rt(res)
        if rt.stopped:
            raise ArmError(409, "ContainerGroupStopped", "The container group '%s' is stopped; start "
                           "it instead." % res["name"])
        for c in res["properties"]["containers"]:
            name = c["name"]
            dname = rt.containers.get(name)
            running = (docker.inspect(dname) or {}).get("Image") if dname else None
            rt.events.setdefault(name, []).append(event("Killing", "Killing container %s" % name))
            pulled = self.pull(res, rt, c, retry=False)
            if pulled and docker.image_digest(c["properties"]["image"])[0] not in (None, running):
                self.run_container(res, rt, c)
                continue
            if dname:  # the tag has not moved, or the pull failed: the same container again
                rt.failed.pop(name, None)
                docker.run(["restart", "-t", "2", dname], timeout=120)
                rt.events[name].append(event("Started", "Started container %s" % name))
        return 204, None, []

    def stop(self, ctx, res, body):
        rt = self.rt(res)
        with rt.lock:
            docker.remove(rt.containers.values())
            rt.containers, rt.stopped = {}, True
        return 204, None, []

    def start(self, ctx, res, body):
        op = self.arm.start_op(ctx, "action", res, self, lambda: self.provision(ctx, res))
        return 202, None, self.arm.lro_headers(op, location=False)

    # --- proxy --------------------------------------------------------------------------
    def resolve(self, host, port):
        """The 127.0.0.1 port that serves HOST:PORT (the group's fqdn or ip), or None."""
        with self.arm.lock:
            groups = [r for r in self.arm.resources.values() if r["type"] == self.key]
        for res in groups:
            ip = res["properties"].get("ipAddress") or {}
            rt = self.runtime.get(res["id"].lower())
            if rt is None:
                continue
            names = {rt.ip}
            if ip.get("dnsNameLabel"):
                names.add(self.fqdn(ip["dnsNameLabel"], res.get("location")))
            if host.lower() not in names or port not in {p.get("port") for p in ip.get("ports") or []}:
                continue
            for c in res["properties"]["containers"]:
                if port in {p.get("port") for p in c["properties"].get("ports") or []}:
                    dname = rt.containers.get(c["name"])
                    return docker.host_port(docker.inspect(dname), port) if dname else None
        return None


def logs(arm, h, m):
    check_sub(arm, m.group(1))
    check_api_version(h, API, "'Microsoft.ContainerInstance/containerGroups/containers'")
    rg = require_rg(arm, m.group(2))
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "Logs are read with GET.")
    rtype = arm.types[ContainerGroups.key.lower()]
    res = arm.get("%s/providers/%s/%s" % (rg["id"], ContainerGroups.key, m.group(3)))
    if res is None:
        raise ArmError(404, "ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not "
                       "found." % (ContainerGroups.key, m.group(3), rg["name"]))
    if m.group(4) not in {c["name"] for c in res["properties"]["containers"]}:
        raise ArmError(404, "ContainerNotFound", "The container '%s' is not in the container group "
                       "'%s'." % (m.group(4), res["name"]))
    rt = rtype.runtime.get(res["id"].lower())
    dname = rt.containers.get(m.group(4)) if rt else None
    tail = h.query.get("tail")
    if tail is not None and not tail.isdigit():
        raise ArmError(400, "InvalidParameter", "tail must be a non-negative integer.", target="tail")
    content = docker.logs(dname, tail, h.query.get("timestamps") == "true") if dname else None
    return 200, {"content": content or ""}, []


def install(arm):
    # resources live in memory: containers a previous emulator process left have no group now
    threading.Thread(target=docker.remove_labelled, daemon=True).start()
    arm.register(ContainerGroups(arm))
    route(arm, r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerInstance/"
               r"containerGroups/([^/]+)/containers/([^/]+)/logs$", logs)
