#!/usr/bin/env bash
# Stops the Kubernetes emulator and removes the containers its kubelet started
# (labels hoist-emulator=kube, hoist-emulator-instance=<its port>). State in $STATE/kube is kept.
set -uo pipefail
STATE=${STATE:-${HOIST_ENV_DIR:-/tmp/hoist-env}}
KS=$STATE/kube
PF=$KS/server.pid
rc=0
if [[ -s $PF ]] && pid=$(<"$PF") && [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
   tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q server.py; then
    kill -TERM "$pid"
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    printf '%-16s %s\n' kube "stopped (pid $pid)"
else
    printf '%-16s %s\n' kube "not running"
fi
rm -f "$PF"
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=hoist-emulator=kube \
        --filter "label=hoist-emulator-instance=$(cat "$KS/port" 2>/dev/null || echo 5020)")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null || rc=1
        printf '%-16s %s\n' kube-pods "removed $(wc -w <<<"$ids") container(s)"
    fi
fi
exit $rc
