"""The emulator's shared state: the directory (tenant, principals, federated credentials), keys,
settings tests change through the control endpoint, request counters and injected faults.

One process serves every endpoint, so a test's control call affects all of them at once.
"""

import json
import os
import threading

from . import jwt

TENANT_ID = "7e5a1a6e-0a11-4d5e-9b3c-00000000a11d"
SUBSCRIPTION_ID = "5ab5c21d-0a11-4d5e-9b3c-0000000005b1"
SP_CLIENT_ID = "c11e0001-0a11-4d5e-9b3c-000000000001"
SP_CLIENT_SECRET = "hoist-azure-client-secret"
SP_OBJECT_ID = "0b1ec701-0a11-4d5e-9b3c-000000000001"
FED_CLIENT_ID = "c11e0002-0a11-4d5e-9b3c-000000000002"
FED_OBJECT_ID = "0b1ec702-0a11-4d5e-9b3c-000000000002"
MI_CLIENT_ID = "c11e0003-0a11-4d5e-9b3c-000000000003"
MI_OBJECT_ID = "0b1ec703-0a11-4d5e-9b3c-000000000003"
# a service principal that holds no role until a test gives it one (the deployer of a preflight
# test that lacks a permission)
LIMITED_CLIENT_ID = "c11e0004-0a11-4d5e-9b3c-000000000004"
LIMITED_CLIENT_SECRET = "hoist-azure-limited-secret"
LIMITED_OBJECT_ID = "0b1ec704-0a11-4d5e-9b3c-000000000004"
OIDC_REQUEST_TOKEN = "hoist-github-oidc-request-token"
MSI_HEADER = "hoist-msi-identity-header"
GITHUB_SUBJECT = "repo:hoist-org/app:ref:refs/heads/main"
WORKLOAD_SUBJECT = "system:serviceaccount:default:hoist"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

# every endpoint of the emulator, on 127.0.0.1 only (tests/emulators/README.md: 5010-5019).
# AZEMU_PORT_BASE moves them all (a second instance, e.g. to try a change beside the shared one:
# README.md, "A second instance"); its containers then carry its own label.
PORT_BASE = int(os.environ.get("AZEMU_PORT_BASE") or 5010)
PORTS = {name: PORT_BASE + i for i, name in enumerate(("arm", "login", "github", "msi", "proxy", "front"))}
# ACR's login server: the token registry of tests/env/up.sh (a second instance may bring its own)
ACR_LOGIN_SERVER = os.environ.get("AZEMU_ACR_LOGIN_SERVER") or "127.0.0.1:5002"
HOSTS = {name: "%s://127.0.0.1:%d" % ("https" if name in ("arm", "login", "github") else "http", port)
         for name, port in PORTS.items()}

DEFAULT_SETTINGS = {
    "token_lifetime": 60,          # Entra and managed identity access tokens (s)
    "github_token_lifetime": 60,   # GitHub OIDC assertions (s)
    "retry_after": 1,              # Retry-After on LRO and throttling responses (s)
    "page_size": 10,               # list page size before nextLink
    "lro_duration": 0.5,           # s a long-running operation stays in progress at least (by time)
    "lro": {},                     # resource type (lower case) -> sync | async | location
    "lro_duration_for": {},        # substring of a resource id (lower case) -> s its operations last at least
    "register_duration": 0.5,      # s a provider stays Registering / Unregistering (by time)
    "github_subject": GITHUB_SUBJECT,
    # App Service: WEBSITES_CONTAINER_START_TIME_LIMIT when the site does not set it (s; Azure: 230)
    "appservice_start_time_limit": 230,
    # Container Apps: how long a new revision may take to answer its probe before it is
    # Unhealthy/Degraded (s), and the interval of the emulator's health checks (s)
    "containerapp_start_time_limit": 240,
    "containerapp_probe_interval": 1,
    # ACI: how long a create retries an image pull that fails before its operation fails (s;
    # Azure retries "for a period of time": minutes, so a client must read the instance view to
    # fail fast), and the first back-off between the tries (s; doubled each time up to 300 s;
    # the kubelet's is 10 s: shorter here so that a client sees the failures count up sooner)
    "aci_pull_retry_time": 600,
    "aci_pull_backoff": 1,
}


class Faults:
    """'fail the next N requests' rules: {server, status, count, match, method, code}."""

    def __init__(self):
        self.rules = []

    def take(self, server, method, path):
        for rule in self.rules:
            if rule["server"] not in ("*", server):
                continue
            if rule.get("method") and rule["method"].upper() != method:
                continue
            if rule.get("match") and rule["match"].lower() not in path.lower():
                continue
            rule["count"] -= 1
            if rule["count"] <= 0:
                self.rules.remove(rule)
            return rule
        return None


class State:
    def __init__(self, state_dir, hosts):
        self.dir = state_dir
        self.hosts = hosts  # {"arm": url, "login": url, "github": url, "msi": url, "proxy": url}
        self.lock = threading.RLock()
        keydir = os.path.join(state_dir, "keys")
        self.entra_key = jwt.PrivateKey(os.path.join(keydir, "entra.pem"))
        self.github_key = jwt.PrivateKey(os.path.join(keydir, "github.pem"))
        self.workload_key = jwt.PrivateKey(os.path.join(keydir, "workload.pem"))
        # the ACR token server verifies Entra tokens with this (tests/env/token_server.py)
        self.write_file("entra-jwks.json", json.dumps(jwt.jwks([self.entra_key])))
        self.tenant_id = TENANT_ID
        self.subscription_id = SUBSCRIPTION_ID
        self.principals = {
            SP_CLIENT_ID: {"oid": SP_OBJECT_ID, "secret": SP_CLIENT_SECRET, "federated": []},
            FED_CLIENT_ID: {"oid": FED_OBJECT_ID, "secret": None, "federated": [
                {"issuer": hosts["github"], "subject": GITHUB_SUBJECT, "audiences": [EXCHANGE_AUDIENCE]},
                {"issuer": self.workload_issuer(), "subject": WORKLOAD_SUBJECT,
                 "audiences": [EXCHANGE_AUDIENCE]},
            ]},
            MI_CLIENT_ID: {"oid": MI_OBJECT_ID, "secret": None, "federated": []},
            LIMITED_CLIENT_ID: {"oid": LIMITED_OBJECT_ID, "secret": LIMITED_CLIENT_SECRET, "federated": []},
        }
        self.store_reset_hooks = []
        self.shutdown_hooks = []
        self.proxy_resolvers = []  # (host, port) -> 127.0.0.1 port, (port, tls) or None (proxy.py)
        self.front_routes = []     # (host, handler) -> True when it answered (front.py)
        self.certs = None          # certs.Certs when server.py has the test CA (--ca-dir)
        self.reset()

    def workload_issuer(self):
        return self.hosts["login"] + "/_workload"

    def issuers(self):
        """Issuers whose assertions Entra accepts, with their keys (the JWKS they publish)."""
        return {self.hosts["github"]: [self.github_key.public()],
                self.workload_issuer(): [self.workload_key.public()]}

    def reset(self):
        with self.lock:
            self.settings = json.loads(json.dumps(DEFAULT_SETTINGS))
            self.counters = {}
            self.faults = Faults()

    def count(self, name):
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def setting(self, name):
        with self.lock:
            return self.settings[name]

    def write_file(self, name, text, mode=0o644):
        path = os.path.join(self.dir, name)
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chmod(path + ".new", mode)
        os.replace(path + ".new", path)
        return path
