#!/usr/bin/env bash
# The main job on the local default, no cloud account: installs what hoist needs (Debian
# packages), builds it, starts a local Docker engine and registry, then runs the bundled
# `container@1` pipeline on examples/app: build -> scan -> push -> deploy -> verify,
# serving on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")"
.ci/setup
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOIST_UNITY=ON >/dev/null
fi
cmake --build build -j "$(nproc)" >/dev/null
tests/env/up.sh
if build/hoist pipelines 2>/dev/null | grep -q '^container'; then
  exec build/hoist run container@1 --set context=examples/app \
    --set image=127.0.0.1:5000/hoist-demo/app --set port=8080 --set scan=if_available "$@"
else
  exec build/hoist run examples/hello.lua "$@"
fi
