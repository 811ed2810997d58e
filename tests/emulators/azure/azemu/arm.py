"""Azure Resource Manager core: routing, bearer token checks, api-versions, the error envelope,
request ids, pagination, long-running operations and the resource store.

Resource types come from the provider modules (azemu/providers/): each is a ResourceType whose
hooks make the resource body (`create`), do the slow work (`provision`, run in a thread for
asynchronous modes), show live state (`view`), clean up (`remove`) and serve actions.
"""

import re
import threading
import time
import uuid
from urllib.parse import quote, urlencode

from . import jwt
from .httpbase import Handler, HttpError, serve

ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
LRO_MODES = ("sync", "async", "location")


class ArmError(Exception):
    def __init__(self, status, code, message, target=None, details=None, headers=()):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.target, self.details, self.headers = target, details, list(headers)

    def body(self):
        err = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        if self.details:
            err["details"] = self.details
        return {"error": err}


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%07dZ" % int((t % 1) * 1e7)


class Context:
    """What a request names: subscription, resource group, type, names, api-version, headers."""

    def __init__(self, arm, handler, sub, rg=None, rtype=None, names=(), api_version=None):
        self.arm, self.handler = arm, handler
        self.sub, self.rg, self.rtype, self.names = sub, rg, rtype, list(names)
        self.api_version = api_version

    @property
    def name(self):
        return self.names[-1] if self.names else None

    def header(self, name):
        return self.handler.headers.get(name) if self.handler else None


class ResourceType:
    """Base of a provider's resource type. `key` is 'Namespace/type[/child]'."""
    key = ""
    api_versions = ()
    default_lro = "sync"          # PUT
    default_delete_lro = "sync"   # DELETE
    location_required = True
    created_status = 201          # App Service answers a creating PUT with 200
    actions = {}       # action name -> (allowed methods, method name on the type)
    immutable_location = True

    @property
    def namespace(self):
        return self.key.split("/")[0]

    @property
    def type_name(self):
        return self.key

    def create(self, ctx, existing, body):
        """The new resource body (id/name/type are filled in by the core); raise ArmError."""
        res = {"location": body.get("location"), "properties": dict(body.get("properties") or {})}
        if body.get("tags") is not None:
            res["tags"] = body["tags"]
        return res

    def provision(self, ctx, res):
        """Slow work after a PUT; returns None or an error {code, message} (provisioning failed)."""
        return None

    def remove(self, ctx, res):
        """Clean-up of a DELETE (containers, ...)."""

    def check_busy(self, ctx, rid):
        """Raises the service's own refusal of a change to `rid` while an operation it counts as
        conflicting is in flight (App Service: one on the site or any of its slots); ARM's generic
        AnotherOperationInProgress covers the resource's own operation otherwise."""

    def view(self, res):
        return res


class Operation:
    """A long-running operation. It ends by time, as Azure's do, not by being polled: its own
    thread does the provider's work, then applies the outcome to the resource once the operation
    is `lro_duration` seconds old, so a client that polls late (or never) finds what Azure would
    show."""

    def __init__(self, arm, kind, rid, rtype, location, ctx, work):
        self.id = str(uuid.uuid4())
        self.arm, self.kind, self.rid, self.rtype, self.ctx = arm, kind, rid, rtype, ctx
        self.location = (location or "westus").replace(" ", "").lower()
        self.start, self.end = now_iso(), None
        self.t0 = time.time()
        self.status = "InProgress"
        self.error = None
        self.result_done = threading.Event()
        self.work_error = None
        self.forced = None  # "Failed" | "Canceled" from the test header
        self.name = None    # what the service calls it in its messages (App Service: SwapSiteSlots)

        def run():
            try:
                self.work_error = work()
            except ArmError as e:
                self.work_error = {"code": e.code, "message": e.message}
            except Exception as e:  # emulator bug: fail the operation, say why
                import traceback
                traceback.print_exc()
                self.work_error = {"code": "InternalServerError", "message": "emulator bug: %s" % e}
            self.result_done.set()
            while self.status == "InProgress":
                # read each time: a test may shorten lro_duration while the operation runs
                left = self.t0 + self.duration() - time.time()
                if left <= 0:
                    self.advance()
                    break
                time.sleep(min(left, 0.05))
        self.thread = threading.Thread(target=run, daemon=True)

    def duration(self):
        """How long the operation stays in progress at least: `lro_duration`, or longer for a
        resource a test named in `lro_duration_for` ({substring of the resource id: s}), so a
        test can hold its own resource's operations without slowing anyone else's."""
        state, rid = self.arm.state, self.rid.lower()
        longest = state.setting("lro_duration")
        for part, seconds in (state.setting("lro_duration_for") or {}).items():
            if part in rid:
                longest = max(longest, seconds)
        return longest

    def url(self, kind):
        ns = self.rtype.namespace
        return "%s/subscriptions/%s/providers/%s/locations/%s/%s/%s?api-version=%s" % (
            self.arm.state.hosts["arm"], self.ctx.sub, ns, self.location, kind, self.id,
            self.ctx.api_version)

    def advance(self):
        """Ends the operation when its work is done and it is `lro_duration` seconds old (called
        by its thread, and by a poll, which changes nothing before then)."""
        with self.arm.lock:
            if self.status != "InProgress" or not self.result_done.is_set():
                return
            if time.time() - self.t0 < self.duration():
                return
            err = self.work_error
            status = self.forced or ("Failed" if err else "Succeeded")
            self.status, self.end = status, now_iso()
            if status == "Failed":
                self.error = err or {"code": "ProvisioningFailed",
                                     "message": "provisioning failed (x-hoist-emulator-provisioning)"}
            self.arm.finish(self)

    def body(self):
        out = {"id": "/subscriptions/%s/providers/%s/locations/%s/operationStatuses/%s"
                     % (self.ctx.sub, self.rtype.namespace, self.location, self.id),
               "name": self.id, "status": self.status, "startTime": self.start, "percentComplete": 0}
        if self.end:
            out["endTime"] = self.end
            out["percentComplete"] = 100
        if self.error:
            out["error"] = self.error
        return out


class Arm:
    def __init__(self, state):
        self.state = state
        self.lock = threading.RLock()
        self.types = {}       # key lower -> ResourceType
        self.resources = {}   # id lower -> resource dict
        self.ops = {}         # operation id -> Operation
        self.pending = {}     # resource id lower -> Operation in progress
        self.special = []     # (matcher, handler) for non-generic paths (resources.py, ...)
        state.store_reset_hooks.append(self.reset)

    def register(self, rtype):
        self.types[rtype.key.lower()] = rtype

    def reset(self):
        with self.lock:
            items = list(self.resources.items())
        for rid, res in items:
            rtype = self.types.get(res["type"].lower())
            if rtype:
                try:
                    rtype.remove(Context(self, None, None), res)
                except Exception:  # reset must go on
                    pass
        with self.lock:
            self.resources.clear()
            self.ops.clear()
            self.pending.clear()
            for hook in getattr(self, "reset_hooks", []):
                hook()

    # --- store --------------------------------------------------------------------------
    def get(self, rid):
        with self.lock:
            return self.resources.get(rid.lower())

    def children(self, prefix, rtype_key=None):
        p = prefix.lower().rstrip("/") + "/"
        with self.lock:
            out = [r for k, r in self.resources.items() if k.startswith(p)
                   and (rtype_key is None or r["type"].lower() == rtype_key.lower())]
        return sorted(out, key=lambda r: r["id"].lower())

    # --- LRO ----------------------------------------------------------------------------
    def mode(self, ctx, rtype, kind="put"):
        m = (ctx.header("x-hoist-emulator-lro") or "").lower()
        if m:
            if m not in LRO_MODES:
                raise ArmError(400, "InvalidHeaderValue", "x-hoist-emulator-lro must be one of %s, "
                               "not %r" % (", ".join(LRO_MODES), m))
            return m
        default = rtype.default_delete_lro if kind == "delete" else rtype.default_lro
        return self.state.setting("lro").get(rtype.key.lower(), default)

    def forced_outcome(self, ctx):
        v = ctx.header("x-hoist-emulator-provisioning")
        if v and v not in ("Failed", "Canceled"):
            raise ArmError(400, "InvalidHeaderValue",
                           "x-hoist-emulator-provisioning must be Failed or Canceled, not %r" % v)
        return v

    def start_op(self, ctx, kind, res, rtype, work, name=None):
        op = Operation(self, kind, res["id"], rtype, res.get("location"), ctx, work)
        op.forced, op.name = self.forced_outcome(ctx), name
        with self.lock:
            self.ops[op.id] = op
            self.pending[res["id"].lower()] = op
        op.thread.start()
        return op

    def finish(self, op):
        """Applies a finished operation to its resource (lock held)."""
        self.pending.pop(op.rid.lower(), None)
        res = self.resources.get(op.rid.lower())
        if op.kind == "delete":
            if op.status == "Succeeded":
                for k in [k for k in self.resources if k == op.rid.lower() or k.startswith(op.rid.lower() + "/")]:
                    del self.resources[k]
            elif res is not None:
                res["properties"]["provisioningState"] = op.status
        elif res is not None and op.kind == "put":
            res.setdefault("properties", {})["provisioningState"] = op.status

    def poke(self, rid):
        """A GET of a resource shows its operation's outcome once the operation has ended by time
        (its thread applies it too; this only saves a GET from racing it)."""
        with self.lock:
            op = self.pending.get(rid.lower())
        if op:
            op.advance()

    def lro_headers(self, op, location=True, async_op=True):
        hs = [("Retry-After", str(self.state.setting("retry_after")))]
        if async_op:
            hs.append(("Azure-AsyncOperation", op.url("operationStatuses")))
        if location:
            hs.append(("Location", op.url("operationResults")))
        return hs

    # --- generic PUT / DELETE -----------------------------------------------------------
    def put(self, ctx, rtype, rid, name, body):
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could "
                           "not be deserialized: a JSON object is required.")
        rtype.check_busy(ctx, rid)
        with self.lock:
            if rid.lower() in self.pending:
                raise ArmError(409, "AnotherOperationInProgress", "Another operation on the resource "
                               "'%s' is in progress; retry when it has finished." % name)
            existing = self.resources.get(rid.lower())
        if rtype.location_required and not body.get("location") and not existing:
            raise ArmError(400, "LocationRequired", "The location property is required for this "
                           "definition.", target="location")
        if existing and rtype.immutable_location and body.get("location") and existing.get("location") \
                and norm_loc(body["location"]) != norm_loc(existing["location"]):
            raise ArmError(409, "InvalidResourceLocation", "The resource '%s' already exists in "
                           "location '%s' in resource group '%s'. A resource with the same name "
                           "cannot be created in location '%s'. Please select a new resource name."
                           % (name, existing["location"], ctx.rg, body["location"]))
        res = rtype.create(ctx, existing, body)
        res = dict({"id": rid, "name": name, "type": rtype.type_name}, **res)
        if isinstance(res.get("identity"), dict):
            res["identity"] = self.identity(res["identity"], (existing or {}).get("identity"))
        if not res.get("location") and existing:
            res["location"] = existing.get("location")
        res.setdefault("properties", {})
        mode = self.mode(ctx, rtype)
        status = 200 if existing else rtype.created_status
        forced = self.forced_outcome(ctx)
        if mode == "sync" and not forced:
            res["properties"]["provisioningState"] = "Creating" if not existing else "Updating"
            with self.lock:
                self.resources[rid.lower()] = res
            err = rtype.provision(ctx, res)
            res["properties"]["provisioningState"] = "Failed" if err else "Succeeded"
            if err:
                res["properties"]["provisioningError"] = err
            return status, rtype.view(res), []
        res["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        with self.lock:
            self.resources[rid.lower()] = res
        op = self.start_op(ctx, "put", res, rtype, lambda: rtype.provision(ctx, res))
        if mode == "location":
            return 202, None, self.lro_headers(op, location=True, async_op=False)
        return status, rtype.view(res), self.lro_headers(op, location=False)

    def delete(self, ctx, rtype, rid, missing_status=204):
        rtype.check_busy(ctx, rid)
        with self.lock:
            res = self.resources.get(rid.lower())
            running = self.pending.get(rid.lower())
            if res is not None and running is not None:
                if running.kind == "delete":
                    raise ArmError(409, "AnotherOperationInProgress", "The resource '%s' is already "
                                   "being deleted." % res["name"])
                # a DELETE cancels a create, update or action in progress, as ARM does
                running.status, running.end = "Canceled", now_iso()
                self.pending.pop(rid.lower(), None)
        if res is None:
            return missing_status, None, []
        mode = self.mode(ctx, rtype, "delete")

        def work():
            for child in reversed(self.children(res["id"])):
                ct = self.types.get(child["type"].lower())
                if ct:
                    ct.remove(ctx, child)
            rtype.remove(ctx, res)
        if mode == "sync" and not self.forced_outcome(ctx):
            body = rtype.view(res)  # ARM answers a synchronous DELETE with what it deleted
            work()
            with self.lock:
                for k in [k for k in self.resources if k == rid.lower() or k.startswith(rid.lower() + "/")]:
                    del self.resources[k]
            return 200, body, []
        res["properties"]["provisioningState"] = "Deleting"
        op = self.start_op(ctx, "delete", res, rtype, work)
        return 202, None, self.lro_headers(op, location=True, async_op=(mode == "async"))

    def identity(self, given, old):
        """A managed identity block as ARM returns it: ids filled in for what the PUT asked."""
        out = {"type": given.get("type", "None")}
        kinds = {k.strip().lower() for k in out["type"].split(",")}
        if "systemassigned" in kinds:
            out["principalId"] = (old or {}).get("principalId") or str(uuid.uuid4())
            out["tenantId"] = self.state.tenant_id
        if "userassigned" in kinds:
            out["tenantId"] = self.state.tenant_id
            out["userAssignedIdentities"] = {
                k: {"clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, k.lower() + "#client")),
                    "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, k.lower() + "#principal"))}
                for k in (given.get("userAssignedIdentities") or {})}
        return out

    # --- operations ---------------------------------------------------------------------
    def operation(self, handler, kind, op_id):
        with self.lock:
            op = self.ops.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", "The operation '%s' could not be found." % op_id)
        op.advance()
        retry = [("Retry-After", str(self.state.setting("retry_after")))]
        if kind == "operationstatuses":
            return 200, op.body(), retry if op.status == "InProgress" else []
        if op.status == "InProgress":
            return 202, None, retry + [("Location", op.url("operationResults"))]
        if op.status == "Failed":
            raise ArmError(400, op.error["code"], op.error["message"])
        if op.status == "Canceled":
            raise ArmError(409, "OperationCanceled", "The operation was canceled.")
        if op.kind == "delete":
            return 204, None, []
        if op.kind == "action":
            return 200, None, []
        res = self.get(op.rid)
        if res is None:
            return 204, None, []
        rtype = self.types.get(res["type"].lower())
        return 200, rtype.view(res) if rtype else res, []

    # --- lists --------------------------------------------------------------------------
    def page(self, handler, items):
        size = max(1, self.state.setting("page_size"))
        try:
            start = int(handler.query.get("$skiptoken", "0"))
        except ValueError:
            raise ArmError(400, "InvalidSkipToken", "The $skiptoken '%s' is not valid."
                           % handler.query.get("$skiptoken"))
        chunk = items[start:start + size]
        out = {"value": chunk}
        if start + size < len(items):
            q = dict(handler.query)
            q["$skiptoken"] = str(start + size)
            out["nextLink"] = "%s%s?%s" % (self.state.hosts["arm"], quote(handler.url_path),
                                           urlencode(q))
        return out


def norm_loc(loc):
    return (loc or "").replace(" ", "").lower()


def check_api_version(handler, versions, what):
    v = handler.query.get("api-version")
    if not v:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if v not in versions:
        raise ArmError(400, "InvalidApiVersionParameter",
                       "The api-version '%s' is invalid. The supported versions for %s are '%s'."
                       % (v, what, ",".join(sorted(versions, reverse=True))))
    return v


class ArmHandler(Handler):
    arm = None  # set by start()

    def common_headers(self):
        hs = [("x-ms-request-id", self.request_id),
              ("x-ms-correlation-request-id", self.correlation_id),
              ("x-ms-routing-request-id", "LOCAL:%s:%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                                                          self.request_id)),
              ("Cache-Control", "no-cache"), ("Expires", "-1"), ("Pragma", "no-cache")]
        client = self.headers.get("x-ms-client-request-id")
        if client:
            hs.append(("x-ms-client-request-id", client))
        # a request the subscription's limit throttled: none left, as Azure reports it
        if self.command in ("GET", "HEAD"):
            hs.append(("x-ms-ratelimit-remaining-subscription-reads", "0" if self.throttled else "11999"))
        else:
            hs.append(("x-ms-ratelimit-remaining-subscription-writes", "0" if self.throttled else "1199"))
        return hs

    def parse(self):
        self.throttled = False
        self.request_id = str(uuid.uuid4())
        self.correlation_id = self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        super().parse()

    def error_body(self, status, code, message):
        return ArmError(status, code, message).body()

    def send_fault(self, rule):
        if int(rule.get("status", 500)) == 429 and not rule.get("code"):
            rule = dict(rule, code="SubscriptionRequestsThrottled",
                        message=rule.get("message") or "Number of requests for subscription '%s' "
                        "exceeded the limit. Please try again after '%s' seconds."
                        % (self.state.subscription_id, rule.get("retry_after",
                                                                self.state.setting("retry_after"))))
        self.throttled = rule.get("code") == "SubscriptionRequestsThrottled"
        super().send_fault(rule)

    def route(self):
        self.state.count("arm:" + self.command)
        try:
            self.authenticate()
            authorize = getattr(self.arm, "authorize", None)
            if authorize:
                authorize(self)
            status, body, headers = dispatch(self.arm, self)
            self.send(status, body, headers)
        except ArmError as e:
            body = e.body() if self.command != "HEAD" else None
            self.send(e.status, body, e.headers)

    def authenticate(self):
        state = self.state
        challenge = 'Bearer authorization_uri="%s/%s", error="invalid_token", error_description="%%s"' % (
            state.hosts["login"], state.tenant_id)

        def fail(code, message):
            raise ArmError(401, code, message,
                           headers=[("WWW-Authenticate", challenge % message.replace('"', "'"))])
        auth = self.headers.get("Authorization")
        if not auth:
            fail("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            fail("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing "
                 "the access token.")
        try:
            claims = jwt.verify(token.strip(), [state.entra_key.public()], leeway=0)
        except jwt.JwtError as e:
            if e.reason == "expired":
                _, c = jwt.decode_unverified(token.strip())
                fail("ExpiredAuthenticationToken", "The access token expiry UTC time '%s' is earlier "
                     "than current UTC time '%s'." % (
                         time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(float(c.get("exp", 0)))),
                         time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime())))
            fail("InvalidAuthenticationToken", "The access token is invalid: %s." % e)
        aud = str(claims.get("aud", "")).rstrip("/")
        if aud not in ARM_AUDIENCES and aud != state.hosts["arm"]:
            fail("InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong "
                 "audience or resource '%s'. It should exactly match with one of the allowed "
                 "audiences '%s'." % (claims.get("aud"), "','".join(
                     a + s for a in ARM_AUDIENCES for s in ("/", ""))))
        if claims.get("tid") != state.tenant_id:
            fail("InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer '%s'."
                 % claims.get("iss"))
        self.claims = claims


def dispatch(arm, h):
    """(status, body, headers) for an authenticated ARM request."""
    for pattern, fn in arm.special:
        m = pattern.match(h.url_path)
        if m:
            return fn(arm, h, m)
    raise ArmError(404, "NotFound", "No HTTP resource was found that matches the request URI '%s%s'."
                   % (arm.state.hosts["arm"], h.url_path))


def start(state, port, tls):
    from . import providers
    arm = Arm(state)
    providers.install(arm)
    handler = type("BoundArmHandler", (ArmHandler,), {"arm": arm})
    state.arm = arm
    return serve(state, "arm", port, handler, tls)


def route(arm, regex, fn):
    arm.special.append((re.compile(regex, re.I), fn))
