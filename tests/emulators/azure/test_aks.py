#!/usr/bin/env python3
"""Tests of the emulated Microsoft.ContainerService/managedClusters: the ARM side (fqdn,
kubelet identity, OIDC issuer, provider registration) and the credentials: the admin kubeconfig's
client certificate and the user kubeconfig's kubelogin exec entry both reach the Kubernetes
emulator (with kubectl when it is installed, through tests/tools/kubelogin)."""

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import unittest
import urllib.request

from testlib import ENV, RG_PATH, ArmClient, call, control, require_emulator

API = "2025-01-01"
TOOLS = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
KUBE_DIR = os.path.join(ENV.get("HOIST_ENV_DIR", "/tmp/hoist-env"), "kube")


def field(kubeconfig, key):
    m = re.search(r"^\s*-?\s*%s:\s*(\S+)\s*$" % re.escape(key), kubeconfig, re.M)
    return m.group(1) if m else None


@require_emulator
class Aks(unittest.TestCase):
    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-aks", {"location": "westeurope"})
        self.path = RG_PATH + "rg-aks/providers/Microsoft.ContainerService/managedClusters/"

    def tearDown(self):
        control("reset", {"store": True})

    def cluster(self, name="hoist-aks", oidc=True):
        body = {"location": "westeurope", "identity": {"type": "SystemAssigned"}, "properties": {
            "dnsPrefix": "hoistaks", "oidcIssuerProfile": {"enabled": oidc},
            "securityProfile": {"workloadIdentity": {"enabled": oidc}},
            "agentPoolProfiles": [{"name": "system", "count": 2, "vmSize": "Standard_D2s_v5", "mode": "System"}]}}
        r = self.arm("PUT", self.path + name, body, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")
        return self.arm("GET", self.path + name, api=API).json

    def register(self):
        self.arm.register("Microsoft.ContainerService")

    def kubeconfig(self, name, kind):
        r = self.arm("POST", self.path + "%s/listCluster%sCredential" % (name, kind), api=API)
        self.assertEqual(r.status, 200, r.raw)
        kc = r.json["kubeconfigs"]
        self.assertEqual(kc[0]["name"], "cluster" + kind)
        return base64.b64decode(kc[0]["value"]).decode()

    def test_cluster_and_credentials(self):
        r = self.arm("PUT", self.path + "x", {"location": "westeurope", "properties": {}}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (409, "MissingSubscriptionRegistration"))
        self.register()
        c = self.cluster()
        p = c["properties"]
        self.assertRegex(p["fqdn"], r"^hoistaks-[0-9a-f]{8}\.hcp\.westeurope\.azmk8s\.io$")
        self.assertEqual(p["provisioningState"], "Succeeded")
        self.assertEqual(p["oidcIssuerProfile"]["issuerURL"], ENV["AZURE_AUTHORITY_HOST"] + "/_workload/")
        kubelet = p["identityProfile"]["kubeletidentity"]
        self.assertRegex(kubelet["objectId"], r"^[0-9a-f-]{36}$")
        self.assertRegex(kubelet["clientId"], r"^[0-9a-f-]{36}$")
        self.assertEqual(p["agentPoolProfiles"][0]["count"], 2)
        self.assertIsNone(self.cluster("plain", oidc=False)["properties"]["oidcIssuerProfile"].get("issuerURL"))
        if not os.path.exists(os.path.join(KUBE_DIR, "kubeconfig")):
            r = self.arm("POST", self.path + "hoist-aks/listClusterUserCredential", api=API)
            self.assertEqual((r.status, r.json["error"]["code"]), (503, "ClusterUnavailable"))
            self.skipTest("skipped: the Kubernetes emulator is not running (its kubeconfig is absent)")
        with open(os.path.join(KUBE_DIR, "kubeconfig")) as f:
            server = field(f.read(), "server")
        admin = self.kubeconfig("hoist-aks", "Admin")
        self.assertEqual(field(admin, "server"), server)
        self.assertEqual(field(admin, "current-context"), "hoist-aks-admin")
        user = self.kubeconfig("hoist-aks", "User")
        self.assertEqual(field(user, "command"), "kubelogin")
        self.assertIn("- get-token", user)
        self.assertNotIn("client-key-data", user)
        with tempfile.TemporaryDirectory() as d:
            ca = os.path.join(d, "ca.pem")
            with open(ca, "wb") as f:
                f.write(base64.b64decode(field(admin, "certificate-authority-data")))
            # the admin credential: the client certificate
            crt, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(crt, "wb") as f:
                f.write(base64.b64decode(field(admin, "client-certificate-data")))
            with open(key, "wb") as f:
                f.write(base64.b64decode(field(admin, "client-key-data")))
            ctx = ssl.create_default_context(cafile=ca)
            ctx.load_cert_chain(crt, key)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
            with opener.open(server + "/api/v1/namespaces", timeout=10) as r:
                self.assertEqual(r.status, 200)
            # the user credential: run the exec entry as client-go would, then use its token
            args = re.findall(r"^\s+- (\S+)$", user.split("exec:", 1)[1].split("command:", 1)[0], re.M)
            out = subprocess.run([os.path.join(TOOLS, "kubelogin")] + args, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=dict(os.environ, **{
                                     k: v for k, v in ENV.items() if k.startswith("HOIST_")}))
            self.assertEqual(out.returncode, 0, out.stderr)
            cred = json.loads(out.stdout)
            self.assertEqual(cred["kind"], "ExecCredential")
            r = urllib.request.Request(server + "/api/v1/namespaces",
                                       headers={"Authorization": "Bearer " + cred["status"]["token"]})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca)))
            with opener.open(r, timeout=10) as resp:
                self.assertEqual(resp.status, 200)
            bad = subprocess.run([os.path.join(TOOLS, "kubelogin"), "get-token", "--bogus", "x"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 1)
            self.assertIn(b"unknown flag: --bogus", bad.stderr)
            if shutil.which("kubectl"):  # end to end: kubectl runs the plugin from PATH
                path = os.path.join(d, "user.yaml")
                with open(path, "w") as f:
                    f.write(user)
                env = dict(os.environ, PATH=TOOLS + os.pathsep + os.environ.get("PATH", ""),
                           **{k: v for k, v in ENV.items() if k.startswith("HOIST_")})
                env.pop("HTTPS_PROXY", None)
                env.pop("https_proxy", None)
                out = subprocess.run(["kubectl", "--kubeconfig", path, "get", "namespaces", "-o", "name"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
                self.assertEqual(out.returncode, 0, out.stderr.decode())
                self.assertIn("namespace/default", out.stdout.decode())

    def test_workload_identity_token_of_the_cluster_issuer_is_exchanged(self):
        self.register()
        issuer = self.cluster()["properties"]["oidcIssuerProfile"]["issuerURL"]
        assertion = control("workload-token", {"sub": ENV["HOIST_TEST_AZURE_WORKLOAD_SUBJECT"]})["token"]
        payload = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        self.assertEqual(payload["iss"].rstrip("/"), issuer.rstrip("/"))
        r = call("POST", "%s/%s/oauth2/v2.0/token" % (ENV["AZURE_AUTHORITY_HOST"], ENV["HOIST_TEST_AZURE_TENANT_ID"]),
                 form={"grant_type": "client_credentials", "client_id": ENV["HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"],
                       "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                       "client_assertion": assertion, "scope": "https://management.azure.com/.default"})
        self.assertEqual(r.status, 200, r.raw)

    def test_local_accounts_disabled_and_missing_cluster(self):
        self.register()
        body = {"location": "westeurope", "properties": {"disableLocalAccounts": True}}
        r = self.arm("PUT", self.path + "noadmin", body, api=API, headers={"x-hoist-emulator-lro": "sync"})
        self.assertEqual(r.status, 201, r.raw)
        r = self.arm("POST", self.path + "noadmin/listClusterAdminCredential", api=API)
        self.assertEqual(r.status, 400)
        self.assertIn("disable local accounts", r.json["error"]["message"])
        r = self.arm("POST", self.path + "absent/listClusterUserCredential", api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (404, "ResourceNotFound"))
        r = self.arm("PUT", self.path + "-bad", body, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "InvalidParameter"))


if __name__ == "__main__":
    unittest.main()
