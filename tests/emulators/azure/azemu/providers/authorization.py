"""Microsoft.Authorization/roleAssignments at any scope (subscription, resource group, resource):
PUT (201), GET, DELETE (200 with the assignment, 204 when absent), list at a scope with
`$filter=principalId eq '...'`."""

import copy
import re
import time

from .. import apiversions
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


def install(arm):
    arm.role_assignments = {}
    arm.reset_hooks = getattr(arm, "reset_hooks", []) + [arm.role_assignments.clear]
    route(arm, r"^(/subscriptions/[^/]+(?:/.*?)?)/providers/Microsoft\.Authorization/roleAssignments"
               r"(?:/([^/]+))?/?$", role_assignments)
