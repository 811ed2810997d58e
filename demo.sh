#!/usr/bin/env bash
# The main job on the local default, no cloud account: installs what hoist needs to build and
# run (Debian packages of .ci/packages-runtime; the test-only ones wait for ./test.sh), builds
# the hoist binary only, starts a local Docker engine and registry (tests/env/up.sh --local:
# no emulators), then runs the bundled `container@1` pipeline on examples/app:
# build -> scan -> push -> deploy -> verify, serving on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")"
.ci/setup --runtime
if [ ! -f build/build.ninja ]; then  # ./test.sh turns the tests on in the same folder later
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOIST_UNITY=ON -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build build -j "$(nproc)" --target hoist >/dev/null
tests/env/up.sh --local
exec build/hoist run container@1 --set context=examples/app \
  --set image=127.0.0.1:5000/hoist-demo/app --set port=8080 --set scan=if_available "$@"
