"""Microsoft.Authorization/roleAssignments at any scope (subscription, resource group, resource):
PUT (201), GET, DELETE (200 with the assignment, 204 when absent), list at a scope with
`$filter=principalId eq '...'`. roleDefinitions: Azure's built-in roles the workflows assign
(their real ids), listed at a scope with `$filter=roleName eq '...'` or read by id.
`has_role(arm, principal, roles, scope)`: whether an assignment of one of `roles` at `scope` or
above it holds (what the emulated services check before a managed identity pulls)."""

import copy
import re
import time

from ..arm import ArmError, check_api_version, route
from .resources import check_sub, require_rg

API = {"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview",
       "2020-04-01-preview", "2020-10-01-preview", "2022-04-01"}
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


def role_definition(sub, name, rid=None):
    role_id = BUILTIN_ROLES[name]
    return {"id": "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s" % (sub, role_id),
            "name": role_id, "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": name, "type": "BuiltInRole", "description": "Built-in role %s." % name,
                           "assignableScopes": ["/"], "permissions": []}}


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


def install(arm):
    arm.state.can_pull = lambda principal: can_pull(arm, principal)
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/roleDefinitions"
               r"(?:/([^/]+))?/?$", role_definitions)
    arm.role_assignments = {}
    arm.reset_hooks = getattr(arm, "reset_hooks", []) + [arm.role_assignments.clear]
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/roleAssignments"
               r"(?:/([^/]+))?/?$", role_assignments)
