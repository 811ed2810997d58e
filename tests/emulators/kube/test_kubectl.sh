#!/usr/bin/env bash
# ctest entry: the Kubernetes emulator against real kubectl (see test_kubectl.py).
# Exit 77 (skipped) when the test environment or kubectl is missing; exit 1 then when CI=true.
set -uo pipefail
skip() { echo "skipped: $*"; [[ ${CI:-} == true ]] && { echo "FAIL  CI=true: the environment must be up"; exit 1; }; exit 77; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${HOIST_ENV_DIR:-/tmp/hoist-env}
ENV_FILE=${HOIST_KUBE_ENV:-$STATE/env.sh}
[[ -f $ENV_FILE ]] || skip "$ENV_FILE absent (run tests/env/up.sh)"
# shellcheck source=/dev/null
. "$ENV_FILE"
[[ -n ${HOIST_TEST_KUBE_SERVER:-} ]] || skip "the kube emulator is not in $ENV_FILE (run tests/env/up.sh)"
command -v kubectl >/dev/null || skip "kubectl is not installed"
# the workload image, in the anonymous registry the emulator's kubelet pulls from
docker tag "${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}" "$HOIST_TEST_REGISTRY/hoist-test/busybox:latest" &&
    docker push -q "$HOIST_TEST_REGISTRY/hoist-test/busybox:latest" >/dev/null ||
    { echo "FAIL  cannot push the workload image to $HOIST_TEST_REGISTRY"; exit 1; }
# and in the basic-auth registry, for imagePullSecrets (credentials in a throw-away DOCKER_CONFIG)
cfg=$(mktemp -d "${TMPDIR:-/tmp}/kube-test-docker.XXXXXX")
trap 'rm -rf "$cfg"' EXIT
if [[ -n ${HOIST_TEST_REGISTRY_BASIC:-} ]]; then
    printf '%s' "$HOIST_TEST_REGISTRY_BASIC_PASSWORD" |
        docker --config "$cfg" login -u "$HOIST_TEST_REGISTRY_BASIC_USER" --password-stdin "$HOIST_TEST_REGISTRY_BASIC" >/dev/null 2>&1 &&
    docker tag "${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}" "$HOIST_TEST_REGISTRY_BASIC/hoist-test/private:latest" &&
    docker --config "$cfg" push -q "$HOIST_TEST_REGISTRY_BASIC/hoist-test/private:latest" >/dev/null ||
        { echo "FAIL  cannot push the private workload image to $HOIST_TEST_REGISTRY_BASIC"; exit 1; }
fi
rm -rf "$cfg"
exec flock /tmp/hoist-docker.lock python3 "$HERE/test_kubectl.py"
