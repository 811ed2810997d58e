#!/usr/bin/env bash
# The test command: installs the Debian packages that are missing (.ci/setup, so a fresh
# machine needs nothing else), builds hoist, starts the local test services (Docker engine
# with the vfs driver, three registries, a token server; all on 127.0.0.1) and runs every test
# (C++ doctest, Lua tests run by hoist itself, integration tests) under ctest.
#   ./test.sh [ctest args...]       e.g. ./test.sh -R lua
set -euo pipefail
cd "$(dirname "$0")"
.ci/setup
tests/peers/install.sh  # npm test peers (the ARM mock scenarios)
# configure every time (a second or less once configured): ./demo.sh may have configured the
# folder without the tests
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOIST_UNITY=ON -DBUILD_TESTING=ON >/dev/null
cmake --build build -j "$(nproc)"
tests/env/up.sh
# shellcheck disable=SC1091
source "${HOIST_ENV_DIR:-/tmp/hoist-env}/env.sh"
ctest --test-dir build --output-on-failure "$@"
