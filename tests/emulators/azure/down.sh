#!/usr/bin/env bash
# Stops the Azure emulator and removes the containers it started (label hoist-emulator=azure).
set -uo pipefail
STATE=${STATE:-${HOIST_ENV_DIR:-/tmp/hoist-env}}
PF=$STATE/azure/emulator.pid
rc=0
if [[ -s $PF ]]; then
    pid=$(<"$PF")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
       tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF server.py; then
        kill -TERM "$pid"
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
        printf '%-16s %s\n' azure "stopped (pid $pid)"
    else
        printf '%-16s %s\n' azure "not running (stale pid file)"
    fi
    rm -f "$PF"
else
    printf '%-16s %s\n' azure "not running (no pid file)"
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=hoist-emulator=azure)
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null || rc=1
        printf '%-16s %s\n' azure "removed $(wc -w <<<"$ids") container(s)"
    fi
fi
exit $rc
