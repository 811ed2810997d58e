"""The kubelet: each pod runs as real containers on the local Docker engine.

One worker thread per pod: scheduling check, image pull (imagePullPolicy, imagePullSecrets),
env from secrets/configmaps, `docker run -p 127.0.0.1::PORT` for each container port and probe
port (`hostNetwork: true`: `--network host`, the pod's IP is the host's 127.0.0.1 and its ports
are the container's own), configMap and secret volumes (their keys as files, bind-mounted
read-only), probes (httpGet, tcpSocket, exec) against the published 127.0.0.1 ports, restarts with
CrashLoopBackOff back-off, pod status and events like a real kubelet's, graceful deletion.
Containers are labelled hoist-emulator=kube (down.sh removes them).
"""

import base64
import collections
import copy
import http.client
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import discovery
from controllers import record_event
from objects import ApiError, now

POD = discovery.BY_KEY["/pods"]
LABEL = "hoist-emulator=kube"
INSTANCE = "hoist-emulator-instance"     # = the API port: two emulators never touch each other's containers
NODE = "hoist-emulator"
MAX_BACKOFF = 300.0
IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
                      r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
UNITS = {"Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4, "k": 1000, "M": 1000 ** 2,
         "G": 1000 ** 3, "T": 1000 ** 4, "m": 0.001}


def quantity(q):
    if q is None:
        return 0.0
    s = str(q)
    for u in sorted(UNITS, key=len, reverse=True):
        if s.endswith(u):
            return float(s[:-len(u)]) * UNITS[u]
    return float(s)


def go_duration(seconds):
    """A delay as the kubelet prints it (Go's time.Duration): 10s, 1m20s, 5m0s."""
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60}s"


def docker(*args, timeout=60, env=None):
    try:
        p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout.strip(), p.stderr.strip()
    except subprocess.TimeoutExpired:
        return 124, "", f"docker {args[0]} timed out after {timeout}s"


class Container:
    """What the kubelet knows of one container of a pod."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.id = None                  # current docker container id
        self.prev_id = None
        self.ports = {}                 # containerPort -> host port
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.restarts = 0
        self.ready = False
        self.started = False            # startup probe passed (or none)
        self.next_start = 0.0
        self.backoff = 0.0              # the kubelet's back-off entry: current delay (0: none) ...
        self.backoff_at = 0.0           # ... and when it was last moved on
        self.doubles_at_start = False   # a restart after a wait doubles the delay
        self.pull_backoff = 0.0         # image pulls have a back-off of their own
        self.stopped_by_kubelet = False  # a probe failure's stop: its 137 is not the OOM killer
        self.image_id = ""
        self.probe = {}                 # kind -> {"next": t, "ok": n, "fail": n}
        self.started_at = None

    def status(self, image):
        st = {"name": self.name, "image": image, "imageID": self.image_id, "ready": self.ready,
              "restartCount": self.restarts, "started": "running" in self.state and self.started,
              "state": self.state, "lastState": self.last_state}
        if self.id:
            st["containerID"] = f"docker://{self.id}"
        return st


class PodWorker(threading.Thread):
    def __init__(self, kubelet, pod):
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.k = kubelet
        self.api = kubelet.api
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.pod = pod
        self.q = queue.Queue()
        self.containers = [Container(c) for c in pod["spec"].get("containers", [])]
        self.conditions = {}
        self.phase = "Pending"
        self.host_network = bool(pod["spec"].get("hostNetwork"))
        self.ip = "127.0.0.1" if self.host_network else kubelet.next_ip()
        self.volume_dir = None          # the files of the pod's configMap and secret volumes
        self.start_time = None
        self.stopping = False
        self.lock = threading.Lock()

    # -- status --------------------------------------------------------------------------
    def cond(self, ctype, status, reason=None, message=None):
        c = self.conditions.get(ctype)
        if c and c["status"] == status and c.get("reason") == reason:
            return
        nc = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now()}
        if reason:
            nc["reason"] = reason
        if message:
            nc["message"] = message
        self.conditions[ctype] = nc

    def write_status(self):
        if self.stopping and self.k.store.get(POD.key, self.ns, self.name) is None:
            return
        cs = self.containers
        all_ready = all(c.ready for c in cs) and bool(cs)
        if self.conditions.get("PodScheduled", {}).get("status") == "True":
            self.cond("Initialized", "True")
            if all_ready:
                self.cond("ContainersReady", "True")
                self.cond("Ready", "True")
            else:
                not_ready = [c.name for c in cs if not c.ready]
                msg = f"containers with unready status: [{' '.join(not_ready)}]"
                self.cond("ContainersReady", "False", "ContainersNotReady", msg)
                self.cond("Ready", "False", "ContainersNotReady", msg)
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status = {"phase": self.phase,
                  "conditions": [self.conditions[c] for c in order if c in self.conditions],
                  "qosClass": self.pod.get("status", {}).get("qosClass", "BestEffort")}
        if self.conditions.get("PodScheduled", {}).get("status") == "True":
            status.update(hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}], podIP=self.ip,
                          podIPs=[{"ip": self.ip}], startTime=self.start_time,
                          containerStatuses=[c.status(c.spec.get("image")) for c in cs])
        ports = {f"{c.name}/{p}": f"127.0.0.1:{h}" for c in cs for p, h in sorted(c.ports.items())}
        with self.k.store.lock:
            live = self.k.store.get(POD.key, self.ns, self.name)
            if live is None or live["metadata"]["uid"] != self.uid:
                return
            if live.get("status") != status:
                new = copy.deepcopy(live)
                new["status"] = status
                live = self.api._commit(POD, live, new, "status", None, False, True)
            ann = json.dumps(ports, sort_keys=True) if ports else None
            if (live["metadata"].get("annotations") or {}).get("hoist.dev/emulator-ports") != ann:
                new = copy.deepcopy(live)
                a = new["metadata"].setdefault("annotations", {})
                if ann:
                    a["hoist.dev/emulator-ports"] = ann
                else:
                    a.pop("hoist.dev/emulator-ports", None)
                self.api._commit(POD, live, new, None, None, False, True)

    def event(self, etype, reason, message, container=None):
        fp = f"spec.containers{{{container}}}" if container else None
        record_event(self.api, self.pod, etype, reason, message, "kubelet", fp)

    # -- main loop -----------------------------------------------------------------------
    def run(self):
        try:
            if not self.schedule():
                self.wait_until_deleted()
                return
            self.loop()
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
        finally:
            self.k.forget(self)

    def schedule(self):
        spec = self.pod["spec"]
        node = self.k.store.get("/nodes", "", NODE)
        alloc = node["status"]["allocatable"] if node else {"cpu": "8", "memory": "16Gi"}
        reasons = []
        sel = spec.get("nodeSelector") or {}
        labels = node["metadata"].get("labels", {}) if node else {}
        if any(labels.get(k) != v for k, v in sel.items()):
            reasons.append("1 node(s) didn't match Pod's node affinity/selector")
        for res_name, nice in (("cpu", "cpu"), ("memory", "memory")):
            want = sum(quantity(((c.get("resources") or {}).get("requests") or {}).get(res_name))
                       for c in spec.get("containers", []))
            if want > quantity(alloc.get(res_name)):
                reasons.append(f"1 Insufficient {nice}")
        if reasons:
            msg = f"0/1 nodes are available: {', '.join(reasons)}. preemption: 0/1 nodes are available: " \
                  "1 No preemption victims found for incoming pod."
            self.cond("PodScheduled", "False", "Unschedulable", msg)
            self.write_status()
            record_event(self.api, self.pod, "Warning", "FailedScheduling", msg, "default-scheduler")
            return False
        with self.k.store.lock:
            live = self.k.store.get(POD.key, self.ns, self.name)
            if live is None:
                return False
            if not live["spec"].get("nodeName"):
                new = copy.deepcopy(live)
                new["spec"]["nodeName"] = NODE
                self.pod = self.api._commit(POD, live, new, None, None, False, True)
        record_event(self.api, self.pod, "Normal", "Scheduled",
                     f"Successfully assigned {self.ns}/{self.name} to {NODE}", "default-scheduler")
        self.cond("PodScheduled", "True")
        self.cond("PodReadyToStartContainers", "True")
        self.start_time = now()
        self.write_status()
        return True

    def wait_until_deleted(self):
        while True:
            msg = self.q.get()
            if msg in ("delete", "gone", "shutdown"):
                if msg == "delete":
                    self.api.remove_now(POD, self.ns, self.name)
                return

    def loop(self):
        while True:
            t = time.time()
            for c in self.containers:
                if c.id is None and c.next_start <= t and not self.stopping and self.should_start(c):
                    self.start_container(c)
            self.update_phase()
            self.write_status()
            wake = self.run_probes()
            starts = [c.next_start for c in self.containers if c.id is None and self.should_start(c)]
            deadline = min([wake] + starts + [time.time() + 5.0])
            try:
                msg = self.q.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                continue
            if msg == "shutdown":
                return
            if msg in ("delete", "gone"):
                self.stop_all(msg == "delete")
                return
            if isinstance(msg, tuple) and msg[0] == "die":
                self.container_died(msg[1])

    def should_start(self, c):
        if "terminated" in c.state and c.id is None:
            policy = self.pod["spec"].get("restartPolicy", "Always")
            code = c.state["terminated"].get("exitCode", 0)
            return policy == "Always" or (policy == "OnFailure" and code != 0)
        return True

    def update_phase(self):
        cs = self.containers
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if any("running" in c.state for c in cs):
            self.phase = "Running"
        elif cs and all("terminated" in c.state and c.id is not None for c in cs) and policy != "Always":
            failed = any(c.state["terminated"].get("exitCode") for c in cs)
            if policy == "Never" or not failed:
                self.phase = "Failed" if failed else "Succeeded"

    # -- containers ------------------------------------------------------------------------
    def waiting(self, c, reason, message=None):
        c.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        c.ready = False

    def back_off(self, c, field="backoff"):
        """The next delay after a start (or, field="pull_backoff", an image pull) that failed: the
        first back-off, doubling to MAX_BACKOFF."""
        d = min(MAX_BACKOFF, getattr(c, field) * 2) if getattr(c, field) else self.k.backoff
        setattr(c, field, d)
        c.backoff_at = time.time() if field == "backoff" else c.backoff_at
        c.next_start = time.time() + d
        return d

    def crash_back_off(self, c, finished):
        """A crashed container's restart, as the kubelet's per-container back-off decides it: no
        entry (first crash, or the last restart was more than twice the maximum ago: it ran ten
        minutes) restarts at once and starts the entry at the first delay; otherwise it waits the
        current delay, which doubles (to MAX_BACKOFF) when it restarts. Returns the wait."""
        if c.backoff and finished - c.backoff_at > 2 * MAX_BACKOFF:
            c.backoff = 0.0
        if not c.backoff:
            c.backoff, c.backoff_at = self.k.backoff, time.time()
            c.next_start = 0.0
            return 0.0
        c.next_start = finished + c.backoff
        c.doubles_at_start = True
        return c.backoff

    @staticmethod
    def restart_begins(c):
        """A restart after a wait moves the back-off entry on: the next wait is twice as long."""
        if c.doubles_at_start:
            c.backoff, c.backoff_at, c.doubles_at_start = min(MAX_BACKOFF, c.backoff * 2), time.time(), False

    def resolve_env(self, c):
        """Env list for the container; raises LookupError(message) for a missing reference."""
        out = []
        store = self.k.store

        def source(kind, name, optional):
            obj = store.get(f"/{kind}s", self.ns, name)
            if obj is None and not optional:
                raise LookupError(f'{kind} "{name}" not found')
            return obj

        def decode(obj, kind, key):
            if kind == "secret":
                v = (obj.get("data") or {}).get(key)
                if v is None and key in (obj.get("stringData") or {}):
                    return obj["stringData"][key]
                return None if v is None else base64.b64decode(v).decode(errors="replace")
            return (obj.get("data") or {}).get(key)

        for ef in c.spec.get("envFrom") or []:
            for kind, ref in (("configmap", ef.get("configMapRef")), ("secret", ef.get("secretRef"))):
                if ref:
                    obj = source(kind, ref.get("name"), ref.get("optional"))
                    if obj:
                        for k in sorted({**(obj.get("data") or {})}):
                            out.append((ef.get("prefix", "") + k, decode(obj, kind, k)))
        for e in c.spec.get("env") or []:
            if "value" in e or "valueFrom" not in e:
                out.append((e["name"], str(e.get("value", ""))))
                continue
            vf = e["valueFrom"]
            for kind, ref in (("configmap", vf.get("configMapKeyRef")), ("secret", vf.get("secretKeyRef"))):
                if ref:
                    obj = source(kind, ref.get("name"), ref.get("optional"))
                    if obj is None:
                        break
                    v = decode(obj, kind, ref.get("key"))
                    if v is None:
                        if ref.get("optional"):
                            break
                        what = "Secret" if kind == "secret" else "ConfigMap"
                        raise LookupError(f"couldn't find key {ref.get('key')} in {what} {self.ns}/{ref.get('name')}")
                    out.append((e["name"], v))
            fr = vf.get("fieldRef")
            if fr:
                path = fr.get("fieldPath", "")
                val = {"metadata.name": self.name, "metadata.namespace": self.ns,
                       "metadata.uid": self.uid, "status.podIP": self.ip, "status.hostIP": "127.0.0.1",
                       "spec.nodeName": NODE, "spec.serviceAccountName":
                           self.pod["spec"].get("serviceAccountName", "default")}.get(path, "")
                out.append((e["name"], val))
        return out

    def volume_mounts(self, c):
        """`-v` arguments for the container's configMap and secret volumes, their keys written as
        files (0644, secrets 0600 as files of the pod's own); raises LookupError(message) for a
        missing source, as the kubelet's MountVolume.SetUp fails. Other volume kinds: not run."""
        volumes = {v.get("name"): v for v in self.pod["spec"].get("volumes") or []}
        args = []
        for m in c.spec.get("volumeMounts") or []:
            v = volumes.get(m.get("name")) or {}
            for kind, field, key in (("configmap", "configMap", "name"), ("secret", "secret", "secretName")):
                src = v.get(field)
                if src is None:
                    continue
                obj = self.k.store.get(f"/{kind}s", self.ns, src.get(key))
                if obj is None and not src.get("optional"):
                    what = "configmap" if kind == "configmap" else "secret"
                    raise LookupError(f'MountVolume.SetUp failed for volume "{m.get("name")}" : '
                                      f'{what} "{src.get(key)}" not found')
                files = {}
                for k, val in ((obj or {}).get("data") or {}).items():
                    files[k] = base64.b64decode(val) if kind == "secret" else val.encode()
                if src.get("items"):
                    files = {i["path"]: files[i["key"]] for i in src["items"] if i.get("key") in files}
                if self.volume_dir is None:
                    self.volume_dir = tempfile.mkdtemp(prefix=f"vol-{self.uid[:8]}-", dir=self.k.state)
                d = os.path.join(self.volume_dir, m["name"])
                os.makedirs(d, exist_ok=True)
                for name, data in files.items():
                    path = os.path.join(d, name)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(data)
                    os.chmod(path, 0o600 if kind == "secret" else 0o644)
                args += ["-v", f"{d}:{m['mountPath']}:ro"]
        return args

    def pull(self, c, image):
        """True when the image is present; otherwise sets the waiting state and back-off."""
        policy = c.spec.get("imagePullPolicy", "IfNotPresent")
        present = docker("image", "inspect", "-f", "{{.Id}}", image, timeout=30)
        if present[0] == 0 and policy != "Always":
            c.image_id = present[1]
            return True
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            self.waiting(c, "ErrImageNeverPull", msg)
            self.event("Warning", "ErrImageNeverPull", msg, c.name)
            self.back_off(c, "pull_backoff")
            return False
        self.event("Normal", "Pulling", f'Pulling image "{image}"', c.name)
        t0 = time.time()
        rc, out, err = self.k.docker_pull(image, self.pull_secrets())
        if rc != 0:
            why = (err or out).splitlines()[-1] if (err or out) else f"docker pull exited {rc}"
            msg = f'failed to pull and unpack image "{image}": {why}'
            self.waiting(c, "ErrImagePull", msg)
            self.event("Warning", "Failed", f'Failed to pull image "{image}": {msg}', c.name)
            self.event("Warning", "Failed", "Error: ErrImagePull", c.name)
            self.write_status()
            self.back_off(c, "pull_backoff")
            # the next attempt waits out the back-off: ImagePullBackOff meanwhile
            time.sleep(0.0)
            self.waiting(c, "ImagePullBackOff", f'Back-off pulling image "{image}"')
            self.event("Normal", "BackOff", f'Back-off pulling image "{image}"', c.name)
            self.event("Warning", "Failed", "Error: ImagePullBackOff", c.name)
            return False
        c.pull_backoff = 0.0
        c.image_id = docker("image", "inspect", "-f", "{{.Id}}", image, timeout=30)[1]
        self.event("Normal", "Pulled", f'Successfully pulled image "{image}" in {time.time() - t0:.3f}s', c.name)
        return True

    def pull_secrets(self):
        auths = {}
        for ref in self.pod["spec"].get("imagePullSecrets") or []:
            s = self.k.store.get("/secrets", self.ns, ref.get("name", ""))
            if not s:
                continue
            raw = (s.get("data") or {}).get(".dockerconfigjson")
            try:
                cfg = json.loads(base64.b64decode(raw)) if raw else {}
            except ValueError:
                continue
            auths.update(cfg.get("auths") or {})
        return auths

    def start_container(self, c):
        image = c.spec.get("image", "")
        if not IMAGE_RE.match(image):
            msg = f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": ' \
                  "invalid reference format"
            self.waiting(c, "InvalidImageName", msg)
            self.event("Warning", "InspectFailed", msg, c.name)
            self.event("Warning", "Failed", "Error: InvalidImageName", c.name)
            c.next_start = time.time() + 3600
            return
        try:
            env = self.resolve_env(c)
        except LookupError as e:
            self.waiting(c, "CreateContainerConfigError", str(e))
            self.event("Warning", "Failed", f"Error: {e}", c.name)
            c.next_start = time.time() + max(1.0, self.k.backoff)
            return
        try:
            mounts = self.volume_mounts(c)
        except LookupError as e:                       # the pod waits in ContainerCreating, as the kubelet's does
            self.waiting(c, "ContainerCreating")
            self.event("Warning", "FailedMount", str(e))
            c.next_start = time.time() + max(1.0, self.k.backoff)
            return
        if not self.pull(c, image):
            return
        ports = {p["containerPort"] for p in c.spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"}
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            pr = c.spec.get(kind) or {}
            for h in ("httpGet", "tcpSocket"):
                port = (pr.get(h) or {}).get("port")
                if isinstance(port, int):
                    ports.add(port)
        attempt = c.restarts + 1 if c.started_at else 0       # restartCount: earlier instances of it
        name = f"k8s_{c.name}_{self.name}_{self.ns}_{self.uid[:8]}_{attempt}_{self.k.instance}"
        args = ["run", "-d", "--name", name, "--label", LABEL, "--label", f"{INSTANCE}={self.k.instance}",
                "--label", f"io.kubernetes.pod.uid={self.uid}",
                "--label", f"io.kubernetes.pod.name={self.name}",
                "--label", f"io.kubernetes.pod.namespace={self.ns}",
                "--label", f"io.kubernetes.container.name={c.name}"]
        if self.host_network:                           # the container's ports are the host's own
            args += ["--network", "host"]
        else:
            for p in sorted(ports):
                args += ["-p", f"127.0.0.1::{p}/tcp"]
        args += mounts
        lim = ((c.spec.get("resources") or {}).get("limits") or {}).get("memory")
        if lim:
            args += ["--memory", str(int(quantity(lim)))]
        if c.spec.get("workingDir"):
            args += ["-w", c.spec["workingDir"]]
        envfile = None
        if env:
            fd, envfile = tempfile.mkstemp(prefix="env-", dir=self.k.state)
            with os.fdopen(fd, "w") as f:
                for k, v in env:
                    f.write(f"{k}={(v or '').replace(chr(10), ' ')}\n")
            args += ["--env-file", envfile]
        cmd = c.spec.get("command") or []
        rest = list(c.spec.get("args") or [])
        if cmd:
            args += ["--entrypoint", cmd[0], image] + cmd[1:] + rest
        else:
            args += [image] + rest
        docker("rm", "-f", name, timeout=30)
        rc, out, err = docker(*args, timeout=60)
        if envfile:
            os.unlink(envfile)
        if rc != 0:
            msg = (err or out).splitlines()[-1] if (err or out) else f"docker run exited {rc}"
            cid = docker("ps", "-aq", "--filter", f"name=^{name}$")[1]
            if cid:
                docker("rm", "-f", cid)
            c.last_state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
                                           "startedAt": None, "finishedAt": now()}}
            c.restarts = attempt
            c.started_at = c.started_at or now()
            self.event("Warning", "Failed", f"Error: failed to start container \"{c.name}\": {msg}", c.name)
            d = self.back_off(c)
            self.waiting(c, "CrashLoopBackOff", f"back-off {go_duration(d)} restarting failed container="
                         f"{c.name} pod={self.name}_{self.ns}({self.uid})")
            return
        self.restart_begins(c)
        if "terminated" in c.state:                            # the instance before this one
            c.last_state = {"terminated": c.state["terminated"]}
        c.restarts = attempt
        c.prev_id, c.id = c.id or c.prev_id, out.strip()
        if self.k.claim(c.id, self):
            self.q.put(("die", c.id))
        c.started_at = now()
        c.state = {"running": {"startedAt": c.started_at}}
        c.ports = {p: p for p in ports} if self.host_network else self.k.published_ports(c.id)
        c.probe = {}
        c.started = not c.spec.get("startupProbe")
        c.ready = c.started and not c.spec.get("readinessProbe")
        self.event("Normal", "Created", f"Created container: {c.name}", c.name)
        self.event("Normal", "Started", f"Started container {c.name}", c.name)

    def container_died(self, cid):
        c = next((x for x in self.containers if x.id == cid), None)
        if c is None:
            return
        fmt = "{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.State.StartedAt}}|{{.State.FinishedAt}}"
        rc, out, _ = docker("inspect", "-f", fmt, cid, timeout=30)
        try:
            code_s, oom, started, finished = out.split("|")
            code = int(code_s)
        except ValueError:
            code, oom, started, finished = 137, "false", c.started_at, now()
        # Docker's OOMKilled flag is sometimes false for a kernel OOM kill (cgroup v2): a SIGKILL
        # (137) of a container with a memory limit that the kubelet did not stop is the OOM killer
        limited = ((c.spec.get("resources") or {}).get("limits") or {}).get("memory")
        if code == 137 and limited and not self.stopping and not c.stopped_by_kubelet:
            oom = "true"
        c.stopped_by_kubelet = False
        reason = "OOMKilled" if oom == "true" else ("Completed" if code == 0 else "Error")
        term = {"exitCode": code, "reason": reason, "startedAt": c.started_at, "finishedAt": now(),
                "containerID": f"docker://{cid}"}
        c.ready = False
        self.k.by_container.pop(cid, None)
        old_prev = c.prev_id
        c.prev_id, c.id = cid, None
        if old_prev and old_prev != cid:
            docker("rm", "-f", old_prev, timeout=30)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if self.stopping or policy == "Never" or (policy == "OnFailure" and code == 0):
            c.state = {"terminated": term}
            c.id = cid                      # stays terminated
            return
        d = self.crash_back_off(c, time.time())
        if not d:                            # restarted at once: terminated until then
            c.state = {"terminated": term}
            return
        c.last_state = {"terminated": term}
        msg = f"back-off {go_duration(d)} restarting failed container={c.name} pod={self.name}_{self.ns}({self.uid})"
        self.waiting(c, "CrashLoopBackOff", msg)
        self.event("Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod "
                   f"{self.name}_{self.ns}({self.uid})", c.name)

    # -- probes ----------------------------------------------------------------------------
    def run_probes(self):
        """Runs the probes that are due; returns when the next one is due."""
        t = time.time()
        nxt = t + 5.0
        for c in self.containers:
            if c.id is None or "running" not in c.state:
                continue
            started = time.mktime(time.strptime(c.started_at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                pr = c.spec.get(kind)
                if not pr or (kind != "startupProbe" and not c.started):
                    continue
                if kind == "startupProbe" and c.started:
                    continue
                st = c.probe.setdefault(kind, {"next": started + pr.get("initialDelaySeconds", 0),
                                               "ok": 0, "fail": 0})
                if st["next"] > t:
                    nxt = min(nxt, st["next"])
                    continue
                ok, why = self.probe(c, pr)
                st["next"] = time.time() + pr.get("periodSeconds", 10)
                nxt = min(nxt, st["next"])
                if ok:
                    st["ok"], st["fail"] = st["ok"] + 1, 0
                    if st["ok"] >= pr.get("successThreshold", 1):
                        if kind == "startupProbe":
                            c.started = True
                            c.ready = not c.spec.get("readinessProbe")
                        elif kind == "readinessProbe":
                            c.ready = True
                    continue
                st["ok"], st["fail"] = 0, st["fail"] + 1
                label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
                self.event("Warning", "Unhealthy", f"{label} probe failed: {why}", c.name)
                if st["fail"] < pr.get("failureThreshold", 3):
                    continue
                if kind == "readinessProbe":
                    c.ready = False
                else:
                    what = "startup" if kind == "startupProbe" else "liveness"
                    self.event("Normal", "Killing", f"Container {c.name} failed {what} probe, will be restarted",
                               c.name)
                    grace = pr.get("terminationGracePeriodSeconds") or \
                        self.pod["spec"].get("terminationGracePeriodSeconds", 30)
                    c.stopped_by_kubelet = True
                    docker("stop", "-t", str(int(grace)), c.id, timeout=grace + 30)
                    break                   # the die event restarts it
        return nxt

    def probe(self, c, pr):
        timeout = pr.get("timeoutSeconds", 1)
        if "exec" in pr:
            cmd = (pr["exec"] or {}).get("command") or []
            rc, out, err = docker("exec", c.id, *cmd, timeout=timeout + 5)
            if rc == 0:
                return True, ""
            return False, (out + err).strip() or f"command {json.dumps(cmd)} exited with {rc}"
        spec = pr.get("httpGet") or pr.get("tcpSocket")
        if spec is None:
            return True, ""
        port = spec.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == port), None)
        host_port = c.ports.get(int(port)) if port is not None else None
        shown = f"{self.ip}:{port}"
        if host_port is None:
            return False, f"dial tcp {shown}: connect: connection refused"
        if "tcpSocket" in pr:
            try:
                socket.create_connection(("127.0.0.1", host_port), timeout=timeout).close()
                return True, ""
            except OSError:
                return False, f"dial tcp {shown}: connect: connection refused"
        path = spec.get("path", "/")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", host_port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read(1024)
            conn.close()
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
        except socket.timeout:
            return False, f'Get "http://{shown}{path}": context deadline exceeded (Client.Timeout exceeded ' \
                          "while awaiting headers)"
        except OSError as e:
            why = "connection refused" if isinstance(e, ConnectionRefusedError) else \
                "EOF" if isinstance(e, (ConnectionResetError, http.client.RemoteDisconnected)) else str(e)
            return False, f'Get "http://{shown}{path}": dial tcp {shown}: connect: {why}' \
                if why == "connection refused" else f'Get "http://{shown}{path}": {why}'

    # -- deletion --------------------------------------------------------------------------
    def stop_all(self, finalize):
        self.stopping = True
        grace = (self.k.store.get(POD.key, self.ns, self.name) or self.pod)["metadata"].get(
            "deletionGracePeriodSeconds", self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        running = [c for c in self.containers if c.id and "running" in c.state]
        for c in running:
            self.event("Normal", "Killing", f"Stopping container {c.name}", c.name)
        threads = [threading.Thread(target=docker, args=("stop", "-t", str(int(grace)), c.id),
                                    kwargs={"timeout": grace + 30}) for c in running]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for c in self.containers:
            for cid in (c.id, c.prev_id):
                if cid:
                    self.k.by_container.pop(cid, None)
                    docker("rm", "-f", cid, timeout=30)
        if self.volume_dir:
            shutil.rmtree(self.volume_dir, ignore_errors=True)
            self.volume_dir = None
        if finalize:
            self.api.remove_now(POD, self.ns, self.name)


class Kubelet:
    def __init__(self, srv, state, backoff):
        self.srv = srv
        self.api = srv.api
        self.store = srv.store
        self.state = os.path.join(state, "kubelet")
        os.makedirs(self.state, exist_ok=True)
        self.backoff = backoff
        self.instance = str(srv.server_address[1])
        self.mine = f"label={INSTANCE}={self.instance}"
        self.workers = {}               # uid -> PodWorker
        self.by_container = {}          # docker id -> PodWorker
        # ids that died before their worker claimed them: a container that exits at once can
        # die before `docker run -d` has returned its id (more often on a loaded machine)
        self.unclaimed_deaths = collections.deque(maxlen=256)
        self.lock = threading.RLock()
        self.ip_counter = 1
        self.events_proc = None

    def next_ip(self):
        with self.lock:
            self.ip_counter += 1
            n = self.ip_counter
        return f"10.244.{n // 250}.{n % 250 + 2}"

    def start(self):
        # containers of an earlier emulator process belong to pods it forgot
        ids = docker("ps", "-aq", "--filter", self.mine)[1].split()
        if ids:
            docker("rm", "-f", *ids, timeout=120)
        self.api.on_pod_delete = self.on_pod_delete
        self.store.listeners.append(self.on_event)
        threading.Thread(target=self.docker_events, daemon=True, name="docker-events").start()
        for p in self.store.list(POD.key)[0]:
            self.on_event(POD.key, "ADDED", p, None)

    def on_event(self, key, etype, obj, old):
        if key != POD.key:
            return
        uid = obj["metadata"]["uid"]
        with self.lock:
            w = self.workers.get(uid)
            if etype == "ADDED" and w is None and not obj["metadata"].get("deletionTimestamp"):
                w = PodWorker(self, obj)
                self.workers[uid] = w
                w.start()
            elif etype == "DELETED" and w is not None:
                w.q.put("gone")

    def on_pod_delete(self, pod):
        with self.lock:
            w = self.workers.get(pod["metadata"]["uid"])
        if w is None:
            self.api.remove_now(POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
        else:
            w.q.put("delete")

    def forget(self, w):
        with self.lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]

    def docker_events(self):
        while not self.srv.stop.is_set():
            p = subprocess.Popen(["docker", "events", "--filter", self.mine, "--filter", "type=container",
                                  "--filter", "event=die", "--format", "{{.ID}}"],
                                 stdout=subprocess.PIPE, text=True)
            self.events_proc = p
            for line in p.stdout:
                if not line.strip():
                    continue
                found = self.died(line.strip())
                if found is not None:
                    found[0].q.put(("die", found[1]))
            p.wait()
            time.sleep(1)

    def docker_pull(self, image, auths):
        if not auths:
            return docker("pull", "-q", image, timeout=300)
        with tempfile.TemporaryDirectory(dir=self.state) as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"auths": auths}, f)
            return docker("--config", d, "pull", "-q", image, timeout=300)

    @staticmethod
    def published_ports(cid):
        rc, out, _ = docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", cid, timeout=30)
        ports = {}
        try:
            for k, binds in (json.loads(out) or {}).items():
                for b in binds or []:
                    if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                        ports[int(k.split("/")[0])] = int(b["HostPort"])
        except ValueError:
            pass
        return ports

    def died(self, cid):
        """(worker, full id) of a container that died, or None; an id no worker has claimed yet
        is kept for claim()."""
        with self.lock:
            for k, w in self.by_container.items():
                if k.startswith(cid) or cid.startswith(k):
                    return w, k
            self.unclaimed_deaths.append(cid)
            return None

    def claim(self, cid, worker):
        """Registers a started container; True when it already died (died() saw it first)."""
        with self.lock:
            self.by_container[cid] = worker
            return any(cid.startswith(x) or x.startswith(cid) for x in self.unclaimed_deaths)

    def worker(self, pod):
        with self.lock:
            return self.workers.get(pod["metadata"]["uid"])

    def host_port(self, pod, target):
        """The 127.0.0.1 port that reaches `target` (number or port name) of a pod, or None."""
        w = self.worker(pod)
        if w is None:
            return None
        for c in w.containers:
            port = target
            if isinstance(target, str) and not target.isdigit():
                port = next((p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == target), None)
            if port is not None and int(port) in c.ports and "running" in c.state:
                return c.ports[int(port)]
        return None

    def has_previous(self, pod, cname):
        """Whether the container has a terminated earlier instance (what `logs --previous` reads)."""
        w = self.worker(pod)
        c = next((x for x in w.containers if x.name == cname), None) if w else None
        return bool(c and c.prev_id and c.prev_id != c.id)     # a terminated one that stays is current

    def logs(self, pod, cname, tail, previous, timestamps):
        w = self.worker(pod)
        if w is None:
            return None
        c = next((x for x in w.containers if x.name == cname), None)
        cid = (c.prev_id if previous else (c.id or c.prev_id)) if c else None
        if cid is None:
            return None
        args = ["logs"]
        if tail is not None:
            args += ["--tail", str(tail)]
        if timestamps:
            args.append("--timestamps")
        p = subprocess.run(["docker", *args, cid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return p.stdout

    def follow(self, pod, cname):
        w = self.worker(pod)
        c = next((x for x in w.containers if x.name == cname), None) if w else None
        if c is None or c.id is None:
            return
        p = subprocess.Popen(["docker", "logs", "-f", "--tail", "0", c.id], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            while True:
                data = p.stdout.read1(65536) if hasattr(p.stdout, "read1") else p.stdout.readline()
                if not data:
                    break
                yield data
        finally:
            p.kill()
            p.wait()

    def waiting_reason(self, pod, cname):
        w = self.worker(pod)
        c = next((x for x in w.containers if x.name == cname), None) if w else None
        return (c.state.get("waiting") or {}).get("reason") if c else None

    def reset(self):
        with self.lock:
            ws = list(self.workers.values())
            self.workers.clear()
        for w in ws:
            w.q.put("shutdown")
        ids = docker("ps", "-aq", "--filter", self.mine)[1].split()
        if ids:
            docker("rm", "-f", *ids, timeout=120)
        self.by_container.clear()

    def shutdown(self):
        if self.events_proc:
            self.events_proc.kill()
