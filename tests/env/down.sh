#!/usr/bin/env bash
# Stops what tests/env/up.sh started (token server, the three registries, and dockerd if up.sh
# started it), using the pid files in $HOIST_ENV_DIR (default /tmp/hoist-env). Registry storage,
# keys and docker images are kept, so the next up.sh is fast. `down.sh --purge` also deletes the
# state directory (registry contents, keys, logs).
set -uo pipefail

STATE=${HOIST_ENV_DIR:-/tmp/hoist-env}
PURGE=0
case ${1:-} in
    --purge) PURGE=1 ;;
    "") ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

say() { printf '%-16s %s\n' "$1" "$2"; }
rc=0

# stop NAME PIDFILE CMDLINE-SUBSTRING TIMEOUT-SECONDS
stop() {
    local name=$1 pf=$2 want=$3 secs=$4 pid i
    if [[ ! -s $pf ]]; then say "$name" "not running (no pid file)"; return; fi
    pid=$(<"$pf")
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
        say "$name" "not running (stale pid file)"; rm -f "$pf"; return
    fi
    if ! tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"; then
        say "$name" "pid $pid is not $want any more; left alone"; rm -f "$pf"; return
    fi
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < secs * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null; sleep 0.5
        if kill -0 "$pid" 2>/dev/null; then say "$name" "could not stop pid $pid"; return 1; fi
        say "$name" "killed (pid $pid did not exit on SIGTERM within ${secs}s)"
    else
        say "$name" "stopped (pid $pid)"
    fi
    rm -f "$pf"
}

if [[ ! -d $STATE ]]; then
    echo "down.sh: no state directory $STATE: nothing to stop"
    exit 0
fi

# the emulators first: their workloads are containers on the engine stopped last
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for emu_down in "$HERE"/../emulators/*/down.sh; do
    [[ -x $emu_down ]] || continue
    STATE=$STATE "$emu_down" || rc=1
done

# the registries drain for ~2 s on SIGTERM: stop them (and the token server) in parallel
jobs_=()
stop token-server "$STATE/token/token-server.pid" token_server.py 10 & jobs_+=($!)
for r in anon basic token; do
    stop "registry-$r" "$STATE/registry-$r/registry.pid" docker-registry 10 & jobs_+=($!)
done
for j in "${jobs_[@]}"; do wait "$j" || rc=1; done
stop dockerd "$STATE/dockerd.pid" dockerd 30 || rc=1

if ((PURGE)); then
    if [[ -f $STATE/.hoist-env ]]; then
        rm -rf "$STATE"
        say state "removed $STATE"
    else
        say state "$STATE has no .hoist-env marker; not removed"; rc=1
    fi
fi
exit $rc
