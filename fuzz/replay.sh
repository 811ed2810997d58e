#!/usr/bin/env bash
# Runs every fuzz target once over each input of its corpus (fuzz/corpus/<target>/, crash
# files included) and over the recorded fixtures of ../shared/fixtures that fit it.
# Exits non-zero on the first input that fails.
#   fuzz/replay.sh [BUILD_DIR]        default: build-asan (configured with HOIST_FUZZ=ON)
# HOIST_FIXTURES overrides where the recorded fixtures are (default ../shared/fixtures).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build-asan}" && pwd)
# shellcheck source=fuzz/seeds.sh
source "$root/fuzz/seeds.sh"
log=$(mktemp /tmp/hoist-replay.XXXXXX)
trap 'rm -f "$log"' EXIT
total=0
for name in $HOIST_FUZZ_TARGETS; do
  bin=$build/fuzz/fuzz_$name
  [[ -x $bin ]] || { echo "replay: $bin is missing (configure with -DHOIST_FUZZ=ON)" >&2; exit 1; }
  mapfile -t files < <(fuzz_seeds "$name")
  start=$SECONDS
  # the KILL bounds an out-of-memory report, whose heap profile of 2 GB takes minutes
  if ! timeout -s KILL 300 "$bin" -timeout=60 -rss_limit_mb=1024 -malloc_limit_mb=256 "${files[@]}" >"$log" 2>&1; then
    tail -40 "$log"
    echo "replay: fuzz_$name FAILED on the $(grep -o 'Running: .*' "$log" | tail -1)" >&2
    exit 1
  fi
  echo "replay: fuzz_$name ${#files[@]} inputs ok ($((SECONDS - start)) s)"
  total=$((total + ${#files[@]}))
done
echo "replay: $total inputs, every target clean"
