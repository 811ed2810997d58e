"""Microsoft.Authorization/roleAssignments at any scope (subscription, resource group, resource):
PUT (201), GET, DELETE (200 with the assignment, 204 when absent), list at a scope with
`$filter=principalId eq '...'`. roleDefinitions: Azure's built-in roles the workflows assign
(their real ids), listed at a scope with `$filter=roleName eq '...'` or read by id.
`has_role(arm, principal, roles, scope)`: whether an assignment of one of `roles` at `scope` or
above it holds (what the emulated services check before a managed identity pulls).

Access control as ARM enforces it: `permissions` at a subscription, resource group or resource
scope (Permissions - List For Resource Group / For Resource: the caller's effective actions, one
entry per role it holds there or above); `authorize` refuses a write (PUT, PATCH, DELETE, POST) the
caller's roles do not grant with 403 AuthorizationFailed, as ARM does before the provider sees it.
The emulator's own principals (the service principal, the federated app, the managed identity)
hold Owner at the subscription from the start and after every reset, as a CI principal is set up;
the limited one (`LIMITED_CLIENT_ID`) and user-assigned identities hold nothing until assigned."""

import copy
import re
import time
import uuid

from .. import apiversions
from .. import state as st
from ..arm import ArmError, check_api_version, route
from .resources import check_sub, require_rg

API = apiversions.of("Microsoft.Authorization")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def check_scope(arm, scope):
    m = re.match(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(/providers/.+)?)?$", scope, re.I)
    if not m:
        raise ArmError(400, "InvalidScope", "The scope '%s' is not a subscription, resource group or "
                       "resource id." % scope)
    check_sub(arm, m.group(1))
    if m.group(2):
        require_rg(arm, m.group(2))
    if m.group(3) and arm.get(scope) is None:
        raise ArmError(404, "ResourceNotFound", "The resource '%s' of the scope was not found." % scope)


def role_assignments(arm, h, m):
    check_api_version(h, API, "'Microsoft.Authorization/roleAssignments'")
    scope, name = m.group(1), m.group(2)
    check_scope(arm, scope)
    prefix = scope + "/providers/Microsoft.Authorization/roleAssignments"
    store = arm.role_assignments
    if name is None:
        if h.command != "GET":
            raise ArmError(405, "MethodNotAllowed", "Only GET lists role assignments.")
        items = [a for a in store.values() if a["properties"]["scope"].lower().startswith(scope.lower())
                 or scope.lower().startswith(a["properties"]["scope"].lower())]
        f = h.query.get("$filter", "")
        pm = re.search(r"principalId\s+eq\s+'([^']+)'", f)
        if pm:
            items = [a for a in items if a["properties"]["principalId"] == pm.group(1)]
        return 200, arm.page(h, sorted((copy.deepcopy(a) for a in items), key=lambda a: a["id"])), []
    rid = prefix + "/" + name
    key = rid.lower()
    if h.command == "GET":
        if key not in store:
            raise ArmError(404, "RoleAssignmentNotFound", "The role assignment '%s' is not found." % name)
        return 200, copy.deepcopy(store[key]), []
    if h.command == "DELETE":
        a = store.pop(key, None)
        return (200, a, []) if a else (204, None, [])
    if h.command != "PUT":
        raise ArmError(405, "MethodNotAllowed", "The method %s is not allowed on role assignments." % h.command)
    if not GUID.match(name):
        raise ArmError(400, "InvalidRoleAssignmentId", "The role assignment ID '%s' is not valid. The "
                       "role assignment ID must be a GUID." % name)
    props = ((h.json_body() or {}).get("properties") or {})
    for field in ("roleDefinitionId", "principalId"):
        if not props.get(field):
            raise ArmError(400, "InvalidRoleAssignmentRequest" if field == "principalId"
                           else "InvalidRoleDefinitionId", "The request must name properties.%s." % field,
                           target="properties." + field)
    if not re.search(r"/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-fA-F-]{36}$",
                     props["roleDefinitionId"], re.I):
        raise ArmError(400, "InvalidRoleDefinitionId", "The role definition ID '%s' is not valid."
                       % props["roleDefinitionId"], target="properties.roleDefinitionId")
    with arm.lock:
        for k, a in store.items():
            p = a["properties"]
            if k != key and p["scope"].lower() == scope.lower() and p["principalId"] == props["principalId"] \
                    and p["roleDefinitionId"].rsplit("/", 1)[-1].lower() == \
                    props["roleDefinitionId"].rsplit("/", 1)[-1].lower():
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.",
                               details=[{"code": "RoleAssignmentExists", "target": a["name"],
                                         "message": "The ID of the existing role assignment is %s."
                                                    % a["name"]}])
        old = store.get(key)
        if old and (old["properties"]["principalId"] != props["principalId"] or
                    old["properties"]["roleDefinitionId"].lower() != props["roleDefinitionId"].lower()):
            raise ArmError(409, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, "
                           "principal ID, and scope are not allowed to be updated.")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
        a = {"id": rid, "name": name, "type": "Microsoft.Authorization/roleAssignments",
             "properties": {"roleDefinitionId": props["roleDefinitionId"],
                            "principalId": props["principalId"],
                            "principalType": props.get("principalType", "ServicePrincipal"),
                            "scope": scope, "condition": props.get("condition"),
                            "conditionVersion": props.get("conditionVersion"),
                            "createdOn": stamp, "updatedOn": stamp,
                            "createdBy": h.claims.get("oid"), "updatedBy": h.claims.get("oid"),
                            "delegatedManagedIdentityResourceId": None,
                            "description": props.get("description")}}
        if old:
            a["properties"]["createdOn"] = old["properties"]["createdOn"]
        store[key] = a
    return 201, copy.deepcopy(a), []


# Azure's built-in roles (name -> id): the ids are Azure's own, the same in every tenant.
BUILTIN_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Azure Kubernetes Service Cluster User Role": "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
}
ROLE_API = API

# Their permissions (actions and notActions as Azure's built-in definitions list them; the
# Contributor's notActions cut to those of access management and the few a deploy could meet).
ROLE_PERMISSIONS = {
    "Owner": {"actions": ["*"]},
    "Contributor": {"actions": ["*"], "notActions": [
        "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
        "Microsoft.Authorization/elevateAccess/Action", "Microsoft.Blueprint/blueprintAssignments/write",
        "Microsoft.Blueprint/blueprintAssignments/delete", "Microsoft.Compute/galleries/share/action",
        "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
        "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
        "Microsoft.Subscription/cancel/action", "Microsoft.Subscription/enable/action"]},
    "Reader": {"actions": ["*/read"]},
    "User Access Administrator": {"actions": ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"]},
    "AcrPull": {"actions": ["Microsoft.ContainerRegistry/registries/pull/read"]},
    "AcrPush": {"actions": ["Microsoft.ContainerRegistry/registries/pull/read",
                            "Microsoft.ContainerRegistry/registries/push/write"]},
    "Managed Identity Operator": {"actions": [
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action", "Microsoft.Authorization/*/read",
        "Microsoft.Insights/alertRules/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Resources/deployments/*", "Microsoft.Support/*"]},
    "Azure Kubernetes Service Cluster User Role": {"actions": [
        "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
        "Microsoft.ContainerService/managedClusters/read"]},
    "AzureML Data Scientist": {"actions": [
        "Microsoft.MachineLearningServices/workspaces/*/read", "Microsoft.MachineLearningServices/workspaces/*/action",
        "Microsoft.MachineLearningServices/workspaces/*/delete", "Microsoft.MachineLearningServices/workspaces/*/write"],
        "notActions": ["Microsoft.MachineLearningServices/workspaces/delete",
                       "Microsoft.MachineLearningServices/workspaces/write",
                       "Microsoft.MachineLearningServices/workspaces/computes/*/write",
                       "Microsoft.MachineLearningServices/workspaces/computes/*/delete",
                       "Microsoft.Authorization/*/write",
                       "Microsoft.MachineLearningServices/workspaces/listKeys/action",
                       "Microsoft.MachineLearningServices/workspaces/hubs/write",
                       "Microsoft.MachineLearningServices/workspaces/hubs/delete",
                       "Microsoft.MachineLearningServices/workspaces/featurestores/write",
                       "Microsoft.MachineLearningServices/workspaces/featurestores/delete"]},
}


def permission(name):
    p = ROLE_PERMISSIONS[name]
    return {"actions": list(p.get("actions", [])), "notActions": list(p.get("notActions", [])),
            "dataActions": list(p.get("dataActions", [])), "notDataActions": list(p.get("notDataActions", []))}


def role_definition(sub, name, rid=None):
    role_id = BUILTIN_ROLES[name]
    return {"id": "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s" % (sub, role_id),
            "name": role_id, "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": name, "type": "BuiltInRole", "description": "Built-in role %s." % name,
                           "assignableScopes": ["/"], "permissions": [permission(name)]}}


def role_definitions(arm, h, m):
    check_api_version(h, ROLE_API, "'Microsoft.Authorization/roleDefinitions'")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "Only GET reads role definitions.")
    scope, name = m.group(1), m.group(2)
    check_scope(arm, scope)
    sub = re.match(r"^/subscriptions/([^/]+)", scope, re.I).group(1)
    if name:
        for role, role_id in BUILTIN_ROLES.items():
            if role_id == name.lower():
                return 200, role_definition(sub, role), []
        raise ArmError(404, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not "
                       "exist." % name)
    items = [role_definition(sub, role) for role in sorted(BUILTIN_ROLES)]
    f = h.query.get("$filter", "")
    rm = re.search(r"roleName\s+eq\s+'([^']+)'", f)
    if rm:
        items = [d for d in items if d["properties"]["roleName"].lower() == rm.group(1).lower()]
    return 200, arm.page(h, items), []


def has_role(arm, principal, roles, scope):
    """Whether `principal` holds one of `roles` (names) at `scope` or a scope above it."""
    ids = {BUILTIN_ROLES[r] for r in roles}
    low = scope.lower()
    with arm.lock:
        assignments = list(arm.role_assignments.values())
    for a in assignments:
        p = a["properties"]
        at = p["scope"].lower().rstrip("/")
        if p["principalId"] == principal and p["roleDefinitionId"].rsplit("/", 1)[-1].lower() in ids \
                and (low == at or low.startswith(at + "/")):
            return True
    return False


PULL_ROLES = ("AcrPull", "AcrPush", "Contributor", "Owner")


def can_pull(arm, principal):
    """Whether `principal` may pull from the emulated ACR: one of PULL_ROLES on a registry, or on
    a resource group or subscription (which hold registries)."""
    ids = {BUILTIN_ROLES[r] for r in PULL_ROLES}
    with arm.lock:
        assignments = list(arm.role_assignments.values())
    for a in assignments:
        p = a["properties"]
        scope = p["scope"]
        if p["principalId"] != principal or p["roleDefinitionId"].rsplit("/", 1)[-1].lower() not in ids:
            continue
        if re.match(r"^/subscriptions/[^/]+(/resourceGroups/[^/]+)?/?$", scope, re.I) or \
                re.search(r"/providers/Microsoft\.ContainerRegistry/registries/[^/]+$", scope, re.I):
            return True
    return False


# --- access control ------------------------------------------------------------------------

def covers(at, scope):
    """Whether an assignment at `at` applies at `scope` (the same scope or one below it)."""
    at, low = at.lower().rstrip("/"), scope.lower().rstrip("/")
    return low == at or low.startswith(at + "/")


def effective(arm, principal, scope):
    """The permissions `principal` holds at `scope`: one entry per role assignment of it at the
    scope or above (what Permissions - List answers)."""
    names = {role_id: name for name, role_id in BUILTIN_ROLES.items()}
    with arm.lock:
        assignments = list(arm.role_assignments.values())
    out = []
    for a in sorted(assignments, key=lambda a: a["id"]):
        p = a["properties"]
        name = names.get(p["roleDefinitionId"].rsplit("/", 1)[-1].lower())
        if p["principalId"] == principal and name and covers(p["scope"], scope):
            out.append(permission(name))
    return out


def matches(pattern, action):
    """Azure's action wildcard: '*' stands for any run of characters, '/' included; no case."""
    rx = ".*".join(re.escape(part) for part in pattern.lower().split("*"))
    return re.fullmatch(rx, action.lower()) is not None


def granted(perms, action):
    """Whether one entry grants `action`: one of its actions matches and none of its notActions
    (a notAction takes away from its own role only, as Azure evaluates them)."""
    return any(any(matches(a, action) for a in p["actions"]) and
               not any(matches(n, action) for n in p["notActions"]) for p in perms)


VERBS = {"PUT": "write", "PATCH": "write", "DELETE": "delete"}


def action_of(method, path):
    """(action, scope) ARM checks a write against, as Azure names them: PUT/PATCH
    '<type>/write', DELETE '<type>/delete', POST '<type>/<action>/action' on the resource the
    action names; None for what is not checked here (reads)."""
    p = path.rstrip("/")
    if method not in VERBS and method != "POST":
        return None
    i = p.lower().rfind("/providers/")
    if i < 0:
        m = re.match(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+)$", p, re.I)
        if m and method in VERBS:
            return "Microsoft.Resources/subscriptions/resourceGroups/" + VERBS[method], p
        return None
    base, segs = p[:i], p[i + len("/providers/"):].split("/")
    ns, tail = segs[0], segs[1:]
    if not re.match(r"^/subscriptions/[^/]+", base, re.I) or not tail:
        return None
    if len(tail) % 2 == 0 and method in VERBS:
        return "%s/%s/%s" % (ns, "/".join(tail[0::2]), VERBS[method]), p
    if len(tail) % 2 == 1 and method == "POST":
        on = "/".join(tail[:-1])
        action = "/".join([ns] + tail[:-1][0::2] + [tail[-1], "action"])
        return action, base + ("/providers/%s/%s" % (ns, on) if on else "")
    return None


def denied(h, action, scope):
    oid = h.claims.get("oid")
    return ArmError(403, "AuthorizationFailed", "The client '%s' with object id '%s' does not have "
                    "authorization to perform action '%s' over scope '%s' or the scope is invalid. If "
                    "access was recently granted, please refresh your credentials."
                    % (h.claims.get("appid") or oid, oid, action, scope))


def authorize(arm, h):
    """Refuses a write the caller's roles do not grant (403 AuthorizationFailed)."""
    got = action_of(h.command, h.url_path)
    if got is None:
        return
    action, scope = got
    if not granted(effective(arm, h.claims.get("oid"), scope), action):
        raise denied(h, action, scope)


def permissions(arm, h, m):
    check_api_version(h, API, "'Microsoft.Authorization/permissions'")
    if h.command != "GET":
        raise ArmError(405, "MethodNotAllowed", "Only GET lists permissions.")
    scope = m.group(1)
    sm = re.match(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(/providers/.+)?)?$", scope, re.I)
    if not sm:
        raise ArmError(400, "InvalidScope", "The scope '%s' is not a subscription, resource group or "
                       "resource id." % scope)
    check_sub(arm, sm.group(1))
    perms = effective(arm, h.claims.get("oid"), scope)
    if not perms:
        raise denied(h, "Microsoft.Authorization/permissions/read", scope)
    if sm.group(2):
        require_rg(arm, sm.group(2))
    return 200, arm.page(h, perms), []


# The emulator's own principals hold Owner at the subscription, as a CI principal is set up.
OWNERS = (st.SP_OBJECT_ID, st.FED_OBJECT_ID, st.MI_OBJECT_ID)


def seed(arm):
    sub = arm.state.subscription_id
    scope = "/subscriptions/" + sub
    for oid in OWNERS:
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, "hoist-emulator-owner#" + oid))
        rid = scope + "/providers/Microsoft.Authorization/roleAssignments/" + name
        arm.role_assignments[rid.lower()] = {
            "id": rid, "name": name, "type": "Microsoft.Authorization/roleAssignments",
            "properties": {"roleDefinitionId": "%s/providers/Microsoft.Authorization/roleDefinitions/%s"
                                               % (scope, BUILTIN_ROLES["Owner"]),
                           "principalId": oid, "principalType": "ServicePrincipal", "scope": scope,
                           "condition": None, "conditionVersion": None, "createdOn": None, "updatedOn": None,
                           "createdBy": None, "updatedBy": None, "delegatedManagedIdentityResourceId": None,
                           "description": "the emulator's principals own the subscription"}}


def install(arm):
    arm.state.can_pull = lambda principal: can_pull(arm, principal)
    arm.authorize = lambda h: authorize(arm, h)
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/roleDefinitions"
               r"(?:/([^/]+))?/?$", role_definitions)
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/permissions/?$", permissions)
    arm.role_assignments = {}
    seed(arm)
    arm.reset_hooks = getattr(arm, "reset_hooks", []) + [arm.role_assignments.clear, lambda: seed(arm)]
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/roleAssignments"
               r"(?:/([^/]+))?/?$", role_assignments)
