"""Leaf certificates for the service hostnames the proxy terminates TLS for
(`<app>.azurewebsites.net`, `<app>.<env>.<region>.azurecontainerapps.io`, ...), signed by the
test CA with openssl, one per host name, cached in $STATE/azure/front-certs/. Clients trust them
through the test CA like every other endpoint of the environment."""

import os
import re
import secrets
import ssl
import subprocess
import threading

HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


class Certs:
    def __init__(self, state_dir, ca_dir):
        self.dir = os.path.join(state_dir, "front-certs")
        self.ca_dir = ca_dir
        self.lock = threading.Lock()
        self.contexts = {}

    def available(self):
        return bool(self.ca_dir) and os.path.exists(os.path.join(self.ca_dir, "ca.key"))

    def context(self, host):
        """A server SSLContext for HOST, or None (no CA key, or openssl failed)."""
        host = host.lower()
        if not HOST_RE.match(host) or not self.available():
            return None
        with self.lock:
            ctx = self.contexts.get(host)
            if ctx is not None:
                return ctx
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            key = os.path.join(self.dir, "leaf.key")
            if not os.path.exists(key):
                if subprocess.run(["openssl", "genrsa", "-out", key, "2048"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode != 0:
                    return None
                os.chmod(key, 0o600)
            crt = os.path.join(self.dir, host + ".crt")
            if not os.path.exists(crt):
                csr, ext = crt + ".csr", crt + ".ext"
                with open(ext, "w") as f:
                    # an address (ACR's login server 127.0.0.1:5002) is named by an IP entry
                    san = ("IP:" if re.match(r"^[0-9.]+$", host) else "DNS:") + host
                    f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
                ok = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=hoist emulator front end",  # CN: at most 64 chars; the SAN names the host
                                     "-out", csr], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode == 0 and subprocess.run(
                    ["openssl", "x509", "-req", "-sha256", "-days", "3650", "-in", csr,
                     "-CA", os.path.join(self.ca_dir, "ca.pem"), "-CAkey", os.path.join(self.ca_dir, "ca.key"),
                     "-set_serial", str(secrets.randbits(63)), "-extfile", ext, "-out", crt + ".new"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
                for f in (csr, ext):
                    if os.path.exists(f):
                        os.remove(f)
                if not ok:
                    return None
                os.replace(crt + ".new", crt)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            self.contexts[host] = ctx
            return ctx
