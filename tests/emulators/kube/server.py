#!/usr/bin/env python3
"""A Kubernetes API server emulator for hoist's tests (Python 3 standard library only).

HTTPS with client-certificate and bearer-token auth; discovery; a generic store with watch;
server-side apply; deployment/replicaset controllers; a kubelet running pods as Docker
containers; Services forwarded from 127.0.0.1 ports. See README.md.
"""

import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import discovery                                       # noqa: E402
import protobuf                                        # noqa: E402
import tables                                          # noqa: E402
import versions                                        # noqa: E402
from api import Api, default_manager                   # noqa: E402
from objects import (ApiError, bad_request, fields_match, labels_match, not_found,  # noqa: E402
                     parse_field_selector, parse_label_selector)
from store import Store                                # noqa: E402

READ_VERBS = {"get", "list", "watch"}


class Config:
    bookmark_interval = 5.0
    watch_timeout = 1800.0


class Faults:
    """Injected failures: [{method, path (prefix), code, count, retryAfter, message}]."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def take(self, method, path):
        with self.lock:
            for r in self.rules:
                if r.get("method", method) == method and path.startswith(r.get("path", "")):
                    r["count"] = r.get("count", 1) - 1
                    if r["count"] <= 0:
                        self.rules.remove(r)
                    return r
        return None


def node_manifest():
    """The one node, labelled and described like a single-node cluster's (kind, minikube)."""
    uname = os.uname()
    return {"metadata": {"name": "hoist-emulator", "labels": {
        "kubernetes.io/hostname": "hoist-emulator", "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
        "status": {"capacity": {"cpu": "8", "memory": "16Gi", "pods": "250"},
                   "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "250"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status"}],
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                 {"type": "Hostname", "address": "hoist-emulator"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.0-hoist-emulator",
                                "kubeProxyVersion": "v1.32.0-hoist-emulator",
                                "osImage": "hoist emulator (Docker)", "kernelVersion": uname.release,
                                "operatingSystem": "linux", "architecture": "amd64",
                                "containerRuntimeVersion": "docker://emulated"}}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hoist-kube-emulator"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    # -- responses ---------------------------------------------------------------------
    def _headers(self, code, ctype, length=None, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (extra.items() if isinstance(extra, dict) else extra or ()):
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_json(self, code, body, extra=None):
        data = json.dumps(body, separators=(",", ":")).encode()
        self._headers(code, "application/json", len(data), extra)
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code, text, ctype="text/plain; charset=utf-8"):
        data = text.encode() if isinstance(text, str) else text
        self._headers(code, ctype, len(data))
        self.wfile.write(data)

    def send_error_status(self, err):
        extra = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
        self.send_json(err.code, err.status(), extra)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- auth --------------------------------------------------------------------------
    def user(self):
        authz = self.headers.get("Authorization", "")
        if authz.startswith("Bearer "):
            tok = authz[7:].strip()
            return self.server.tokens.get(tok)
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if cert:
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        return v
        return None

    # -- dispatch ----------------------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 16 * 1024 * 1024:
            raise ApiError(413, "RequestEntityTooLarge", f"the request body of {n} bytes is over 16 MiB")
        return self.rfile.read(n) if n else b""

    def dispatch(self):
        try:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            body = self.body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
            ctype = self.headers.get("Content-Type", "")
            if body and "protobuf" in ctype and self.command in ("POST", "PUT"):
                body = json.dumps(protobuf.decode(body)).encode()
            elif body and ("protobuf" in ctype or "cbor" in ctype):
                raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format '
                               f'- accepted media types include: application/json, application/yaml '
                               f'(got "{ctype}")')
            path = url.path.rstrip("/") or "/"
            probe = path.split("/")
            if len(probe) >= 2 and probe[1] in ("healthz", "readyz", "livez"):
                return self.health(probe[1], probe[2:], query)
            user = self.user()
            if user is None:
                return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Failure", "message": "Unauthorized",
                                            "reason": "Unauthorized", "code": 401})
            fault = self.server.faults.take(self.command, path)
            if fault:
                code = fault.get("code", 429)
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                          504: "Timeout", 403: "Forbidden", 409: "Conflict"}.get(code, "Unknown")
                msg = fault.get("message", "the server has received too many requests and has asked us "
                                           "to try again later" if code == 429 else f"injected {code}")
                ra = fault.get("retryAfter", 1 if code == 429 else None)
                det = {"retryAfterSeconds": ra} if ra is not None else None
                return self.send_error_status(ApiError(code, reason, msg, det, ra))
            if path.startswith("/_emulator"):
                return self.control(path, body)
            self.route(path, query, body, user)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - answered as a 500 Status, logged
            import traceback
            traceback.print_exc()
            try:
                self.send_error_status(ApiError(500, "InternalError", f"emulator error: {type(e).__name__}: {e}"))
            except OSError:
                self.close_connection = True

    # the checks of /healthz, /livez and /readyz, as the API server names its own
    HEALTH_CHECKS = {
        "healthz": ["ping", "log", "etcd", "poststarthook/start-kube-apiserver-informers",
                    "poststarthook/hoist-controllers"],
        "livez": ["ping", "log", "etcd", "poststarthook/start-kube-apiserver-informers",
                  "poststarthook/hoist-controllers"],
        "readyz": ["ping", "log", "etcd", "etcd-readiness", "informer-sync",
                   "poststarthook/start-kube-apiserver-informers", "poststarthook/hoist-controllers",
                   "shutdown"],
    }

    def health(self, endpoint, rest, query):
        """`/readyz` answers ok; `?verbose` lists each check; `/readyz/<check>` answers one."""
        checks = self.HEALTH_CHECKS[endpoint]
        if rest:
            name = "/".join(rest)
            if name not in checks:
                return self.send_text(404, "404 page not found\n")
            return self.send_text(200, "ok")
        excluded = set(parse_qs(urlsplit(self.path).query).get("exclude", []))
        if "verbose" not in query:
            return self.send_text(200, "ok")
        lines = [f"[+]{c} excluded: ok" if c in excluded else f"[+]{c} ok" for c in checks]
        return self.send_text(200, "\n".join(lines) + f"\n{endpoint} check passed\n")

    def control(self, path, body):
        srv = self.server
        if path == "/_emulator/drop-watches" and self.command == "POST":
            return self.send_json(200, {"dropped": srv.store.drop_watches()})
        if path == "/_emulator/compact" and self.command == "POST":
            return self.send_json(200, {"resourceVersion": str(srv.store.compact())})
        if path == "/_emulator/reset" and self.command == "POST":
            srv.reset()
            return self.send_json(200, {"reset": True})
        if path == "/_emulator/faults" and self.command == "POST":
            rules = json.loads(body or b"[]")
            rules = rules if isinstance(rules, list) else [rules]
            with srv.faults.lock:
                srv.faults.rules.extend(rules)
            return self.send_json(200, {"faults": len(srv.faults.rules)})
        if path == "/_emulator/config" and self.command == "POST":
            cfg = json.loads(body or b"{}")
            if "bookmarkIntervalSeconds" in cfg:
                srv.config.bookmark_interval = float(cfg["bookmarkIntervalSeconds"])
            if "historySize" in cfg:
                srv.store.history_size = max(1, int(cfg["historySize"]))
            return self.send_json(200, {"bookmarkIntervalSeconds": srv.config.bookmark_interval,
                                        "historySize": srv.store.history_size})
        if path == "/_emulator/state" and self.command == "GET":
            return self.send_json(200, {"resourceVersion": str(srv.store.current_rv()),
                                        "oldestResourceVersion": str(srv.store.oldest_rv),
                                        "watches": len(srv.store.watchers)})
        raise ApiError(404, "NotFound", f"no emulator control endpoint {self.command} {path}")

    def route(self, path, query, body, user):
        parts = path.strip("/").split("/")
        if path == "/version":
            return self.send_json(200, discovery.VERSION)
        if path == "/api":
            return self.send_json(200, discovery.api_versions())
        if path == "/apis":
            return self.send_json(200, discovery.api_groups())
        if parts[0] == "openapi":
            return self.openapi(parts)
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                g = discovery.api_group(parts[1])
                if g is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self.send_json(200, g)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            rl = discovery.resource_list(group, version)
            if rl is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.send_json(200, rl)
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = discovery.lookup(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and sub not in res.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.serve_resource(res, ns, name, sub, query, body, user)

    def authorize(self, user, verb, res, ns, name):
        if user in self.server.admins:
            return
        if user in self.server.viewers and verb in READ_VERBS:
            return
        what = f'{res.plural}{"." + res.group if res.group else ""}'
        obj = f' "{name}"' if name else ""
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        raise ApiError(403, "Forbidden",
                       f'{what}{obj} is forbidden: User "{user}" cannot {verb} resource "{res.plural}" '
                       f'in API group "{res.group}"{where}',
                       {"name": name or "", "group": res.group, "kind": res.plural})

    def serve_resource(self, res, ns, name, sub, query, body, user):
        api = self.server.api
        m = self.command
        manager = query.get("fieldManager") or default_manager(self.headers.get("User-Agent"))
        watch = query.get("watch") in ("1", "true")
        verb = {"GET": "watch" if watch else ("get" if name else "list"), "HEAD": "get",
                "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[m]
        if res in discovery.REVIEWS:                  # every authenticated user may ask about itself
            return self.review(user, body)
        self.authorize(user, verb, res, ns, name)
        if res is not versions.storage(res):
            return self.serve_converted(res, ns, name, sub, query, body, verb, manager)
        if query.get("dryRun") not in (None, "", "All"):
            raise bad_request(f'dryRun "{query["dryRun"]}" is not supported; the only value is "All"')
        if sub == "log":
            if m != "GET":
                raise ApiError(405, "MethodNotAllowed", "pods/log supports GET only")
            return self.serve_log(api.get(res, ns, name), query)
        if m in ("GET", "HEAD") and name and not watch:
            if sub == "scale":
                return self.send_json(200, api.scale(res, ns, name))
            return self.send_json(200, api.get(res, ns, name))
        if m == "GET" and watch:
            if name:
                query = dict(query, fieldSelector=f"metadata.name={name}")
            return self.serve_watch(res, ns, query)
        if m == "GET":
            lst, items = api.list(res, ns, query)
            if "as=Table" in self.headers.get("Accept", ""):
                return self.send_json(200, tables.table(res, items, lst["metadata"],
                                                        query.get("includeObject", "Metadata")))
            return self.send_json(200, lst)
        warnings = []           # fieldValidation=Warn: one `Warning: 299 - "..."` header each

        def headers():
            return [("Warning", '299 - ' + json.dumps(w)) for w in warnings]
        if m == "POST" and not name:
            obj = api.create(res, ns, self.parse(body), query, manager, warnings=warnings)
            return self.send_json(201 if query.get("dryRun") != "All" else 200, obj, headers())
        if m == "POST" and sub == "eviction":
            api.delete(res, ns, name, {}, {})
            return self.send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success", "code": 201})
        if m == "PUT" and name:
            obj = api.update(res, ns, name, self.parse(body), query, sub, manager, warnings=warnings)
            return self.send_json(200, obj, headers())
        if m == "PATCH" and name:
            ctype = self.headers.get("Content-Type", "")
            before = self.server.store.get(res.key, ns or "", name)
            obj = api.patch(res, ns, name, body, ctype, query, sub, manager, warnings=warnings)
            created = before is None and ctype.startswith("application/apply-patch")
            return self.send_json(201 if created and query.get("dryRun") != "All" else 200, obj, headers())
        if m == "DELETE" and name:
            opts = self.parse(body) if body.strip() else {}
            out = api.delete(res, ns, name, opts, query)
            code = 202 if out.get("metadata", {}).get("deletionTimestamp") and res.plural != "pods" else 200
            return self.send_json(code, out)
        if m == "DELETE":
            opts = self.parse(body) if body.strip() else {}
            return self.send_json(200, api.delete_collection(res, ns, query, opts))
        raise ApiError(405, "MethodNotAllowed", f"{m} is not supported on {self.path}")

    def review(self, user, body):
        """`kubectl auth can-i`: a SelfSubjectAccessReview answered for the caller, not stored."""
        if self.command != "POST":
            raise ApiError(405, "MethodNotAllowed", f"{self.command} is not supported on {self.path}")
        obj = self.parse(body)
        if not isinstance(obj, dict):
            raise bad_request("the body of a SelfSubjectAccessReview must be a JSON object")
        spec = obj.get("spec") or {}
        attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
        allowed = user in self.server.admins or (user in self.server.viewers and attrs.get("verb") in READ_VERBS)
        status = {"allowed": allowed}
        if allowed:
            status["reason"] = f'the emulator allows "{user}" to {attrs.get("verb")}' + (
                " (read-only user)" if user in self.server.viewers else "")
        obj.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        return self.send_json(201, dict(obj, status=status))

    def serve_converted(self, res, ns, name, sub, query, body, verb, manager):
        """A resource served in another version than it is stored in: create, get, list, delete."""
        api, stored = self.server.api, versions.storage(res)
        if sub or verb not in res.verbs:
            raise ApiError(405, "MethodNotAllowed", f"{self.command} {res.api_version} {res.plural} is not served "
                           f"by the emulator (only {', '.join(res.verbs)}): use {stored.api_version}")
        if verb == "create":
            obj = self.parse(body)
            if isinstance(obj, dict) and obj.get("apiVersion") not in (None, res.api_version):
                raise bad_request(f'the apiVersion "{obj.get("apiVersion")}" does not match {res.api_version}')
            out = api.create(stored, ns, versions.to_storage(res, obj), query, manager)
            return self.send_json(201 if query.get("dryRun") != "All" else 200, versions.from_storage(res, out))
        if verb == "get":
            return self.send_json(200, versions.from_storage(res, api.get(stored, ns, name)))
        if verb == "list":
            lst, _ = api.list(stored, ns, query)
            return self.send_json(200, versions.from_storage(res, lst))
        return self.send_json(200, api.delete(stored, ns, name, self.parse(body) if body.strip() else {}, query))

    def parse(self, body):
        try:
            return json.loads(body or b"null")
        except ValueError as e:
            raise bad_request(f"the request body is not valid JSON: {e}")

    # -- watch -------------------------------------------------------------------------
    def serve_watch(self, res, ns, query):
        store = self.server.store
        lsel = parse_label_selector(query.get("labelSelector", ""))
        fsel = parse_field_selector(query.get("fieldSelector", ""), res)

        def match(o):
            return labels_match(lsel, o["metadata"].get("labels")) and fields_match(fsel, o)

        as_table = "as=Table" in self.headers.get("Accept", "")

        def encode(etype, obj):
            if as_table and etype != "BOOKMARK":
                obj = tables.table(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                   query.get("includeObject", "Metadata"))
            return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"

        rv = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = float(query.get("timeoutSeconds") or self.server.config.watch_timeout)
        except ValueError:
            raise bad_request(f'timeoutSeconds "{query.get("timeoutSeconds")}" is not a number')
        since = None
        if rv not in ("", "0") and not initial:
            try:
                since = int(rv)
            except ValueError:
                raise bad_request(f'resourceVersion "{rv}" is not a valid resource version')
        with store.lock:
            try:
                w, backlog = store.watch(res.key, ns if res.namespaced else None, match, since)
            except LookupError:
                w = None
                current = store.current_rv()
            if w is not None and since is None:
                items, _ = store.list(res.key, ns if res.namespaced else None)
                backlog = [("ADDED", o) for o in items if match(o)]
                start_rv = store.current_rv()
        self._headers(200, "application/json")
        self.close_connection = True
        if w is None:
            st = ApiError(410, "Expired", f"too old resource version: {rv} ({store.oldest_rv})").status()
            self.chunk(json.dumps({"type": "ERROR", "object": st}, separators=(",", ":")).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        try:
            last_rv = since or 0
            for etype, obj in backlog:
                self.chunk(encode(etype, obj))
                last_rv = max(last_rv, int(obj["metadata"]["resourceVersion"]))
            if initial and bookmarks:
                last_rv = max(last_rv, start_rv)
                self.chunk(self.bookmark(res, last_rv, True))
            deadline = time.monotonic() + timeout
            last_bm = time.monotonic()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(left, self.server.config.bookmark_interval if bookmarks else left, 1.0)
                try:
                    ev = w.q.get(timeout=max(wait, 0.01))
                except Exception:  # queue.Empty
                    ev = False
                if ev is None:
                    break                          # dropped by the control endpoint or too slow
                if ev:
                    etype, obj = ev
                    self.chunk(encode(etype, obj))
                    last_rv = max(last_rv, int(obj["metadata"]["resourceVersion"]))
                    continue
                if bookmarks and time.monotonic() - last_bm >= self.server.config.bookmark_interval:
                    with store.lock:
                        if w.q.empty():
                            last_rv = max(last_rv, store.current_rv())
                    self.chunk(self.bookmark(res, last_rv, False))
                    last_bm = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
        finally:
            store.unwatch(w)

    @staticmethod
    def bookmark(res, rv, initial_end):
        md = {"resourceVersion": str(rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return json.dumps({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                          "metadata": md}}).encode() + b"\n"

    # -- logs --------------------------------------------------------------------------
    def serve_log(self, pod, query):
        kubelet = self.server.kubelet
        if kubelet is None:
            raise bad_request("the emulator runs without a kubelet: no logs")
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        cname = query.get("container")
        if not cname:
            if len(containers) != 1:
                raise bad_request(f'a container name must be specified for pod {pod["metadata"]["name"]}, '
                                  f'choose one of: [{" ".join(containers)}]')
            cname = containers[0]
        elif cname not in containers:
            raise bad_request(f'container {cname} is not valid for pod {pod["metadata"]["name"]}')
        tail = query.get("tailLines")
        previous = query.get("previous") in ("true", "1")
        if previous and not kubelet.has_previous(pod, cname):
            raise bad_request(f'previous terminated container "{cname}" in pod "{pod["metadata"]["name"]}" not found')
        data = kubelet.logs(pod, cname, int(tail) if tail else None, previous,
                            query.get("timestamps") in ("true", "1"))
        if data is None:
            raise bad_request(f'container "{cname}" in pod "{pod["metadata"]["name"]}" is waiting to start: '
                              f'{kubelet.waiting_reason(pod, cname) or "ContainerCreating"}')
        if query.get("follow") in ("true", "1"):
            self._headers(200, "text/plain")
            self.close_connection = True
            if data:
                self.chunk(data)
            for piece in kubelet.follow(pod, cname):
                self.chunk(piece)
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_text(200, data)

    def openapi(self, parts):
        if parts == ["openapi", "v3"]:
            return self.send_json(200, discovery.openapi_index())
        if len(parts) > 2 and parts[1] == "v3":
            doc = discovery.openapi_gv("/".join(parts[2:]))
            if doc is not None:
                return self.send_json(200, doc)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, ctx, verbose=False):
        super().__init__(addr, Handler)
        self.ctx = ctx
        self.verbose = verbose
        self.config = Config()
        self.faults = Faults()
        self.store = Store()
        self.api = Api(self.store)
        self.kubelet = None
        self.tokens = {}
        self.admins = {"hoist-admin"}
        self.viewers = {"hoist-viewer"}
        self.stop = threading.Event()
        self.seed()

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request_thread(self, request, client_address):
        try:
            request.settimeout(30)
            request.do_handshake()
            request.settimeout(None)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def seed(self):
        api = self.api
        ns_res = discovery.BY_KEY["/namespaces"]
        for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get(ns_res.key, "", n) is None:
                api.create(ns_res, None, {"metadata": {"name": n}}, internal=True)
        node_res = discovery.BY_KEY["/nodes"]
        if self.store.get(node_res.key, "", "hoist-emulator") is None:
            api.create(node_res, None, node_manifest(), internal=True)

    def reset(self):
        system = {"default", "kube-system", "kube-public", "kube-node-lease"}

        def keep(key, obj):
            if key == "/nodes":
                return True
            if key == "/namespaces":
                return obj["metadata"]["name"] in system
            return False
        self.store.reset(keep)
        self.store.drop_watches()
        if self.kubelet is not None:
            self.kubelet.reset()
        with self.faults.lock:
            self.faults.rules.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1:5020")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", required=True, help="CA that signs client certificates")
    ap.add_argument("--token-file", help="lines: TOKEN USER")
    ap.add_argument("--history", type=int, default=1000, help="watch events kept (older rv -> 410)")
    ap.add_argument("--bookmark-interval", type=float, default=5.0)
    ap.add_argument("--no-kubelet", action="store_true", help="do not run pods on Docker")
    ap.add_argument("--crash-backoff", type=float, default=10.0,
                    help="first CrashLoopBackOff/ImagePullBackOff delay in seconds, the kubelet's 10 (doubles, max 300)")
    ap.add_argument("--state", default=".", help="directory for the kubelet's files")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    host, port = args.listen.rsplit(":", 1)
    srv = Server((host, int(port)), ctx, args.verbose)
    srv.store.history_size = args.history
    srv.config.bookmark_interval = args.bookmark_interval
    if args.token_file:
        with open(args.token_file) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    tok, user = line.split()[:2]
                    srv.tokens[tok] = user
    threading.Thread(target=srv.api.gc_loop, args=(srv.stop,), daemon=True, name="gc").start()
    import controllers
    controllers.start(srv)
    if not args.no_kubelet:
        import kubelet
        import services
        srv.kubelet = kubelet.Kubelet(srv, args.state, args.crash_backoff)
        srv.kubelet.start()
        services.Proxies(srv).start()
    print(f"kube emulator listening on https://{args.listen}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop.set()
        if srv.kubelet is not None:
            srv.kubelet.shutdown()


if __name__ == "__main__":
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1)     # kill -USR1 <pid>: thread stacks to server.log
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    main()
