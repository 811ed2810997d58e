#!/usr/bin/env python3
"""Tests of the emulated Microsoft.ContainerRegistry and of the ACR token exchange of
tests/env/token_server.py with the emulator's Entra tokens. importImage copies a real image,
so these need the registries of tests/env/up.sh and skopeo."""

import base64
import json
import subprocess
import unittest
import urllib.error
import urllib.parse
import urllib.request

from testlib import CTX, ENV, RG_PATH, ArmClient, call, control, require_emulator, secret_token

API = "2025-04-01"
TOKEN_SERVER = ENV.get("HOIST_TEST_TOKEN_SERVER", "http://127.0.0.1:5003")
SERVICE = ENV.get("HOIST_TEST_REGISTRY_TOKEN", "127.0.0.1:5002")  # ACR's login server: the token registry
SUB = ENV.get("HOIST_TEST_AZURE_SUBSCRIPTION_ID")
# ACR's data plane is https only: through the emulator's proxy, which ends TLS for the login server
VIA_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({"https": ENV.get("HOIST_TEST_AZURE_PROXY", "")}),
                                        urllib.request.HTTPSHandler(context=CTX))


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


def registry_token(user, password):
    return call("GET", "%s/token?service=%s&scope=registry:catalog:*" % (TOKEN_SERVER, SERVICE),
                headers=basic(user, password))


@require_emulator
class Acr(unittest.TestCase):
    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-acr", {"location": "westus"})
        self.base = RG_PATH + "rg-acr/providers/Microsoft.ContainerRegistry/registries/"

    def create(self, name, sku="Standard", admin=False):
        r = self.arm("PUT", self.base + name, {"location": "westus", "sku": {"name": sku},
                                               "properties": {"adminUserEnabled": admin}}, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["properties"]["provisioningState"], "Creating")
        self.assertEqual(self.arm.poll(r.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")
        return self.arm("GET", self.base + name, api=API).json

    def test_create_get_and_errors(self):
        reg = self.create("hoistacr1")
        self.assertEqual(reg["properties"]["loginServer"], SERVICE)
        self.assertEqual(reg["sku"], {"name": "Standard", "tier": "Standard"})
        self.assertEqual(reg["properties"]["provisioningState"], "Succeeded")
        self.assertFalse(reg["properties"]["adminUserEnabled"])
        cases = [("ab", {"sku": {"name": "Basic"}}, 400, "InvalidRegistryName"),
                 ("hoistacr2", {"sku": {"name": "Gold"}}, 400, "InvalidSku")]
        for name, body, status, code in cases:
            r = self.arm("PUT", self.base + name, dict(body, location="westus"), api=API)
            self.assertEqual((r.status, r.json["error"]["code"]), (status, code))
        self.arm("PUT", RG_PATH + "rg-acr2", {"location": "westus"})
        r = self.arm("PUT", RG_PATH + "rg-acr2/providers/Microsoft.ContainerRegistry/registries/hoistacr1",
                     {"location": "westus", "sku": {"name": "Basic"}}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (409, "AlreadyInUse"))
        check = "/subscriptions/%s/providers/Microsoft.ContainerRegistry/checkNameAvailability" % ENV[
            "HOIST_TEST_AZURE_SUBSCRIPTION_ID"]
        t = "Microsoft.ContainerRegistry/registries"
        self.assertEqual(self.arm("POST", check, {"name": "hoistacr1", "type": t}, api=API).json["reason"],
                         "AlreadyExists")
        self.assertTrue(self.arm("POST", check, {"name": "hoistacr9", "type": t}, api=API).json["nameAvailable"])
        r = self.arm("GET", self.base + "missing1", api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (404, "ResourceNotFound"))

    def test_admin_credentials_reach_the_token_server(self):
        self.create("hoistacr3")
        r = self.arm("POST", self.base + "hoistacr3/listCredentials", api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "AdminUserDisabled"))
        self.assertEqual(self.arm("PATCH", self.base + "hoistacr3",
                                  {"properties": {"adminUserEnabled": True}}, api=API).status, 200)
        creds = self.arm("POST", self.base + "hoistacr3/listCredentials", api=API).json
        self.assertEqual(creds["username"], "hoistacr3")
        self.assertEqual([p["name"] for p in creds["passwords"]], ["password", "password2"])
        old = creds["passwords"][0]["value"]
        self.assertEqual(registry_token("hoistacr3", old).status, 200)
        new = self.arm("POST", self.base + "hoistacr3/regenerateCredential", {"name": "password"}, api=API).json
        self.assertNotEqual(new["passwords"][0]["value"], old)
        self.assertEqual(new["passwords"][1], creds["passwords"][1])
        self.assertEqual(registry_token("hoistacr3", old).status, 401)
        self.assertEqual(registry_token("hoistacr3", new["passwords"][0]["value"]).status, 200)
        r = self.arm("POST", self.base + "hoistacr3/regenerateCredential", {"name": "password3"}, api=API)
        self.assertEqual(r.status, 400)
        r = self.arm("DELETE", self.base + "hoistacr3", api=API)
        self.assertEqual(r.status, 202)
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 204)
        self.assertEqual(registry_token("hoistacr3", new["passwords"][0]["value"]).status, 401)

    def test_entra_token_exchange(self):
        def exchange(token):
            return call("POST", TOKEN_SERVER + "/oauth2/exchange", form={
                "grant_type": "access_token", "service": SERVICE, "access_token": token})
        r = exchange(secret_token())
        self.assertEqual(r.status, 200, r.raw)
        refresh = r.json["refresh_token"]
        r = call("POST", TOKEN_SERVER + "/oauth2/token", form={
            "grant_type": "refresh_token", "service": SERVICE, "scope": "registry:catalog:*",
            "refresh_token": refresh})
        self.assertEqual(r.status, 200, r.raw)
        r = call("GET", "http://%s/v2/_catalog" % SERVICE,
                 headers={"Authorization": "Bearer " + r.json["access_token"]})
        self.assertEqual(r.status, 200, r.raw)
        h, p, s = secret_token().split(".")
        for bad, words in ((secret_token("https://vault.azure.net/"), "vault.azure.net"),
                           (h + "." + p + "." + s[::-1], "invalid AAD access token")):
            r = exchange(bad)
            self.assertEqual(r.status, 401)
            self.assertIn(words, r.json["errors"][0]["message"])

    def test_import_image_copies_between_local_registries(self):
        src = "127.0.0.1:5000/azemu-src/busybox:1"
        p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                            "docker-daemon:" + ENV.get("HOIST_TEST_BASE_IMAGE", "hoist-test/busybox:latest"),
                            "docker://" + src], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            self.skipTest("skipped: cannot put a source image in 127.0.0.1:5000: %s" % p.stderr.decode())
        self.create("hoistacr4")
        r = self.arm("POST", self.base + "hoistacr4/importImage", {
            "source": {"registryUri": "127.0.0.1:5000", "sourceImage": "azemu-src/busybox:1"},
            "targetTags": ["azemu/imported:1"], "mode": "Force"}, api=API)
        self.assertEqual(r.status, 202, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 200)
        tok = call("POST", TOKEN_SERVER + "/token", form={
            "grant_type": "password", "service": SERVICE, "scope": "repository:azemu/imported:pull",
            "username": ENV["HOIST_TEST_REGISTRY_TOKEN_USER"],
            "password": ENV["HOIST_TEST_REGISTRY_TOKEN_PASSWORD"]}).json["access_token"]
        r = call("HEAD", "http://%s/v2/azemu/imported/manifests/1" % SERVICE, headers={
            "Authorization": "Bearer " + tok,
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        self.assertEqual(r.status, 200)
        r = self.arm("POST", self.base + "hoistacr4/importImage", {
            "source": {"registryUri": "127.0.0.1:5000", "sourceImage": "azemu-src/busybox:1"},
            "targetTags": ["azemu/imported:1"]}, api=API)
        final = self.arm.poll(r.headers["Location"])
        self.assertEqual((final.status, final.json["error"]["code"]), (400, "TagAlreadyExists"))
        r = self.arm("POST", self.base + "hoistacr4/importImage", {
            "source": {"registryUri": "127.0.0.1:5000", "sourceImage": "azemu-src/none:1"},
            "targetTags": ["azemu/imported:2"]}, api=API)
        final = self.arm.poll(r.headers["Location"])
        self.assertEqual(final.json["error"]["code"], "ImportSourceFailed")
        self.assertIn("azemu-src/none:1", final.json["error"]["message"])
        r = self.arm("POST", self.base + "hoistacr4/importImage", {
            "source": {"registryUri": "registry.hub.docker.com", "sourceImage": "library/hello-world"}},
            api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "InvalidParameter"))

    def test_resources_of_the_subscription(self):
        # Resources - List with $filter: how az finds a registry by name without -g
        # (az acr show -n NAME, az acr repository list -n NAME)
        self.create("hoistacrres1")
        self.arm("PUT", RG_PATH + "rg-acr2", {"location": "eastus"})
        r = self.arm("PUT", RG_PATH + "rg-acr2/providers/Microsoft.ContainerRegistry/registries/hoistacrres2",
                     {"location": "eastus", "sku": {"name": "Basic"}}, api=API, headers={"x-hoist-emulator-lro": "sync"})
        self.assertEqual(r.status, 201, r.raw)

        def listed(flt):
            r = self.arm("GET", "/subscriptions/%s/resources?$filter=%s" % (SUB, urllib.parse.quote(flt)),
                         api="2021-04-01")
            self.assertEqual(r.status, 200, r.raw)
            return sorted(x["id"].split("/")[4] + "/" + x["name"] for x in r.json["value"])
        t = "resourceType eq 'Microsoft.ContainerRegistry/registries'"
        self.assertEqual(listed(t), ["rg-acr/hoistacrres1", "rg-acr2/hoistacrres2"])
        self.assertEqual(listed(t + " and name eq 'HOISTACRRES2'"), ["rg-acr2/hoistacrres2"])
        self.assertEqual(listed("resourceGroup eq 'rg-acr' and " + t), ["rg-acr/hoistacrres1"])
        self.assertEqual(listed("location eq 'eastus'"), ["rg-acr2/hoistacrres2"])
        self.assertEqual(listed("substringof('res1', name)"), ["rg-acr/hoistacrres1"])
        self.assertEqual(listed(t + " and name eq 'nothere'"), [])
        one = self.arm("GET", "/subscriptions/%s/resources?$filter=%s" % (SUB, urllib.parse.quote(t + " and name eq 'hoistacrres1'")),
                       api="2021-04-01").json["value"][0]
        self.assertEqual(sorted(one), ["id", "location", "name", "sku", "type"])  # no properties, as ARM lists them
        r = self.arm("GET", "/subscriptions/%s/resources?$filter=%s" % (SUB, urllib.parse.quote("kind gt 'x'")),
                     api="2021-04-01")
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "InvalidFilterInQueryString"))

    def test_data_plane_on_https_through_the_proxy(self):
        # az acr repository list/show-tags call https://<loginServer>/v2/... and ACR's
        # /acr/v1/{repo}/_tags; the registry behind the login server is plain HTTP
        self.import_busybox("hoistacr7", "azemu/dataplane:1")

        def get(path, token=None):
            req = urllib.request.Request("https://%s%s" % (SERVICE, path),
                                         headers={"Authorization": "Bearer " + token} if token else {})
            try:
                with VIA_PROXY.open(req, timeout=30) as r:
                    return r.status, r.headers, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read()
        status, headers, _ = get("/v2/")
        self.assertEqual(status, 401)
        self.assertIn('service="%s"' % SERVICE, headers["WWW-Authenticate"])
        # ACR's action name, as az asks for it: the token server grants it as pull
        tok = call("POST", TOKEN_SERVER + "/token", form={
            "grant_type": "password", "service": SERVICE, "scope": "repository:azemu/dataplane:metadata_read",
            "username": ENV["HOIST_TEST_REGISTRY_TOKEN_USER"],
            "password": ENV["HOIST_TEST_REGISTRY_TOKEN_PASSWORD"]}).json["access_token"]
        status, _, body = get("/acr/v1/azemu/dataplane/_tags", tok)
        self.assertEqual(status, 200, body)
        self.assertEqual((body["registry"], body["imageName"]), (SERVICE, "azemu/dataplane"))
        self.assertEqual([t["name"] for t in body["tags"]], ["1"])
        self.assertRegex(body["tags"][0]["digest"], r"^sha256:[0-9a-f]{64}$")
        status, _, body = get("/v2/azemu/dataplane/tags/list", tok)
        self.assertEqual((status, body["tags"]), (200, ["1"]))
        status, _, _ = get("/acr/v1/azemu/dataplane/_tags")
        self.assertEqual(status, 401)

    def import_busybox(self, registry, target):
        src = "127.0.0.1:5000/azemu-src/busybox:1"
        p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                            "docker-daemon:" + ENV.get("HOIST_TEST_BASE_IMAGE", "hoist-test/busybox:latest"),
                            "docker://" + src], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            self.skipTest("skipped: cannot put a source image in 127.0.0.1:5000: %s" % p.stderr.decode())
        self.create(registry)
        r = self.arm("POST", self.base + registry + "/importImage", {
            "source": {"registryUri": "127.0.0.1:5000", "sourceImage": "azemu-src/busybox:1"},
            "targetTags": [target], "mode": "Force"}, api=API)
        self.assertEqual(r.status, 202, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 200)

    def test_replications_need_premium(self):
        self.create("hoistacr5", sku="Standard")
        r = self.arm("PUT", self.base + "hoistacr5/replications/eastus", {"location": "eastus"}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "OperationNotSupportedForSku"))
        self.create("hoistacr6", sku="Premium")
        r = self.arm("PUT", self.base + "hoistacr6/replications/eastus", {"location": "eastus"}, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.arm.poll(r.headers["Azure-AsyncOperation"])
        listed = self.arm("GET", self.base + "hoistacr6/replications", api=API).json["value"]
        self.assertEqual([x["name"] for x in listed], ["eastus"])
        self.assertEqual(listed[0]["properties"]["provisioningState"], "Succeeded")
        r = self.arm("PUT", self.base + "nothere1/replications/eastus", {"location": "eastus"}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (404, "ParentResourceNotFound"))


if __name__ == "__main__":
    unittest.main()
