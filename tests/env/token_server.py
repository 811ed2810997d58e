#!/usr/bin/env python3
"""Token service for hoist's local test registry (Docker token protocol + ACR OAuth2 endpoints).

Python 3 standard library only. JWTs are RS256, signed by calling `openssl dgst -sha256 -sign`;
the JWT header carries "x5c" (base64 DER of the self-signed certificate that is also the
registry's `rootcertbundle`) and "kid" (libtrust key id of the same key), which is what
distribution 2.8's `auth: token` mode verifies.

Endpoints (all on --listen, default 127.0.0.1:5003):

  GET  /token?service=S&scope=...&offline_token=true&client_id=...
       HTTP Basic auth: <user>:<password>, or 00000000-0000-0000-0000-000000000000:<refresh token>.
       No Authorization header: an anonymous token that grants nothing (like Docker Hub).
       -> {"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}
  POST /token   (form) grant_type=password (username, password) | refresh_token (refresh_token),
       service, scope (space separated), client_id, access_type=offline
       -> {"access_token", "token", "scope", "expires_in", "issued_at"[, "refresh_token"]}
  POST /oauth2/exchange (form) grant_type=access_token, service, [tenant], access_token=<AAD token>
       -> {"refresh_token"}. The AAD token is the fixed --aad-token, or an Entra access token of
       the Azure emulator (RS256, checked against --azure-dir/entra-jwks.json, unexpired, aud
       Resource Manager or https://containerregistry.azure.net).
  POST /oauth2/token    (form) grant_type=refresh_token|password, service, scope, refresh_token
       -> {"access_token"}
  GET  /oauth2/token    same as GET /token
  GET  /healthz         -> 200 "ok"

Bad credentials give 401 with {"errors":[{"code":"UNAUTHORIZED","message":...}]};
malformed requests give 400 with code "UNSUPPORTED" / "INVALID_REQUEST".

Refresh tokens are themselves signed JWTs (like ACR's), so they survive a restart of this server.

With --azure-dir, the admin users of the Azure emulator's registries ({"users": {name: [passwords]}}
in acr-users.json there, re-read when it changes) are accepted beside --user.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ACR_USER = "00000000-0000-0000-0000-000000000000"
KNOWN_ACTIONS = ("pull", "push", "delete", "*")
# ACR's own action names (az acr repository show-tags asks for metadata_read): granted as the
# registry action that does the same on the Docker registry API
ACR_ACTIONS = {"metadata_read": "pull", "content_read": "pull", "metadata_write": "push",
               "content_write": "push", "content_delete": "delete"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def rsa_verify(n: int, e: int, data: bytes, sig: bytes) -> bool:
    """RS256 (PKCS#1 v1.5 with SHA-256) signature check with the public key (n, e)."""
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    m = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    t = Signer.SHA256_PREFIX + hashlib.sha256(data).digest()
    return secrets.compare_digest(m, b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t)


def run_openssl(args, data=None):
    proc = subprocess.run(["openssl"] + args, input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), proc.stderr.decode(errors="replace")))
    return proc.stdout


class Signer:
    """RS256 signing through the openssl CLI; verification in pure Python (RSA PKCS#1 v1.5)."""

    # DigestInfo prefix for SHA-256 (RFC 8017, section 9.2, note 1)
    SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

    def __init__(self, key_path, cert_path):
        self.key_path = key_path
        cert_der = run_openssl(["x509", "-in", cert_path, "-outform", "DER"])
        self.x5c = [base64.b64encode(cert_der).decode("ascii")]
        spki_der = run_openssl(["pkey", "-in", key_path, "-pubout", "-outform", "DER"])
        self.kid = self.libtrust_key_id(spki_der)
        text = run_openssl(["rsa", "-in", key_path, "-pubout", "-noout", "-modulus"]).decode()
        self.n = int(text.strip().split("=", 1)[1], 16)
        self.e = 65537
        pub_text = run_openssl(["pkey", "-in", key_path, "-pubout", "-text_pub", "-noout"]).decode()
        m = re.search(r"Exponent:\s*(\d+)", pub_text)
        if m:
            self.e = int(m.group(1))
        self.k = (self.n.bit_length() + 7) // 8
        self.lock = threading.Lock()

    @staticmethod
    def libtrust_key_id(spki_der: bytes) -> str:
        # github.com/docker/libtrust keyIDFromCryptoKey: base32(sha256(SPKI DER)[:30]) in groups of 4
        digest = hashlib.sha256(spki_der).digest()[:30]
        enc = base64.b32encode(digest).decode("ascii").rstrip("=")
        return ":".join(enc[i:i + 4] for i in range(0, len(enc), 4))

    def sign(self, data: bytes) -> bytes:
        return run_openssl(["dgst", "-sha256", "-sign", self.key_path], data)

    def verify(self, data: bytes, sig: bytes) -> bool:
        return rsa_verify(self.n, self.e, data, sig)

    def make_jwt(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5c": self.x5c}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.sign(signing_input.encode("ascii"))
        return signing_input + "." + b64url(sig)

    def parse_jwt(self, token: str):
        """Returns the claims of a JWT signed by us, or None."""
        try:
            h, p, s = token.split(".")
            header = json.loads(b64url_decode(h))
            if header.get("alg") != "RS256":
                return None
            if not self.verify((h + "." + p).encode("ascii"), b64url_decode(s)):
                return None
            return json.loads(b64url_decode(p))
        except (ValueError, binascii.Error, json.JSONDecodeError):
            return None


class AuthError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def parse_scopes(values):
    """values: list of scope strings (each possibly space separated).
    'repository:host:5000/name:pull,push' -> type 'repository', name 'host:5000/name'."""
    out = []
    for value in values:
        for item in value.split():
            parts = item.split(":")
            if len(parts) < 3:
                raise AuthError(400, "INVALID_REQUEST", "invalid scope %r" % item)
            rtype = parts[0]
            actions = [a for a in parts[-1].split(",") if a]
            name = ":".join(parts[1:-1])
            # "repository(plugin)" resource class: keep the type without the class
            rtype = rtype.split("(", 1)[0]
            out.append((rtype, name, actions))
    return out


ACR_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net",
                 "https://containerregistry.azure.net")


class AzureFiles:
    """What the Azure emulator writes to its state dir: Entra's JWKS, the registries' admin users."""

    def __init__(self, directory):
        self.dir = directory
        self.cache = {}

    def load(self, name):
        if not self.dir:
            return None
        path = os.path.join(self.dir, name)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return None
        hit = self.cache.get(name)
        if hit and hit[0] == mtime:
            return hit[1]
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        self.cache[name] = (mtime, doc)
        return doc

    def user_ok(self, username, password):
        doc = self.load("acr-users.json") or {}
        return any(secrets.compare_digest(password, p) for p in (doc.get("users") or {}).get(username, []))

    def entra_claims(self, token):
        """Claims of an Entra access token of the emulator, or None when it does not verify."""
        doc = self.load("entra-jwks.json")
        if not doc:
            return None
        try:
            h, p, s = token.split(".")
            claims = json.loads(b64url_decode(p))
            sig = b64url_decode(s)
            keys = [(int.from_bytes(b64url_decode(k["n"]), "big"),
                     int.from_bytes(b64url_decode(k["e"]), "big")) for k in doc.get("keys", [])]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        data = (h + "." + p).encode("ascii")
        if isinstance(claims, dict) and any(rsa_verify(n, e, data, sig) for n, e in keys):
            return claims
        return None


class TokenService:
    def __init__(self, args, signer):
        self.args = args
        self.signer = signer
        self.azure = AzureFiles(args.azure_dir)

    # --- credentials -------------------------------------------------------------------
    def check_password(self, username, password, service=None):
        """Returns the subject for valid credentials, raises AuthError otherwise."""
        if username == self.args.user and secrets.compare_digest(password, self.args.password):
            return username
        if username != ACR_USER and self.azure.user_ok(username, password):
            return username
        if username == ACR_USER:
            claims = self.check_refresh_token(password, service)
            return claims["sub"]
        raise AuthError(401, "UNAUTHORIZED", "authentication required: invalid username or password")

    def check_refresh_token(self, token, service):
        claims = self.signer.parse_jwt(token or "")
        now = int(time.time())
        if (not claims or claims.get("grant_type") != "refresh_token"
                or claims.get("iss") != self.args.issuer
                or int(claims.get("exp", 0)) < now):
            raise AuthError(401, "UNAUTHORIZED", "invalid or expired refresh token")
        if service and claims.get("aud") not in (service, None):
            raise AuthError(401, "UNAUTHORIZED", "refresh token was issued for another service")
        return claims

    def check_service(self, service):
        if service and service != self.args.service:
            raise AuthError(400, "INVALID_REQUEST", "unknown service %r (this server serves %r)"
                            % (service, self.args.service))
        return service or self.args.service

    # --- tokens ------------------------------------------------------------------------
    def access_token(self, subject, service, scopes):
        now = int(time.time())
        access = []
        if subject:  # anonymous gets nothing
            for rtype, name, actions in scopes:
                if rtype == "registry" and name == "catalog":
                    granted = ["*"] if actions else []
                elif rtype == "repository":
                    granted = []
                    for a in actions:
                        a = ACR_ACTIONS.get(a, a)
                        if a in KNOWN_ACTIONS and a not in granted:
                            granted.append(a)
                else:
                    granted = []
                access.append({"type": rtype, "name": name, "actions": granted})
        claims = {
            "iss": self.args.issuer,
            "sub": subject or "",
            "aud": service,
            "exp": now + self.args.ttl,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return self.signer.make_jwt(claims), now

    def refresh_token(self, subject, service):
        now = int(time.time())
        claims = {
            "iss": self.args.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + self.args.refresh_ttl,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "grant_type": "refresh_token",
            "tenant": "00000000-0000-0000-0000-00000000a11d",
        }
        return self.signer.make_jwt(claims)

    @staticmethod
    def iso(ts):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    # --- endpoints ---------------------------------------------------------------------
    def get_token(self, query, basic):
        service = self.check_service(first(query, "service"))
        scopes = parse_scopes(query.get("scope", []))
        subject = None
        if basic is not None:
            subject = self.check_password(basic[0], basic[1], service)
        token, now = self.access_token(subject, service, scopes)
        body = {"token": token, "access_token": token, "expires_in": self.args.ttl,
                "issued_at": self.iso(now)}
        if subject and first(query, "offline_token") in ("true", "1"):
            body["refresh_token"] = self.refresh_token(subject, service)
        return body

    def post_token(self, form):
        grant = first(form, "grant_type")
        service = self.check_service(first(form, "service"))
        scopes = parse_scopes(form.get("scope", []))
        if grant == "password":
            subject = self.check_password(first(form, "username") or "", first(form, "password") or "",
                                          service)
            want_refresh = first(form, "access_type") == "offline"
        elif grant == "refresh_token":
            claims = self.check_refresh_token(first(form, "refresh_token"), service)
            subject = claims["sub"]
            want_refresh = True
        else:
            raise AuthError(400, "UNSUPPORTED", "unsupported grant_type %r" % grant)
        token, now = self.access_token(subject, service, scopes)
        body = {"access_token": token, "token": token, "scope": " ".join(form.get("scope", [])),
                "expires_in": self.args.ttl, "issued_at": self.iso(now)}
        if want_refresh:
            body["refresh_token"] = (first(form, "refresh_token") if grant == "refresh_token"
                                     else self.refresh_token(subject, service))
        return body

    def acr_exchange(self, form):
        grant = first(form, "grant_type")
        service = self.check_service(first(form, "service"))
        if grant not in ("access_token", "access_token_refresh_token"):
            raise AuthError(400, "UNSUPPORTED", "unsupported grant_type %r" % grant)
        aad = first(form, "access_token") or ""
        if secrets.compare_digest(aad, self.args.aad_token):
            return {"refresh_token": self.refresh_token("aad-principal", service)}
        claims = self.azure.entra_claims(aad)
        if claims is None:
            raise AuthError(401, "UNAUTHORIZED", "invalid AAD access token")
        try:
            expired = float(claims.get("exp", 0)) < time.time()
        except (TypeError, ValueError):
            expired = True
        if expired:
            raise AuthError(401, "UNAUTHORIZED", "the AAD access token has expired")
        if str(claims.get("aud", "")).rstrip("/") not in ACR_AUDIENCES:
            raise AuthError(401, "UNAUTHORIZED", "the AAD access token was issued for %r, not for "
                            "Resource Manager or the container registry" % claims.get("aud"))
        return {"refresh_token": self.refresh_token(str(claims.get("oid") or "aad-principal"), service)}

    def acr_token(self, form):
        grant = first(form, "grant_type")
        service = self.check_service(first(form, "service"))
        scopes = parse_scopes(form.get("scope", []))
        if grant == "refresh_token":
            subject = self.check_refresh_token(first(form, "refresh_token"), service)["sub"]
        elif grant == "password":
            subject = self.check_password(first(form, "username") or "", first(form, "password") or "",
                                          service)
        else:
            raise AuthError(400, "UNSUPPORTED", "unsupported grant_type %r" % grant)
        token, _ = self.access_token(subject, service, scopes)
        return {"access_token": token}


def first(d, key):
    v = d.get(key)
    return v[0] if v else None


class Handler(BaseHTTPRequestHandler):
    server_version = "hoist-token-server/1"
    protocol_version = "HTTP/1.1"
    service: TokenService = None  # set in main

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))

    def send_json(self, status, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, err: AuthError):
        headers = []
        if err.status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="hoist-token-server"'))
        self.send_json(err.status, {"errors": [{"code": err.code, "message": err.message}]}, headers)

    def basic_auth(self):
        h = self.headers.get("Authorization")
        if not h:
            return None
        scheme, _, value = h.partition(" ")
        if scheme.lower() != "basic":
            raise AuthError(401, "UNAUTHORIZED", "unsupported authorization scheme %r" % scheme)
        try:
            user, sep, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(401, "UNAUTHORIZED", "malformed basic credentials")
        if not sep:
            raise AuthError(401, "UNAUTHORIZED", "malformed basic credentials")
        return user, password

    def read_form(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and ctype not in ("application/x-www-form-urlencoded", ""):
            raise AuthError(400, "INVALID_REQUEST", "expected application/x-www-form-urlencoded body")
        return parse_qs(raw, keep_blank_values=False)

    def do_GET(self):
        url = urlsplit(self.path)
        try:
            if url.path in ("/healthz", "/health"):
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif url.path in ("/token", "/oauth2/token"):
                query = parse_qs(url.query, keep_blank_values=False)
                self.send_json(200, self.service.get_token(query, self.basic_auth()))
            else:
                self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
        except AuthError as e:
            self.send_error_json(e)

    def do_POST(self):
        url = urlsplit(self.path)
        try:
            if url.path == "/token":
                self.send_json(200, self.service.post_token(self.read_form()))
            elif url.path == "/oauth2/exchange":
                self.send_json(200, self.service.acr_exchange(self.read_form()))
            elif url.path == "/oauth2/token":
                self.send_json(200, self.service.acr_token(self.read_form()))
            else:
                self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
        except AuthError as e:
            self.send_error_json(e)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:5003")
    p.add_argument("--key", required=True, help="PEM RSA private key")
    p.add_argument("--cert", required=True, help="PEM certificate of --key (registry rootcertbundle)")
    p.add_argument("--issuer", default="hoist-token-server")
    p.add_argument("--service", default="127.0.0.1:5002")
    p.add_argument("--user", default="hoist")
    p.add_argument("--password", default="hoist-token-secret")
    p.add_argument("--aad-token", default="hoist-aad-token")
    p.add_argument("--ttl", type=int, default=300, help="access token lifetime (s)")
    p.add_argument("--refresh-ttl", type=int, default=86400, help="refresh token lifetime (s)")
    p.add_argument("--azure-dir", help="the Azure emulator's state dir (entra-jwks.json, acr-users.json)")
    p.add_argument("--pid-file")
    args = p.parse_args()

    host, _, port = args.listen.rpartition(":")
    Handler.service = TokenService(args, Signer(args.key, args.cert))
    httpd = ThreadingHTTPServer((host, int(port)), Handler)
    httpd.daemon_threads = True
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    sys.stderr.write("hoist token server listening on http://%s (service %s, issuer %s)\n"
                     % (args.listen, args.service, args.issuer))
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
