"""Decoding of the protobuf bodies kubectl sends for typed creates.

`kubectl create secret|configmap|namespace|serviceaccount|deployment|job`, `kubectl autoscale`
and `kubectl auth can-i` send `application/vnd.kubernetes.protobuf` and do not fall back to
JSON, so the emulator reads the envelope (`k8s\\0`, runtime.Unknown: TypeMeta, raw message) and
the fields those commands set, by the field numbers of k8s.io/api's generated.proto (checked
against what kubectl 1.32 sends). A field the tables below do not list is refused (415 naming
it) unless it is empty: gogo-protobuf writes every non-pointer field, set or not.
"""

import base64

from objects import ApiError

MAGIC = b"k8s\x00"
REP, PTR = "repeated", "pointer"     # flags: a list; a pointer field (kept when zero)


def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """[(field number, wire type, value)] of one message (value: int or bytes)."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def _empty(v, depth=0):
    """A zero value: 0, b"", or a message all of whose fields are zero values."""
    if isinstance(v, int):
        return v == 0
    if not v:
        return True
    if depth > 16:
        return False
    try:
        return all(_empty(x, depth + 1) for _, _, x in fields(v))
    except ValueError:
        return False


# field number -> (JSON name, type[, message table][, flags...]); types: s string, i integer,
# b bool, m message, map map<string,string>, bytes-map map<string,bytes> (base64 in JSON),
# ios IntOrString, skip (server-set, not read)
META = {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 4: ("selfLink", "skip"),
        5: ("uid", "skip"), 6: ("resourceVersion", "skip"), 7: ("generation", "skip"),
        8: ("creationTimestamp", "skip"), 11: ("labels", "map"), 12: ("annotations", "map"),
        14: ("finalizers", "s", REP)}
SELECTOR = {1: ("matchLabels", "map"),
            2: ("matchExpressions", "m", {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "s", REP)}, REP)}
CONTAINER = {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "s", REP), 4: ("args", "s", REP),
             5: ("workingDir", "s"),
             6: ("ports", "m", {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                                4: ("protocol", "s"), 5: ("hostIP", "s")}, REP),
             13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"), 16: ("stdin", "b"),
             17: ("stdinOnce", "b"), 18: ("tty", "b"), 20: ("terminationMessagePolicy", "s")}
POD_SPEC = {2: ("containers", "m", CONTAINER, REP), 3: ("restartPolicy", "s"), 6: ("dnsPolicy", "s"),
            7: ("nodeSelector", "map"), 8: ("serviceAccountName", "s"), 10: ("nodeName", "s"),
            11: ("hostNetwork", "b"), 12: ("hostPID", "b"), 13: ("hostIPC", "b"), 16: ("hostname", "s"),
            17: ("subdomain", "s"), 19: ("schedulerName", "s"), 24: ("priorityClassName", "s")}
TEMPLATE = {1: ("metadata", "m", META), 2: ("spec", "m", POD_SPEC)}
STATUS = {3: ("status", "skip")}
KINDS = {
    "Secret": {1: ("metadata", "m", META), 2: ("data", "bytes-map"), 3: ("type", "s"), 4: ("stringData", "map")},
    "ConfigMap": {1: ("metadata", "m", META), 2: ("data", "map"), 3: ("binaryData", "bytes-map")},
    "Namespace": {1: ("metadata", "m", META), 2: ("spec", "skip"), **STATUS},
    "ServiceAccount": {1: ("metadata", "m", META)},
    "Deployment": {1: ("metadata", "m", META), **STATUS, 2: ("spec", "m", {
        1: ("replicas", "i", PTR), 2: ("selector", "m", SELECTOR), 3: ("template", "m", TEMPLATE),
        4: ("strategy", "m", {1: ("type", "s"), 2: ("rollingUpdate", "m", {
            1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")})}),
        5: ("minReadySeconds", "i"), 6: ("revisionHistoryLimit", "i", PTR), 7: ("paused", "b"),
        9: ("progressDeadlineSeconds", "i", PTR)})},
    "Job": {1: ("metadata", "m", META), **STATUS, 2: ("spec", "m", {
        1: ("parallelism", "i", PTR), 2: ("completions", "i", PTR), 3: ("activeDeadlineSeconds", "i", PTR),
        4: ("selector", "m", SELECTOR), 5: ("manualSelector", "b", PTR), 6: ("template", "m", TEMPLATE),
        7: ("backoffLimit", "i", PTR)})},
    "HorizontalPodAutoscaler": {1: ("metadata", "m", META), **STATUS, 2: ("spec", "m", {   # autoscaling/v1
        1: ("scaleTargetRef", "m", {1: ("kind", "s"), 2: ("name", "s"), 3: ("apiVersion", "s")}),
        2: ("minReplicas", "i", PTR), 3: ("maxReplicas", "i"), 4: ("targetCPUUtilizationPercentage", "i", PTR)})},
    "SelfSubjectAccessReview": {1: ("metadata", "m", META), **STATUS, 2: ("spec", "m", {
        1: ("resourceAttributes", "m", {1: ("namespace", "s"), 2: ("verb", "s"), 3: ("group", "s"),
                                        4: ("version", "s"), 5: ("resource", "s"), 6: ("subresource", "s"),
                                        7: ("name", "s")}),
        2: ("nonResourceAttributes", "m", {1: ("path", "s"), 2: ("verb", "s")})})},
}


def _entries(raw):
    kv = {n: v for n, _, v in fields(raw)}
    return kv.get(1, b"").decode(), kv.get(2, b"")


def _value(typ, v, table, where):
    if typ == "s":
        return v.decode()
    if typ == "i":
        return v - (1 << 64) if v >= 1 << 63 else v
    if typ == "b":
        return bool(v)
    if typ == "m":
        return message(v, table, where)
    if typ == "ios":
        kv = {n: x for n, _, x in fields(v)}
        return kv.get(3, b"").decode() if kv.get(1) == 1 else kv.get(2, 0)
    raise ValueError(f"type {typ}")


def message(buf, table, where):
    """One message as a JSON object, by its table."""
    out = {}
    for num, _, v in fields(buf):
        spec = table.get(num)
        if spec is None:
            if _empty(v):
                continue
            raise ApiError(415, "UnsupportedMediaType",
                           f"the emulator does not decode field {num} of {where} in a protobuf body: send JSON "
                           "(kubectl create -f / apply)")
        name, typ, rest = spec[0], spec[1], spec[2:]
        sub = rest[0] if rest and isinstance(rest[0], dict) else None
        if typ == "skip":
            continue
        if typ in ("map", "bytes-map"):
            k, x = _entries(v)
            out.setdefault(name, {})[k] = base64.b64encode(x).decode() if typ == "bytes-map" else x.decode()
            continue
        val = _value(typ, v, sub, f"{where}.{name}")
        if REP in rest:
            out.setdefault(name, []).append(val)
        elif PTR in rest or (val if typ == "m" else v not in (0, b"")):
            out[name] = val
    return out


def decode(body):
    """A protobuf request body (runtime.Unknown in the k8s envelope) as a JSON object."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s envelope")
    try:
        unknown = {n: v for n, _, v in fields(body[4:])}
        tm = {n: v.decode() for n, _, v in fields(unknown.get(1, b""))}
        kind, api_version = tm.get(2, ""), tm.get(1, "")
        table = KINDS.get(kind)
        if table is None:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the emulator decodes protobuf bodies of {', '.join(KINDS)} only, not "
                           f"{kind or 'this body'}: send JSON (kubectl create -f / apply)")
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
        obj.update(message(unknown.get(2, b""), table, kind))
        return obj
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"the protobuf body does not decode: {e}")
