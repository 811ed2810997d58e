#!/usr/bin/env bash
# bench/k8s.sh: how soon hoist's rollout verdict follows the cluster, beside kubectl, and
# hoist's memory while it tracks 50 Deployments at once. Against the Kubernetes emulator of
# tests/env (its controllers and kubelet run the pods on the local Docker engine).
#
#   . /tmp/hoist-env/env.sh; flock /tmp/hoist-docker.lock bench/k8s.sh [rounds]   (rounds 0: memory only)
#
# 1. Latency. For each round, a Deployment (2 replicas of the test image) is applied, then
#    three watchers start at once: an observer (python3, its own watch on the Deployment and
#    its pods: the moment the emulator records the rollout complete, or a pod failing, is when
#    its MODIFIED event arrives), `hoist.k8s.rollout` in a hoist process, and `kubectl rollout
#    status`. All three read CLOCK_MONOTONIC (hoist.now, time.monotonic), so their times
#    compare directly. Rounds cycle: a good rollout; a crash loop (failing by hoist's rule once
#    in CrashLoopBackOff after 2 restarts: hoist watches already when it comes); an image that
#    is not in the registry (failing within a second of the apply, while hoist's process is
#    still starting: its figure includes that start). kubectl runs with
#    --timeout=$KUBECTL_TIMEOUT s, not the scenario's 300 s: it would wait them out all the same.
# 2. Memory. A second emulator without a kubelet (pods stay Pending, so rollouts never end)
#    serves 50 Deployments; one hoist process tracks all 50 with hoist.k8s.rollout in
#    parallel tasks (4 watches each, 200 in all, on the client's shared streams: one per kind)
#    for $TRACK_SECONDS s; its peak RSS (VmHWM), the streams and the open descriptors (the
#    connections) are reported.
set -euo pipefail

ROUNDS=${1:-9}
KUBECTL_TIMEOUT=${KUBECTL_TIMEOUT:-30}
TRACK_SECONDS=${TRACK_SECONDS:-20}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
HOIST=${HOIST_BIN:-$ROOT/build/hoist}
: "${KUBECONFIG:?source /tmp/hoist-env/env.sh first (the Kubernetes emulator and its KUBECONFIG)}"
: "${HOIST_TEST_KUBE_SERVER:?source /tmp/hoist-env/env.sh first}"
IMAGE=${HOIST_TEST_KUBE_IMAGE:-${HOIST_TEST_REGISTRY:-127.0.0.1:5000}/hoist-test/busybox:latest}
WORK=$(mktemp -d /tmp/hoist-bench-k8s.XXXXXX)
NS=hoist-bench-$(od -An -tx1 -N3 /dev/urandom | tr -d ' \n')
MEMPID=
cleanup() {
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    [[ -n $MEMPID ]] && kill "$MEMPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export HOIST_LUA_PATH=${HOIST_LUA_PATH:-$ROOT}

kubectl create namespace "$NS" >/dev/null

# hoist's side: track one rollout, print the monotonic time of the verdict.
cat > "$WORK/track.lua" <<'LUA'
local client = hoist.k8s.client { namespace = hoist.args.ns }
-- a failure's evidence (the crashed container's last lines) is fetched after the verdict:
-- the first log request marks the moment hoist decided
local decided
local logs = client.logs
client.logs = function(...) decided = decided or hoist.now(); return logs(...) end
local ok, r = pcall(hoist.k8s.rollout, { client = client, name = hoist.args.name, timeout = 120 })
local returned = hoist.now()
local verdict = ok and "done" or (hoist.is_error(r) and (r.details and r.details.reason or r.code) or tostring(r))
print(("HOIST %.6f %.6f %s"):format(decided or returned, returned, verdict))
LUA

# the driver: apply, start the three watchers, collect their times
cat > "$WORK/latency.py" <<'PY'
import json, os, ssl, subprocess, sys, threading, time, http.client, base64, tempfile
ns, image, rounds, hoist, kt, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
server = os.environ["HOIST_TEST_KUBE_SERVER"]
token = os.environ["HOIST_TEST_KUBE_TOKEN"]
ctx = ssl.create_default_context(cafile=os.environ.get("HOIST_TEST_CA"))
host, port = server.split("//")[1].split(":")

def watch(path, until):
    """Streams a watch from now; calls until(obj) on each object; returns the monotonic time it said True."""
    c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=200)
    c.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    buf = b""
    while True:
        chunk = r.readline()
        if not chunk:
            return None
        if not chunk.strip():
            continue
        ev = json.loads(chunk)
        if ev.get("type") in ("ADDED", "MODIFIED") and until(ev["object"]):
            t = time.monotonic()
            c.close()
            return t

def complete(d):
    s, spec = d.get("status", {}), d.get("spec", {})
    want = spec.get("replicas", 1)
    return (s.get("observedGeneration", 0) >= d["metadata"].get("generation", 0) and s.get("updatedReplicas", 0) == want
            and s.get("replicas", 0) == want and s.get("availableReplicas", 0) == want)

def pod_failing(p):
    for cs in p.get("status", {}).get("containerStatuses", []) or []:
        w = cs.get("state", {}).get("waiting") or {}
        if w.get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            return True
        # hoist's rule (crashloop_restarts = 2): in CrashLoopBackOff after 2 restarts
        if w.get("reason") == "CrashLoopBackOff" and cs.get("restartCount", 0) >= 2:
            return True
    return False

CASES = ("good", "crash", "pull")
rows = []
for i in range(rounds):
    case = CASES[i % 3]
    name = "bench-%d" % i
    img = image + ("-absent" if case == "pull" else "")
    cmd = "sleep 3600" if case != "crash" else "echo crashing; exit 3"
    container = {"name": "app", "image": img, "command": ["sh", "-c", cmd]}
    if case == "crash":  # never ready: a container that exits at once may look available for an instant
        container["readinessProbe"] = {"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1}
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(manifest, f)
    subprocess.run(["kubectl", "apply", "-f", path], check=True, capture_output=True)
    start = time.monotonic()
    res = {}
    def observe():
        if case != "good":
            res["cluster"] = watch("/api/v1/namespaces/%s/pods?watch=1&labelSelector=app%%3D%s" % (ns, name), pod_failing)
        else:
            res["cluster"] = watch("/apis/apps/v1/namespaces/%s/deployments?watch=1&fieldSelector=metadata.name%%3D%s" % (ns, name), complete)
    def run_hoist():
        out = subprocess.run([hoist, "run", os.path.join(work, "track.lua"), "--set", "name=" + name, "--set", "ns=" + ns,
                              "--no-color", "--log-level", "warn"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("HOIST "):
                _, t, back, verdict = line.split(" ", 3)
                res["hoist"], res["hoist_back"], res["hoist_verdict"] = float(t), float(back), verdict
        if "hoist" not in res:
            res["hoist_verdict"] = "no verdict: " + out.stderr[-300:]
    def run_kubectl():
        out = subprocess.run(["kubectl", "-n", ns, "rollout", "status", "deployment/" + name, "--timeout=%ss" % kt],
                             capture_output=True, text=True)
        res["kubectl"], res["kubectl_exit"] = time.monotonic(), out.returncode
        res["kubectl_said"] = ((out.stdout.strip().splitlines() or [""])[-1] + " " + (out.stderr.strip().splitlines() or [""])[-1]).strip()
    threads = [threading.Thread(target=f) for f in (observe, run_hoist, run_kubectl)]
    for t in threads: t.start()
    for t in threads: t.join()
    cl = res.get("cluster")
    def after(k):
        return None if res.get(k) is None else res[k] - start
    def rel(k):
        return None if res.get(k) is None or cl is None else res[k] - cl
    rows.append(dict(name=name, case=case, cluster=after("cluster"), hoist=after("hoist"), hoist_rel=rel("hoist"),
                     back_rel=rel("hoist_back"), back=after("hoist_back"),
                     verdict=res.get("hoist_verdict"), kubectl=after("kubectl"), kubectl_rel=rel("kubectl"),
                     kexit=res.get("kubectl_exit"), ksaid=res.get("kubectl_said", "")[:70]))
    subprocess.run(["kubectl", "-n", ns, "delete", "deployment", name, "--wait=false"], capture_output=True)

f = lambda v: "-" if v is None else "%.3fs" % v
g = lambda v: "-" if v is None else "%+.0f ms" % (1000 * v)
print("seconds after `kubectl apply`; 'vs cluster' = minus the moment the emulator's watch delivered the change;")
print("hoist's verdict, then its return with the evidence (pods, events, the crashed container's last lines)")
print("%-8s %-6s %8s %8s %10s %12s %-17s %9s %10s  %s" % ("rollout", "case", "cluster", "hoist", "vs cluster", "returned",
                                                          "hoist verdict", "kubectl", "vs cluster", "kubectl said"))
for r in rows:
    print("%-8s %-6s %8s %8s %10s %12s %-17s %9s %10s  exit %s: %s" % (r["name"], r["case"], f(r["cluster"]), f(r["hoist"]),
          g(r["hoist_rel"]), g(r["back_rel"]), r["verdict"], f(r["kubectl"]), g(r["kubectl_rel"]), r["kexit"], r["ksaid"]))
for case in CASES:
    v = [r["hoist_rel"] for r in rows if r["case"] == case and r["hoist_rel"] is not None]
    if v:
        print("%-5s hoist after the cluster: max %.0f ms, mean %.0f ms (%d rounds)" % (case, 1000 * max(v), 1000 * sum(v) / len(v), len(v)))
later = [r for r in rows if r["back"] is not None and r["kubectl"] is not None and r["back"] > r["kubectl"]]
print("rounds where hoist (returned) was later than kubectl: %d of %d" % (len(later), len(rows)))
PY

if (( ROUNDS > 0 )); then
    echo "== verdict latency: $ROUNDS rounds in namespace $NS (kubectl --timeout=${KUBECTL_TIMEOUT}s)"
    python3 "$WORK/latency.py" "$NS" "$IMAGE" "$ROUNDS" "$HOIST" "$KUBECTL_TIMEOUT" "$WORK"
fi

# -- memory: 50 Deployments tracked at once, on an emulator without a kubelet -------------
MEMPORT=${HOIST_BENCH_KUBE_PORT:-5029}
KS=$(dirname "$KUBECONFIG")
awk '$2=="hoist-admin"{print}' "$KS/tokens" > "$WORK/tokens"
python3 "$ROOT/tests/emulators/kube/server.py" --listen "127.0.0.1:$MEMPORT" \
    --cert "${CA_DIR:-/tmp/hoist-env/ca}/kube-apiserver.crt" --key "${CA_DIR:-/tmp/hoist-env/ca}/kube-apiserver.key" \
    --client-ca "$HOIST_TEST_CA" --token-file "$WORK/tokens" --state "$WORK" --no-kubelet > "$WORK/mem-server.log" 2>&1 &
MEMPID=$!
for _ in $(seq 50); do
    curl -s -o /dev/null --cacert "$HOIST_TEST_CA" "https://127.0.0.1:$MEMPORT/healthz" && break
    sleep 0.2
done
cat > "$WORK/mem-kubeconfig" <<KC
{"apiVersion": "v1", "kind": "Config", "current-context": "m",
 "clusters": [{"name": "m", "cluster": {"server": "https://127.0.0.1:$MEMPORT", "certificate-authority": "$HOIST_TEST_CA"}}],
 "users": [{"name": "m", "user": {"token": "$HOIST_TEST_KUBE_TOKEN"}}],
 "contexts": [{"name": "m", "context": {"cluster": "m", "user": "m", "namespace": "mem"}}]}
KC
cat > "$WORK/mem.lua" <<'LUA'
local n, seconds = tonumber(hoist.args.n), tonumber(hoist.args.seconds)
local kube = hoist.k8s.client {}
kube:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = "mem" } }
local function status(key)
  local text = hoist.fs.read_file("/proc/self/status")
  return tonumber(text:match(key .. ":%s*(%d+)")) / 1024
end
local base = status("VmRSS")
for i = 1, n do
  kube:apply { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "m" .. i },
    spec = { replicas = 3, selector = { matchLabels = { app = "m" .. i } },
             template = { metadata = { labels = { app = "m" .. i } },
                          spec = { containers = { { name = "app", image = "127.0.0.1:5000/never:" .. i } } } } } }
end
local tasks, verdicts = {}, {}
for i = 1, n do
  tasks[i] = hoist.spawn(function()
    local ok, err = pcall(hoist.k8s.rollout, { client = kube, name = "m" .. i, timeout = seconds })
    verdicts[#verdicts + 1] = ok and "done" or err.code
  end)
end
local peak, lua_peak, streams, fds = 0, 0, 0, 0
for _ = 1, seconds * 2 do
  hoist.sleep(0.5)
  peak = math.max(peak, status("VmRSS"))
  lua_peak = math.max(lua_peak, collectgarbage("count") / 1024)
  streams = math.max(streams, kube:shared_streams())
  fds = math.max(fds, #hoist.fs.list("/proc/self/fd"))
end
for _, t in ipairs(tasks) do t:wait() end
local timeouts = 0
for _, v in ipairs(verdicts) do if v == "timeout" then timeouts = timeouts + 1 end end
print(("tracking %d Deployments at once (%d watches on %d streams, at most %d open descriptors) for %ds: RSS %.1f MB before, peak %.1f MB (VmHWM %.1f MB, Lua heap at most %.1f MB); %d of %d ended by their timeout as expected")
  :format(n, 4 * n, streams, fds, seconds, base, peak, status("VmHWM"), lua_peak, timeouts, n))
LUA
echo "== memory: 50 Deployments tracked at once (emulator without kubelet on 127.0.0.1:$MEMPORT)"
KUBECONFIG=$WORK/mem-kubeconfig "$HOIST" run "$WORK/mem.lua" --set n="${TRACK_N:-50}" --set seconds="$TRACK_SECONDS" --no-color --log-level warn
