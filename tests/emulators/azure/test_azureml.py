#!/usr/bin/env python3
"""Tests of the emulated Microsoft.MachineLearningServices: a workspace with its registry, an
environment version (image and inference routes), a managed online endpoint whose deployments
run for real (pulled from the token registry with the workspace's identity or a registry
connection), provisioning that waits for the readiness route and fails naming it, the scoring URI
through the proxy with key auth, traffic weights and the azureml-model-deployment header, getLogs,
and what Azure refuses (traffic that does not add up, a deployment with traffic deleted, an
environment version changed)."""

import json
import os
import subprocess
import tempfile
import time
import unittest

from test_appservice import BASE, TOKEN_PASSWORD, TOKEN_USER, via_proxy
from testlib import RG_PATH, SUB, ArmClient, control, require_emulator

API = "2025-09-01"
REPO = "127.0.0.1:5002/azemu/aml"
PROVIDER = "/subscriptions/%s/providers/Microsoft.MachineLearningServices" % SUB
RG = "rg-azemu-aml"
# a scoring server: busybox httpd, /ready answers 200 once READY_AFTER seconds have passed, POST
# /cgi-bin/score answers {"version": ..., "input": <the request body>}
SCORE = """#!/bin/sh
echo "Content-Type: application/json"
echo ""
printf '{"version": "%s", "input": %s}' "$MODEL_VERSION" "$(head -c "${CONTENT_LENGTH:-0}")"
"""


def build(tag):
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "cgi-bin"))
        with open(os.path.join(d, "cgi-bin", "score"), "w") as f:
            f.write(SCORE)
        os.chmod(os.path.join(d, "cgi-bin", "score"), 0o755)
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write("FROM %s\nCOPY cgi-bin /www/cgi-bin\nRUN echo ok > /www/ready\nEXPOSE 8000\n"
                    'CMD ["sh", "-c", "echo scoring server starting; exec httpd -f -v -p 8000 -h /www"]\n' % BASE)
        p = subprocess.run(["docker", "build", "-q", "-t", "azemu-test/aml:" + tag, d],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode:
            return False, p.stderr.decode()
    p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                        "%s:%s" % (TOKEN_USER, TOKEN_PASSWORD), "docker-daemon:azemu-test/aml:" + tag,
                        "docker://%s:%s" % (REPO, tag)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p.returncode == 0, p.stderr.decode()


@require_emulator
class MachineLearning(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, err = build("v1")
        if not ok:
            raise unittest.SkipTest("skipped: cannot build or push the test image: " + err)

    def setUp(self):
        control("reset", {"store": True})
        control("settings", {"lro_duration": 0})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + RG, {"location": "westeurope"})
        self.ws = RG_PATH + RG + "/providers/Microsoft.MachineLearningServices/workspaces/ws1"
        r = self.arm("PUT", self.ws, {"location": "westeurope"}, api=API)
        self.assertEqual(r.status, 409, r.raw)  # Microsoft.MachineLearningServices is not registered yet
        self.assertEqual(r.json["error"]["code"], "MissingSubscriptionRegistration")
        self.arm("POST", PROVIDER + "/register")
        for _ in range(100):  # Registering for a while, then Registered
            if self.arm("GET", PROVIDER).json.get("registrationState") == "Registered":
                break
            time.sleep(0.1)
        r = self.arm("PUT", RG_PATH + RG + "/providers/Microsoft.ContainerRegistry/registries/azemuamlacr",
                     {"location": "westeurope", "sku": {"name": "Basic"}}, api="2025-04-01",
                     headers={"x-hoist-emulator-lro": "sync"})
        self.assertIn(r.status, (200, 201), r.raw)
        self.acr = r.json["id"]
        self.wait(self.arm("PUT", self.ws, {"location": "westeurope", "identity": {"type": "SystemAssigned"},
                                            "properties": {"containerRegistry": self.acr}}, api=API))
        self.env = self.environment("scorer", "1", "%s:v1" % REPO)
        self.ep = self.ws + "/onlineEndpoints/azemu-ep"
        self.wait(self.arm("PUT", self.ep, {"location": "westeurope", "identity": {"type": "SystemAssigned"},
                                            "properties": {"authMode": "Key"}}, api=API))

    def tearDown(self):
        control("reset", {"store": True})

    def wait(self, r, want="Succeeded"):
        self.assertIn(r.status, (200, 201, 202), r.raw)
        op = self.arm.poll(r.headers["Azure-AsyncOperation"]).json
        self.assertEqual(op["status"], want, op)
        return op

    def environment(self, name, version, image, ready="/ready"):
        self.arm("PUT", self.ws + "/environments/" + name, {"properties": {}}, api=API)
        r = self.arm("PUT", self.ws + "/environments/%s/versions/%s" % (name, version), {"properties": {
            "image": image, "inferenceConfig": {"livenessRoute": {"path": "/ready", "port": 8000},
                                                "readinessRoute": {"path": ready, "port": 8000},
                                                "scoringRoute": {"path": "/cgi-bin/score", "port": 8000}}}}, api=API)
        self.assertIn(r.status, (200, 201), r.raw)
        return r.json["id"]

    def deploy(self, name, model, env=None, capacity=1, want="Succeeded", failure_threshold=30):
        body = {"location": "westeurope", "kind": "Managed", "sku": {"name": "Default", "capacity": capacity},
                "properties": {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2",
                               "environmentId": env or self.env, "environmentVariables": {"MODEL_VERSION": model},
                               "readinessProbe": {"initialDelay": "PT0S", "period": "PT0.5S",
                                                  "failureThreshold": failure_threshold, "timeout": "PT2S"}}}
        op = self.wait(self.arm("PUT", self.ep + "/deployments/" + name, body, api=API), want)
        return op, self.arm("GET", self.ep + "/deployments/" + name, api=API).json

    def traffic(self, weights, status=200):
        ep = self.arm("GET", self.ep, api=API).json
        r = self.arm("PUT", self.ep, {"location": ep["location"], "identity": ep["identity"],
                                      "properties": {"authMode": "Key", "traffic": weights}}, api=API)
        if status != 200:
            self.assertEqual(r.status, status, r.raw)
            return r.json
        return self.wait(r)

    def score(self, key, deployment=None, body=None):
        uri = self.arm("GET", self.ep, api=API).json["properties"]["scoringUri"]
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return via_proxy(uri, headers, "POST", json.dumps(body or {"x": 1}).encode())

    def test_blue_green_through_the_scoring_uri(self):
        ep = self.arm("GET", self.ep, api=API).json
        self.assertEqual(ep["properties"]["scoringUri"], "https://azemu-ep.westeurope.inference.ml.azure.com/score")
        self.assertNotIn("_keys", json.dumps(ep))
        keys = self.arm("POST", self.ep + "/listKeys", api=API).json
        self.assertEqual(set(keys), {"primaryKey", "secondaryKey"})
        self.deploy("blue", "v1", capacity=2)
        # a deployment without traffic is reached only through the header
        status, text = self.score(keys["primaryKey"])
        self.assertEqual(status, 404, text)
        self.assertIn("No valid deployments to route to", text)
        status, text = self.score(keys["primaryKey"], "blue", {"rows": [1, 2]})
        self.assertEqual((status, json.loads(text)), (200, {"version": "v1", "input": {"rows": [1, 2]}}))
        self.traffic({"blue": 100})
        self.assertEqual(self.score(None)[0], 401)
        self.assertEqual(self.score("not-the-key")[0], 401)
        self.assertEqual(self.score(keys["secondaryKey"])[0], 200)
        self.deploy("green", "v2")
        self.assertIn("add up to 90", json.dumps(self.traffic({"blue": 50, "green": 40}, 400)))
        self.assertIn("does not exist", json.dumps(self.traffic({"blue": 50, "red": 50}, 400)))
        self.traffic({"blue": 50, "green": 50})
        seen = {json.loads(self.score(keys["primaryKey"])[1])["version"] for _ in range(30)}
        self.assertEqual(seen, {"v1", "v2"})
        r = self.arm("DELETE", self.ep + "/deployments/blue", api=API)
        self.assertEqual(r.status, 400, r.raw)
        self.assertIn("set its traffic to 0", r.json["error"]["message"])
        self.traffic({"blue": 0, "green": 100})
        r = self.arm("DELETE", self.ep + "/deployments/blue", api=API)
        self.assertEqual(r.status, 202, r.raw)
        self.arm.poll(r.headers["Azure-AsyncOperation"])
        self.assertEqual(self.arm("GET", self.ep + "/deployments/blue", api=API).status, 404)
        self.assertEqual(json.loads(self.score(keys["primaryKey"])[1])["version"], "v2")
        logs = self.arm("POST", self.ep + "/deployments/green/getLogs", {"containerType": "InferenceServer",
                                                                          "tail": 50}, api=API).json
        self.assertIn("scoring server starting", logs["content"])

    def test_readiness_never_answers_fails_naming_the_route(self):
        env = self.environment("scorer", "2", "%s:v1" % REPO, ready="/not-there")
        op, dep = self.deploy("broken", "v1", env=env, want="Failed", failure_threshold=4)
        self.assertEqual(op["error"]["code"], "ResourceNotReady", op)
        self.assertIn(":8000/not-there", op["error"]["message"])
        self.assertIn("scoring server starting", op["error"]["message"])  # its log
        self.assertEqual(dep["properties"]["provisioningState"], "Failed")
        self.assertIn("cannot take traffic", json.dumps(self.traffic({"broken": 100}, 400)))

    def test_pull_with_a_registry_connection_and_refusals(self):
        self.arm("PATCH", self.ws, {"properties": {"containerRegistry": None}}, api=API)
        ws = self.arm("GET", self.ws, api=API).json
        self.wait(self.arm("PUT", self.ws, {"location": ws["location"], "identity": ws["identity"],
                                            "properties": {"friendlyName": "no registry"}}, api=API))
        r = self.arm("PUT", self.ws + "/connections/tokenregistry", {"properties": {
            "category": "ContainerRegistry", "target": "127.0.0.1:5002", "authType": "UsernamePassword",
            "credentials": {"username": TOKEN_USER, "password": TOKEN_PASSWORD}}}, api=API)
        self.assertIn(r.status, (200, 201), r.raw)
        self.assertNotIn(TOKEN_PASSWORD, r.raw.decode())
        self.deploy("viaconn", "v1")
        self.assertEqual(self.arm("GET", self.ws + "/environments/scorer/versions/1", api="2099-01-01").status, 400)
        r = self.arm("PATCH", self.ep, {"properties": {"traffic": {"viaconn": 100}}}, api=API)
        self.assertEqual(r.status, 400, r.raw)  # the traffic changes with a PUT of the endpoint
        self.assertIn("tags and identity only", r.json["error"]["message"])
        r = self.arm("PUT", self.ws + "/environments/scorer/versions/1", {"properties": {"image": REPO + ":v2"}},
                     api=API)
        self.assertEqual(r.status, 409, r.raw)
        body = {"location": "westeurope", "properties": {"endpointComputeType": "Managed",
                                                         "instanceType": "Standard_Tiny", "environmentId": self.env}}
        r = self.arm("PUT", self.ep + "/deployments/tiny", body, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "BadArgument"), r.raw)


if __name__ == "__main__":
    unittest.main()
