"""The HTTP(S) plumbing every endpoint shares: a threaded server that does its TLS handshake in
the worker thread, a handler with JSON helpers, request logging, injected faults and the
control endpoint (/_emulator/...)."""

import json
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 8 * 1024 * 1024


class HttpError(Exception):
    """Raised by a route; the server turns it into a response with the service's error shape."""

    def __init__(self, status, body, headers=()):
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, list(headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, state, name, tls=None):
        self.state, self.name = state, name
        self.tls = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.tls = ctx
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls:
            # the handshake happens in the worker thread (Handler.setup), so a slow or plain-text
            # client never blocks the accept loop
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hoist-azure-emulator/1"
    timeout = 60

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError, socket.timeout):
                self.close_connection = True
                self.rfile = _Empty()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), self.server.name,
                                         fmt % args))

    @property
    def state(self):
        return self.server.state

    # --- request ------------------------------------------------------------------------
    def parse(self):
        url = urlsplit(self.path)
        self.url_path = url.path
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise HttpError(411, self.error_body(411, "LengthRequired",
                                                 "chunked request bodies are not supported"))
        n = int(length) if length and length.isdigit() else 0
        if n > MAX_BODY:
            raise HttpError(413, self.error_body(413, "RequestEntityTooLarge",
                                                 "request body of %d bytes is too large" % n))
        self.raw_body = self.rfile.read(n) if n else b""

    def json_body(self):
        if not self.raw_body.strip():
            return None
        try:
            return json.loads(self.raw_body)
        except ValueError as e:
            raise HttpError(400, self.error_body(400, "InvalidRequestContent",
                                                 "The request content was invalid and could not be "
                                                 "deserialized: %s" % e))

    def form(self):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.raw_body and ctype != "application/x-www-form-urlencoded":
            return None
        return {k: v[-1] for k, v in parse_qs(self.raw_body.decode("utf-8", "replace")).items()}

    # --- response -----------------------------------------------------------------------
    def send(self, status, body=None, headers=(), ctype="application/json; charset=utf-8"):
        if body is None:
            data = b""
        elif isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in list(self.common_headers()) + list(headers):
            self.send_header(k, v)
        if data or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def common_headers(self):
        return []

    def error_body(self, status, code, message):
        """The service's error envelope; subclasses override (ARM, Entra)."""
        return {"error": {"code": code, "message": message}}

    # --- dispatch -----------------------------------------------------------------------
    def handle_any(self):
        try:
            self.parse()
            if self.url_path.startswith("/_emulator/") or self.url_path == "/_emulator":
                from . import control
                status, body = control.handle(self)
                self.send(status, body)
                return
            with self.state.lock:
                rule = self.state.faults.take(self.server.name, self.command, self.url_path)
            if rule:
                self.send_fault(rule)
                return
            self.route()
        except HttpError as e:
            self.send(e.status, e.body, e.headers)
        except Exception as e:  # the emulator's own bug: say so instead of hanging the client
            import traceback
            traceback.print_exc()
            self.send(500, self.error_body(500, "InternalServerError",
                                           "emulator bug: %s: %s" % (type(e).__name__, e)))

    def send_fault(self, rule):
        status = int(rule.get("status", 500))
        headers = []
        if status in (429, 503):
            headers.append(("Retry-After", str(rule.get("retry_after",
                                                       self.state.setting("retry_after")))))
        code = rule.get("code") or {429: "TooManyRequests", 500: "InternalServerError",
                                    503: "ServiceUnavailable"}.get(status, "InjectedFault")
        message = rule.get("message") or "injected fault (%d) from the emulator's control endpoint" % status
        self.send(status, self.error_body(status, code, message), headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    def route(self):
        raise HttpError(404, self.error_body(404, "NotFound", "no such endpoint %s" % self.url_path))


class _Empty:
    def readline(self, *a):
        return b""

    def read(self, *a):
        return b""


def serve(state, name, port, handler, tls=None):
    """Starts a server thread on 127.0.0.1:PORT; returns the server."""
    import threading
    srv = Server(("127.0.0.1", port), handler, state, name, tls)
    threading.Thread(target=srv.serve_forever, name=name, daemon=True).start()
    return srv
