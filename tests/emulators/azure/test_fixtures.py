#!/usr/bin/env python3
"""Conformance of the emulator with the recorded examples in ../shared/fixtures/arm: for each
example of a resource type the emulator serves, send the example's request (path from its own
parameters, with the emulator's subscription; body from its parameters) and check the status and
that every field of the documented response is present. Examples of other types are listed as
skipped, with why. Without the folder it prints "skipped: ../shared/fixtures absent" and exits 0,
or fails under CI=true."""

import json
import os
import sys

from testlib import CI, DOWN, ENV, SUB, ArmClient, call, control, emulator_up

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
# HOIST_FIXTURES overrides where the recorded fixtures are (as in fuzz/replay.sh)
FIXTURES = os.path.join(os.environ.get("HOIST_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures"),
                        "arm")
ACI = "providers/Microsoft.ContainerInstance/containerGroups/"
ACR = "providers/Microsoft.ContainerRegistry/registries/"

WEB = "providers/Microsoft.Web/"
CAPP = "providers/Microsoft.App/"
AKS = "providers/Microsoft.ContainerService/managedClusters/"
ABSENT_IMAGE = "127.0.0.1:5000/hoist/none:1"  # the examples' images are Docker Hub's: never pulled here

SKIP = {
    "containerinstance/ContainerGroupsGet_Failed.json":
        "needs an Azure Files mount that fails (FailedMount); the emulator mounts no volumes",
    "containerregistry/ImportImageFromPublicRegistry.json":
        "imports from registry.hub.docker.com; the emulator imports from 127.0.0.1 registries only "
        "(it answers 400 InvalidParameter, tested in test_acr.py)",
    "containerregistry/ImportImageByTag.json":
        "its source registry is in another subscription (10000000-...); the emulator has one",
    "containerregistry/ImportImageByManifestDigest.json":
        "its source registry is in another subscription (10000000-...); the emulator has one",
    "resources/ApiManagementGetOperationStatus.json":
        "an API Management operation status; the emulator's own statuses are checked with "
        "OperationStatusResultGet.json",
}


class Example:
    def __init__(self, rel):
        self.rel = rel
        with open(os.path.join(FIXTURES, rel)) as f:
            self.doc = json.load(f)
        self.params = self.doc.get("parameters", {})
        self.responses = self.doc.get("responses", {})

    def p(self, name):
        return self.params[name]

    @property
    def api(self):
        return self.params.get("api-version")


def missing(expected, actual, path=""):
    """Dotted paths of fields in EXPECTED that ACTUAL lacks (lists: elements matched by name)."""
    out = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path or "."]
        for k, v in expected.items():
            if v is None:  # a null in an example documents a value that is absent
                continue
            if k not in actual:
                out.append(path + "." + k)
            else:
                out += missing(v, actual[k], path + "." + k)
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        if not isinstance(actual, list) or not actual:
            return [path + "[]"]
        for i, e in enumerate(expected):
            match = next((a for a in actual if isinstance(a, dict) and "name" in e and a.get("name") == e["name"]),
                         actual[i] if i < len(actual) else actual[0])
            out += missing(e, match, "%s[%s]" % (path, e.get("name", i)))
    return out


class Runner:
    def __init__(self):
        self.arm = ArmClient()

    def rg(self, name, location="westus"):
        r = self.arm("PUT", "/subscriptions/%s/resourcegroups/%s" % (SUB, name), {"location": location})
        assert r.status in (200, 201), r.raw
        return "/subscriptions/%s/resourceGroups/%s/" % (SUB, name)

    def aci_registered(self):
        prov = "/subscriptions/%s/providers/Microsoft.ContainerInstance" % SUB
        self.arm("POST", prov + "/register")
        for _ in range(5):
            if self.arm("GET", prov).json["registrationState"] == "Registered":
                return

    def registry(self, ex, admin=False):
        base = self.rg(ex.p("resourceGroupName"))
        path = base + ACR + ex.p("registryName")
        body = {"location": "westus", "sku": {"name": "Standard"}, "tags": {"key": "value"},
                "properties": {"adminUserEnabled": admin}}
        r = self.arm("PUT", path, body, api=ex.api, headers={"x-hoist-emulator-lro": "sync"})
        assert r.status in (200, 201), r.raw
        return path

    def group(self, ex, body=None):
        """The example's container group, made synchronously from the body of its documented
        response when it has one (so the response can have every field), else a minimal one."""
        self.aci_registered()
        base = self.rg(ex.p("resourceGroupName"))
        path = base + ACI + ex.p("containerGroupName")
        documented = (ex.responses.get("200") or {}).get("body")
        if body is None and documented and "properties" in documented:
            body = json.loads(json.dumps(documented))
            for k in ("id", "name", "type"):
                body.pop(k, None)
            body["properties"].pop("provisioningState", None)
        if body is None:
            body = {"location": "westus", "properties": {
                "osType": "Linux", "restartPolicy": "Never",
                "containers": [{"name": ex.params.get("containerName", "demo1"), "properties": {
                    "image": "127.0.0.1:5000/hoist/none:1", "ports": [{"port": 80}],
                    "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}}]}}
        self.arm("DELETE", path, api=ex.api)
        r = self.arm("PUT", path, body, api=ex.api, headers={"x-hoist-emulator-lro": "sync"})
        assert r.status in (200, 201), r.raw
        return path

    # --- one function per example: (response, expected status, expected body) ----------------
    def run(self, ex):
        name = os.path.basename(ex.rel)[:-5]
        fn = getattr(self, "ex_" + name.replace("-", "_"), None)
        if fn is None:
            return None
        return fn(ex)

    def ex_CreateResourceGroup(self, ex):
        path = "/subscriptions/%s/resourcegroups/%s" % (SUB, ex.p("resourceGroupName"))
        self.arm("DELETE", path, headers={"x-hoist-emulator-lro": "sync"})
        return self.arm("PUT", path, ex.p("parameters"), api=ex.api), "201"

    def ex_ResourceGroups_Get(self, ex):
        self.arm("DELETE", "/subscriptions/%s/resourcegroups/%s" % (SUB, ex.p("resourceGroupName")),
                 headers={"x-hoist-emulator-lro": "sync"})
        self.rg(ex.p("resourceGroupName"), "westus2")
        return self.arm("GET", "/subscriptions/%s/resourcegroups/%s" % (SUB, ex.p("resourceGroupName")),
                        api=ex.api), "200"

    def ex_OperationStatusResultGet(self, ex):
        r = self.arm("PUT", "/subscriptions/%s/resourcegroups/%s" % (SUB, ex.p("resourceGroupName")),
                     {"location": "westus"}, headers={"x-hoist-emulator-lro": "async"})
        return self.arm("GET", None, url=r.headers["Azure-AsyncOperation"]), "200"

    def ex_RegistryGet(self, ex):
        return self.arm("GET", self.registry(ex), api=ex.api), "200"

    def ex_RegistryListCredentials(self, ex):
        return self.arm("POST", self.registry(ex, admin=True) + "/listCredentials", api=ex.api), "200"

    def ex_RegistryRegenerateCredential(self, ex):
        return self.arm("POST", self.registry(ex, admin=True) + "/regenerateCredential",
                        ex.p("regenerateCredentialParameters"), api=ex.api), "200"

    def check_name(self, ex):
        return self.arm("POST", "/subscriptions/%s/providers/Microsoft.ContainerRegistry/"
                        "checkNameAvailability" % SUB, ex.p("registryNameCheckRequest"), api=ex.api)

    def ex_RegistryCheckNameAvailable(self, ex):
        control("reset", {"store": True})
        return self.check_name(ex), "200"

    def ex_RegistryCheckNameNotAvailable(self, ex):
        self.registry(dict_example(ex, resourceGroupName="myResourceGroup", registryName="myRegistry"))
        return self.check_name(ex), "200"

    def ex_ContainerGroupsCreateOrUpdate(self, ex):
        self.aci_registered()
        path = self.rg(ex.p("resourceGroupName")) + ACI + ex.p("containerGroupName")
        self.arm("DELETE", path, api=ex.api)
        body = dict(ex.p("containerGroup"))
        if "zones" in ex.params:  # the example lists zones beside the body; they belong in it
            body["zones"] = ex.p("zones")
        r = self.arm("PUT", path, body, api=ex.api)
        if "Azure-AsyncOperation" in r.headers:
            self.arm.poll(r.headers["Azure-AsyncOperation"])
        return r, "201"

    ex_ContainerGroupsCreateOrUpdateSecretReference = ex_ContainerGroupsCreateOrUpdate

    def ex_ContainerGroupsGet_Succeeded(self, ex):
        return self.arm("GET", self.group(ex), api=ex.api), "200"

    def ex_ContainerGroupsDelete(self, ex):
        return self.arm("DELETE", self.group(ex), api=ex.api), "200"

    def ex_ContainerGroupsRestart(self, ex):
        return self.arm("POST", self.group(ex) + "/restart", api=ex.api), "204"

    def ex_ContainerGroupsStop(self, ex):
        return self.arm("POST", self.group(ex) + "/stop", api=ex.api), "204"

    def ex_ContainerGroupsStart(self, ex):
        r = self.arm("POST", self.group(ex) + "/start", api=ex.api)
        if "Azure-AsyncOperation" in r.headers:
            self.arm.poll(r.headers["Azure-AsyncOperation"])
        return r, "202"

    def ex_ContainerGroupsUpdate(self, ex):
        return self.arm("PATCH", self.group(ex), ex.p("Resource"), api=ex.api), "200"

    def ex_ContainerListLogs(self, ex):
        path = self.group(ex)
        return self.arm("GET", "%s/containers/%s/logs?tail=%d" % (path, ex.p("containerName"), ex.p("tail")),
                        api=ex.api), "200"

    def ex_imds_GetIdentityToken(self, ex):
        r = call("GET", "%s/metadata/identity/oauth2/token?api-version=%s&resource=%s" % (
            ENV["HOIST_TEST_AZURE_IMDS_HOST"], ex.p("api-version"), ex.p("resource")),
            headers={"Metadata": ex.p("Metadata")})
        return r, "200"

    def ex_azidentity_TestManagedIdentityCredential_IMDSLive(self, ex):
        entry = ex.doc["Entries"][0]
        path = entry["RequestUri"].split("169.254.169.254", 1)[1]
        r = call("GET", ENV["HOIST_TEST_AZURE_IMDS_HOST"] + path, headers={"Metadata": "true"})
        return r, str(entry["StatusCode"]), entry["ResponseBody"]

    def ex_azidentity_TestClientSecretCredential_Live_default_options(self, ex):
        """Replays the recording's three requests (instance discovery, OpenID configuration, token)
        against the emulator's authority; the secret the recording redacted is the emulator's."""
        login, tenant = ENV["AZURE_AUTHORITY_HOST"], ENV["HOIST_TEST_AZURE_TENANT_ID"]
        for entry in ex.doc["Entries"]:
            path = entry["RequestUri"].split("login.microsoftonline.com", 1)[1].replace("fake-tenant", tenant)
            if entry["RequestMethod"] == "GET":
                r = call("GET", login + path)
            else:
                r = call("POST", login + path, form={
                    "grant_type": "client_credentials", "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"],
                    "client_secret": ENV["HOIST_TEST_AZURE_CLIENT_SECRET"],
                    "scope": "https://management.azure.com/.default"})
            gaps = missing(entry["ResponseBody"], r.json) if r.status == entry["StatusCode"] else None
            if gaps != []:
                return r, str(entry["StatusCode"]), entry["ResponseBody"]
        return r, "200", None

    # --- App Service ----------------------------------------------------------------------
    def web_site(self, ex, slot=None, body=None):
        """The example's plan DefaultAsp and site (and slot), synchronously."""
        base = self.rg(ex.p("resourceGroupName"), "eastus")
        r = self.arm("PUT", base + WEB + "serverfarms/DefaultAsp", {"location": "East US", "sku": {"name": "S1"}},
                     api=ex.api)
        assert r.status == 200, r.raw
        site = base + WEB + "sites/" + ex.p("name")
        if body is None:
            body = {"kind": "app", "location": "East US", "properties": {"serverFarmId": r.json["id"]}}
        r = self.arm("PUT", site, body, api=ex.api)
        assert r.status == 200, r.raw
        if slot:
            r = self.arm("PUT", site + "/slots/" + slot, body, api=ex.api)
            assert r.status == 200, r.raw
            site += "/slots/" + slot
        return site

    def ex_ApplySlotConfig(self, ex):
        return self.arm("POST", self.web_site(ex, "staging").rsplit("/slots/", 1)[0] + "/applySlotConfig",
                        ex.p("slotSwapEntity"), api=ex.api), "200"

    def ex_CreateOrUpdateWebApp(self, ex):
        control("reset", {"store": True})
        base = self.rg(ex.p("resourceGroupName"), "eastus")
        self.arm("PUT", base + WEB + "serverfarms/DefaultAsp", {"location": "East US", "sku": {"name": "S1"}},
                 api=ex.api)
        body = ours(ex.p("siteEnvelope"))
        # the documented response has these two, which its request does not send: the runner does
        body["properties"].update(workloadProfileName="myd4wp", resourceConfig={"cpu": 1.0, "memory": "2.0Gi"})
        return self.arm("PUT", base + WEB + "sites/" + ex.p("name"), body, api=ex.api), "200"

    def ex_CreateOrUpdateWebAppSlot(self, ex):
        site = self.web_site(ex)
        return self.arm("PUT", site + "/slots/" + ex.p("slot"), ours(ex.p("siteEnvelope")), api=ex.api), "200"

    def ex_GetSiteConfig(self, ex):
        return self.arm("GET", self.web_site(ex) + "/config/web", api=ex.api), "200"

    def ex_GetWebApp(self, ex):
        control("reset", {"store": True})
        documented = ours(ex.responses["200"]["body"])
        body = {"kind": documented["kind"], "location": documented["location"],
                "properties": {k: v for k, v in documented["properties"].items() if k in (
                    "serverFarmId", "workloadProfileName", "resourceConfig", "siteConfig")}}
        return self.arm("GET", self.web_site(ex, body=body), api=ex.api), "200"

    def ex_ListAppSettings(self, ex):
        site = self.web_site(ex)
        self.arm("PUT", site + "/config/appsettings", {"properties": ex.responses["200"]["body"]["properties"]},
                 api=ex.api)
        return self.arm("POST", site + "/config/appsettings/list", api=ex.api), "200"

    def ex_UpdateAppSettings(self, ex):
        return self.arm("PUT", self.web_site(ex) + "/config/appsettings", ex.p("appSettings"), api=ex.api), "200"

    def ex_UpdateSiteConfig(self, ex):
        return self.arm("PUT", self.web_site(ex) + "/config/web", ex.p("siteConfig"), api=ex.api), "200"

    # --- Container Apps ---------------------------------------------------------------------
    def capp_env(self, rg, name, body=None):
        prov = "/subscriptions/%s/providers/Microsoft.App" % SUB
        self.arm("POST", prov + "/register")
        for _ in range(5):
            if self.arm("GET", prov).json["registrationState"] == "Registered":
                break
        path = self.rg(rg, "eastus") + CAPP + "managedEnvironments/" + name
        r = self.arm("PUT", path, body or {"location": "East US", "properties": {}}, api="2025-01-01",
                     headers={"x-hoist-emulator-lro": "sync"})
        assert r.status in (200, 201), r.raw
        return r.json["id"]

    def capp_body(self, ex, envelope, suffix):
        """The example's app with the emulator's environment, a local image (the examples' are Docker Hub's)
        and its traffic naming the revision the PUT makes (`<app>--<suffix>`; the examples write one dash)."""
        body = ours(envelope)
        env = self.capp_env(ex.p("resourceGroupName"), "demokube")
        props = body["properties"]
        props["environmentId"] = env
        app = ex.p("containerAppName").lower()
        for c in props["template"].get("containers", []) + props["template"].get("initContainers", []):
            c["image"] = ABSENT_IMAGE
        props["template"]["revisionSuffix"] = suffix
        for t in ((props.get("configuration") or {}).get("ingress") or {}).get("traffic") or []:
            if t.get("revisionName"):
                t["revisionName"] = rev_name(t["revisionName"]).replace(ex.p("containerAppName"), app)
        return body

    def capp_put(self, ex, body, method="PUT", name=None):
        path = self.rg(ex.p("resourceGroupName"), "eastus") + CAPP + "containerApps/" + (
            name or ex.p("containerAppName").lower())
        r = self.arm(method, path, body, api=ex.api)
        if "Azure-AsyncOperation" in r.headers:
            self.arm.poll(r.headers["Azure-AsyncOperation"])
        return r, path

    def ex_ContainerApps_CreateOrUpdate(self, ex):
        control("reset", {"store": True})
        r = self.capp_put(ex, self.capp_body(ex, ex.p("containerAppEnvelope"), "ab1234"))[0]
        return r, "201", ours(ex.responses["201"]["body"])

    ex_ContainerApps_ManagedBy_CreateOrUpdate = ex_ContainerApps_CreateOrUpdate

    def ex_ContainerApps_Get(self, ex):
        control("reset", {"store": True})
        documented = ex.responses["200"]["body"]
        body = {k: documented[k] for k in ("location", "identity")}
        body["properties"] = {k: v for k, v in documented["properties"].items()
                              if k in ("configuration", "template", "workloadProfileName")}
        body["properties"]["configuration"]["activeRevisionsMode"] = "Multiple"
        first = self.capp_body(ex, body, "ab1234")
        first["properties"]["configuration"]["ingress"]["traffic"] = [{"latestRevision": True, "weight": 100}]
        self.capp_put(ex, first)
        _, path = self.capp_put(ex, self.capp_body(ex, body, "ab4321"))  # the documented 80/20 split
        return self.arm("GET", path, api=ex.api), "200", ours(documented)

    def ex_ContainerApps_ListSecrets(self, ex):
        control("reset", {"store": True})
        body = self.capp_body(ex, {"location": "East US", "properties": {
            "configuration": {"secrets": [{"name": "secret1", "value": "v1"}, {"name": "secret2", "value": "v2"}]},
            "template": {"containers": [{"name": "c", "image": ABSENT_IMAGE}]}}}, "s1")
        _, path = self.capp_put(ex, body)
        return self.arm("POST", path + "/listSecrets", api=ex.api), "200"

    def ex_ContainerApps_Patch(self, ex):
        control("reset", {"store": True})
        body = self.capp_body(ex, ex.p("containerAppEnvelope"), "ab1234")
        self.capp_put(ex, body)
        r, _ = self.capp_put(ex, body, "PATCH")
        return r, "200", ours(ex.responses["200"]["body"])

    def ex_ManagedEnvironments_Get(self, ex):
        control("reset", {"store": True})
        documented = ours(ex.responses["200"]["body"])
        body = {"location": documented["location"], "tags": documented["tags"],
                "properties": {k: v for k, v in documented["properties"].items() if k in (
                    "zoneRedundant", "vnetConfiguration", "customDomainConfiguration", "workloadProfiles",
                    "peerAuthentication", "peerTrafficConfiguration", "ingressConfiguration")}}
        env = self.capp_env(ex.p("resourceGroupName"), ex.p("environmentName"), body)
        return self.arm("GET", env, api=ex.api), "200"

    def revision_app(self, ex):
        """The examples' app `testcontainerApp0` with the revision `<app>--pjxhsye` (the examples
        name it with one dash); returns the revision's path as the example spells the app."""
        control("reset", {"store": True})
        body = self.capp_body(ex, {"location": "East US", "properties": {
            "configuration": {"ingress": {"external": True, "targetPort": 80}},
            "template": {"containers": [{"name": "testcontainerApp0", "image": ABSENT_IMAGE,
                                         "resources": {"cpu": 0.2, "memory": "100Mi"}}],
                         "scale": {"minReplicas": 1, "maxReplicas": 5, "rules": [
                             {"name": "httpscalingrule", "http": {"metadata": {"concurrentRequests": "50"}}}]}}}},
            "pjxhsye")
        self.capp_put(ex, body, name="testcontainerapp0")
        base = self.rg(ex.p("resourceGroupName"), "eastus") + CAPP + "containerApps/" + ex.p("containerAppName")
        return base + "/revisions"

    def ex_Revisions_Get(self, ex):
        return self.arm("GET", self.revision_app(ex) + "/" + rev_name(ex.p("revisionName")), api=ex.api), "200"

    def ex_Revisions_List(self, ex):
        return self.arm("GET", self.revision_app(ex), api=ex.api), "200"

    def ex_Revisions_Activate(self, ex):
        path = self.revision_app(ex) + "/" + rev_name(ex.p("revisionName"))
        return self.arm("POST", path + "/activate", api=ex.api), "200"

    def ex_Revisions_Restart(self, ex):
        # the example's path names the app testStaticSite0 and its revision testcontainerApp0-...: the
        # runner restarts that revision in its own app
        ex = dict_example(ex, containerAppName="testcontainerApp0")
        path = self.revision_app(ex) + "/" + rev_name(ex.p("revisionName"))
        return self.arm("POST", path + "/restart", api=ex.api), "200"

    # --- AKS ----------------------------------------------------------------------------------
    def ex_ManagedClustersListClusterUserCredentials(self, ex):
        prov = "/subscriptions/%s/providers/Microsoft.ContainerService" % SUB
        self.arm("POST", prov + "/register")
        for _ in range(5):
            if self.arm("GET", prov).json["registrationState"] == "Registered":
                break
        path = self.rg(ex.p("resourceGroupName")) + AKS + ex.p("resourceName")
        r = self.arm("PUT", path, {"location": "westus", "properties": {}}, api=ex.api,
                     headers={"x-hoist-emulator-lro": "sync"})
        assert r.status in (200, 201), r.raw
        return self.arm("POST", path + "/listClusterUserCredential", api=ex.api), "200"

    def ex_arm_rpc_error_response_example(self, ex):
        control("reset", {"store": True})
        self.rg("rg-err")
        r = self.arm("PUT", "/subscriptions/%s/resourceGroups/rg-err/%sg" % (SUB, ACI),
                     {"location": "westus", "properties": {}}, api="2023-05-01")
        body = json.loads(json.dumps(ex.doc))
        for k in ("additionalInfo", "target"):  # optional; ARM sends them when it has them
            body["error"].pop(k)
        body["error"]["details"][0].pop("additionalInfo")
        return r, "409", body


def ours(obj):
    """A copy of an example's body with its subscription replaced by the emulator's."""
    text = json.dumps(obj)
    for fake in ("34adfa4f-cedf-4dc0-ba29-b6d1a69ab345", "8efdecc5-919e-44eb-b179-915dca89ebf9",
                 "00000000-0000-0000-0000-000000000000"):
        text = text.replace(fake, SUB)
    return json.loads(text)


def rev_name(example_name):
    """'testcontainerApp0-pjxhsye' (the examples' one dash) -> 'testcontainerApp0--pjxhsye'."""
    app, _, suffix = example_name.rpartition("-")
    return app + "--" + suffix


def dict_example(ex, **params):
    clone = Example.__new__(Example)
    clone.rel, clone.doc, clone.responses = ex.rel, ex.doc, ex.responses
    clone.params = dict(ex.params, **params)
    return clone


def main():
    if not os.path.isdir(FIXTURES):
        # CI has the fixtures: absent there is a failure; elsewhere the ctest shared-fixtures
        # (tests/shared_fixtures.sh) shows the skip in the ctest summary
        if CI:
            print("FAIL: ../shared/fixtures absent (%s) and CI=true: not skipping" % FIXTURES)
            return 1
        print("skipped: ../shared/fixtures absent (%s)" % FIXTURES)
        return 0
    if not emulator_up():
        print(("FAIL: %s (CI=true)" if CI else "skipped: %s") % DOWN)
        return 1 if CI else 0
    control("reset", {"store": True})
    runner, failed, counts = Runner(), 0, {"ok": 0, "skip": 0, "FAIL": 0}
    for dirpath, _, files in sorted(os.walk(FIXTURES)):
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, f), FIXTURES)
            reason = SKIP.get(rel) or SKIP.get(rel.split("/")[0])
            if reason is None and not f.endswith(".json"):
                reason = "not an example (a format template)"
            if reason:
                print("skip %s: %s" % (rel, reason))
                counts["skip"] += 1
                continue
            ex = Example(rel)
            try:
                got = runner.run(ex)
            except Exception as e:  # a setup step failed: report it as this example's failure
                got, problem = None, "setup failed: %s" % e
            else:
                problem = None if got else "no case for this example: add one to test_fixtures.py"
            if got:
                r, status = got[0], got[1]
                expected = got[2] if len(got) > 2 else (ex.responses.get(status) or {}).get("body")
                if str(r.status) != status:
                    problem = "status %d, the example says %s: %s" % (r.status, status, r.raw[:300])
                elif expected is not None:
                    gaps = missing(expected, r.json)
                    if gaps:
                        problem = "fields missing: %s" % ", ".join(gaps[:12])
            if problem:
                failed += 1
                counts["FAIL"] += 1
                print("FAIL %s: %s" % (rel, problem))
            else:
                counts["ok"] += 1
                print("ok   %s" % rel)
    control("reset", {"store": True})
    print("%d ok, %d skipped, %d failed" % (counts["ok"], counts["skip"], counts["FAIL"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
