"""RSA keys and RS256 JWTs with the standard library only.

A key is made once by `openssl genrsa` and read back through `openssl rsa -text`; signing is
PKCS#1 v1.5 with pow() and the CRT, verification is pow(sig, e, n) compared with the expected
encoding. Keys live in the state directory, so tokens survive a restart of the emulator.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import time

# DER prefix of DigestInfo{sha256} (RFC 8017 section 9.2, note 1)
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class JwtError(Exception):
    """A token that is malformed, badly signed or out of its time window; `reason` says which."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason  # malformed | signature | expired | not_yet_valid | unknown_key


class PublicKey:
    def __init__(self, n: int, e: int, kid: str):
        self.n, self.e, self.kid = n, e, kid
        self.k = (n.bit_length() + 7) // 8

    def jwk(self):
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": int_b64(self.n), "e": int_b64(self.e)}

    def verify(self, data: bytes, sig: bytes) -> bool:
        if len(sig) != self.k:
            return False
        m = pow(int.from_bytes(sig, "big"), self.e, self.n).to_bytes(self.k, "big")
        t = SHA256_PREFIX + hashlib.sha256(data).digest()
        expected = b"\x00\x01" + b"\xff" * (self.k - len(t) - 3) + b"\x00" + t
        return secrets.compare_digest(m, expected)


class PrivateKey(PublicKey):
    """An RSA key kept at PATH (PEM, 0600); made with openssl on first use."""

    FIELDS = ("modulus", "publicExponent", "privateExponent", "prime1", "prime2",
              "exponent1", "exponent2", "coefficient")

    def __init__(self, path: str):
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            subprocess.run(["openssl", "genrsa", "-out", path + ".new", "2048"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.chmod(path + ".new", 0o600)
            os.replace(path + ".new", path)
        text = subprocess.run(["openssl", "rsa", "-in", path, "-text", "-noout"], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
        vals = self.parse_text(text)
        n, e = vals["modulus"], vals["publicExponent"]
        super().__init__(n, e, b64url(hashlib.sha256(n.to_bytes(256, "big")).digest()[:16]))
        self.p, self.q = vals["prime1"], vals["prime2"]
        self.dp, self.dq, self.qinv = vals["exponent1"], vals["exponent2"], vals["coefficient"]

    @classmethod
    def parse_text(cls, text):
        """`openssl rsa -text` prints each field as a label and colon-separated hex lines."""
        vals, current, digits = {}, None, []
        for line in text.splitlines():
            label = re.match(r"^(\w+):\s*(.*)$", line)
            if label:
                if current:
                    vals[current] = int("".join(digits), 16)
                current, digits = label.group(1), []
                inline = re.match(r"^\d+ \(0x([0-9a-f]+)\)", label.group(2))
                if inline:  # publicExponent: 65537 (0x10001)
                    vals[current], current = int(inline.group(1), 16), None
                continue
            if current:
                digits.append(line.strip().replace(":", ""))
        if current:
            vals[current] = int("".join(digits), 16)
        missing = [f for f in cls.FIELDS if f not in vals]
        if missing:
            raise ValueError("openssl rsa -text lacks %s" % ", ".join(missing))
        return vals

    def public(self):
        return PublicKey(self.n, self.e, self.kid)

    def sign(self, data: bytes) -> bytes:
        t = SHA256_PREFIX + hashlib.sha256(data).digest()
        m = int.from_bytes(b"\x00\x01" + b"\xff" * (self.k - len(t) - 3) + b"\x00" + t, "big")
        s1, s2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = s2 + self.q * ((self.qinv * (s1 - s2)) % self.p)
        return s.to_bytes(self.k, "big")

    def make_jwt(self, claims: dict, typ="JWT") -> str:
        header = {"typ": typ, "alg": "RS256", "kid": self.kid}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        return signing_input + "." + b64url(self.sign(signing_input.encode("ascii")))


def decode_unverified(token: str):
    """(header, claims) of a compact JWT, without checking anything; raises JwtError."""
    try:
        h, p, _ = token.split(".")
        header, claims = json.loads(b64url_decode(h)), json.loads(b64url_decode(p))
    except ValueError as e:  # includes json and base64 (binascii.Error) failures
        raise JwtError("malformed", "the token is not a compact JWT (%s)" % type(e).__name__)
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("malformed", "the token's header or payload is not a JSON object")
    return header, claims


def verify(token: str, keys, leeway=0, now=None):
    """Claims of TOKEN if an RS256 signature by one of KEYS (PublicKey list) checks out and
    exp/nbf hold; raises JwtError otherwise."""
    header, claims = decode_unverified(token)
    if header.get("alg") != "RS256":
        raise JwtError("malformed", "unsupported JWT alg %r (RS256 expected)" % header.get("alg"))
    candidates = [k for k in keys if k.kid == header.get("kid")] or list(keys)
    h, p, s = token.split(".")
    try:
        sig = b64url_decode(s)
    except ValueError:
        raise JwtError("malformed", "the JWT signature is not base64url")
    if not any(k.verify((h + "." + p).encode("ascii"), sig) for k in candidates):
        raise JwtError("signature", "the JWT signature does not verify with the issuer's keys")
    now = time.time() if now is None else now
    try:
        exp, nbf = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
    except (TypeError, ValueError):
        raise JwtError("malformed", "the JWT's exp or nbf is not a number")
    if "exp" not in claims or exp + leeway < now:
        raise JwtError("expired", "the JWT expired at %s" % int(exp))
    if nbf - leeway > now:
        raise JwtError("not_yet_valid", "the JWT is not valid before %s" % int(nbf))
    return claims


def jwks(keys):
    return {"keys": [k.jwk() for k in keys]}


def keys_from_jwks(doc):
    """PublicKey list from a JWKS document (RSA keys only)."""
    out = []
    for k in doc.get("keys", []):
        if k.get("kty") == "RSA":
            out.append(PublicKey(int.from_bytes(b64url_decode(k["n"]), "big"),
                                 int.from_bytes(b64url_decode(k["e"]), "big"), k.get("kid")))
    return out
