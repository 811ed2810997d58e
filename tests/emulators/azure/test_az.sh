#!/usr/bin/env bash
# Debian's azure-cli against the emulator: az login with the service principal through a
# registered cloud, then `az rest` GET/PUT/DELETE of every emulated resource type, and a few
# plain az commands. Needs env.sh (source /tmp/hoist-env/env.sh).
#
# Why the cloud's Entra endpoint ends in /adfs: az hands MSAL the authority
# "<endpoint-active-directory>/<tenant>", and MSAL validates any authority it does not know
# through instance discovery at https://login.microsoftonline.com/common/discovery/instance,
# which these machines cannot reach (and which would reject 127.0.0.1). An authority ending in
# /adfs is "known to the developer": MSAL skips instance discovery and reads
# <authority>/.well-known/openid-configuration, which the emulator serves, as it does the
# token endpoint that document names. Nothing else differs: the client credentials grant and
# the token are the same as with a tenant authority.
set -uo pipefail

# absent tools or services skip, except under CI=true (.ci/packages installs azure-cli)
absent() { if [[ ${CI:-} == true ]]; then echo "FAIL: $* (CI=true)"; exit 1; fi; echo "skipped: $*"; exit 0; }
command -v az >/dev/null || absent "az (azure-cli) is not installed"
if [[ -z ${HOIST_TEST_AZURE_CONTROL:-} ]] ||
   [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$HOIST_TEST_AZURE_CONTROL/health") != 200 ]]; then
    absent "the azure emulator is not running (tests/env/up.sh, then source env.sh)"
fi

AZURE_CONFIG_DIR=$(mktemp -d)
export AZURE_CONFIG_DIR AZURE_CORE_COLLECT_TELEMETRY=0 AZURE_CORE_ONLY_SHOW_ERRORS=1
trap 'rm -rf "$AZURE_CONFIG_DIR"' EXIT
ARM=$AZURE_RESOURCE_MANAGER_ENDPOINT
SUB=/subscriptions/$HOIST_TEST_AZURE_SUBSCRIPTION_ID
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# check NAME EXPECTED-SUBSTRING CMD...: the command succeeds and prints the substring
check() {
    local name=$1 want=$2 out; shift 2
    if ! out=$("$@" 2>&1); then fail "$name" "$(tail -n 3 <<<"$out")"; return; fi
    if [[ $out != *"$want"* ]]; then fail "$name" "output lacks '$want': $(head -c 300 <<<"$out")"; return; fi
    pass "$name"
}
# check_fails NAME EXPECTED-SUBSTRING CMD...: the command fails and says the substring
check_fails() {
    local name=$1 want=$2 out; shift 2
    if out=$("$@" 2>&1); then fail "$name" "succeeded: $(head -c 300 <<<"$out")"; return; fi
    if [[ $out != *"$want"* ]]; then fail "$name" "error lacks '$want': $(tail -n 3 <<<"$out")"; return; fi
    pass "$name"
}

curl -fs -X POST -d '{"store": true}' "$HOIST_TEST_AZURE_CONTROL/reset" >/dev/null

az cloud register --name HoistEmulator --endpoint-resource-manager "$ARM/" \
    --endpoint-active-directory "$AZURE_AUTHORITY_HOST/adfs" \
    --endpoint-active-directory-resource-id https://management.core.windows.net/ \
    --endpoint-management https://management.core.windows.net/ \
    --endpoint-active-directory-graph-resource-id https://graph.windows.net/ >/dev/null 2>&1 ||
    { echo "FAIL az cloud register"; exit 1; }
az cloud set --name HoistEmulator >/dev/null 2>&1
check "az login --service-principal" "$HOIST_TEST_AZURE_SUBSCRIPTION_ID" \
    az login --service-principal -u "$HOIST_TEST_AZURE_CLIENT_ID" -p "$HOIST_TEST_AZURE_CLIENT_SECRET" \
    --tenant "$HOIST_TEST_AZURE_TENANT_ID" -o json
check_fails "az login with a wrong secret" "AADSTS7000215" \
    az login --service-principal -u "$HOIST_TEST_AZURE_CLIENT_ID" -p wrong-secret \
    --tenant "$HOIST_TEST_AZURE_TENANT_ID"
# the failed login above logged the good one out: log in again
az login --service-principal -u "$HOIST_TEST_AZURE_CLIENT_ID" -p "$HOIST_TEST_AZURE_CLIENT_SECRET" \
    --tenant "$HOIST_TEST_AZURE_TENANT_ID" >/dev/null 2>&1
check "az account get-access-token" '"tokenType": "Bearer"' az account get-access-token -o json

R="az rest --resource https://management.azure.com/"
check "az rest get subscription" '"state": "Enabled"' $R --method get --url "$ARM$SUB?api-version=2022-12-01"
check "az rest put resource group" '"provisioningState": "Succeeded"' \
    $R --method put --url "$ARM$SUB/resourcegroups/rg-az?api-version=2022-09-01" --body '{"location":"westus"}'
check "az rest get resource group" '"name": "rg-az"' \
    $R --method get --url "$ARM$SUB/resourcegroups/rg-az?api-version=2022-09-01"
check "az group show" '"location": "westus"' az group show -n rg-az -o json
check_fails "az rest get a missing group" "ResourceGroupNotFound" \
    $R --method get --url "$ARM$SUB/resourcegroups/rg-none?api-version=2022-09-01"
check_fails "az rest without api-version" "MissingApiVersionParameter" \
    $R --method get --url "$ARM$SUB/resourcegroups/rg-az"

ACR="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.ContainerRegistry/registries/hoistazacr?api-version=2023-07-01"
check "az rest put registry" '"loginServer": "127.0.0.1:5002"' $R --method put --url "$ACR" \
    --headers x-hoist-emulator-lro=sync --body '{"location":"westus","sku":{"name":"Basic"}}'
check "az rest get registry" '"provisioningState": "Succeeded"' $R --method get --url "$ACR"
check "az rest post listCredentials (admin off)" "AdminUserDisabled" bash -c \
    "$R --method post --url '${ACR/\?/\/listCredentials?}' 2>&1; true"
check "az rest delete registry" "" $R --method delete --url "$ACR" --headers x-hoist-emulator-lro=sync

PROV="$ARM$SUB/providers/Microsoft.ContainerInstance"
check "az rest register Microsoft.ContainerInstance" '"registrationState": "Registering"' \
    $R --method post --url "$PROV/register?api-version=2021-04-01"
check "az rest get provider" '"namespace": "Microsoft.ContainerInstance"' \
    $R --method get --url "$PROV?api-version=2021-04-01"
$R --method get --url "$PROV?api-version=2021-04-01" >/dev/null 2>&1
ACI="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.ContainerInstance/containerGroups/g1?api-version=2023-05-01"
# an image no registry has: the PUT is accepted, provisioning then fails (InaccessibleImage)
check "az rest put container group" '"osType": "Linux"' $R --method put --url "$ACI" --body \
    '{"location":"westus","properties":{"osType":"Linux","containers":[{"name":"c1","properties":{"image":"127.0.0.1:5000/hoist/absent:1","resources":{"requests":{"cpu":1,"memoryInGB":0.5}}}}]}}'
check "az rest get container group" '"name": "g1"' $R --method get --url "$ACI"
check "az rest delete container group" "" bash -c "sleep 1; $R --method delete --url '$ACI'"

RA="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.Authorization/roleAssignments/0d5fb1f8-1f2e-4a4a-9c1e-5f3d0b8c1a01?api-version=2022-04-01"
check "az rest put role assignment" '"principalId": "p-az"' $R --method put --url "$RA" --body \
    "{\"properties\":{\"roleDefinitionId\":\"$SUB/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d\",\"principalId\":\"p-az\"}}"
check "az rest delete role assignment" "" $R --method delete --url "$RA"

# App Service: a plan and a site (no image: nothing runs), the appsettings list, a slot
WEB="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.Web"
check "az rest put serverfarm" '"status": "Ready"' $R --method put \
    --url "$WEB/serverfarms/plan-az?api-version=2022-03-01" --body '{"location":"westus","kind":"linux","sku":{"name":"B1"},"properties":{"reserved":true}}'
check "az rest put site" '"defaultHostName": "hoist-az-site.azurewebsites.net"' $R --method put \
    --url "$WEB/sites/hoist-az-site?api-version=2022-03-01" --body \
    "{\"location\":\"westus\",\"kind\":\"app,linux,container\",\"properties\":{\"serverFarmId\":\"$SUB/resourceGroups/rg-az/providers/Microsoft.Web/serverfarms/plan-az\",\"siteConfig\":{\"appSettings\":[{\"name\":\"A\",\"value\":\"1\"}]}}}"
check "az rest post appsettings list" '"A": "1"' $R --method post \
    --url "$WEB/sites/hoist-az-site/config/appsettings/list?api-version=2022-03-01"
check "az rest put slot" '"name": "hoist-az-site/staging"' $R --method put \
    --url "$WEB/sites/hoist-az-site/slots/staging?api-version=2022-03-01" --body '{"location":"westus","properties":{}}'
check "az rest delete site" "" $R --method delete --url "$WEB/sites/hoist-az-site?api-version=2022-03-01"

# Container Apps: the provider, an environment (az rest does not follow the LRO: the 201 body)
$R --method post --url "$ARM$SUB/providers/Microsoft.App/register?api-version=2021-04-01" >/dev/null 2>&1
$R --method get --url "$ARM$SUB/providers/Microsoft.App?api-version=2021-04-01" >/dev/null 2>&1
CAPP="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.App"
check "az rest put managed environment" '"defaultDomain"' $R --method put \
    --url "$CAPP/managedEnvironments/env-az?api-version=2024-03-01" --body '{"location":"westus","properties":{}}'
# the operation ends by time (lro_duration, 0.5 s), not by polls: the second GET sees it done
check "az rest get managed environment" '"provisioningState": "Succeeded"' bash -c \
    "$R --method get --url '$CAPP/managedEnvironments/env-az?api-version=2024-03-01' >/dev/null; sleep 0.5
     $R --method get --url '$CAPP/managedEnvironments/env-az?api-version=2024-03-01'"
check_fails "az rest put container app without containers" "ContainerAppInvalidTemplate" $R --method put \
    --url "$CAPP/containerApps/app-az?api-version=2024-03-01" --body \
    "{\"location\":\"westus\",\"properties\":{\"environmentId\":\"$SUB/resourceGroups/rg-az/providers/Microsoft.App/managedEnvironments/env-az\",\"template\":{\"containers\":[]}}}"

# AKS: a cluster and its user credential (a kubeconfig for the Kubernetes emulator)
$R --method post --url "$ARM$SUB/providers/Microsoft.ContainerService/register?api-version=2021-04-01" >/dev/null 2>&1
$R --method get --url "$ARM$SUB/providers/Microsoft.ContainerService?api-version=2021-04-01" >/dev/null 2>&1
AKS="$ARM$SUB/resourceGroups/rg-az/providers/Microsoft.ContainerService/managedClusters/aks-az"
check "az rest put managed cluster" '"kubernetesVersion"' $R --method put --url "$AKS?api-version=2024-02-01" \
    --headers x-hoist-emulator-lro=sync --body '{"location":"westus","properties":{"dnsPrefix":"aksaz"}}'
check "az rest get managed cluster" '"fqdn": "aksaz-' $R --method get --url "$AKS?api-version=2024-02-01"
if [[ -r ${HOIST_ENV_DIR:-/tmp/hoist-env}/kube/kubeconfig ]]; then
    check "az rest post listClusterUserCredential" '"name": "clusterUser"' $R --method post \
        --url "$AKS/listClusterUserCredential?api-version=2024-02-01"
fi

check "az rest delete resource group" "" $R --method delete --url "$ARM$SUB/resourcegroups/rg-az?api-version=2022-09-01"
curl -fs -X POST -d '{"store": true}' "$HOIST_TEST_AZURE_CONTROL/reset" >/dev/null
if ((fails)); then echo "$fails failed"; exit 1; fi
echo "all passed"
