"""Decoding of the few protobuf bodies kubectl sends for typed creates (kubectl create
secret/configmap/namespace/serviceaccount send `application/vnd.kubernetes.protobuf` and do
not fall back to JSON). Field numbers from k8s.io/api generated.proto; other kinds get a 415.
"""

from objects import ApiError

MAGIC = b"k8s\x00"


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


def _map(entries, as_bytes=False):
    out = {}
    for e in entries:
        kv = {n: v for n, _, v in fields(e)}
        k = kv.get(1, b"").decode()
        v = kv.get(2, b"")
        out[k] = v if as_bytes else v.decode()
    return out


def _meta(buf):
    md, labels, ann, fins = {}, [], [], []
    for n, _, v in fields(buf):
        if n == 1:
            md["name"] = v.decode()
        elif n == 2:
            md["generateName"] = v.decode()
        elif n == 3:
            md["namespace"] = v.decode()
        elif n == 11:
            labels.append(v)
        elif n == 12:
            ann.append(v)
        elif n == 14:
            fins.append(v.decode())
    if labels:
        md["labels"] = _map(labels)
    if ann:
        md["annotations"] = _map(ann)
    if fins:
        md["finalizers"] = fins
    return md


def decode(body):
    import base64
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s envelope")
    try:
        unknown = {n: v for n, _, v in fields(body[4:])}
        tm = {n: v.decode() for n, _, v in fields(unknown.get(1, b""))}
        kind, api_version = tm.get(2, ""), tm.get(1, "")
        raw = unknown.get(2, b"")
        top = fields(raw)
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
        by = {}
        for n, _, v in top:
            by.setdefault(n, []).append(v)
        if 1 in by:
            obj["metadata"] = _meta(by[1][0])
        if kind == "Secret":
            if 2 in by:
                obj["data"] = {k: base64.b64encode(v).decode() for k, v in _map(by[2], True).items()}
            if 3 in by:
                obj["type"] = by[3][0].decode()
            if 4 in by:
                obj["stringData"] = _map(by[4])
        elif kind == "ConfigMap":
            if 2 in by:
                obj["data"] = _map(by[2])
            if 3 in by:
                obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in _map(by[3], True).items()}
        elif kind in ("Namespace", "ServiceAccount"):
            pass
        else:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the emulator decodes protobuf bodies of Secret, ConfigMap, Namespace and "
                           f"ServiceAccount only, not {kind or 'this body'}: send JSON (kubectl create -f / apply)")
        return obj
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"the protobuf body does not decode: {e}")
