"""Microsoft.Resources: subscriptions, resource groups, resource provider registration, the
operation status resources of long-running operations, and the generic resource routes that
dispatch to every provider's ResourceType."""

import copy
import re
import uuid

from ..arm import ArmError, Context, ResourceType, check_api_version, route

RESOURCES_API = {"2015-11-01", "2016-02-01", "2016-06-01", "2016-09-01", "2017-05-10", "2018-02-01",
                 "2018-05-01", "2019-03-01", "2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01",
                 "2019-10-01", "2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01",
                 "2022-01-01", "2022-09-01", "2022-12-01", "2023-07-01", "2024-03-01", "2024-07-01",
                 "2024-11-01", "2025-01-01", "2025-03-01", "2025-04-01"}
# Microsoft.Resources/subscriptions has its own versions (az login lists subscriptions with 2019-11-01)
SUBSCRIPTIONS_API = {"2014-04-01-preview", "2015-11-01", "2016-06-01", "2018-06-01", "2019-06-01",
                     "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"}
LOCATIONS = ["eastus", "eastus2", "westus", "westus2", "westeurope", "northeurope", "uksouth"]
# Microsoft.ContainerInstance starts unregistered: a target must register it (az provider register)
DEFAULT_PROVIDERS = {"Microsoft.Resources": "Registered", "Microsoft.Authorization": "Registered",
                     "Microsoft.ContainerRegistry": "Registered",
                     "Microsoft.ContainerInstance": "NotRegistered",
                     "Microsoft.Web": "Registered", "Microsoft.App": "NotRegistered",
                     "Microsoft.ContainerService": "NotRegistered",
                     "Microsoft.ManagedIdentity": "Registered"}


class ResourceGroups(ResourceType):
    key = "Microsoft.Resources/resourceGroups"
    api_versions = RESOURCES_API
    default_delete_lro = "location"  # ARM deletes resource groups with 202 + Location

    def create(self, ctx, existing, body):
        res = {"location": body.get("location") or (existing or {}).get("location"),
               "properties": {}}
        tags = body.get("tags", (existing or {}).get("tags"))
        if tags is not None:
            res["tags"] = tags
        if body.get("managedBy"):
            res["managedBy"] = body["managedBy"]
        return res


RG_TYPE = ResourceGroups()


def check_sub(arm, sub):
    if sub.lower() != arm.state.subscription_id:
        raise ArmError(404, "SubscriptionNotFound", "The subscription '%s' could not be found." % sub)
    return arm.state.subscription_id


def rg_id(arm, rg):
    return "/subscriptions/%s/resourceGroups/%s" % (arm.state.subscription_id, rg)


def require_rg(arm, rg):
    res = arm.get(rg_id(arm, rg))
    if res is None:
        raise ArmError(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % rg)
    return res


def subscription_body(arm):
    s = arm.state
    return {"id": "/subscriptions/" + s.subscription_id, "subscriptionId": s.subscription_id,
            "tenantId": s.tenant_id, "displayName": "hoist emulator subscription", "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
            "authorizationSource": "RoleBased", "managedByTenants": []}


def subscriptions(arm, h, m):
    check_api_version(h, SUBSCRIPTIONS_API, "subscriptions")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed on subscriptions." % h.command)
    if m.group(1) is None:
        return 200, {"value": [subscription_body(arm)], "count": {"type": "Total", "value": 1}}, []
    check_sub(arm, m.group(1))
    return 200, subscription_body(arm), []


def resource_groups(arm, h, m):
    sub = check_sub(arm, m.group(1))
    check_api_version(h, RESOURCES_API, "resourceGroups")
    name = m.group(2)
    ctx = Context(arm, h, sub, name, RG_TYPE, [name], h.query["api-version"])
    if name is None:
        if h.command != "GET":
            raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed here." % h.command)
        return 200, arm.page(h, [copy.deepcopy(r) for r in arm.children(
            "/subscriptions/" + sub + "/resourceGroups", RG_TYPE.key)]), []
    rid = rg_id(arm, name)
    existing = arm.get(rid)
    if existing:
        rid = existing["id"]
    if h.command == "PUT":
        if not valid_rg_name(name):
            raise ArmError(400, "InvalidResourceGroupName", "The resource group name '%s' is invalid: "
                           "1-90 letters, digits, '.', '_', '-', '(' or ')', not ending with '.'." % name)
        with arm.lock:  # the check and the write as one step: two guarded writers, one wins
            check_etag(arm, h, rid, existing)
            status, body, headers = arm.put(ctx, RG_TYPE, rid, name, h.json_body())
            return status, body, headers + [("ETag", new_etag(arm, rid))]
    if h.command in ("GET", "HEAD"):
        if existing is None:
            if h.command == "HEAD":
                return 404, None, []
            require_rg(arm, name)
        arm.poke(rid)
        etag = [("ETag", etag_of(arm, rid))]
        return (204, None, etag) if h.command == "HEAD" else (200, copy.deepcopy(existing), etag)
    if h.command == "PATCH":
        require_rg(arm, name)
        body = h.json_body() or {}
        with arm.lock:
            check_etag(arm, h, rid, existing)
            if "tags" in body:
                existing["tags"] = body["tags"]
            return 200, copy.deepcopy(existing), [("ETag", new_etag(arm, rid))]
    if h.command == "DELETE":
        require_rg(arm, name)
        return arm.delete(ctx, RG_TYPE, rid)
    raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed on resource groups." % h.command)


def group_resources(arm, h, m):
    """Resources - List By Resource Group: the group's top-level resources (not their child
    resources, as ARM lists them), paged; 404 ResourceGroupNotFound for a missing group."""
    sub = check_sub(arm, m.group(1))
    check_api_version(h, RESOURCES_API, "resources")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed here." % h.command)
    rid = require_rg(arm, m.group(2))["id"]
    top = [r for r in arm.children(rid + "/providers") if r["id"][len(rid) + len("/providers/"):].count("/") == 2]
    keep = ("id", "name", "type", "location", "kind", "sku", "tags", "identity", "managedBy")
    return 200, arm.page(h, [{k: copy.deepcopy(r[k]) for k in keep if k in r} for r in top]), []


# Resources - List (GET /subscriptions/{s}/resources): the subscription's top-level resources,
# filtered by $filter as ARM documents it: `<field> eq '<value>'` for resourceType, name,
# location and resourceGroup, `tagName eq 'k' [and tagValue eq 'v']`, `substringof('x', name)`,
# joined by `and`; values compare without case. What az uses to find a resource by name
# (`az acr show -n NAME` without -g).
FILTER_TERM = re.compile(r"^(?:(resourceType|name|location|resourceGroup|tagName|tagValue)\s+eq\s+'([^']*)'"
                         r"|substringof\(\s*'([^']*)'\s*,\s*name\s*\))$", re.I)


def parse_filter(text):
    """[(field lower, value)] of a $filter, or raises 400 InvalidFilterInQueryString."""
    terms = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I) if text.strip() else []:
        m = FILTER_TERM.match(part.strip())
        if not m:
            raise ArmError(400, "InvalidFilterInQueryString", "The $filter '%s' could not be parsed: "
                           "use resourceType, name, location, resourceGroup, tagName/tagValue with eq, "
                           "or substringof('text', name), joined by 'and'." % text)
        terms.append(("substringof", m.group(3)) if m.group(3) is not None else (m.group(1).lower(), m.group(2)))
    return terms


def matches(res, terms):
    rg = res["id"].split("/")[4]
    tags = {k.lower(): v for k, v in (res.get("tags") or {}).items()}
    tag_name = next((v.lower() for f, v in terms if f == "tagname"), None)
    for field, value in terms:
        v = value.lower()
        if field == "resourcetype" and res["type"].lower() != v:
            return False
        if field == "name" and res["name"].lower() != v:
            return False
        if field == "location" and (res.get("location") or "").lower() != v:
            return False
        if field == "resourcegroup" and rg.lower() != v:
            return False
        if field == "substringof" and v not in res["name"].lower():
            return False
        if field == "tagname" and v not in tags:
            return False
        if field == "tagvalue" and (tag_name is None or (tags.get(tag_name) or "").lower() != v):
            return False
    return True


def subscription_resources(arm, h, m):
    sub = check_sub(arm, m.group(1))
    check_api_version(h, RESOURCES_API, "resources")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed here." % h.command)
    terms = parse_filter(h.query.get("$filter", ""))
    prefix = "/subscriptions/%s/resourcegroups/" % sub.lower()
    with arm.lock:
        found = [r for r in arm.resources.values()
                 if r["id"].lower().startswith(prefix) and r["id"].count("/") == 8 and matches(r, terms)]
    found.sort(key=lambda r: r["id"].lower())
    keep = ("id", "name", "type", "location", "kind", "sku", "tags", "identity", "managedBy")
    return 200, arm.page(h, [{k: copy.deepcopy(r[k]) for k in keep if k in r} for r in found]), []


# --- ETags of resource groups ----------------------------------------------------------------
# Every write of a resource group gives it a new ETag (the ETag response header of GET, HEAD,
# PUT and PATCH); a PUT or PATCH with If-Match that no longer matches, or with If-None-Match: *
# on a group that exists, is refused with 412, as ARM's RPC specifies for resources with ETags.
# hoist's ARM-side deploy lock (a tag on the group) relies on it.

def etag_of(arm, rid):
    with arm.lock:
        etags = arm.__dict__.setdefault("etags", {})
        return etags.setdefault(rid.lower(), '"%s"' % uuid.uuid4())


def new_etag(arm, rid):
    with arm.lock:
        arm.__dict__.setdefault("etags", {})[rid.lower()] = tag = '"%s"' % uuid.uuid4()
        return tag


def check_etag(arm, h, rid, existing):
    match, none_match = h.headers.get("If-Match"), h.headers.get("If-None-Match")
    if match and match.strip() != "*" and (existing is None or match.strip() != etag_of(arm, rid)):
        raise ArmError(412, "PreconditionFailed", "The condition specified using HTTP conditional "
                       "header(s) is not met: If-Match %s, the resource group's ETag is %s."
                       % (match.strip(), etag_of(arm, rid) if existing else "none (it does not exist)"))
    if match and match.strip() == "*" and existing is None:
        raise ArmError(412, "PreconditionFailed", "If-Match: * but the resource group does not exist.")
    if none_match and none_match.strip() == "*" and existing is not None:
        raise ArmError(412, "PreconditionFailed", "If-None-Match: * but the resource group exists.")


def valid_rg_name(name):
    import re
    return bool(re.match(r"^[-\w._()]{1,90}$", name)) and not name.endswith(".")


# --- resource providers ------------------------------------------------------------------

def provider_body(arm, ns):
    p = arm.providers[ns.lower()]
    types = sorted({k.split("/", 1)[1].split("/")[0] for k, t in arm.types.items()
                    if k.split("/")[0] == ns.lower()})
    return {"id": "/subscriptions/%s/providers/%s" % (arm.state.subscription_id, p["namespace"]),
            "namespace": p["namespace"], "registrationState": p["state"],
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [{"resourceType": t, "locations": [l.title() for l in LOCATIONS],
                               "apiVersions": sorted(next(iter(
                                   tt.api_versions for k, tt in arm.types.items()
                                   if k.split("/")[0] == ns.lower()
                                   and k.split("/", 1)[1].split("/")[0] == t)), reverse=True)}
                              for t in types]}


def provider_get(arm, ns):
    p = arm.providers.get(ns.lower())
    if p is None:
        raise ArmError(404, "InvalidResourceNamespace", "The resource namespace '%s' is invalid." % ns)
    with arm.lock:
        if p["state"] in ("Registering", "Unregistering"):
            if p["polls"] > 0:
                p["polls"] -= 1
            else:
                p["state"] = "Registered" if p["state"] == "Registering" else "NotRegistered"
    return p


def providers(arm, h, m):
    check_sub(arm, m.group(1))
    check_api_version(h, RESOURCES_API, "providers")
    ns, action = m.group(2), m.group(3)
    if ns is None:
        if h.command != "GET":
            raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed here." % h.command)
        for p in list(arm.providers.values()):
            provider_get(arm, p["namespace"])
        return 200, arm.page(h, [provider_body(arm, p["namespace"])
                                 for p in sorted(arm.providers.values(), key=lambda p: p["namespace"])]), []
    p = provider_get(arm, ns)
    if action is None:
        if h.command != "GET":
            raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed here." % h.command)
        return 200, provider_body(arm, ns), []
    if h.command != "POST":
        raise ArmError(405, "MethodNotAllowed", "%s must be POSTed." % action)
    with arm.lock:
        if action.lower() == "register" and p["state"] != "Registered":
            p["state"], p["polls"] = "Registering", arm.state.setting("register_polls")
        elif action.lower() == "unregister" and p["state"] != "NotRegistered":
            if any(k.split("/")[0] == ns.lower() for r in arm.resources.values()
                   for k in [r["type"].lower()]):
                raise ArmError(409, "ResourcesExist", "The namespace '%s' cannot be unregistered while "
                               "resources of it exist." % p["namespace"])
            p["state"], p["polls"] = "Unregistering", arm.state.setting("register_polls")
    return 200, provider_body(arm, ns), []


def require_registered(arm, ns):
    p = provider_get(arm, ns)
    if p["state"] != "Registered":
        raise ArmError(409, "MissingSubscriptionRegistration", "The subscription is not registered to "
                       "use namespace '%s'. See https://aka.ms/rps-not-found for how to register "
                       "subscriptions." % p["namespace"],
                       details=[{"code": "MissingSubscriptionRegistration", "target": p["namespace"],
                                 "message": "The subscription is not registered to use namespace "
                                            "'%s'." % p["namespace"]}])


# --- operations ----------------------------------------------------------------------------

def operations(arm, h, m):
    check_sub(arm, m.group(1))
    if not h.query.get("api-version"):
        check_api_version(h, (), "operations")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "Operations are read with GET.")
    return arm.operation(h, m.group(4).lower(), m.group(5))


# --- generic provider resources --------------------------------------------------------------

def resolve_type(arm, ns, segs):
    """(ResourceType, names, action) for the segments after providers/{ns}/."""
    if len(segs) % 2 == 0:
        key = "/".join([ns] + segs[0::2])
        return arm.types.get(key.lower()), key, segs[1::2], None
    parent_key = "/".join([ns] + segs[0:-1:2])
    parent = arm.types.get(parent_key.lower()) if len(segs) >= 3 else None
    if parent is not None and segs[-1].lower() in {a.lower() for a in parent.actions}:
        return parent, parent_key, segs[1::2], segs[-1]
    key = "/".join([ns] + segs[0::2])
    return arm.types.get(key.lower()), key, segs[1::2], None


def provider_resource(arm, h, m):
    sub = check_sub(arm, m.group(1))
    rg, ns = m.group(2) or None, m.group(3)
    segs = [s for s in m.group(4).split("/") if s]
    rtype, key, names, action = resolve_type(arm, ns, segs)
    if rtype is None:
        if ns.lower() not in arm.providers:
            raise ArmError(404, "InvalidResourceNamespace", "The resource namespace '%s' is invalid." % ns)
        raise ArmError(400, "InvalidResourceType", "The resource type '%s' could not be found in the "
                       "namespace '%s' for api version '%s'." % ("/".join(segs[0::2]), ns,
                                                                 h.query.get("api-version")))
    check_api_version(h, rtype.api_versions, "'%s'" % rtype.key)
    if rg is None:  # a list across the subscription
        if h.command != "GET" or len(segs) != 1:
            raise ArmError(405, "MethodNotAllowed", "Only GET lists %s across a subscription." % rtype.key)
        items = [rtype.view(copy.deepcopy(r)) for r in arm.children("/subscriptions/" + sub)
                 if r["type"].lower() == rtype.key.lower()]
        return 200, arm.page(h, items), []
    rgres = require_rg(arm, rg)
    rg = rgres["name"]
    ctx = Context(arm, h, sub, rg, rtype, names, h.query["api-version"])
    base = "%s/providers/%s" % (rgres["id"], rtype.namespace)
    tnames = rtype.key.split("/")[1:]
    if len(names) < len(tnames) and action is None:  # a collection
        if h.command != "GET":
            raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed on a collection." % h.command)
        prefix = base + "".join("/%s/%s" % (t, n) for t, n in zip(tnames, names))
        if names and arm.get(prefix) is None:
            raise ArmError(404, "ParentResourceNotFound", "Can not perform requested operation on "
                           "nested resource. Parent resource '%s' not found." % "/".join(names))
        items = [rtype.view(copy.deepcopy(r)) for r in arm.children(prefix, rtype.key)]
        return 200, arm.page(h, items), []
    rid = base + "".join("/%s/%s" % (t, n) for t, n in zip(tnames, names))
    if len(names) > 1:
        require_parent(arm, ctx, base, tnames, names)
    existing = arm.get(rid)
    if existing:
        rid = existing["id"]
    if action is not None:
        methods, fn = next(v for k, v in rtype.actions.items() if k.lower() == action.lower())
        if h.command not in methods:
            raise ArmError(405, "MethodNotAllowed", "%s accepts %s, not %s." % (action, "/".join(methods),
                                                                               h.command))
        if existing is None:
            raise not_found(rtype, names[-1], rg)
        arm.poke(rid)
        return getattr(rtype, fn)(ctx, existing, h.json_body() or {})
    if h.command == "PUT":
        require_registered(arm, ns)
        return arm.put(ctx, rtype, rid, names[-1], h.json_body())
    if h.command == "GET":
        if existing is None:
            raise not_found(rtype, names[-1], rg)
        arm.poke(rid)
        return 200, rtype.view(copy.deepcopy(arm.get(rid) or existing)), []
    if h.command == "PATCH":
        if existing is None:
            raise not_found(rtype, names[-1], rg)
        if hasattr(rtype, "patch_request"):  # a PATCH that is a long-running update (Container Apps)
            return rtype.patch_request(ctx, rid, existing, h.json_body() or {})
        return 200, rtype.view(copy.deepcopy(rtype.patch(ctx, existing, h.json_body() or {}))), []
    if h.command == "DELETE":
        return arm.delete(ctx, rtype, rid)
    raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed on %s." % (h.command, rtype.key))


def require_parent(arm, ctx, base, tnames, names):
    pid = base + "".join("/%s/%s" % (t, n) for t, n in zip(tnames[:-1], names[:-1]))
    if arm.get(pid) is None:
        raise ArmError(404, "ParentResourceNotFound", "Can not perform requested operation on nested "
                       "resource. Parent resource '%s' not found." % "/".join(names[:-1]))


def not_found(rtype, name, rg):
    return ArmError(404, "ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not "
                    "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                    % (rtype.key, name, rg))


def patch(self, ctx, res, body):
    """Default PATCH: tags replaced, properties merged one level deep."""
    with ctx.arm.lock:
        if "tags" in body:
            res["tags"] = body["tags"]
        for k, v in (body.get("properties") or {}).items():
            if k != "provisioningState":
                res["properties"][k] = v
    return res


ResourceType.patch = patch


def install(arm):
    arm.providers = {}

    def reset_providers():
        arm.providers.clear()
        arm.providers.update({ns.lower(): {"namespace": ns, "state": st, "polls": 0}
                              for ns, st in DEFAULT_PROVIDERS.items()})
    reset_providers()
    arm.reset_hooks = getattr(arm, "reset_hooks", []) + [reset_providers]
    arm.register(RG_TYPE)
    sub = r"^/subscriptions/([^/]+)"
    route(arm, r"^/subscriptions(?:/([^/]+))?/?$", subscriptions)
    route(arm, sub + r"/resourcegroups(?:/([^/]+))?/?$", resource_groups)
    route(arm, sub + r"/resourcegroups/([^/]+)/resources/?$", group_resources)
    route(arm, sub + r"/resources/?$", subscription_resources)
    route(arm, sub + r"/providers/([^/]+)/locations/([^/]+)/(operationStatuses|operationResults)/([^/]+)$",
          operations)
    route(arm, sub + r"/providers(?:/([^/]+))?(?:/(register|unregister))?/?$", providers)
    # role assignments (authorization.py) route before these: they may sit under any scope
    arm.late_routes = [(sub + r"/resourceGroups/([^/]+)/providers/([^/]+)/(.+?)/?$", provider_resource),
                       (sub + r"()/providers/([^/]+)/([^/]+)/?$", provider_resource)]


def install_late(arm):
    for regex, fn in arm.late_routes:
        route(arm, regex, fn)
