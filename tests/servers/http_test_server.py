#!/usr/bin/env python3
"""HTTP test server for hoist's HTTP client tests (python3 standard library only).

Listens on 127.0.0.1 (port from --port, 0 = any) and prints the port on its first stdout
line. A second listener (same handlers) serves redirects "to another port"; its port is in
GET /info. --unix PATH also serves on a unix socket. --port-file PATH writes the port there
too (for callers that cannot read our stdout while we run). --tls-cert/--tls-key add an
HTTPS listener (its port in /info as tls_port); --tls-client-ca makes it ask for client
certificates (their CN shows in /echo as client_cert). The server stops by itself after
--lifetime seconds, or when stdin closes with --exit-on-stdin-eof.

Endpoints (any method unless noted):
  /status/<code>              that status, JSON body {"status": code}
  /echo                       JSON: method, path, query, headers (lower-cased), body, request_line
  /slow?delay=S               waits S seconds, then 200; counted in /stats (max_active)
  /stats, /stats/reset        {"active", "max_active", "count"} of /slow requests
  /download?size=N[&chunked=1] N deterministic bytes; X-Checksum: their sha256
  /upload                     reads the body (length or chunked): {"size", "sha256"}
  /redirect?to=URL[&code=302] redirect to URL (with a body curl must ignore)
  /redirect-other?path=P      redirect to the same path on the second listener
  /chunked?n=N&delay=S        N chunks "chunk-i\\n", chunked encoding
  /json                       {"hello": "world", "n": 1} as application/json; charset=utf-8
  /text                       plain text
  /headers?Name=value         responds with those headers
  /info                       {"port", "other_port", "unix", "tls_port"}
  CONNECT 127.0.0.1:P         a proxy tunnel (HTTPS through a proxy); /proxy-stats counts them
Absolute-form request lines ("GET http://host/path", as sent to a proxy) are served too:
/echo then shows the request_line, which is how tests see a proxy being used.
"""
import argparse
import hashlib
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATS_LOCK = threading.Lock()
STATS = {"active": 0, "max_active": 0, "count": 0}
PROXY_STATS = {"connects": 0, "last": None}
INFO = {}
PATTERN = bytes(range(256)) * 256  # 64 KiB block, repeated


def payload(size):
    """Yields `size` deterministic bytes in blocks."""
    left = size
    block = 0
    while left > 0:
        chunk = PATTERN[: min(left, len(PATTERN))]
        # vary blocks so a dropped or repeated block changes the checksum
        chunk = bytes([block % 251]) + chunk[1:] if chunk else chunk
        yield chunk
        left -= len(chunk)
        block += 1


def payload_sha256(size):
    h = hashlib.sha256()
    for c in payload(size):
        h.update(c)
    return h.hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # Headers and body go out in two writes: without TCP_NODELAY the second waits for a
        # delayed ACK (40 ms a request). Not on unix sockets, which have no such option.
        if self.request.family != socket.AF_UNIX:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
    server_version = "hoist-test/1"

    def log_message(self, fmt, *args):  # quiet; client_address is '' on a unix socket
        pass

    def address_string(self):
        return "test"

    # ------------------------------------------------------------ helpers
    def target(self):
        path = self.path
        if path.startswith("http://") or path.startswith("https://"):
            parts = urlsplit(path)
            path = parts.path + ("?" + parts.query if parts.query else "")
        parts = urlsplit(path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            for piece in self.chunks_in():
                yield piece
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            piece = self.rfile.read(min(left, 1 << 16))
            if not piece:
                break
            left -= len(piece)
            yield piece

    def chunks_in(self):
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            left = size
            while left > 0:
                piece = self.rfile.read(left)
                if not piece:
                    return
                left -= len(piece)
                yield piece
            self.rfile.readline()

    def send(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        if status in (204, 304):
            body = b""  # these have no body: sending one would corrupt the next response
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def start_chunked(self, status, ctype, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # ------------------------------------------------------------ dispatch
    def handle_any(self):
        path, q = self.target()
        route = path.rstrip("/") or "/"
        if route.startswith("/status/"):
            body = b"".join(self.read_body())
            code = int(route.split("/")[2])
            return self.send(code, {"status": code, "received": len(body)})
        handler = getattr(self, "ep_" + route.strip("/").replace("/", "_").replace("-", "_"), None)
        if handler is None:
            b"".join(self.read_body())
            return self.send(404, {"error": "no such endpoint", "path": path})
        return handler(q)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    def do_CONNECT(self):
        """An HTTPS proxy's tunnel, to 127.0.0.1 only; counted in /proxy-stats."""
        host, _, port = self.path.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            return self.send(403, {"error": "tunnels go to 127.0.0.1 only"})
        upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        with STATS_LOCK:
            PROXY_STATS["connects"] += 1
            PROXY_STATS["last"] = self.path
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        other = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        other.start()
        pump(self.connection, upstream)
        other.join(10)
        upstream.close()

    # ------------------------------------------------------------ endpoints
    def ep_echo(self, q):
        body = b"".join(self.read_body())
        path, query = self.target()
        self.send(200, {
            "method": self.command,
            "path": path,
            "query": query,
            "request_line": self.requestline,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "body_size": len(body),
            "peer": list(self.client_address) if isinstance(self.client_address, tuple) else [],
            "client_cert": self.client_cert_cn(),
        })

    def client_cert_cn(self):
        getpeercert = getattr(self.connection, "getpeercert", None)
        cert = getpeercert() if getpeercert else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def ep_slow(self, q):
        b"".join(self.read_body())
        with STATS_LOCK:
            STATS["active"] += 1
            STATS["count"] += 1
            STATS["max_active"] = max(STATS["max_active"], STATS["active"])
        try:
            time.sleep(float(q.get("delay", "0.2")))
        finally:
            with STATS_LOCK:
                STATS["active"] -= 1
        self.send(200, {"slept": float(q.get("delay", "0.2"))})

    def ep_stats(self, q):
        with STATS_LOCK:
            self.send(200, dict(STATS))

    def ep_stats_reset(self, q):
        b"".join(self.read_body())
        with STATS_LOCK:
            STATS.update(active=0, max_active=0, count=0)
            self.send(200, dict(STATS))

    def ep_download(self, q):
        size = int(q.get("size", "1048576"))
        headers = {"X-Checksum": payload_sha256(size)}
        if q.get("chunked"):
            self.start_chunked(200, "application/octet-stream", headers)
            for c in payload(size):
                self.chunk(c)
            self.chunk(b"")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Checksum", headers["X-Checksum"])
        self.end_headers()
        if self.command != "HEAD":
            for c in payload(size):
                self.wfile.write(c)

    def ep_upload(self, q):
        h = hashlib.sha256()
        size = 0
        for piece in self.read_body():
            h.update(piece)
            size += len(piece)
        self.send(200, {"size": size, "sha256": h.hexdigest(),
                        "chunked": self.headers.get("Transfer-Encoding", "") == "chunked"})

    def ep_redirect(self, q):
        b"".join(self.read_body())
        self.send(int(q.get("code", "302")), "redirect body that must not be seen",
                  "text/plain", {"Location": q["to"], "X-Redirect": "yes"})

    def ep_redirect_other(self, q):
        b"".join(self.read_body())
        to = "http://127.0.0.1:%d%s" % (INFO["other_port"], q.get("path", "/echo"))
        self.send(int(q.get("code", "302")), "", "text/plain", {"Location": to})

    def ep_chunked(self, q):
        self.start_chunked(200, "text/plain")
        for i in range(int(q.get("n", "5"))):
            self.chunk(b"chunk-%d\n" % i)
            self.wfile.flush()
            time.sleep(float(q.get("delay", "0.01")))
        self.chunk(b"")

    def ep_json(self, q):
        self.send(200, {"hello": "world", "n": 1}, "application/json; charset=utf-8")

    def ep_text(self, q):
        self.send(200, "plain text\n", "text/plain")

    def ep_headers(self, q):
        self.send(200, "", "text/plain", q)

    def ep_proxy_stats(self, q):
        with STATS_LOCK:
            self.send(200, dict(PROXY_STATS))

    def ep_info(self, q):
        self.send(200, INFO)


class QuietErrors:
    def handle_error(self, request, client_address):
        pass  # a client that hangs up early (cancel, timeout) is part of the tests


class TCPServer(QuietErrors, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # 100 concurrent connects must not overflow the backlog


class TLSServer(TCPServer):
    """Handshakes in the request's thread, so one bad client cannot stall the others."""

    def finish_request(self, request, client_address):
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        super().finish_request(request, client_address)


class UnixServer(QuietErrors, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--port-file")
    ap.add_argument("--lifetime", type=float, default=600)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    ap.add_argument("--tls-cert", help="also serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca", help="ask HTTPS clients for a certificate from this CA")
    args = ap.parse_args()

    main_server = TCPServer(("127.0.0.1", args.port), Handler)
    other = TCPServer(("127.0.0.1", 0), Handler)
    INFO.update(port=main_server.server_address[1], other_port=other.server_address[1])
    serve(main_server)
    serve(other)
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        serve(UnixServer(args.unix, Handler))
        INFO["unix"] = args.unix
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            ctx.load_verify_locations(args.tls_client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        tls = TLSServer(("127.0.0.1", 0), Handler)
        tls.ctx = ctx
        INFO["tls_port"] = tls.server_address[1]
        serve(tls)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % INFO["port"])
        os.rename(tmp, args.port_file)  # readers never see a half-written file
    print(INFO["port"], flush=True)

    if args.exit_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    time.sleep(args.lifetime)
    os._exit(0)


if __name__ == "__main__":
    main()
