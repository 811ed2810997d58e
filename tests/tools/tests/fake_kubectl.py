#!/usr/bin/env python3
"""A fake kubectl for tests/tools/tests/test_helm.py: just enough of apply, get, delete and
rollout status for the helm stand-in's release logic, over a JSON file (FAKE_KUBECTL_STATE).
Manifests are parsed for kind, name and image only. FAKE_KUBECTL_UNREADY=text makes
`rollout status` of a Deployment whose image contains text fail as kubectl does on a timeout."""
import json
import os
import re
import sys

STATE = os.environ["FAKE_KUBECTL_STATE"]


def load():
    try:
        with open(STATE, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {"objects": {}, "log": []}


def save(st):
    with open(STATE, "w", encoding="utf-8") as fh:
        json.dump(st, fh)


def main(argv):
    st = load()
    st["log"].append(argv)
    args = [a for a in argv]
    ns = "default"
    if "-n" in args:
        ns = args[args.index("-n") + 1]
    verb = args[0]
    if verb == "config":
        save(st)
        return 0
    if verb == "apply":
        text = sys.stdin.read()
        docs = [json.loads(text)] if text.lstrip().startswith("{") else \
            [d for d in re.split(r"(?m)^---\s*$", text) if d.strip()]
        for d in docs:
            if isinstance(d, dict):
                kind, name = d["kind"], d["metadata"]["name"]
                ns = d["metadata"].get("namespace", ns)
                st["objects"][f"{ns}/{kind}/{name}"] = d
            else:
                kind = re.search(r"(?m)^kind:\s*(\S+)", d).group(1)
                name = re.search(r"(?m)^  name:\s*(\S+)", d).group(1)
                image = re.search(r'image:\s*"?([^"\s]+)', d)
                st["objects"][f"{ns}/{kind}/{name}"] = {
                    "kind": kind, "metadata": {"name": name},
                    "image": image.group(1) if image else None}
        save(st)
        return 0
    if verb == "get":
        sel = args[args.index("-l") + 1] if "-l" in args else ""
        want = dict(p.split("=") for p in sel.split(",") if p)
        items = []
        for key, o in sorted(st["objects"].items()):
            if o.get("kind") != "Secret":
                continue
            if "--all-namespaces" not in args and not key.startswith(ns + "/"):
                continue
            labels = o["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in want.items()):
                items.append(o)
        print(json.dumps({"items": items}))
        save(st)
        return 0
    if verb == "delete":
        kind, name = args[3], args[4]
        kinds = {"secret": "Secret"}
        st["objects"].pop(f"{ns}/{kinds.get(kind, kind)}/{name}", None)
        save(st)
        return 0
    if verb == "rollout":
        target = args[4].split("/", 1)[1]
        save(st)
        obj = st["objects"].get(f"{ns}/Deployment/{target}", {})
        bad = os.environ.get("FAKE_KUBECTL_UNREADY")
        if bad and bad in (obj.get("image") or ""):
            print('error: timed out waiting for the condition', file=sys.stderr)
            return 1
        print(f'deployment "{target}" successfully rolled out')
        return 0
    if verb == "create":
        save(st)
        return 0
    print(f"fake kubectl: unsupported {argv}", file=sys.stderr)
    return 2


sys.exit(main(sys.argv[1:]))
