"""A forward HTTP proxy on 127.0.0.1:5014 for the service hostnames of emulated workloads
(`<label>.<region>.azurecontainer.io`, a group's ip, `<app>.azurewebsites.net`,
`<app>.<env>.<region>.azurecontainerapps.io`, the SCM and log-stream hosts): `GET
http://host:port/path` and `CONNECT host:port` are relayed to the 127.0.0.1 port that serves the
host. It connects to nothing else but the emulator's own ports and ACR's login server (the
token registry, with TLS ended here): a host no provider resolves gets 502 with the reason.

A resolver (state.proxy_resolvers) maps (host, port) to None, a 127.0.0.1 port (relayed as is:
a CONNECT is a raw tunnel), or (port, True): the proxy terminates TLS itself with a certificate
for the host signed by the test CA (certs.py) and relays the plain HTTP request, as the
services' front ends do for HTTPS on 443. Resolvers run once per request (each relayed request
gets `Connection: close`), so a weighted choice (Container Apps traffic) is made per request."""

import select
import socket
import socketserver
import ssl
import sys
import time
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


class ProxyHandler(socketserver.StreamRequestHandler):
    timeout = 300
    rbufsize = 0  # unbuffered: after the head, every byte is still in the socket for relay()

    def log(self, msg):
        sys.stderr.write("%s proxy %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg))

    def reply(self, status, reason, text):
        body = text.encode()
        self.wfile.write(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                          "Connection: close\r\n\r\n" % (status, reason, len(body))).encode() + body)

    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.rfile.readline(MAX_HEAD)
            if not chunk:
                return
            head += chunk
            if len(head) > MAX_HEAD:
                self.reply(431, "Request Header Fields Too Large", "request head too large\n")
                return
            if head == b"\r\n":
                head = b""
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            self.reply(400, "Bad Request", "malformed request line\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            path = None
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                self.reply(400, "Bad Request", "a forward proxy needs an absolute http:// URL, not %r\n"
                           % target)
                return
            host, port = url.hostname, str(url.port or 80)
            path = (url.path or "/") + ("?" + url.query if url.query else "")
        if not port.isdigit():
            self.reply(400, "Bad Request", "bad port in %r\n" % target)
            return
        local, terminate = None, False
        for resolve in self.server.state.proxy_resolvers:
            local = resolve(host.lower(), int(port))
            if local:
                break
        if isinstance(local, tuple):
            local, terminate = local
        self.log("%s %s -> %s%s" % (method, target, local or "unresolved", " (tls)" if terminate else ""))
        if not local:
            self.reply(502, "Bad Gateway", "hoist azure emulator proxy: no emulated workload answers "
                       "on %s:%s\n" % (host, port))
            return
        if method == "CONNECT" and terminate:
            self.terminate_tls(host, port, local)
            return
        try:
            up = socket.create_connection(("127.0.0.1", local), timeout=10)
        except OSError as e:
            self.reply(502, "Bad Gateway", "hoist azure emulator proxy: %s:%s (127.0.0.1:%d) refused: "
                       "%s\n" % (host, port, local, e))
            return
        with up:
            if method == "CONNECT":
                self.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                out = ["%s %s %s" % (method, path, version)]
                out += [l for l in lines[1:] if l and l.split(":", 1)[0].strip().lower() not in HOP_HEADERS]
                out.append("Connection: close")
                up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            self.relay(up)

    def terminate_tls(self, host, port, local):
        """CONNECT to a host whose front end the emulator plays: TLS ends here, the request goes
        on as plain HTTP (with X-Forwarded-Proto: https) to the 127.0.0.1 port."""
        ctx = self.server.state.certs.context(host) if self.server.state.certs else None
        if ctx is None:
            self.reply(502, "Bad Gateway", "hoist azure emulator proxy: no certificate for %s (the "
                       "emulator needs the test CA's key: server.py --ca-dir)\n" % host)
            return
        self.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        try:
            tls = ctx.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.log("TLS handshake for %s failed: %s" % (host, e))
            return
        head = b""
        tls.settimeout(self.timeout)
        try:
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                head += chunk
                if len(head) > MAX_HEAD:
                    return
        except (ssl.SSLError, OSError):
            return
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            up = socket.create_connection(("127.0.0.1", local), timeout=10)
        except OSError as e:
            body = ("hoist azure emulator proxy: %s:%s (127.0.0.1:%d) refused: %s\n" % (host, port, local, e)).encode()
            tls.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n" % len(body) + body)
            return
        with up:
            out = [lines[0]] + [l for l in lines[1:] if l and l.split(":", 1)[0].strip().lower()
                                not in HOP_HEADERS | {"x-forwarded-proto"}]
            out += ["X-Forwarded-Proto: https", "Connection: close"]
            up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
            self.relay(up, tls)
        try:
            tls.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass

    def relay(self, up, client=None):
        client = client or self.connection
        socks = [client, up]
        while True:
            if isinstance(client, ssl.SSLSocket) and client in socks and client.pending():
                readable = [client]
            else:
                readable, _, _ = select.select(socks, [], [], self.timeout)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    if s is up:
                        return
                    try:
                        up.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    socks = [up]
                    continue
                (up if s is client else client).sendall(data)


class ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def own_ports(state):
    """The emulator's own endpoints (Resource Manager, Entra, ...) through the proxy, relayed as
    they are (a CONNECT is a raw tunnel): a client that sends every https request through the
    proxy (to reach ACR's data plane, see containerregistry.py: NO_PROXY cannot name one port of
    127.0.0.1) still reaches them."""
    ports = {int(url.rsplit(":", 1)[1]) for name, url in state.hosts.items() if name != "proxy"}

    def resolve(host, port):
        return port if host in ("127.0.0.1", "localhost") and port in ports else None
    return resolve


def start(state, port, tls):
    import threading
    srv = ProxyServer(("127.0.0.1", port), ProxyHandler)
    srv.state = state
    state.proxy_resolvers.append(own_ports(state))
    threading.Thread(target=srv.serve_forever, name="proxy", daemon=True).start()
    return srv
