#!/usr/bin/env bash
# ctest shared-fixtures: is ../shared/fixtures there (next to the repository; HOIST_FIXTURES
# elsewhere)? The conformance checks that read it skip without it, inside tests that otherwise
# pass: cpp (k8s classify and Status bodies, registry manifests), lua (json, yaml, trivy,
# policy), azure-emulator (test_fixtures.py), kube_emulator_kubectl (conformance). This test
# makes that skip show in the ctest summary: exit 77 (SKIP_RETURN_CODE) without the folder, 1
# under CI=true (CI has the fixtures; each of those checks fails there too).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${HOIST_FIXTURES:-$root/../shared/fixtures}
if [[ -d $dir ]]; then
    echo "../shared/fixtures: $dir ($(find "$dir" -type f | wc -l) files)"
    exit 0
fi
what="../shared/fixtures absent ($dir): the fixture conformance of cpp, lua, azure-emulator and kube_emulator_kubectl did not run"
if [[ ${CI:-} == true ]]; then
    echo "FAIL: $what (CI=true: not skipping)"
    exit 1
fi
echo "skipped: $what"
exit 77
