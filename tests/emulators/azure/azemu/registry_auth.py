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


def managed_identity_credentials(state, server, client_id=st.MI_CLIENT_ID, oid=st.MI_OBJECT_ID):
    """[{server, username, password}] for SERVER, or raises RuntimeError saying why not."""
    if server != ACR_LOGIN_SERVER:
        raise RuntimeError("a managed identity can pull only from the emulated ACR login server %s, "
                           "not from %s" % (ACR_LOGIN_SERVER, server))
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
