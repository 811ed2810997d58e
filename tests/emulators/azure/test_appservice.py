#!/usr/bin/env python3
"""Tests of the emulated Microsoft.Web: web apps for containers that run for real on the local
Docker engine, pulled from the token registry (registry app settings or the managed identity),
reached as <name>.azurewebsites.net through the proxy (http and https); WEBSITES_PORT, the start
time limit and its documented log line, the CD webhook on the SCM site behind the publishing
credentials, a :latest tag that changes nothing until the hook, slots and swap with sticky
settings, restart/stop/start, container logs; no secret in any view."""

import base64
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.request

from testlib import SUB, CA, ENV, RG_PATH, ArmClient, control, require_emulator

API = "2024-11-01"
REPO = "127.0.0.1:5002/azemu/site"
BASE = ENV.get("HOIST_TEST_BASE_IMAGE", "hoist-test/busybox:latest")
PROXY = ENV.get("HOIST_TEST_AZURE_PROXY", "http://127.0.0.1:5014")
TOKEN_USER = ENV.get("HOIST_TEST_REGISTRY_TOKEN_USER")
TOKEN_PASSWORD = ENV.get("HOIST_TEST_REGISTRY_TOKEN_PASSWORD")


def build(tag, text, port=8000):
    """An image FROM the base image whose httpd answers TEXT on PORT (local tag azemu-test/site:TAG)."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write("FROM %s\nRUN mkdir -p /www && echo %s > /www/index.html\nEXPOSE %d\n"
                    'CMD ["sh", "-c", "echo serving %s; exec httpd -f -v -p %d -h /www"]\n'
                    % (BASE, text, port, text, port))
        p = subprocess.run(["docker", "build", "-q", "-t", "azemu-test/site:" + tag, d],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode == 0, p.stderr.decode()


def push(tag, dest):
    p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                        "%s:%s" % (TOKEN_USER, TOKEN_PASSWORD), "docker-daemon:azemu-test/site:" + tag,
                        "docker://" + dest], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p.returncode == 0, p.stderr.decode()


def via_proxy(url, headers=None, method="GET", data=None):
    ctx = ssl.create_default_context(cafile=CA)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": PROXY, "https": PROXY}),
                                         urllib.request.HTTPSHandler(context=ctx))
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with opener.open(req, timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Watch:
    """Requests URL in a loop in a thread until stopped; counts the answers that are not 200."""

    def __init__(self, url):
        import threading
        self.url, self.ok, self.failed, self.bodies = url, 0, [], set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                status, body = via_proxy(self.url)
            except OSError as e:
                status, body = 0, str(e)
            if status == 200:
                self.ok += 1
                self.bodies.add(body.strip())
            else:
                self.failed.append((status, body[:100]))

    def end(self):
        self.stop.set()
        self.thread.join(30)
        return self


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


@require_emulator
class AppService(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tag, text in (("v1", "site-v1"), ("v2", "site-v2")):
            ok, err = build(tag, text)
            if not ok:
                raise unittest.SkipTest("skipped: cannot build the test image FROM %s: %s" % (BASE, err))
        for tag, dest in (("v1", REPO + ":latest"), ("v1", REPO + ":v1"), ("v2", REPO + ":v2")):
            ok, err = push(tag, dest)
            if not ok:
                raise unittest.SkipTest("skipped: cannot push the test image to 127.0.0.1:5002: " + err)

    def setUp(self):
        control("reset", {"store": True})
        control("settings", {"appservice_start_time_limit": 20})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-web", {"location": "westeurope"})
        self.web = RG_PATH + "rg-web/providers/Microsoft.Web/"
        r = self.arm("PUT", self.web + "serverfarms/plan", {"location": "westeurope", "kind": "linux",
                                                            "sku": {"name": "B1"}, "properties": {"reserved": True}}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        self.plan = r.json["id"]

    def tearDown(self):
        control("reset", {"store": True})

    def site(self, name, image=REPO + ":latest", settings=None, path=None, mi=False, command=""):
        s = {"WEBSITES_PORT": "8000", "DOCKER_REGISTRY_SERVER_URL": "https://127.0.0.1:5002",
             "DOCKER_REGISTRY_SERVER_USERNAME": TOKEN_USER, "DOCKER_REGISTRY_SERVER_PASSWORD": TOKEN_PASSWORD}
        if mi:
            s = {"WEBSITES_PORT": "8000"}
        s.update(settings or {})
        body = {"location": "westeurope", "kind": "app,linux,container", "properties": {
            "serverFarmId": self.plan, "reserved": True, "siteConfig": {
                "linuxFxVersion": "DOCKER|" + image, "acrUseManagedIdentityCreds": mi, "appCommandLine": command,
                "appSettings": [{"name": k, "value": v} for k, v in s.items() if v is not None]}}}
        if mi:
            body["identity"] = {"type": "SystemAssigned"}
        r = self.arm("PUT", path or self.web + "sites/" + name, body, api=API)
        self.assertIn(r.status, (200, 201), r.raw)
        return r.json

    def grant_pull(self, principal):
        """AcrPull on the resource group (which holds the registry) for `principal`."""
        role = "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/" \
               "7f951dda-4ed3-4680-a7ca-43fe172d538d" % SUB
        r = self.arm("PUT", self.web.split("/providers/")[0] + "/providers/Microsoft.Authorization/roleAssignments/"
                     "2a2b1f2e-0a11-4d5e-9b3c-00000000a11d", {"properties": {
                         "roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}},
                     api="2022-04-01")
        self.assertEqual(r.status, 201, r.raw)

    def wait_body(self, url, want, tries=150):
        for _ in range(tries):
            status, body = via_proxy(url)
            if status == 200 and body.strip() == want:
                return
            time.sleep(0.2)
        self.fail("%s never answered %r (last: %s %r)" % (url, want, status, body[:200]))

    def logs(self, name):
        r = self.arm("POST", self.web + "sites/%s/containerlogs" % name, api=API)
        self.assertEqual(r.status, 200)
        return r.raw.decode()

    def creds(self, name):
        r = self.arm("POST", self.web + "sites/%s/config/publishingcredentials/list" % name, api=API)
        self.assertEqual(r.status, 200, r.raw)
        p = r.json["properties"]
        return p["publishingUserName"], p["publishingPassword"], p["scmUri"]

    def test_site_runs_and_secrets_stay_hidden(self):
        site = self.site("hoist-web")
        p = site["properties"]
        self.assertEqual((p["defaultHostName"], p["state"]), ("hoist-web.azurewebsites.net", "Running"))
        self.assertEqual(site["kind"], "app,linux,container")
        self.wait_body("http://hoist-web.azurewebsites.net/index.html", "site-v1")
        # https: the proxy ends TLS with a certificate of the test CA for the site's name
        self.wait_body("https://hoist-web.azurewebsites.net/index.html", "site-v1")
        got = self.arm("GET", self.web + "sites/hoist-web", api=API)
        self.assertIsNone(got.json["properties"]["siteConfig"]["appSettings"])
        listed = self.arm("POST", self.web + "sites/hoist-web/config/appsettings/list", api=API).json
        self.assertEqual(listed["properties"]["DOCKER_REGISTRY_SERVER_PASSWORD"], TOKEN_PASSWORD)
        log = self.logs("hoist-web")
        self.assertIn("initialized successfully and is ready to serve requests", log)
        self.assertIn("serving site-v1", log)  # the container's own output
        for text in (got.raw.decode(), log, self.arm("GET", self.web + "sites/hoist-web/config/web", api=API).raw.decode(),
                     self.arm("GET", self.web + "sites", api=API).raw.decode()):
            self.assertNotIn(TOKEN_PASSWORD, text)
        # a site other than the emulated ones is not reached
        status, body = via_proxy("http://nobody.azurewebsites.net/")
        self.assertEqual(status, 502)
        self.assertIn("nobody.azurewebsites.net", body)

    def test_latest_changes_nothing_until_the_webhook(self):
        self.site("hoist-cd")
        self.wait_body("http://hoist-cd.azurewebsites.net/index.html", "site-v1")
        digest_v1 = [l for l in self.logs("hoist-cd").splitlines() if "Digest:" in l][-1].split("Digest: ")[1]
        ok, err = push("v2", REPO + ":latest")
        self.assertTrue(ok, err)
        status, body = via_proxy("http://hoist-cd.azurewebsites.net/index.html")
        self.assertEqual((status, body.strip()), (200, "site-v1"))  # still the digest it started with
        user, password, scm = self.creds("hoist-cd")
        self.assertEqual(user, "$hoist-cd")
        self.assertEqual(scm, "https://$hoist-cd:%s@hoist-cd.scm.azurewebsites.net" % password)
        hook = "https://hoist-cd.scm.azurewebsites.net/docker/hook"
        self.assertEqual(via_proxy(hook, method="POST", data=b"")[0], 401)
        self.assertEqual(via_proxy(hook, basic(user, "wrong"), "POST", b"")[0], 401)
        self.assertEqual(via_proxy(hook, basic("$other", password), "POST", b"")[0], 401)
        watch = Watch("https://hoist-cd.azurewebsites.net/index.html")
        self.assertEqual(via_proxy(hook, basic(user, password), "POST", b"")[0], 200)
        self.wait_body("http://hoist-cd.azurewebsites.net/index.html", "site-v2")
        time.sleep(2)  # past the old container's stop
        watch.end()
        # the old container served until the new one answered: no failed request during the deploy
        self.assertEqual(watch.failed, [])
        self.assertEqual(watch.bodies, {"site-v1", "site-v2"})
        print("\nwebhook deploy: %d requests, %d failed" % (watch.ok + len(watch.failed), len(watch.failed)))
        digests = [l.split("Digest: ")[1] for l in self.logs("hoist-cd").splitlines() if "Digest:" in l]
        self.assertEqual(digests[0], digest_v1)
        self.assertNotEqual(digests[-1], digest_v1)
        # Kudu's docker log listing and files
        status, body = via_proxy("https://hoist-cd.scm.azurewebsites.net/api/logs/docker", basic(user, password))
        self.assertEqual(status, 200)
        files = json.loads(body)
        self.assertEqual(len(files), 2)
        status, text = via_proxy(files[0]["href"], basic(user, password))
        self.assertEqual(status, 200)
        self.assertIn("docker hook", text)
        self.assertNotIn(password, text)
        self.assertEqual(via_proxy(files[0]["href"])[0], 401)
        ok, err = push("v1", REPO + ":latest")
        self.assertTrue(ok, err)

    def test_port_80_or_8080_is_detected_and_websites_port_is_not_in_the_container(self):
        # App Service's Linux FAQ: a container on 80 or 8080 needs no WEBSITES_PORT
        for port in (80, 8080):
            with self.subTest(port=port):
                tag, image = "hoist-aemu-p%d" % port, "127.0.0.1:5002/azemu/hoist-aemu-port:%d" % port
                ok, err = build(tag, "aemu-p%d" % port, port=port)
                self.assertTrue(ok, err)
                self.addCleanup(subprocess.run, ["docker", "rmi", "-f", "azemu-test/site:" + tag, image],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.assertEqual(push(tag, image), (True, ""))
                name = "hoist-aemu-p%d" % port
                self.site(name, image=image, settings={"WEBSITES_PORT": None})
                self.wait_body("http://%s.azurewebsites.net/index.html" % name, "aemu-p%d" % port)
        # WEBSITES_PORT is App Service's, not the container's: the other settings are there
        self.site("hoist-aemu-env", command="sh -c 'env; exec httpd -f -p 8000 -h /www'",
                  settings={"LOG_LEVEL": "debug"})
        self.wait_body("http://hoist-aemu-env.azurewebsites.net/index.html", "site-v1")
        log = self.logs("hoist-aemu-env")
        self.assertIn("LOG_LEVEL=debug", log)
        self.assertNotIn("WEBSITES_PORT", log)

    def test_wrong_port_fails_the_start_with_the_documented_line(self):
        # the image listens on 8000; without WEBSITES_PORT App Service waits on 80
        self.site("hoist-port", settings={"WEBSITES_PORT": None, "WEBSITES_CONTAINER_START_TIME_LIMIT": "3"})
        for _ in range(100):
            log = self.logs("hoist-port")
            if "failing site start" in log:
                break
            time.sleep(0.2)
        self.assertRegex(log, r"Container azemu-\w+-hoist-port_\d+ didn't respond to HTTP pings on port: 80, "
                              r"failing site start\. See container logs for debugging\.")
        status, body = via_proxy("http://hoist-port.azurewebsites.net/")
        self.assertEqual(status, 503)
        self.assertIn("Application Error", body)
        # the fix: WEBSITES_PORT through config/appsettings restarts it on 8000
        settings = self.arm("POST", self.web + "sites/hoist-port/config/appsettings/list", api=API).json["properties"]
        settings["WEBSITES_PORT"] = "8000"
        r = self.arm("PUT", self.web + "sites/hoist-port/config/appsettings", {"properties": settings}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        self.wait_body("http://hoist-port.azurewebsites.net/index.html", "site-v1")

    def test_crashing_container(self):
        self.site("hoist-crash", command="sh -c 'echo crashing; exit 3'")
        for _ in range(100):
            log = self.logs("hoist-crash")
            if "failing site start" in log:
                break
            time.sleep(0.2)
        self.assertIn("has exited, failing site start", log)
        self.assertIn("crashing", log)
        self.assertEqual(via_proxy("http://hoist-crash.azurewebsites.net/")[0], 503)

    def test_slot_swap_keeps_sticky_settings(self):
        self.site("hoist-swap", REPO + ":v1", settings={"STAGE": "prod", "COLOR": "blue"})
        self.site(None, REPO + ":v2", settings={"STAGE": "staging", "COLOR": "green"},
                  path=self.web + "sites/hoist-swap/slots/staging")
        r = self.arm("PUT", self.web + "sites/hoist-swap/config/slotConfigNames",
                     {"properties": {"appSettingNames": ["STAGE"]}}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        slot = self.arm("GET", self.web + "sites/hoist-swap/slots/staging", api=API).json
        self.assertEqual((slot["name"], slot["properties"]["defaultHostName"]),
                         ("hoist-swap/staging", "hoist-swap-staging.azurewebsites.net"))
        self.wait_body("http://hoist-swap.azurewebsites.net/index.html", "site-v1")
        self.wait_body("http://hoist-swap-staging.azurewebsites.net/index.html", "site-v2")
        r = self.arm("POST", self.web + "sites/hoist-swap/slotsswap", {"targetSlot": "staging", "preserveVnet": True},
                     api=API)
        self.assertEqual(r.status, 202, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 200)
        status, body = via_proxy("http://hoist-swap.azurewebsites.net/index.html")
        self.assertEqual((status, body.strip()), (200, "site-v2"))  # at once: the warm container moved
        prod = self.arm("POST", self.web + "sites/hoist-swap/config/appsettings/list", api=API).json["properties"]
        stag = self.arm("POST", self.web + "sites/hoist-swap/slots/staging/config/appsettings/list", api=API).json
        self.assertEqual((prod["STAGE"], prod["COLOR"]), ("prod", "green"))
        self.assertEqual((stag["properties"]["STAGE"], stag["properties"]["COLOR"]), ("staging", "blue"))
        self.assertIn(":v2", self.arm("GET", self.web + "sites/hoist-swap/config/web", api=API).json[
            "properties"]["linuxFxVersion"])
        self.wait_body("http://hoist-swap.azurewebsites.net/index.html", "site-v2")
        self.wait_body("http://hoist-swap-staging.azurewebsites.net/index.html", "site-v1")
        r = self.arm("POST", self.web + "sites/hoist-swap/slots/staging/config/publishingcredentials/list", api=API)
        slot_user, slot_password = r.json["properties"]["publishingUserName"], r.json["properties"]["publishingPassword"]
        self.assertEqual(slot_user, "$hoist-swap__staging")
        # the slot's own SCM site and webhook, with the slot's credentials only
        hook = "https://hoist-swap-staging.scm.azurewebsites.net/docker/hook"
        user, password, _ = self.creds("hoist-swap")
        self.assertEqual(via_proxy(hook, basic(user, password), "POST", b"")[0], 401)
        self.assertEqual(via_proxy(hook, basic(slot_user, slot_password), "POST", b"")[0], 200)
        r = self.arm("POST", self.web + "sites/hoist-swap/slotsswap", {"targetSlot": "nope"}, api=API)
        self.assertEqual(r.status, 404)

    def test_a_swap_in_flight_holds_the_site(self):
        # the source slot's warm-up path answers 404 and only 200 counts: the swap stays in flight
        # for the slot's start time limit (4 s), then fails as App Service's does
        self.site("hoist-busy", REPO + ":v1")
        slot = self.web + "sites/hoist-busy/slots/staging"
        self.site(None, REPO + ":v2", path=slot, settings={
            "WEBSITE_SWAP_WARMUP_PING_PATH": "/not-there", "WEBSITE_SWAP_WARMUP_PING_STATUSES": "200",
            "WEBSITES_CONTAINER_START_TIME_LIMIT": "4"})
        self.wait_body("http://hoist-busy.azurewebsites.net/index.html", "site-v1")
        self.wait_body("http://hoist-busy-staging.azurewebsites.net/index.html", "site-v2")
        r = self.arm("POST", slot + "/slotsswap", {"targetSlot": "production"}, api=API)
        self.assertEqual(r.status, 202, r.raw)
        location = r.headers["Location"]
        site = self.web + "sites/hoist-busy"
        changes = [
            ("a second swap", "POST", site + "/slotsswap", {"targetSlot": "staging"}),
            ("app settings of production", "PUT", site + "/config/appsettings", {"properties": {"A": "b"}}),
            ("the slot's container", "PATCH", slot + "/config/web", {"properties": {"linuxFxVersion": "DOCKER|x:1"}}),
            ("a restart", "POST", site + "/restart", None),
            ("resetSlotConfig", "POST", slot + "/resetSlotConfig", None),
            ("a PATCH of the site", "PATCH", site, {"tags": {"a": "b"}}),
            ("a PUT of the slot", "PUT", slot, {"location": "westeurope", "properties": {"serverFarmId": self.plan}}),
            ("a delete of the site", "DELETE", site, None),
        ]
        for what, method, path, body in changes:
            r = self.arm(method, path, body, api=API)
            self.assertEqual(r.status, 409, "%s during the swap: %s" % (what, r.raw))
            e = r.json  # App Service's own envelope, not ARM's {error: {...}}
            self.assertNotIn("error", e)
            self.assertEqual(e["Code"], "Conflict", what)
            self.assertRegex(e["Message"], r"^Cannot modify this site because another operation is in progress\. "
                             r"Details: Id: [0-9a-f-]{36}, OperationName: SwapSiteSlots, CreatedTime: \d+/\d+/\d{4} "
                             r"\d+:\d\d:\d\d [AP]M, .*SiteName: hoist-busy, SlotName: staging, ")
            entity = e["Details"][2]["ErrorEntity"]
            self.assertEqual((entity["ExtendedCode"], entity["Code"], entity["Message"]),
                             ("59203", "Conflict", e["Message"]))
        # reads go on, and nothing changed
        self.assertEqual(self.arm("GET", site, api=API).status, 200)
        self.assertEqual(self.arm("POST", slot + "/config/appsettings/list", api=API).status, 200)
        self.assertIn(":v1", self.arm("GET", site + "/config/web", api=API).json["properties"]["linuxFxVersion"])
        self.assertEqual(self.arm("GET", location, api=None, url=location).status, 202, "still in flight")
        r = self.arm.poll(location)
        self.assertEqual(r.status, 400, r.raw)
        self.assertIn("Cannot swap slots for site 'hoist-busy' because the application initialization in 'staging' "
                      "slot either took too long or failed", r.json["error"]["message"])
        self.assertIn(":v1", self.arm("GET", site + "/config/web", api=API).json["properties"]["linuxFxVersion"],
                      "a failed warm-up swaps nothing")
        # the site takes changes again; a slot still starting is waited for, then the swap goes through
        r = self.arm("PUT", slot + "/config/appsettings", {"properties": dict(
            self.arm("POST", slot + "/config/appsettings/list", api=API).json["properties"],
            WEBSITE_SWAP_WARMUP_PING_PATH="/index.html")}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        r = self.arm("POST", slot + "/slotsswap", {"targetSlot": "production"}, api=API)
        self.assertEqual(r.status, 202, r.raw)
        self.assertEqual(self.arm.poll(r.headers["Location"]).status, 200)
        self.wait_body("http://hoist-busy.azurewebsites.net/index.html", "site-v2")
        self.assertIn("Slot swap: warming up hoist-busy-staging (GET /index.html)", self.logs("hoist-busy"))
        self.assertEqual(self.arm("POST", site + "/config/appsettings/list", api=API).status, 200)

    def test_stop_start_restart_and_managed_identity_pull(self):
        site = self.site("hoist-mi", REPO + ":v1", mi=True)
        # the site's identity pulls once it holds AcrPull, as ACR checks: before, ACR's unauthorized
        for _ in range(50):
            if "has no AcrPull role" in self.logs("hoist-mi"):
                break
            time.sleep(0.2)
        self.assertIn("has no AcrPull role on the registry", self.logs("hoist-mi"))
        self.grant_pull(site["identity"]["principalId"])
        r = self.arm("POST", self.web + "sites/hoist-mi/restart?synchronous=true", api=API)
        self.assertEqual(r.status, 200)
        self.wait_body("http://hoist-mi.azurewebsites.net/index.html", "site-v1")
        self.assertEqual(self.arm("POST", self.web + "sites/hoist-mi/stop", api=API).status, 200)
        self.assertEqual(self.arm("GET", self.web + "sites/hoist-mi", api=API).json["properties"]["state"], "Stopped")
        self.assertEqual(via_proxy("http://hoist-mi.azurewebsites.net/")[0], 403)
        self.assertEqual(self.arm("POST", self.web + "sites/hoist-mi/start", api=API).status, 200)
        self.wait_body("http://hoist-mi.azurewebsites.net/index.html", "site-v1")
        r = self.arm("POST", self.web + "sites/hoist-mi/restart?synchronous=true", api=API)
        self.assertEqual(r.status, 200)
        status, body = via_proxy("http://hoist-mi.azurewebsites.net/index.html")
        self.assertEqual((status, body.strip()), (200, "site-v1"))
        self.assertGreaterEqual(self.logs("hoist-mi").count("initialized successfully"), 3)
        # PATCH of the site's siteConfig deploys another image (beside the running container)
        r = self.arm("PATCH", self.web + "sites/hoist-mi", {"properties": {"siteConfig": {
            "linuxFxVersion": "DOCKER|%s:v2" % REPO}}}, api=API)
        self.assertEqual(r.status, 200, r.raw)
        self.wait_body("http://hoist-mi.azurewebsites.net/index.html", "site-v2")
        r = self.arm("DELETE", self.web + "sites/hoist-mi", api=API)
        self.assertEqual(r.status, 200)
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=hoist-azure-site"],
                             stdout=subprocess.PIPE).stdout.split()
        self.assertEqual(out, [])

    def test_managed_identity_pull_from_another_registry_fails(self):
        self.site("hoist-mi2", "127.0.0.1:5000/azemu/none:1", mi=True)
        for _ in range(50):
            log = self.logs("hoist-mi2")
            if "failed" in log:
                break
            time.sleep(0.2)
        self.assertIn("a managed identity can pull only from the emulated ACR login server", log)

    def test_validation(self):
        body = {"location": "westeurope", "kind": "app,linux,container", "properties": {
            "serverFarmId": self.plan.replace("/plan", "/none"), "siteConfig": {"linuxFxVersion": "DOCKER|x"}}}
        r = self.arm("PUT", self.web + "sites/bad", body, api=API)
        self.assertEqual((r.status, r.json["error"]["code"]), (404, "NotFound"))
        self.assertIn("none", r.json["error"]["message"])
        body["properties"]["serverFarmId"] = self.plan
        body["properties"]["siteConfig"]["linuxFxVersion"] = "nonsense"
        r = self.arm("PUT", self.web + "sites/bad", body, api=API)
        self.assertEqual(r.status, 400)
        self.assertIn("LinuxFxVersion", r.json["error"]["message"])
        r = self.arm("PUT", self.web + "sites/-bad-", body, api=API)
        self.assertEqual(r.json["error"]["code"], "InvalidSiteName")
        r = self.arm("POST", self.web + "sites/absent/restart", api=API)
        self.assertEqual(r.status, 404)
        r = self.arm("GET", self.web + "sites/hoist-x/config/appsettings", api=API)
        self.assertIn(r.status, (404, 405))


@require_emulator
class AppServiceArm(unittest.TestCase):
    """The calls az makes around a site that need no container: checknameavailability (az webapp
    create) and publishxml (az webapp show's ftpPublishingUrl)."""

    def setUp(self):
        control("reset", {"store": True})
        self.arm = ArmClient()
        self.arm("PUT", RG_PATH + "rg-webarm", {"location": "westeurope"})
        self.web = RG_PATH + "rg-webarm/providers/Microsoft.Web/"
        plan = self.arm("PUT", self.web + "serverfarms/plan", {"location": "westeurope", "kind": "linux",
                                                               "sku": {"name": "B1"}, "properties": {"reserved": True}}, api=API)
        self.assertEqual(plan.status, 200, plan.raw)
        r = self.arm("PUT", self.web + "sites/hoist-webarm", {"location": "westeurope", "kind": "app,linux,container",
                                                              "properties": {"serverFarmId": plan.json["id"]}}, api=API)
        self.assertEqual(r.status, 200, r.raw)

    def tearDown(self):
        control("reset", {"store": True})

    def test_check_name_availability(self):
        path = "/subscriptions/%s/providers/Microsoft.Web/checknameavailability" % ENV["HOIST_TEST_AZURE_SUBSCRIPTION_ID"]

        def check(name, type_="Site"):
            r = self.arm("POST", path, {"name": name, "type": type_}, api="2022-03-01")
            self.assertEqual(r.status, 200, r.raw)
            return r.json
        taken = check("HOIST-WEBARM")  # a site's name is its host name: taken in any group
        self.assertEqual((taken["nameAvailable"], taken["reason"]), (False, "AlreadyExists"))
        self.assertIn("hoist-webarm", taken["message"].lower())
        self.assertTrue(check("hoist-webarm-2", "Microsoft.Web/sites")["nameAvailable"])
        self.assertEqual(check("-bad-")["reason"], "Invalid")
        r = self.arm("POST", path, {"name": "x", "type": "Nope"}, api="2022-03-01")
        self.assertEqual(r.status, 400)

    def test_publish_profiles(self):
        r = self.arm("POST", self.web + "sites/hoist-webarm/publishxml", {"format": "WebDeploy"}, api="2022-03-01")
        self.assertEqual(r.status, 200, r.raw)
        import xml.etree.ElementTree as ET
        profiles = {p.get("publishMethod"): p for p in ET.fromstring(r.raw).iter("publishProfile")}
        self.assertEqual(sorted(profiles), ["FTP", "MSDeploy", "ZipDeploy"])
        creds = self.arm("POST", self.web + "sites/hoist-webarm/config/publishingcredentials/list", api=API).json
        user, password = creds["properties"]["publishingUserName"], creds["properties"]["publishingPassword"]
        self.assertEqual(profiles["MSDeploy"].get("publishUrl"), "hoist-webarm.scm.azurewebsites.net:443")
        self.assertEqual((profiles["MSDeploy"].get("userName"), profiles["MSDeploy"].get("userPWD")), (user, password))
        self.assertEqual(profiles["FTP"].get("userName"), "hoist-webarm\\" + user)
        self.assertRegex(profiles["FTP"].get("publishUrl"), r"^ftps://[a-z0-9-]+\.ftp\.azurewebsites\.windows\.net/site/wwwroot$")
        self.assertEqual(profiles["ZipDeploy"].get("destinationAppUrl"), "http://hoist-webarm.azurewebsites.net")
        r = self.arm("POST", self.web + "sites/absent/publishxml", {"format": "WebDeploy"}, api="2022-03-01")
        self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()
