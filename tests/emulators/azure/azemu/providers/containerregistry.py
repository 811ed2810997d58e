"""Microsoft.ContainerRegistry: registries (PUT/GET/PATCH/DELETE/list, listCredentials,
regenerateCredential, importImage), registries/replications, checkNameAvailability.

Every registry's login server is the local token registry (LOGIN_SERVER, 127.0.0.1:5002), whose
token server (tests/env/token_server.py) reads the admin users and passwords the emulator writes
to $STATE/azure/acr-users.json and accepts Entra tokens in its ACR exchange. importImage copies
for real between the local registries with skopeo.
"""

import base64
import http.client
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

from ..arm import ArmError, ResourceType, check_api_version, now_iso, route
from ..state import ACR_LOGIN_SERVER
from .resources import check_sub

LOGIN_SERVER = ACR_LOGIN_SERVER
API = {"2019-05-01", "2019-12-01-preview", "2021-09-01", "2022-02-01-preview", "2022-12-01",
       "2023-01-01-preview", "2023-07-01", "2023-08-01-preview", "2023-11-01-preview",
       "2024-11-01-preview", "2025-04-01", "2025-05-01-preview", "2025-11-01"}
SKUS = ("Basic", "Standard", "Premium")
NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
EMULATOR_USER = "hoist-azure-emulator"


class Registries(ResourceType):
    key = "Microsoft.ContainerRegistry/registries"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "location"
    actions = {"listCredentials": (("POST",), "list_credentials"),
               "regenerateCredential": (("POST",), "regenerate_credential"),
               "importImage": (("POST",), "import_image")}

    def __init__(self, arm):
        self.arm = arm
        self.passwords = {}  # registry name lower -> [password, password2]
        self.service_password = secrets.token_urlsafe(24)
        self.write_users()

    def write_users(self):
        users = {EMULATOR_USER: [self.service_password]}
        with self.arm.lock:
            for res in self.arm.resources.values():
                if res["type"] == self.key and res["properties"].get("adminUserEnabled"):
                    users[res["name"]] = list(self.passwords.get(res["name"].lower(), []))
        self.arm.state.write_file("acr-users.json", json.dumps({"users": users}), 0o600)

    def create(self, ctx, existing, body):
        name = ctx.name
        if not NAME.match(name):
            raise ArmError(400, "InvalidRegistryName", "The registry name '%s' is invalid: 5-50 "
                           "alphanumeric characters." % name, target="registryName")
        sku = (body.get("sku") or (existing or {}).get("sku") or {}).get("name")
        if sku not in SKUS:
            raise ArmError(400, "InvalidSku", "The sku '%s' is invalid; use one of %s."
                           % (sku, ", ".join(SKUS)), target="sku.name")
        if not existing:
            with self.arm.lock:
                for r in self.arm.resources.values():
                    if r["type"] == self.key and r["name"].lower() == name.lower():
                        raise ArmError(409, "AlreadyInUse", "The registry %s is already in use." % name)
        props = dict((existing or {}).get("properties") or {})
        given = body.get("properties") or {}
        props.update({k: v for k, v in given.items() if k not in ("provisioningState", "loginServer")})
        props.setdefault("adminUserEnabled", False)
        props.update({"loginServer": LOGIN_SERVER,
                      "creationDate": props.get("creationDate") or now_iso()})
        for k, v in (("networkRuleSet", {"defaultAction": "Allow", "ipRules": []}),
                     ("policies", {"quarantinePolicy": {"status": "disabled"},
                                   "trustPolicy": {"type": "Notary", "status": "disabled"},
                                   "retentionPolicy": {"days": 7, "status": "disabled",
                                                       "lastUpdatedTime": now_iso()},
                                   "exportPolicy": {"status": "enabled"},
                                   "azureADAuthenticationAsArmPolicy": {"status": "enabled"}}),
                     ("encryption", {"status": "disabled"}), ("status", None),
                     ("dataEndpointEnabled", False), ("dataEndpointHostNames", []),
                     ("privateEndpointConnections", []), ("publicNetworkAccess", "Enabled"),
                     ("networkRuleBypassOptions", "AzureServices"), ("zoneRedundancy", "Disabled"),
                     ("anonymousPullEnabled", False)):
            props.setdefault(k, v)
        res = {"location": body.get("location"), "sku": {"name": sku, "tier": sku},
               "properties": props}
        tags = body.get("tags", (existing or {}).get("tags"))
        if tags is not None:
            res["tags"] = tags
        if body.get("identity"):
            res["identity"] = body["identity"]
        self.passwords.setdefault(name.lower(), [secrets.token_urlsafe(24), secrets.token_urlsafe(24)])
        return res

    def provision(self, ctx, res):
        self.write_users()

    def patch(self, ctx, res, body):
        with self.arm.lock:
            if "tags" in body:
                res["tags"] = body["tags"]
            if (body.get("sku") or {}).get("name"):
                if body["sku"]["name"] not in SKUS:
                    raise ArmError(400, "InvalidSku", "The sku '%s' is invalid." % body["sku"]["name"])
                res["sku"] = {"name": body["sku"]["name"], "tier": body["sku"]["name"]}
            for k, v in (body.get("properties") or {}).items():
                if k not in ("provisioningState", "loginServer", "creationDate"):
                    res["properties"][k] = v
        self.write_users()
        return res

    def remove(self, ctx, res):
        self.passwords.pop(res["name"].lower(), None)
        with self.arm.lock:
            res["properties"]["adminUserEnabled"] = False
        self.write_users()

    # --- actions ------------------------------------------------------------------------
    def credentials(self, res):
        if not res["properties"].get("adminUserEnabled"):
            raise ArmError(400, "AdminUserDisabled", "The admin user of the registry '%s' is disabled; "
                           "enable it with properties.adminUserEnabled=true." % res["name"])
        pw = self.passwords[res["name"].lower()]
        return {"username": res["name"], "passwords": [{"name": "password", "value": pw[0]},
                                                       {"name": "password2", "value": pw[1]}]}

    def list_credentials(self, ctx, res, body):
        return 200, self.credentials(res), []

    def regenerate_credential(self, ctx, res, body):
        which = body.get("name")
        if which not in ("password", "password2"):
            raise ArmError(400, "InvalidParameter", "name must be 'password' or 'password2', not %r"
                           % which, target="name")
        self.credentials(res)
        self.passwords[res["name"].lower()][0 if which == "password" else 1] = secrets.token_urlsafe(24)
        self.write_users()
        return 200, self.credentials(res), []

    def import_image(self, ctx, res, body):
        source = body.get("source") or {}
        image = source.get("sourceImage")
        if not image:
            raise ArmError(400, "InvalidParameter", "source.sourceImage is required.",
                           target="source.sourceImage")
        if bool(source.get("registryUri")) == bool(source.get("resourceId")):
            raise ArmError(400, "InvalidParameter", "Give exactly one of source.registryUri and "
                           "source.resourceId.", target="source")
        src_host, src_creds = source.get("registryUri"), None
        if source.get("resourceId"):
            other = self.arm.get(source["resourceId"])
            if other is None or other["type"] != self.key:
                raise ArmError(404, "ResourceNotFound", "The source registry '%s' was not found."
                               % source["resourceId"], target="source.resourceId")
            src_host, src_creds = LOGIN_SERVER, (EMULATOR_USER, self.service_password)
        elif source.get("credentials"):
            c = source["credentials"]
            src_creds = (c.get("username") or "", c.get("password") or "")
        if not re.match(r"^(127\.0\.0\.1|localhost):\d+$", src_host or ""):
            raise ArmError(400, "InvalidParameter", "The emulator imports only from registries on "
                           "127.0.0.1, not %r." % src_host, target="source.registryUri")
        tags = body.get("targetTags") or []
        if not tags:
            repo = image.split("@")[0]
            tags = [repo if ":" in repo.split("/")[-1] else repo + ":latest"]
        if body.get("mode", "NoForce") not in ("NoForce", "Force"):
            raise ArmError(400, "InvalidParameter", "mode must be NoForce or Force.", target="mode")
        src_ref = image if ("@" in image or ":" in image.split("/")[-1]) else image + ":latest"

        def work():
            return self.copy(src_host, src_creds, src_ref, tags, body.get("mode", "NoForce"))
        op = self.arm.start_op(ctx, "action", res, self, work)
        return 202, None, self.arm.lro_headers(op, location=True, async_op=False)

    def copy(self, src_host, src_creds, src_ref, tags, mode):
        with tempfile.TemporaryDirectory() as d:
            auth = {"auths": {LOGIN_SERVER: {"auth": b64("%s:%s" % (EMULATOR_USER, self.service_password))}}}
            if src_creds and src_host != LOGIN_SERVER:
                auth["auths"][src_host] = {"auth": b64("%s:%s" % src_creds)}
            path = os.path.join(d, "auth.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(auth, f)
            for tag in tags:
                dst = "docker://%s/%s" % (LOGIN_SERVER, tag)
                if mode == "NoForce" and skopeo(["inspect", "--raw", "--tls-verify=false",
                                                 "--authfile", path, dst])[0] == 0:
                    return {"code": "TagAlreadyExists", "message": "The target tag '%s' already exists; "
                            "import with mode Force to overwrite it." % tag}
                rc, err = skopeo(["copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
                                  "--authfile", path, "docker://%s/%s" % (src_host, src_ref), dst])
                if rc != 0:
                    return {"code": "ImportSourceFailed", "message": "Importing '%s/%s' failed: %s"
                            % (src_host, src_ref, err.strip().splitlines()[-1] if err.strip() else rc)}
        return None


def b64(s):
    return base64.b64encode(s.encode()).decode()


def skopeo(args):
    p = subprocess.run(["skopeo"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=300)
    return p.returncode, p.stderr.decode("utf-8", "replace")


class Replications(ResourceType):
    key = "Microsoft.ContainerRegistry/registries/replications"
    api_versions = API
    default_lro = "async"
    default_delete_lro = "location"

    def create(self, ctx, existing, body):
        registry = ctx.arm.get(ctx.handler.url_path.split("/replications/")[0])
        if registry["sku"]["name"] != "Premium":
            raise ArmError(400, "OperationNotSupportedForSku", "Geo-replication is supported by the "
                           "Premium SKU only; the registry '%s' is %s." % (registry["name"],
                                                                           registry["sku"]["name"]))
        res = super().create(ctx, existing, body)
        res["properties"].setdefault("regionEndpointEnabled", True)
        res["properties"].setdefault("zoneRedundancy", "Disabled")
        res["properties"]["status"] = {"displayStatus": "Ready", "timestamp": now_iso()}
        return res


def check_name(arm, h, m):
    check_sub(arm, m.group(1))
    check_api_version(h, API, "'Microsoft.ContainerRegistry/checkNameAvailability'")
    body = h.json_body() or {}
    name = body.get("name") or ""
    if body.get("type") != Registries.key:
        raise ArmError(400, "InvalidParameter", "type must be '%s'." % Registries.key, target="type")
    if not NAME.match(name):
        return 200, {"nameAvailable": False, "reason": "Invalid",
                     "message": "The registry name must be 5-50 alphanumeric characters."}, []
    with arm.lock:
        taken = any(r["type"] == Registries.key and r["name"].lower() == name.lower()
                    for r in arm.resources.values())
    if taken:
        return 200, {"nameAvailable": False, "reason": "AlreadyExists",
                     "message": "The registry %s is already in use." % name}, []
    return 200, {"nameAvailable": True}, []


# --- the data plane: https://<loginServer> ------------------------------------------------
# ACR serves its data plane on https only: az acr repository list/show-tags call
# https://<loginServer>/v2/... and ACR's own /acr/v1/... API. The token registry behind
# LOGIN_SERVER speaks plain HTTP, so through the proxy a CONNECT to the login server ends TLS
# there (as ACR's front end does) and goes to the emulator's front end, which relays the Docker
# registry API to the registry as it is and answers GET /acr/v1/{repository}/_tags (what
# `az acr repository show-tags` reads) from the registry's tags/list and manifest digests, with
# the caller's own token. The token server (the registry's realm) is relayed as it is.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))
RELAYED_HEADERS = ("content-type", "www-authenticate", "docker-distribution-api-version",
                   "docker-content-digest", "link", "location")


def resolve_data_plane(host, port):
    server_host, _, server_port = LOGIN_SERVER.rpartition(":")
    if host == server_host and str(port) == server_port:
        from ..front import state_port
        return (state_port(None), True)
    token = urlsplit(os.environ.get("HOIST_TEST_TOKEN_SERVER", "http://127.0.0.1:5003"))
    if host == token.hostname and port == token.port:
        return port
    return None


def registry_call(method, path, headers, body=b""):
    """(status, [(header, value)] worth relaying, body) of a request to the token registry."""
    host, _, port = LOGIN_SERVER.rpartition(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request(method, path, body=body or None, headers=headers)
        r = c.getresponse()
        data = r.read()
        return r.status, [(k, v) for k, v in r.getheaders() if k.lower() in RELAYED_HEADERS], data
    finally:
        c.close()


def data_plane(host, h):
    if (h.headers.get("Host") or "").lower() != LOGIN_SERVER.lower():
        return False
    ask = {k: h.headers[k] for k in ("Authorization", "Accept", "Content-Type") if h.headers.get(k)}
    m = re.match(r"^/acr/v1/(.+)/_tags/?$", h.url_path)
    if m and h.command == "GET":
        status, headers, body = acr_tags(m.group(1), ask, h.query)
    else:
        status, headers, body = registry_call(h.command, h.path, ask, h.raw_body)
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "application/json")
    h.send(status, body, [(k, v) for k, v in headers if k.lower() != "content-type"], ctype=ctype)
    return True


def acr_tags(repo, ask, query):
    """ACR's Tag - List: {registry, imageName, tags: [{name, digest, signed, changeableAttributes}]},
    sorted by name, `n` and `last` as ACR pages them. The registry keeps no times: createdTime and
    lastUpdateTime are absent and `orderby` is ignored."""
    status, headers, body = registry_call("GET", "/v2/%s/tags/list" % repo, ask)
    if status != 200:
        return status, headers, body
    names = sorted(json.loads(body or b"{}").get("tags") or [])
    if query.get("last"):
        names = [t for t in names if t > query["last"]]
    if (query.get("n") or "").isdigit():
        names = names[:int(query["n"])]
    tags = []
    for name in names:
        _, hs, _ = registry_call("HEAD", "/v2/%s/manifests/%s" % (repo, name), dict(ask, Accept=MANIFEST_TYPES))
        tags.append({"name": name, "digest": next((v for k, v in hs if k.lower() == "docker-content-digest"), None),
                     "signed": False, "changeableAttributes": {"deleteEnabled": True, "writeEnabled": True,
                                                               "readEnabled": True, "listEnabled": True}})
    out = {"registry": LOGIN_SERVER, "imageName": repo, "tags": tags}
    return 200, [("Docker-Distribution-Api-Version", "registry/2.0")], json.dumps(out).encode()


def install(arm):
    arm.register(Registries(arm))
    arm.register(Replications())
    arm.state.proxy_resolvers.append(resolve_data_plane)
    arm.state.front_routes.append(data_plane)
    route(arm, r"^/subscriptions/([^/]+)/providers/Microsoft\.ContainerRegistry/checkNameAvailability$",
          check_name)
