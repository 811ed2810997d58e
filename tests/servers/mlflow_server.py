#!/usr/bin/env python3
"""A stand-in MLflow tracking server (model registry and runs), python3 stdlib only.

It answers the REST endpoints hoist.mlflow uses as MLflow 2.x/3.x documents and serves
them (mlflow/protos/model_registry.proto, service.proto; the server's handlers and stores):

  GET  /api/2.0/mlflow/registered-models/get?name=
  GET  /api/2.0/mlflow/registered-models/alias?name=&alias=
  POST /api/2.0/mlflow/registered-models/get-latest-versions  {"name", "stages": [...]}
  GET  /api/2.0/mlflow/registered-models/get-latest-versions?name=&stages=
  GET  /api/2.0/mlflow/model-versions/get?name=&version=
  GET  /api/2.0/mlflow/model-versions/search?filter=&max_results=&order_by=&page_token=
  POST /api/2.0/mlflow/model-versions/set-tag                 {"name", "version", "key", "value"}
  GET  /api/2.0/mlflow/runs/get?run_id=
  GET  /health                                                "OK", never behind auth

Shapes, as MLflow writes them: field names in snake_case, int64 timestamps as JSON numbers,
versions as strings, enums by name, unset fields and empty lists left out, `{}` for an empty
response. Errors are MLflow's envelope `{"error_code": ..., "message": ...}` with its status
codes and its stores' messages: RESOURCE_DOES_NOT_EXIST 404 for a model, version or run;
INVALID_PARAMETER_VALUE 400 for a missing parameter, a bad version or stage, and for an
unknown alias (MLflow's SQL and file stores say "Registered model alias X not found." with
400, not 404). get-latest-versions does not filter on status (neither do MLflow's stores).

Auth, as MLflow's basic-auth app answers: with --user or --token given, a request without
valid credentials gets 401 "You are not authenticated. ..." (text/html, WWW-Authenticate:
Basic realm="mlflow"); a user without the permission 403 "Permission denied". READ may read,
EDIT and MANAGE may also set tags. --user NAME:PASSWORD:PERMISSION (Basic) and
--token TOKEN:PERMISSION (Bearer, as a proxy in front of MLflow or Databricks checks it).

Faults for tests, by path prefix: /_fault/malformed/... answers 200 with truncated JSON;
/_fault/html/... 200 with an HTML login page; /_fault/500/... MLflow's INTERNAL_ERROR 500;
/_fault/pages/... search pages of at most 2 versions (a server's own cap on max_results).

Listens on 127.0.0.1 (port 0 = any free one), writes the port to --port-file, exits when its
parent process goes away or after --max-time seconds.
"""
import argparse
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API = "/api/2.0/mlflow/"
STAGES = ["None", "Staging", "Production", "Archived"]
T0 = 1764000000000  # milliseconds, as MLflow stores timestamps


def mv(name, version, stage, status, run_id, source=None, tags=None, aliases=None, message=None,
       model_id=None):
    v = {"name": name, "version": str(version), "creation_timestamp": T0 + version * 1000,
         "last_updated_timestamp": T0 + version * 1000 + 500, "user_id": "ml@example.com",
         "current_stage": stage, "description": "", "status": status,
         "source": source or ("mlflow-artifacts:/1/%s/artifacts/model" % run_id if run_id
                              else "s3://models/%s/%d" % (name, version)),
         "run_id": run_id or "", "tags": tags or {}, "aliases": aliases or []}
    if message:
        v["status_message"] = message
    if model_id:
        v["model_id"] = model_id  # MLflow 3: the logged model the version was made from
    return v


def run(run_id, status, name, tags=None, params=None, metrics=None):
    info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": "1", "run_name": name,
            "user_id": "ml@example.com", "status": status, "start_time": T0 - 60000,
            "artifact_uri": "mlflow-artifacts:/1/%s/artifacts" % run_id, "lifecycle_stage": "active"}
    if status not in ("RUNNING", "SCHEDULED"):
        info["end_time"] = T0 - 1000
    return {"info": info, "tags": tags or {}, "params": params or {}, "metrics": metrics or {}}


def fixture():
    """Registered models, their versions (one in each status) and runs."""
    runs = {}
    for rid, status, name in [("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d1", "FINISHED", "train-1"),
                              ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d2", "FINISHED", "train-2"),
                              ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d3", "FINISHED", "train-3"),
                              ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "FAILED", "train-6"),
                              ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d7", "KILLED", "train-7"),
                              ("f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f1", "RUNNING", "fraud-train")]:
        runs[rid] = run(rid, status, name, tags={"mlflow.user": "ml@example.com", "git_sha": "abc1234"},
                        params={"lr": "0.01"}, metrics={"auc": 0.91})
    r = lambda n: "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d%d" % n
    churn = [
        mv("churn", 1, "Archived", "READY", r(1)),
        mv("churn", 2, "Production", "READY", r(2), tags={"team": "growth"}, aliases=["champion"]),
        mv("churn", 3, "Staging", "READY", r(3), aliases=["challenger"], model_id="m-0123456789abcdef"),
        mv("churn", 4, "None", "PENDING_REGISTRATION", r(3), aliases=["next"]),
        mv("churn", 5, "None", "FAILED_REGISTRATION", r(3), aliases=["broken"],
           message="Failed to copy model artifacts from mlflow-artifacts:/1/x: 403 Forbidden"),
        mv("churn", 6, "None", "READY", r(6), aliases=["failedrun"]),
        mv("churn", 7, "None", "READY", r(7), aliases=["killedrun"]),
        mv("churn", 8, "None", "READY", "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0", aliases=["orphan"]),
    ]
    fraud = [mv("fraud", 1, "Production", "READY", "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f1",
                tags={"hoist.image.tag": "fraud-2026.12"}, aliases=["prod"]),
             mv("fraud", 2, "None", "READY", "", tags={"hoist.image.tag": "bad tag!"}, aliases=["badtag"])]
    models = {
        "churn": {"name": "churn", "description": "Churn classifier", "tags": {"owner": "growth"},
                  "creation_timestamp": T0, "last_updated_timestamp": T0 + 9000,
                  "versions": {v["version"]: v for v in churn}},
        "fraud": {"name": "fraud", "description": "", "tags": {}, "creation_timestamp": T0,
                  "last_updated_timestamp": T0 + 2000, "versions": {v["version"]: v for v in fraud}},
        # registered in the background: PENDING_REGISTRATION until 1.5 s after its first read
        "warm": {"name": "warm", "description": "", "tags": {}, "creation_timestamp": T0, "last_updated_timestamp": T0,
                 "versions": {"1": mv("warm", 1, "None", "PENDING_REGISTRATION", r(3), aliases=["new"])}},
        "empty": {"name": "empty", "description": "", "tags": {}, "creation_timestamp": T0,
                  "last_updated_timestamp": T0, "versions": {}},
    }
    return models, runs


MODELS, RUNS = fixture()
LOCK = threading.Lock()
USERS = {}   # name -> (password, permission)
TOKENS = {}  # token -> permission


class Fail(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(message):
    return Fail(404, "RESOURCE_DOES_NOT_EXIST", message)


def invalid(message):
    return Fail(400, "INVALID_PARAMETER_VALUE", message)


def kv_list(m):
    return [{"key": k, "value": v} for k, v in sorted(m.items())]


WARMING = {}  # (name, version) -> when its registration ends


def version_json(v):
    """A ModelVersion as MLflow's message_to_json writes it: unset and empty fields left out."""
    if v["name"] == "warm" and v["status"] == "PENDING_REGISTRATION":
        ends = WARMING.setdefault((v["name"], v["version"]), time.time() + 1.5)
        if time.time() >= ends:
            v["status"] = "READY"
            v["last_updated_timestamp"] = int(ends * 1000)
    out = {}
    for k in ("name", "version", "creation_timestamp", "last_updated_timestamp", "user_id",
              "current_stage", "description", "source", "run_id", "status", "status_message",
              "run_link", "model_id"):
        if v.get(k) not in (None, ""):
            out[k] = v[k]
    if v["tags"]:
        out["tags"] = kv_list(v["tags"])
    if v["aliases"]:
        out["aliases"] = list(v["aliases"])
    return out


def required(args, name):
    value = args.get(name)
    if value in (None, ""):
        raise invalid("Missing value for required parameter '%s'. See the API docs for more "
                      "information about request parameters." % name)
    return value


def model(name):
    m = MODELS.get(name)
    if m is None:
        raise not_found("Registered Model with name=%s not found" % name)
    return m


def version(name, ver):
    m = model(name)
    try:
        int(str(ver))
    except ValueError:
        raise invalid("Parameter 'version' must be an integer, got '%s'." % ver)
    v = m["versions"].get(str(int(str(ver))))
    if v is None:
        raise not_found("Model Version (name=%s, version=%s) not found" % (name, ver))
    return v


def canonical_stage(stage):
    for s in STAGES:
        if s.lower() == str(stage).lower():
            return s
    raise invalid("Invalid Model Version stage: %s. Value must be one of %s." % (stage, ", ".join(STAGES)))


def latest_versions(name, stages):
    m = model(name)
    wanted = [canonical_stage(s) for s in stages] if stages else list(STAGES)
    best = {}
    for v in m["versions"].values():
        s = v["current_stage"]
        if s in wanted and (s not in best or int(best[s]["version"]) < int(v["version"])):
            best[s] = v
    return [best[s] for s in wanted if s in best]


def search(args, page_cap=None):
    flt = args.get("filter", "")
    name = None
    if flt:
        # the one filter form hoist sends: name='x' (MLflow accepts more)
        if not (flt.startswith("name='") and flt.endswith("'")):
            raise invalid("Invalid filter '%s'" % flt)
        name = flt[len("name='"):-1]
    try:
        max_results = int(args.get("max_results", "200000"))
    except ValueError:
        raise invalid("max_results must be an integer")
    if max_results < 1 or max_results > 200000:
        raise invalid("Invalid value for request parameter max_results. It must be at most 200000, "
                      "but got value %d" % max_results)
    found = []
    for m in MODELS.values():
        if name is None or m["name"] == name:
            found.extend(m["versions"].values())
    order = args.get("order_by") or []
    if order:  # the one order hoist may send: version_number [ASC|DESC]
        desc = order[0].lower().endswith(" desc")
        found.sort(key=lambda v: (v["name"], int(v["version"]) * (-1 if desc else 1)))
    else:  # MLflow's default: last updated first
        found.sort(key=lambda v: (-v["last_updated_timestamp"], v["name"]))
    if page_cap:
        max_results = min(max_results, page_cap)
    try:
        start = int(args.get("page_token") or "0")
    except ValueError:
        raise invalid("Invalid page token, could not base64-decode")
    page = found[start:start + max_results]
    out = {"model_versions": [version_json(v) for v in page]}
    if start + max_results < len(found):
        out["next_page_token"] = str(start + max_results)
    return out


def get_run(run_id):
    r = RUNS.get(run_id)
    if r is None:
        raise not_found("Run with id=%s not found" % run_id)
    data = {}
    if r["metrics"]:
        data["metrics"] = [{"key": k, "value": v, "timestamp": T0, "step": 0} for k, v in sorted(r["metrics"].items())]
    if r["params"]:
        data["params"] = kv_list(r["params"])
    if r["tags"]:
        data["tags"] = kv_list(r["tags"])
    return {"run": {"info": dict(r["info"]), "data": data, "inputs": {}}}


def registered_model_json(m):
    out = {"name": m["name"], "creation_timestamp": m["creation_timestamp"],
           "last_updated_timestamp": m["last_updated_timestamp"]}
    if m["description"]:
        out["description"] = m["description"]
    latest = [version_json(v) for v in latest_versions(m["name"], None) if v["status"] == "READY"]
    if latest:
        out["latest_versions"] = latest
    if m["tags"]:
        out["tags"] = kv_list(m["tags"])
    aliases = [{"alias": a, "version": v["version"]} for v in m["versions"].values() for a in v["aliases"]]
    if aliases:
        out["aliases"] = sorted(aliases, key=lambda a: a["alias"])
    return out


def handle(method, path, args, fault=None):
    """(status, json) for an API call; raises Fail for MLflow's error envelope."""
    ep = path[len(API):]
    if method == "GET" and ep == "registered-models/get":
        return {"registered_model": registered_model_json(model(required(args, "name")))}
    if method == "GET" and ep == "registered-models/alias":
        name, alias = required(args, "name"), required(args, "alias")
        m = model(name)
        for v in m["versions"].values():
            if alias in v["aliases"]:
                return {"model_version": version_json(v)}
        raise invalid("Registered model alias %s not found." % alias)
    if ep == "registered-models/get-latest-versions" and method in ("GET", "POST"):
        stages = args.get("stages") or []
        if isinstance(stages, str):
            stages = [stages]
        found = latest_versions(required(args, "name"), stages)
        return {"model_versions": [version_json(v) for v in found]} if found else {}
    if method == "GET" and ep == "model-versions/get":
        return {"model_version": version_json(version(required(args, "name"), required(args, "version")))}
    if method == "GET" and ep == "model-versions/search":
        out = search(args, 2 if fault == "pages" else None)
        return out if out["model_versions"] else {}
    if method == "POST" and ep == "model-versions/set-tag":
        name, ver = required(args, "name"), required(args, "version")
        key, value = required(args, "key"), args.get("value")
        if value is None:
            raise invalid("Missing value for required parameter 'value'. See the API docs for more "
                          "information about request parameters.")
        v = version(name, ver)
        v["tags"][key] = str(value)  # MLflow's stores leave last_updated_timestamp as it is
        return {}
    if method == "GET" and ep == "runs/get":
        return get_run(args.get("run_id") or required(args, "run_uuid"))
    return None


def permission_needed(method, path):
    return "EDIT" if path.endswith("/set-tag") else "READ"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, content_type="application/json", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def permission(self):
        """The caller's permission, or None for no valid credentials."""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return None
            known = USERS.get(user)
            return known[1] if known and known[0] == password else None
        if auth.startswith("Bearer "):
            return TOKENS.get(auth[7:])
        return None

    def handle_any(self):
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path == "/health":
            return self.answer(200, "OK", "text/plain; charset=utf-8")
        if USERS or TOKENS:
            perm = self.permission()
            if perm is None:
                return self.answer(401, "You are not authenticated. Please see "
                                   "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
                                   "on how to authenticate.", "text/html; charset=utf-8",
                                   {"WWW-Authenticate": 'Basic realm="mlflow"'})
            if permission_needed(self.command, path) == "EDIT" and perm == "READ":
                return self.answer(403, "Permission denied", "text/html; charset=utf-8")
        fault = None
        if path.startswith("/_fault/"):
            fault, _, rest = path[len("/_fault/"):].partition("/")
            path = "/" + rest
        if not path.startswith(API):
            return self.answer(404, "<!doctype html><title>404 Not Found</title><h1>Not Found</h1>",
                               "text/html; charset=utf-8")
        if fault == "html":
            return self.answer(200, "<html><body><form action=/login>Sign in</form></body></html>",
                               "text/html; charset=utf-8")
        if fault == "500":
            return self.answer(500, json.dumps({"error_code": "INTERNAL_ERROR",
                                                "message": "(sqlite3.OperationalError) database is locked"}))
        if self.command in ("POST", "PATCH"):
            try:
                args = json.loads(raw or b"{}")
            except ValueError:
                return self.answer(400, json.dumps({"error_code": "MALFORMED_REQUEST",
                                                    "message": "Malformed request body"}))
            if not isinstance(args, dict):
                args = {}
        else:
            q = parse_qs(url.query)
            args = {k: (v if k in ("stages", "order_by") else v[-1]) for k, v in q.items()}
        try:
            with LOCK:
                out = handle(self.command, path, args, fault)
        except Fail as f:
            return self.answer(f.status, json.dumps({"error_code": f.code, "message": f.message}))
        if out is None:
            return self.answer(404, "<!doctype html><title>404 Not Found</title><h1>Not Found</h1>",
                               "text/html; charset=utf-8")
        body = json.dumps(out)
        if fault == "malformed":
            body = body[: max(1, len(body) // 2)]
        return self.answer(200, body)

    do_GET = do_POST = do_PATCH = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--max-time", type=float, default=300)
    ap.add_argument("--user", action="append", default=[], help="NAME:PASSWORD:READ|EDIT|MANAGE")
    ap.add_argument("--token", action="append", default=[], help="TOKEN:READ|EDIT|MANAGE")
    args = ap.parse_args()
    for u in args.user:
        name, password, perm = u.split(":", 2)
        USERS[name] = (password, perm)
    for t in args.token:
        token, perm = t.rsplit(":", 1)
        TOKENS[token] = perm
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.port_file)
    print(port, flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    parent, started = os.getppid(), time.time()
    while os.getppid() == parent and time.time() - started < args.max_time:
        time.sleep(0.3)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
