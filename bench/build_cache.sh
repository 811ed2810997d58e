#!/usr/bin/env bash
# A rebuild with one changed source file on an engine that has none of the image's layers (a
# fresh CI runner), without and with container@1's cache_from (the previous build pulled from
# the registry as --cache-from), on the registry of tests/env:
#   peer:  docker build (the rebuild today: every step runs again)
#   hoist: hoist.docker.build with cache_from = the previous build's tag (classic builder: the
#          image is pulled first, then its layers are reused up to the changed COPY)
# The image: FROM the base image, a RUN step that costs SLOW_STEPS loop turns of busybox sh (a
# compile stands in), 20 MB of dependencies, then COPY of the one source file that changes.
# Before each rebuild every image of the bench is removed from the engine (the base image
# stays: a runner has it in both cases). Prints the medians of ROUNDS rebuilds and the ratio.
# Needs tests/env/up.sh and `. /tmp/hoist-env/env.sh`.
#   bench/build_cache.sh [HOIST_BIN] [ROUNDS] [SLOW_STEPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hoist=$(realpath "${1:-$here/../build/hoist}")
rounds=${2:-3}
steps=${3:-2000000}
reg=${HOIST_TEST_REGISTRY:-127.0.0.1:5000}
base=${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}
id=$(date +%s)-$$
repo=$reg/hoist-bench-cache-$id/app
work=$(mktemp -d /tmp/hoist-bench-cache.XXXXXX)
clean() { docker rmi -f "$repo:prev" "$repo:peer" "$repo:hoist" >/dev/null 2>&1 || true; }
trap 'clean; rm -rf "$work"' EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

mkdir -p "$work/ctx"
cat > "$work/ctx/Dockerfile" <<EOF
FROM $base
RUN i=0; while [ \$i -lt $steps ]; do i=\$((i+1)); done; head -c 20000000 /dev/urandom > /deps
COPY src.txt /app/src.txt
EOF
echo "v0" > "$work/ctx/src.txt"
echo "building and pushing the previous build $repo:prev..." >&2
DOCKER_BUILDKIT=0 docker build -q -t "$repo:prev" "$work/ctx" >/dev/null
docker push "$repo:prev" >/dev/null
cat > "$work/build.lua" <<EOF
hoist.docker.build { context = "$work/ctx", tags = { "$repo:hoist" }, builder = "classic", stream = false,
                     cache_from = { "$repo:prev" } }
EOF

peer=() mine=()
for r in $(seq 1 "$rounds"); do
  echo "v$r" > "$work/ctx/src.txt"
  clean
  t0=$(now); DOCKER_BUILDKIT=0 docker build -q -t "$repo:peer" "$work/ctx" >/dev/null; t1=$(now)
  peer+=("$(ms "$t0" "$t1")")
  clean
  t0=$(now); "$hoist" run "$work/build.lua" --no-color --log-level warn >/dev/null; t1=$(now)
  mine+=("$(ms "$t0" "$t1")")
  echo "round $r: docker build ${peer[-1]} ms, hoist cache_from ${mine[-1]} ms" >&2
done
p=$(printf '%s\n' "${peer[@]}" | median)
h=$(printf '%s\n' "${mine[@]}" | median)
echo "rebuild with one changed file on an empty engine (median of $rounds): docker build $p ms, hoist with cache_from $h ms; ratio $(awk -v a="$p" -v b="$h" 'BEGIN { printf "%.1f", a / b }')x"
