#!/usr/bin/env python3
"""A small fake Kubernetes API server for hoist's client tests (python3 standard library).

Not the emulator (tests/emulators/kube): no controllers, no kubelet, plain HTTP. It answers
what the client's own logic depends on, and lets a test break things on purpose:

  discovery   /api, /api/v1, /apis, /apis/apps/v1, /apis/stable.example.com/v1 (a CRD)
  objects     list (limit + continue), get, create (409 AlreadyExists, 422 Invalid with causes
              for an upper-case name), patch (apply-patch+yaml, merge-patch+json,
              strategic-merge-patch+json as a merge, json-patch+json add/replace), delete;
              dryRun=All validates and stores nothing; an applied field named notInSchema
              gets the 500 API servers answer for a field the schema lacks
  watch       ?watch=1&resourceVersion=N: history after N, then live events, BOOKMARKs when
              allowWatchBookmarks, ends after timeoutSeconds; an ERROR event with a 410
              Status when N is older than the compacted history
  auth        every request needs "Authorization: Bearer <--token>" (401 Status otherwise)
  control     POST /_fake/drop (open watch streams break off mid-chunk), /_fake/compact
              (history forgotten: every version seen so far gets 410), /_fake/throttle?n=N (next N requests
              get 429 with Retry-After: 1), /_fake/reset; GET /_fake/requests (what was asked)

Prints its port on the first stdout line; --port-file writes it there too. Stops after
--lifetime seconds.
"""
import argparse
import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Condition()
STATE = {}


def reset():
    STATE.update(objects={}, rv=100, history=[], compacted=0, drops=0, throttle=0, requests=[])


reset()

CORE = [
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["ns"]},
    {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["cm"]},
    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list", "create", "delete", "patch", "watch"]},
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["po"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["ev"]},
]
APPS = [
    {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["deploy"]},
    {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment", "verbs": ["get", "patch"]},
    {"name": "replicasets", "singularName": "replicaset", "namespaced": True, "kind": "ReplicaSet", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["rs"]},
]
CRD = [{"name": "crontabs", "singularName": "crontab", "namespaced": True, "kind": "CronTab", "verbs": ["get", "list", "create", "delete", "patch", "watch"], "shortNames": ["ct"]}]
GROUPS = {"v1": CORE, "apps/v1": APPS, "stable.example.com/v1": CRD}


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return code, body


def undeclared(obj, path=""):
    """The path of a field named notInSchema (the fake's stand-in for a field the kind's schema lacks), or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "notInSchema":
                return path + "." + k
            found = undeclared(v, path + "." + k)
            if found:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = undeclared(v, path + "[]")
            if found:
                return found
    return None


def merge(dst, src):
    """RFC 7386 merge patch (iterative: no recursion on the input's depth)."""
    stack = [(dst, src)]
    while stack:
        d, s = stack.pop()
        for k, v in s.items():
            if v is None:
                d.pop(k, None)
            elif isinstance(v, dict) and isinstance(d.get(k), dict):
                stack.append((d[k], v))
            else:
                d[k] = copy.deepcopy(v)
    return dst


def selected(obj, q):
    """labelSelector k=v[,k=v] and fieldSelector metadata.name=x."""
    meta = obj.get("metadata", {})
    for term in filter(None, (q.get("labelSelector") or "").split(",")):
        k, v = term.split("=", 1)
        if meta.get("labels", {}).get(k) != v:
            return False
    for term in filter(None, (q.get("fieldSelector") or "").split(",")):
        k, v = term.split("=", 1)
        if k == "metadata.name" and meta.get("name") != v:
            return False
    return True


def json_patch(obj, ops):
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = obj
        for p in parts[:-1]:
            target = target[int(p)] if isinstance(target, list) else target.setdefault(p, {})
        if op["op"] in ("add", "replace"):
            target[parts[-1]] = op["value"]
        elif op["op"] == "remove":
            target.pop(parts[-1], None)
    return obj


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", "audit-%d" % len(STATE["requests"]))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        with LOCK:
            if not url.path.startswith("/_fake/"):
                STATE["requests"].append({"method": self.command, "path": url.path, "query": q, "body": body,
                                          "content_type": self.headers.get("Content-Type", ""),
                                          "authorization": bool(self.headers.get("Authorization"))})
        if url.path.startswith("/_fake/"):
            return self.control(url.path, q)
        if self.headers.get("Authorization") != "Bearer " + ARGS.token:
            return self.send_json(*status(401, "Unauthorized", "Unauthorized"))
        with LOCK:
            if STATE["throttle"] > 0:
                STATE["throttle"] -= 1
                return self.send_json(*status(429, "TooManyRequests", "Too many requests, please try again later."), headers=[("Retry-After", "1")])
        if url.path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
        if url.path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": "v1"}], "preferredVersion": {"groupVersion": g, "version": "v1"}}
                for g in GROUPS if "/" in g]})
        parts = url.path.strip("/").split("/")
        gv = "v1" if parts[0] == "api" else "/".join(parts[1:3])
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if gv not in GROUPS:
            return self.send_json(*status(404, "NotFound", "the server could not find the requested resource"))
        if not rest:
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": GROUPS[gv]})
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = next((r for r in GROUPS[gv] if r["name"] == rest[0]), None)
        if res is None:
            return self.send_json(*status(404, "NotFound", "the server could not find the requested resource"))
        name = rest[1] if len(rest) > 1 else None
        key = (gv, rest[0])
        if name is None and self.command == "GET":
            return self.watch(key, ns, q, res) if q.get("watch") in ("1", "true") else self.list(key, ns, q, gv, res)
        if name is None and self.command == "POST":
            return self.write(key, ns, json.loads(body), q, res, gv, create=True)
        with LOCK:
            obj = STATE["objects"].get(key, {}).get((ns, name))
        if self.command == "GET" and len(rest) == 3 and rest[2] == "log":
            if obj is None:
                return self.send_json(*status(404, "NotFound", 'pods "%s" not found' % name, {"name": name, "kind": "pods"}))
            lines = obj.get("metadata", {}).get("annotations", {}).get("fake/log", "").splitlines()
            if q.get("tailLines"):
                lines = lines[-int(q["tailLines"]):]
            data = ("\n".join(lines) + ("\n" if lines else "")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.command == "GET":
            if obj is None:
                return self.send_json(*status(404, "NotFound", '%s "%s" not found' % (rest[0], name), {"name": name, "kind": rest[0]}))
            return self.send_json(200, obj)
        if self.command == "DELETE":
            if obj is None:
                return self.send_json(*status(404, "NotFound", '%s "%s" not found' % (rest[0], name), {"name": name, "kind": rest[0]}))
            if q.get("dryRun") != "All":
                self.record(key, ns, name, None, "DELETED", obj)
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": rest[0]}})
        if self.command == "PATCH":
            ctype = self.headers.get("Content-Type", "")
            patch = json.loads(body)
            if ctype.startswith("application/apply-patch"):
                if "fieldManager" not in q:
                    return self.send_json(*status(400, "BadRequest", "fieldManager is required for apply requests"))
                if obj is not None and obj.get("metadata", {}).get("annotations", {}).get("owner") == "other" and q.get("force") != "true":
                    return self.send_json(*status(409, "Conflict", 'Apply failed with 1 conflict: conflict with "other": .spec.replicas',
                                                  {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "other"', "field": ".spec.replicas"}]}))
                bad = undeclared(patch)
                if bad:
                    # what API servers answer to a field the schema lacks: 500, no reason
                    # (kubernetes/kubernetes#122480), the same each time it is sent
                    return self.send_json(500, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                                "message": "failed to create typed patch object (%s/%s; %s, Kind=%s): %s: field not declared in schema"
                                                % (ns or "", name, gv, patch.get("kind", ""), bad), "code": 500})
                new = merge(copy.deepcopy(obj) if obj else {}, patch)
                return self.write(key, ns, new, q, res, gv, create=obj is None)
            if obj is None:
                return self.send_json(*status(404, "NotFound", '%s "%s" not found' % (rest[0], name), {"name": name, "kind": rest[0]}))
            new = json_patch(copy.deepcopy(obj), patch) if ctype.startswith("application/json-patch") else merge(copy.deepcopy(obj), patch)
            return self.write(key, ns, new, q, res, gv, create=False)
        return self.send_json(*status(405, "MethodNotAllowed", "method not allowed"))

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = handle_any

    def control(self, path, q):
        with LOCK:
            if path == "/_fake/drop":
                STATE["drops"] += 1
                LOCK.notify_all()
            elif path == "/_fake/compact":
                # every version seen so far is now too old (as if other objects had changed)
                STATE["rv"] += 1
                STATE["compacted"] = STATE["rv"]
                STATE["history"] = []
            elif path == "/_fake/throttle":
                STATE["throttle"] = int(q.get("n", "1"))
            elif path == "/_fake/reset":
                reset()
            elif path == "/_fake/requests":
                return self.send_json(200, STATE["requests"])
        return self.send_json(200, {"ok": True})

    def record(self, key, ns, name, obj, kind, old=None):
        """Stores (or deletes) and appends a watch event; the caller does not hold LOCK."""
        with LOCK:
            STATE["rv"] += 1
            coll = STATE["objects"].setdefault(key, {})
            if obj is None:
                coll.pop((ns, name), None)
                obj = copy.deepcopy(old)
            else:
                coll[(ns, name)] = obj
            obj["metadata"]["resourceVersion"] = str(STATE["rv"])
            STATE["history"].append((STATE["rv"], key, ns, kind, copy.deepcopy(obj)))
            LOCK.notify_all()
            return obj

    def write(self, key, ns, obj, q, res, gv, create):
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["name"] = meta["generateName"] + "x%d" % STATE["rv"]
        if name != name.lower():
            return self.send_json(*status(422, "Invalid", '%s "%s" is invalid: metadata.name: Invalid value: "%s": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters' % (res["kind"], name, name),
                                          {"name": name, "kind": res["kind"], "causes": [{"reason": "FieldValueInvalid", "message": 'Invalid value: "%s"' % name, "field": "metadata.name"}]}))
        with LOCK:
            stored = STATE["objects"].get(key, {}).get((ns, name))
        exists = stored is not None
        if create and exists:
            return self.send_json(*status(409, "AlreadyExists", '%s "%s" already exists' % (res["name"], name), {"name": name, "kind": res["name"]}))
        obj["apiVersion"], obj["kind"] = gv, res["kind"]
        if ns is not None:
            meta["namespace"] = ns
        meta.setdefault("uid", "uid-%s-%s" % (res["name"], name))
        # generation counts spec changes only (a status patch leaves it)
        if stored is None:
            meta["generation"] = 1
        else:
            gen = stored["metadata"].get("generation", 1)
            meta["generation"] = gen + 1 if stored.get("spec") != obj.get("spec") else gen
        if q.get("dryRun") == "All":
            return self.send_json(201 if create else 200, obj)
        obj = self.record(key, ns, name, obj, "ADDED" if not exists else "MODIFIED")
        return self.send_json(201 if create else 200, obj)

    def list(self, key, ns, q, gv, res):
        with LOCK:
            items = [copy.deepcopy(o) for (n, _), o in sorted(STATE["objects"].get(key, {}).items()) if ns is None or n == ns]
            rv = STATE["rv"]
        items = [o for o in items if selected(o, q)]
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": str(rv)}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
        for o in page:
            o.pop("apiVersion", None)
            o.pop("kind", None)
        return self.send_json(200, {"kind": res["kind"] + "List", "apiVersion": gv, "metadata": meta, "items": page})

    def chunk(self, event):
        data = (json.dumps(event) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, key, ns, q, res):
        since = int(q.get("resourceVersion") or 0)
        deadline = time.time() + float(q.get("timeoutSeconds") or 60)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with LOCK:
            drops = STATE["drops"]
            if since < STATE["compacted"]:
                self.chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                                        "message": "too old resource version: %d (%d)" % (since, STATE["compacted"]),
                                                        "reason": "Expired", "code": 410}})
                self.wfile.write(b"0\r\n\r\n")
                return
        sent = since
        last_bookmark = time.time()
        while time.time() < deadline:
            with LOCK:
                if STATE["drops"] != drops:
                    # break off mid-chunk: the client sees a transfer error, not a clean end
                    self.wfile.write(b"40\r\n{\"type\":")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                events = [e for e in STATE["history"] if e[0] > sent and e[1] == key and (ns is None or e[2] == ns) and selected(e[4], q)]
                if not events:
                    LOCK.wait(0.1)
                    continue_rv = STATE["rv"]
            for rv, _, _, kind, obj in events:
                self.chunk({"type": kind, "object": obj})
                sent = rv
            if not events and bookmarks and time.time() - last_bookmark > 0.5:
                sent = max(sent, continue_rv)
                self.chunk({"type": "BOOKMARK", "object": {"kind": res["kind"], "apiVersion": "v1", "metadata": {"resourceVersion": str(sent)}}})
                last_bookmark = time.time()
        self.wfile.write(b"0\r\n\r\n")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--token", default="fake-apiserver-token")
    p.add_argument("--lifetime", type=float, default=600)
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    print(port, flush=True)
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    threading.Timer(ARGS.lifetime, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
