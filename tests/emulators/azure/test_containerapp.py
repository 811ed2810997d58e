#!/usr/bin/env python3
"""Tests of the emulated Microsoft.App: a managed environment, container apps whose revisions run
for real on the local Docker engine (pulled from the token registry with a secret or the managed
identity), reached as <app>.<domain> through the proxy; revisions (Single and Multiple mode),
traffic weights that really split requests, labels, health (crash, wrong port, failing readiness
probe), activate/deactivate/restart, replicas, secrets, system and console logs through
getAuthToken and the log stream; no secret in any view."""

import collections
import json
import time
import unittest
import urllib.parse

from test_appservice import TOKEN_PASSWORD, TOKEN_USER, Watch, build, push, via_proxy
from testlib import RG_PATH, SUB, ArmClient, control, require_emulator

API = "2025-01-01"
REPO = "127.0.0.1:5002/azemu/capp"


@require_emulator
class ContainerApps(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tag, text in (("v1", "capp-v1"), ("v2", "capp-v2")):
            ok, err = build(tag, text)
            if not ok:
                raise unittest.SkipTest("skipped: cannot build the test image: " + err)
            ok, err = push(tag, "%s:%s" % (REPO, tag))
            if not ok:
                raise unittest.SkipTest("skipped: cannot push the test image to 127.0.0.1:5002: " + err)

    def setUp(self):
        control("reset", {"store": True})
        control("settings", {"containerapp_start_time_limit": 4, "lro_duration": 0})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-capp", {"location": "westeurope"})
        self.arm.register("Microsoft.App")
        self.base = RG_PATH + "rg-capp/providers/Microsoft.App/"
        r = self.arm("PUT", self.base + "managedEnvironments/env", {"location": "westeurope", "properties": {}}, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Azure-AsyncOperation"]).json["status"], "Succeeded")
        self.env = self.arm("GET", self.base + "managedEnvironments/env", api=API).json
        self.domain = self.env["properties"]["defaultDomain"]

    def tearDown(self):
        control("reset", {"store": True})

    def body(self, tag="v1", suffix=None, mode="Single", traffic=None, command=None, probes=None, target=8000,
             registry="secret", replicas=1):
        reg = {"server": "127.0.0.1:5002", "username": TOKEN_USER, "passwordSecretRef": "regpass"} \
            if registry == "secret" else {"server": "127.0.0.1:5002", "identity": "system"}
        c = {"name": "web", "image": "%s:%s" % (REPO, tag), "resources": {"cpu": 0.25, "memory": "0.5Gi"},
             "env": [{"name": "TOKEN", "secretRef": "apitoken"}, {"name": "PLAIN", "value": "p"}]}
        if command:
            c["command"] = command
        if probes:
            c["probes"] = probes
        ingress = {"external": True, "targetPort": target}
        if traffic:
            ingress["traffic"] = traffic
        return {"location": "westeurope", "identity": {"type": "SystemAssigned"}, "properties": {
            "environmentId": self.env["id"],
            "configuration": {"activeRevisionsMode": mode, "ingress": ingress, "registries": [reg],
                              "secrets": [{"name": "regpass", "value": TOKEN_PASSWORD},
                                          {"name": "apitoken", "value": "capp-secret-value"}]},
            "template": {"revisionSuffix": suffix, "containers": [c],
                         "scale": {"minReplicas": replicas, "maxReplicas": 3}}}}

    def deploy(self, name, body, method="PUT", want="Succeeded"):
        r = self.arm(method, self.base + "containerApps/" + name, body, api=API)
        self.assertIn(r.status, (200, 201), r.raw)
        op = self.arm.poll(r.headers["Azure-AsyncOperation"]).json
        self.assertEqual(op["status"], want, op)
        return self.arm("GET", self.base + "containerApps/" + name, api=API).json

    def revision(self, app, rev):
        return self.arm("GET", self.base + "containerApps/%s/revisions/%s" % (app, rev), api=API).json["properties"]

    def wait_revision(self, app, rev, field, value, tries=150):
        for _ in range(tries):
            p = self.revision(app, rev)
            if p[field] == value:
                return p
            time.sleep(0.2)
        self.fail("revision %s never had %s=%s: %s" % (rev, field, value, json.dumps(p)))

    def get(self, host):
        return via_proxy("https://%s/index.html" % host)

    def logs(self, app, kind, revision=None):
        tok = self.arm("POST", self.base + "containerApps/%s/getAuthToken" % app, api=API).json["properties"]["token"]
        url = self.arm("GET", self.base + "containerApps/" + app, api=API).json["properties"]["eventStreamEndpoint"]
        q = {"tailLines": "300", "type": kind}
        if revision:
            q["revisionName"] = revision
        status, text = via_proxy(url + "?" + urllib.parse.urlencode(q), {"Authorization": "Bearer " + tok})
        self.assertEqual(status, 200, text)
        return [json.loads(l) for l in text.splitlines()]

    def test_single_mode_newest_revision_wins(self):
        # v1 turns healthy only after v2 was created (both wait before they listen): v2 must stay
        # active, then take all the traffic and deactivate v1 once it is healthy itself
        control("settings", {"containerapp_start_time_limit": 60})
        slow = ["sh", "-c", "sleep 3; exec httpd -f -p 8000 -h /www"]
        self.deploy("hoist-newest", self.body("v1", "one", command=slow))
        self.deploy("hoist-newest", self.body("v2", "two", command=slow))
        self.wait_revision("hoist-newest", "hoist-newest--one", "healthState", "Healthy")
        self.assertTrue(self.revision("hoist-newest", "hoist-newest--two")["active"])
        rev = self.wait_revision("hoist-newest", "hoist-newest--two", "healthState", "Healthy")
        self.assertEqual((rev["active"], rev["trafficWeight"]), (True, 100))
        self.wait_revision("hoist-newest", "hoist-newest--one", "active", False)
        app = self.arm("GET", self.base + "containerApps/hoist-newest", api=API).json["properties"]
        self.assertEqual(app["latestReadyRevisionName"], "hoist-newest--two")
        self.assertEqual(self.get("hoist-newest." + self.domain), (200, "capp-v2\n"))

    def test_single_mode_revisions_health_and_logs(self):
        app = self.deploy("hoist-capp", self.body("v1", "one"))
        p = app["properties"]
        fqdn = "hoist-capp." + self.domain
        self.assertEqual(p["configuration"]["ingress"]["fqdn"], fqdn)
        self.assertRegex(self.domain, r"^[a-z0-9-]+\.westeurope\.azurecontainerapps\.io$")
        self.assertEqual(p["latestRevisionName"], "hoist-capp--one")
        self.assertEqual(p["latestRevisionFqdn"], "hoist-capp--one." + self.domain)
        self.assertEqual(p["configuration"]["secrets"], [{"name": "regpass"}, {"name": "apitoken"}])
        rev = self.wait_revision("hoist-capp", "hoist-capp--one", "healthState", "Healthy")
        self.assertEqual((rev["runningState"], rev["provisioningState"], rev["active"], rev["trafficWeight"]),
                         ("Running", "Provisioned", True, 100))
        self.assertEqual(self.get(fqdn), (200, "capp-v1\n"))
        # plain http is redirected to https, as allowInsecure is false
        status, _ = via_proxy("http://%s/index.html" % fqdn)
        self.assertEqual(status, 200)  # urllib follows the 301 to https
        # secrets: never in a GET, in listSecrets only
        for text in (self.arm("GET", self.base + "containerApps/hoist-capp", api=API).raw.decode(),
                     self.arm("GET", self.base + "containerApps/hoist-capp/revisions", api=API).raw.decode(),
                     self.arm("GET", self.base + "containerApps", api=API).raw.decode()):
            self.assertNotIn("capp-secret-value", text)
            self.assertNotIn(TOKEN_PASSWORD, text)
        listed = self.arm("POST", self.base + "containerApps/hoist-capp/listSecrets", api=API).json["value"]
        self.assertIn({"name": "apitoken", "value": "capp-secret-value"}, listed)
        replicas = self.arm("GET", self.base + "containerApps/hoist-capp/revisions/hoist-capp--one/replicas",
                            api=API).json["value"]
        self.assertEqual(len(replicas), 1)
        c = replicas[0]["properties"]["containers"][0]
        self.assertEqual((c["name"], c["runningState"], c["restartCount"], c["ready"]), ("web", "Running", 0, True))
        # a new template: a new revision; the old one serves until the new one is healthy, then goes
        watch = Watch("https://%s/index.html" % fqdn)
        app = self.deploy("hoist-capp", self.body("v2", "two"))
        self.wait_revision("hoist-capp", "hoist-capp--two", "healthState", "Healthy")
        self.wait_revision("hoist-capp", "hoist-capp--one", "active", False)
        self.assertEqual(self.get(fqdn), (200, "capp-v2\n"))
        time.sleep(2)  # past the old revision's containers' removal
        watch.end()
        self.assertEqual(watch.failed, [])  # the old revision served until the new one was healthy
        self.assertEqual(watch.bodies, {"capp-v1", "capp-v2"})
        print("\nsingle-mode deploy: %d requests, %d failed" % (watch.ok + len(watch.failed), len(watch.failed)))
        system = self.logs("hoist-capp", "system")
        reasons = [e["Reason"] for e in system if e["RevisionName"] == "hoist-capp--two"]
        for want in ("RevisionCreation", "PullingImage", "PulledImage", "ContainerStarted", "RevisionReady"):
            self.assertIn(want, reasons)
        self.assertIn("RevisionDeactivating", [e["Reason"] for e in system if e["RevisionName"] == "hoist-capp--one"])
        console = self.logs("hoist-capp", "console", "hoist-capp--two")
        self.assertIn("serving capp-v2", [e["Log"] for e in console])
        # a same-template PUT makes no revision; a suffix in use is refused
        self.deploy("hoist-capp", self.body("v2", "two"))
        names = [r["name"] for r in self.arm("GET", self.base + "containerApps/hoist-capp/revisions", api=API).json["value"]]
        self.assertEqual(names, ["hoist-capp--one", "hoist-capp--two"])
        r = self.arm("PUT", self.base + "containerApps/hoist-capp", self.body("v1", "two"), api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "ContainerAppRevisionSuffixInUse"))
        # the log stream wants the app's token
        url = app["properties"]["eventStreamEndpoint"]
        self.assertEqual(via_proxy(url + "?type=system", {"Authorization": "Bearer nope"})[0], 401)

    def test_bad_revisions_keep_the_old_one_serving(self):
        self.deploy("hoist-bad", self.body("v1", "good"))
        self.wait_revision("hoist-bad", "hoist-bad--good", "healthState", "Healthy")
        fqdn = "hoist-bad." + self.domain
        cases = [("crash", {"command": ["sh", "-c", "echo crashing; exit 3"]}, "exit code '3'"),
                 ("port", {"target": 8000, "command": ["httpd", "-f", "-p", "80", "-h", "/www"]},
                  "TargetPort 8000"),
                 ("probe", {"probes": [{"type": "Readiness", "httpGet": {"path": "/health", "port": 8000},
                                        "periodSeconds": 1}]}, "statuscode: 404")]
        watch = Watch("https://%s/index.html" % fqdn)
        for suffix, kw, reason in cases:
            with self.subTest(case=suffix):
                op_ok = self.deploy("hoist-bad", self.body("v2", suffix, **kw))
                self.assertEqual(op_ok["properties"]["provisioningState"], "Succeeded")  # green before healthy
                rev = self.wait_revision("hoist-bad", "hoist-bad--" + suffix, "healthState", "Unhealthy")
                self.assertEqual(rev["runningState"], "Degraded")
                if suffix == "crash":
                    replicas = self.arm("GET", self.base + "containerApps/hoist-bad/revisions/hoist-bad--crash/"
                                        "replicas", api=API).json["value"]
                    c = replicas[0]["properties"]["containers"][0]
                    self.assertGreaterEqual(c["restartCount"], 1)
                    self.assertFalse(c["ready"])
                self.assertIn(reason, rev["runningStateDetails"])
                self.assertEqual(rev["trafficWeight"], 0)
                self.assertEqual(self.get(fqdn), (200, "capp-v1\n"))  # the previous one answers throughout
                r = self.arm("POST", self.base + "containerApps/hoist-bad/revisions/hoist-bad--%s/deactivate" % suffix,
                             api=API)
                self.assertEqual(r.status, 200, r.raw)
        watch.end()
        self.assertEqual((watch.failed, watch.bodies), ([], {"capp-v1"}))
        print("\nthree bad revisions: %d requests, %d failed" % (watch.ok + len(watch.failed), len(watch.failed)))
        r = self.arm("POST", self.base + "containerApps/hoist-bad/revisions/hoist-bad--good/deactivate", api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "ContainerAppRevisionInUse"))
        replicas = self.arm("GET", self.base + "containerApps/hoist-bad/revisions/hoist-bad--crash/replicas",
                            api=API).json["value"]
        self.assertEqual(replicas, [])  # deactivated: its replicas are gone
        system = self.logs("hoist-bad", "system", "hoist-bad--crash")
        self.assertIn("ContainerTerminated", [e["Reason"] for e in system])
        self.assertIn("ProbeFailed", [e["Reason"] for e in self.logs("hoist-bad", "system", "hoist-bad--probe")])

    def test_multiple_mode_weights_split_requests(self):
        self.deploy("hoist-split", self.body("v1", "blue", mode="Multiple"))
        self.wait_revision("hoist-split", "hoist-split--blue", "healthState", "Healthy")
        traffic = [{"revisionName": "hoist-split--blue", "weight": 50, "label": "blue"},
                   {"revisionName": "hoist-split--green", "weight": 50, "label": "green"}]
        self.deploy("hoist-split", self.body("v2", "green", mode="Multiple", traffic=traffic))
        self.wait_revision("hoist-split", "hoist-split--green", "healthState", "Healthy")
        fqdn = "hoist-split." + self.domain
        seen = collections.Counter(self.get(fqdn)[1].strip() for _ in range(60))
        self.assertEqual(set(seen), {"capp-v1", "capp-v2"}, seen)
        self.assertGreater(min(seen.values()), 10, seen)  # 50/50: each far from 0 (p < 1e-6)
        self.assertEqual(self.get("hoist-split---green." + self.domain), (200, "capp-v2\n"))
        self.assertEqual(self.get("hoist-split--blue." + self.domain), (200, "capp-v1\n"))
        self.assertEqual(self.revision("hoist-split", "hoist-split--blue")["trafficWeight"], 50)
        # canary back: all to blue through PATCH; green can then go
        r = self.arm("PATCH", self.base + "containerApps/hoist-split", {"properties": {"configuration": {"ingress": {
            "traffic": [{"revisionName": "hoist-split--blue", "weight": 100}]}}}}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        self.arm.poll(r.headers["Azure-AsyncOperation"])
        self.assertEqual(len(self.arm("GET", self.base + "containerApps/hoist-split/revisions", api=API).json["value"]), 2)
        self.assertEqual({self.get(fqdn)[1].strip() for _ in range(20)}, {"capp-v1"})
        self.assertEqual(self.arm("POST", self.base + "containerApps/hoist-split/revisions/hoist-split--green/deactivate",
                                  api=API).status, 200)
        self.assertFalse(self.revision("hoist-split", "hoist-split--green")["active"])
        self.assertEqual(self.arm("POST", self.base + "containerApps/hoist-split/revisions/hoist-split--green/activate",
                                  api=API).status, 200)
        self.wait_revision("hoist-split", "hoist-split--green", "healthState", "Healthy")
        self.assertEqual(self.arm("POST", self.base + "containerApps/hoist-split/revisions/hoist-split--green/restart",
                                  api=API).status, 200)
        bad = [{"revisionName": "hoist-split--blue", "weight": 60}, {"revisionName": "hoist-split--green", "weight": 60}]
        r = self.arm("PATCH", self.base + "containerApps/hoist-split", {"properties": {"configuration": {"ingress": {
            "traffic": bad}}}}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "ContainerAppInvalidTrafficWeight"))
        r = self.arm("PATCH", self.base + "containerApps/hoist-split", {"properties": {"configuration": {"ingress": {
            "traffic": [{"revisionName": "hoist-split--nope", "weight": 100}]}}}}, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "ContainerAppRevisionNotFound"))

    def test_pull_failure_and_managed_identity(self):
        body = self.body("v1", "nopull")
        body["properties"]["configuration"]["secrets"][0]["value"] = "wrong-password"
        self.deploy("hoist-nopull", body, want="Failed")
        rev = self.revision("hoist-nopull", "hoist-nopull--nopull")
        self.assertEqual((rev["provisioningState"], rev["runningState"]), ("Failed", "Failed"))
        self.assertIn(REPO + ":v1", rev["provisioningError"])
        self.assertNotIn("wrong-password", json.dumps(rev))
        # a user-assigned identity pulls once it holds AcrPull (as ACR checks): without the role
        # the revision fails with ACR's unauthorized, after the assignment it runs
        uai = RG_PATH + "rg-capp/providers/Microsoft.ManagedIdentity/userAssignedIdentities/capp-pull"
        principal = self.arm("PUT", uai, {"location": "westeurope"}, api="2023-01-31").json["properties"]["principalId"]

        def by_identity(name):
            body = self.body("v1", name, registry="identity", replicas=2)
            body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {uai: {}}}
            body["properties"]["configuration"]["registries"][0]["identity"] = uai
            return body
        self.deploy("hoist-mi", by_identity("mi"), want="Failed")
        self.assertIn("has no AcrPull role on the registry", self.revision("hoist-mi", "hoist-mi--mi")["provisioningError"])
        role = "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d" % SUB
        r = self.arm("PUT", RG_PATH + "rg-capp/providers/Microsoft.Authorization/roleAssignments/"
                     "2a2b1f2e-0a11-4d5e-9b3c-00000000a11c", {"properties": {
                         "roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}},
                     api="2022-04-01")
        self.assertEqual(r.status, 201, r.raw)
        self.deploy("hoist-mi2", by_identity("mi2"))
        rev = self.wait_revision("hoist-mi2", "hoist-mi2--mi2", "healthState", "Healthy")
        self.assertEqual(rev["replicas"], 2)

    def test_validation(self):
        cases = [(lambda b: b["properties"]["template"].update(containers=[]), "ContainerAppInvalidTemplate"),
                 (lambda b: b["properties"]["template"]["containers"][0]["env"].append(
                     {"name": "X", "secretRef": "absent"}), "ContainerAppSecretRefNotFound"),
                 (lambda b: b["properties"].update(environmentId=self.env["id"] + "x"), "ManagedEnvironmentNotFound"),
                 (lambda b: b["properties"]["configuration"].update(activeRevisionsMode="Some"),
                  "ContainerAppInvalidActiveRevisionsMode")]
        for change, code in cases:
            with self.subTest(code=code):
                b = self.body()
                change(b)
                r = self.arm("PUT", self.base + "containerApps/hoist-v", b, api=API)
                self.assertEqual(r.json["error"]["code"], code, r.raw)
        r = self.arm("PUT", self.base + "containerApps/Bad--Name", self.body(), api=API)
        self.assertEqual(r.json["error"]["code"], "ContainerAppInvalidName")
        r = self.arm("GET", self.base + "containerApps/none/revisions", api=API)
        self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()
