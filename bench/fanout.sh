#!/usr/bin/env bash
# N services deployed three ways, on the local target of tests/env (127.0.0.1 ports):
#   one:    one `hoist run container@1` with services (N entries, concurrency CONCURRENCY)
#   procs:  N `hoist run container@1` processes at once, one service each (today's fan-out)
#   serial: the same N runs one after another
# for N = 1, 10, 50 (NS). Every run deploys the same image by digest (`artifacts`: built and
# pushed once before, so no mode builds; scan off, verify_timeout 5, drain 0): the bench is
# the fan-out of deploys, not of builds. The image: examples/app on the tiny busybox base
# image of tests/env. Each mode deploys services of its own (first deploys), removed after.
#
# Reported per mode:
#   wall       from the first process's start to the last one's end
#   hoist      hoist's own share of the wall time: the wall time minus the time during which
#              at least one hoist process waited on something outside it: a child process
#              (docker CLI, `hoist proxy --detach`) or an HTTP request (health checks, the
#              registry), from the intervals of the exec.end and http.request events in the
#              runs' events.jsonl (start = ts - duration), merged across all processes of
#              the mode. What is left is hoist's own work: process start, parameter checks,
#              journal, scheduling, and its sleeps between health probes (counted as hoist's:
#              they are its policy), so the share is an upper bound.
#   hoist CPU  the CPU time (user + system) of the hoist run processes themselves, their
#              children excluded: utime + stime of /proc/<pid>/stat, read once the process has
#              exited and before it is reaped (waitid WNOWAIT), summed over the mode's
#              processes. With N processes at once the wall share above says little (while
#              one process works another waits on docker); this says what hoist cost.
#   peak RSS   VmHWM of each hoist process (its own, children excluded), polled every 50 ms
#              (5 ms while one process runs, so that its end is noticed at once: the bench's
#              own delay would count as hoist's in the serial mode) from /proc/<pid>/status
#              while it runs: the largest, and what the mode's
#              processes hold together at most (procs: the sum; one and serial: the largest)
# ROUNDS rounds of every mode (the modes of one N in turn, each round on services of its own);
# prints the medians of wall, hoist and hoist CPU, the largest peaks, one row per (N, mode), and the
# ratios of one process against the two others.
# Not part of ./test.sh. Needs tests/env/up.sh and `. /tmp/hoist-env/env.sh`.
#   bench/fanout.sh [HOIST_BIN] [NS] [CONCURRENCY] [ROUNDS]   e.g. bench/fanout.sh build/hoist "1 10 50" 8 3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
hoist=$(realpath "${1:-$root/build/hoist}")
ns=${2:-"1 10 50"}
concurrency=${3:-8}
rounds=${4:-3}
reg=${HOIST_TEST_REGISTRY:-127.0.0.1:5000}
base=${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}
id=$(date +%s | tail -c 6)$$
repo=$reg/hoist-fleet-bench-$id/app
work=$(mktemp -d /tmp/hoist-fleet-bench.XXXXXX)
trap 'docker rmi -f "$repo:bench" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

echo "building and pushing $repo:bench (once, before any mode)..." >&2
docker build -q -t "$repo:bench" --build-arg BASE_IMAGE="$base" --build-arg VERSION=bench "$root/examples/app" >/dev/null
docker push -q "$repo:bench" >/dev/null
ref=$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$repo:bench" | grep -F "$reg/hoist-fleet-bench-$id/app@" | head -1)
[ -n "$ref" ] || { echo "no digest for $repo:bench" >&2; exit 1; }

cat > "$work/remove.lua" <<'EOF'
-- takes the bench's services down (untimed): hoist run remove.lua --set state=DIR --set names=a,b
for name in hoist.args.names:gmatch("[^,]+") do
  require("hoist.targets.local").remove { service = name, state_dir = hoist.args.state }
end
EOF

python3 - "$hoist" "$ns" "$concurrency" "$repo" "$ref" "$work" "hoist-fleet-bench-$id" "$root" "$rounds" <<'PY'
import json, os, socket, subprocess, sys, time
hoist, ns, conc, repo, ref, work, prefix, root, rounds = sys.argv[1:10]
ns, conc, rounds = [int(n) for n in ns.split()], int(conc), int(rounds)

def free_ports(n):
    """n ports free on 127.0.0.1 below the kernel's ephemeral range, from which docker
    publishes the candidates' ports (a service port taken from it may be a candidate's)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    ports, port = [], 20000 if low > 20000 + 1000 else 10000
    while len(ports) < n and port < low:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
        port += 1
    return ports

def hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"): return int(line.split()[1])
    except OSError:
        pass
    return None

TICK = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    """utime + stime of an exited, not yet reaped process (its children excluded)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def run(cmds, parallel, logs):
    """Runs the commands (all at once, or one after another); returns wall seconds, peaks (kB),
    the start time and the processes' own CPU seconds."""
    peaks, cpu, t0 = [0] * len(cmds), [0.0] * len(cmds), time.time()
    def start(i):  # output to files: a full pipe would stop a process before it ends
        with open(os.path.join(logs, f"out-{i}.txt"), "w") as out:
            return subprocess.Popen(cmds[i], cwd=root, stdout=out, stderr=subprocess.STDOUT)
    def watch(live):
        while live:
            for i, p in list(live.items()):
                kb = hwm_kb(p.pid)
                if kb: peaks[i] = max(peaks[i], kb)
                if os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    cpu[i] = cpu_seconds(p.pid)
                    p.wait()
                    if p.returncode != 0:
                        with open(os.path.join(logs, f"out-{i}.txt")) as f:
                            sys.exit(f"run {i} exited with {p.returncode}:\n{f.read()[-3000:]}")
                    del live[i]
            # one process (serial): notice its end at once, or the gap counts as hoist's
            time.sleep(0.05 if len(live) > 1 else 0.005)
    if parallel:
        watch({i: start(i) for i in range(len(cmds))})
    else:
        for i in range(len(cmds)): watch({i: start(i)})
    return time.time() - t0, peaks, t0, sum(cpu)

def waiting(state, t0, t1):
    """Seconds in [t0, t1] during which some hoist process of `state` waited on a child or HTTP."""
    spans = []
    runs = os.path.join(state, "runs")
    for rid in os.listdir(runs):
        with open(os.path.join(runs, rid, "events.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if e.get("kind") in ("exec.end", "http.request"):
                    d = (e.get("fields") or {}).get("duration")
                    if isinstance(d, (int, float)):
                        spans.append((max(t0, e["ts"] - d), min(t1, e["ts"])))
    spans.sort()
    total, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if e <= s: continue
        if cur_e is None or s > cur_e:
            if cur_e is not None: total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None: total += cur_e - cur_s
    return total

common = {"target": "local", "scan": "off", "verify_timeout": 5, "drain": 0, "image": repo}
def median(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2]

samples = {}
def one_mode(n, mode, r):
        state = os.path.join(work, f"{mode}-{n}-{r}")
        os.makedirs(state)
        names = [f"{prefix}-{mode[0]}{n}r{r}-{i}" for i in range(n)]
        ports = free_ports(n)
        artifacts = os.path.join(state, "artifacts.json")
        with open(artifacts, "w") as f: json.dump({name: ref for name in names}, f)
        run_cmd = [hoist, "run", "container@1", "--state-dir", state, "--no-color", "--log-level", "warn", "--params-file"]
        cmds = []
        if mode == "one":
            p = dict(common, artifacts=artifacts, concurrency=conc,
                     services=[{"name": name, "port": port} for name, port in zip(names, ports)])
            path = os.path.join(state, "params.json")
            with open(path, "w") as f: json.dump(p, f)
            cmds.append(run_cmd + [path])
        else:
            for i, (name, port) in enumerate(zip(names, ports)):
                path = os.path.join(state, f"params-{i}.json")
                with open(path, "w") as f: json.dump(dict(common, artifacts=artifacts, name=name, port=port), f)
                cmds.append(run_cmd + [path])
        try:
            wall, peaks, t0, cpu = run(cmds, parallel=(mode == "procs"), logs=state)
        finally:  # the services go, also when a run failed
            subprocess.run([hoist, "run", os.path.join(work, "remove.lua"), "--set", "state=" + state,
                            "--set", "names=" + ",".join(names), "--log-level", "warn"], check=True, cwd=root,
                           stdout=subprocess.DEVNULL)
        own = wall - waiting(state, t0, t0 + wall)
        # what the mode's processes hold together at most: all of them at once, else the largest
        samples.setdefault((n, mode), []).append((wall, own, max(peaks), sum(peaks) if mode == "procs" else max(peaks), cpu))
        print(f"  round {r} N={n} {mode}: wall {wall:.2f}s, hoist {own:.2f}s, hoist CPU {cpu:.2f}s", file=sys.stderr, flush=True)

results = {}
print(f"{'N':>3} {'mode':<7} {'wall s':>8} {'hoist s':>8} {'hoist %':>8} {'CPU s':>7} {'peak RSS MB':>12} {'sum RSS MB':>11}")
for n in ns:
    for r in range(rounds):
        for mode in ("one", "procs", "serial"): one_mode(n, mode, r)
    for mode in ("one", "procs", "serial"):
        xs = samples[(n, mode)]
        wall, own, cpu = median([x[0] for x in xs]), median([x[1] for x in xs]), median([x[4] for x in xs])
        peak, total = max(x[2] for x in xs), max(x[3] for x in xs)
        results[(n, mode)] = (wall, own, peak, total, cpu)
        print(f"{n:>3} {mode:<7} {wall:8.2f} {own:8.2f} {100 * own / wall:7.0f}% {cpu:7.2f} {peak / 1024:12.1f} {total / 1024:11.1f}",
              flush=True)
for n in ns:
    o, p, s = results[(n, "one")], results[(n, "procs")], results[(n, "serial")]
    print(f"N={n}: one process vs {n} processes at once: wall {p[0] / o[0]:.1f}x, hoist CPU {p[4] / o[4]:.1f}x, "
          f"peak RSS held together {p[3] / o[3]:.1f}x; vs one after another: wall {s[0] / o[0]:.1f}x, "
          f"hoist's own wall time {s[1] / o[1]:.1f}x, hoist CPU {s[4] / o[4]:.1f}x")
print(f"medians of {rounds} round(s); reproduce: bench/fanout.sh {hoist} \"{' '.join(map(str, ns))}\" {conc} {rounds}")
PY
