#!/usr/bin/env python3
"""Tests of the emulated Microsoft.ContainerRegistry and of the ACR token exchange of
tests/env/token_server.py with the emulator's Entra tokens. importImage copies a real image,
so these need the registries of tests/env/up.sh and skopeo."""

import base64
import subprocess
import unittest

from testlib import ENV, RG_PATH, ArmClient, call, control, require_emulator, secret_token

API = "2025-04-01"
TOKEN_SERVER = ENV.get("HOIST_TEST_TOKEN_SERVER", "http://127.0.0.1:5003")
SERVICE = "127.0.0.1:5002"


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
        self.assertEqual(reg["properties"]["loginServer"], "127.0.0.1:5002")
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
