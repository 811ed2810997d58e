#!/usr/bin/env python3
"""hoist's Azure emulator: one process serving every endpoint on 127.0.0.1 (see README.md).

  server.py --state DIR --cert CRT --key KEY [--pid-file F]
"""

import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from azemu import httpbase, identity  # noqa: E402
from azemu.state import HOSTS, PORTS, State  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, help="state directory (keys, logs)")
    p.add_argument("--cert", required=True, help="server certificate (PEM) for the HTTPS ports")
    p.add_argument("--key", required=True, help="its private key (PEM)")
    p.add_argument("--ca-dir", help="the test CA (ca.pem, ca.key): certificates for the service "
                   "hostnames the proxy terminates TLS for")
    p.add_argument("--pid-file")
    args = p.parse_args()
    os.makedirs(args.state, exist_ok=True)

    hosts = dict(HOSTS)
    state = State(args.state, hosts)
    tls = (args.cert, args.key)
    from azemu import certs
    state.certs = certs.Certs(args.state, args.ca_dir)
    httpbase.serve(state, "login", PORTS["login"], identity.EntraHandler, tls)
    httpbase.serve(state, "github", PORTS["github"], identity.GitHubHandler, tls)
    httpbase.serve(state, "msi", PORTS["msi"], identity.MsiHandler)
    for name, mod in (("arm", "arm"), ("proxy", "proxy"), ("front", "front")):
        try:
            module = __import__("azemu." + mod, fromlist=["start"])
        except ImportError:
            continue
        module.start(state, PORTS[name], tls)

    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    sys.stderr.write("hoist azure emulator: %s\n" % ", ".join("%s %s" % kv for kv in hosts.items()))
    sys.stderr.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    for hook in state.shutdown_hooks:
        hook()


if __name__ == "__main__":
    main()
