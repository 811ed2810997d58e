#!/usr/bin/env python3
"""Tests of the emulated Microsoft.ContainerInstance: container groups that run for real on the
local Docker engine, pulled from the token registry with the group's credentials, reached by
their fqdn through the emulator's proxy; instance view, logs, restart, stop, delete, errors."""

import json
import socket
import subprocess
import time
import unittest
import urllib.request

from test_appservice import build, push
from testlib import ENV, RG_PATH, SUB, ArmClient, call, control, require_emulator

API = "2023-05-01"
IMAGE = "127.0.0.1:5002/azemu/web:1"
PROVIDER = "/subscriptions/%s/providers/Microsoft.ContainerInstance" % SUB


def push_image():
    p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                        "%s:%s" % (ENV["HOIST_TEST_REGISTRY_TOKEN_USER"],
                                   ENV["HOIST_TEST_REGISTRY_TOKEN_PASSWORD"]),
                        "docker-daemon:" + ENV.get("HOIST_TEST_BASE_IMAGE", "hoist-test/busybox:latest"),
                        "docker://" + IMAGE], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p.returncode == 0, p.stderr.decode()


def group(label, command, image=IMAGE, password=None, cpu=1, restart="Always", env=None):
    creds = [{"server": "127.0.0.1:5002", "username": ENV["HOIST_TEST_REGISTRY_TOKEN_USER"],
              "password": password or ENV["HOIST_TEST_REGISTRY_TOKEN_PASSWORD"]}]
    return {"location": "westeurope", "properties": {
        "osType": "Linux", "restartPolicy": restart, "imageRegistryCredentials": creds,
        "ipAddress": {"type": "Public", "dnsNameLabel": label, "ports": [{"port": 8000, "protocol": "TCP"}]},
        "containers": [{"name": "web", "properties": {
            "image": image, "command": command, "ports": [{"port": 8000}],
            "environmentVariables": env or [],
            "resources": {"requests": {"cpu": cpu, "memoryInGB": 0.5}}}}]}}


HTTPD = ["sh", "-c", "echo hello-from-aci > /tmp/index.html; echo started; exec httpd -f -p 8000 -h /tmp"]


def via_proxy(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": ENV["HOIST_TEST_AZURE_PROXY"]}))
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@require_emulator
class Aci(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, err = push_image()
        if not ok:
            raise unittest.SkipTest("skipped: cannot push the test image to 127.0.0.1:5002: " + err)

    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-aci", {"location": "westeurope"})
        self.arm.register("Microsoft.ContainerInstance")
        self.base = RG_PATH + "rg-aci/providers/Microsoft.ContainerInstance/containerGroups/"

    def tearDown(self):
        control("reset", {"store": True})

    def deploy(self, name, body):
        r = self.arm("PUT", self.base + name, body, api=API)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["properties"]["provisioningState"], "Creating")
        return self.arm.poll(r.headers["Azure-AsyncOperation"]).json

    def wait_running(self, name, tries=50):
        for _ in range(tries):
            g = self.arm("GET", self.base + name, api=API).json
            if g["properties"]["instanceView"]["state"] == "Running":
                return g
            time.sleep(0.2)
        self.fail("group %s never ran: %s" % (name, json.dumps(g)))

    def test_group_runs_and_answers_on_its_fqdn(self):
        op = self.deploy("app", group("hoist-app", HTTPD, env=[{"name": "TOKEN", "secureValue": "s3cr3t-env"}]))
        self.assertEqual(op["status"], "Succeeded", op)
        g = self.wait_running("app")
        ip = g["properties"]["ipAddress"]
        self.assertEqual(ip["fqdn"], "hoist-app.westeurope.azurecontainer.io")
        c = g["properties"]["containers"][0]["properties"]
        self.assertEqual([e["name"] for e in c["instanceView"]["events"]],
                         ["Pulling", "Pulled", "Created", "Started"])
        self.assertEqual(c["instanceView"]["restartCount"], 0)
        self.assertIsNone(c["environmentVariables"][0]["secureValue"])
        self.assertNotIn("password", g["properties"]["imageRegistryCredentials"][0])
        self.assertNotIn("s3cr3t-env", json.dumps(g))
        for _ in range(50):
            status, body = via_proxy("http://%s:8000/index.html" % ip["fqdn"])
            if status == 200:
                break
            time.sleep(0.2)
        self.assertEqual((status, body.strip()), (200, "hello-from-aci"))
        self.assertEqual(via_proxy("http://%s:8000/index.html" % ip["ip"])[0], 200)
        # CONNECT opens a tunnel to the same port (what an https:// client does)
        with socket.create_connection(("127.0.0.1", int(ENV["HOIST_TEST_AZURE_PROXY"].rsplit(":", 1)[1])),
                                      timeout=10) as s:
            s.sendall(("CONNECT %s:8000 HTTP/1.1\r\nHost: %s:8000\r\n\r\n" % (ip["fqdn"], ip["fqdn"])).encode())
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        self.assertIn(b"hello-from-aci", reply)
        status, body = via_proxy("http://other.westeurope.azurecontainer.io:8000/")
        self.assertEqual(status, 502)
        self.assertIn("other.westeurope.azurecontainer.io", body)
        logs = self.arm("GET", self.base + "app/containers/web/logs?tail=5", api=API)
        self.assertEqual(logs.status, 200)
        self.assertIn("started", logs.json["content"])
        r = self.arm("GET", self.base + "app/containers/nope/logs", api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (404, "ContainerNotFound"))
        self.assertEqual(self.arm("POST", self.base + "app/restart", api=API).status, 204)
        self.wait_running("app")
        r = self.arm("PUT", self.base + "app", group("hoist-app", HTTPD, cpu=2), api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (400, "InvalidContainerGroupUpdate"))
        self.assertEqual(self.arm("POST", self.base + "app/stop", api=API).status, 204)
        self.assertEqual(self.arm("GET", self.base + "app", api=API).json["properties"]["instanceView"]["state"],
                         "Stopped")
        r = self.arm("DELETE", self.base + "app", api=API)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["name"], "app")
        # this group's containers only: another instance of the emulator may run groups meanwhile
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=hoist-azure-group=" + g["id"].lower()],
                             stdout=subprocess.PIPE).stdout.split()
        self.assertEqual(out, [])
        self.assertEqual(self.arm("DELETE", self.base + "app", api=API).status, 204)

    def test_crashing_container_backs_off(self):
        self.deploy("crash", group("hoist-crash", ["sh", "-c", "echo boom; exit 3"]))
        for _ in range(50):
            c = self.arm("GET", self.base + "crash", api=API).json["properties"]["containers"][0]["properties"]
            if c["instanceView"]["restartCount"] >= 1:
                break
            time.sleep(0.2)
        iv = c["instanceView"]
        self.assertGreaterEqual(iv["restartCount"], 1)
        self.assertEqual(iv["previousState"]["exitCode"], 3)
        self.assertIn("BackOff", [e["name"] for e in iv["events"]])

    def test_image_pull_failure_retries_then_fails(self):
        # as ACI's create: the pull is retried for minutes (the group Creating and Pending, the
        # failures counting up in the instance view), only then does the operation fail
        self.assertGreaterEqual(control("settings", method="GET")["aci_pull_retry_time"], 300)
        r = self.arm("PUT", self.base + "nopull", group("hoist-nopull", HTTPD, password="wrong-password"), api=API)
        self.assertEqual(r.status, 201, r.raw)
        op = r.headers["Azure-AsyncOperation"]
        seen = []  # (Pulling count, Failed count, detailStatus) at each GET
        for _ in range(100):
            g = self.arm("GET", self.base + "nopull", api=API).json
            iv = g["properties"]["containers"][0]["properties"]["instanceView"]
            by = {e["name"]: e for e in iv["events"]}
            if "Failed" in by:
                seen.append((by["Pulling"]["count"], by["Failed"]["count"], iv["currentState"]["detailStatus"]))
                if by["Failed"]["count"] >= 3:
                    break
            time.sleep(0.2)
        self.assertEqual([e["name"] for e in iv["events"]], ["Pulling", "Failed", "BackOff"], iv)
        self.assertGreaterEqual(by["Failed"]["count"], 3, seen)
        # one Pulling per try (one ahead while a try runs); the counts grow over time, with a
        # back-off between the tries
        self.assertTrue(all(f <= p <= f + 1 for p, f, _ in seen), seen)
        self.assertEqual(sorted(seen), seen)
        self.assertIn(1, [f for p, f, _ in seen])
        self.assertLess(by["Failed"]["firstTimestamp"], by["Failed"]["lastTimestamp"])
        self.assertEqual(by["Failed"]["type"], "Warning")
        self.assertTrue(by["Failed"]["message"].startswith('Failed to pull image "%s": ' % IMAGE), by["Failed"])
        self.assertEqual(by["BackOff"]["message"], 'Back-off pulling image "%s"' % IMAGE)
        self.assertTrue({d for _, _, d in seen} <= {"ErrImagePull", "ImagePullBackOff"}, seen)
        self.assertIn("ImagePullBackOff", {d for _, _, d in seen})
        self.assertEqual(g["properties"]["provisioningState"], "Creating")
        self.assertEqual(g["properties"]["instanceView"]["state"], "Pending")
        self.assertEqual(iv["currentState"]["state"], "Waiting")
        self.assertEqual(self.arm("GET", None, url=op).json["status"], "InProgress")
        control("settings", {"aci_pull_retry_time": 0})
        done = self.arm.poll(op).json
        self.assertEqual((done["status"], done["error"]["code"]), ("Failed", "InaccessibleImage"))
        g = self.arm("GET", self.base + "nopull", api=API).json
        # restart policy Always: Pending with the pull events, as the recorded ContainerGroupsGet_Failed
        self.assertEqual((g["properties"]["provisioningState"], g["properties"]["instanceView"]["state"]),
                         ("Failed", "Pending"))
        iv = g["properties"]["containers"][0]["properties"]["instanceView"]
        self.assertEqual([e["name"] for e in iv["events"]], ["Pulling", "Failed", "BackOff"])
        self.assertIn(IMAGE, iv["events"][1]["message"])
        self.assertNotIn("wrong-password", json.dumps(g))
        self.assertEqual(iv["currentState"]["state"], "Waiting")
        # restart policy Never: the group has failed
        self.deploy("nopull2", group("hoist-nopull2", HTTPD, password="wrong-password", restart="Never"))
        g = self.arm("GET", self.base + "nopull2", api=API).json
        self.assertEqual((g["properties"]["provisioningState"], g["properties"]["instanceView"]["state"]),
                         ("Failed", "Failed"))

    def test_delete_during_pull_retries_cancels_them(self):
        # what hoist's compensation does instead of waiting out the retries (minutes)
        r = self.arm("PUT", self.base + "gone", group("hoist-gone", HTTPD, password="wrong-password"), api=API)
        op = r.headers["Azure-AsyncOperation"]
        for _ in range(50):
            iv = self.arm("GET", self.base + "gone", api=API).json["properties"]["containers"][0]["properties"][
                "instanceView"]
            if "Failed" in [e["name"] for e in iv["events"]]:
                break
            time.sleep(0.2)
        self.assertIn("Failed", [e["name"] for e in iv["events"]], iv)
        self.assertEqual(self.arm("PUT", self.base + "gone", group("hoist-gone", HTTPD), api=API).json["error"]["code"],
                         "AnotherOperationInProgress")
        self.assertEqual(self.arm("DELETE", self.base + "gone", api=API).status, 200)
        self.assertEqual(self.arm("GET", None, url=op).json["status"], "Canceled")
        self.assertEqual(self.arm("GET", self.base + "gone", api=API).status, 404)
        # the label is free again at once: the previous definition can be created anew
        self.assertEqual(self.deploy("gone", group("hoist-gone", HTTPD))["status"], "Succeeded")

    def test_restart_pulls_a_moved_tag(self):
        image = "127.0.0.1:5002/azemu/hoist-aemu-restart:1"
        for tag, text in (("hoist-aemu-r1", "aemu-r1"), ("hoist-aemu-r2", "aemu-r2")):
            ok, err = build(tag, text)
            self.assertTrue(ok, err)
        # after tearDown (the group's containers gone): the built images and the emulator's pulls,
        # also the one the moved tag left untagged
        self.addCleanup(subprocess.run, "docker rmi -f azemu-test/site:hoist-aemu-r1 azemu-test/site:hoist-aemu-r2; "
                        "docker images -q --filter reference=%s | xargs -r docker rmi -f" % image.rsplit(":", 1)[0],
                        shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertEqual(push("hoist-aemu-r1", image), (True, ""))
        self.assertEqual(self.deploy("moved", group("hoist-aemu-moved", None, image=image))["status"], "Succeeded")
        self.wait_running("moved")
        url = "http://hoist-aemu-moved.westeurope.azurecontainer.io:8000/index.html"
        self.assertEqual(self.answer(url), "aemu-r1")
        self.assertEqual(push("hoist-aemu-r2", image), (True, ""))  # the tag moves
        self.assertEqual(self.arm("POST", self.base + "moved/restart", api=API).status, 204)
        self.wait_running("moved")
        self.assertEqual(self.answer(url), "aemu-r2")
        events = [e["name"] for e in self.arm("GET", self.base + "moved", api=API).json["properties"][
            "containers"][0]["properties"]["instanceView"]["events"]]
        self.assertEqual(events[4:], ["Killing", "Pulling", "Pulled", "Created", "Started"])

    def answer(self, url):
        for _ in range(50):
            status, body = via_proxy(url)
            if status == 200:
                return body.strip()
            time.sleep(0.2)
        self.fail("%s never answered: %s %s" % (url, status, body))

    def test_validation(self):
        cases = [
            ({"containers": []}, 400, "ContainerGroupContainersEmpty"),
            ({"osType": "Plan9"}, 400, "InvalidOsType"),
            ({"restartPolicy": "Sometimes"}, 400, "InvalidRestartPolicy"),
            ({"ipAddress": {"type": "Public", "dnsNameLabel": "Bad_Label", "ports": []}}, 400,
             "InvalidDnsNameLabel"),
            ({"ipAddress": {"type": "Public", "ports": [{"port": 9999}]}}, 400, "InvalidIpAddressPorts"),
        ]
        for change, status, code in cases:
            with self.subTest(code=code):
                body = group("hoist-v", HTTPD)
                body["properties"].update(change)
                r = self.arm("PUT", self.base + "v", body, api=API)
                self.assertEqual((r.status, r.json["error"]["code"]), (status, code), r.raw)
        r = self.arm("PUT", self.base + "v", group("hoist-v", HTTPD), api="2010-01-01")
        self.assertEqual(r.json["error"]["code"], "InvalidApiVersionParameter")

    def test_unregistered_provider_is_refused(self):
        self.arm("POST", PROVIDER + "/unregister")
        self.arm("GET", PROVIDER)
        r = self.arm("PUT", self.base + "x", group("hoist-x", HTTPD), api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (409, "MissingSubscriptionRegistration"))


if __name__ == "__main__":
    unittest.main()
