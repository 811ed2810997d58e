#!/usr/bin/env bash
# hoist's Resource Manager client beside Debian's azure-cli, in the same run, on the Azure
# emulator of tests/env (source /tmp/hoist-env/env.sh first):
#   1. one ARM GET (a resource group): `hoist run` of a script making the call, vs `az rest`;
#   2. one PUT that is a long-running operation (a resource group created in the emulator's
#      Azure-AsyncOperation mode, polled to Succeeded, then the resource read): hoist.azure.request
#      with wait = true, vs `az rest --method put` followed by `az rest` GETs of the operation until
#      it ends and a GET of the resource (what a workflow script does: az rest does not poll).
# Each is run N times (default 5); the median wall time of each side and the ratio az / hoist are
# printed, and hoist's own time inside the process (without its start-up). The emulator's
# Retry-After is set to 0 for these two (restored after), so waiting does not hide the clients.
#   3. ACI deploys in parallel from one process (bench/aci_parallel.lua): one `hoist run`
#      deploys one container group (hoist.azure.aci.create_or_update: PUT, its long-running
#      operation, then the instance view until it runs), then ACI_N (default 10) at once as
#      hoist.spawn tasks; real containers through the emulator (Docker: run it under
#      flock /tmp/hoist-docker.lock). Prints each deploy's wall time split into the PUT and the
#      wait, what of it the emulator spent in Docker (the group's Pulling to Started events), the
#      wall time of the batch and its ratio to the single deploy (the emulator's Retry-After
#      stays at its 1 s: ten clients polling without a pause would measure the polls); then,
#      as a baseline of the engine underneath, the same containers started with `docker run`
#      directly (1, then ACI_N at once). The groups are deleted at the end.
#   bench/azure.sh [HOIST_BIN] [N] [PARTS]     PARTS: "rest,aci" (default), "rest" or "aci"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hoist=$(realpath "${1:-$here/../build/hoist}")
n=${2:-5}
parts=${3:-rest,aci}
: "${HOIST_TEST_AZURE_CONTROL:?source /tmp/hoist-env/env.sh first (the Azure emulator)}"

# ---- 3. ACI deploys in parallel (first: it needs no az)
if [[ ,$parts, == *,aci,* ]]; then
  image=$HOIST_TEST_REGISTRY_TOKEN/hoist-bench/aci:1
  skopeo copy --quiet --dest-tls-verify=false \
    --dest-creds "$HOIST_TEST_REGISTRY_TOKEN_USER:$HOIST_TEST_REGISTRY_TOKEN_PASSWORD" \
    "docker-daemon:${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}" "docker://$image"
  echo "== ${ACI_N:-10} ACI deploys in parallel from one hoist process"
  aci_state=$(mktemp -d /tmp/hoist-bench-aci.XXXXXX)
  rc=0
  env AZURE_CLIENT_ID="$HOIST_TEST_AZURE_CLIENT_ID" AZURE_TENANT_ID="$HOIST_TEST_AZURE_TENANT_ID" \
    AZURE_CLIENT_SECRET="$HOIST_TEST_AZURE_CLIENT_SECRET" AZURE_SUBSCRIPTION_ID="$HOIST_TEST_AZURE_SUBSCRIPTION_ID" \
    BENCH_REGISTRY_PASSWORD="$HOIST_TEST_REGISTRY_TOKEN_PASSWORD" \
    "$hoist" run "$here/aci_parallel.lua" --state-dir "$aci_state" --log-level warn \
    --set "n=${ACI_N:-10}" --set "image=$image" --set "user=$HOIST_TEST_REGISTRY_TOKEN_USER" \
    --set "resource_group=hoist-bench-aci-$$" || rc=$?
  rm -rf "$aci_state"
  [[ $rc == 0 ]] || exit "$rc"
fi
[[ ,$parts, == *,rest,* ]] || exit 0
command -v az >/dev/null || { echo "bench/azure.sh: az (azure-cli) is not installed" >&2; exit 1; }
ARM=$AZURE_RESOURCE_MANAGER_ENDPOINT
SUB=$HOIST_TEST_AZURE_SUBSCRIPTION_ID
work=$(mktemp -d /tmp/hoist-bench-azure.XXXXXX)
export AZURE_CONFIG_DIR=$work/az AZURE_CORE_COLLECT_TELEMETRY=0 AZURE_CORE_ONLY_SHOW_ERRORS=1
retry_after=$(curl -fs "$HOIST_TEST_AZURE_CONTROL/settings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["retry_after"])')
cleanup() {
  curl -fs -X POST -H 'Content-Type: application/json' -d "{\"retry_after\": $retry_after}" \
    "$HOIST_TEST_AZURE_CONTROL/settings" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
curl -fs -X POST -H 'Content-Type: application/json' -d '{"retry_after": 0}' "$HOIST_TEST_AZURE_CONTROL/settings" >/dev/null

now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }

# ---- az: a cloud whose Entra endpoint is the emulator (an /adfs authority: MSAL skips instance
# discovery for it), logged in with the emulator's service principal
az cloud register --name HoistBench --endpoint-resource-manager "$ARM/" \
  --endpoint-active-directory "$AZURE_AUTHORITY_HOST/adfs" \
  --endpoint-active-directory-resource-id https://management.core.windows.net/ \
  --endpoint-management https://management.core.windows.net/ \
  --endpoint-active-directory-graph-resource-id https://graph.windows.net/ >/dev/null
az cloud set --name HoistBench >/dev/null
az login --service-principal -u "$HOIST_TEST_AZURE_CLIENT_ID" -p "$HOIST_TEST_AZURE_CLIENT_SECRET" \
  --tenant "$HOIST_TEST_AZURE_TENANT_ID" >/dev/null
R=(az rest --resource https://management.azure.com/)

# ---- hoist: the same calls; prints the milliseconds spent inside the call
cat > "$work/call.lua" <<'LUA'
local a = hoist.args
local cred = hoist.azure.credential { source = "client_secret" }
cred:get_token()  -- the token is part of neither side's timed call below... but is of the process
local t0 = hoist.now()
local r
if a.op == "get" then
  r = hoist.azure.request { path = a.path, credential = cred }
else
  r = hoist.azure.request { method = "PUT", path = a.path, body = { location = "westeurope" }, credential = cred,
                            headers = { ["x-hoist-emulator-lro"] = "async" }, poll_interval = 0 }
  assert(r.operation_status == "Succeeded")
end
io.write(math.floor((hoist.now() - t0) * 1e6), "\n")
LUA
hoist_env=(env AZURE_CLIENT_ID="$HOIST_TEST_AZURE_CLIENT_ID" AZURE_TENANT_ID="$HOIST_TEST_AZURE_TENANT_ID"
  AZURE_CLIENT_SECRET="$HOIST_TEST_AZURE_CLIENT_SECRET")
hoist_call() { "${hoist_env[@]}" "$hoist" run "$work/call.lua" --state-dir "$work/state" --log-level warn --set "op=$1" --set "path=$2"; }

rg=/subscriptions/$SUB/resourcegroups/hoist-bench-$$
az_put_lro() { # PUT, poll the Azure-AsyncOperation until it ends, GET the resource
  local url="$ARM$1?api-version=2025-04-01" headers op status
  headers=$("${R[@]}" --method put --url "$url" --body '{"location":"westeurope"}' \
    --headers x-hoist-emulator-lro=async --debug 2>&1 | grep -i "'Azure-AsyncOperation'" | head -1)
  op=$(sed -E "s/.*'Azure-AsyncOperation': '([^']+)'.*/\1/I" <<<"$headers")
  while :; do
    status=$("${R[@]}" --method get --url "$op" --query status -o tsv)
    [[ $status == InProgress || $status == Running || $status == Accepted ]] || break
  done
  [[ $status == Succeeded ]] || { echo "az: the operation ended $status" >&2; exit 1; }
  "${R[@]}" --method get --url "$url" >/dev/null
}

"${R[@]}" --method put --url "$ARM$rg?api-version=2025-04-01" --body '{"location":"westeurope"}' >/dev/null
declare -a hg hgi ag hp hpi ap
for i in $(seq 1 "$n"); do
  t0=$(now); hgi+=("$(hoist_call get "$rg")"); t1=$(now); hg+=($(((t1 - t0) / 1000)))
  t0=$(now); "${R[@]}" --method get --url "$ARM$rg?api-version=2025-04-01" >/dev/null; t1=$(now); ag+=($(((t1 - t0) / 1000)))
  t0=$(now); hpi+=("$(hoist_call put "$rg-h$i")"); t1=$(now); hp+=($(((t1 - t0) / 1000)))
  t0=$(now); az_put_lro "$rg-a$i"; t1=$(now); ap+=($(((t1 - t0) / 1000)))
done
for i in $(seq 1 "$n"); do
  for g in "$rg-h$i" "$rg-a$i"; do "${R[@]}" --method delete --url "$ARM$g?api-version=2025-04-01" >/dev/null 2>&1 || true; done
done
"${R[@]}" --method delete --url "$ARM$rg?api-version=2025-04-01" >/dev/null 2>&1 || true

m() { printf '%s\n' "$@" | median; }
hg_m=$(m "${hg[@]}"); hgi_m=$(m "${hgi[@]}"); ag_m=$(m "${ag[@]}")
hp_m=$(m "${hp[@]}"); hpi_m=$(m "${hpi[@]}"); ap_m=$(m "${ap[@]}")
printf '%-28s %12s %14s %12s %10s %12s\n' call "hoist run" "hoist inside" "az" "az/hoist" "az/inside"
printf '%-28s %10.1fms %12.2fms %10.1fms %10s %12s\n' "GET resource group" "$(ratio "$hg_m" 1000)" "$(ratio "$hgi_m" 1000)" \
  "$(ratio "$ag_m" 1000)" "$(ratio "$ag_m" "$hg_m")" "$(ratio "$ag_m" "$hgi_m")"
printf '%-28s %10.1fms %12.2fms %10.1fms %10s %12s\n' "PUT + LRO (AAO) + GET" "$(ratio "$hp_m" 1000)" "$(ratio "$hpi_m" 1000)" \
  "$(ratio "$ap_m" 1000)" "$(ratio "$ap_m" "$hp_m")" "$(ratio "$ap_m" "$hpi_m")"
echo "(medians of $n runs; 'hoist run' is the whole process, token request included; 'inside' the call alone)"
