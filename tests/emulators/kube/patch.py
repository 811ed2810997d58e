"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge knows the list-merge keys of the core types kubectl patches (containers, env,
ports, volumes, ...). Recursion is bounded by objects.MAX_DEPTH.
"""

import copy
import json

from objects import MAX_DEPTH, ApiError, bad_request


class PatchError(ApiError):
    def __init__(self, message):
        super().__init__(422, "Invalid", message)


def _deep(depth):
    if depth > MAX_DEPTH:
        raise bad_request(f"patch nesting exceeds {MAX_DEPTH} levels")


def merge_patch(target, patch, depth=0):
    _deep(depth)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v, depth + 1)
    return out


# ------------------------------------------------------------------------------------------
# JSON patch

def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _split(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f'json patch: path "{path}" does not start with "/"')
    return [_unescape(t) for t in path[1:].split("/")]


def _walk(doc, toks, path):
    cur = doc
    for t in toks:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"the server rejected our request due to an error in our request: "
                                 f'json patch: path "{path}": "{t}" does not exist')
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise PatchError(f'json patch: path "{path}": index "{t}" out of range')
        else:
            raise PatchError(f'json patch: path "{path}": "{t}" is not a container')
    return cur


def _add(doc, toks, value, path, replace=False):
    if not toks:
        return value
    parent = _walk(doc, toks[:-1], path)
    last = toks[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f'json patch: replace operation does not apply: doc is missing key: {path}')
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError:
                raise PatchError(f'json patch: path "{path}": bad index "{last}"')
            if replace:
                if not 0 <= i < len(parent):
                    raise PatchError(f'json patch: path "{path}": index out of range')
                parent[i] = value
            else:
                if not 0 <= i <= len(parent):
                    raise PatchError(f'json patch: path "{path}": index out of range')
                parent.insert(i, value)
    else:
        raise PatchError(f'json patch: path "{path}": parent is not a container')
    return doc


def _remove(doc, toks, path):
    if not toks:
        raise PatchError("json patch: cannot remove the whole document")
    parent = _walk(doc, toks[:-1], path)
    last = toks[-1]
    try:
        if isinstance(parent, dict):
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        pass
    raise PatchError(f'json patch: remove operation does not apply: doc is missing path: "{path}"')


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise bad_request("json patch: the body must be a JSON array of operations")
    doc = copy.deepcopy(doc)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: operation {i} needs \"op\" and \"path\"")
        kind, path = op["op"], op["path"]
        toks = _split(path)
        if kind in ("add", "replace"):
            if "value" not in op:
                raise bad_request(f"json patch: operation {i} ({kind}) needs \"value\"")
            doc = _add(doc, toks, copy.deepcopy(op["value"]), path, replace=(kind == "replace"))
        elif kind == "remove":
            _remove(doc, toks, path)
        elif kind in ("move", "copy"):
            src = _split(op.get("from", ""))
            v = copy.deepcopy(_walk(doc, src, op.get("from", "")))
            if kind == "move":
                _remove(doc, src, op["from"])
            doc = _add(doc, toks, v, path)
        elif kind == "test":
            if _walk(doc, toks, path) != op.get("value"):
                raise PatchError(f'json patch: test operation failed at "{path}"')
        else:
            raise bad_request(f'json patch: unknown operation "{kind}"')
    return doc


# ------------------------------------------------------------------------------------------
# strategic merge patch

MERGE_KEYS = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",), "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",), "conditions": ("type",), "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",), "finalizers": None,
}


def list_keys(field, items):
    """The merge key(s) of a list field, or None for an atomic list."""
    if field == "ports":
        sample = next((x for x in items if isinstance(x, dict)), {})
        return ("containerPort", "protocol") if "containerPort" in sample else ("port", "protocol")
    return MERGE_KEYS.get(field)


def _key_of(item, keys):
    if not isinstance(item, dict):
        return None
    return tuple(item.get(k, "TCP" if k == "protocol" else None) for k in keys)


def strategic_merge(target, patch, depth=0):
    _deep(depth)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/") or k in ("$retainKeys", "$patch"):
            if k.startswith("$deleteFromPrimitiveList/"):
                f = k.split("/", 1)[1]
                if isinstance(out.get(f), list):
                    out[f] = [x for x in out[f] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = _merge_list(k, out[k], v, depth + 1)
        elif isinstance(v, list):
            out[k] = [copy.deepcopy(x) for x in v if not (isinstance(x, dict) and x.get("$patch"))]
        else:
            r = strategic_merge(out.get(k), v, depth + 1)
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
    return out


def _merge_list(field, live, patch, depth):
    if field == "finalizers":
        return live + [x for x in patch if x not in live]
    keys = list_keys(field, live + patch)
    if not keys:
        return [copy.deepcopy(x) for x in patch]
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and x.get("$patch"))]
    out = [copy.deepcopy(x) for x in live]
    for item in patch:
        if not isinstance(item, dict):
            continue
        kv = _key_of(item, keys)
        idx = next((i for i, x in enumerate(out) if _key_of(x, keys) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item, depth + 1))
        else:
            out[idx] = strategic_merge(out[idx], item, depth + 1)
    return out


def parse_json(body, what="body"):
    try:
        return json.loads(body or b"null")
    except ValueError as e:
        raise bad_request(f"the {what} is not valid JSON: {e}")
