"""Server-side apply: field sets, managedFields (FieldsV1), conflicts and force.

A field set is a set of paths; a path is a tuple of FieldsV1 elements: "f:name" for a map
field, 'k:{"name":"app"}' for an item of an associative list. Leaves only, plus the item
itself (".") for associative list items.
"""

import copy
import json

from objects import MAX_DEPTH, ApiError, bad_request, now
from patch import list_keys

NOT_MANAGED_META = {"name", "namespace", "uid", "resourceVersion", "generation",
                    "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp",
                    "deletionGracePeriodSeconds"}


def _item_key(item, keys):
    k = {}
    for f in keys:
        if f in item:
            k[f] = item[f]
        elif f == "protocol":
            k[f] = "TCP"
    return "k:" + json.dumps(k, sort_keys=True, separators=(",", ":"))


def field_set(obj, status=False):
    """Paths of the fields set in obj (main resource: without status; status: only status)."""
    out = set()
    stack = []
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if (k == "status") != status:
            continue
        if k == "metadata":
            for mk, mv in (v or {}).items():
                if mk not in NOT_MANAGED_META:
                    stack.append((("f:metadata", "f:" + mk), mv, mk, 2))
            continue
        stack.append((("f:" + k,), v, k, 1))
    while stack:
        path, v, name, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad_request(f"object nesting exceeds {MAX_DEPTH} levels")
        if isinstance(v, dict) and v:
            for k, x in v.items():
                stack.append((path + ("f:" + k,), x, k, depth + 1))
        elif isinstance(v, list) and v and (keys := list_keys(name, v)) and all(isinstance(x, dict) for x in v):
            for item in v:
                ip = path + (_item_key(item, keys),)
                out.add(ip + (".",))
                for k, x in item.items():
                    stack.append((ip + ("f:" + k,), x, k, depth + 1))
        else:
            out.add(path)
    return out


def to_fields_v1(paths):
    root = {}
    for p in sorted(paths):
        node = root
        for el in p:
            node = node.setdefault(el, {})
    return root


def from_fields_v1(tree):
    out = set()
    stack = [((), tree, 0)]
    while stack:
        path, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            break
        if not node:
            if path:
                out.add(path)
            continue
        for k, v in node.items():
            stack.append((path + (k,), v, depth + 1))
    return out


def value_at(obj, path):
    """(found, value) of a path in obj."""
    cur = obj
    for el in path:
        if el == ".":
            return True, cur
        if el.startswith("f:"):
            if not isinstance(cur, dict) or el[2:] not in cur:
                return False, None
            cur = cur[el[2:]]
        elif el.startswith("k:"):
            want = json.loads(el[2:])
            if not isinstance(cur, list):
                return False, None
            cur = next((x for x in cur if isinstance(x, dict) and
                        all(x.get(k, "TCP" if k == "protocol" else None) == v for k, v in want.items())), None)
            if cur is None:
                return False, None
        else:
            return False, None
    return True, cur


def remove_at(obj, path):
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    found, parent = value_at(obj, path[:-1])
    if not found:
        return
    el = path[-1]
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif el.startswith("k:") and isinstance(parent, list):
        want = json.loads(el[2:])
        parent[:] = [x for x in parent if not (isinstance(x, dict) and all(
            x.get(k, "TCP" if k == "protocol" else None) == v for k, v in want.items()))]


def _prune_empty(obj, path):
    """After removals, drop maps/lists left empty along path (not the top level)."""
    for i in range(len(path) - 1, 0, -1):
        found, v = value_at(obj, path[:i])
        if not found:
            continue
        if v in ({}, []):
            remove_at(obj, path[:i])
        else:
            break


def apply_merge(live, cfg, name=None, depth=0):
    if depth > MAX_DEPTH:
        raise bad_request(f"object nesting exceeds {MAX_DEPTH} levels")
    if isinstance(cfg, dict) and isinstance(live, dict):
        out = dict(live)
        for k, v in cfg.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = apply_merge(live.get(k), v, k, depth + 1)
        return out
    if isinstance(cfg, list) and isinstance(live, list) and cfg and \
            (keys := list_keys(name, cfg + live)) and all(isinstance(x, dict) for x in cfg + live):
        out = [copy.deepcopy(x) for x in live]
        for item in cfg:
            ik = _item_key(item, keys)
            idx = next((i for i, x in enumerate(out) if _item_key(x, keys) == ik), None)
            if idx is None:
                out.append(copy.deepcopy(item))
            else:
                out[idx] = apply_merge(out[idx], item, None, depth + 1)
        return out
    return copy.deepcopy(cfg)


def _entries(obj):
    return [copy.deepcopy(e) for e in (obj.get("metadata", {}).get("managedFields") or [])]


def _api_version(obj):
    return obj.get("apiVersion", "v1")


def _set_entries(obj, entries):
    entries = [e for e in entries if e.get("fieldsV1")]
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def record_update(old, new, manager, subresource=None):
    """An update (create/PUT/patch) by `manager`: it takes the fields it changed."""
    status = subresource == "status"
    new_fields = field_set(new, status)
    old_fields = field_set(old, status) if old is not None else set()
    changed = set()
    for p in new_fields:
        f1, v1 = value_at(old, p) if old is not None else (False, None)
        f2, v2 = value_at(new, p)
        if not f1 or v1 != v2:
            changed.add(p)
    removed = old_fields - new_fields
    entries = _entries(old) if old is not None else []
    out = []
    mine = None
    for e in entries:
        s = from_fields_v1(e.get("fieldsV1", {})) - changed - removed
        if e.get("manager") == manager and e.get("operation") == "Update" and \
                e.get("subresource") == subresource:
            mine = e
            e["_set"] = s
        else:
            e["fieldsV1"] = to_fields_v1(s)
            out.append(e)
    if mine is None:
        if not changed:
            _set_entries(new, out)
            return
        mine = {"manager": manager, "operation": "Update", "apiVersion": _api_version(new),
                "_set": set()}
        if subresource:
            mine["subresource"] = subresource
    s = mine.pop("_set") | changed
    mine.update(time=now(), fieldsType="FieldsV1", fieldsV1=to_fields_v1(s))
    if subresource:
        mine["subresource"] = subresource
    out.append(mine)
    _set_entries(new, out)


def _path_text(p):
    parts = []
    for el in p:
        if el == ".":
            continue
        if el.startswith("f:"):
            parts.append("." + el[2:])
        else:
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(el[2:]).items()) + "]")
    return "".join(parts)


def server_side_apply(live, cfg, manager, force, subresource=None):
    """Returns the new object (live None: created from cfg). Raises a 409 on conflicts."""
    status = subresource == "status"
    applied = field_set(cfg, status)
    if live is None:
        new = copy.deepcopy(cfg)
        new.setdefault("metadata", {})
        entry = {"manager": manager, "operation": "Apply", "apiVersion": _api_version(cfg),
                 "time": now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(applied)}
        new["metadata"]["managedFields"] = [entry]
        return new
    entries = _entries(live)
    conflicts = []
    for e in entries:
        if e.get("manager") == manager and e.get("operation") == "Apply":
            continue
        if (e.get("subresource") == "status") != (subresource == "status"):
            continue
        theirs = from_fields_v1(e.get("fieldsV1", {}))
        for p in sorted(applied & theirs):
            if p[-1] == ".":
                continue
            f1, v1 = value_at(live, p)
            _, v2 = value_at(cfg, p)
            if f1 and v1 != v2:
                conflicts.append((e, p))
    if conflicts and not force:
        causes = [{"reason": "FieldManagerConflict",
                   "message": f'conflict with "{e["manager"]}"'
                              f'{" with subresource " + json.dumps(e["subresource"]) if e.get("subresource") else ""}'
                              f' using {e.get("apiVersion")}',
                   "field": _path_text(p)} for e, p in conflicts]
        n = len(causes)
        if n == 1:
            msg = f'Apply failed with 1 conflict: {causes[0]["message"]}: {causes[0]["field"]}'
        else:
            msg = f"Apply failed with {n} conflicts: " + "\n".join(
                f'{c["message"]}: {c["field"]}' for c in causes)
        raise ApiError(409, "Conflict", msg, {"causes": causes})
    taken = {p for _, p in conflicts}
    previous = set()
    out = []
    for e in entries:
        s = from_fields_v1(e.get("fieldsV1", {}))
        if e.get("manager") == manager and e.get("operation") == "Apply" and e.get("subresource") == subresource:
            previous = s
            continue
        e["fieldsV1"] = to_fields_v1(s - taken)
        out.append(e)
    new = apply_merge(live, {k: v for k, v in cfg.items() if k not in ("apiVersion", "kind")})
    new["metadata"] = apply_merge(live.get("metadata", {}),
                                  {k: v for k, v in (cfg.get("metadata") or {}).items()
                                   if k not in NOT_MANAGED_META})
    others = set()
    for e in out:
        if (e.get("subresource") == "status") == (subresource == "status"):
            others |= from_fields_v1(e.get("fieldsV1", {}))
    # whole list items first (their key fields are still there to find them), then leaves
    for p in sorted(previous - applied, key=lambda x: (len(x) - (x[-1] == "."), x)):
        base = p[:-1] if p[-1] == "." else p
        if not any(o[:len(base)] == base for o in others):
            remove_at(new, p)
            _prune_empty(new, p)
    entry = {"manager": manager, "operation": "Apply", "apiVersion": _api_version(cfg),
             "time": now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(applied)}
    if subresource:
        entry["subresource"] = subresource
    out.append(entry)
    _set_entries(new, out)
    return new
