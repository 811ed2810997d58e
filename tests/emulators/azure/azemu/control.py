"""The control endpoint for tests, served at /_emulator/ on every port of the emulator:

  GET  /_emulator/health                 -> {"ok": true}
  POST /_emulator/reset  [{"store": true}] settings, counters and faults back to their defaults;
                                         with store, also every ARM resource and its containers
  GET  /_emulator/counters               -> {"token:client_secret": n, "arm:GET": n, ...}
  GET  /_emulator/settings, POST /_emulator/settings {name: value, ...} (merged; see state.py)
  POST /_emulator/faults {"server": "arm|login|github|msi|*", "status": 429|500|..., "count": N,
                          "match": "path substring", "method": "PUT", "code": "...",
                          "retry_after": S}  fail the next N matching requests
  POST /_emulator/workload-token {"sub": ..., "aud": ..., "lifetime": S, "file": PATH}
       -> {"token": jwt, "file": PATH}: an assertion signed by the workload identity issuer, as
       the kubelet writes to AZURE_FEDERATED_TOKEN_FILE (written 0600 when "file" is given)
"""

import json
import os
import time

from . import state as st

SETTING_TYPES = {"token_lifetime": int, "github_token_lifetime": int, "retry_after": int,
                 "page_size": int, "lro_duration": float, "register_duration": float, "lro": dict,
                 "lro_duration_for": dict,
                 "github_subject": str, "appservice_start_time_limit": int,
                 "containerapp_start_time_limit": int, "containerapp_probe_interval": int,
                 "aci_pull_retry_time": float,
                 "aci_pull_backoff": float}
LRO_MODES = ("sync", "async", "location")


def bad(message):
    return 400, {"error": {"code": "BadControlRequest", "message": message}}


def handle(h):
    state = h.state
    op = h.url_path[len("/_emulator"):].strip("/")
    body = {}
    if h.raw_body.strip():
        try:
            body = json.loads(h.raw_body)
        except ValueError as e:
            return bad("control body is not JSON: %s" % e)
        if not isinstance(body, dict):
            return bad("control body must be a JSON object")
    if op == "health":
        return 200, {"ok": True}
    if op == "counters" and h.command == "GET":
        with state.lock:
            return 200, dict(state.counters)
    if op == "reset" and h.command == "POST":
        state.reset()
        if body.get("store"):
            for hook in state.store_reset_hooks:
                hook()
        return 200, {"ok": True}
    if op == "settings":
        if h.command == "POST":
            for k, v in body.items():
                want = SETTING_TYPES.get(k)
                if want is None:
                    return bad("unknown setting %r (known: %s)" % (k, ", ".join(sorted(SETTING_TYPES))))
                ok = isinstance(v, (int, float) if want is float else want)
                if not ok or isinstance(v, bool):
                    return bad("setting %r must be a %s" % (k, "number" if want is float else want.__name__))
                if want in (int, float) and v < 0:
                    return bad("setting %r must not be negative" % k)
                if k == "lro_duration_for":
                    for part, secs in v.items():
                        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or secs < 0:
                            return bad("lro_duration_for %r must be a number of seconds, not negative" % part)
                if k == "lro":
                    for t, mode in v.items():
                        if mode not in LRO_MODES:
                            return bad("lro mode %r for %r is not one of %s" % (mode, t, ", ".join(LRO_MODES)))
                    v = {t.lower(): m for t, m in v.items()}
            with state.lock:
                state.settings.update({k: v for k, v in body.items() if k not in ("lro", "lro_duration_for")})
                if "lro_duration_for" in body:  # merged; 0 takes a resource's entry out
                    for part, secs in body["lro_duration_for"].items():
                        state.settings["lro_duration_for"].pop(part.lower(), None)
                        if secs > 0:
                            state.settings["lro_duration_for"][part.lower()] = secs
                if "lro" in body:
                    state.settings["lro"].update({t.lower(): m for t, m in body["lro"].items()})
        with state.lock:
            return 200, json.loads(json.dumps(state.settings))
    if op == "faults" and h.command == "POST":
        rule = {"server": body.get("server", "*"), "status": body.get("status", 500),
                "count": body.get("count", 1), "match": body.get("match"),
                "method": body.get("method"), "code": body.get("code"),
                "message": body.get("message")}
        if "retry_after" in body:
            rule["retry_after"] = body["retry_after"]
        if rule["server"] not in ("*", "arm", "login", "github", "msi"):
            return bad("unknown server %r (arm, login, github, msi or *)" % rule["server"])
        if not isinstance(rule["status"], int) or not 400 <= rule["status"] <= 599:
            return bad("fault status must be an HTTP error status (400-599)")
        if not isinstance(rule["count"], int) or rule["count"] < 1:
            return bad("fault count must be a positive integer")
        with state.lock:
            state.faults.rules.append(rule)
        return 200, {"ok": True, "rules": len(state.faults.rules)}
    if op == "workload-token" and h.command == "POST":
        now = int(time.time())
        lifetime = body.get("lifetime", 3600)
        claims = {"iss": state.workload_issuer(), "sub": body.get("sub", st.WORKLOAD_SUBJECT),
                  "aud": body.get("aud", st.EXCHANGE_AUDIENCE), "iat": now, "nbf": now - 5,
                  "exp": now + int(lifetime),
                  "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "hoist"}}}
        token = state.workload_key.make_jwt(claims)
        out = {"token": token}
        path = body.get("file")
        if path:
            if not isinstance(path, str) or not os.path.isabs(path):
                return bad("file must be an absolute path")
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            os.replace(path + ".new", path)
            out["file"] = path
        return 200, out
    return 404, {"error": {"code": "NotFound", "message": "unknown control operation %s %r"
                           % (h.command, op)}}
