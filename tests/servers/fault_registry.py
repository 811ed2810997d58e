#!/usr/bin/env python3
"""A fake OCI registry that misbehaves on purpose, for the registry client's error paths
the real registry (distribution) cannot produce. Python 3 standard library only.

The first path component of a repository picks the behaviour:

  good/<name>         a valid image (config + a 2 MiB layer) under tag v1 in good/app;
                      other repositories start empty and accept pushes (no mounts: 202)
  badblob/<name>      the 2 MiB layer's bytes do not match its digest (streamed copy)
  badsmall/<name>     the config blob's bytes do not match its digest (small, buffered copy)
  badmanifest/<name>  the manifest's bytes do not match the Docker-Content-Digest header
  nodigest/<name>     manifests come without a Docker-Content-Digest header
  dropupload/<name>   as a destination: blob uploads (PUT) are cut half-way (connection drop)
  flaky/<name>        like good/, but the first request of each kind to each path answers
                      503 (or 429 with Retry-After: 1 for .../manifests/...); then it works
  denied/<name>       every request answers 403 DENIED
  broken/<name>       every request answers 500

Pushed manifests are kept in memory per repository (tags/list shows the tags written), so
a test can check that a failed copy left no tag. GET /_fault/stats -> request counts.

  fault_registry.py --port-file FILE [--port 0] [--lifetime 600]
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image():
    rnd = random.Random(42)
    layer = rnd.randbytes(2 * 1024 * 1024)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": sha(layer)}],
    }, indent=3).encode()
    return manifest, {sha(config): config, sha(layer): layer}


MANIFEST, BLOBS = make_image()
CONFIG_DIGEST, LAYER_DIGEST = list(BLOBS)


def corrupt(data):
    return bytes([data[0] ^ 0xFF]) + data[1:]


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.pushed = {}   # repo -> {tag_or_digest: (media_type, bytes)}
        self.blobs = {}    # (repo, digest) -> bytes pushed
        self.seen = set()  # (kind, path) already answered once (flaky)
        self.counts = {}   # "METHOD kind" -> n


STATE = State()
NAME = re.compile(r"^/v2/(?P<repo>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # ---- helpers
    def send(self, status, body=b"", headers=(), head=False):
        self.send_response(status)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def error(self, status, code, message, headers=(), head=False):
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": {"fault": True}}]}).encode()
        self.send(status, body, [("Content-Type", "application/json")] + list(headers), head)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def count(self, kind):
        with STATE.lock:
            key = "%s %s" % (self.command, kind)
            STATE.counts[key] = STATE.counts.get(key, 0) + 1

    # ---- dispatch
    def handle_any(self):
        url = urlsplit(self.path)
        head = self.command == "HEAD"
        if url.path == "/_fault/stats":
            with STATE.lock:
                body = json.dumps({"counts": STATE.counts,
                                   "tags": {r: sorted(t for t in m if ":" not in t) for r, m in STATE.pushed.items()}})
            return self.send(200, body.encode(), [("Content-Type", "application/json")])
        if url.path in ("/v2/", "/v2"):
            return self.send(200, b"{}", [("Content-Type", "application/json")], head)
        m = NAME.match(url.path)
        if not m:
            return self.error(404, "NAME_UNKNOWN", "no such path", head=head)
        repo, kind, rest = m.group("repo"), m.group("kind"), m.group("rest")
        mode = repo.split("/")[0]
        self.count(kind)
        if mode == "denied":
            return self.error(403, "DENIED", "requested access to the resource is denied", head=head)
        if mode == "broken":
            return self.error(500, "UNKNOWN", "the registry is broken", head=head)
        if mode == "flaky":
            key = (self.command, url.path)
            with STATE.lock:
                first = key not in STATE.seen
                STATE.seen.add(key)
            if first:
                if kind == "manifests":
                    return self.error(429, "TOOMANYREQUESTS", "slow down", [("Retry-After", "1")], head)
                return self.error(503, "UNAVAILABLE", "try again", head=head)
        if kind == "manifests":
            return self.manifests(repo, mode, rest, head)
        if kind == "tags":
            with STATE.lock:
                tags = sorted(t for t in STATE.pushed.get(repo, {}) if ":" not in t)
            if mode in ("good", "flaky", "badblob", "badsmall", "badmanifest", "nodigest"):
                tags = sorted(set(tags) | {"v1"})
            return self.send(200, json.dumps({"name": repo, "tags": tags}).encode(),
                             [("Content-Type", "application/json")], head)
        return self.blobs(repo, mode, rest, head, url)

    def manifests(self, repo, mode, ref, head):
        if self.command == "PUT":
            body = self.read_body()
            media = self.headers.get("Content-Type", "")
            digest = sha(body)
            with STATE.lock:
                store = STATE.pushed.setdefault(repo, {})
                store[ref] = (media, body)
                store[digest] = (media, body)
            return self.send(201, b"", [("Docker-Content-Digest", digest),
                                        ("Location", "/v2/%s/manifests/%s" % (repo, digest))])
        with STATE.lock:
            pushed = STATE.pushed.get(repo, {}).get(ref)
        if pushed:
            media, body = pushed
            return self.send(200, body, [("Content-Type", media), ("Docker-Content-Digest", sha(body))], head)
        if ref not in ("v1", sha(MANIFEST)) or mode in ("dropupload",):
            return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown", head=head)
        body = MANIFEST
        digest = sha(body)
        if mode == "badmanifest":
            body = body.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')  # same JSON, other bytes
            if ref != "v1":
                digest = ref
        headers = [("Content-Type", DOCKER_MANIFEST)]
        if mode != "nodigest":
            headers.append(("Docker-Content-Digest", digest))
        return self.send(200, body, headers, head)

    def blobs(self, repo, mode, rest, head, url):
        if rest.startswith("uploads"):
            return self.upload(repo, mode, rest, url)
        digest = rest
        with STATE.lock:
            data = STATE.blobs.get((repo, digest))
        if data is None:
            # the built-in image lives in <mode>/app only: other repositories start empty
            data = BLOBS.get(digest) if repo.endswith("/app") else None
            if data is None or mode == "dropupload":
                return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry", head=head)
            if (mode == "badblob" and digest == LAYER_DIGEST) or (mode == "badsmall" and digest == CONFIG_DIGEST):
                data = corrupt(data)
        return self.send(200, data, [("Content-Type", "application/octet-stream"),
                                     ("Docker-Content-Digest", digest)], head)

    def upload(self, repo, mode, rest, url):
        if self.command == "POST":
            location = "/v2/%s/blobs/uploads/%s" % (repo, uuid.uuid4())
            return self.send(202, b"", [("Location", location), ("Range", "0-0"),
                                        ("Docker-Upload-UUID", location.rsplit("/", 1)[1])])
        if self.command in ("PUT", "PATCH"):
            n = int(self.headers.get("Content-Length") or 0)
            if mode == "dropupload":
                self.rfile.read(n // 2)
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return None
            data = self.rfile.read(n) if n else b""
            digest = parse_qs(url.query).get("digest", [""])[0]
            if self.command == "PATCH":
                return self.send(202, b"", [("Location", url.path), ("Range", "0-%d" % max(0, n - 1))])
            if sha(data) != digest:
                return self.error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            with STATE.lock:
                STATE.blobs[(repo, digest)] = data
            return self.send(201, b"", [("Docker-Content-Digest", digest),
                                        ("Location", "/v2/%s/blobs/%s" % (repo, digest))])
        return self.error(405, "UNSUPPORTED", "unsupported")

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("fault registry on 127.0.0.1:%d" % port, flush=True)
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
