"""Microsoft.ContainerService/managedClusters: the cluster is the Kubernetes emulator
(tests/emulators/kube). PUT/GET/PATCH/DELETE keep the ARM side (fqdn, kubernetesVersion, the
kubelet identity, the OIDC issuer, agent pools); listClusterAdminCredential and
listClusterUserCredential return kubeconfigs for the emulator's API server, read from
$STATE/kube/kubeconfig (written by tests/emulators/kube/up.sh):

- admin: the emulator's admin client certificate (as AKS's local admin account);
- user: an `exec` entry running `kubelogin get-token` with AKS's AAD arguments, as AKS clusters
  with Entra ID integration return (tests/tools/kubelogin is a stand-in printing the emulator's
  bearer token as an ExecCredential).

The OIDC issuer of a cluster with oidcIssuerProfile.enabled is the emulator's workload identity
issuer (https://127.0.0.1:5011/_workload), the issuer of the federated credential of
HOIST_TEST_AZURE_FEDERATED_CLIENT_ID: service account tokens it signs (control workload-token)
are exchanged for Entra tokens.
"""

import base64
import copy
import hashlib
import os
import re
import uuid

from .. import apiversions
from ..arm import ArmError, ResourceType

API = apiversions.of("Microsoft.ContainerService")
DEFAULT_VERSION = "1.31.2"
# the AKS AAD server application and the Azure CLI's client id that AKS kubeconfigs name
AKS_AAD_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AZURE_CLI_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"


class ManagedClusters(ResourceType):
    key = "Microsoft.ContainerService/managedClusters"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "async"
    actions = {"listClusterUserCredential": (("POST",), "user_credential"),
               "listClusterAdminCredential": (("POST",), "admin_credential")}

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        old = copy.deepcopy((existing or {}).get("properties") or {})
        props = dict(old)
        props.update(copy.deepcopy(body.get("properties") or {}))
        loc = (body.get("location") or (existing or {}).get("location") or "").replace(" ", "").lower()
        name = ctx.name
        if not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$", name):
            raise ArmError(400, "InvalidParameter", "The cluster name '%s' is invalid: 1-63 letters, digits, "
                           "'_' and '-', starting and ending with a letter or digit." % name, target="name")
        pools = props.get("agentPoolProfiles") or [{"name": "nodepool1", "count": 1, "vmSize": "Standard_DS2_v2",
                                                    "mode": "System"}]
        for p in pools:
            if not p.get("name"):
                raise ArmError(400, "InvalidParameter", "Every agent pool needs a name.", target="agentPoolProfiles")
            p.setdefault("count", 1)
            p.setdefault("osType", "Linux")
            p.setdefault("mode", "System")
            p.setdefault("type", "VirtualMachineScaleSets")
            p["provisioningState"] = "Succeeded"
            p["powerState"] = {"code": "Running"}
            p.setdefault("orchestratorVersion", props.get("kubernetesVersion") or DEFAULT_VERSION)
        props["agentPoolProfiles"] = pools
        version = props.get("kubernetesVersion") or DEFAULT_VERSION
        props["kubernetesVersion"] = props["currentKubernetesVersion"] = version
        prefix = props.get("dnsPrefix") or ("%s-%s-%s" % (name, ctx.rg, ctx.sub[:6]))[:54]
        props["dnsPrefix"] = prefix
        unique = hashlib.sha256((ctx.sub + ctx.rg + name).lower().encode()).hexdigest()[:8]
        props["fqdn"] = "%s-%s.hcp.%s.azmk8s.io" % (prefix.lower(), unique, loc)
        props["azurePortalFQDN"] = "%s-%s.portal.hcp.%s.azmk8s.io" % (prefix.lower(), unique, loc)
        props["nodeResourceGroup"] = props.get("nodeResourceGroup") or "MC_%s_%s_%s" % (ctx.rg, name, loc)
        props["powerState"] = {"code": "Running"}
        props.setdefault("enableRBAC", True)
        props.setdefault("maxAgentPools", 100)
        props.setdefault("aadProfile", {"managed": True, "enableAzureRBAC": False, "tenantID": self.arm.state.tenant_id})
        kubelet = "/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" \
                  "%s-agentpool" % (ctx.sub, props["nodeResourceGroup"], name)
        props["identityProfile"] = {"kubeletidentity": {
            "resourceId": kubelet, "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, kubelet.lower() + "#client")),
            "objectId": str(uuid.uuid5(uuid.NAMESPACE_URL, kubelet.lower() + "#object"))}}
        oidc = props.get("oidcIssuerProfile") or {"enabled": False}
        if oidc.get("enabled"):
            oidc["issuerURL"] = self.arm.state.workload_issuer() + "/"
        else:
            oidc.pop("issuerURL", None)
        props["oidcIssuerProfile"] = oidc
        res = {"location": body.get("location") or (existing or {}).get("location"), "properties": props,
               "identity": body.get("identity") or (existing or {}).get("identity") or {"type": "SystemAssigned"},
               "sku": body.get("sku") or (existing or {}).get("sku") or {"name": "Base", "tier": "Free"}}
        if body.get("tags") is not None:
            res["tags"] = body["tags"]
        return res

    def view(self, res):
        res = copy.deepcopy(res)
        (res["properties"].get("servicePrincipalProfile") or {}).pop("secret", None)
        for p in (res["properties"].get("windowsProfile") or {}, ):
            p.pop("adminPassword", None)
        return res

    def kube(self):
        """(server, CA data, client certificate data, client key data) of the Kubernetes emulator."""
        path = os.path.join(os.path.dirname(self.arm.state.dir.rstrip("/")), "kube", "kubeconfig")
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            raise ArmError(503, "ClusterUnavailable", "The Kubernetes emulator's kubeconfig %s is absent: the "
                           "cluster has no API server (start tests/emulators/kube/up.sh)." % path)

        def first(key):
            m = re.search(r"^\s*%s:\s*(\S+)\s*$" % re.escape(key), text, re.M)
            return m.group(1) if m else None
        out = (first("server"), first("certificate-authority-data"), first("client-certificate-data"),
               first("client-key-data"))
        if not all(out):
            raise ArmError(503, "ClusterUnavailable", "The Kubernetes emulator's kubeconfig %s lacks the server, "
                           "its CA or the admin client certificate." % path)
        return out

    def kubeconfig(self, res, admin):
        server, ca, cert, key = self.kube()
        name, rg = res["name"], res["id"].split("/")[4]
        user = "cluster%s_%s_%s" % ("Admin" if admin else "User", rg, name)
        context = name + ("-admin" if admin else "")
        lines = ["apiVersion: v1", "clusters:", "- cluster:", "    certificate-authority-data: " + ca,
                 "    server: " + server, "  name: " + name, "contexts:", "- context:", "    cluster: " + name,
                 "    user: " + user, "  name: " + context, "current-context: " + context, "kind: Config",
                 "preferences: {}", "users:", "- name: " + user, "  user:"]
        if admin:
            lines += ["    client-certificate-data: " + cert, "    client-key-data: " + key]
        else:
            lines += ["    exec:", "      apiVersion: client.authentication.k8s.io/v1beta1", "      args:",
                      "      - get-token", "      - --environment", "      - AzurePublicCloud", "      - --server-id",
                      "      - " + AKS_AAD_SERVER_ID, "      - --client-id", "      - " + AZURE_CLI_CLIENT_ID,
                      "      - --tenant-id", "      - " + self.arm.state.tenant_id, "      - --login",
                      "      - devicecode", "      command: kubelogin", "      env: null",
                      "      installHint: |2", "", "        kubelogin is not installed which is required to connect "
                      "to AAD enabled cluster.", "", "        To learn more, please go to https://aka.ms/aks/kubelogin",
                      "      interactiveMode: IfAvailable", "      provideClusterInfo: false"]
        return "\n".join(lines) + "\n"

    def credential(self, res, admin):
        if not admin and self.arm.get(res["id"]) is None:
            raise ArmError(404, "ResourceNotFound", "The cluster was not found.")
        text = self.kubeconfig(res, admin)
        return 200, {"kubeconfigs": [{"name": "clusterAdmin" if admin else "clusterUser",
                                      "value": base64.b64encode(text.encode()).decode()}]}, []

    def user_credential(self, ctx, res, body):
        return self.credential(res, False)

    def admin_credential(self, ctx, res, body):
        if (res["properties"].get("disableLocalAccounts")):
            raise ArmError(400, "BadRequest", "Getting static credential is not allowed because this cluster is "
                           "set to disable local accounts.")
        return self.credential(res, True)


def install(arm):
    arm.register(ManagedClusters(arm))
