"""Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials.

An identity is a principal of the emulator's Entra (a client id and an object id, the
principalId role assignments name). A federated identity credential (issuer, subject,
audiences) lets a workload holding a token of that issuer and subject sign in as the identity:
the GitHub OIDC token of tests/env, the workload identity issuer's, as with Azure's workload
identity federation (client_assertion at the token endpoint). At most 20 credentials per
identity, names by Azure's rule, issuer an https URL, one issuer+subject pair per identity."""

import re
import uuid

from ..arm import ArmError, ResourceType

API = ("2015-08-31-preview", "2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
       "2023-07-31-preview", "2024-11-30", "2025-01-31-preview")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")
FIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
MAX_FIC = 20


def ids_of(rid):
    """The identity's (clientId, principalId): stable for its id, as a re-created one keeps neither
    on Azure but a test wants to find it again."""
    low = rid.lower()
    return (str(uuid.uuid5(uuid.NAMESPACE_URL, low + "#client")),
            str(uuid.uuid5(uuid.NAMESPACE_URL, low + "#principal")))


class Identities(ResourceType):
    key = "Microsoft.ManagedIdentity/userAssignedIdentities"
    api_versions = API

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        if not NAME_RE.match(ctx.name or ""):
            raise ArmError(400, "InvalidResourceName", "The resource name '%s' is invalid. It must be 3-128 "
                           "characters of letters, digits, '-' and '_', starting with a letter or digit." % ctx.name)
        res = super().create(ctx, existing, body)
        rid = "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (ctx.sub, ctx.rg, self.key, ctx.name)
        client_id, principal_id = ids_of(rid)
        res["properties"] = {"tenantId": self.arm.state.tenant_id, "principalId": principal_id, "clientId": client_id,
                             "isolationScope": (body.get("properties") or {}).get("isolationScope", "None")}
        return res

    def provision(self, ctx, res):
        principals = self.arm.state.principals
        client_id = res["properties"]["clientId"]
        with self.arm.lock:
            if client_id not in principals:
                principals[client_id] = {"oid": res["properties"]["principalId"], "secret": None, "federated": []}
        sync_federated(self.arm, res["id"])
        return None

    def remove(self, ctx, res):
        with self.arm.lock:
            self.arm.state.principals.pop(res["properties"]["clientId"], None)


class FederatedCredentials(ResourceType):
    key = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    api_versions = API
    location_required = False

    def __init__(self, arm):
        self.arm = arm

    def create(self, ctx, existing, body):
        if not FIC_NAME_RE.match(ctx.name or ""):
            raise ArmError(400, "BadRequest", "The federated identity credential name '%s' is invalid: 3-120 "
                           "characters of letters, digits, '-' and '_', starting with a letter or digit." % ctx.name)
        props = dict(body.get("properties") or {})
        issuer, subject, audiences = props.get("issuer"), props.get("subject"), props.get("audiences")
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            raise ArmError(400, "BadRequest", "Invalid issuer '%s': it must be an https URL." % issuer,
                           target="properties.issuer")
        if not isinstance(subject, str) or not subject.strip():
            raise ArmError(400, "BadRequest", "The subject is required.", target="properties.subject")
        if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str):
            raise ArmError(400, "BadRequest", "Exactly one audience is required (e.g. "
                           "api://AzureADTokenExchange).", target="properties.audiences")
        parent = "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (ctx.sub, ctx.rg, Identities.key, ctx.names[0])
        siblings = [r for r in children(self.arm, parent) if r["name"].lower() != (ctx.name or "").lower()]
        if len(siblings) >= MAX_FIC:
            raise ArmError(400, "BadRequest", "An identity has at most %d federated identity credentials." % MAX_FIC)
        for r in siblings:
            p = r["properties"]
            if p.get("issuer") == issuer and p.get("subject") == subject:
                raise ArmError(409, "Conflict", "The federated identity credential '%s' already has issuer '%s' and "
                               "subject '%s'." % (r["name"], issuer, subject))
        return {"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}}

    def provision(self, ctx, res):
        sync_federated(self.arm, res["id"].rsplit("/federatedIdentityCredentials/", 1)[0])
        return None

    def remove(self, ctx, res):
        parent = res["id"].rsplit("/federatedIdentityCredentials/", 1)[0]
        with self.arm.lock:
            self.arm.resources.pop(res["id"].lower(), None)
        sync_federated(self.arm, parent)


def children(arm, identity_id):
    prefix = identity_id.lower() + "/federatedidentitycredentials/"
    with arm.lock:
        return [r for k, r in arm.resources.items() if k.startswith(prefix)]


def sync_federated(arm, identity_id):
    """The identity's principal trusts exactly its federated credentials."""
    ident = arm.get(identity_id)
    if ident is None:
        return
    client_id = ident["properties"]["clientId"]
    federated = [{"issuer": r["properties"]["issuer"], "subject": r["properties"]["subject"],
                  "audiences": list(r["properties"]["audiences"])} for r in children(arm, identity_id)]
    with arm.lock:
        p = arm.state.principals.get(client_id)
        if p is not None:
            p["federated"] = federated


def install(arm):
    arm.register(Identities(arm))
    arm.register(FederatedCredentials(arm))
