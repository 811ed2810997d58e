#!/usr/bin/env bash
# Runs the Azure emulator's own tests (ctest: azure-emulator): identity, ARM core, ACR, AKS, ACI,
# App Service, Container Apps and Machine Learning (containers: under /tmp/hoist-docker.lock), the fixture
# conformance and azure-cli.
# Each skips with a message when the emulator (tests/env/up.sh) or its tool is absent.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${HOIST_ENV_DIR:-/tmp/hoist-env}
# shellcheck disable=SC1091
[[ -z ${HOIST_TEST_AZURE_CONTROL:-} && -r $STATE/env.sh ]] && source "$STATE/env.sh"
cd "$HERE" || exit 1
rc=0
for t in test_identity.py test_managedidentity.py test_authorization.py test_arm.py test_acr.py test_aks.py; do
    echo "== $t"; python3 "$t" 2>&1 || rc=1
done
for t in test_aci.py test_appservice.py test_containerapp.py test_azureml.py; do
    echo "== $t"
    flock -w 900 /tmp/hoist-docker.lock python3 "$t" 2>&1 || { echo "FAIL $t (or no docker lock in 900 s)"; rc=1; }
done
echo "== test_fixtures.py"; python3 test_fixtures.py || rc=1
echo "== test_az.sh"  # ACI and App Service run containers
flock -w 900 /tmp/hoist-docker.lock ./test_az.sh || { echo "FAIL test_az.sh (or no docker lock in 900 s)"; rc=1; }
exit $rc
