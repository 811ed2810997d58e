#!/usr/bin/env python3
"""An HTTP server with programmable answers, for hoist.verify's tests (stdlib only).

Listens on 127.0.0.1 (port 0 = any free one), writes the port to --port-file, and exits when
its parent process goes away or after --max-time seconds. Every path answers according to
its query string:

  status=N            status of the answer (default 200)
  body=TEXT           body (default "ok"); json=TEXT sends TEXT with Content-Type application/json
  delay=SECONDS       wait before answering
  fail=N              the first N requests for this `key` (default: the path) get
  fail_status=M       status M (default 503) and body "not ready"
  key=NAME            counter name for fail=
  drop=1              close the connection without answering

  GET /_count?key=NAME  -> {"count": requests seen for NAME}
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

COUNTS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read the results, not the log
        pass

    def answer(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        if status in (204, 304) or status < 200:  # these answers have no body (RFC 9110)
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length).decode(errors="replace") if length else ""
        key = q.get("key", url.path)
        if url.path == "/_count":
            with LOCK:
                return self.answer(200, json.dumps({"count": COUNTS.get(key, 0)}), "application/json")
        with LOCK:
            COUNTS[key] = COUNTS.get(key, 0) + 1
            seen = COUNTS[key]
        if "delay" in q:
            time.sleep(float(q["delay"]))
        if q.get("drop") == "1":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if seen <= int(q.get("fail", "0")):
            return self.answer(int(q.get("fail_status", "503")), "not ready")
        status = int(q.get("status", "200"))
        if "json" in q:
            return self.answer(status, q["json"], "application/json")
        if q.get("echo") == "1":
            return self.answer(status, json.dumps({"method": self.command, "body": request_body,
                                                   "headers": dict(self.headers)}),
                               "application/json")
        return self.answer(status, q.get("body", "ok"))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--max-time", type=float, default=300)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.port_file)
    print(port, flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    parent, started = os.getppid(), time.time()
    while os.getppid() == parent and time.time() - started < args.max_time:
        time.sleep(0.3)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
