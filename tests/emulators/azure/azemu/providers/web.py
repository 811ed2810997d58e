"""Microsoft.Web: App Service plans (serverfarms) and web apps for containers (sites and their
slots). A site whose siteConfig.linuxFxVersion is `DOCKER|<image>` runs that image for real on
the local Docker engine, as App Service on Linux does:

- the image is pulled with the DOCKER_REGISTRY_SERVER_URL/USERNAME/PASSWORD app settings, or with
  the emulator's managed identity when siteConfig.acrUseManagedIdentityCreds is true;
- the container publishes WEBSITES_PORT on 127.0.0.1, else 80 and 8080 (App Service detects a
  container listening on either; EXPOSE is not consulted), and gets the app settings as
  environment (not WEBSITES_PORT, not the registry password);
- the site pings `/robots933456.txt` on that port (those ports) until any HTTP answer, for
  WEBSITES_CONTAINER_START_TIME_LIMIT seconds (else the setting appservice_start_time_limit,
  230 like Azure), and otherwise writes "Container <name> didn't respond to HTTP pings on port:
  <port>, failing site start. See container logs for debugging." to its docker log and serves
  503 on its hostname;
- a new container (config change, CD webhook) starts beside the running one, which keeps serving
  until the new one answers; restart and start/stop replace it. The running container keeps the
  image (digest) it was started with: a new push of a tag changes nothing until the webhook or a
  restart pulls again;
- a swap is an operation (202 + Location) that first warms the source slot up (its container up,
  then GET WEBSITE_SWAP_WARMUP_PING_PATH), then exchanges the slots; while it (or any other
  operation) is in flight on a site or one of its slots, every change of them answers App
  Service's 409 "Cannot modify this site because another operation is in progress", in App
  Service's own error envelope (WebError).

`<name>.azurewebsites.net` (slots: `<name>-<slot>.azurewebsites.net`) reaches the container
through the proxy (http on 80, https on 443 with TLS ended at the proxy); the SCM site
`<name>.scm.azurewebsites.net` (Kudu) is the front end's (front.py): `POST /docker/hook` with the
publishing credentials, `GET /api/logs/docker`, `GET /api/vfs/LogFiles/<file>`.
"""

import collections
import copy
import hashlib
import re
import secrets
import shlex
import threading
import time
import base64
import json

from .. import docker, jwt, registry_auth
from .. import apiversions
from ..arm import ArmError, Context, ResourceType, check_api_version, now_iso, route
from .resources import check_sub, not_found, require_rg

API = apiversions.of("Microsoft.Web")
DOMAIN = "azurewebsites.net"
NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,58}[a-zA-Z0-9])?$")
PING_PATH = "/robots933456.txt"
LOG_LINES = 2000
DRAIN = 1.0          # seconds an old container still serves after the new one took over
KEEP_CONTAINERS = 3  # containers of a site kept (stopped) for their logs
# what a site's siteConfig holds when the PUT does not say (the documented defaults)
DEFAULT_SITE_CONFIG = {
    "numberOfWorkers": 1,
    "defaultDocuments": ["Default.htm", "Default.html", "Default.asp", "index.htm", "index.html",
                         "iisstart.htm", "default.aspx", "index.php", "hostingstart.html"],
    "netFrameworkVersion": "v4.0", "phpVersion": "", "pythonVersion": "", "nodeVersion": "",
    "powerShellVersion": "", "linuxFxVersion": "", "requestTracingEnabled": False,
    "remoteDebuggingEnabled": False, "httpLoggingEnabled": False, "acrUseManagedIdentityCreds": False,
    "logsDirectorySizeLimit": 35, "detailedErrorLoggingEnabled": False, "use32BitWorkerProcess": True,
    "webSocketsEnabled": False, "alwaysOn": False, "appCommandLine": "",
    "managedPipelineMode": "Integrated",
    "virtualApplications": [{"virtualPath": "/", "physicalPath": "site\\wwwroot", "preloadEnabled": False}],
    "loadBalancing": "LeastRequests", "autoHealEnabled": False, "vnetName": "",
    "vnetRouteAllEnabled": False, "vnetPrivatePortsCount": 0, "http20Enabled": False,
    "minTlsVersion": "1.2", "scmMinTlsVersion": "1.2", "ftpsState": "AllAllowed",
    "functionAppScaleLimit": 0, "functionsRuntimeScaleMonitoringEnabled": False,
    "minimumElasticInstanceCount": 0, "azureStorageAccounts": {},
}
# siteConfig fields whose change restarts the container
CONTAINER_FIELDS = ("linuxFxVersion", "appCommandLine", "acrUseManagedIdentityCreds")
DETECTED_PORTS = (80, 8080)  # the ports App Service finds without WEBSITES_PORT
REGISTRY_PASSWORD = "DOCKER_REGISTRY_SERVER_PASSWORD"
# App Service's refusal of a change while another operation runs on the site or on one of its
# slots (a swap, an asynchronous create or delete): HTTP 409, Code Conflict, this message with the
# operation's details, extended code 59203 (as Azure answers it, e.g. a second swap during one)
BUSY_TEMPLATE = "Cannot modify this site because another operation is in progress. Details: {0}"
BUSY_EXTENDED_CODE = "59203"
OPERATION_NAMES = {"put": "Update", "delete": "Delete", "action": "Action"}


def log_time():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


class WebError(ArmError):
    """An error as Microsoft.Web sends it: its own envelope at the top level, in PascalCase
    ({Code, Message, Target, Details: [{Message}, {Code}, {ErrorEntity}], Innererror}), not ARM's
    {error: {code, message}}: a client that reads only ARM's finds no message in it."""

    def __init__(self, status, code, template, parameter, extended_code):
        super().__init__(status, code, template.replace("{0}", parameter))
        self.template, self.parameter, self.extended_code = template, parameter, extended_code

    def body(self):
        entity = {"ExtendedCode": self.extended_code, "MessageTemplate": self.template,
                  "Parameters": [self.parameter], "Code": self.code, "Message": self.message}
        return {"Code": self.code, "Message": self.message, "Target": None,
                "Details": [{"Message": self.message}, {"Code": self.code}, {"ErrorEntity": entity}],
                "Innererror": None}


def created_time(t):
    """App Service's way of writing a time in its messages: 9/20/2019 11:04:18 AM (UTC)."""
    g = time.gmtime(t)
    return "%d/%d/%d %d:%02d:%02d %s" % (g.tm_mon, g.tm_mday, g.tm_year, g.tm_hour % 12 or 12, g.tm_min,
                                         g.tm_sec, "AM" if g.tm_hour < 12 else "PM")


def check_site_busy(arm, rid):
    """Raises App Service's 409 when an operation is in flight on the site of `rid` (a site or a
    slot) or on any of its slots: App Service holds the whole site during it, so a second swap,
    a config or settings write, a restart or a delete waits for its end."""
    parts = rid.split("/")
    site_id = ("/".join(parts[:-2]) if len(parts) >= 2 and parts[-2].lower() == "slots" else rid).lower()
    with arm.lock:
        running = [op for key, op in arm.pending.items()
                   if key == site_id or key.startswith(site_id + "/slots/")]
    if not running:
        return
    op = running[0]
    site, slot = site_names({"id": op.rid})
    res = arm.get(op.rid) or {}
    detail = ("Id: %s, OperationName: %s, CreatedTime: %s, WebSystemName: websites, SubscriptionName: %s, "
              "WebspaceName: %s-%swebspace, SiteName: %s, SlotName: %s, ServerFarmName: , GeoOperationId: (null)"
              % (op.id, op.name or OPERATION_NAMES.get(op.kind, "Update"), created_time(op.t0),
                 op.rid.split("/")[2], op.rid.split("/")[4], (res.get("location") or "").replace(" ", ""),
                 site, slot or "Production"))
    raise WebError(409, "Conflict", BUSY_TEMPLATE, detail, BUSY_EXTENDED_CODE)


class Runtime:
    """A site's (or slot's) running container: what it was started with and its docker log."""

    def __init__(self):
        self.lock = threading.Lock()
        self.dname = None        # the serving container
        self.host_port = None    # its 127.0.0.1 port
        self.image = self.image_id = self.digest = None
        self.port = None
        self.status = "Stopped"  # Starting | Running | Failed | Stopped
        self.gen = 0             # launches so far (container names, and a newer launch wins)
        self.serving_gen = 0     # the launch whose container serves (< gen: a newer one is starting)
        self.log = collections.deque(maxlen=LOG_LINES)  # docker.log: the platform's lines
        self.containers = []     # every container this runtime started (for container logs)

    def write(self, level, text):
        self.log.append("%s %-5s - %s" % (log_time(), level, text))


def site_names(res):
    """(site, slot or None) of a site or slot resource."""
    parts = res["id"].split("/")
    if len(parts) >= 2 and parts[-2].lower() == "slots":
        return parts[-3], parts[-1]
    return parts[-1], None


def host_label(site, slot):
    return ("%s-%s" % (site, slot) if slot else site).lower()


class ServerFarms(ResourceType):
    key = "Microsoft.Web/serverfarms"
    api_versions = API
    created_status = 200

    def create(self, ctx, existing, body):
        sku = dict(body.get("sku") or (existing or {}).get("sku") or {"name": "B1"})
        name = sku.get("name", "B1")
        sku.setdefault("name", name)
        sku.setdefault("tier", {"F": "Free", "D": "Shared", "B": "Basic", "S": "Standard",
                                "P": "PremiumV3"}.get(name[:1].upper(), "Basic"))
        sku.setdefault("size", name)
        sku.setdefault("family", re.sub(r"\d.*", "", name) or name)
        sku.setdefault("capacity", 1)
        props = dict(body.get("properties") or {})
        kind = body.get("kind") or (existing or {}).get("kind") or "app"
        res = {"location": body.get("location"), "kind": kind, "sku": sku, "properties": props}
        props.setdefault("reserved", "linux" in kind.lower())
        if body.get("tags") is not None:
            res["tags"] = body["tags"]
        return res

    def view(self, res):
        res = copy.deepcopy(res)
        p = res["properties"]
        p.update({"status": "Ready", "maximumNumberOfWorkers": 30, "geoRegion": res.get("location"),
                  "numberOfSites": sum(1 for r in self.arm.children("/".join(res["id"].split("/")[:5]))
                                       if r["type"] == Sites.key
                                       and (r["properties"].get("serverFarmId") or "").lower() == res["id"].lower()),
                  "resourceGroup": res["id"].split("/")[4], "isSpot": False, "perSiteScaling": False,
                  "elasticScaleEnabled": False, "targetWorkerCount": 0, "targetWorkerSizeId": 0,
                  "zoneRedundant": False})
        return res

    def __init__(self, arm):
        self.arm = arm


class Sites(ResourceType):
    key = "Microsoft.Web/sites"
    api_versions = API
    created_status = 200
    default_lro = "sync"
    immutable_location = True

    def __init__(self, arm):
        self.arm = arm
        self.runtime = {}  # resource id lower -> Runtime

    def check_busy(self, ctx, rid):
        check_site_busy(self.arm, rid)

    # --- body -------------------------------------------------------------------------
    def create(self, ctx, existing, body):
        props = copy.deepcopy(body.get("properties") or {})
        site, slot = ctx.names[0], (ctx.names[1] if len(ctx.names) > 1 else None)
        if not NAME_RE.match(site) or (slot and not NAME_RE.match(slot)):
            raise ArmError(400, "InvalidSiteName", "The site name '%s' is invalid: 2-60 letters, "
                           "digits and '-', not starting or ending with '-'." % (slot or site))
        farm = props.get("serverFarmId") or (existing or {}).get("properties", {}).get("serverFarmId")
        if slot and not farm:
            parent = self.arm.get(ctx_parent_id(ctx))
            farm = parent["properties"].get("serverFarmId") if parent else None
        if not farm:
            raise ArmError(400, "BadRequest", "The parameter properties.serverFarmId has an invalid "
                           "value: an App Service plan is required.", target="properties.serverFarmId")
        if self.arm.get(farm) is None:
            raise ArmError(404, "NotFound", "Cannot find ServerFarm with name %s."
                           % farm.rstrip("/").split("/")[-1], target="properties.serverFarmId")
        props["serverFarmId"] = farm
        old_cfg = copy.deepcopy(((existing or {}).get("properties") or {}).get("siteConfig") or {})
        cfg = dict(DEFAULT_SITE_CONFIG) if not existing else old_cfg
        given = props.pop("siteConfig", None) or {}
        settings = given.pop("appSettings", None)
        cfg.update({k: v for k, v in given.items() if v is not None})
        props["siteConfig"] = cfg
        validate_fx(cfg.get("linuxFxVersion"))
        res = {"location": body.get("location") or (existing or {}).get("location"),
               "kind": body.get("kind") or (existing or {}).get("kind") or "app", "properties": props}
        for k in ("tags", "identity"):
            if body.get(k) is not None:
                res[k] = body[k]
        hidden = copy.deepcopy((existing or {}).get("_hidden") or {})
        hidden.setdefault("publishing_password", secrets.token_urlsafe(45))
        hidden.setdefault("appsettings", {})
        hidden.setdefault("slot_config_names", {"appSettingNames": [], "connectionStringNames": []})
        if settings is not None:
            hidden["appsettings"] = {s["name"]: str(s.get("value", "")) for s in settings if s.get("name")}
        res["_hidden"] = hidden
        props.setdefault("state", (existing or {}).get("properties", {}).get("state", "Running"))
        props.setdefault("enabled", True)
        props.setdefault("httpsOnly", False)
        props.setdefault("clientAffinityEnabled", True)
        props.setdefault("reserved", "linux" in res["kind"].lower())
        if existing is None or container_config(existing) != container_config(res):
            res["_relaunch"] = True
        return res

    def provision(self, ctx, res):
        if res.pop("_relaunch", False) and res["properties"].get("state") == "Running":
            self.launch_async(res, overlap=True)
        return None

    def patch(self, ctx, res, body):
        check_site_busy(self.arm, res["id"])
        with self.arm.lock:
            before = container_config(res)
            if "tags" in body:
                res["tags"] = body["tags"]
            if isinstance(body.get("identity"), dict):
                res["identity"] = self.arm.identity(body["identity"], res.get("identity"))
            props = body.get("properties") or {}
            for k, v in props.items():
                if k == "siteConfig":
                    v = dict(v or {})
                    settings = v.pop("appSettings", None)
                    if settings is not None:
                        res["_hidden"]["appsettings"] = {s["name"]: str(s.get("value", ""))
                                                         for s in settings if s.get("name")}
                    validate_fx(v.get("linuxFxVersion", res["properties"]["siteConfig"].get("linuxFxVersion")))
                    res["properties"]["siteConfig"].update({a: b for a, b in v.items() if b is not None})
                elif k not in ("provisioningState", "state", "defaultHostName", "hostNames"):
                    res["properties"][k] = v
            changed = before != container_config(res)
        if changed and res["properties"].get("state") == "Running":
            self.launch_async(res, overlap=True)
        return res

    def remove(self, ctx, res):
        with self.arm.lock:
            rt = self.runtime.pop(res["id"].lower(), None)
        if rt:
            with rt.lock:
                rt.gen += 1  # a launch in progress sees it is stale and removes its container
                names = list(rt.containers)
            docker.remove(names)

    def view(self, res):
        res = copy.deepcopy(res)
        res.pop("_hidden", None)
        res.pop("_relaunch", None)
        site, slot = site_names(res)
        label = host_label(site, slot)
        host, scm = "%s.%s" % (label, DOMAIN), "%s.scm.%s" % (label, DOMAIN)
        if slot:
            res["name"] = "%s/%s" % (site, slot)
        p = res["properties"]
        p.update({"hostNames": [host], "enabledHostNames": [host, scm], "defaultHostName": host,
                  "repositorySiteName": site, "usageState": "Normal", "availabilityState": "Normal",
                  "hostNameSslStates": [{"name": host, "sslState": "Disabled", "hostType": "Standard"},
                                        {"name": scm, "sslState": "Disabled", "hostType": "Repository"}],
                  "resourceGroup": res["id"].split("/")[4], "lastModifiedTimeUtc": p.get("lastModifiedTimeUtc")
                  or now_iso(), "isXenon": False, "hyperV": False, "scmSiteAlsoStopped": False,
                  "clientCertEnabled": False, "clientCertMode": "Required", "hostNamesDisabled": False,
                  "customDomainVerificationId": hashlib.sha256(res["id"].lower().encode()).hexdigest().upper(),
                  "outboundIpAddresses": "192.0.2.10", "possibleOutboundIpAddresses": "192.0.2.10,192.0.2.11",
                  "containerSize": 0, "dailyMemoryTimeQuota": 0, "redundancyMode": "None",
                  "storageAccountRequired": False, "keyVaultReferenceIdentity": "SystemAssigned",
                  "clientAffinityProxyEnabled": True,
                  "outboundVnetRouting": {"allTraffic": False, "applicationTraffic": False,
                                          "contentShareTraffic": False, "imagePullTraffic": False,
                                          "backupRestoreTraffic": False}})
        p.setdefault("siteConfig", {})["appSettings"] = None  # only config/appsettings/list has them
        farm = self.arm.get(p.get("serverFarmId") or "")
        if farm:
            p["sku"] = (farm.get("sku") or {}).get("tier", "Basic")
        return res

    # --- running ----------------------------------------------------------------------
    def rt(self, res):
        key = res["id"].lower()
        with self.arm.lock:
            if key not in self.runtime:
                self.runtime[key] = Runtime()
            return self.runtime[key]

    def launch_async(self, res, overlap, done=None):
        rt = self.rt(res)
        with rt.lock:
            rt.gen += 1
            gen = rt.gen
            if not overlap or rt.dname is None:
                rt.status = "Starting"

        def run():
            try:
                self.launch(res, rt, gen, overlap)
            finally:
                if done:
                    done.set()
        threading.Thread(target=run, daemon=True).start()

    def launch(self, res, rt, gen, overlap):
        """Pulls, starts, pings; switches the site to the new container when it answers."""
        site, slot = site_names(res)
        label = host_label(site, slot)
        with self.arm.lock:
            cfg = copy.deepcopy(res["properties"].get("siteConfig") or {})
            settings = dict((res.get("_hidden") or {}).get("appsettings") or {})
        fx = cfg.get("linuxFxVersion") or ""
        if not overlap:
            self.stop_container(rt, "Stopping site %s because a restart was requested." % label)
        if not fx.upper().startswith("DOCKER|"):
            rt.write("INFO", "Site %s has no container image (linuxFxVersion %r); nothing to run." % (label, fx))
            with rt.lock:
                if rt.gen == gen and rt.dname is None:
                    rt.status = "Failed"
            return
        image = fx.split("|", 1)[1].strip()
        port = settings.get("WEBSITES_PORT")
        if port is not None and (not str(port).isdigit() or not 0 < int(port) < 65536):
            rt.write("ERROR", "WEBSITES_PORT %r is not a port number; detecting the port." % port)
            port = None
        # without WEBSITES_PORT App Service detects a container listening on 80 or 8080 (its
        # Linux FAQ); any other port needs WEBSITES_PORT. The ping failure names 80.
        candidates = [int(port)] if port is not None else list(DETECTED_PORTS)
        port = candidates[0]
        rt.write("INFO", "Pulling image: %s" % image)
        try:
            creds = self.registry_credentials(image, cfg, settings, res.get("identity"))
        except RuntimeError as e:
            creds, cred_error = None, str(e)
        if creds is None:
            rt.write("ERROR", "Pulling image %s failed: %s" % (image, cred_error))
            return self.failed(rt, gen, label)
        ok, msg = docker.pull(image, creds)
        if not ok:
            rt.write("ERROR", "DockerApiException: Docker API responded with status code=InternalServerError, "
                     "response={\"message\":\"Head %s: %s\"}" % (image, msg))
            rt.write("ERROR", "Pulling docker image %s failed:" % image)
            rt.write("INFO", "Pulling image from Docker hub: %s" % image)
            return self.failed(rt, gen, label)
        image_id, digest = docker.image_digest(image)
        if "@sha256:" in image:  # pulled by digest: that is the digest, whatever RepoDigests lists
            digest = image.split("@", 1)[1]
        rt.write("INFO", "%s Pulling from %s" % (image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1]
                                                 else "latest", image.rsplit(":", 1)[0]))
        rt.write("INFO", "Digest: %s" % (digest or image_id))
        rt.write("INFO", "Status: Image is up to date for %s" % image)
        rt.write("INFO", "Pull Image successful, Time taken: 0 Seconds")
        dname = "azemu-%s-%s_%d" % (hashlib.sha256(res["id"].lower().encode()).hexdigest()[:8], label, gen)
        # app settings become the container's environment, but not WEBSITES_PORT (App Service
        # reads it, the container does not see it) nor the registry password
        env = [(k, v) for k, v in settings.items() if k not in (REGISTRY_PASSWORD, "WEBSITES_PORT")]
        env += [("WEBSITE_SITE_NAME", site), ("WEBSITE_HOSTNAME", "%s.%s" % (label, DOMAIN)),
                ("WEBSITE_SLOT_NAME", slot or "Production"), ("WEBSITE_INSTANCE_ID", hashlib.sha256(
                    dname.encode()).hexdigest()), ("WEBSITE_ROLE_INSTANCE_ID", "0")]
        cmd = shlex.split(cfg.get("appCommandLine") or "")
        rt.write("INFO", "Starting container for site")
        rt.write("INFO", "docker run -d %s --name %s -e WEBSITES_ENABLE_APP_SERVICE_STORAGE=false "
                 "-e WEBSITE_SITE_NAME=%s -e WEBSITE_HOSTNAME=%s.%s %s%s" % (
                     " ".join("-p <host port>:%d" % p for p in candidates), dname, site, label, DOMAIN, image,
                     (" " + " ".join(cmd)) if cmd else ""))
        docker.remove([dname])
        with rt.lock:
            if rt.gen != gen:
                return
            rt.containers.append(dname)
        ok, out = docker.start(dname, image_id or image, {"hoist-azure-site": res["id"].lower()}, candidates,
                               env, None, "Never", args=cmd)
        if not ok:
            rt.write("ERROR", "Container %s for site %s could not start: %s" % (dname, label, out))
            return self.failed(rt, gen, label)
        info = docker.inspect(dname)
        host_ports = {p: docker.host_port(info, p) for p in candidates}
        host_port = None
        limit = settings.get("WEBSITES_CONTAINER_START_TIME_LIMIT")
        limit = int(limit) if limit and str(limit).isdigit() else self.arm.state.setting("appservice_start_time_limit")
        rt.write("INFO", "Initiating warmup request to container %s for site %s" % (dname, label))
        deadline = time.monotonic() + limit
        answered = False
        while True:
            answering = [p for p in candidates if host_ports[p] and ping(host_ports[p])]
            if answering:
                port, host_port, answered = answering[0], host_ports[answering[0]], True
                break
            with rt.lock:
                if rt.gen != gen:
                    docker.remove([dname])
                    return
            state = docker.state_of(docker.inspect(dname))
            if state in ("exited", "absent"):
                rt.write("ERROR", "Container %s for site %s has exited, failing site start" % (dname, label))
                break
            if time.monotonic() >= deadline:
                break
            rt.write("INFO", "Waiting for response to warmup request for container %s. Elapsed time = %.1f sec"
                     % (dname, limit - max(0.0, deadline - time.monotonic())))
            time.sleep(0.5)
        if not answered:
            rt.write("ERROR", "Container %s didn't respond to HTTP pings on port: %d, failing site start. "
                     "See container logs for debugging." % (dname, port))
            rt.write("INFO", "Stopping site %s because it failed during startup." % label)
            docker.run(["stop", "-t", "1", dname], timeout=60)
            return self.failed(rt, gen, label)
        with rt.lock:
            if rt.gen != gen:
                docker.remove([dname])
                return
            old = rt.dname
            rt.dname, rt.host_port, rt.port = dname, host_port, port
            rt.image, rt.image_id, rt.digest = image, image_id, digest
            rt.status, rt.serving_gen = "Running", gen
        rt.write("INFO", "Container %s for site %s initialized successfully and is ready to serve requests."
                 % (dname, label))
        if old and old != dname:
            time.sleep(DRAIN)  # requests the proxy already sent to the old container finish
            docker.run(["stop", "-t", "2", old], timeout=60)
        with rt.lock:  # keep the last few containers (their output is the container log), not all
            stale, rt.containers = rt.containers[:-KEEP_CONTAINERS], rt.containers[-KEEP_CONTAINERS:]
        docker.remove(stale)

    def failed(self, rt, gen, label):
        with rt.lock:
            if rt.gen != gen:
                return
            old = rt.dname
            rt.dname, rt.host_port, rt.status = None, None, "Failed"
        if old:
            docker.run(["stop", "-t", "1", old], timeout=60)

    def stop_container(self, rt, message):
        with rt.lock:
            old = rt.dname
            rt.dname, rt.host_port = None, None
        if old:
            rt.write("INFO", message)
            docker.run(["stop", "-t", "2", old], timeout=60)

    def registry_credentials(self, image, cfg, settings, res_identity=None):
        server = image.split("/", 1)[0] if "/" in image and ("." in image.split("/", 1)[0]
                                                            or ":" in image.split("/", 1)[0]) else "docker.io"
        if cfg.get("acrUseManagedIdentityCreds"):
            client_id, oid = registry_auth.principal_of(res_identity, cfg.get("acrUserManagedIdentityID") or "system")
            return registry_auth.managed_identity_credentials(self.arm.state, server, client_id, oid)
        url = settings.get("DOCKER_REGISTRY_SERVER_URL")
        if url and settings.get("DOCKER_REGISTRY_SERVER_USERNAME"):
            host = re.sub(r"^https?://", "", url).rstrip("/")
            return [{"server": host, "username": settings["DOCKER_REGISTRY_SERVER_USERNAME"],
                     "password": settings.get(REGISTRY_PASSWORD, "")}]
        return []

    # --- proxy ------------------------------------------------------------------------
    def find(self, label):
        """The site or slot resource whose host label is LABEL."""
        with self.arm.lock:
            items = [r for r in self.arm.resources.values() if r["type"] in (Sites.key, Slots.key)]
        for r in sorted(items, key=lambda r: r["type"] != Sites.key):
            if host_label(*site_names(r)) == label:
                return r
        return None

    def resolve(self, host, port):
        if not host.endswith("." + DOMAIN) or port not in (80, 443):
            return None
        label = host[:-len(DOMAIN) - 1]
        front = self.arm.state.hosts["front"].rsplit(":", 1)[1]
        if label.endswith(".scm"):
            res = self.find(label[:-4])
            target = int(front) if res else None
        else:
            res = self.find(label)
            if res is None:
                return None
            rt = self.runtime.get(res["id"].lower())
            target = rt.host_port if rt and rt.dname and res["properties"].get("state") == "Running" else None
            target = target or int(front)  # the front end answers for a site that is not up
        if target is None:
            return None
        return (target, True) if port == 443 else target

    def front(self, host, h):
        if not host.endswith("." + DOMAIN):
            return False
        label = host[:-len(DOMAIN) - 1]
        if label.endswith(".scm"):
            res = self.find(label[:-4])
            if res is None:
                return False
            return self.kudu(res, h)
        res = self.find(label)
        if res is None:
            return False
        if res["properties"].get("state") == "Stopped":
            h.send(403, "<html><body><h1>Error 403 - This web app is stopped.</h1></body></html>",
                   ctype="text/html")
        else:
            h.send(503, "<html><body><h1>:( Application Error</h1><p>If you are the application "
                   "administrator, you can access the diagnostic resources.</p></body></html>",
                   ctype="text/html")
        return True

    # --- Kudu ------------------------------------------------------------------------
    def kudu(self, res, h):
        site, slot = site_names(res)
        if not self.kudu_auth(res, h):
            h.send(401, "401 - Unauthorized: Access is denied due to invalid credentials.\n",
                   [("WWW-Authenticate", 'Basic realm="site"')], ctype="text/plain")
            return True
        path = h.url_path.rstrip("/")
        rt = self.rt(res)
        label = host_label(site, slot)
        machine = "lw0sdlwk00000" + hashlib.sha256(res["id"].lower().encode()).hexdigest()[:2].upper()
        day = time.strftime("%Y_%m_%d", time.gmtime())
        files = {"%s_%s_docker.log" % (day, machine): "platform",
                 "%s_%s_default_docker.log" % (day, machine): "container"}
        if path == "/docker/hook" and h.command == "POST":
            rt.write("INFO", "Recycling container because of the docker hook (continuous deployment)")
            self.launch_async(res, overlap=True)
            h.send(200, "")
            return True
        if path == "/api/logs/docker" and h.command == "GET":
            out = []
            for name, kind in files.items():
                text = self.log_text(rt, kind)
                out.append({"machineName": machine + ("_default" if kind == "container" else ""),
                            "lastUpdated": now_iso(), "size": len(text.encode()),
                            "href": "https://%s.scm.%s/api/vfs/LogFiles/%s" % (label, DOMAIN, name),
                            "path": "/home/LogFiles/%s" % name})
            h.send(200, out)
            return True
        if path.startswith("/api/vfs/LogFiles/") and h.command == "GET":
            kind = files.get(path.rsplit("/", 1)[1])
            if kind is None:
                h.send(404, {"Message": "'/home/LogFiles/%s' not found." % path.rsplit("/", 1)[1]})
                return True
            h.send(200, self.log_text(rt, kind), ctype="text/plain; charset=utf-8")
            return True
        h.send(404, {"Message": "No HTTP resource was found that matches the request URI '%s'." % h.url_path})
        return True

    def kudu_auth(self, res, h):
        auth = h.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            want_user = publishing_user(res)
            return secrets.compare_digest(user.encode(), want_user.encode()) and secrets.compare_digest(
                password.encode(), res["_hidden"]["publishing_password"].encode())
        if scheme.lower() == "bearer":  # Kudu also takes an Entra token of Resource Manager
            try:
                claims = jwt.verify(value.strip(), [self.arm.state.entra_key.public()])
            except jwt.JwtError:
                return False
            return claims.get("tid") == self.arm.state.tenant_id
        return False

    def log_text(self, rt, kind):
        if kind == "platform":
            return "\n".join(rt.log) + ("\n" if rt.log else "")
        with rt.lock:
            names = list(rt.containers)
        out = []
        for name in names[-3:]:
            text = docker.logs(name, 200, True)
            if text:
                out.append(text)
        return "".join(out)


class Slots(Sites):
    key = "Microsoft.Web/sites/slots"


def ctx_parent_id(ctx):
    return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Web/sites/%s" % (ctx.sub, ctx.rg, ctx.names[0])


def publishing_user(res):
    site, slot = site_names(res)
    return "$%s__%s" % (site, slot) if slot else "$" + site


def validate_fx(fx):
    if fx and "|" not in fx:
        raise ArmError(400, "BadRequest", "The parameter LinuxFxVersion has an invalid value: '%s' "
                       "(expected RUNTIME|VERSION, e.g. DOCKER|image:tag)." % fx,
                       target="properties.siteConfig.linuxFxVersion")


def container_config(res):
    cfg = (res.get("properties") or {}).get("siteConfig") or {}
    return json.dumps([{k: cfg.get(k) for k in CONTAINER_FIELDS},
                       (res.get("_hidden") or {}).get("appsettings")], sort_keys=True)


def http_status(port, path, timeout):
    """The status of GET `path` on the container's port, None when nothing answered."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def ping(port):
    """Any HTTP answer on the port counts, as App Service's warmup does."""
    return http_status(port, PING_PATH, 2) is not None


# --- the site's sub-resources and actions (config/*, restart, slotsswap, ...) --------------

def site_op(arm, h, m):
    sub = check_sub(arm, m.group(1))
    rg = require_rg(arm, m.group(2))
    site, slot, op = m.group(3), m.group(4), m.group(5).lower().rstrip("/")
    sites = arm.types[Sites.key.lower()]
    check_api_version(h, API, "'Microsoft.Web/sites'")
    sid = "%s/providers/Microsoft.Web/sites/%s" % (rg["id"], site)
    res = arm.get(sid + ("/slots/%s" % slot if slot else ""))
    if res is None:
        raise not_found(Slots if slot else Sites, "%s/%s" % (site, slot) if slot else site, rg["name"])
    parent = arm.get(sid)
    ctx = Context(arm, h, sub, rg["name"], sites, [site] + ([slot] if slot else []), h.query["api-version"])
    rt = sites.rt(res)
    if h.command in ("PUT", "PATCH", "DELETE") or op in ("restart", "stop", "start", "slotsswap",
                                                         "applyslotconfig", "resetslotconfig"):
        check_site_busy(arm, res["id"])  # reads (GET, the list POSTs, logs) go on during a swap

    def config_body(name, props):
        return {"id": res["id"] + "/config/" + name, "name": name, "type": "Microsoft.Web/sites/config",
                "kind": res.get("kind"), "location": res.get("location"), "properties": props}

    def method(*allowed):
        if h.command not in allowed:
            raise ArmError(405, "MethodNotAllowed", "%s accepts %s, not %s." % (op, "/".join(allowed), h.command))

    if op in ("config/appsettings", "config/appsettings/list"):
        if op == "config/appsettings":
            method("PUT")
            body = h.json_body() or {}
            props = body.get("properties")
            if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
                raise ArmError(400, "BadRequest", "properties must map setting names to string values.",
                               target="properties")
            with arm.lock:
                before = container_config(res)
                res["_hidden"]["appsettings"] = dict(props)
                changed = before != container_config(res)
            if changed and res["properties"].get("state") == "Running":
                sites.launch_async(res, overlap=True)
        else:
            method("POST")
        return 200, config_body("appsettings", dict(res["_hidden"]["appsettings"])), []
    if op == "config/web":
        if h.command in ("PUT", "PATCH"):
            body = h.json_body() or {}
            sites.patch(ctx, res, {"properties": {"siteConfig": body.get("properties") or {}}})
        else:
            method("GET")
        cfg = copy.deepcopy(res["properties"]["siteConfig"])
        cfg.pop("appSettings", None)
        return 200, config_body("web", cfg), []
    if op == "config/slotconfignames":
        if slot:
            raise ArmError(400, "BadRequest", "Slot config names belong to the production site.")
        if h.command == "PUT":
            props = (h.json_body() or {}).get("properties") or {}
            res["_hidden"]["slot_config_names"] = {
                "appSettingNames": list(props.get("appSettingNames") or []),
                "connectionStringNames": list(props.get("connectionStringNames") or [])}
        else:
            method("GET")
        return 200, {"id": res["id"] + "/config/slotConfigNames", "name": site,
                     "type": "Microsoft.Web/sites/config",
                     "properties": copy.deepcopy(res["_hidden"]["slot_config_names"])}, []
    if op == "config/publishingcredentials/list":
        method("POST")
        user, password = publishing_user(res), res["_hidden"]["publishing_password"]
        label = host_label(site, slot)
        return 200, {"id": res["id"] + "/publishingcredentials/$" + site, "name": site,
                     "type": "Microsoft.Web/sites/publishingcredentials",
                     "properties": {"name": None, "publishingUserName": user, "publishingPassword": password,
                                    "publishingPasswordHash": None, "publishingPasswordHashSalt": None,
                                    "metadata": None, "isDeleted": False,
                                    "scmUri": "https://%s:%s@%s.scm.%s" % (user, password, label, DOMAIN)}}, []
    if op == "publishxml":
        # Web Apps - List Publishing Profile Xml With Secrets (what `az webapp show` reads for
        # ftpPublishingUrl): the Web Deploy, FTP and Zip Deploy profiles with the publishing
        # credentials. The FTP host is named as Azure names its FTP front ends; nothing serves it.
        method("POST")
        fmt = (h.json_body() or {}).get("format") or "WebDeploy"
        if fmt.lower() not in ("webdeploy", "ftp"):
            raise ArmError(400, "BadRequest", "The publishing profile format '%s' is not emulated: "
                           "WebDeploy or Ftp." % fmt, target="format")
        return 200, publish_xml(res, site, slot).encode(), [("Content-Type", "application/xml")]
    if op == "containerlogs":
        method("POST")
        text = sites.log_text(rt, "platform") + sites.log_text(rt, "container")
        return 200, text.encode(), [("Content-Type", "application/octet-stream")]
    if op == "restart":
        method("POST")
        if res["properties"].get("state") == "Running":
            done = threading.Event()
            sites.launch_async(res, overlap=False, done=done)
            if h.query.get("synchronous", "").lower() == "true":
                done.wait(900)
        return 200, None, []
    if op == "stop":
        method("POST")
        with arm.lock:
            res["properties"]["state"] = "Stopped"
        with rt.lock:
            rt.gen += 1
            rt.status = "Stopped"
        sites.stop_container(rt, "Stopping site %s because it was stopped." % host_label(site, slot))
        return 200, None, []
    if op == "start":
        method("POST")
        with arm.lock:
            was = res["properties"].get("state")
            res["properties"]["state"] = "Running"
        if was != "Running" or rt.dname is None:
            sites.launch_async(res, overlap=False)
        return 200, None, []
    if op in ("slotsswap", "applyslotconfig", "resetslotconfig"):
        method("POST")
        body = h.json_body() or {}
        if op == "resetslotconfig":
            return 200, None, []
        target = body.get("targetSlot")
        if not target:
            raise ArmError(400, "BadRequest", "targetSlot is required.", target="targetSlot")
        other = parent if target.lower() == "production" else arm.get(sid + "/slots/" + target)
        if other is None:
            raise ArmError(404, "NotFound", "Cannot find the slot '%s' of site '%s'." % (target, site))
        if other is res:
            raise ArmError(400, "BadRequest", "A slot cannot be swapped with itself.")
        if op == "applyslotconfig":
            return 200, None, []
        op_ = arm.start_op(ctx, "action", res, sites, lambda: swap(arm, sites, parent, res, other),
                           name="SwapSiteSlots")
        return 202, None, arm.lro_headers(op_, location=True, async_op=False)
    raise ArmError(404, "NotFound", "No HTTP resource was found for '%s' on a site." % op)


def publish_xml(res, site, slot):
    from xml.sax.saxutils import quoteattr
    label = host_label(site, slot)
    user, password = publishing_user(res), res["_hidden"]["publishing_password"]
    app_url = "http://%s.%s" % (label, DOMAIN)
    scm = "%s.scm.%s:443" % (label, DOMAIN)
    ftp = "ftps://waws-prod-%s-001.ftp.azurewebsites.windows.net/site/wwwroot" % (
        re.sub(r"[^a-z0-9]", "", (res.get("location") or "westus").lower()))
    tail = {"destinationAppUrl": app_url, "SQLServerDBConnectionString": "", "mySQLDBConnectionString": "",
            "hostingProviderForumLink": "", "controlPanelLink": "https://portal.azure.com", "webSystem": "WebSites"}
    profiles = [
        [("profileName", "%s - Web Deploy" % label), ("publishMethod", "MSDeploy"), ("publishUrl", scm),
         ("msdeploySite", site if not slot else "%s__%s" % (site, slot)), ("userName", user), ("userPWD", password)],
        [("profileName", "%s - FTP" % label), ("publishMethod", "FTP"), ("publishUrl", ftp),
         ("ftpPassiveMode", "True"), ("userName", "%s\\%s" % (label, user)), ("userPWD", password)],
        [("profileName", "%s - Zip Deploy" % label), ("publishMethod", "ZipDeploy"), ("publishUrl", scm),
         ("userName", user), ("userPWD", password)],
    ]
    out = ["<publishData>"]
    for attrs in profiles:
        out.append("<publishProfile %s><databases /></publishProfile>" % " ".join(
            "%s=%s" % (k, quoteattr(v)) for k, v in attrs + list(tail.items())))
    out.append("</publishData>")
    return "".join(out)


def check_name(arm, h, m):
    """Check Name Availability (POST /subscriptions/{s}/providers/Microsoft.Web/checknameavailability),
    which `az webapp create` calls first: a site's name is its host name, so it is taken when any
    site of any group has it."""
    check_sub(arm, m.group(1))
    check_api_version(h, API, "'Microsoft.Web/checknameavailability'")
    if h.command != "POST":
        raise ArmError(405, "MethodNotAllowed", "checknameavailability accepts POST, not %s." % h.command)
    body = h.json_body() or {}
    name, rtype = body.get("name") or "", (body.get("type") or "").lower()
    if rtype not in ("site", "microsoft.web/sites", "slot", "microsoft.web/sites/slots"):
        raise ArmError(400, "BadRequest", "The resource type '%s' is not emulated here: Site or Slot."
                       % body.get("type"), target="type")
    if not NAME_RE.match(name):
        return 200, {"nameAvailable": False, "reason": "Invalid", "message": "The name '%s' is invalid: "
                     "2-60 letters, digits and '-', not starting or ending with '-'." % name}, []
    with arm.lock:
        taken = any(r["type"] == Sites.key and r["name"].lower() == name.lower() for r in arm.resources.values())
    if taken:
        return 200, {"nameAvailable": False, "reason": "AlreadyExists",
                     "message": "Hostname '%s' already exists. Please select a different name." % name}, []
    return 200, {"nameAvailable": True, "reason": "", "message": ""}, []


def warm_up(arm, sites, res):
    """The first phase of a swap, as App Service runs it on the source slot: its instance must be
    up (a start in progress is waited for), then it is warmed up: GET WEBSITE_SWAP_WARMUP_PING_PATH
    (default /) until it answers, with one of WEBSITE_SWAP_WARMUP_PING_STATUSES when that is set,
    within the slot's start time limit. The swap stays in flight meanwhile."""
    site, slot = site_names(res)
    rt = sites.rt(res)
    with arm.lock:
        settings = dict(res["_hidden"]["appsettings"])
    limit = settings.get("WEBSITES_CONTAINER_START_TIME_LIMIT")
    limit = int(limit) if limit and str(limit).isdigit() else arm.state.setting("appservice_start_time_limit")
    deadline = time.monotonic() + limit
    while True:
        with rt.lock:
            status, port, starting = rt.status, rt.host_port, rt.gen != rt.serving_gen
        if status == "Running" and port and not starting:
            break
        if status not in ("Starting", "Running") or time.monotonic() >= deadline:
            raise ArmError(400, "BadRequest", "Cannot swap slots for site '%s' because the worker process for "
                           "'%s' slot could not be started." % (site, slot or "production"))
        time.sleep(0.2)
    path = settings.get("WEBSITE_SWAP_WARMUP_PING_PATH") or "/"
    want = {int(v) for v in (settings.get("WEBSITE_SWAP_WARMUP_PING_STATUSES") or "").split(",") if v.strip().isdigit()}
    rt.write("INFO", "Slot swap: warming up %s (GET %s)" % (host_label(site, slot), path))
    while True:
        status = http_status(port, path, max(1.0, deadline - time.monotonic()))
        if status is not None and (not want or status in want):
            return
        if time.monotonic() >= deadline:
            raise ArmError(400, "BadRequest", "Cannot swap slots for site '%s' because the application "
                           "initialization in '%s' slot either took too long or failed. Please check application "
                           "initialization configuration and make sure that it works." % (site, slot or "production"))
        time.sleep(0.5)


def swap(arm, sites, parent, a, b):
    """Warms up slot A, then exchanges the running containers and the configuration of slots A
    and B; the sticky app settings (slotConfigNames of the production site) stay with their slot."""
    warm_up(arm, sites, a)
    with arm.lock:
        sticky = set((parent.get("_hidden") or {}).get("slot_config_names", {}).get("appSettingNames") or [])
        sa, sb = a["_hidden"]["appsettings"], b["_hidden"]["appsettings"]
        new_a = {k: v for k, v in sb.items() if k not in sticky}
        new_a.update({k: v for k, v in sa.items() if k in sticky})
        new_b = {k: v for k, v in sa.items() if k not in sticky}
        new_b.update({k: v for k, v in sb.items() if k in sticky})
        sticky_differs = any(sa.get(k) != sb.get(k) for k in sticky)
        a["_hidden"]["appsettings"], b["_hidden"]["appsettings"] = new_a, new_b
        ca, cb = a["properties"]["siteConfig"], b["properties"]["siteConfig"]
        for k in CONTAINER_FIELDS:
            ca[k], cb[k] = cb.get(k), ca.get(k)
        ka, kb = a["id"].lower(), b["id"].lower()
        ra, rb = sites.runtime.get(ka), sites.runtime.get(kb)
        for key, rt in ((ka, rb), (kb, ra)):
            if rt is None:
                sites.runtime.pop(key, None)
            else:
                sites.runtime[key] = rt
    for res in (a, b):
        rt = sites.rt(res)
        rt.write("INFO", "Slot swap: this slot now runs %s" % (res["properties"]["siteConfig"].get("linuxFxVersion")))
        if sticky_differs and res["properties"].get("state") == "Running":
            sites.launch_async(res, overlap=True)  # the sticky settings of the slot it moved to
    return None


def install(arm):
    arm.register(ServerFarms(arm))
    sites = Sites(arm)
    arm.register(sites)
    slots = Slots(arm)
    slots.runtime = sites.runtime  # one runtime table: a swap moves containers between them
    arm.register(slots)
    arm.state.proxy_resolvers.append(sites.resolve)
    arm.state.front_routes.append(sites.front)
    route(arm, r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Web/sites/([^/]+)"
               r"(?:/slots/([^/]+))?/(config/(?:appsettings(?:/list)?|web|slotConfigNames|"
               r"publishingcredentials/list)|publishxml|containerlogs|slotsswap|restart|stop|start|"
               r"applySlotConfig|resetSlotConfig)/?$", site_op)
    route(arm, r"^/subscriptions/([^/]+)/providers/Microsoft\.Web/checknameavailability/?$", check_name)
