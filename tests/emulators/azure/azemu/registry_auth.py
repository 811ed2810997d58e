"""Registry credentials for pulls the emulated services make with a managed identity
(App Service acrUseManagedIdentityCreds, Container Apps registries[].identity): as ACR does, an
Entra access token of the identity (audience https://containerregistry.azure.net) is exchanged at
the token server's /oauth2/exchange for a refresh token, which logs in as
00000000-0000-0000-0000-000000000000. Only the local token registry (ACR's login server here)
has that exchange."""

import json
import os
import urllib.parse
import urllib.request

from . import identity, state as st

ACR_LOGIN_SERVER = st.ACR_LOGIN_SERVER
ACR_USER = "00000000-0000-0000-0000-000000000000"


def principal_of(identity, which="system"):
    """(client id, object id) of the managed identity a resource pulls with: its system-assigned
    one ("system"), or the user-assigned one whose resource id (Container Apps' registry
    identity) or client id (App Service's acrUserManagedIdentityID) `which` is."""
    identity = identity or {}
    if which and which.lower() != "system":
        for rid, ids in (identity.get("userAssignedIdentities") or {}).items():
            if rid.lower() == which.lower() or str(ids.get("clientId", "")).lower() == which.lower():
                return ids.get("clientId") or st.MI_CLIENT_ID, ids.get("principalId") or st.MI_OBJECT_ID
        raise RuntimeError("the identity %s is not assigned to the resource" % which)
    return st.MI_CLIENT_ID, identity.get("principalId") or st.MI_OBJECT_ID


def managed_identity_credentials(state, server, client_id=st.MI_CLIENT_ID, oid=st.MI_OBJECT_ID, granted=False):
    """[{server, username, password}] for SERVER, or raises RuntimeError saying why not: as ACR
    does, the identity needs a role that pulls (AcrPull, AcrPush, Contributor, Owner) on the
    registry or above it, unless the service grants it itself (`granted`: Azure ML gives an online
    endpoint's identity AcrPull on its workspace's registry)."""
    if server != ACR_LOGIN_SERVER:
        raise RuntimeError("a managed identity can pull only from the emulated ACR login server %s, "
                           "not from %s" % (ACR_LOGIN_SERVER, server))
    can_pull = getattr(state, "can_pull", None)
    if can_pull is not None and not granted and not can_pull(oid):
        raise RuntimeError("unauthorized: the managed identity (principal %s) has no AcrPull role on the registry "
                           "%s: authentication required, visit https://aka.ms/acr/authorization for more "
                           "information (assign it AcrPull: az role assignment create --assignee %s --role AcrPull "
                           "--scope <registry id>)" % (oid, server, oid))
    token_server = os.environ.get("HOIST_TEST_TOKEN_SERVER", "http://127.0.0.1:5003")
    token, _ = identity.issue_access_token(state, "https://containerregistry.azure.net", client_id, oid, 300)
    data = urllib.parse.urlencode({"grant_type": "access_token", "service": server,
                                   "tenant": state.tenant_id, "access_token": token}).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(token_server + "/oauth2/exchange", data=data), timeout=15) as r:
            refresh = json.loads(r.read())["refresh_token"]
    except Exception as e:  # noqa: BLE001 - any failure is the pull's failure, said in the log
        raise RuntimeError("the ACR token exchange at %s failed: %s" % (token_server, e))
    return [{"server": server, "username": ACR_USER, "password": refresh}]
