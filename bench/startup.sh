#!/usr/bin/env bash
# Startup cost: `hoist run` of an empty script against peers that people run in the same
# CI step (kubectl, az, bash), measured in the same minute. Prints mean wall time and peak
# RSS per command and the ratio to hoist.
#   bench/startup.sh [RUNS] [HOIST_BIN]
set -euo pipefail
runs=${1:-30}
hoist=${2:-$(dirname "$0")/../build/hoist}
hoist=$(realpath "$hoist")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/empty.lua"
cd "$work"

measure() { # name, command...: prints "name mean_ms peak_rss_kb"
  local name=$1; shift
  "$@" >/dev/null 2>&1 || true # warm the page cache
  local start end rss max_rss=0
  start=$(date +%s%N)
  for _ in $(seq "$runs"); do "$@" >/dev/null 2>&1 || true; done
  end=$(date +%s%N)
  rss=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1)
  echo "$name $(( (end - start) / runs / 1000 )) $rss"
}

results=()
results+=("$(measure "hoist-run-empty" "$hoist" run empty.lua --state-dir "$work/.hoist")")
results+=("$(measure "bash-empty" bash -c :)")
command -v kubectl >/dev/null && results+=("$(measure "kubectl-version-client" kubectl version --client)")
command -v az >/dev/null && results+=("$(measure "az-version" az version)")
command -v docker >/dev/null && results+=("$(measure "docker-version-client" docker --version)")

base_us=$(awk '{print $2}' <<<"${results[0]}")
printf '%-24s %12s %12s %10s\n' command mean_ms peak_rss_MB vs_hoist
for r in "${results[@]}"; do
  read -r name us rss <<<"$r"
  awk -v n="$name" -v us="$us" -v rss="$rss" -v base="$base_us" \
    'BEGIN { printf "%-24s %12.1f %12.1f %9.1fx\n", n, us/1000, rss/1024, us/base }'
done
