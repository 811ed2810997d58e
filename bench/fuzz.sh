#!/usr/bin/env bash
# Fuzzes each target for MINUTES, one after the other (one process each), starting from its
# corpus and the recorded fixtures, and prints what each did: executions, and coverage (libFuzzer's
# cov = edges, ft = features) at the start and the end.
#   bench/fuzz.sh MINUTES [BUILD_DIR] [TARGET...]     BUILD_DIR default build-asan
# New inputs go to $HOIST_FUZZ_WORK/<target> (default /tmp/hoist-fuzz), not into the repository;
# a crash is written to fuzz/corpus/<target>/crash-<sha1> (commit it once it is fixed, so the
# replay keeps it fixed) and the run goes on with the next target. Exit 1 if any crashed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:?usage: bench/fuzz.sh MINUTES [BUILD_DIR] [TARGET...]}
build=$(cd "${2:-$root/build-asan}" && pwd)
shift $(($# >= 2 ? 2 : 1))
# shellcheck source=fuzz/seeds.sh
source "$root/fuzz/seeds.sh"
work=${HOIST_FUZZ_WORK:-/tmp/hoist-fuzz}
targets=${*:-$HOIST_FUZZ_TARGETS}
status=0
printf '%-10s %10s %9s %15s %15s %7s  %s\n' target execs exec/s cov ft corpus result
for name in $targets; do
  bin=$build/fuzz/fuzz_$name
  [[ -x $bin ]] || { echo "bench/fuzz.sh: $bin is missing (configure with -DHOIST_FUZZ=ON)" >&2; exit 1; }
  mkdir -p "$work/$name" "$work/$name.seeds"
  fuzz_seeds "$name" | while read -r f; do cp "$f" "$work/$name.seeds/$(sha1sum <"$f" | cut -c1-16)"; done
  log=$work/$name.log
  # the KILL bounds an out-of-memory report, whose heap profile of 2 GB takes minutes
  timeout -s KILL $((minutes * 60 + 300)) nice -n 19 "$bin" -max_total_time=$((minutes * 60)) -timeout=60 -rss_limit_mb=2048 -malloc_limit_mb=256 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$root/fuzz/corpus/$name/" \
    "$work/$name" "$work/$name.seeds" >"$log" 2>&1
  rc=$?
  inited=$(grep -m1 -E '#[0-9]+\s+INITED' "$log")
  last=$(grep -E '#[0-9]+\s+(DONE|NEW|REDUCE|pulse|RELOAD)' "$log" | tail -1)
  stat() { grep -m1 -oE "stat::$1: +[0-9]+" "$log" | grep -oE '[0-9]+$'; }
  execs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  field() { grep -o "$1: [0-9]*" <<<"$2" | head -1 | grep -o '[0-9]*$'; }
  result=ok
  if ((rc != 0)); then
    result="CRASH $(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //') (log: $log)"
    status=1
  fi
  printf '%-10s %10s %9s %15s %15s %7s  %s\n' "$name" "${execs:-?}" "${rate:-?}" \
    "$(field cov "$inited")->$(field cov "$last")" "$(field ft "$inited")->$(field ft "$last")" \
    "$(field corp "$last")" "$result"
done
exit $status
