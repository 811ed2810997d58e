#!/usr/bin/env bash
# registry.copy against its peers, in the same minute, on the registries of tests/env:
#   1. same registry (127.0.0.1:5000 -> a new repository): hoist registry.copy vs.
#      `skopeo copy` vs. `docker pull` + `docker tag` + `docker push` (local image removed first)
#   2. across registries (:5000 -> :5001): registry.copy's throughput vs. curl downloading the
#      same blobs on loopback
# on an image of ~100 MB (FROM the base image + 4 layers of 25 MB from /dev/urandom).
# Prints the times and the ratios. Needs tests/env/up.sh and `. /tmp/hoist-env/env.sh`.
#   bench/registry_copy.sh [HOIST_BIN] [LAYER_MB]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hoist=$(realpath "${1:-$here/../build/hoist}")
layer_mb=${2:-25}
reg=${HOIST_TEST_REGISTRY:-127.0.0.1:5000}
basic=${HOIST_TEST_REGISTRY_BASIC:-127.0.0.1:5001}
basic_user=${HOIST_TEST_REGISTRY_BASIC_USER:-hoist}
basic_pw=${HOIST_TEST_REGISTRY_BASIC_PASSWORD:-hoist-basic-secret}
base=${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}
id=$(date +%s)-$$
repo=hoist-bench-$id
work=$(mktemp -d /tmp/hoist-bench-registry.XXXXXX)
export DOCKER_CONFIG=$work/docker
trap 'docker rmi -f "$reg/$repo/big:v1" "$reg/$repo/docker:v1" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }

# ---- the image
mkdir -p "$work/ctx"
{
  echo "FROM $base"
  for i in 1 2 3 4; do
    head -c $((layer_mb * 1024 * 1024)) /dev/urandom > "$work/ctx/blob$i"
    echo "COPY blob$i /blob$i"
  done
} > "$work/ctx/Dockerfile"
echo "building and pushing $reg/$repo/big:v1 (4 x $layer_mb MB)..." >&2
docker build -q -t "$reg/$repo/big:v1" "$work/ctx" >/dev/null
docker push "$reg/$repo/big:v1" >/dev/null
docker rmi -f "$reg/$repo/big:v1" >/dev/null
rm -f "$work"/ctx/blob*

# ---- hoist script: copies FROM to TO, prints milliseconds spent inside the copy
cat > "$work/copy.lua" <<'EOF'
local a = hoist.args
local auth = a.user and { username = a.user, password = hoist.secret(a.password) } or nil
local t0 = hoist.now()
local r = hoist.registry.copy { from = a.from, to = a.to, to_auth = auth }
io.write(("%d %d %d %d %d\n"):format(math.floor((hoist.now() - t0) * 1000), r.bytes, r.blobs_copied,
  r.blobs_mounted, r.blobs_skipped))
EOF
hoist_copy() { # from to [user password]: prints "inside_ms bytes copied mounted skipped"
  local args=(--set "from=$1" --set "to=$2")
  [[ $# -ge 4 ]] && args+=(--set "user=$3" --set "password=$4")
  "$hoist" run "$work/copy.lua" --state-dir "$work/state" --log-level warn "${args[@]}"
}

# ---- 1. same registry
t0=$(now); read -r h_in h_bytes h_copied h_mounted h_skipped < <(hoist_copy "$reg/$repo/big:v1" "$reg/$repo/hoist:v1"); t1=$(now)
hoist_ms=$(ms "$t0" "$t1")

t0=$(now)
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
  "docker://$reg/$repo/big:v1" "docker://$reg/$repo/skopeo:v1" >/dev/null
t1=$(now); skopeo_ms=$(ms "$t0" "$t1")

t0=$(now)
docker pull -q "$reg/$repo/big:v1" >/dev/null
docker tag "$reg/$repo/big:v1" "$reg/$repo/docker:v1"
docker push "$reg/$repo/docker:v1" >/dev/null
t1=$(now); docker_ms=$(ms "$t0" "$t1")

# ---- 2. across registries: registry.copy vs. curl GET of the same blobs
t0=$(now); read -r x_in x_bytes x_copied x_mounted x_skipped < <(hoist_copy "$reg/$repo/big:v1" "$basic/$repo/cross:v1" "$basic_user" "$basic_pw"); t1=$(now)
cross_ms=$(ms "$t0" "$t1")

manifest=$(curl -fsS -H "Accept: application/vnd.docker.distribution.manifest.v2+json" "http://$reg/v2/$repo/big/manifests/v1")
digests=$(python3 -c 'import json,sys; m=json.load(sys.stdin); print("\n".join([m["config"]["digest"]]+[l["digest"] for l in m["layers"]]))' <<<"$manifest")
t0=$(now)
curl_bytes=0
for d in $digests; do
  n=$(curl -fsS -o /dev/null -w '%{size_download}' "http://$reg/v2/$repo/big/blobs/$d")
  curl_bytes=$((curl_bytes + n))
done
t1=$(now); curl_ms=$(ms "$t0" "$t1")

# the same copy done with curl: GET each blob piped into a monolithic PUT (sequential)
t0=$(now)
for d in $digests; do
  loc=$(curl -fsS -u "$basic_user:$basic_pw" -X POST -D - -o /dev/null "http://$basic/v2/$repo/curlpipe/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  size=$(curl -fsSI "http://$reg/v2/$repo/big/blobs/$d" | tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }')
  curl -fsS "http://$reg/v2/$repo/big/blobs/$d" |
    curl -fsS -u "$basic_user:$basic_pw" -T - -H "Content-Length: $size" -H "Content-Type: application/octet-stream" \
      -o /dev/null "$loc&digest=$d"
done
t1=$(now); pipe_ms=$(ms "$t0" "$t1")

# what the destination can absorb at all: curl PUT of one file of the same size (no source)
head -c "$curl_bytes" /dev/urandom > "$work/upload"
up_digest=sha256:$(sha256sum "$work/upload" | cut -d' ' -f1)
loc=$(curl -fsS -u "$basic_user:$basic_pw" -X POST -D - -o /dev/null "http://$basic/v2/$repo/putonly/blobs/uploads/" |
      tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
t0=$(now)
curl -fsS -u "$basic_user:$basic_pw" -T "$work/upload" -H "Content-Type: application/octet-stream" -o /dev/null \
  "$loc&digest=$up_digest"
t1=$(now); put_ms=$(ms "$t0" "$t1")
rm -f "$work/upload"

mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? b / 1048576 / (ms / 1000) : 0) }'; }
cat <<EOF
image: $reg/$repo/big:v1, 4 x $layer_mb MB layers
same registry ($reg -> new repository):
  hoist registry.copy   ${hoist_ms} ms (${h_in} ms inside the copy; mounted $h_mounted, copied $h_copied, skipped $h_skipped)
  skopeo copy           ${skopeo_ms} ms   -> hoist is $(ratio "$skopeo_ms" "$hoist_ms")x faster (goal >= 2x)
  docker pull+tag+push  ${docker_ms} ms   -> hoist is $(ratio "$docker_ms" "$hoist_ms")x faster (goal >= 20x)
across registries ($reg -> $basic):
  hoist registry.copy   ${cross_ms} ms for $x_bytes bytes (${x_in} ms inside): $(mbps "$x_bytes" "$x_in") MB/s
  curl GET of the blobs ${curl_ms} ms for $curl_bytes bytes: $(mbps "$curl_bytes" "$curl_ms") MB/s
  -> curl's throughput / hoist's = $(ratio "$(mbps "$curl_bytes" "$curl_ms")" "$(mbps "$x_bytes" "$x_in")") (goal <= 2)
  curl PUT of a file    ${put_ms} ms for as many bytes: $(mbps "$curl_bytes" "$put_ms") MB/s (what $basic can ingest: the bound)
  curl GET | curl PUT   ${pipe_ms} ms for the same blobs: $(mbps "$curl_bytes" "$pipe_ms") MB/s (the copy done with curl, one blob at a time)
EOF
