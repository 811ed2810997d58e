#!/usr/bin/env python3
"""Tests of the emulated Microsoft.ManagedIdentity (user-assigned identities, federated identity
credentials that let a GitHub OIDC token sign in as the identity) and Microsoft.Authorization's
built-in role definitions, read by name."""

import unittest

from testlib import RG_PATH, SUB, ArmClient, call, control, require_emulator
from test_identity import TOKEN_URL, assertion_form, github_assertion
from azemu import jwt

API = "2023-01-31"
ROLE_API = "2022-04-01"


@require_emulator
class ManagedIdentity(unittest.TestCase):
    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-mi", {"location": "westeurope"})
        self.base = RG_PATH + "rg-mi/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"

    def tearDown(self):
        control("reset", {"store": True})

    def fic(self, name, issuer=None, subject=None, audiences=None, identity="deployer"):
        # the issuer and subject of the GitHub OIDC token the emulator hands out
        claims = jwt.decode_unverified(github_assertion())[1]
        body = {"properties": {"issuer": claims["iss"] if issuer is None else issuer,
                               "subject": claims["sub"] if subject is None else subject,
                               "audiences": audiences if audiences is not None else ["api://AzureADTokenExchange"]}}
        return self.arm("PUT", self.base + identity + "/federatedIdentityCredentials/" + name, body, api=API)

    def test_identity_and_federated_credential_sign_in(self):
        r = self.arm("PUT", self.base + "deployer", {"location": "westeurope"}, api=API)
        self.assertEqual(r.status, 201, r.raw)
        props = r.json["properties"]
        for k in ("principalId", "clientId", "tenantId"):
            self.assertTrue(props.get(k), k)
        # without a federated credential, GitHub's token does not sign in as the identity
        r = call("POST", TOKEN_URL, form=assertion_form(github_assertion(), props["clientId"]))
        self.assertEqual(r.status, 400, r.raw)
        self.assertEqual(self.fic("github-main").status, 201)
        r = call("POST", TOKEN_URL, form=assertion_form(github_assertion(), props["clientId"]))
        self.assertEqual(r.status, 200, r.raw)
        listed = self.arm("GET", self.base + "deployer/federatedIdentityCredentials", api=API).json["value"]
        self.assertEqual([f["name"] for f in listed], ["github-main"])
        # deleted: refused again
        self.assertIn(self.arm("DELETE", self.base + "deployer/federatedIdentityCredentials/github-main", api=API).status,
                      (200, 204))
        r = call("POST", TOKEN_URL, form=assertion_form(github_assertion(), props["clientId"]))
        self.assertEqual(r.status, 400, r.raw)

    def test_federated_credential_validation(self):
        self.arm("PUT", self.base + "deployer", {"location": "westeurope"}, api=API)
        r = self.fic("bad-issuer", issuer="http://token.actions.githubusercontent.com")
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "BadRequest"), r.raw)
        self.assertIn("https", r.json["error"]["message"])
        r = self.fic("two-audiences", audiences=["a", "b"])
        self.assertEqual(r.status, 400, r.raw)
        r = self.fic("no-subject", subject="")
        self.assertEqual(r.status, 400, r.raw)
        self.assertEqual(self.fic("first").status, 201)
        r = self.fic("same-pair")
        self.assertEqual((r.status, r.json["error"]["code"]), (409, "Conflict"), r.raw)
        r = self.fic("x", identity="absent")
        self.assertEqual(r.status, 404, r.raw)

    def test_role_definitions_by_name(self):
        r = self.arm("GET", "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions?$filter=%s"
                     % (SUB, "roleName%20eq%20%27AcrPull%27"), api=ROLE_API)
        self.assertEqual(r.status, 200, r.raw)
        (role,) = r.json["value"]
        self.assertEqual(role["name"], "7f951dda-4ed3-4680-a7ca-43fe172d538d")
        self.assertEqual(role["properties"]["roleName"], "AcrPull")
        r = self.arm("GET", "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s"
                     % (SUB, "b24988ac-6180-42a0-ab88-20f7382dd24c"), api=ROLE_API)
        self.assertEqual(r.json["properties"]["roleName"], "Contributor")
        r = self.arm("GET", "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s"
                     % (SUB, "00000000-0000-0000-0000-000000000000"), api=ROLE_API)
        self.assertEqual(r.status, 404, r.raw)


if __name__ == "__main__":
    unittest.main()
