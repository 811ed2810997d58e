#!/usr/bin/env python3
"""Tests of the emulator's identity endpoints: Entra client credentials (secret, assertions
from the GitHub and workload identity issuers), GitHub OIDC, managed identity, control."""

import time
import unittest

from testlib import ENV, LOGIN, TENANT, call, control, require_emulator
from azemu import jwt

TOKEN_URL = "%s/%s/oauth2/v2.0/token" % (LOGIN, TENANT)
SCOPE = "https://management.azure.com/.default"


def entra_keys():
    return jwt.keys_from_jwks(call("GET", "%s/%s/discovery/v2.0/keys" % (LOGIN, TENANT)).json)


def github_assertion(audience="api://AzureADTokenExchange"):
    r = call("GET", ENV["HOIST_TEST_AZURE_OIDC_URL"] + "?audience=" + audience,
             headers={"Authorization": "Bearer " + ENV["HOIST_TEST_AZURE_OIDC_TOKEN"]})
    assert r.status == 200, r.raw
    return r.json["value"]


def assertion_form(assertion, client_id=None):
    return {"grant_type": "client_credentials", "scope": SCOPE,
            "client_id": client_id or ENV["HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}


@require_emulator
class Entra(unittest.TestCase):
    def setUp(self):
        control("reset")

    def aad_error(self, r, status, error, code):
        self.assertEqual(r.status, status, r.raw)
        body = r.json
        self.assertEqual(body["error"], error)
        self.assertEqual(body["error_codes"], [code])
        self.assertTrue(body["error_description"].startswith("AADSTS%d:" % code), body)
        for k in ("trace_id", "correlation_id", "timestamp"):
            self.assertIn(k, body)
        return body["error_description"]

    def test_openid_configuration_names_this_authority(self):
        doc = call("GET", "%s/%s/v2.0/.well-known/openid-configuration" % (LOGIN, TENANT)).json
        self.assertEqual(doc["token_endpoint"], TOKEN_URL)
        self.assertEqual(doc["issuer"], "%s/%s/v2.0" % (LOGIN, TENANT))
        self.assertEqual(call("GET", doc["jwks_uri"]).json["keys"][0]["kty"], "RSA")

    def test_client_secret_gives_a_signed_arm_token(self):
        control("settings", {"token_lifetime": 7})
        r = call("POST", TOKEN_URL, form={"grant_type": "client_credentials", "scope": SCOPE,
                                          "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"],
                                          "client_secret": ENV["HOIST_TEST_AZURE_CLIENT_SECRET"]})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["token_type"], "Bearer")
        self.assertEqual(r.json["expires_in"], 7)
        claims = jwt.verify(r.json["access_token"], entra_keys())
        self.assertEqual(claims["aud"], "https://management.azure.com/")
        self.assertEqual(claims["tid"], TENANT)
        self.assertEqual(claims["appid"], ENV["HOIST_TEST_AZURE_CLIENT_ID"])
        self.assertEqual(claims["exp"] - claims["iat"], 7)
        self.assertIn("oid", claims)
        self.assertEqual(control("counters", method="GET").get("token:client_secret"), 1)

    def test_v1_endpoint_takes_a_resource(self):
        r = call("POST", "%s/%s/oauth2/token" % (LOGIN, TENANT), form={
            "grant_type": "client_credentials", "resource": "https://management.core.windows.net/",
            "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"],
            "client_secret": ENV["HOIST_TEST_AZURE_CLIENT_SECRET"]})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["resource"], "https://management.core.windows.net/")

    def test_errors_are_shaped_like_entra(self):
        base = {"grant_type": "client_credentials", "scope": SCOPE,
                "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"], "client_secret": "wrong"}
        cases = [
            (base, 401, "invalid_client", 7000215, "Invalid client secret"),
            (dict(base, client_id="00000000-dead-beef-0000-000000000000"), 400,
             "unauthorized_client", 700016, "00000000-dead-beef"),
            (dict(base, scope="https://management.azure.com/"), 400, "invalid_scope", 1002012, "/.default"),
            (dict(base, grant_type="password"), 400, "unsupported_grant_type", 70003, "password"),
            ({k: v for k, v in base.items() if k != "client_secret"}, 401, "invalid_client", 7000218,
             "client_secret"),
            ({k: v for k, v in base.items() if k != "scope"}, 400, "invalid_scope", 70011, "scope"),
        ]
        for form, status, error, code, words in cases:
            with self.subTest(error=error, code=code):
                desc = self.aad_error(call("POST", TOKEN_URL, form=form), status, error, code)
                self.assertIn(words, desc)
        desc = self.aad_error(call("POST", "%s/no-such-tenant/oauth2/v2.0/token" % LOGIN, form=base),
                              400, "invalid_tenant", 90002)
        self.assertIn("no-such-tenant", desc)
        self.assertNotIn("wrong", desc)  # the secret sent is never echoed

    def test_github_assertion_is_exchanged(self):
        r = call("POST", TOKEN_URL, form=assertion_form(github_assertion()))
        self.assertEqual(r.status, 200, r.raw)
        claims = jwt.verify(r.json["access_token"], entra_keys())
        self.assertEqual(claims["appid"], ENV["HOIST_TEST_AZURE_FEDERATED_CLIENT_ID"])
        counters = control("counters", method="GET")
        self.assertEqual((counters["token:github_oidc"], counters["token:client_assertion"]), (1, 1))

    def test_github_oidc_requires_the_request_token(self):
        for auth in (None, "Bearer wrong"):
            r = call("GET", ENV["HOIST_TEST_AZURE_OIDC_URL"] + "?audience=x",
                     headers={"Authorization": auth} if auth else {})
            self.assertEqual(r.status, 401, r.raw)
            self.assertIn("ACTIONS_ID_TOKEN_REQUEST_TOKEN", r.json["message"])
        claims, = [jwt.decode_unverified(github_assertion("aud-x"))[1]]
        self.assertEqual(claims["aud"], "aud-x")
        self.assertEqual(claims["iss"], ENV["HOIST_TEST_AZURE_OIDC_URL"].rsplit("/token", 1)[0])

    def test_assertion_failures(self):
        good = github_assertion()
        h, p, s = good.split(".")
        tampered = h + "." + p + "." + ("A" if s[0] != "A" else "B") + s[1:]
        control("settings", {"github_subject": "repo:someone/else:ref:refs/heads/main"})
        other_subject = github_assertion()
        control("reset")
        expired = control("workload-token", {"lifetime": -120})["token"]
        wrong_aud = github_assertion("https://example.invalid")
        hdr, claims = jwt.decode_unverified(good)
        forged_issuer = ".".join([h, jwt.b64url(('{"iss":"https://evil.invalid","sub":"x","exp":%d}'
                                                 % (time.time() + 60)).encode()), s])
        cases = [
            (tampered, 401, "invalid_client", 700027, "signature"),
            (other_subject, 400, "invalid_request", 70021, "repo:someone/else"),
            (expired, 400, "invalid_client", 700024, "valid time range"),
            (wrong_aud, 400, "invalid_request", 70021, "https://example.invalid"),
            (forged_issuer, 400, "invalid_request", 700211, "https://evil.invalid"),
            ("not-a-jwt", 401, "invalid_client", 50027, "malformed"),
        ]
        for assertion, status, error, code, words in cases:
            with self.subTest(code=code, words=words):
                desc = self.aad_error(call("POST", TOKEN_URL, form=assertion_form(assertion)),
                                      status, error, code)
                self.assertIn(words, desc)
        # the service principal has no federated credential: a valid assertion does not log it in
        self.aad_error(call("POST", TOKEN_URL, form=assertion_form(
            good, ENV["HOIST_TEST_AZURE_CLIENT_ID"])), 400, "invalid_request", 70021)

    def test_workload_identity_token_file(self):
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "token")
            out = control("workload-token", {"file": path})
            self.assertEqual(out["file"], path)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            with open(path) as f:
                r = call("POST", TOKEN_URL, form=assertion_form(f.read()))
            self.assertEqual(r.status, 200, r.raw)
        r = call("POST", TOKEN_URL, form=assertion_form(
            control("workload-token", {"sub": "system:serviceaccount:other:sa"})["token"]))
        self.assertEqual(r.status, 400, r.raw)

    def test_injected_fault_then_success(self):
        control("faults", {"server": "login", "status": 503, "count": 2, "retry_after": 0})
        form = {"grant_type": "client_credentials", "scope": SCOPE,
                "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"],
                "client_secret": ENV["HOIST_TEST_AZURE_CLIENT_SECRET"]}
        for _ in range(2):
            r = call("POST", TOKEN_URL, form=form)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["Retry-After"], "0")
        self.assertEqual(call("POST", TOKEN_URL, form=form).status, 200)


@require_emulator
class ManagedIdentity(unittest.TestCase):
    def setUp(self):
        control("reset")

    def test_app_service_endpoint(self):
        url = ENV["HOIST_TEST_AZURE_MSI_ENDPOINT"] + "?api-version=2019-08-01&resource=https://management.azure.com/"
        r = call("GET", url, headers={"X-IDENTITY-HEADER": ENV["HOIST_TEST_AZURE_MSI_HEADER"]})
        self.assertEqual(r.status, 200, r.raw)
        body = r.json
        self.assertEqual(set(body), {"access_token", "expires_on", "resource", "token_type", "client_id"})
        self.assertEqual(body["client_id"], ENV["HOIST_TEST_AZURE_MSI_CLIENT_ID"])
        self.assertEqual(jwt.verify(body["access_token"], entra_keys())["aud"], body["resource"])
        self.assertEqual(call("GET", url).status, 400)
        self.assertEqual(call("GET", url, headers={"X-IDENTITY-HEADER": "wrong"}).status, 401)
        r = call("GET", url + "&client_id=someone-else",
                 headers={"X-IDENTITY-HEADER": ENV["HOIST_TEST_AZURE_MSI_HEADER"]})
        self.assertEqual(r.status, 400)
        self.assertIn("someone-else", r.json["message"])

    def test_imds_endpoint(self):
        url = (ENV["HOIST_TEST_AZURE_IMDS_HOST"] + "/metadata/identity/oauth2/token"
               "?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F")
        r = call("GET", url, headers={"Metadata": "true"})
        self.assertEqual(r.status, 200, r.raw)
        for k in ("access_token", "client_id", "expires_in", "expires_on", "not_before",
                  "resource", "token_type"):
            self.assertIsInstance(r.json[k], str)
        r = call("GET", url)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["error_description"], "Required metadata header not specified")
        self.assertEqual(control("counters", method="GET")["token:imds"], 1)

    def test_control_rejects_bad_settings(self):
        for body, words in (({"nope": 1}, "unknown setting"), ({"token_lifetime": "x"}, "int"),
                            ({"lro": {"a/b": "sometimes"}}, "sometimes")):
            r = call("POST", ENV["HOIST_TEST_AZURE_CONTROL"] + "/settings", body)
            self.assertEqual(r.status, 400)
            self.assertIn(words, r.json["error"]["message"])


if __name__ == "__main__":
    unittest.main()
