#!/usr/bin/env bash
# Starts the Azure emulator (server.py) on 127.0.0.1:5010-5015; called by tests/env/up.sh with
# the helpers issue_cert, say, die, start_bg, wait_for, pid_alive, stop_pidfile, http_status and
# STATE, CA_DIR exported. Idempotent: a running emulator is restarted only when its code or
# arguments changed. State and log in $STATE/azure/; variables in $STATE/azure/env.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STATE:?STATE is not set (run tests/env/up.sh)}" "${CA_DIR:?CA_DIR is not set}"
DIR=$STATE/azure
mkdir -p "$DIR"
PF=$DIR/emulator.pid
LOG=$DIR/emulator.log

issue_cert azure IP:127.0.0.1 DNS:localhost

ARGS=(python3 "$HERE/server.py" --state "$DIR" --cert "$CA_DIR/azure.crt" --key "$CA_DIR/azure.key" --ca-dir "$CA_DIR")
# the signature is of content, not location: a second checkout of the same code (a CI clone,
# a worktree) keeps the running emulator, and the cluster state of everyone using it
sig=$( { printf '%s\n' "${ARGS[@]#"$HERE"}"; (cd "$HERE" && find server.py azemu -name '*.py' | sort | xargs sha256sum)
         sha256sum < "$CA_DIR/azure.crt"; } | sha256sum | cut -d' ' -f1)
healthy() { [[ $(http_status "http://127.0.0.1:5013/_emulator/health") == 200 ]]; }

if pid_alive "$PF" server.py && [[ $(cat "$DIR/emulator.sig" 2>/dev/null) == "$sig" ]] && healthy; then
    say azure "running on 127.0.0.1:5010-5015 (pid $(<"$PF"))"
else
    stop_pidfile "$PF"
    for port in 5010 5011 5012 5013 5014 5015; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is in use by a process up.sh did not start (azure emulator)"
        fi
    done
    start_bg "$PF" "$LOG" "${ARGS[@]}"
    wait_for 20 "$PF" healthy ||
        { tail -n 20 "$LOG" >&2; die "the azure emulator did not start (see $LOG)"; }
    echo "$sig" > "$DIR/emulator.sig"
    say azure "started on 127.0.0.1:5010-5015 (pid $(<"$PF"), log $LOG)"
fi

python3 "$HERE/envfile.py" > "$DIR/env.sh.new"
mv "$DIR/env.sh.new" "$DIR/env.sh"
