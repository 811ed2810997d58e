#!/usr/bin/env bash
# hoist's ARM client against Microsoft's own mock service: serves
# @azure-tools/azure-http-specs with tsp-spector on 127.0.0.1, runs tests/azure/spector.lua
# (hoist.azure.request through every scenario below), stops the mock so it writes its
# coverage, and asserts the mock's own verdict for every Azure_ResourceManager_* scenario (71)
# Usage: tests/azure/spector.sh [repo-root] [hoist-binary]
set -euo pipefail
root="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/../..}" && pwd)"
hoist="${2:-${HOIST_BIN:-$root/build/hoist}}"
peers="$root/tests/peers"
"$peers/install.sh"
specs="$peers/node_modules/@azure-tools/azure-http-specs/specs"
spector="$peers/node_modules/.bin/tsp-spector"

work="$(mktemp -d /tmp/hoist-spector.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# tsp-spector wants a git work tree around it
git -C "$work" init -q
(cd "$work" && exec "$spector" serve "$specs" --port "$port" --coverageFile "$work/coverage.json" >"$work/serve.log" 2>&1) &
pid=$!
for _ in $(seq 1 300); do
  if grep -q "Started server" "$work/serve.log" 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$work/serve.log" >&2; echo "spector: the mock server died" >&2; exit 1; fi
  sleep 0.1
done

status=0
HOIST_TEST_SPECTOR_URL="http://127.0.0.1:$port" "$hoist" test "$root/tests/azure/spector.lua" || status=$?

(cd "$work" && "$spector" server stop --port "$port" >/dev/null)
wait "$pid" || true
pid=""
python3 - "$work/coverage.json" <<'PY' || status=1
import json, sys
results = {}
for report in json.load(open(sys.argv[1])):
    results.update(report.get("results", {}))
wanted = sorted(k for k in results if k.startswith("Azure_ResourceManager_"))
passed = [k for k in wanted if results[k] == "pass"]
for k in wanted:
    print(f"{results[k]:>16}  {k}")
failed = len(wanted) - len(passed)
print(f"spector: {len(passed)} passed, {failed} failed")
# the pinned specs have 71: fewer in the coverage means scenarios went unreported
if len(wanted) < 71:
    print(f"spector: only {len(wanted)} Azure_ResourceManager_* scenarios in the coverage, 71 expected")
sys.exit(1 if failed or len(wanted) < 71 else 0)
PY
exit "$status"
