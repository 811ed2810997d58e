#!/usr/bin/env bash
# Smoke test of the environment started by tests/env/up.sh, with the real docker CLI and curl:
#   - builds a tiny image FROM hoist-test/busybox and pushes it to the anonymous, basic-auth and
#     token-auth registries (docker login first), comparing the digest printed by `docker push`
#     with the Docker-Content-Digest header of HEAD /v2/<repo>/manifests/<tag>;
#   - the token server: Docker GET /token and POST /token (password and refresh_token grants),
#     bad credentials, scopes enforced by the registry, `docker login` with an ACR refresh token;
#   - the ACR flow: /oauth2/exchange (AAD token) -> refresh token -> /oauth2/token -> tags/list;
#   - manifest deletion; the sample app in examples/app (VERSION, /health, HEALTHY=false).
# Docker credentials go to a throw-away DOCKER_CONFIG, never to ~/.docker.
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
STATE=${HOIST_ENV_DIR:-/tmp/hoist-env}
[[ -f $STATE/env.sh ]] || { echo "check.sh: $STATE/env.sh not found: run tests/env/up.sh first" >&2; exit 2; }
# shellcheck source=/dev/null
. "$STATE/env.sh"

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$1"; [[ -n ${2:-} ]] && printf '      %s\n' "$2"; return 0; }
check() { # check NAME CMD... : pass when CMD succeeds
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(tail -n 3 <<<"$out" | tr '\n' ' ')"; fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hoist-check.XXXXXX")
CONTAINERS=()
cleanup() {
    local c
    for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    rm -rf "$WORK"
}
trap cleanup EXIT
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"

MANIFEST_ACCEPT="application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"
REPO=hoist-check/smoke
TAG=latest
SVC=$HOIST_TEST_REGISTRY_TOKEN_SERVICE
TS=$HOIST_TEST_TOKEN_SERVER

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]])' "$1"; }
head_digest() { # REGISTRY REPO TAG [curl args]: prints Docker-Content-Digest of the manifest
    local reg=$1 repo=$2 tag=$3; shift 3
    curl -sfI --max-time 10 -H "Accept: $MANIFEST_ACCEPT" "$@" "http://$reg/v2/$repo/manifests/$tag" |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }'
}
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
get_token() { # SCOPE [curl -u creds]: bearer token from the token server
    local scope=$1; shift
    curl -sf --max-time 10 "$@" -G "$TS/token" --data-urlencode "service=$SVC" --data-urlencode "scope=$scope" |
        json_get token
}

# ---------------------------------------------------------------------------------------------
echo "== docker"
check "docker daemon reachable" docker info
check "base image $HOIST_TEST_BASE_IMAGE present" docker image inspect "$HOIST_TEST_BASE_IMAGE"

NONCE="$(date +%s%N)-$$"
mkdir -p "$WORK/ctx"
printf 'FROM %s\nCOPY nonce /nonce\nCMD ["cat", "/nonce"]\n' "$HOIST_TEST_BASE_IMAGE" > "$WORK/ctx/Dockerfile"
echo "$NONCE" > "$WORK/ctx/nonce"
LOCAL_IMAGE=hoist-check/smoke:$NONCE
if docker build -q -t "$LOCAL_IMAGE" "$WORK/ctx" >"$WORK/build.log" 2>&1 &&
   [[ $(docker run --rm "$LOCAL_IMAGE") == "$NONCE" ]]; then
    pass "build and run a tiny image FROM $HOIST_TEST_BASE_IMAGE"
else
    fail "build and run a tiny image FROM $HOIST_TEST_BASE_IMAGE" "$(tail -n 3 "$WORK/build.log")"
fi

# push_and_compare NAME REGISTRY [curl auth args...]
push_and_compare() {
    local name=$1 reg=$2; shift 2
    local ref=$reg/$REPO:$TAG out pushed served
    docker tag "$LOCAL_IMAGE" "$ref"
    if ! out=$(docker push "$ref" 2>&1); then
        fail "$name: docker push $ref" "$(tail -n 2 <<<"$out" | tr '\n' ' ')"
        docker rmi "$ref" >/dev/null 2>&1
        return
    fi
    pass "$name: docker push $ref"
    pushed=$(grep -o 'digest: sha256:[0-9a-f]\{64\}' <<<"$out" | head -n 1 | cut -d' ' -f2)
    served=$(head_digest "$reg" "$REPO" "$TAG" "$@")
    if [[ -n $pushed && $pushed == "$served" ]]; then
        pass "$name: pushed digest = Docker-Content-Digest ($pushed)"
    else
        fail "$name: pushed digest = Docker-Content-Digest" "push said '$pushed', registry says '$served'"
    fi
    docker rmi "$ref" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
echo "== anonymous registry $HOIST_TEST_REGISTRY"
push_and_compare anon "$HOIST_TEST_REGISTRY"
tags=$(curl -sf --max-time 10 "http://$HOIST_TEST_REGISTRY/v2/$REPO/tags/list")
check "anon: tags/list has $TAG" grep -q "\"$TAG\"" <<<"$tags"

# manifest deletion (storage.delete.enabled) on a throw-away repository
docker tag "$LOCAL_IMAGE" "$HOIST_TEST_REGISTRY/hoist-check/delete-me:$NONCE"
if docker push "$HOIST_TEST_REGISTRY/hoist-check/delete-me:$NONCE" >/dev/null 2>&1; then
    d=$(head_digest "$HOIST_TEST_REGISTRY" hoist-check/delete-me "$NONCE")
    s=$(status_of -X DELETE "http://$HOIST_TEST_REGISTRY/v2/hoist-check/delete-me/manifests/$d")
    s2=$(status_of -I -H "Accept: $MANIFEST_ACCEPT" "http://$HOIST_TEST_REGISTRY/v2/hoist-check/delete-me/manifests/$d")
    if [[ $s == 202 && $s2 == 404 ]]; then pass "anon: DELETE manifest -> 202, then 404"
    else fail "anon: DELETE manifest" "DELETE gave $s, HEAD afterwards gave $s2"; fi
else
    fail "anon: push for the delete test"
fi
docker rmi "$HOIST_TEST_REGISTRY/hoist-check/delete-me:$NONCE" >/dev/null 2>&1

# ---------------------------------------------------------------------------------------------
echo "== basic-auth registry $HOIST_TEST_REGISTRY_BASIC"
B=$HOIST_TEST_REGISTRY_BASIC
s=$(status_of "http://$B/v2/")
check "basic: /v2/ without credentials -> 401 (got $s)" test "$s" = 401
check "basic: docker login with a wrong password fails" \
    bash -c '! docker login -u "$1" --password-stdin "$2" <<<"wrong-password"' _ "$HOIST_TEST_REGISTRY_BASIC_USER" "$B"
check "basic: docker login" \
    bash -c 'docker login -u "$1" --password-stdin "$2" <<<"$3"' _ "$HOIST_TEST_REGISTRY_BASIC_USER" "$B" "$HOIST_TEST_REGISTRY_BASIC_PASSWORD"
push_and_compare basic "$B" -u "$HOIST_TEST_REGISTRY_BASIC_USER:$HOIST_TEST_REGISTRY_BASIC_PASSWORD"

# ---------------------------------------------------------------------------------------------
echo "== token-auth registry $HOIST_TEST_REGISTRY_TOKEN (token server $TS)"
T=$HOIST_TEST_REGISTRY_TOKEN
chal=$(curl -s -D - -o /dev/null --max-time 10 "http://$T/v2/" | tr -d '\r' | grep -i '^www-authenticate:')
check "token: /v2/ challenge is Bearer realm=$HOIST_TEST_TOKEN_REALM service=$SVC" \
    grep -q "Bearer realm=\"$HOIST_TEST_TOKEN_REALM\",service=\"$SVC\"" <<<"$chal"

body=$(curl -s --max-time 10 -u "$HOIST_TEST_REGISTRY_TOKEN_USER:wrong" "$TS/token?service=$SVC&scope=repository:$REPO:pull" -w '\n%{http_code}')
check "token server: bad password -> 401 {errors:[{code:UNAUTHORIZED}]}" \
    bash -c '[[ $(tail -n1 <<<"$1") == 401 ]] && head -n1 <<<"$1" | python3 -c "import json,sys; assert json.load(sys.stdin)[\"errors\"][0][\"code\"] == \"UNAUTHORIZED\""' _ "$body"

check "token: docker login" \
    bash -c 'docker login -u "$1" --password-stdin "$2" <<<"$3"' _ "$HOIST_TEST_REGISTRY_TOKEN_USER" "$T" "$HOIST_TEST_REGISTRY_TOKEN_PASSWORD"
PULL_TOKEN=$(get_token "repository:$REPO:pull" -u "$HOIST_TEST_REGISTRY_TOKEN_USER:$HOIST_TEST_REGISTRY_TOKEN_PASSWORD")
[[ -n $PULL_TOKEN ]] && pass "token server: GET /token (basic auth) issued a pull token" ||
    fail "token server: GET /token (basic auth) issued a pull token"
push_and_compare token "$T" -H "Authorization: Bearer $PULL_TOKEN"

s=$(status_of -I -H "Accept: $MANIFEST_ACCEPT" "http://$T/v2/$REPO/manifests/$TAG")
check "token: manifest without a token -> 401 (got $s)" test "$s" = 401
anon=$(get_token "repository:$REPO:pull")
s=$(status_of -I -H "Accept: $MANIFEST_ACCEPT" -H "Authorization: Bearer $anon" "http://$T/v2/$REPO/manifests/$TAG")
check "token: anonymous token grants nothing -> 401 (got $s)" test "$s" = 401
s=$(status_of -X POST -H "Authorization: Bearer $PULL_TOKEN" "http://$T/v2/$REPO/blobs/uploads/")
check "token: pull-only token cannot start an upload -> 401 (got $s)" test "$s" = 401
bad="${PULL_TOKEN%?????}AAAAA"
s=$(status_of -I -H "Accept: $MANIFEST_ACCEPT" -H "Authorization: Bearer $bad" "http://$T/v2/$REPO/manifests/$TAG")
check "token: token with a broken signature -> 401 (got $s)" test "$s" = 401

# POST /token (Docker OAuth2): password grant with access_type=offline, then refresh_token grant
resp=$(curl -sf --max-time 10 -X POST "$TS/token" --data-urlencode grant_type=password \
    --data-urlencode "username=$HOIST_TEST_REGISTRY_TOKEN_USER" --data-urlencode "password=$HOIST_TEST_REGISTRY_TOKEN_PASSWORD" \
    --data-urlencode "service=$SVC" --data-urlencode "scope=repository:$REPO:pull" \
    --data-urlencode client_id=hoist-check --data-urlencode access_type=offline)
REFRESH=$(json_get refresh_token <<<"$resp" 2>/dev/null)
check "token server: POST /token grant_type=password returns a refresh token" test -n "$REFRESH"
resp=$(curl -sf --max-time 10 -X POST "$TS/token" --data-urlencode grant_type=refresh_token \
    --data-urlencode "refresh_token=$REFRESH" --data-urlencode "service=$SVC" \
    --data-urlencode "scope=repository:$REPO:pull" --data-urlencode client_id=hoist-check)
at=$(json_get access_token <<<"$resp" 2>/dev/null)
s=$(status_of -I -H "Accept: $MANIFEST_ACCEPT" -H "Authorization: Bearer $at" "http://$T/v2/$REPO/manifests/$TAG")
check "token server: POST /token grant_type=refresh_token -> token accepted by the registry (got $s)" test "$s" = 200

# ---------------------------------------------------------------------------------------------
echo "== ACR-style flow on $T"
resp=$(curl -sf --max-time 10 -X POST "$TS/oauth2/exchange" --data-urlencode grant_type=access_token \
    --data-urlencode "service=$SVC" --data-urlencode "access_token=$HOIST_TEST_ACR_AAD_TOKEN")
ACR_REFRESH=$(json_get refresh_token <<<"$resp" 2>/dev/null)
check "acr: /oauth2/exchange AAD token -> refresh token" test -n "$ACR_REFRESH"
s=$(status_of -X POST "$TS/oauth2/exchange" --data-urlencode grant_type=access_token \
    --data-urlencode "service=$SVC" --data-urlencode "access_token=not-the-aad-token")
check "acr: /oauth2/exchange with a wrong AAD token -> 401 (got $s)" test "$s" = 401
resp=$(curl -sf --max-time 10 -X POST "$TS/oauth2/token" --data-urlencode grant_type=refresh_token \
    --data-urlencode "service=$SVC" --data-urlencode "scope=repository:$REPO:pull" \
    --data-urlencode "refresh_token=$ACR_REFRESH")
ACR_ACCESS=$(json_get access_token <<<"$resp" 2>/dev/null)
check "acr: /oauth2/token refresh token -> access token" test -n "$ACR_ACCESS"
tags=$(curl -sf --max-time 10 -H "Authorization: Bearer $ACR_ACCESS" "http://$T/v2/$REPO/tags/list")
check "acr: GET /v2/$REPO/tags/list with the access token lists $TAG" grep -q "\"$TAG\"" <<<"$tags"
acr_tok=$(get_token "repository:$REPO:pull" -u "$HOIST_TEST_ACR_USER:$ACR_REFRESH")
check "acr: GET /token with basic $HOIST_TEST_ACR_USER:<refresh token>" test -n "$acr_tok"
docker logout "$T" >/dev/null 2>&1
docker rmi "$LOCAL_IMAGE" >/dev/null 2>&1
check "acr: docker login -u $HOIST_TEST_ACR_USER -p <refresh token>" \
    bash -c 'docker login -u "$1" --password-stdin "$2" <<<"$3"' _ "$HOIST_TEST_ACR_USER" "$T" "$ACR_REFRESH"
check "acr: docker pull $T/$REPO:$TAG after that login" docker pull -q "$T/$REPO:$TAG"
docker rmi "$T/$REPO:$TAG" >/dev/null 2>&1

# ---------------------------------------------------------------------------------------------
echo "== examples/app (network mode $HOIST_TEST_DOCKER_NETWORK_MODE)"
APP=$REPO_ROOT/examples/app
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_app() { # IMAGE NAME -> prints port
    local image=$1 name=$2 port
    port=$(free_port)
    if [[ $HOIST_TEST_DOCKER_NETWORK_MODE == host ]]; then
        docker run -d --name "$name" --network host -e HOST=127.0.0.1 -e PORT="$port" "$image" >/dev/null
    else
        docker run -d --name "$name" -p "127.0.0.1:$port:8080" "$image" >/dev/null
    fi
    CONTAINERS+=("$name")
    echo "$port"
}
wait_http() { local i; for ((i = 0; i < 50; i++)); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; return 1; }
if docker build -q --build-arg VERSION="check-$NONCE" -t hoist-check/app:good "$APP" >"$WORK/app.log" 2>&1 &&
   docker build -q --build-arg VERSION="check-$NONCE-bad" --build-arg HEALTHY=false -t hoist-check/app:bad "$APP" >>"$WORK/app.log" 2>&1; then
    pass "app: docker build (HEALTHY=true and HEALTHY=false)"
    p=$(run_app hoist-check/app:good "hoist-check-app-good-$$")
    q=$(run_app hoist-check/app:bad "hoist-check-app-bad-$$")
    wait_http "http://127.0.0.1:$p/"; wait_http "http://127.0.0.1:$q/"
    r=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$p/health")
    check "app: GET /health -> 200 ok (got '$r')" test "$r" = "ok 200"
    r=$(curl -s --max-time 5 "http://127.0.0.1:$p/version")
    check "app: GET /version -> check-$NONCE" test "$r" = "check-$NONCE"
    check "app: index.html shows the version" bash -c 'curl -s --max-time 5 "$1" | grep -qF "$2"' _ "http://127.0.0.1:$p/" "check-$NONCE"
    s=$(status_of "http://127.0.0.1:$q/health")
    check "app: HEALTHY=false build: GET /health -> 404 (got $s)" test "$s" = 404
    r=$(curl -s --max-time 5 "http://127.0.0.1:$q/version")
    check "app: HEALTHY=false build still serves /version" test "$r" = "check-$NONCE-bad"
else
    fail "app: docker build" "$(tail -n 3 "$WORK/app.log")"
fi
docker rm -f "hoist-check-app-good-$$" "hoist-check-app-bad-$$" >/dev/null 2>&1
docker rmi hoist-check/app:good hoist-check/app:bad >/dev/null 2>&1

echo
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
