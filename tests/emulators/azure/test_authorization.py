#!/usr/bin/env python3
"""Tests of the emulated access control: Permissions - List at subscription, resource group and
resource scopes (the caller's effective actions, inherited from the scopes above), writes refused
with 403 AuthorizationFailed when the caller's roles do not grant them, the emulator's own
principals owning the subscription, and the limited principal holding nothing until assigned.
No reset: its names are its own (hoist-azperms-...), so it runs beside other tests."""

import unittest
import uuid

from testlib import ENV, LOGIN, RG_PATH, SUB, TENANT, ArmClient, call, require_emulator
from azemu.providers.authorization import BUILTIN_ROLES, action_of, granted
from azemu.registry_auth import principal_of

API = "2022-04-01"
MI_API = "2023-01-31"


def limited_token():
    r = call("POST", "%s/%s/oauth2/v2.0/token" % (LOGIN, TENANT), form={
        "grant_type": "client_credentials", "client_id": ENV["HOIST_TEST_AZURE_LIMITED_CLIENT_ID"],
        "client_secret": ENV["HOIST_TEST_AZURE_LIMITED_CLIENT_SECRET"],
        "scope": "https://management.azure.com/.default"})
    assert r.status == 200, r.raw
    return r.json["access_token"]


class Rules(unittest.TestCase):
    """The pure parts: which action a request needs, and whether permissions grant it."""

    def test_action_of_a_request(self):
        rg = "/subscriptions/s/resourceGroups/g"
        site = rg + "/providers/Microsoft.Web/sites/web"
        cases = [
            ("PUT", rg, ("Microsoft.Resources/subscriptions/resourceGroups/write", rg)),
            ("PATCH", rg, ("Microsoft.Resources/subscriptions/resourceGroups/write", rg)),
            ("DELETE", rg, ("Microsoft.Resources/subscriptions/resourceGroups/delete", rg)),
            ("PUT", site, ("Microsoft.Web/sites/write", site)),
            ("PUT", site + "/slots/staging", ("Microsoft.Web/sites/slots/write", site + "/slots/staging")),
            ("PATCH", site + "/config/web", ("Microsoft.Web/sites/config/write", site + "/config/web")),
            ("POST", site + "/slotsswap", ("Microsoft.Web/sites/slotsswap/action", site)),
            ("POST", site + "/config/appsettings/list",
             ("Microsoft.Web/sites/config/list/action", site + "/config/appsettings")),
            ("POST", "/subscriptions/s/providers/Microsoft.App/register",
             ("Microsoft.App/register/action", "/subscriptions/s")),
            ("PUT", site + "/providers/Microsoft.Authorization/roleAssignments/r1",
             ("Microsoft.Authorization/roleAssignments/write",
              site + "/providers/Microsoft.Authorization/roleAssignments/r1")),
            ("GET", site, None),
        ]
        for method, path, want in cases:
            self.assertEqual(action_of(method, path), want, (method, path))

    def test_wildcards_and_not_actions(self):
        contributor = {"actions": ["*"], "notActions": ["Microsoft.Authorization/*/Write"]}
        reader = {"actions": ["*/read"], "notActions": []}
        web = {"actions": ["Microsoft.Web/*"], "notActions": []}
        self.assertTrue(granted([contributor], "microsoft.web/sites/write"))
        self.assertFalse(granted([contributor], "Microsoft.Authorization/roleAssignments/write"))
        self.assertTrue(granted([reader], "Microsoft.Web/sites/read"))
        self.assertFalse(granted([reader], "Microsoft.Web/sites/write"))
        self.assertTrue(granted([web], "Microsoft.Web/sites/slots/write"))
        self.assertFalse(granted([web], "Microsoft.App/containerApps/write"))
        # a notAction takes away from its own role only
        uaa = {"actions": ["Microsoft.Authorization/*"], "notActions": []}
        self.assertTrue(granted([contributor, uaa], "Microsoft.Authorization/roleAssignments/write"))

    def test_the_identity_a_pull_names(self):
        # Container Apps names a registry identity by resource id, App Service by client id
        # (acrUserManagedIdentityID); either must be assigned to the resource
        rid = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/p"
        ident = {"type": "UserAssigned", "userAssignedIdentities": {rid: {"clientId": "c-1", "principalId": "p-1"}}}
        self.assertEqual(principal_of(ident, rid.upper()), ("c-1", "p-1"))
        self.assertEqual(principal_of(ident, "C-1"), ("c-1", "p-1"))
        with self.assertRaises(RuntimeError):
            principal_of(ident, "c-2")


@require_emulator
class AccessControl(unittest.TestCase):
    def setUp(self):
        self.arm = ArmClient()
        self.rg = "hoist-azperms-%s" % uuid.uuid4().hex[:8]
        self.rg_id = "/subscriptions/%s/resourcegroups/%s" % (SUB, self.rg)
        self.assertEqual(self.arm("PUT", RG_PATH + self.rg, {"location": "westeurope"}).status, 201)
        self.limited = ArmClient(limited_token())
        self.oid = ENV["HOIST_TEST_AZURE_LIMITED_OBJECT_ID"]
        self.assignments = []

    def tearDown(self):
        for path in self.assignments:
            self.arm("DELETE", path, api=API)
        self.arm("DELETE", RG_PATH + self.rg)

    def assign(self, role, scope):
        path = scope + "/providers/Microsoft.Authorization/roleAssignments/" + str(uuid.uuid4())
        r = self.arm("PUT", path, {"properties": {
            "roleDefinitionId": "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s"
                                % (SUB, BUILTIN_ROLES[role]), "principalId": self.oid}}, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.assignments.append(path)

    def permissions(self, client, scope):
        return client("GET", scope + "/providers/Microsoft.Authorization/permissions", api=API)

    def test_the_emulators_principals_own_the_subscription(self):
        for scope in ("/subscriptions/" + SUB, self.rg_id):
            r = self.permissions(self.arm, scope)
            self.assertEqual(r.status, 200, r.raw)
            self.assertIn({"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []},
                          r.json["value"])
        owner = self.arm("GET", "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s"
                         % (SUB, BUILTIN_ROLES["Owner"]), api=API).json
        self.assertEqual(owner["properties"]["permissions"][0]["actions"], ["*"])

    def test_no_role_reader_contributor(self):
        identity = self.rg_id + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/idx"
        # no role: neither the permissions nor a write
        r = self.permissions(self.limited, self.rg_id)
        self.assertEqual(r.status, 403, r.raw)
        self.assertEqual(r.json["error"]["code"], "AuthorizationFailed")
        self.assertIn("Microsoft.Authorization/permissions/read", r.json["error"]["message"])
        # Reader at the group: reads only, inherited by the resources in it
        self.assign("Reader", self.rg_id)
        r = self.permissions(self.limited, self.rg_id)
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual([p["actions"] for p in r.json["value"]], [["*/read"]])
        self.assertEqual(self.permissions(self.limited, identity).json["value"], r.json["value"])
        self.assertEqual(self.permissions(self.limited, "/subscriptions/" + SUB).status, 403,
                         "nothing is held at the subscription")
        r = self.limited("PUT", identity, {"location": "westeurope"}, api=MI_API)
        self.assertEqual(r.status, 403, r.raw)
        msg = r.json["error"]["message"]
        self.assertIn("'Microsoft.ManagedIdentity/userAssignedIdentities/write'", msg)
        self.assertIn("object id '%s'" % self.oid, msg)
        self.assertIn("over scope '%s'" % identity, msg)
        self.assertIsNone(self.arm("GET", identity, api=MI_API).json.get("id"), "nothing was made")
        # Contributor: writes, but no role assignment and nothing at the subscription
        self.assign("Contributor", self.rg_id)
        r = self.limited("PUT", identity, {"location": "westeurope"}, api=MI_API)
        self.assertEqual(r.status, 201, r.raw)
        r = self.limited("PUT", identity + "/providers/Microsoft.Authorization/roleAssignments/" + str(uuid.uuid4()),
                         {"properties": {"roleDefinitionId": "/subscriptions/%s/providers/Microsoft.Authorization/"
                                         "roleDefinitions/%s" % (SUB, BUILTIN_ROLES["AcrPull"]),
                                         "principalId": self.oid}}, api=API)
        self.assertEqual(r.status, 403, r.raw)
        self.assertIn("Microsoft.Authorization/roleAssignments/write", r.json["error"]["message"])
        r = self.limited("POST", "/subscriptions/%s/providers/Microsoft.App/register" % SUB)
        self.assertEqual(r.status, 403, r.raw)
        self.assertIn("'Microsoft.App/register/action' over scope '/subscriptions/%s'" % SUB,
                      r.json["error"]["message"])
        self.assertEqual(self.limited("DELETE", identity, api=MI_API).status, 200)

    def test_a_missing_group(self):
        r = self.permissions(self.arm, "/subscriptions/%s/resourcegroups/hoist-azperms-none" % SUB)
        self.assertEqual(r.status, 404, r.raw)
        self.assertEqual(r.json["error"]["code"], "ResourceGroupNotFound")


if __name__ == "__main__":
    unittest.main()
