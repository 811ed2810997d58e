"""Identity endpoints: the Entra authority (login), the GitHub Actions OIDC token service and
the managed identity endpoints (App Service style and IMDS style).

Entra errors carry what MSAL and azidentity read: error, error_description starting with the
AADSTS code, error_codes, timestamp, trace_id, correlation_id, error_uri.
"""

import re
import time
import uuid

from . import jwt
from . import state as st
from .httpbase import Handler, HttpError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def resource_of_scope(scope):
    """'https://management.azure.com/.default' -> 'https://management.azure.com/'."""
    first = scope.split()[0]
    return first[:-len(".default")] if first.endswith("/.default") else None


def issue_access_token(state, resource, client_id, oid, lifetime):
    now = int(time.time())
    claims = {"aud": resource, "iss": "%s/%s/" % (state.hosts["login"], state.tenant_id),
              "iat": now, "nbf": now - 5, "exp": now + lifetime, "tid": state.tenant_id,
              "oid": oid, "sub": oid, "appid": client_id, "azp": client_id, "idtyp": "app",
              "ver": "1.0", "uti": uuid.uuid4().hex}
    return state.entra_key.make_jwt(claims), now + lifetime


class EntraHandler(Handler):
    """https://127.0.0.1:5011/{tenant}/..."""

    def error_body(self, status, code, message):
        return self.aad_error(code, int(re.match(r"AADSTS(\d+)", message).group(1))
                              if message.startswith("AADSTS") else 90000, message)

    def aad_error(self, error, aadsts, description):
        trace, corr = str(uuid.uuid4()), self.headers.get("client-request-id") or str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        if not description.startswith("AADSTS"):
            description = "AADSTS%d: %s" % (aadsts, description)
        return {"error": error,
                "error_description": "%s Trace ID: %s Correlation ID: %s Timestamp: %s"
                                     % (description, trace, corr, stamp),
                "error_codes": [aadsts], "timestamp": stamp, "trace_id": trace,
                "correlation_id": corr, "error_uri": "%s/error?code=%d" % (self.state.hosts["login"], aadsts)}

    def fail(self, status, error, aadsts, description):
        raise HttpError(status, self.aad_error(error, aadsts, description))

    def route(self):
        p, state = self.url_path, self.state
        login = state.hosts["login"]
        if p == "/common/discovery/instance" and self.command == "GET":
            # MSAL's instance discovery: this authority is its own cloud
            host = login.split("://", 1)[1]
            self.send(200, {"tenant_discovery_endpoint": "%s/%s/v2.0/.well-known/openid-configuration"
                            % (login, state.tenant_id), "api-version": "1.1",
                            "metadata": [{"preferred_network": host, "preferred_cache": host,
                                          "aliases": [host]}]})
            return
        if p.startswith("/_workload/"):
            self.workload_issuer(p[len("/_workload"):])
            return
        m = re.match(r"^/([^/]+)(/.*)$", p)
        if not m:
            self.fail(404, "invalid_request", 90002, "no such endpoint %s" % p)
        tenant, rest = m.group(1), m.group(2)
        if tenant not in (state.tenant_id, "common", "organizations") and tenant != "adfs":
            self.fail(400, "invalid_tenant", 90002, "Tenant '%s' not found. Check to make sure you "
                      "have the correct tenant ID and are signing into the correct cloud." % tenant)
        tid = state.tenant_id
        base = "%s/%s" % (login, tid)
        if rest in ("/v2.0/.well-known/openid-configuration", "/.well-known/openid-configuration") \
                and self.command == "GET":
            self.send(200, {
                "issuer": "%s/v2.0" % base,
                "authorization_endpoint": "%s/oauth2/v2.0/authorize" % base,
                "token_endpoint": "%s/oauth2/v2.0/token" % base,
                "device_authorization_endpoint": "%s/oauth2/v2.0/devicecode" % base,
                "end_session_endpoint": "%s/oauth2/v2.0/logout" % base,
                "jwks_uri": "%s/discovery/v2.0/keys" % base,
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU", "cloud_instance_name": login.split("://", 1)[1],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "request_uri_parameter_supported": False, "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "userinfo_endpoint": "%s/oidc/userinfo" % login,
                "kerberos_endpoint": "%s/kerberos" % base,
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
                "cloud_graph_host_name": "graph.windows.net", "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            })
            return
        if rest in ("/discovery/v2.0/keys", "/discovery/keys") and self.command == "GET":
            self.send(200, jwt.jwks([state.entra_key]))
            return
        if rest in ("/oauth2/v2.0/token", "/oauth2/token") and self.command == "POST":
            self.token(v1=rest == "/oauth2/token")
            return
        self.fail(404, "invalid_request", 90002, "no such endpoint %s" % p)

    def workload_issuer(self, rest):
        issuer = self.state.workload_issuer()
        if rest == "/.well-known/openid-configuration":
            self.send(200, {"issuer": issuer, "jwks_uri": issuer + "/openid/v1/jwks",
                            "response_types_supported": ["id_token"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"]})
        elif rest == "/openid/v1/jwks":
            self.send(200, jwt.jwks([self.state.workload_key]))
        else:
            self.fail(404, "invalid_request", 90002, "no such endpoint /_workload%s" % rest)

    def token(self, v1):
        state = self.state
        form = self.form()
        if form is None:
            self.fail(400, "invalid_request", 900144, "The request body must contain the following "
                      "parameter: 'grant_type' (expected application/x-www-form-urlencoded).")
        grant = form.get("grant_type")
        if not grant:
            self.fail(400, "invalid_request", 900144,
                      "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            self.fail(400, "unsupported_grant_type", 70003,
                      "The app requested an unsupported grant type '%s'." % grant)
        client_id = form.get("client_id")
        if not client_id:
            self.fail(400, "invalid_request", 900144,
                      "The request body must contain the following parameter: 'client_id'.")
        if v1:
            resource = form.get("resource")
            if not resource:
                self.fail(400, "invalid_request", 900144,
                          "The request body must contain the following parameter: 'resource'.")
        else:
            scope = form.get("scope")
            if not scope:
                self.fail(400, "invalid_scope", 70011, "The provided request must include a 'scope' "
                          "input parameter.")
            resource = resource_of_scope(scope)
            if not resource:
                self.fail(400, "invalid_scope", 1002012, "The provided value for scope %s is not valid. "
                          "Client credential flows must have a scope value with /.default suffixed "
                          "to the resource identifier (application ID URI)." % scope.split()[0])
        principal = state.principals.get(client_id)
        if principal is None:
            self.fail(400, "unauthorized_client", 700016,
                      "Application with identifier '%s' was not found in the directory '%s'. This can "
                      "happen if the application has not been installed by the administrator of the "
                      "tenant or consented to by any user in the tenant. You may have sent your "
                      "authentication request to the wrong tenant." % (client_id, state.tenant_id))
        if form.get("client_assertion") is not None or form.get("client_assertion_type"):
            self.check_assertion(form, client_id, principal)
            kind = "client_assertion"
        elif form.get("client_secret") is not None:
            secret = principal.get("secret")
            if not secret or form["client_secret"] != secret:
                self.fail(401, "invalid_client", 7000215,
                          "Invalid client secret provided. Ensure the secret being sent in the request "
                          "is the client secret value, not the client secret ID, for a secret added "
                          "to app '%s'." % client_id)
            kind = "client_secret"
        else:
            self.fail(401, "invalid_client", 7000218, "The request body must contain the following "
                      "parameter: 'client_assertion' or 'client_secret'.")
        state.count("token:" + kind)
        lifetime = state.setting("token_lifetime")
        token, exp = issue_access_token(state, resource, client_id, principal["oid"], lifetime)
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": token}
        if v1:
            body.update({"expires_on": str(exp), "not_before": str(exp - lifetime),
                         "resource": resource, "expires_in": str(lifetime)})
        self.send(200, body, [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])

    def check_assertion(self, form, client_id, principal):
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            self.fail(400, "invalid_request", 700023, "Invalid client_assertion_type '%s' (expected "
                      "'%s')." % (form.get("client_assertion_type"), ASSERTION_TYPE))
        assertion = form.get("client_assertion") or ""
        try:
            _, claims = jwt.decode_unverified(assertion)
        except jwt.JwtError as e:
            self.fail(401, "invalid_client", 50027, "JWT token is invalid or malformed: %s." % e)
        iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
        keys = self.state.issuers().get(iss)
        if keys is None:
            self.fail(400, "invalid_request", 700211, "No matching federated identity record found "
                      "for presented assertion issuer '%s'. Please check your federated identity "
                      "credential Subject, Audience and Issuer against the presented assertion." % iss)
        try:
            jwt.verify(assertion, keys)
        except jwt.JwtError as e:
            if e.reason in ("expired", "not_yet_valid"):
                self.fail(400, "invalid_client", 700024,
                          "Client assertion is not within its valid time range. (%s)" % e)
            self.fail(401, "invalid_client", 700027,
                      "Client assertion failed signature validation. (%s)" % e)
        auds = aud if isinstance(aud, list) else [aud]
        for fic in principal["federated"]:
            if fic["issuer"] == iss and fic["subject"] == sub and any(a in fic["audiences"] for a in auds):
                return
        self.fail(400, "invalid_request", 70021, "No matching federated identity record found for "
                  "presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion "
                  "Audience: '%s'." % (iss, sub, ",".join(str(a) for a in auds)))


class GitHubHandler(Handler):
    """https://127.0.0.1:5012: ACTIONS_ID_TOKEN_REQUEST_URL's service."""

    def error_body(self, status, code, message):
        return {"message": message, "documentation_url": "https://docs.github.com/actions"}

    def route(self):
        state, p = self.state, self.url_path
        issuer = state.hosts["github"]
        if p == "/.well-known/openid-configuration" and self.command == "GET":
            self.send(200, {"issuer": issuer, "jwks_uri": issuer + "/.well-known/jwks",
                            "subject_types_supported": ["public", "pairwise"],
                            "response_types_supported": ["id_token"],
                            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf",
                                                 "ref", "repository", "run_id"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "scopes_supported": ["openid"]})
            return
        if p == "/.well-known/jwks" and self.command == "GET":
            self.send(200, jwt.jwks([state.github_key]))
            return
        if p == "/token" and self.command == "GET":
            auth = self.headers.get("Authorization") or ""
            if not auth.lower().startswith("bearer ") or auth[7:].strip() != st.OIDC_REQUEST_TOKEN:
                raise HttpError(401, self.error_body(401, "", "Bad credentials: the Authorization "
                                "header must be 'Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN'"))
            now = int(time.time())
            subject = state.setting("github_subject")
            claims = {"iss": issuer, "sub": subject,
                      "aud": self.query.get("audience") or "https://github.com/hoist-org",
                      "iat": now, "nbf": now - 5, "exp": now + state.setting("github_token_lifetime"),
                      "jti": uuid.uuid4().hex, "ref": "refs/heads/main",
                      "repository": "hoist-org/app", "repository_owner": "hoist-org",
                      "run_id": "1", "event_name": "push", "ref_type": "branch"}
            state.count("token:github_oidc")
            self.send(200, {"count": 1, "value": state.github_key.make_jwt(claims)})
            return
        raise HttpError(404, self.error_body(404, "", "Not Found"))


class MsiHandler(Handler):
    """http://127.0.0.1:5013: App Service's IDENTITY_ENDPOINT (/msi/token) and IMDS
    (/metadata/identity/oauth2/token, reached through AZURE_POD_IDENTITY_AUTHORITY_HOST)."""

    def route(self):
        if self.url_path == "/msi/token" and self.command == "GET":
            self.app_service()
        elif self.url_path == "/metadata/identity/oauth2/token" and self.command == "GET":
            self.imds()
        else:
            raise HttpError(404, {"error": "not_found", "error_description": "no such endpoint %s"
                                  % self.url_path})

    def check_identity(self, err):
        """Only the emulator's one managed identity exists; a client_id naming another fails."""
        for key in ("client_id", "principal_id", "object_id", "mi_res_id", "msi_res_id"):
            value = self.query.get(key)
            if value and key == "client_id" and value != st.MI_CLIENT_ID:
                err("No managed identity with client_id '%s' is assigned to this resource." % value)
            if value and key in ("principal_id", "object_id") and value != st.MI_OBJECT_ID:
                err("No managed identity with object_id '%s' is assigned to this resource." % value)

    def app_service(self):
        def err(message, status=400):
            raise HttpError(status, {"statusCode": status, "message": message,
                                     "correlationId": str(uuid.uuid4())})
        header = self.headers.get("X-IDENTITY-HEADER")
        if not header:
            err("X-IDENTITY-HEADER is missing: send IDENTITY_HEADER's value in it", 400)
        if header != st.MSI_HEADER:
            err("X-IDENTITY-HEADER does not match IDENTITY_HEADER", 401)
        if self.query.get("api-version") != "2019-08-01":
            err("api-version '%s' is not supported; use 2019-08-01" % self.query.get("api-version"))
        resource = self.query.get("resource")
        if not resource:
            err("the resource query parameter is required")
        self.check_identity(err)
        self.state.count("token:msi_appservice")
        lifetime = self.state.setting("token_lifetime")
        token, exp = issue_access_token(self.state, resource, st.MI_CLIENT_ID, st.MI_OBJECT_ID, lifetime)
        self.send(200, {"access_token": token, "expires_on": str(exp), "resource": resource,
                        "token_type": "Bearer", "client_id": st.MI_CLIENT_ID})

    def imds(self):
        def err(message, status=400, error="invalid_request"):
            raise HttpError(status, {"error": error, "error_description": message})
        if (self.headers.get("Metadata") or "").lower() != "true":
            err("Required metadata header not specified")
        if not self.query.get("api-version"):
            err("Required query variable 'api-version' is missing", error="invalid_request")
        resource = self.query.get("resource")
        if not resource:
            err("Required query variable 'resource' is missing")
        self.check_identity(lambda m: err(m, 400, "invalid_request"))
        self.state.count("token:imds")
        lifetime = self.state.setting("token_lifetime")
        token, exp = issue_access_token(self.state, resource, st.MI_CLIENT_ID, st.MI_OBJECT_ID, lifetime)
        self.send(200, {"access_token": token, "client_id": st.MI_CLIENT_ID,
                        "expires_in": str(lifetime), "expires_on": str(exp),
                        "ext_expires_in": str(lifetime), "not_before": str(exp - lifetime),
                        "resource": resource, "token_type": "Bearer"})
