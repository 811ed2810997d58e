#!/usr/bin/env bash
# Starts hoist's local test environment (idempotent; run as root):
#   - dockerd (vfs storage) if the daemon is not reachable,
#   - the base image hoist-test/busybox:latest (FROM scratch + busybox-static; nothing is pulled),
#   - three distribution 2.8 registries on 127.0.0.1: 5000 anonymous, 5001 htpasswd basic auth,
#     5002 bearer token auth, with tokens from tests/env/token_server.py on 127.0.0.1:5003,
#   - $HOIST_ENV_DIR/env.sh with the HOIST_TEST_* variables tests read,
#   - $HOIST_ENV_DIR/cloud.sh with the variables a user sets against Azure and Kubernetes
#     (AZURE_CREDENTIALS, HTTPS_PROXY, NO_PROXY, KUBECONFIG, ...), pointed at the emulators.
# State (configs, logs, pid files, registry storage, keys) lives in $HOIST_ENV_DIR (/tmp/hoist-env).
# Stop with tests/env/down.sh; smoke-test with tests/env/check.sh.
set -euo pipefail
#   tests/env/up.sh --local: only what the local target needs (./demo.sh): the Docker engine,
#   the base image and the anonymous registry on 127.0.0.1:5000; no env.sh.
LOCAL_ONLY=0
[[ ${1:-} == --local ]] && LOCAL_ONLY=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${HOIST_ENV_DIR:-/tmp/hoist-env}
BASE_IMAGE=hoist-test/busybox:latest
DOCKER_SOCK=/var/run/docker.sock

BASIC_USER=hoist
BASIC_PASSWORD=hoist-basic-secret
TOKEN_USER=hoist
TOKEN_PASSWORD=hoist-token-secret
TOKEN_SERVICE=127.0.0.1:5002
TOKEN_ISSUER=hoist-token-server
TOKEN_SERVER=http://127.0.0.1:5003
ACR_USER=00000000-0000-0000-0000-000000000000
AAD_TOKEN=hoist-aad-token

die() { echo "up.sh: ERROR: $*" >&2; exit 1; }
say() { printf '%-16s %s\n' "$1" "$2"; }

[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in docker dockerd docker-registry htpasswd openssl python3 curl busybox; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
BUSYBOX_BIN=$(command -v busybox)
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX_BIN" || { [[ -x /bin/busybox ]] && BUSYBOX_BIN=/bin/busybox; }
file_is_static "$BUSYBOX_BIN" || die "$BUSYBOX_BIN is not statically linked (install busybox-static)"

mkdir -p "$STATE"
[[ -f $STATE/.hoist-env ]] || echo "hoist test environment state dir (tests/env/up.sh)" > "$STATE/.hoist-env"

# ---------------------------------------------------------------------------------------------
# helpers

# pid_alive PIDFILE [CMDLINE-SUBSTRING]: the pid file names a live process (whose command line
# contains the substring, guarding against pid reuse)
pid_alive() {
    local pf=$1 want=${2:-} pid
    [[ -s $pf ]] || return 1
    pid=$(<"$pf")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n $want ]]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_bg PIDFILE LOGFILE CMD...: start CMD detached (own session), log appended to LOGFILE
start_bg() {
    local pf=$1 log=$2; shift 2
    echo "=== $(date -u +%FT%TZ) starting: $*" >> "$log"
    setsid "$@" >> "$log" 2>&1 < /dev/null &
    echo $! > "$pf"
}

# http_status URL [curl args...]: prints the HTTP status code (000 when unreachable)
http_status() {
    local url=$1; shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "$url" 2>/dev/null || true
}

# wait_for SECONDS PIDFILE CHECK-CMD...: wait until CHECK-CMD succeeds; fail early if the process dies
wait_for() {
    local secs=$1 pf=$2; shift 2
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        "$@" && return 0
        if [[ -n $pf ]] && ! pid_alive "$pf"; then return 1; fi
        sleep 0.2
    done
    "$@"
}

stop_pidfile() {
    local pf=$1 pid i
    pid_alive "$pf" || { rm -f "$pf"; return 0; }
    pid=$(<"$pf")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$pf"
}

# ---------------------------------------------------------------------------------------------
# 1. docker daemon

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() { # args: extra dockerd flags
    start_bg "$STATE/dockerd.pid" "$STATE/dockerd.log" \
        dockerd --storage-driver=vfs --host "unix://$DOCKER_SOCK" "$@"
    if wait_for 60 "$STATE/dockerd.pid" docker_ok; then
        return 0
    fi
    stop_pidfile "$STATE/dockerd.pid"
    return 1
}

if docker_ok; then
    if pid_alive "$STATE/dockerd.pid" dockerd; then
        say dockerd "running (pid $(<"$STATE/dockerd.pid"), $(cat "$STATE/docker-mode" 2>/dev/null || echo unknown mode))"
    else
        rm -f "$STATE/dockerd.pid"
        say dockerd "running (not started by up.sh; left alone)"
        echo external > "$STATE/docker-mode"
    fi
else
    if pid_alive "$STATE/dockerd.pid" dockerd; then
        # ours but not answering (still starting?): give it time, else restart
        wait_for 60 "$STATE/dockerd.pid" docker_ok || stop_pidfile "$STATE/dockerd.pid"
    fi
    if ! docker_ok; then
        if start_dockerd; then
            echo iptables > "$STATE/docker-mode"
        else
            echo "up.sh: dockerd did not start with default networking; retrying with --iptables=false --bridge=none" >&2
            tail -n 5 "$STATE/dockerd.log" >&2 || true
            start_dockerd --iptables=false --bridge=none ||
                die "dockerd failed to start (see $STATE/dockerd.log)"
            echo no-iptables > "$STATE/docker-mode"
        fi
    fi
    say dockerd "running (pid $(<"$STATE/dockerd.pid"), $(<"$STATE/docker-mode"), log $STATE/dockerd.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. base image hoist-test/busybox:latest

input_hash=$( { sha256sum "$BUSYBOX_BIN" "$HERE/busybox/Dockerfile" | cut -d' ' -f1; echo v1; } | sha256sum | cut -d' ' -f1)
have_hash=$(docker image inspect -f '{{index .Config.Labels "org.hoist.test-env.input"}}' "$BASE_IMAGE" 2>/dev/null || true)
if [[ $have_hash == "$input_hash" ]]; then
    say base-image "$BASE_IMAGE (up to date)"
else
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/hoist-busybox.XXXXXX")
    trap 'rm -rf "$ctx"' EXIT
    cp "$HERE/busybox/Dockerfile" "$ctx/Dockerfile"
    mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/www" "$ctx/rootfs/usr/bin" "$ctx/rootfs/root"
    chmod 1777 "$ctx/rootfs/tmp"
    cp "$BUSYBOX_BIN" "$ctx/rootfs/bin/busybox"
    chmod 0755 "$ctx/rootfs/bin/busybox"
    for applet in $("$BUSYBOX_BIN" --list); do
        [[ $applet == busybox || $applet == */* ]] && continue
        ln -s busybox "$ctx/rootfs/bin/$applet"
    done
    ln -s ../../bin/busybox "$ctx/rootfs/usr/bin/env"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$ctx/rootfs/etc/group"
    if ! docker build -q --label "org.hoist.test-env.input=$input_hash" -t "$BASE_IMAGE" "$ctx" \
            > "$STATE/base-image-build.log" 2>&1; then
        cat "$STATE/base-image-build.log" >&2
        die "building $BASE_IMAGE failed"
    fi
    rm -rf "$ctx"; trap - EXIT
    say base-image "$BASE_IMAGE (built $(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-19))"
fi
docker run --rm --network none "$BASE_IMAGE" sh -c 'echo ok' 2>/dev/null | grep -qx ok ||
    die "cannot run containers from $BASE_IMAGE"

# ---------------------------------------------------------------------------------------------
# 3. which container networking works: -p 127.0.0.1:PORT or --network host

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

probe_network() { # $1 = publish|host
    local mode=$1 port name rc=1 i
    port=$(free_port)
    name=hoist-env-probe-$$-$mode
    if [[ $mode == publish ]]; then
        docker run -d --name "$name" -p "127.0.0.1:$port:8080" "$BASE_IMAGE" \
            httpd -f -p 8080 -h /etc >/dev/null 2>&1 || { docker rm -f "$name" >/dev/null 2>&1; return 1; }
    else
        docker run -d --name "$name" --network host "$BASE_IMAGE" \
            httpd -f -p "127.0.0.1:$port" -h /etc >/dev/null 2>&1 || { docker rm -f "$name" >/dev/null 2>&1; return 1; }
    fi
    for ((i = 0; i < 25; i++)); do
        if curl -fs --max-time 2 "http://127.0.0.1:$port/passwd" 2>/dev/null | grep -q '^root:'; then rc=0; break; fi
        sleep 0.2
    done
    docker rm -f "$name" >/dev/null 2>&1 || true
    return $rc
}

if probe_network publish; then
    NETWORK_MODE=publish
    say docker-network "publish (docker run -p 127.0.0.1:PORT:PORT works)"
elif probe_network host; then
    NETWORK_MODE=host
    say docker-network "host (-p publishing does not work here; use --network host and bind 127.0.0.1)"
else
    die "containers are unreachable both with -p 127.0.0.1:PORT and with --network host (see $STATE/dockerd.log)"
fi
echo "$NETWORK_MODE" > "$STATE/docker-network-mode"

# ---------------------------------------------------------------------------------------------
# 4. token signing key + certificate, htpasswd

mkdir -p "$STATE/token"
if [[ ! -s $STATE/token/key.pem || ! -s $STATE/token/cert.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=hoist-test-token-issuer" \
        -keyout "$STATE/token/key.pem" -out "$STATE/token/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not create the token signing key"
    chmod 600 "$STATE/token/key.pem"
fi

mkdir -p "$STATE/registry-basic"
if [[ ! -s $STATE/registry-basic/htpasswd ]] ||
   ! htpasswd -vbB "$STATE/registry-basic/htpasswd" "$BASIC_USER" "$BASIC_PASSWORD" >/dev/null 2>&1; then
    htpasswd -Bbn "$BASIC_USER" "$BASIC_PASSWORD" > "$STATE/registry-basic/htpasswd.new" 2>/dev/null ||
        die "htpasswd failed"
    mv "$STATE/registry-basic/htpasswd.new" "$STATE/registry-basic/htpasswd"
fi

# ---------------------------------------------------------------------------------------------
# 5. registries

registry_config() { # name port auth-yaml
    local name=$1 port=$2 auth=$3 dir=$STATE/registry-$1
    mkdir -p "$dir/data"
    if [[ ! -s $dir/http-secret ]]; then
        od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$dir/http-secret"
    fi
    cat <<EOF
# generated by tests/env/up.sh — registry "$name"
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(<"$dir/http-secret")
  headers:
    X-Content-Type-Options: [nosniff]
$auth
EOF
}

start_registry() { # name port auth-yaml
    local name=$1 port=$2 auth=$3 dir=$STATE/registry-$1 status
    local pf=$dir/registry.pid cfg=$dir/config.yml
    mkdir -p "$dir/data"
    registry_config "$name" "$port" "$auth" > "$cfg.new"
    if pid_alive "$pf" docker-registry; then
        if cmp -s "$cfg.new" "$cfg"; then
            rm -f "$cfg.new"
            status=$(http_status "http://127.0.0.1:$port/v2/")
            if [[ $status == 200 || $status == 401 ]]; then
                say "registry-$name" "running on 127.0.0.1:$port (pid $(<"$pf"))"
                return 0
            fi
        fi
        stop_pidfile "$pf"   # config changed or not answering: restart
    fi
    mv "$cfg.new" "$cfg"
    port_open "$port" && die "127.0.0.1:$port is in use by a process up.sh did not start (registry-$name)"
    start_bg "$pf" "$dir/registry.log" docker-registry serve "$cfg"
    wait_for 20 "$pf" bash -c '[[ $(curl -s -o /dev/null -w "%{http_code}" --max-time 2 "$0") =~ ^(200|401)$ ]]' \
        "http://127.0.0.1:$port/v2/" ||
        { tail -n 5 "$dir/registry.log" >&2; die "registry-$name did not start on 127.0.0.1:$port (see $dir/registry.log)"; }
    say "registry-$name" "started on 127.0.0.1:$port (pid $(<"$pf"), log $dir/registry.log)"
}

start_registry anon 5000 ""
if ((LOCAL_ONLY)); then
    say local "the Docker engine, $BASE_IMAGE and the registry on 127.0.0.1:5000 are up (--local)"
    exit 0
fi
start_registry basic 5001 "auth:
  htpasswd:
    realm: hoist-basic-realm
    path: $STATE/registry-basic/htpasswd"
start_registry token 5002 "auth:
  token:
    realm: $TOKEN_SERVER/token
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: $STATE/token/cert.pem"

# ---------------------------------------------------------------------------------------------
# 6. token server

TS_PF=$STATE/token/token-server.pid
TS_ARGS=(python3 "$HERE/token_server.py" --listen 127.0.0.1:5003
         --key "$STATE/token/key.pem" --cert "$STATE/token/cert.pem"
         --issuer "$TOKEN_ISSUER" --service "$TOKEN_SERVICE"
         --user "$TOKEN_USER" --password "$TOKEN_PASSWORD" --aad-token "$AAD_TOKEN"
         --azure-dir "$STATE/azure")
# of content, not location (as the emulators'): up.sh from a second checkout keeps it running
ts_sig=$( { printf '%s\n' "${TS_ARGS[@]#"$HERE"}"; sha256sum < "$HERE/token_server.py"; } | sha256sum | cut -d' ' -f1)
if pid_alive "$TS_PF" token_server.py && [[ $(cat "$STATE/token/token-server.sig" 2>/dev/null) == "$ts_sig" ]] &&
   [[ $(http_status "$TOKEN_SERVER/healthz") == 200 ]]; then
    say token-server "running on 127.0.0.1:5003 (pid $(<"$TS_PF"))"
else
    stop_pidfile "$TS_PF"
    port_open 5003 && die "127.0.0.1:5003 is in use by a process up.sh did not start (token server)"
    start_bg "$TS_PF" "$STATE/token/token-server.log" "${TS_ARGS[@]}"
    wait_for 15 "$TS_PF" bash -c '[[ $(curl -s -o /dev/null -w "%{http_code}" --max-time 2 "$0") == 200 ]]' \
        "$TOKEN_SERVER/healthz" ||
        { tail -n 5 "$STATE/token/token-server.log" >&2; die "token server did not start (see $STATE/token/token-server.log)"; }
    echo "$ts_sig" > "$STATE/token/token-server.sig"
    say token-server "started on 127.0.0.1:5003 (pid $(<"$TS_PF"), log $STATE/token/token-server.log)"
fi

# the token registry must accept our tokens (signature, x5c chain, issuer, audience)
tok=$(curl -fs --max-time 5 -u "$TOKEN_USER:$TOKEN_PASSWORD" \
        "$TOKEN_SERVER/token?service=$TOKEN_SERVICE&scope=registry:catalog:*" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' 2>/dev/null) ||
    die "token server did not issue a token for user $TOKEN_USER"
[[ $(http_status "http://127.0.0.1:5002/v2/_catalog" -H "Authorization: Bearer $tok") == 200 ]] ||
    die "registry-token (127.0.0.1:5002) rejects tokens from the token server (see $STATE/registry-token/registry.log)"
say token-auth "registry-token accepts tokens from $TOKEN_SERVER"

# ---------------------------------------------------------------------------------------------
# 6b. test CA: the emulators serve HTTPS with certificates it signs; hoist, az and kubectl trust it
#     through the usual CA-bundle variables (env.sh: SSL_CERT_FILE, CURL_CA_BUNDLE,
#     REQUESTS_CA_BUNDLE point at the system bundle plus this CA).

CA_DIR=$STATE/ca
mkdir -p "$CA_DIR"
if [[ ! -s $CA_DIR/ca.pem || ! -s $CA_DIR/ca.key ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=hoist test CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$CA_DIR/ca.key" -out "$CA_DIR/ca.pem" >/dev/null 2>&1 ||
        die "openssl could not create the test CA"
    chmod 600 "$CA_DIR/ca.key"
    rm -f "$CA_DIR"/*.crt
fi
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt
{ if [[ -r $SYSTEM_BUNDLE ]]; then cat "$SYSTEM_BUNDLE"; fi; cat "$CA_DIR/ca.pem"; } > "$CA_DIR/bundle.pem.new"
mv "$CA_DIR/bundle.pem.new" "$CA_DIR/bundle.pem"

# issue_cert NAME SAN...: $CA_DIR/NAME.crt + NAME.key, a server certificate for the given
# subject alternative names (DNS:x or IP:x), signed by the test CA; kept while the SANs match.
issue_cert() {
    local name=$1; shift
    local sans; sans=$(IFS=,; echo "$*")
    if [[ -s $CA_DIR/$name.crt && $(cat "$CA_DIR/$name.sans" 2>/dev/null) == "$sans" ]]; then return 0; fi
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$name" \
        -keyout "$CA_DIR/$name.key" -out "$CA_DIR/$name.csr" >/dev/null 2>&1 ||
        die "openssl could not create a key for $name"
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > "$CA_DIR/$name.ext"
    openssl x509 -req -sha256 -days 3650 -in "$CA_DIR/$name.csr" -CA "$CA_DIR/ca.pem" \
        -CAkey "$CA_DIR/ca.key" -CAcreateserial -extfile "$CA_DIR/$name.ext" \
        -out "$CA_DIR/$name.crt" >/dev/null 2>&1 || die "openssl could not sign the certificate of $name"
    chmod 600 "$CA_DIR/$name.key"
    echo "$sans" > "$CA_DIR/$name.sans"
    rm -f "$CA_DIR/$name.csr" "$CA_DIR/$name.ext"
}
export -f issue_cert die say pid_alive port_open start_bg wait_for stop_pidfile http_status
export CA_DIR STATE

# ---------------------------------------------------------------------------------------------
# 7. env.sh

cat > "$STATE/env.sh.new" <<EOF
# generated by tests/env/up.sh — source this file: . $STATE/env.sh
export HOIST_ENV_DIR=$STATE
export HOIST_TEST_DOCKER=1
export HOIST_TEST_BASE_IMAGE=$BASE_IMAGE
export HOIST_TEST_DOCKER_NETWORK_MODE=$NETWORK_MODE
export HOIST_TEST_REGISTRY=127.0.0.1:5000
export HOIST_TEST_REGISTRY_BASIC=127.0.0.1:5001
export HOIST_TEST_REGISTRY_BASIC_USER=$BASIC_USER
export HOIST_TEST_REGISTRY_BASIC_PASSWORD=$BASIC_PASSWORD
export HOIST_TEST_REGISTRY_TOKEN=127.0.0.1:5002
export HOIST_TEST_REGISTRY_TOKEN_USER=$TOKEN_USER
export HOIST_TEST_REGISTRY_TOKEN_PASSWORD=$TOKEN_PASSWORD
export HOIST_TEST_REGISTRY_TOKEN_SERVICE=$TOKEN_SERVICE
export HOIST_TEST_TOKEN_SERVER=$TOKEN_SERVER
export HOIST_TEST_TOKEN_REALM=$TOKEN_SERVER/token
export HOIST_TEST_TOKEN_ISSUER=$TOKEN_ISSUER
export HOIST_TEST_TOKEN_CERT=$STATE/token/cert.pem
export HOIST_TEST_ACR_USER=$ACR_USER
export HOIST_TEST_ACR_AAD_TOKEN=$AAD_TOKEN
export HOIST_TEST_CA=$CA_DIR/ca.pem
export SSL_CERT_FILE=$CA_DIR/bundle.pem
export CURL_CA_BUNDLE=$CA_DIR/bundle.pem
export REQUESTS_CA_BUNDLE=$CA_DIR/bundle.pem
EOF

# ---------------------------------------------------------------------------------------------
# 8. emulators: each tests/emulators/<name>/up.sh starts its service (idempotent; it may use the
#    exported helpers issue_cert, say, die, start_bg, wait_for, pid_alive, stop_pidfile and
#    $STATE, $CA_DIR) and writes its variables to $STATE/<name>/env.sh, appended here.
#    tests/env/down.sh calls each tests/emulators/<name>/down.sh.

for emu_up in "$HERE"/../emulators/*/up.sh; do
    [[ -x $emu_up ]] || continue
    emu=$(basename "$(dirname "$emu_up")")
    mkdir -p "$STATE/$emu"
    "$emu_up" || die "emulator $emu did not start (see $STATE/$emu)"
    if [[ -s $STATE/$emu/env.sh ]]; then
        { echo "# emulator $emu"; cat "$STATE/$emu/env.sh"; } >> "$STATE/env.sh.new"
    fi
done
mv "$STATE/env.sh.new" "$STATE/env.sh"
say env "$STATE/env.sh"

# ---------------------------------------------------------------------------------------------
# 9. cloud.sh: the variables a user sets against the real Azure and Kubernetes, pointed at the
#    emulators (`. /tmp/hoist-env/cloud.sh`, README): the service principal as AZURE_CREDENTIALS,
#    the documented endpoint overrides, the proxy that answers for the cloud host names
#    (*.azurecontainer.io, *.azurewebsites.net, *.azurecontainerapps.io; no DNS look-up of them
#    leaves this machine), NO_PROXY for the local services, KUBECONFIG and the test CA. No
#    HOIST_TEST_* variable: a user's script sees what it would see in CI against Azure.
(
    # shellcheck disable=SC1091
    source "$STATE/env.sh"
    {
        echo "# generated by tests/env/up.sh: what a user sets against Azure and Kubernetes,"
        echo "# pointed at the local emulators. Source it: . $STATE/cloud.sh"
        if [[ -n ${HOIST_TEST_AZURE_CREDENTIALS:-} ]]; then
            q="'\\''"  # a single quote inside single quotes
            printf "export AZURE_CREDENTIALS='%s'\\n" "${HOIST_TEST_AZURE_CREDENTIALS//\'/$q}"
            printf 'export AZURE_RESOURCE_MANAGER_ENDPOINT=%q\n' "$AZURE_RESOURCE_MANAGER_ENDPOINT"
            printf 'export AZURE_AUTHORITY_HOST=%q\n' "$AZURE_AUTHORITY_HOST"
            printf 'export HTTPS_PROXY=%q HTTP_PROXY=%q\n' "$HOIST_TEST_AZURE_PROXY" "$HOIST_TEST_AZURE_PROXY"
            echo "export NO_PROXY=127.0.0.1,localhost"
        fi
        [[ -n ${KUBECONFIG:-} ]] && printf 'export KUBECONFIG=%q\n' "$KUBECONFIG"
        printf 'export SSL_CERT_FILE=%q CURL_CA_BUNDLE=%q REQUESTS_CA_BUNDLE=%q\n' \
            "$SSL_CERT_FILE" "$CURL_CA_BUNDLE" "$REQUESTS_CA_BUNDLE"
    } > "$STATE/cloud.sh.new"
    chmod 600 "$STATE/cloud.sh.new"
    mv "$STATE/cloud.sh.new" "$STATE/cloud.sh"
)
say cloud "$STATE/cloud.sh (. it to run hoist against the emulators as against Azure)"
