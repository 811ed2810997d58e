"""Helpers for the emulator's own tests (stdlib unittest): HTTP calls trusting the test CA,
the control endpoint, tokens. The variables come from env.sh (source it, or HOIST_ENV_DIR)."""

import json
import os
import shlex
import ssl
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_env():
    env = dict(os.environ)
    path = os.path.join(env.get("HOIST_ENV_DIR", "/tmp/hoist-env"), "env.sh")
    if "HOIST_TEST_AZURE_CONTROL" not in env and os.path.exists(path):
        for line in open(path):
            if line.startswith("export "):
                k, _, v = line[7:].strip().partition("=")
                env[k] = shlex.split(v)[0] if v else ""
    return env


ENV = load_env()
CA = ENV.get("HOIST_TEST_CA", "/tmp/hoist-env/ca/ca.pem")
CONTROL = ENV.get("HOIST_TEST_AZURE_CONTROL")
CTX = ssl.create_default_context(cafile=CA) if os.path.exists(CA) else None
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=CTX))


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.raw = status, headers, body

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None


def call(method, url, body=None, headers=None, form=None, timeout=30):
    headers = dict(headers or {})
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with NO_PROXY.open(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def control(op, body=None, method="POST"):
    r = call(method, CONTROL + "/" + op, body if body is not None else ({} if method == "POST" else None))
    if r.status != 200:
        raise AssertionError("control %s: %d %s" % (op, r.status, r.raw))
    return r.json


def emulator_up():
    if not CONTROL or CTX is None:
        return False
    try:
        return call("GET", CONTROL + "/health", timeout=3).status == 200
    except OSError:
        return False


DOWN = "the azure emulator is not running (tests/env/up.sh, then source /tmp/hoist-env/env.sh)"
CI = os.environ.get("CI") == "true"  # CI has the test environment: absent is a failure there


def require_emulator(cls):
    if CI and not emulator_up():
        raise SystemExit("FAIL: " + DOWN + " (CI=true)")
    return unittest.skipUnless(emulator_up(), "skipped: " + DOWN)(cls)


TENANT = ENV.get("HOIST_TEST_AZURE_TENANT_ID")
LOGIN = ENV.get("AZURE_AUTHORITY_HOST")
ARM = ENV.get("AZURE_RESOURCE_MANAGER_ENDPOINT")
SUB = ENV.get("HOIST_TEST_AZURE_SUBSCRIPTION_ID")


def secret_token(resource="https://management.azure.com/"):
    r = call("POST", "%s/%s/oauth2/v2.0/token" % (LOGIN, TENANT), form={
        "grant_type": "client_credentials", "client_id": ENV["HOIST_TEST_AZURE_CLIENT_ID"],
        "client_secret": ENV["HOIST_TEST_AZURE_CLIENT_SECRET"], "scope": resource + ".default"})
    assert r.status == 200, r.raw
    return r.json["access_token"]


class ArmClient:
    """Minimal ARM calls with a service principal token, for the tests."""

    def __init__(self, token=None):
        self.token = token or secret_token()

    def __call__(self, method, path, body=None, api="2025-04-01", headers=None, url=None):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        if url is None:
            sep = "&" if "?" in path else "?"
            url = ARM + path + (sep + "api-version=" + api if api else "")
        return call(method, url, body, headers=h)

    def register(self, namespace):
        """Registers a resource provider and waits until it is Registered (it moves by time:
        setting register_duration)."""
        path = "/subscriptions/%s/providers/%s" % (SUB, namespace)
        self("POST", path + "/register")
        for _ in range(600):
            if self("GET", path).json["registrationState"] == "Registered":
                return
            time.sleep(0.05)
        raise AssertionError("%s did not register" % namespace)

    def poll(self, url, limit=900):
        """Follows an Azure-AsyncOperation or Location URL to its end (a tenth of a second between
        polls: the emulator's own work, a docker pull, takes what it takes); the last response."""
        for _ in range(limit):
            r = self("GET", None, url=url)
            if "operationStatuses" in url:
                if r.json["status"] != "InProgress":
                    return r
            elif r.status != 202:
                return r
            time.sleep(0.1)
        raise AssertionError("operation %s did not finish in %d polls" % (url, limit))


RG_PATH = "/subscriptions/%s/resourcegroups/" % SUB
