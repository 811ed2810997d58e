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

# check NAME EXPECTED-SUBSTRING CMD...: the command succeeds and prints the substring (in $out)
check() {
    local name=$1 want=$2; shift 2
    out=""  # global: the caller may read the output of the last check
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
    --endpoint-active-directory-graph-resource-id https://graph.windows.net/ \
    --suffix-acr-login-server-endpoint .azurecr.io >/dev/null 2>&1 ||
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
check "az rest put registry" "\"loginServer\": \"${HOIST_TEST_REGISTRY_TOKEN:-127.0.0.1:5002}\"" $R --method put --url "$ACR" \
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
# a GET counts as a poll of the operation (lro_polls 1): the second one sees it done
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
    # one of the workflow commands below (the cluster is this one)
    check "az aks get-credentials" "clusterUser_rg-az_aks-az" bash -c \
        "az aks get-credentials -g rg-az -n aks-az -f '$AZURE_CONFIG_DIR/kubeconfig' && cat '$AZURE_CONFIG_DIR/kubeconfig'"
fi

# ---- the az commands of our users' five workflows (README.md, "az"), each once: az starts slowly
WF=hoist-az-wf
check "az group create" '"provisioningState": "Succeeded"' az group create -n $WF -l westus -o json
check "az provider register --wait" "" az provider register -n Microsoft.ContainerInstance --wait
check "az acr create" "Succeeded" az acr create -g $WF -n hoistazwf --sku Basic --query provisioningState -o tsv
# by name, without -g: az finds the group through Resources - List with a $filter
check "az acr show -n (no -g)" "/resourceGroups/$WF/" az acr show -n hoistazwf --query "[id, loginServer]" -o tsv
LS=${out##*$'\n'}  # the login server
# the import's source: the base image in the anonymous registry
if skopeo copy -q --dest-tls-verify=false "docker-daemon:${HOIST_TEST_BASE_IMAGE:-hoist-test/busybox:latest}" \
    "docker://${HOIST_TEST_REGISTRY:-127.0.0.1:5000}/hoist-az/busybox:1" >/dev/null 2>&1; then
    check "az acr import" "" az acr import -n hoistazwf --source "${HOIST_TEST_REGISTRY:-127.0.0.1:5000}/hoist-az/busybox:1" \
        -t hoist-az/busybox:1 --force
else
    fail "az acr import" "cannot put the base image in ${HOIST_TEST_REGISTRY:-127.0.0.1:5000} (skopeo)"
fi
# ACR's data plane is https only (az calls https://<loginServer>/v2/ and /acr/v1/): through the
# emulator's proxy, which ends TLS for the login server; every https request goes through it
# (NO_PROXY cannot name one port of 127.0.0.1), and it relays the emulator's own ports as they are
DP=(env HTTPS_PROXY="$HOIST_TEST_AZURE_PROXY" NO_PROXY= no_proxy=)
check "az acr repository list" "hoist-az/busybox" "${DP[@]}" az acr repository list -n hoistazwf -o tsv
check "az acr repository show-tags" "1" "${DP[@]}" az acr repository show-tags -n hoistazwf --repository hoist-az/busybox -o tsv
REG=(--registry-login-server "$LS" --registry-username "${HOIST_TEST_REGISTRY_TOKEN_USER:-}" --registry-password "${HOIST_TEST_REGISTRY_TOKEN_PASSWORD:-}")
check "az container create" '"provisioningState": "Succeeded"' az container create -g $WF -n hoist-az-wf-aci \
    --image "$LS/hoist-az/busybox:1" "${REG[@]}" --os-type Linux --cpu 1 --memory 0.5 --restart-policy Never \
    --command-line "sh -c 'echo hoist-az-wf-says-hello; sleep 600'" -o json
check "az container show" "Running" az container show -g $WF -n hoist-az-wf-aci --query instanceView.state -o tsv
check "az container logs" "hoist-az-wf-says-hello" az container logs -g $WF -n hoist-az-wf-aci
check "az appservice plan create" '"status": "Ready"' az appservice plan create -g $WF -n hoist-az-wf-plan --is-linux --sku B1 -o json
check "az webapp create" '"defaultHostName": "hoist-az-wf-web.azurewebsites.net"' az webapp create -g $WF \
    -p hoist-az-wf-plan -n hoist-az-wf-web --deployment-container-image-name "$LS/hoist-az/busybox:1" \
    --docker-registry-server-user "${HOIST_TEST_REGISTRY_TOKEN_USER:-}" \
    --docker-registry-server-password "${HOIST_TEST_REGISTRY_TOKEN_PASSWORD:-}" -o json
# az webapp show reads the publishing profiles (publishxml) for ftpPublishingUrl
check "az webapp show" "ftps://" az webapp show -g $WF -n hoist-az-wf-web --query ftpPublishingUrl -o tsv
check "az webapp config appsettings set" '"value": "8000"' az webapp config appsettings set -g $WF \
    -n hoist-az-wf-web --settings WEBSITES_PORT=8000 -o json
check "az webapp restart" "" az webapp restart -g $WF -n hoist-az-wf-web

check "az rest delete resource group" "" $R --method delete --url "$ARM$SUB/resourcegroups/rg-az?api-version=2022-09-01"
curl -fs -X POST -d '{"store": true}' "$HOIST_TEST_AZURE_CONTROL/reset" >/dev/null
if ((fails)); then echo "$fails failed"; exit 1; fi
echo "all passed"
