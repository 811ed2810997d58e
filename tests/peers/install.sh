#!/usr/bin/env bash
# Installs the npm test peers pinned in tests/peers/package-lock.json (Microsoft's ARM mock
# scenarios, served by tsp-spector) into tests/peers/node_modules. Idempotent: does nothing
# when node_modules matches the lock file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if ! command -v npm >/dev/null; then
  echo "tests/peers/install.sh: npm is not installed (apt-get install npm)" >&2
  exit 1
fi
stamp=node_modules/.hoist-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then exit 0; fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
