#!/usr/bin/env python3
"""The Kubernetes emulator against real kubectl and the recorded shapes in ../shared/fixtures/k8s.

Needs the test environment (tests/env/up.sh; run through test_kubectl.sh, which sources env.sh
and takes the docker lock). Works in its own namespace, deleted at the end.
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 when anything failed.
"""

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIX = os.path.join(os.environ.get("HOIST_FIXTURES") or os.path.join(REPO, "..", "shared", "fixtures"), "k8s")
IMAGE = os.environ.get("HOIST_TEST_KUBE_IMAGE", f'{os.environ.get("HOIST_TEST_REGISTRY", "127.0.0.1:5000")}/hoist-test/busybox:latest')
NS = "kt-" + uuid.uuid4().hex[:8]
SERVER = os.environ["HOIST_TEST_KUBE_SERVER"]
TOKEN = os.environ["HOIST_TEST_KUBE_TOKEN"]
VIEWER = os.environ["HOIST_TEST_KUBE_VIEWER_TOKEN"]
CONTROL = os.environ["HOIST_TEST_KUBE_CONTROL"]
CTX = ssl.create_default_context(cafile=os.environ["HOIST_TEST_CA"])
HOST, PORT = urllib.parse.urlsplit(SERVER).hostname, urllib.parse.urlsplit(SERVER).port

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"PASS  {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL  {name}", flush=True)
        if detail:
            print("      " + str(detail)[:1500].replace("\n", "\n      "), flush=True)


def kubectl(*args, ok=True, timeout=120, stdin=None):
    p = subprocess.run(["kubectl", "-n", NS, *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if ok and p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def req(method, path, body=None, token=TOKEN, ctype="application/json", headers=None, raw=False):
    conn = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=60)
    h = {"Accept": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h["Content-Type"] = ctype
    conn.request(method, path, data, h)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    if raw:
        return r, out
    try:
        return r.status, json.loads(out or b"null"), r
    except ValueError:
        return r.status, out.decode(errors="replace"), r


def watch_lines(path, max_events=50):
    """Reads a whole (finite) watch stream; returns (response, [event dicts], raw chunk count)."""
    conn = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    r = conn.getresponse()
    events = []
    for line in r:
        if line.strip():
            events.append(json.loads(line))
        if len(events) >= max_events:
            break
    conn.close()
    return r, events


def wait_until(fn, secs=90, step=0.5):
    end = time.monotonic() + secs
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(step)
    return last


def fixture(*parts):
    p = os.path.join(FIX, *parts)
    with open(p) as f:
        return json.load(f)


def shape(v, depth=0):
    """The key structure of a JSON value (types, not values)."""
    if isinstance(v, dict):
        return {k: shape(x, depth + 1) for k, x in v.items()} if depth < 6 else "object"
    if isinstance(v, list):
        return [shape(v[0], depth + 1)] if v else []
    return type(v).__name__


# ------------------------------------------------------------------------------------------

def test_conformance():
    if not os.path.isdir(FIX):
        # CI has the fixtures: absent there is a failure; elsewhere the ctest shared-fixtures
        # (tests/shared_fixtures.sh) shows the skip in the ctest summary
        if os.environ.get("CI") == "true":
            check("conformance: ../shared/fixtures present (CI=true: not skipping)", False, FIX)
        else:
            print("SKIP  conformance: skipped: ../shared/fixtures absent", flush=True)
        return
    _, api, _ = req("GET", "/api")
    rec = fixture("discovery", "api.json")
    check("discovery /api has the recorded keys", set(api) == set(rec) and api["versions"] == ["v1"], api)
    _, apis, _ = req("GET", "/apis")
    rec = fixture("discovery", "apis.json")
    check("discovery /apis has the recorded shape", set(apis) == set(rec) and
          all(set(g) == set(rec["groups"][0]) for g in apis["groups"]), apis)
    names = {g["name"] for g in apis["groups"]}
    check("discovery /apis lists apps, autoscaling, batch, policy, coordination.k8s.io",
          {"apps", "autoscaling", "batch", "policy", "coordination.k8s.io"} <= names, names)
    _, grp, _ = req("GET", "/apis/apps")
    check("discovery /apis/apps equals the recorded APIGroup", grp == fixture("discovery", "apis__apps.json"), grp)
    _, rl, _ = req("GET", "/apis/apps/v1")
    rec = fixture("discovery", "apis__apps__v1.json")
    recd = {r["name"]: r for r in rec["resources"]}
    ours = {r["name"]: r for r in rl["resources"]}
    bad = []
    for n in ("deployments", "deployments/status", "deployments/scale", "replicasets", "replicasets/scale",
              "statefulsets", "statefulsets/status", "statefulsets/scale", "daemonsets", "daemonsets/status",
              "controllerrevisions"):
        a, b = ours.get(n), recd[n]
        if a is None or a["kind"] != b["kind"] or a["namespaced"] != b["namespaced"] or \
                a.get("shortNames") != b.get("shortNames") or not set(b["verbs"]) <= set(a["verbs"]) | {"deletecollection"}:
            bad.append((n, a, b))
    check("discovery /apis/apps/v1 resources match the recorded ones", not bad and set(rl) >= set(rec) - {"resources"}, bad)

    # Status bodies: the recorded invalid Service, posted as recorded, answers the recorded Status
    body = fixture("kubectl", "edit-create-list-error-3.request.json")
    body["metadata"]["namespace"] = NS
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/services", body)
    check("Invalid Service answers the recorded 422 Status", code == 422 and
          st == fixture("kubectl", "edit-create-list-error-3.response.json"), st)
    code, st, _ = req("GET", f"/api/v1/namespaces/{NS}/services/missing")
    check("NotFound answers the recorded 404 Status", code == 404 and
          st == fixture("kubectl", "edit-missing-service-0.response.json"), st)
    # list and object shapes like client-go's recorded golden responses
    raw = open(os.path.join(FIX, "kubectl", "client-go-golden-response-list.http")).read()
    golden = json.loads(raw[raw.index("{"):])
    req("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "foobar"}})
    _, lst, _ = req("GET", f"/api/v1/namespaces/{NS}/serviceaccounts?fieldSelector=metadata.name%3Dfoobar")
    check("a list has the recorded shape (kind, apiVersion, metadata.resourceVersion, items)",
          lst.get("kind") == golden["kind"] and lst["apiVersion"] == "v1" and
          set(golden["items"][0]["metadata"]) <= set(lst["items"][0]["metadata"]) and
          "resourceVersion" in lst["metadata"], lst)
    # a watch stream like the recorded one: chunked JSON lines, ADDED then the initial-events-end BOOKMARK
    raw = open(os.path.join(FIX, "kubectl", "client-go-golden-response-watch-events.http")).read()
    rec_events = [json.loads(line) for line in raw.splitlines() if line.startswith("{")]
    r, evs = watch_lines(f"/api/v1/namespaces/{NS}/serviceaccounts?watch=true&sendInitialEvents=true"
                         f"&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
                         f"&fieldSelector=metadata.name%3Dfoobar")
    check("watch: chunked application/json stream", r.getheader("Transfer-Encoding") == "chunked" and
          r.getheader("Content-Type") == "application/json", r.getheaders())
    check("watch: events shaped like the recorded stream (ADDED, then BOOKMARK initial-events-end)",
          [e["type"] for e in evs[:2]] == [e["type"] for e in rec_events] and
          set(evs[0]["object"]["metadata"]) >= set(rec_events[0]["object"]["metadata"]) and
          evs[1]["object"]["metadata"].get("annotations") == rec_events[1]["object"]["metadata"]["annotations"] and
          set(evs[1]["object"]) == set(rec_events[1]["object"]), evs)


def test_auth_and_errors():
    code, st, _ = req("GET", "/api/v1/namespaces", token=None)
    check("no credentials: 401 Unauthorized Status", code == 401 and st.get("reason") == "Unauthorized", st)
    code, st, _ = req("GET", "/api/v1/namespaces", token="not-a-token")
    check("a wrong token: 401", code == 401, st)
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "v"}}, token=VIEWER)
    check("viewer writes: 403 Forbidden naming user, verb and resource", code == 403 and
          st["reason"] == "Forbidden" and '"hoist-viewer" cannot create resource "configmaps"' in st["message"], st)
    p = kubectl("--context", "hoist-emulator-token", "get", "configmaps", ok=False)
    check("kubectl with the token context works", p.returncode == 0, p.stderr)
    p = kubectl("auth", "whoami", ok=False)  # not served: must fail cleanly, not hang
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "cm1"}, "data": {"a": "1"}})
    check("create: 201", code == 201 and st["metadata"]["resourceVersion"], st)
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "cm1"}})
    check("create again: 409 AlreadyExists", code == 409 and st["reason"] == "AlreadyExists" and
          st["message"] == 'configmaps "cm1" already exists', st)
    code, st, _ = req("PUT", f"/api/v1/namespaces/{NS}/configmaps/cm1",
                      {"metadata": {"name": "cm1", "resourceVersion": "1"}, "data": {"a": "2"}})
    check("update with a stale resourceVersion: 409 Conflict", code == 409 and st["reason"] == "Conflict" and
          "the object has been modified" in st["message"], st)
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/configmaps?dryRun=All", {"metadata": {"generateName": "d-"}})
    code2, _, _ = req("GET", f"/api/v1/namespaces/{NS}/configmaps/{st['metadata']['name']}")
    check("dryRun=All create answers the object and stores nothing", code == 200 and code2 == 404, (code, code2))
    code, st, _ = req("POST", f"/api/v1/namespaces/{NS}/pods", {"metadata": {"name": "p"},
                                                                  "spec": {"containers": [{"name": "c"}]}})
    check("Invalid pod: 422 with the field cause", code == 422 and
          st["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                       "field": "spec.containers[0].image"}], st)
    req("POST", f"{CONTROL}/faults".replace(SERVER, ""), {"method": "GET", "path": f"/api/v1/namespaces/{NS}/secrets",
                                                         "code": 429, "count": 1, "retryAfter": 2})
    code, st, r = req("GET", f"/api/v1/namespaces/{NS}/secrets")
    check("injected 429: TooManyRequests Status with Retry-After", code == 429 and r.getheader("Retry-After") == "2"
          and st["reason"] == "TooManyRequests" and st["details"]["retryAfterSeconds"] == 2, (st, r.getheaders()))
    code, _, _ = req("GET", f"/api/v1/namespaces/{NS}/secrets")
    check("the fault is used up after count requests", code == 200, code)
    for i in range(5):
        req("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"page-{i}"}})
    _, p1, _ = req("GET", f"/api/v1/namespaces/{NS}/configmaps?limit=2&labelSelector=")
    _, p2, _ = req("GET", f"/api/v1/namespaces/{NS}/configmaps?limit=10&continue={p1['metadata']['continue']}")
    names = [o["metadata"]["name"] for o in p1["items"] + p2["items"]]
    check("list with limit and continue pages through everything once", len(names) == len(set(names)) == 6 and
          "continue" not in p2["metadata"], names)


def test_watch_semantics():
    _, lst, _ = req("GET", f"/api/v1/namespaces/{NS}/configmaps")
    rv = lst["metadata"]["resourceVersion"]
    req("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "w1", "labels": {"w": "y"}}})
    req("PATCH", f"/api/v1/namespaces/{NS}/configmaps/w1", {"data": {"k": "v"}}, ctype="application/merge-patch+json")
    req("DELETE", f"/api/v1/namespaces/{NS}/configmaps/w1")
    _, evs = watch_lines(f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
                         f"&labelSelector=w%3Dy")
    check("watch from a resourceVersion replays ADDED, MODIFIED, DELETED in order",
          [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"], evs)
    _, evs = watch_lines(f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
                         f"&fieldSelector=metadata.name%3Dcm1")
    check("watch on one object by fieldSelector sees only it", all(e["object"]["metadata"]["name"] == "cm1"
                                                                   for e in evs), evs)
    req("POST", "/_emulator/config", {"bookmarkIntervalSeconds": 0.2})
    _, evs = watch_lines(f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
                         f"&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dnone")
    req("POST", "/_emulator/config", {"bookmarkIntervalSeconds": 5})
    check("allowWatchBookmarks: BOOKMARK events carry a resourceVersion",
          any(e["type"] == "BOOKMARK" and int(e["object"]["metadata"]["resourceVersion"]) >= int(rv) for e in evs), evs)
    req("POST", "/_emulator/compact")
    _, evs = watch_lines(f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    check("after compaction a watch from an old resourceVersion gets ERROR 410 Expired",
          len(evs) == 1 and evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410 and
          evs[0]["object"]["reason"] == "Expired", evs)
    import threading
    got = {}

    def long_watch():
        got["r"], got["evs"] = watch_lines(f"/api/v1/namespaces/{NS}/configmaps?watch=1&timeoutSeconds=60")
    t = threading.Thread(target=long_watch)
    t.start()
    time.sleep(1)
    _, d, _ = req("POST", "/_emulator/drop-watches")
    t.join(30)
    check("drop-watches ends open watch streams", not t.is_alive() and d["dropped"] >= 1, d)


def test_ssa():
    dep = deployment("ssa", replicas=1, image="127.0.0.1:5000/hoist-test/none:never", pods=False)
    p = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(dep))
    check("kubectl apply --server-side creates", "serverside-applied" in p.stdout, p.stdout)
    kubectl("scale", "deploy/ssa", "--replicas=0")
    dep["spec"]["replicas"] = 2
    p = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(dep), ok=False)
    check("apply after kubectl scale: conflict naming .spec.replicas and the manager",
          p.returncode != 0 and "conflict" in p.stderr and ".spec.replicas" in p.stderr and
          'subresource "scale"' in p.stderr, p.stderr)
    p = kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(dep))
    obj = json.loads(kubectl("get", "deploy/ssa", "-o", "json", "--show-managed-fields").stdout)
    mf = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    check("--force-conflicts takes the field; managedFields list the managers",
          obj["spec"]["replicas"] == 2 and ("kubectl", "Apply") in mf, (obj["spec"]["replicas"], mf))
    del dep["metadata"]["labels"]
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(dep))
    obj = json.loads(kubectl("get", "deploy/ssa", "-o", "json").stdout)
    check("a field dropped from the applied config is removed", "labels" not in obj["metadata"], obj["metadata"])
    code, st, _ = req("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/ssa?fieldManager=other",
                      {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                       "spec": {"replicas": 3}}, ctype="application/apply-patch+yaml")
    check("raw apply conflict: 409 with FieldManagerConflict causes", code == 409 and st["reason"] == "Conflict" and
          st["details"]["causes"][0]["field"] == ".spec.replicas" and
          st["details"]["causes"][0]["reason"] == "FieldManagerConflict", st)
    kubectl("delete", "deploy/ssa")


def test_field_validation():
    typo = deployment("typo", replicas=1, probe=False, pods=False)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 8080}}
    field = "spec.template.spec.containers[0].readinesProbe"
    for how in (("apply",), ("create",)):
        p = kubectl(*how, "-f", "-", stdin=json.dumps(typo), ok=False)
        check(f"kubectl {how[0]} of a Deployment with readinesProbe (strict by default): 400 naming the field",
              p.returncode != 0 and f'strict decoding error: unknown field "{field}"' in p.stderr, p.stdout + p.stderr)
    p = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(typo), ok=False)
    check("kubectl apply --server-side of it: refused, 'field not declared in schema'",
          p.returncode != 0 and '.spec.template.spec.containers[name="app"].readinesProbe: field not declared in schema'
          in p.stderr, p.stdout + p.stderr)
    p = kubectl("apply", "--validate=warn", "-f", "-", stdin=json.dumps(typo), ok=False)
    got = json.loads(kubectl("get", "deploy/typo", "-o", "json").stdout) if p.returncode == 0 else {}
    check("--validate=warn: created with a warning naming the field, the field dropped",
          p.returncode == 0 and f'Warning: unknown field "{field}"' in p.stderr and
          "readinesProbe" not in got["spec"]["template"]["spec"]["containers"][0], p.stdout + p.stderr)
    p = kubectl("patch", "deploy/typo", "--type=merge", "-p", '{"spec":{"replica":2}}', ok=False)
    check("kubectl patch with an unknown field (sent without fieldValidation: the server's Warn)",
          p.returncode == 0 and 'Warning: unknown field "spec.replica"' in p.stderr and "no change" in p.stdout,
          p.stdout + p.stderr)
    kubectl("delete", "deploy/typo")


def test_typed_creates():
    """kubectl commands that send protobuf bodies (decoded by protobuf.py)."""
    p = kubectl("create", "deployment", "made", f"--image={IMAGE}", "--port=8080", "--replicas=2", "--",
                "sh", "-c", "exec sleep 3600", ok=False)
    d = json.loads(kubectl("get", "deploy/made", "-o", "json").stdout) if p.returncode == 0 else {}
    c = d["spec"]["template"]["spec"]["containers"][0] if d else {}
    check("kubectl create deployment --image --port --replicas -- cmd", p.returncode == 0 and
          d["spec"]["replicas"] == 2 and c.get("command") == ["sh", "-c", "exec sleep 3600"] and
          c.get("ports") == [{"containerPort": 8080, "protocol": "TCP"}], p.stderr or d)
    p = kubectl("create", "deployment", "none", f"--image={IMAGE}", "--replicas=0", ok=False)
    check("kubectl create deployment --replicas=0 keeps the zero",
          p.returncode == 0 and json.loads(kubectl("get", "deploy/none", "-o", "json").stdout)["spec"]["replicas"] == 0,
          p.stderr)
    p = kubectl("create", "job", "made", f"--image={IMAGE}", "--", "sh", "-c", "echo made", ok=False)
    w = kubectl("wait", "--for=condition=complete", "job/made", "--timeout=90s", ok=False) if p.returncode == 0 else p
    check("kubectl create job -- cmd: runs to Complete", w.returncode == 0 and
          "made" in kubectl("logs", "job/made", ok=False).stdout, p.stderr + w.stderr)
    p = kubectl("autoscale", "deployment", "made", "--min=2", "--max=5", "--cpu-percent=70", ok=False)
    hpa = json.loads(kubectl("get", "hpa/made", "-o", "json").stdout) if p.returncode == 0 else {}
    check("kubectl autoscale (autoscaling/v1, stored as v2: a cpu Utilization metric)",
          p.returncode == 0 and "autoscaled" in p.stdout and hpa["spec"]["maxReplicas"] == 5 and
          hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70, p.stderr or hpa)
    code, v1, _ = req("GET", f"/apis/autoscaling/v1/namespaces/{NS}/horizontalpodautoscalers/made")
    check("... and read back as autoscaling/v1 (targetCPUUtilizationPercentage)",
          code == 200 and v1["spec"].get("targetCPUUtilizationPercentage") == 70, v1)
    p = kubectl("auth", "can-i", "create", "pods", ok=False)
    check("kubectl auth can-i create pods (admin): yes", p.returncode == 0 and p.stdout.strip() == "yes",
          p.stdout + p.stderr)
    p = kubectl("--context", "hoist-emulator-viewer", "auth", "can-i", "create", "pods", ok=False)
    q = kubectl("--context", "hoist-emulator-viewer", "auth", "can-i", "list", "pods", ok=False)
    check("kubectl auth can-i as the read-only viewer: create no, list yes", p.returncode == 1 and
          p.stdout.strip() == "no" and q.returncode == 0 and q.stdout.strip() == "yes", p.stdout + p.stderr + q.stdout)
    kubectl("delete", "deploy/made", "deploy/none", "job/made", "hpa/made")


def docs(*objs):
    """A multi-document manifest (a v1 List would need client-side validation: /openapi/v2)."""
    return "\n".join(json.dumps(o) for o in objs)


def deployment(name, replicas=2, image=IMAGE, cmd=None, probe=True, pods=True, **spec):
    c = {"name": "app", "image": image, "ports": [{"containerPort": 8080}],
         "command": cmd or ["sh", "-c", "echo hello from $HOSTNAME > /www/index.html; echo started $HOSTNAME; "
                                        "exec httpd -f -v -p 8080 -h /www"]}
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [c], "terminationGracePeriodSeconds": 1}}, **spec}}


def test_rollout():
    dep = deployment("web")
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(dep, svc))
    p = kubectl("rollout", "status", "deploy/web", "--timeout=120s", ok=False)
    check("kubectl rollout status: successfully rolled out", p.returncode == 0 and
          'deployment "web" successfully rolled out' in p.stdout, p.stdout + p.stderr)
    y = kubectl("get", "deploy/web", "-o", "yaml").stdout
    check("get -o yaml shows the controller's status", "availableReplicas: 2" in y and
          "reason: NewReplicaSetAvailable" in y and "deployment.kubernetes.io/revision: \"1\"" in y, y)
    p = kubectl("wait", "--for=condition=Available", "deploy/web", "--timeout=30s", ok=False)
    check("kubectl wait --for=condition=Available", p.returncode == 0 and "condition met" in p.stdout, p.stderr)
    addr = json.loads(kubectl("get", "svc/web", "-o", "json").stdout)["metadata"]["annotations"][
        "hoist.dev/emulator-address"]
    hosts = set()
    for _ in range(6):
        try:
            c = http.client.HTTPConnection(*addr.split(":"), timeout=5)
            c.request("GET", "/")
            hosts.add(c.getresponse().read().decode().strip())
            c.close()
        except OSError as e:
            hosts.add(f"error {e}")
    check("the Service's 127.0.0.1 address balances across both ready pods",
          len(hosts) == 2 and all(h.startswith("hello from") for h in hosts), hosts)
    p = kubectl("logs", "deploy/web", "--tail=20", ok=False)
    check("kubectl logs serves the container's output", "started" in p.stdout, p.stdout + p.stderr)
    p = kubectl("logs", "deploy/web", "--previous", ok=False)
    check("kubectl logs --previous of a container that never restarted: 400 'previous terminated container'",
          p.returncode != 0 and 'previous terminated container "app" in pod "web-' in p.stderr and
          "not found" in p.stderr, p.stdout + p.stderr)
    moved = deployment("web")
    moved["spec"]["selector"]["matchLabels"]["tier"] = "x"
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    for how in (("apply", "--server-side"), ("apply",), ("replace",)):
        p = kubectl(*how, "-f", "-", stdin=json.dumps(moved), ok=False)
        check(f"kubectl {' '.join(how)} of a changed Deployment selector: 422 field is immutable",
              p.returncode != 0 and 'Deployment "web" is invalid: spec.selector: Invalid value' in p.stderr and
              "field is immutable" in p.stderr, p.stdout + p.stderr)
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web.v1"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    p = kubectl("apply", "-f", "-", stdin=json.dumps(bad), ok=False)
    check("a Service named web.v1: 422, its name is not a DNS-1035 label",
          p.returncode != 0 and 'Service "web.v1" is invalid: metadata.name: Invalid value: "web.v1": a DNS-1035 label'
          in p.stderr, p.stdout + p.stderr)

    kubectl("set", "image", "deploy/web", "app=127.0.0.1:5000/hoist-test/missing:v2")

    def pull_failed():
        pods = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
        for pod in pods:
            for cs in pod["status"].get("containerStatuses") or []:
                w = cs["state"].get("waiting") or {}
                if w.get("reason") in ("ErrImagePull", "ImagePullBackOff") and "missing:v2" in w.get("message", ""):
                    return pod
        return None
    pod = wait_until(pull_failed, 60)
    check("a missing image: the new pod waits in ErrImagePull/ImagePullBackOff naming the image", pod, pod)
    p = kubectl("rollout", "status", "deploy/web", "--timeout=3s", ok=False)
    check("kubectl rollout status does not report success on the broken rollout",
          p.returncode != 0 and "successfully rolled out" not in p.stdout, p.stdout)
    if pod:
        evs = json.loads(kubectl("get", "events", "--field-selector",
                                 f"involvedObject.name={pod['metadata']['name']}", "-o", "json").stdout)["items"]
        reasons = {e["reason"] for e in evs}
        check("events about the pod: Scheduled, Pulling, Failed, BackOff", {"Scheduled", "Pulling", "Failed"} <= reasons,
              reasons)
    hist = kubectl("rollout", "history", "deploy/web").stdout
    check("kubectl rollout history lists revisions 1 and 2", " 1 " in f" {hist} ".replace("\n", " ") and
          "2" in hist, hist)
    ok = 0
    c = http.client.HTTPConnection(*addr.split(":"), timeout=5)
    for _ in range(5):
        try:
            c = http.client.HTTPConnection(*addr.split(":"), timeout=5)
            c.request("GET", "/")
            ok += c.getresponse().status == 200
            c.close()
        except OSError:
            pass
    check("the old version keeps answering through the Service during the broken rollout", ok == 5, ok)
    kubectl("rollout", "undo", "deploy/web")
    p = kubectl("rollout", "status", "deploy/web", "--timeout=120s", ok=False)
    check("kubectl rollout undo, then rollout status succeeds", p.returncode == 0, p.stdout + p.stderr)
    rss = json.loads(kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]
    revs = sorted((r["metadata"]["annotations"]["deployment.kubernetes.io/revision"], r["spec"]["replicas"],
                   r["spec"]["template"]["spec"]["containers"][0]["image"]) for r in rss)
    check("undo reuses the first ReplicaSet as revision 3; the broken one is scaled to 0",
          len(rss) == 2 and revs[-1][0] == "3" and revs[-1][1] == 2 and revs[-1][2] == IMAGE and revs[0][1] == 0,
          revs)
    p = kubectl("delete", "deploy/web", "--timeout=60s", ok=False)
    check("kubectl delete deployment", p.returncode == 0 and "deleted" in p.stdout, p.stderr)
    gone = wait_until(lambda: not json.loads(kubectl("get", "rs,pods", "-l", "app=web", "-o", "json").stdout)["items"], 90)
    check("garbage collection removes its ReplicaSets and pods", gone, kubectl("get", "rs,pods", "-l", "app=web").stdout)


def test_failures():
    crash = deployment("crash", replicas=1, cmd=["sh", "-c", "echo boom; exit 3"], probe=False)
    cfg = deployment("cfg", replicas=1, probe=False)
    cfg["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db-secret", "key": "password"}}}]
    late = deployment("late", replicas=1, image="127.0.0.1:5000/hoist-test/missing:v3", probe=False,
                      progressDeadlineSeconds=2)
    oom = deployment("oom", replicas=1, probe=False,
                     cmd=["sh", "-c", 'a=$(head -c 60000000 /dev/zero | tr "\\0" x); echo ${#a}'])
    oom["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"memory": "16Mi"}}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(crash, cfg, late, oom))

    def state(app):
        pods = json.loads(kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
        return (pods[0]["status"].get("containerStatuses") or [{}])[0] if pods else {}

    cs = wait_until(lambda: (s := state("crash")).get("restartCount", 0) >= 2 and s, 60)
    check("a crashing container: restartCount grows, lastState terminated Error exit 3",
          cs and cs["lastState"]["terminated"]["exitCode"] == 3 and cs["lastState"]["terminated"]["reason"] == "Error",
          cs)
    cs = wait_until(lambda: (s := state("crash")).get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                    and s, 60, 0.2)
    check("... and waits in CrashLoopBackOff with the back-off message", cs and
          "back-off" in cs["state"]["waiting"]["message"], cs)
    p = kubectl("logs", "deploy/crash", "--previous", ok=False)
    check("kubectl logs --previous serves the crashed container's output", p.returncode == 0 and "boom" in p.stdout,
          p.stdout + p.stderr)
    cs = wait_until(lambda: (s := state("cfg")).get("state", {}).get("waiting", {}).get("reason") ==
                    "CreateContainerConfigError" and s, 60)
    check("a missing secret: CreateContainerConfigError naming it",
          cs and cs["state"]["waiting"]["message"] == 'secret "db-secret" not found', cs)
    kubectl("create", "secret", "generic", "db-secret", "--from-literal=password=s3cret")
    cs = wait_until(lambda: "running" in (s := state("cfg")).get("state", {}) and s, 60)
    check("once the secret exists the container starts", cs, cs)

    cs = wait_until(lambda: (s := state("oom")).get("lastState", {}).get("terminated") and s, 60)
    check("over its memory limit: lastState terminated OOMKilled, exit code 137",
          cs and cs["lastState"]["terminated"]["reason"] == "OOMKilled" and
          cs["lastState"]["terminated"]["exitCode"] == 137, cs)

    def deadline():
        d = json.loads(kubectl("get", "deploy/late", "-o", "json").stdout)
        return next((c for c in d["status"].get("conditions", []) if c["type"] == "Progressing" and
                     c["reason"] == "ProgressDeadlineExceeded"), None)
    cond = wait_until(deadline, 60)
    check("progressDeadlineSeconds: Progressing False ProgressDeadlineExceeded", cond and cond["status"] == "False", cond)
    p = kubectl("rollout", "status", "deploy/late", "--timeout=20s", ok=False)
    check("kubectl rollout status reports the exceeded deadline", p.returncode != 0 and
          "exceeded its progress deadline" in p.stderr, p.stderr)
    kubectl("delete", "deploy/crash", "deploy/cfg", "deploy/late", "deploy/oom")


class PodWatch:
    """Follows the pods of an app through a watch; replays the events to check invariants."""

    def __init__(self, app):
        import threading
        self.events = []
        _, lst, _ = req("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")
        self.rv = lst["metadata"]["resourceVersion"]
        self.initial = lst["items"]
        self.t = threading.Thread(target=self.run, args=(app,), daemon=True)
        self.t.start()

    def run(self, app):
        _, self.events = watch_lines(f"/api/v1/namespaces/{NS}/pods?watch=1&labelSelector=app%3D{app}"
                                     f"&resourceVersion={self.rv}&timeoutSeconds=100", 100000)

    def states(self):
        """After each event: {pod name: (template hash, active)} where active = not being deleted."""
        pods = {p["metadata"]["name"]: p for p in self.initial}
        for e in self.events:
            o = e.get("object", {})
            if e["type"] == "DELETED":
                pods.pop(o["metadata"]["name"], None)
            elif e["type"] in ("ADDED", "MODIFIED"):
                pods[o["metadata"]["name"]] = o
            yield {n: (p["metadata"]["labels"].get("pod-template-hash"), not p["metadata"].get("deletionTimestamp"))
                   for n, p in pods.items()}


def test_strategies():
    d = deployment("surge", replicas=2, strategy={"type": "RollingUpdate",
                                                   "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(d))
    kubectl("rollout", "status", "deploy/surge", "--timeout=120s")
    w = PodWatch("surge")
    kubectl("set", "env", "deploy/surge", "V=2")
    p = kubectl("rollout", "status", "deploy/surge", "--timeout=120s", ok=False)
    req("POST", "/_emulator/drop-watches")
    w.t.join(30)
    most = max((sum(1 for h, a in st.values() if a) for st in w.states()), default=0)
    check("RollingUpdate maxSurge 1 / maxUnavailable 0: never more than 3 pods, rollout completes",
          p.returncode == 0 and most == 3, (most, p.stdout, p.stderr))

    d = deployment("recreate", replicas=2, strategy={"type": "Recreate"})
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(d))
    kubectl("rollout", "status", "deploy/recreate", "--timeout=120s")
    w = PodWatch("recreate")
    old = {p["metadata"]["labels"]["pod-template-hash"] for p in w.initial}
    kubectl("set", "env", "deploy/recreate", "V=2")
    p = kubectl("rollout", "status", "deploy/recreate", "--timeout=120s", ok=False)
    req("POST", "/_emulator/drop-watches")
    w.t.join(30)
    overlap = [st for st in w.states() if any(h in old for h, _ in st.values()) and
               any(h not in old for h, _ in st.values())]
    check("Recreate: no new pod exists while an old one does; rollout completes",
          p.returncode == 0 and not overlap and len(old) == 1, (overlap[:2], p.stdout, p.stderr))
    kubectl("delete", "deploy/surge", "deploy/recreate")


def test_probes():
    live = deployment("live", replicas=1, probe=False,
                      cmd=["sh", "-c", "touch /tmp/alive; (sleep 3; rm /tmp/alive) & exec httpd -f -p 8080 -h /www"])
    c = live["spec"]["template"]["spec"]["containers"][0]
    c["livenessProbe"] = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
    c["startupProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    ready = deployment("notready", replicas=1, probe=False)
    ready["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/ready.html", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(live, ready))

    def pod(app):
        items = json.loads(kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
        return items[0] if items else None

    def restarted():
        p = pod("live")
        return p if p and (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1 else None
    p = wait_until(restarted, 60)
    check("a failing exec liveness probe restarts the container", p, p and p["status"])
    if p:
        evs = json.loads(kubectl("get", "events", "--field-selector", f"involvedObject.name={p['metadata']['name']}",
                                 "-o", "json").stdout)["items"]
        msgs = [(e["reason"], e["message"]) for e in evs]
        check("events: Unhealthy 'Liveness probe failed' and Killing 'failed liveness probe, will be restarted'",
              any(r == "Unhealthy" and m.startswith("Liveness probe failed") for r, m in msgs) and
              any(r == "Killing" and "failed liveness probe, will be restarted" in m for r, m in msgs), msgs)

    def unready():
        p = pod("notready")
        if not p or "running" not in ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {}):
            return None
        evs = json.loads(kubectl("get", "events", "--field-selector", f"involvedObject.name={p['metadata']['name']}",
                                 "-o", "json").stdout)["items"]
        return (p, evs) if any(e["reason"] == "Unhealthy" for e in evs) else None
    got = wait_until(unready, 60)
    if got:
        p, evs = got
        conds = {c["type"]: c for c in p["status"]["conditions"]}
        check("a failing readiness probe: running but not Ready (ContainersNotReady)",
              conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady" and
              conds["PodScheduled"]["status"] == "True", conds)
        check("... with the event 'Readiness probe failed: HTTP probe failed with statuscode: 404'",
              any(e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404" for e in evs),
              [e["message"] for e in evs])
    else:
        check("a failing readiness probe is reported", False)
    kubectl("delete", "deploy/live", "deploy/notready")


def test_pull_secret():
    reg = os.environ.get("HOIST_TEST_REGISTRY_BASIC")
    if not reg:
        print("SKIP  imagePullSecrets: skipped: no basic-auth registry in the environment", flush=True)
        return
    image = f"{reg}/hoist-test/private:latest"
    kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={reg}",
            f"--docker-username={os.environ['HOIST_TEST_REGISTRY_BASIC_USER']}",
            f"--docker-password={os.environ['HOIST_TEST_REGISTRY_BASIC_PASSWORD']}")
    with_secret = deployment("private", replicas=1, image=image, probe=False)
    with_secret["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    without = deployment("nocreds", replicas=1, image=image, probe=False)
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(with_secret, without))
    p = kubectl("rollout", "status", "deploy/private", "--timeout=90s", ok=False)
    check("imagePullSecrets (kubectl create secret docker-registry) pull from the basic-auth registry",
          p.returncode == 0, p.stdout + p.stderr)

    def denied():
        items = json.loads(kubectl("get", "pods", "-l", "app=nocreds", "-o", "json").stdout)["items"]
        w = ((items[0]["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}) \
            if items else {}
        return w if w.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None
    w = wait_until(denied, 60)
    check("without the secret the pull fails (ErrImagePull/ImagePullBackOff)", w, w)
    kubectl("delete", "deploy/private", "deploy/nocreds")


def test_cascade():
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(deployment("casc", replicas=2, probe=False)))
    kubectl("rollout", "status", "deploy/casc", "--timeout=90s")
    kubectl("delete", "deploy/casc", "--cascade=orphan")
    rss = json.loads(kubectl("get", "rs", "-l", "app=casc", "-o", "json").stdout)["items"]
    check("delete --cascade=orphan keeps the ReplicaSet, without its ownerReference",
          len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences"), rss)
    p = kubectl("delete", "rs", "-l", "app=casc", "--cascade=foreground", ok=False)
    pods = json.loads(kubectl("get", "pods", "-l", "app=casc", "-o", "json").stdout)["items"]
    check("delete --cascade=foreground returns once the pods are gone", p.returncode == 0 and not pods,
          [x["metadata"]["name"] for x in pods])


def workload(kind, name, replicas=None, cmd=None, **spec):
    """A StatefulSet or DaemonSet (sleeping busybox, no probe) or a Job running cmd."""
    c = {"name": "app", "image": IMAGE, "command": cmd or ["sh", "-c", "echo started $HOSTNAME; exec sleep 3600"]}
    tpl = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [c], "terminationGracePeriodSeconds": 1}}
    if kind == "Job":
        tpl = {"spec": dict(tpl["spec"], restartPolicy="Never")}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": tpl, **spec}}
    body = {"selector": {"matchLabels": {"app": name}}, "template": tpl, **spec}
    if replicas is not None:
        body["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": body}


def pods_of(app):
    items = json.loads(kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p for p in items}


def test_workloads():
    # StatefulSet: ordered pods, kubectl's rollout status, a rolling update, a partition, history
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(workload("StatefulSet", "db", replicas=3, serviceName="db")))
    p = kubectl("rollout", "status", "statefulset/db", "--timeout=120s", ok=False)
    check("kubectl rollout status statefulset: partitioned roll out complete (partition defaults to 0)",
          p.returncode == 0 and "partitioned roll out complete: 3 new pods have been updated" in p.stdout,
          p.stdout + p.stderr)
    pods = pods_of("db")
    sts = json.loads(kubectl("get", "sts/db", "-o", "json").stdout)
    rev = sts["status"].get("updateRevision", "")
    check("statefulset pods db-0..2 labelled with the revision and their pod name",
          sorted(pods) == ["db-0", "db-1", "db-2"] and all(
              p["metadata"]["labels"].get("controller-revision-hash") == rev and
              p["metadata"]["labels"].get("statefulset.kubernetes.io/pod-name") == n for n, p in pods.items()),
          {n: p["metadata"]["labels"] for n, p in pods.items()})
    st = sts["status"]
    check("statefulset status: replicas, ready, current, updated, revisions, observedGeneration",
          (st.get("replicas"), st.get("readyReplicas"), st.get("currentReplicas"), st.get("updatedReplicas"),
           st.get("availableReplicas")) == (3, 3, 3, 3, 3) and st.get("currentRevision") == rev and
          rev.startswith("db-") and st.get("observedGeneration") == sts["metadata"]["generation"], st)
    y = kubectl("get", "sts/db", "-o", "yaml").stdout
    check("get -o yaml statefulset shows the defaulted strategy and the status",
          "partition: 0" in y and "podManagementPolicy: OrderedReady" in y and f"updateRevision: {rev}" in y, y)
    created = {n: p["metadata"]["creationTimestamp"] for n, p in pods.items()}
    check("OrderedReady: db-1 created no earlier than db-0, db-2 no earlier than db-1",
          created["db-0"] <= created["db-1"] <= created["db-2"], created)
    kubectl("set", "env", "statefulset/db", "V=2")
    p = kubectl("rollout", "status", "statefulset/db", "--timeout=120s", ok=False)
    sts = json.loads(kubectl("get", "sts/db", "-o", "json").stdout)
    pods = pods_of("db")
    new_rev = sts["status"].get("updateRevision")
    check("a rolling update replaces every pod; currentRevision follows updateRevision",
          p.returncode == 0 and new_rev != rev and sts["status"].get("currentRevision") == new_rev and
          all(x["metadata"]["labels"]["controller-revision-hash"] == new_rev for x in pods.values()),
          (p.stdout, sts["status"], {n: x["metadata"]["labels"] for n, x in pods.items()}))
    hist = kubectl("rollout", "history", "statefulset/db", ok=False)
    check("kubectl rollout history statefulset lists revisions 1 and 2 (ControllerRevisions)",
          hist.returncode == 0 and "1 " in hist.stdout and "2 " in hist.stdout, hist.stdout + hist.stderr)
    kubectl("patch", "statefulset/db", "-p", json.dumps({"spec": {
        "updateStrategy": {"rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "app", "env": [{"name": "V", "value": "3"}]}]}}}}))
    p = kubectl("rollout", "status", "statefulset/db", "--timeout=120s", ok=False)
    sts = json.loads(kubectl("get", "sts/db", "-o", "json").stdout)
    labels = {n: x["metadata"]["labels"]["controller-revision-hash"] for n, x in pods_of("db").items()}
    third = sts["status"].get("updateRevision")
    check("partition 2: only db-2 takes the new revision; kubectl says 1 new pod updated",
          p.returncode == 0 and "partitioned roll out complete: 1 new pods have been updated" in p.stdout and
          labels == {"db-0": new_rev, "db-1": new_rev, "db-2": third} and sts["status"].get("currentRevision") == new_rev,
          (p.stdout, labels, sts["status"]))
    kubectl("scale", "statefulset/db", "--replicas=1")
    gone = wait_until(lambda: sorted(pods_of("db")) == ["db-0"], 60)
    check("scale down removes the highest ordinals", gone, sorted(pods_of("db")))

    # DaemonSet: one node, one pod; kubectl's rollout status through an update
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(workload("DaemonSet", "agent")))
    p = kubectl("rollout", "status", "daemonset/agent", "--timeout=120s", ok=False)
    check("kubectl rollout status daemonset: successfully rolled out",
          p.returncode == 0 and 'daemon set "agent" successfully rolled out' in p.stdout, p.stdout + p.stderr)
    first = list(pods_of("agent"))
    kubectl("set", "env", "daemonset/agent", "V=2")
    p = kubectl("rollout", "status", "daemonset/agent", "--timeout=120s", ok=False)
    ds = json.loads(kubectl("get", "ds/agent", "-o", "json").stdout)
    after = pods_of("agent")
    st = ds["status"]
    check("a daemonset update replaces its one pod (pod-template-generation 2); status counts one node",
          p.returncode == 0 and len(after) == 1 and list(after) != first and
          list(after.values())[0]["metadata"]["labels"].get("pod-template-generation") == "2" and
          (st.get("desiredNumberScheduled"), st.get("currentNumberScheduled"), st.get("updatedNumberScheduled"),
           st.get("numberReady"), st.get("numberAvailable")) == (1, 1, 1, 1, 1) and st.get("observedGeneration") == 2,
          (p.stdout, first, list(after), st))

    # Jobs: complete, fail after backoffLimit, wait, logs, garbage collection
    ok_job = workload("Job", "once", cmd=["sh", "-c", "echo working; echo done"])
    bad_job = workload("Job", "fails", cmd=["sh", "-c", "echo boom; exit 1"], backoffLimit=1)
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(ok_job, bad_job))
    p = kubectl("wait", "--for=condition=complete", "job/once", "--timeout=120s", ok=False)
    check("kubectl wait --for=condition=complete job", p.returncode == 0 and "condition met" in p.stdout,
          p.stdout + p.stderr)
    job = json.loads(kubectl("get", "job/once", "-o", "json").stdout)
    st = job["status"]
    check("a completed job: succeeded 1, Complete CompletionsReached, startTime and completionTime",
          st.get("succeeded") == 1 and not st.get("active") and st.get("startTime") and st.get("completionTime") and
          any(c["type"] == "Complete" and c["status"] == "True" and c["reason"] == "CompletionsReached"
              for c in st.get("conditions", [])), st)
    sel = job["spec"]["selector"]["matchLabels"].get("batch.kubernetes.io/controller-uid")
    check("the job's generated selector is its uid, on the pod template too",
          sel == job["metadata"]["uid"] and
          job["spec"]["template"]["metadata"]["labels"].get("batch.kubernetes.io/job-name") == "once", job["spec"])
    p = kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=120s", ok=False)
    job = json.loads(kubectl("get", "job/fails", "-o", "json").stdout)
    failed = [c for c in job["status"].get("conditions", []) if c["type"] == "Failed"]
    check("backoffLimit 1: two failed pods, then Failed BackoffLimitExceeded",
          p.returncode == 0 and job["status"].get("failed") == 2 and failed and
          failed[0]["reason"] == "BackoffLimitExceeded", (p.stdout + p.stderr, job["status"]))
    p = kubectl("logs", "job/fails", ok=False)
    check("kubectl logs job/x serves a failed pod's output", "boom" in p.stdout, p.stdout + p.stderr)
    y = kubectl("get", "job/once", "-o", "yaml").stdout
    check("get -o yaml job shows the defaults and the status",
          "backoffLimit: 6" in y and "completions: 1" in y and "succeeded: 1" in y and "type: Complete" in y, y)
    code, st, _ = req("POST", f"/apis/batch/v1/namespaces/{NS}/jobs",
                      dict(workload("Job", "always"), spec={"template": {"spec": {
                          "restartPolicy": "Always", "containers": [{"name": "app", "image": IMAGE}]}}}))
    check("a Job with restartPolicy Always: 422 naming the field", code == 422 and
          any(c.get("field") == "spec.template.spec.restartPolicy" for c in st.get("details", {}).get("causes", [])),
          st)
    kubectl("delete", "statefulset/db", "daemonset/agent", "job/once", "job/fails", "--timeout=60s")
    mine = ("-l", "app in (db,agent)")
    jobs = ("-l", "batch.kubernetes.io/job-name in (once,fails)")
    gone = wait_until(lambda: not json.loads(kubectl("get", "pods,controllerrevisions", *mine, "-o", "json").stdout)[
        "items"] and not json.loads(kubectl("get", "pods", *jobs, "-o", "json").stdout)["items"], 90)
    check("deleting them removes their pods and ControllerRevisions (ownerReferences)", gone,
          kubectl("get", "pods,controllerrevisions", *mine).stdout + kubectl("get", "pods", *jobs).stdout)


def test_stored_kinds():
    objs = [("autoscaling/v2", "horizontalpodautoscalers", {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                      "name": "web"}, "minReplicas": 3, "maxReplicas": 20}}),
            ("policy/v1", "poddisruptionbudgets", {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": {"name": "p"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
            ("coordination.k8s.io/v1", "leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l"}, "spec": {"holderIdentity": "host-a", "leaseDurationSeconds": 15}})]
    for gv, plural, obj in objs:
        code, st, _ = req("POST", f"/apis/{gv}/namespaces/{NS}/{plural}", obj)
        code2, got, _ = req("GET", f"/apis/{gv}/namespaces/{NS}/{plural}/{obj['metadata']['name']}")
        check(f"{plural} ({gv}) are stored", code == 201 and code2 == 200 and got["spec"] == obj["spec"], (st, got))
    _, lease, _ = req("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/l")
    lease["spec"]["holderIdentity"] = "host-b"
    code, _, _ = req("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/l", lease)
    code2, st, _ = req("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/l", lease)
    check("a Lease taken with its resourceVersion; a second taker with the same one gets 409",
          code == 200 and code2 == 409, st)


def test_host_network_and_volumes():
    """hostNetwork: the container on the host's network (its 127.0.0.1 is the machine's: the
    registry answers there; its port is its own, not a published one); configMap and secret
    volumes: their keys as files; a missing ConfigMap: ContainerCreating and FailedMount."""
    reg = os.environ.get("HOIST_TEST_REGISTRY", "127.0.0.1:5000")
    kubectl("create", "configmap", "plan", "--from-literal=params.json={\"a\": 1}")
    kubectl("create", "secret", "generic", "cred", "--from-literal=token=vol-s3cret")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hostnet"}, "spec": {
        "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "hostNetwork": True,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c",
                            f"cat /etc/plan/params.json; echo; cat /etc/cred/token; echo; "
                            f"wget -q -O- http://{reg}/v2/ && echo registry-reached"],
                            "volumeMounts": [{"name": "plan", "mountPath": "/etc/plan", "readOnly": True},
                                             {"name": "cred", "mountPath": "/etc/cred", "readOnly": True}]}],
            "volumes": [{"name": "plan", "configMap": {"name": "plan"}},
                        {"name": "cred", "secret": {"secretName": "cred"}}]}}}}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(job))
    p = kubectl("wait", "--for=condition=complete", "job/hostnet", "--timeout=60s", ok=False)
    logs = kubectl("logs", "job/hostnet", ok=False).stdout
    check("a hostNetwork Job reaches the host's 127.0.0.1 and reads its configMap and secret volumes",
          p.returncode == 0 and '{"a": 1}' in logs and "vol-s3cret" in logs and "registry-reached" in logs,
          p.stderr + logs)
    pod = json.loads(kubectl("get", "pods", "-l", "job-name=hostnet", "-o", "json").stdout)["items"][0]
    check("... its pod's IP is the host's", pod["status"].get("podIP") == "127.0.0.1", pod["status"])

    port = wait_until(lambda: free_port(), 5)
    web = deployment("hostweb", replicas=1, probe=False,
                     cmd=["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/etc"])
    spec = web["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["containers"][0]["ports"] = [{"containerPort": port}]
    spec["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/passwd", "port": port}, "periodSeconds": 1}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(web))
    p = kubectl("rollout", "status", "deploy/hostweb", "--timeout=60s", ok=False)
    pod = json.loads(kubectl("get", "pods", "-l", "app=hostweb", "-o", "json").stdout)["items"][0]
    ports = json.loads((pod["metadata"].get("annotations") or {}).get("hoist.dev/emulator-ports", "{}"))
    body = ""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/passwd")
        body = conn.getresponse().read().decode()
    except OSError as e:
        body = str(e)
    check("a hostNetwork pod serves on its own port of 127.0.0.1, probed there, shown in emulator-ports",
          p.returncode == 0 and "root:" in body and ports == {f"app/{port}": f"127.0.0.1:{port}"}, (p.stderr, body, ports))

    lost = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lostvol"}, "spec": {
        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "30"],
                        "volumeMounts": [{"name": "v", "mountPath": "/etc/v"}]}],
        "volumes": [{"name": "v", "configMap": {"name": "nosuch"}}]}}
    kubectl("apply", "--server-side", "-f", "-", stdin=docs(lost))

    def failed_mount():
        ev = json.loads(kubectl("get", "events", "--field-selector", "involvedObject.name=lostvol", "-o", "json").stdout)
        return next((e for e in ev["items"] if e["reason"] == "FailedMount"), None)
    ev = wait_until(failed_mount, 30)
    pod = json.loads(kubectl("get", "pod", "lostvol", "-o", "json").stdout)
    cs = (pod["status"].get("containerStatuses") or [{}])[0]
    check("a missing ConfigMap volume: FailedMount naming it, the container waits in ContainerCreating",
          ev and 'configmap "nosuch" not found' in ev["message"] and
          cs.get("state", {}).get("waiting", {}).get("reason") == "ContainerCreating", (ev, cs))
    kubectl("delete", "job/hostnet", "deploy/hostweb", "pod/lostvol", "configmap/plan", "secret/cred", "--wait=false")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cluster_views():
    lines = kubectl("get", "nodes").stdout.splitlines()
    check("kubectl get nodes: NAME STATUS ROLES AGE VERSION, filled", lines[0].split() ==
          ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] and lines[1].split()[1:3] == ["Ready", "control-plane"] and
          lines[1].split()[4].startswith("v1.32"), lines)
    lines = kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    check("kubectl get nodes -o wide adds INTERNAL-IP ... CONTAINER-RUNTIME", lines[0].split()[5:] ==
          ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"] and
          lines[1].split()[5] == "127.0.0.1", lines)
    out = kubectl("get", "--raw", "/readyz?verbose").stdout.splitlines()
    check("/readyz?verbose lists its checks, then 'readyz check passed'", out[0] == "[+]ping ok" and
          "[+]etcd ok" in out and out[-1] == "readyz check passed", out)
    out = kubectl("get", "--raw", "/livez?verbose&exclude=etcd").stdout.splitlines()
    check("/livez?verbose&exclude=etcd marks the excluded check", "[+]etcd excluded: ok" in out and
          out[-1] == "livez check passed", out)


def main():
    p = subprocess.run(["kubectl", "create", "namespace", NS], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL  cannot create namespace {NS}: {p.stderr}")
        return 1
    try:
        groups = (test_conformance, test_cluster_views, test_auth_and_errors, test_watch_semantics, test_ssa,
                  test_field_validation, test_typed_creates, test_stored_kinds, test_rollout, test_failures,
                  test_probes, test_strategies, test_pull_secret, test_cascade, test_workloads,
                  test_host_network_and_volumes)
        only = os.environ.get("HOIST_KUBE_TEST_ONLY")      # during development: a comma-separated subset
        for t in (g for g in groups if not only or g.__name__ in only.split(",")):
            t0 = time.monotonic()
            try:
                t()
                print(f"----  {t.__name__} took {time.monotonic() - t0:.1f} s", flush=True)
            except Exception as e:  # noqa: BLE001 - one failing group must not hide the others
                check(f"{t.__name__} ran to the end", False, f"{type(e).__name__}: {e}")
    finally:
        subprocess.run(["kubectl", "delete", "namespace", NS, "--wait=false"], capture_output=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
