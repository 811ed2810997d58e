#!/usr/bin/env python3
"""Tests of the ARM core: authentication, api-versions, the error envelope, request ids,
resource groups, pagination, long-running operations, faults, providers, role assignments."""

import time
import unittest
import uuid

from azemu import apiversions
from testlib import ARM, ENV, LOGIN, RG_PATH, SUB, TENANT, ArmClient, call, control, \
    require_emulator, secret_token


@require_emulator
class Core(unittest.TestCase):
    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()

    def assert_error(self, r, status, code, words=""):
        self.assertEqual(r.status, status, r.raw)
        err = r.json["error"]
        self.assertEqual(err["code"], code, r.raw)
        self.assertIn(words, err["message"])
        self.assertTrue(r.headers["x-ms-request-id"])
        return err

    def test_authentication(self):
        url = ARM + RG_PATH + "x?api-version=2025-04-01"
        r = call("GET", url)
        self.assert_error(r, 401, "AuthenticationFailed", "'Authorization' header is missing")
        self.assertIn('authorization_uri="%s/%s"' % (LOGIN, TENANT), r.headers["WWW-Authenticate"])
        h, p, s = self.arm.token.split(".")
        forged = ArmClient(h + "." + p + "." + s[::-1])
        self.assert_error(forged("GET", RG_PATH + "x"), 401, "InvalidAuthenticationToken", "signature")
        vault = ArmClient(secret_token("https://vault.azure.net/"))
        self.assert_error(vault("GET", RG_PATH + "x"), 401, "InvalidAuthenticationTokenAudience",
                          "https://vault.azure.net/")
        control("settings", {"token_lifetime": 0})
        expired = ArmClient()
        time.sleep(1.1)  # the token's exp is its iat: one second later it has expired
        r = expired("GET", RG_PATH + "x")
        self.assert_error(r, 401, "ExpiredAuthenticationToken", "expiry")
        self.assertIn('error="invalid_token"', r.headers["WWW-Authenticate"])

    def test_api_version_is_required_and_checked(self):
        self.assert_error(self.arm("GET", RG_PATH + "x", api=None), 400, "MissingApiVersionParameter")
        self.assert_error(self.arm("GET", RG_PATH + "x", api="1999-01-01"), 400,
                          "InvalidApiVersionParameter", "1999-01-01")

    def test_current_api_versions_are_accepted(self):
        # what the current SDKs send (@azure/arm-appservice 19, @azure/arm-appcontainers 4, ...)
        sent = [("Microsoft.Web/sites", "2025-05-01"), ("Microsoft.App/containerApps", "2026-07-01"),
                ("Microsoft.App/managedEnvironments", "2026-07-01"),
                ("Microsoft.ContainerInstance/containerGroups", "2026-05-01"),
                ("Microsoft.ContainerInstance/containerGroups", "2026-06-01-preview"),
                ("Microsoft.ContainerRegistry/registries", "2025-11-01"),
                ("Microsoft.ContainerService/managedClusters", "2025-10-01")]
        # and every version of the emulator's table, so that no provider keeps a list of its own
        types = {"Microsoft.Web": "sites", "Microsoft.App": "containerApps",
                 "Microsoft.ContainerInstance": "containerGroups",
                 "Microsoft.ContainerRegistry": "registries",
                 "Microsoft.ContainerService": "managedClusters"}
        sent += [(ns + "/" + t, v) for ns, t in types.items() for v in sorted(apiversions.of(ns))]
        for rtype, version in sent:
            r = self.arm("GET", "/subscriptions/%s/providers/%s" % (SUB, rtype), api=version)
            self.assertEqual(r.status, 200, "%s %s: %s" % (rtype, version, r.raw))
        for version in sorted(apiversions.of("Microsoft.Resources")):
            self.assertEqual(self.arm("GET", RG_PATH, api=version).status, 200, version)
        for version in sorted(apiversions.of("Microsoft.Resources/subscriptions")):
            self.assertEqual(self.arm("GET", "/subscriptions/" + SUB, api=version).status, 200, version)
        scope = "/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments" % SUB
        for version in sorted(apiversions.of("Microsoft.Authorization")):
            self.assertEqual(self.arm("GET", scope, api=version).status, 200, version)
        # an unknown one is still refused, naming the ones there are
        err = self.assert_error(self.arm("GET", "/subscriptions/%s/providers/Microsoft.Web/sites" % SUB,
                                         api="2025-05-02"), 400, "InvalidApiVersionParameter", "2025-05-02")
        self.assertIn("2025-05-01", err["message"])
        self.assertIn("2026-03-01-preview", err["message"])

    def test_request_ids(self):
        r = self.arm("GET", "/subscriptions/" + SUB, api="2022-12-01",
                     headers={"x-ms-client-request-id": "client-1",
                              "x-ms-correlation-request-id": "corr-1"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["x-ms-client-request-id"], "client-1")
        self.assertEqual(r.headers["x-ms-correlation-request-id"], "corr-1")
        self.assertEqual(len(r.headers["x-ms-request-id"]), 36)
        self.assertEqual(r.json["tenantId"], TENANT)
        self.assert_error(self.arm("GET", "/subscriptions/nope", api="2022-12-01"), 404,
                          "SubscriptionNotFound", "nope")

    def test_resource_group_lifecycle(self):
        r = self.arm("PUT", RG_PATH + "rg-a", {"location": "westus", "tags": {"a": "1"}})
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["properties"]["provisioningState"], "Succeeded")
        self.assertEqual(r.json["id"], "/subscriptions/%s/resourceGroups/rg-a" % SUB)
        self.assertEqual(self.arm("PUT", RG_PATH + "rg-a", {"location": "westus"}).status, 200)
        self.assert_error(self.arm("PUT", RG_PATH + "rg-a", {"location": "eastus"}), 409,
                          "InvalidResourceLocation", "westus")
        self.assert_error(self.arm("PUT", RG_PATH + "rg-b", {}), 400, "LocationRequired")
        self.assert_error(self.arm("PUT", RG_PATH + "bad%2Fname.", {"location": "westus"}), 400,
                          "InvalidResourceGroupName")
        self.assertEqual(self.arm("HEAD", RG_PATH + "rg-a").status, 204)
        self.assertEqual(self.arm("HEAD", RG_PATH + "rg-none").status, 404)
        self.assert_error(self.arm("GET", RG_PATH + "rg-none"), 404, "ResourceGroupNotFound", "rg-none")
        r = self.arm("DELETE", RG_PATH + "rg-a")
        self.assertEqual(r.status, 202)
        self.assertEqual(r.headers["Retry-After"], "1")
        self.assertEqual(self.arm("GET", RG_PATH + "rg-a").json["properties"]["provisioningState"],
                         "Deleting")
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 204)
        self.assert_error(self.arm("GET", RG_PATH + "rg-a"), 404, "ResourceGroupNotFound")
        self.assert_error(self.arm("DELETE", RG_PATH + "rg-a"), 404, "ResourceGroupNotFound")

    def test_resource_group_etag_guards_writes(self):
        r = self.arm("PUT", RG_PATH + "rg-e", {"location": "westus"}, headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 201, r.raw)
        first = r.headers["ETag"]
        self.assertEqual(self.arm("GET", RG_PATH + "rg-e").headers["ETag"], first)
        self.assert_error(self.arm("PUT", RG_PATH + "rg-e", {"location": "westus"},
                                   headers={"If-None-Match": "*"}), 412, "PreconditionFailed", "exists")
        r = self.arm("PATCH", RG_PATH + "rg-e", {"tags": {"a": "1"}}, headers={"If-Match": first})
        self.assertEqual(r.status, 200, r.raw)
        second = r.headers["ETag"]
        self.assertNotEqual(second, first)
        # the writer that read the first ETag lost: its PATCH changes nothing
        self.assert_error(self.arm("PATCH", RG_PATH + "rg-e", {"tags": {"b": "2"}}, headers={"If-Match": first}),
                          412, "PreconditionFailed", first)
        self.assertEqual(self.arm("GET", RG_PATH + "rg-e").json["tags"], {"a": "1"})
        self.assertEqual(self.arm("PATCH", RG_PATH + "rg-e", {"tags": {}}, headers={"If-Match": "*"}).status, 200)
        self.assert_error(self.arm("PATCH", RG_PATH + "rg-none", {"tags": {}}, headers={"If-Match": "*"}),
                          404, "ResourceGroupNotFound")
        self.assert_error(self.arm("PUT", RG_PATH + "rg-new", {"location": "westus"}, headers={"If-Match": "*"}),
                          412, "PreconditionFailed", "does not exist")

    def test_pagination_follows_next_link(self):
        control("settings", {"page_size": 2})
        for i in range(5):
            self.arm("PUT", RG_PATH + "rg-%d" % i, {"location": "westus"})
        r = self.arm("GET", RG_PATH.rstrip("/"))
        names, pages = [], 0
        while True:
            pages += 1
            names += [g["name"] for g in r.json["value"]]
            if "nextLink" not in r.json:
                break
            self.assertTrue(r.json["nextLink"].startswith(ARM + "/subscriptions/"))
            r = self.arm("GET", None, url=r.json["nextLink"])
        self.assertEqual(names, ["rg-%d" % i for i in range(5)])
        self.assertEqual(pages, 3)

    def test_resources_of_a_group(self):
        """Resources - List By Resource Group: what hoist reads before it deletes a group a
        failed first deploy created (only an empty one)."""
        self.assertEqual(self.arm("PUT", RG_PATH + "rg-r", {"location": "westus"}).status, 201)
        r = self.arm("GET", RG_PATH + "rg-r/resources", api="2021-04-01")
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["value"], [])
        control("settings", {"page_size": 1})
        for name in ("plan-a", "plan-b"):
            r = self.arm("PUT", RG_PATH + "rg-r/providers/Microsoft.Web/serverfarms/" + name,
                         {"location": "westus", "sku": {"name": "B1"}}, api="2023-12-01")
            self.assertIn(r.status, (200, 201), r.raw)
        r = self.arm("GET", RG_PATH + "rg-r/resources", api="2021-04-01")
        first = r.json["value"]
        self.assertEqual([x["name"] for x in first], ["plan-a"])
        self.assertEqual(first[0]["type"], "Microsoft.Web/serverfarms")
        self.assertNotIn("properties", first[0])
        r = self.arm("GET", None, url=r.json["nextLink"])
        self.assertEqual([x["name"] for x in r.json["value"]], ["plan-b"])
        self.assertNotIn("nextLink", r.json)
        self.assert_error(self.arm("GET", RG_PATH + "rg-none/resources", api="2021-04-01"), 404,
                          "ResourceGroupNotFound")
        self.assert_error(self.arm("GET", RG_PATH + "rg-r/resources", api="1999-01-01"), 400,
                          "InvalidApiVersionParameter")

    def test_async_operation_mode(self):
        # long enough that the checks below see it in progress, however slow the machine
        control("settings", {"lro": {"Microsoft.Resources/resourceGroups": "async"}, "lro_duration": 60})
        r = self.arm("PUT", RG_PATH + "rg-lro", {"location": "westus"})
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["properties"]["provisioningState"], "Creating")
        op = r.headers["Azure-AsyncOperation"]
        self.assertIn("/operationStatuses/", op)
        for _ in range(3):  # polls do not move it: time does
            self.assertEqual(self.arm("GET", None, url=op).json["status"], "InProgress")
            self.assertEqual(self.arm("GET", RG_PATH + "rg-lro").json["properties"]["provisioningState"],
                             "Creating")
        control("settings", {"lro_duration": 0})
        done = self.arm.poll(op).json
        self.assertEqual(done["status"], "Succeeded")
        self.assertIn("endTime", done)
        self.assertEqual(self.arm("GET", RG_PATH + "rg-lro").json["properties"]["provisioningState"],
                         "Succeeded")
        r = self.arm("DELETE", RG_PATH + "rg-lro")
        self.assertEqual(r.status, 202)
        self.assertIn("Azure-AsyncOperation", r.headers)
        self.assertEqual(self.arm.poll(r.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")

    def test_state_moves_by_time_without_polls(self):
        # a client that never polls (nor GETs the resource) finds it done, in a list too
        control("settings", {"lro": {"Microsoft.Web/serverfarms": "async"}, "lro_duration": 60})
        self.arm("PUT", RG_PATH + "rg-t", {"location": "westus"})
        plans = "/subscriptions/%s/providers/Microsoft.Web/serverfarms" % SUB
        r = self.arm("PUT", RG_PATH + "rg-t/providers/Microsoft.Web/serverfarms/plan-t",
                     {"location": "westus", "sku": {"name": "B1"}}, api="2024-11-01")
        self.assertEqual(r.json["properties"]["provisioningState"], "Creating", r.raw)
        self.assertEqual([p["properties"]["provisioningState"]
                          for p in self.arm("GET", plans, api="2024-11-01").json["value"]], ["Creating"])
        control("settings", {"lro_duration": 0.2})
        for _ in range(100):
            states = [p["properties"]["provisioningState"]
                      for p in self.arm("GET", plans, api="2024-11-01").json["value"]]
            if states != ["Creating"]:
                break
            time.sleep(0.05)
        self.assertEqual(states, ["Succeeded"])
        status = self.arm("GET", None, url=r.headers["Azure-AsyncOperation"]).json
        self.assertEqual((status["status"], status["percentComplete"]), ("Succeeded", 100))

    def test_one_resource_held_longer(self):
        # lro_duration_for holds the operations of the resources a test names; others keep lro_duration
        control("settings", {"lro": {"Microsoft.Resources/resourceGroups": "async"}, "lro_duration": 0,
                             "lro_duration_for": {"RG-Held": 60}})
        held = self.arm("PUT", RG_PATH + "rg-held", {"location": "westus"})
        other = self.arm("PUT", RG_PATH + "rg-other", {"location": "westus"})
        self.assertEqual(self.arm.poll(other.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")
        self.assertEqual(self.arm("GET", None, url=held.headers["Azure-AsyncOperation"]).json["status"], "InProgress")
        self.assertEqual(control("settings", {"lro_duration_for": {"rg-held": 0}})["lro_duration_for"], {})
        self.assertEqual(self.arm.poll(held.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")
        for bad in ({"lro_duration_for": {"x": -1}}, {"lro_duration_for": {"x": "long"}}):
            with self.assertRaisesRegex(AssertionError, "lro_duration_for .{1,3}x.{1,3} must be a number"):
                control("settings", bad)

    def test_provisioning_failure_and_cancel(self):
        for outcome, mode in (("Failed", "async"), ("Canceled", "async"), ("Failed", "location")):
            with self.subTest(outcome=outcome, mode=mode):
                name = "rg-%s-%s" % (outcome, mode)
                r = self.arm("PUT", RG_PATH + name, {"location": "westus"},
                             headers={"x-hoist-emulator-lro": mode,
                                      "x-hoist-emulator-provisioning": outcome})
                if mode == "async":
                    body = self.arm.poll(r.headers["Azure-AsyncOperation"]).json
                    self.assertEqual(body["status"], outcome)
                    if outcome == "Failed":
                        self.assertEqual(set(body["error"]), {"code", "message"})
                else:
                    self.assertEqual(r.status, 202)
                    self.assertEqual(self.arm.poll(r.headers["Location"]).status, 400)
                self.assertEqual(self.arm("GET", RG_PATH + name).json["properties"]["provisioningState"],
                                 outcome)
        self.assert_error(self.arm("PUT", RG_PATH + "x", {"location": "westus"},
                                   headers={"x-hoist-emulator-lro": "sometimes"}), 400, "InvalidHeaderValue")

    def test_location_mode_put(self):
        r = self.arm("PUT", RG_PATH + "rg-loc", {"location": "westus"},
                     headers={"x-hoist-emulator-lro": "location"})
        self.assertEqual(r.status, 202)
        self.assertEqual(r.raw, b"")
        final = self.arm.poll(r.headers["Location"])
        self.assertEqual(final.status, 200)
        self.assertEqual(final.json["name"], "rg-loc")

    def test_faults(self):
        control("faults", {"server": "arm", "status": 429, "count": 1, "retry_after": 3})
        r = self.arm("GET", "/subscriptions/" + SUB, api="2022-12-01")
        self.assert_error(r, 429, "SubscriptionRequestsThrottled")
        self.assertEqual(r.headers["Retry-After"], "3")
        # the subscription's limit is what throttled it: none left, as Azure reports it
        self.assertEqual(r.headers["x-ms-ratelimit-remaining-subscription-reads"], "0")
        control("faults", {"server": "arm", "status": 429, "count": 1, "method": "PUT"})
        r = self.arm("PUT", RG_PATH + "f", {"location": "westus"})
        self.assert_error(r, 429, "SubscriptionRequestsThrottled")
        self.assertEqual(r.headers["x-ms-ratelimit-remaining-subscription-writes"], "0")
        r = self.arm("GET", "/subscriptions/" + SUB, api="2022-12-01")
        self.assertNotEqual(r.headers["x-ms-ratelimit-remaining-subscription-reads"], "0")
        control("faults", {"server": "arm", "status": 500, "count": 1, "method": "PUT"})
        self.assertEqual(self.arm("GET", "/subscriptions/" + SUB, api="2022-12-01").status, 200)
        self.assert_error(self.arm("PUT", RG_PATH + "f", {"location": "westus"}), 500, "InternalServerError")
        self.assertEqual(self.arm("PUT", RG_PATH + "f", {"location": "westus"}).status, 201)

    def test_provider_registration(self):
        path = "/subscriptions/%s/providers/Microsoft.ContainerInstance" % SUB
        r = self.arm("GET", path)
        self.assertEqual(r.json["registrationState"], "NotRegistered")
        control("settings", {"register_duration": 60})
        self.assertEqual(self.arm("POST", path + "/register").json["registrationState"], "Registering")
        for _ in range(3):  # by time, as Azure's: asking again does not speed it up
            self.assertEqual(self.arm("GET", path).json["registrationState"], "Registering")
        control("settings", {"register_duration": 0})
        self.assertEqual(self.arm("GET", path).json["registrationState"], "Registered")
        self.assert_error(self.arm("GET", "/subscriptions/%s/providers/Microsoft.Nope" % SUB), 404,
                          "InvalidResourceNamespace", "Microsoft.Nope")
        names = [p["namespace"] for p in self.arm("GET", "/subscriptions/%s/providers" % SUB).json["value"]]
        self.assertIn("Microsoft.ContainerRegistry", names)

    def test_role_assignments(self):
        self.arm("PUT", RG_PATH + "rg-r", {"location": "westus"})
        scope = "/subscriptions/%s/resourceGroups/rg-r" % SUB
        role = "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/" \
               "7f951dda-4ed3-4680-a7ca-43fe172d538d" % SUB
        name = str(uuid.uuid4())
        path = scope + "/providers/Microsoft.Authorization/roleAssignments/"
        body = {"properties": {"roleDefinitionId": role, "principalId": "p-1",
                               "principalType": "ServicePrincipal"}}
        r = self.arm("PUT", path + name, body, api="2022-04-01")
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["properties"]["scope"], scope)
        self.assertEqual(self.arm("GET", path + name, api="2022-04-01").json["name"], name)
        err = self.assert_error(self.arm("PUT", path + str(uuid.uuid4()), body, api="2022-04-01"), 409,
                                "RoleAssignmentExists")
        self.assertIn(name, err["details"][0]["message"])
        self.assert_error(self.arm("PUT", path + "not-a-guid", body, api="2022-04-01"), 400,
                          "InvalidRoleAssignmentId")
        self.assert_error(self.arm("PUT", path + str(uuid.uuid4()), {"properties": {"principalId": "x"}},
                                   api="2022-04-01"), 400, "InvalidRoleDefinitionId")
        listed = self.arm("GET", scope + "/providers/Microsoft.Authorization/roleAssignments"
                          "?$filter=principalId%20eq%20'p-1'", api="2022-04-01").json["value"]
        self.assertEqual([a["name"] for a in listed], [name])
        self.assertEqual(self.arm("DELETE", path + name, api="2022-04-01").status, 200)
        self.assertEqual(self.arm("DELETE", path + name, api="2022-04-01").status, 204)
        self.assert_error(self.arm("GET", path + name, api="2022-04-01"), 404, "RoleAssignmentNotFound")
        self.assert_error(self.arm("PUT", "/subscriptions/%s/resourceGroups/none/providers/Microsoft."
                                   "Authorization/roleAssignments/%s" % (SUB, uuid.uuid4()), body,
                                   api="2022-04-01"), 404, "ResourceGroupNotFound")

    def test_control_counts_arm_requests(self):
        self.arm("GET", "/subscriptions/" + SUB, api="2022-12-01")
        self.assertGreaterEqual(control("counters", method="GET")["arm:GET"], 1)


if __name__ == "__main__":
    unittest.main()
