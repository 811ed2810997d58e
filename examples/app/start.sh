#!/bin/sh
# Runs: busybox httpd -f -p ${PORT:-8080} -h /www  (as a child, so `docker stop` is immediate:
# httpd as pid 1 would ignore SIGTERM). HOST, if set, is the bind address.
listen="${HOST:+$HOST:}${PORT:-8080}"
echo "hoist example app version ${APP_VERSION:-dev} listening on $listen" >&2
httpd -f -p "$listen" -h /www &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
