"""Services: each Service port gets a listener on 127.0.0.1 (a kernel-chosen port) that
forwards TCP round-robin to the ready pods selected by the Service, through the pods'
published 127.0.0.1 ports (never a container's bridge address).

The address is recorded on the Service: annotation hoist.dev/emulator-address
("127.0.0.1:PORT", the first port) and hoist.dev/emulator-ports ({"<port>/TCP": "127.0.0.1:PORT"}).
The Service also gets a clusterIP (10.96.x.y, not routable here) and an Endpoints object.
"""

import copy
import json
import socket
import threading

import discovery
from objects import labels_match

SVC = discovery.BY_KEY["/services"]
POD = discovery.BY_KEY["/pods"]
EP = discovery.BY_KEY["/endpoints"]


class Listener(threading.Thread):
    def __init__(self, proxies, uid, port_spec):
        super().__init__(daemon=True, name=f"svc-{port_spec.get('port')}")
        self.p = proxies
        self.uid = uid
        self.port_spec = port_spec
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.rr = 0
        self.closed = False

    def run(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.forward, args=(conn,), daemon=True).start()

    def backends(self):
        svc = self.p.svc_by_uid(self.uid)
        if svc is None:
            return []
        sel = [(k, "=", [v]) for k, v in sorted(((svc.get("spec") or {}).get("selector") or {}).items())]
        if not sel:
            return []
        target = self.port_spec.get("targetPort", self.port_spec.get("port"))
        out = []
        for pod in self.p.srv.store.list(POD.key, svc["metadata"]["namespace"])[0]:
            if pod["metadata"].get("deletionTimestamp") or not labels_match(sel, pod["metadata"].get("labels")):
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if not ready:
                continue
            hp = self.p.srv.kubelet.host_port(pod, target)
            if hp:
                out.append(hp)
        return sorted(out)

    def forward(self, client):
        ports = self.backends()
        upstream = None
        for _ in range(len(ports)):
            self.rr += 1
            hp = ports[self.rr % len(ports)]
            try:
                upstream = socket.create_connection(("127.0.0.1", hp), timeout=5)
                upstream.settimeout(None)
                break
            except OSError:
                upstream = None
        if upstream is None:
            client.close()              # no ready endpoint: the connection is refused/closed
            return

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join()
        client.close()
        upstream.close()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class Proxies:
    def __init__(self, srv):
        self.srv = srv
        self.lock = threading.Lock()
        self.listeners = {}             # (uid, port, protocol) -> Listener
        self.ip_counter = 10
        self.pending = []
        self.cv = threading.Condition()

    def start(self):
        self.srv.store.listeners.append(self.on_event)
        threading.Thread(target=self.loop, daemon=True, name="services").start()
        for s in self.srv.store.list(SVC.key)[0]:
            self.on_event(SVC.key, "ADDED", s, None)

    def svc_by_uid(self, uid):
        with self.srv.store.lock:
            for s in self.srv.store.objects[SVC.key].values():
                if s["metadata"]["uid"] == uid:
                    return s
        return None

    def on_event(self, key, etype, obj, old):
        if key == SVC.key or (key == POD.key and (old is None or etype == "DELETED" or
                                                  obj.get("status") != old.get("status"))):
            with self.cv:
                self.pending.append((key, etype, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                                     obj["metadata"]["uid"]))
                self.cv.notify()

    def loop(self):
        while not self.srv.stop.is_set():
            with self.cv:
                if not self.pending:
                    self.cv.wait(1.0)
                work, self.pending = self.pending, []
            svcs = set()
            for key, etype, ns, name, uid in work:
                if key == SVC.key:
                    if etype == "DELETED":
                        self.drop(uid)
                    svcs.add((ns, name))
                else:
                    for s in self.srv.store.list(SVC.key, ns)[0]:
                        svcs.add((ns, s["metadata"]["name"]))
            for ns, name in svcs:
                try:
                    self.sync(ns, name)
                except Exception:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()

    def drop(self, uid):
        with self.lock:
            for k in [k for k in self.listeners if k[0] == uid]:
                self.listeners.pop(k).close()
        for e in self.srv.store.list(EP.key)[0]:
            if any(r.get("uid") == uid for r in e["metadata"].get("ownerReferences") or []):
                self.srv.api.remove_now(EP, e["metadata"]["namespace"], e["metadata"]["name"])

    def sync(self, ns, name):
        store, api = self.srv.store, self.srv.api
        svc = store.get(SVC.key, ns, name)
        if svc is None:
            return
        uid = svc["metadata"]["uid"]
        spec = svc.get("spec") or {}
        wanted = {}
        with self.lock:
            for p in spec.get("ports") or []:
                if p.get("protocol", "TCP") != "TCP":
                    continue
                k = (uid, p.get("port"), "TCP")
                ln = self.listeners.get(k)
                if ln is None:
                    ln = Listener(self, uid, p)
                    self.listeners[k] = ln
                    ln.start()
                ln.port_spec = p
                wanted[k] = ln
            for k in [k for k in self.listeners if k[0] == uid and k not in wanted]:
                self.listeners.pop(k).close()
        ports = {f"{k[1]}/{k[2]}": f"127.0.0.1:{ln.port}" for k, ln in wanted.items()}
        first = next(iter(wanted.values()), None)
        with store.lock:
            live = store.get(SVC.key, ns, name)
            if live is None or live["metadata"]["uid"] != uid:
                return
            new = copy.deepcopy(live)
            a = new["metadata"].setdefault("annotations", {})
            if first:
                a["hoist.dev/emulator-address"] = f"127.0.0.1:{first.port}"
                a["hoist.dev/emulator-ports"] = json.dumps(ports, sort_keys=True)
            if not new["spec"].get("clusterIP"):
                self.ip_counter += 1
                ip = f"10.96.{self.ip_counter // 250}.{self.ip_counter % 250 + 1}"
                new["spec"]["clusterIP"] = ip
                new["spec"]["clusterIPs"] = [ip]
            if new != live:
                api._commit(SVC, live, new, None, None, False, True)
        self.sync_endpoints(svc)

    def sync_endpoints(self, svc):
        store, api = self.srv.store, self.srv.api
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        sel = [(k, "=", [v]) for k, v in sorted(((svc.get("spec") or {}).get("selector") or {}).items())]
        if not sel:
            return
        ready, not_ready = [], []
        for pod in store.list(POD.key, ns)[0]:
            if pod["metadata"].get("deletionTimestamp") or not labels_match(sel, pod["metadata"].get("labels")):
                continue
            st = pod.get("status") or {}
            if not st.get("podIP"):
                continue
            addr = {"ip": st["podIP"], "nodeName": pod["spec"].get("nodeName"),
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}}
            ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            (ready if ok else not_ready).append(addr)
        subset = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if subset:
            subset["ports"] = [{"name": p.get("name"), "port": p.get("targetPort") if isinstance(p.get("targetPort"), int)
                                else p.get("port"), "protocol": p.get("protocol", "TCP")}
                               for p in (svc["spec"].get("ports") or [])]
            for p in subset["ports"]:
                if p["name"] is None:
                    del p["name"]
        ep = {"metadata": {"name": name, "namespace": ns, "labels": svc["metadata"].get("labels") or {},
                           "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                                "uid": svc["metadata"]["uid"]}]},
              "subsets": [subset] if subset else []}
        with store.lock:
            live = store.get(EP.key, ns, name)
            if live is None:
                api.create(EP, ns, ep, internal=True)
            elif live.get("subsets") != ep["subsets"]:
                new = copy.deepcopy(live)
                new["subsets"] = ep["subsets"]
                api._commit(EP, live, new, None, None, False, True)
