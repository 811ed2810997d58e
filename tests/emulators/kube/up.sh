#!/usr/bin/env bash
# Starts the Kubernetes emulator on https://127.0.0.1:5020 (called by tests/env/up.sh, which
# exports issue_cert, say, die, start_bg, wait_for, pid_alive, stop_pidfile, STATE, CA_DIR).
# Idempotent: a running emulator is left alone unless its code or arguments changed.
# State, logs and the kubeconfig live in $STATE/kube/; variables go to $STATE/kube/env.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STATE:?run tests/env/up.sh (it exports STATE, CA_DIR and issue_cert)}"
: "${CA_DIR:?run tests/env/up.sh (it exports STATE, CA_DIR and issue_cert)}"
declare -F issue_cert >/dev/null || { echo "kube/up.sh: run from tests/env/up.sh (issue_cert missing)" >&2; exit 1; }

KS=$STATE/kube
PORT=${HOIST_KUBE_PORT:-5020}
SERVER=https://127.0.0.1:$PORT
mkdir -p "$KS"
echo "$PORT" > "$KS/port"     # down.sh removes the containers of this instance only

issue_cert kube-apiserver IP:127.0.0.1 DNS:localhost

# client certificate CN=hoist-admin, O=system:masters (what kubectl presents)
client_cert() { # NAME CN
    local name=$1 cn=$2
    [[ -s $KS/$name.crt && -s $KS/$name.key ]] &&
        openssl verify -CAfile "$CA_DIR/ca.pem" "$KS/$name.crt" >/dev/null 2>&1 && return 0
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=system:masters/CN=$cn" \
        -keyout "$KS/$name.key" -out "$KS/$name.csr" >/dev/null 2>&1 || die "openssl: key for $cn"
    printf 'extendedKeyUsage=clientAuth\n' > "$KS/$name.ext"
    openssl x509 -req -sha256 -days 3650 -in "$KS/$name.csr" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
        -CAcreateserial -extfile "$KS/$name.ext" -out "$KS/$name.crt" >/dev/null 2>&1 ||
        die "openssl: signing the client certificate of $cn"
    chmod 600 "$KS/$name.key"
    rm -f "$KS/$name.csr" "$KS/$name.ext"
}
client_cert admin hoist-admin
client_cert viewer hoist-viewer

# static tokens: admin and a read-only viewer (403 on writes)
if [[ ! -s $KS/tokens ]]; then
    umask 077
    printf '%s hoist-admin\n%s hoist-viewer\n' \
        "hoist-kube-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" \
        "hoist-kube-viewer-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" > "$KS/tokens"
    umask 022
fi
ADMIN_TOKEN=$(awk '$2=="hoist-admin"{print $1}' "$KS/tokens")
VIEWER_TOKEN=$(awk '$2=="hoist-viewer"{print $1}' "$KS/tokens")

b64() { base64 -w0 < "$1"; }
write_kubeconfig() { # FILE USER-CERT-NAME
    cat > "$1.new" <<KC
apiVersion: v1
kind: Config
clusters:
- name: hoist-emulator
  cluster:
    server: $SERVER
    certificate-authority-data: $(b64 "$CA_DIR/ca.pem")
users:
- name: hoist-admin
  user:
    client-certificate-data: $(b64 "$KS/admin.crt")
    client-key-data: $(b64 "$KS/admin.key")
- name: hoist-token
  user:
    token: $ADMIN_TOKEN
- name: hoist-viewer
  user:
    token: $VIEWER_TOKEN
contexts:
- name: hoist-emulator
  context:
    cluster: hoist-emulator
    user: hoist-admin
    namespace: default
- name: hoist-emulator-token
  context:
    cluster: hoist-emulator
    user: hoist-token
    namespace: default
- name: hoist-emulator-viewer
  context:
    cluster: hoist-emulator
    user: hoist-viewer
    namespace: default
current-context: hoist-emulator
KC
    chmod 600 "$1.new"
    mv "$1.new" "$1"
}
write_kubeconfig "$KS/kubeconfig"

ARGS=(python3 "$HERE/server.py" --listen "127.0.0.1:$PORT"
      --cert "$CA_DIR/kube-apiserver.crt" --key "$CA_DIR/kube-apiserver.key"
      --client-ca "$CA_DIR/ca.pem" --token-file "$KS/tokens" --state "$KS"
      --history "${HOIST_KUBE_HISTORY:-1000}" --bookmark-interval "${HOIST_KUBE_BOOKMARK_INTERVAL:-5}"
      --crash-backoff "${HOIST_KUBE_CRASH_BACKOFF:-10}")
PF=$KS/server.pid
# the signature is of content, not location: a second checkout of the same code (a CI clone,
# a worktree) keeps the running emulator, and the cluster state of everyone using it
sig=$( { printf '%s\n' "${ARGS[@]#"$HERE"}"; cat "$HERE"/*.py | sha256sum; sha256sum < "$CA_DIR/kube-apiserver.crt"; } |
       sha256sum | cut -d' ' -f1)
healthy() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CA_DIR/ca.pem" "$SERVER/healthz") == 200 ]]; }

if pid_alive "$PF" server.py && [[ $(cat "$KS/server.sig" 2>/dev/null) == "$sig" ]] && healthy; then
    say kube "running on $SERVER (pid $(<"$PF"))"
else
    stop_pidfile "$PF"
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null &&
        die "127.0.0.1:$PORT is in use by a process up.sh did not start (kube emulator)"
    start_bg "$PF" "$KS/server.log" "${ARGS[@]}"
    wait_for 20 "$PF" healthy ||
        { tail -n 20 "$KS/server.log" >&2; die "kube emulator did not start (see $KS/server.log)"; }
    echo "$sig" > "$KS/server.sig"
    say kube "started on $SERVER (pid $(<"$PF"), log $KS/server.log)"
fi

cat > "$KS/env.sh" <<EOF
export KUBECONFIG=$KS/kubeconfig
export HOIST_TEST_KUBE_SERVER=$SERVER
export HOIST_TEST_KUBE_TOKEN=$ADMIN_TOKEN
export HOIST_TEST_KUBE_VIEWER_TOKEN=$VIEWER_TOKEN
export HOIST_TEST_KUBE_CONTROL=$SERVER/_emulator
export HOIST_TEST_KUBE_CLIENT_CERT=$KS/admin.crt
export HOIST_TEST_KUBE_CLIENT_KEY=$KS/admin.key
EOF
