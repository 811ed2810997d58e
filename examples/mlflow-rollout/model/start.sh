#!/bin/sh
# busybox httpd as a child, so SIGTERM (docker stop, a pod's termination) ends it at once.
if [ "$MODE" = crash ]; then echo "model $MODEL_VERSION: cannot load the model weights (MODE=crash)" >&2; exit 3; fi
echo "model server version $MODEL_VERSION listening on ${PORT:-8000}" >&2
httpd -f -p "${PORT:-8000}" -h /www &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
