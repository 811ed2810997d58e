#!/usr/bin/env bash
# Installs hoist into a temporary prefix, builds examples/embed against the installed
# package with find_package(hoist), and runs it. Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/examples/embed" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
# also check the pkg-config file
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --exists hoist
pc_prefix=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --variable=prefix hoist)
if [[ $pc_prefix != "$work/prefix" ]]; then
  echo "hoist.pc says prefix=$pc_prefix; installed with --prefix $work/prefix"
  exit 1
fi
out=$(cd "$src/examples/embed" && LD_LIBRARY_PATH="$work/prefix/lib" "$work/build/embed" script.lua)
echo "$out"
grep -q '"service":"web"' <<<"$out"
grep -q '"missing":"no service named db"' <<<"$out"
grep -q 'key \*\*\* is masked' <<<"$out"
if grep -q 'inventory-api-key-123' <<<"$out"; then echo "secret leaked"; exit 1; fi
echo "embed example: ok"
