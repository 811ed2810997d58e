#!/usr/bin/env python3
"""A notification receiver for hoist.notify's tests (python3 standard library only).

Listens on 127.0.0.1 (port 0 = any free one), writes the port to --port-file, and exits when
its parent process goes away or after --max-time seconds. It answers POSTs the way the
services answer them and checks each body against the shape the service documents:

  POST /slack/<anything>   a Slack incoming webhook: 200 "ok", or 400 with Slack's error
                           words (invalid_payload, no_text, invalid_blocks) and the problems
  POST /teams/<anything>   a Teams workflow webhook: 202 (the flow was triggered), or 400
                           with the problems of the message and its Adaptive Card
  POST /hook/<anything>    a generic webhook: 200, or 400 when the body is not a
                           hoist.notify/v1 document

Query parameters script failures, counted per path:
  fail=N           the first N requests to this path get fail_status (default 503)
  fail_status=M
  retry_after=V    sent as Retry-After with a failing answer

  GET /_requests   every request so far: [{method, path, query, headers, body, json,
                   problems, status}], in order (headers lower-cased)
  GET /_reset      forgets them
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
REQUESTS = []
COUNTS = {}

# Block Kit (api.slack.com/reference/block-kit/blocks): the block types an incoming webhook
# takes, the fields each may have, and Slack's size limits.
SLACK_BLOCKS = {
    "header": {"type", "text", "block_id"},
    "section": {"type", "text", "fields", "accessory", "block_id", "expand"},
    "context": {"type", "elements", "block_id"},
    "divider": {"type", "block_id"},
    "actions": {"type", "elements", "block_id"},
    "image": {"type", "image_url", "alt_text", "title", "block_id", "slack_file"},
    "rich_text": {"type", "elements", "block_id"},
}


def text_object(obj, where, problems, max_len, plain_only=False):
    if not isinstance(obj, dict):
        problems.append(f"{where}: a text object is required")
        return
    kinds = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
    if obj.get("type") not in kinds:
        problems.append(f"{where}.type must be one of {sorted(kinds)}")
    allowed = {"type", "text", "emoji", "verbatim"}
    extra = set(obj) - allowed
    if extra:
        problems.append(f"{where}: unknown fields {sorted(extra)}")
    if obj.get("type") == "mrkdwn" and "emoji" in obj:
        problems.append(f"{where}: emoji is for plain_text only")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}.text must be a non-empty string")
    elif len(text) > max_len:
        problems.append(f"{where}.text is {len(text)} characters, more than {max_len}")


def check_slack(doc):
    """Slack's incoming webhook payload: text (the fallback) and blocks."""
    problems = []
    if not isinstance(doc, dict):
        return ["invalid_payload: the body is not a JSON object"]
    if not isinstance(doc.get("text"), str) or not doc["text"]:
        problems.append("no_text: text (the notification fallback) is missing")
    blocks = doc.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        problems.append("invalid_blocks: blocks must be a non-empty list")
        return problems
    if len(blocks) > 50:
        problems.append("invalid_blocks: more than 50 blocks")
    for i, b in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(b, dict) or b.get("type") not in SLACK_BLOCKS:
            problems.append(f"invalid_blocks: {where}.type unknown: {b.get('type') if isinstance(b, dict) else b!r}")
            continue
        extra = set(b) - SLACK_BLOCKS[b["type"]]
        if extra:
            problems.append(f"invalid_blocks: {where} ({b['type']}): unknown fields {sorted(extra)}")
        t = b["type"]
        if t == "header":
            text_object(b.get("text"), where + ".text", problems, 150, plain_only=True)
        elif t == "section":
            if "text" not in b and "fields" not in b:
                problems.append(f"invalid_blocks: {where}: a section needs text or fields")
            if "text" in b:
                text_object(b["text"], where + ".text", problems, 3000)
            if "fields" in b:
                fields = b["fields"]
                if not isinstance(fields, list) or not fields or len(fields) > 10:
                    problems.append(f"invalid_blocks: {where}.fields must hold 1 to 10 items")
                else:
                    for j, f in enumerate(fields):
                        text_object(f, f"{where}.fields[{j}]", problems, 2000)
        elif t == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not els or len(els) > 10:
                problems.append(f"invalid_blocks: {where}.elements must hold 1 to 10 items")
            else:
                for j, e in enumerate(els):
                    text_object(e, f"{where}.elements[{j}]", problems, 3000)
    return problems


# Adaptive Cards (adaptivecards.io/explorer): the element and action types a card's body and
# actions may hold, and what each requires.
CARD_ELEMENTS = {"TextBlock": ["text"], "FactSet": ["facts"], "Container": ["items"], "ColumnSet": [],
                 "Image": ["url"], "RichTextBlock": ["inlines"], "ActionSet": ["actions"], "Table": []}
CARD_ACTIONS = {"Action.OpenUrl": ["url"], "Action.Submit": [], "Action.ShowCard": ["card"],
                "Action.ToggleVisibility": ["targetElements"], "Action.Execute": []}
COLORS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}


def check_element(el, where, problems):
    if not isinstance(el, dict) or el.get("type") not in CARD_ELEMENTS:
        problems.append(f"{where}.type unknown: {el.get('type') if isinstance(el, dict) else el!r}")
        return
    for field in CARD_ELEMENTS[el["type"]]:
        if field not in el:
            problems.append(f"{where} ({el['type']}): {field} is required")
    if el["type"] == "TextBlock":
        if not isinstance(el.get("text"), str):
            problems.append(f"{where}.text must be a string")
        if "color" in el and el["color"] not in COLORS:
            problems.append(f"{where}.color {el['color']!r} is not a color")
    if el["type"] == "FactSet":
        facts = el.get("facts")
        if not isinstance(facts, list) or not facts:
            problems.append(f"{where}.facts must be a non-empty list")
        else:
            for j, f in enumerate(facts):
                if not (isinstance(f, dict) and isinstance(f.get("title"), str) and isinstance(f.get("value"), str)):
                    problems.append(f"{where}.facts[{j}] must be {{title: string, value: string}}")
    if el["type"] == "Container":
        for j, item in enumerate(el.get("items") or []):
            check_element(item, f"{where}.items[{j}]", problems)


def check_teams(doc):
    """A Teams workflow webhook's message: attachments with one Adaptive Card."""
    problems = []
    if not isinstance(doc, dict):
        return ["the body is not a JSON object"]
    if doc.get("type") != "message":
        problems.append('type must be "message"')
    atts = doc.get("attachments")
    if not isinstance(atts, list) or not atts:
        return problems + ["attachments must be a non-empty list"]
    for i, a in enumerate(atts):
        where = f"attachments[{i}]"
        if not isinstance(a, dict):
            problems.append(f"{where} must be an object")
            continue
        if a.get("contentType") != "application/vnd.microsoft.card.adaptive":
            problems.append(f"{where}.contentType must be application/vnd.microsoft.card.adaptive")
        if a.get("contentUrl") is not None:
            problems.append(f"{where}.contentUrl must be null or absent for an inline card")
        card = a.get("content")
        if not isinstance(card, dict):
            problems.append(f"{where}.content must be the card")
            continue
        if card.get("type") != "AdaptiveCard":
            problems.append(f'{where}.content.type must be "AdaptiveCard"')
        version = card.get("version")
        if not isinstance(version, str) or not re.fullmatch(r"1\.[0-5]", version):
            problems.append(f"{where}.content.version must be 1.0 to 1.5 (what Teams renders), got {version!r}")
        if "$schema" in card and card["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json":
            problems.append(f"{where}.content.$schema is not the Adaptive Card schema")
        body = card.get("body")
        if not isinstance(body, list) or not body:
            problems.append(f"{where}.content.body must be a non-empty list")
        else:
            for j, el in enumerate(body):
                check_element(el, f"{where}.content.body[{j}]", problems)
        for j, act in enumerate(card.get("actions") or []):
            aw = f"{where}.content.actions[{j}]"
            if not isinstance(act, dict) or act.get("type") not in CARD_ACTIONS:
                problems.append(f"{aw}.type unknown")
                continue
            for field in CARD_ACTIONS[act["type"]]:
                if field not in act:
                    problems.append(f"{aw} ({act['type']}): {field} is required")
    return problems


def check_hook(doc):
    problems = []
    if not isinstance(doc, dict):
        return ["the body is not a JSON object"]
    if doc.get("schema") != "hoist.notify/v1":
        problems.append('schema must be "hoist.notify/v1"')
    if doc.get("event") not in ("success", "failure", "rollback"):
        problems.append("event must be success, failure or rollback")
    for field in ("status", "pipeline", "run", "title", "verify", "rolled_back", "left"):
        if field not in doc:
            problems.append(f"{field} is required")
    return problems


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, content_type="text/plain", headers=None):
        data = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_requests":
            with LOCK:
                return self.answer(200, json.dumps(REQUESTS), "application/json")
        if url.path == "/_reset":
            with LOCK:
                REQUESTS.clear()
                COUNTS.clear()
            return self.answer(200, "{}", "application/json")
        return self.answer(404, "not found")

    def do_POST(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode(errors="replace") if length else ""
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        kind = url.path.strip("/").split("/")[0]
        check = {"slack": check_slack, "teams": check_teams, "hook": check_hook}.get(kind)
        problems = check(doc) if check else [f"no receiver at {url.path}"]
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            problems.append("Content-Type must be application/json")
        with LOCK:
            COUNTS[url.path] = COUNTS.get(url.path, 0) + 1
            seen = COUNTS[url.path]
        if seen <= int(q.get("fail", "0")):
            status = int(q.get("fail_status", "503"))
            extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
            body, ctype = "unavailable", "text/plain"
        elif problems:
            status, extra = 400, None
            body = "invalid_payload: " + "; ".join(problems) if kind == "slack" else json.dumps({"problems": problems})
            ctype = "text/plain" if kind == "slack" else "application/json"
        else:
            status, extra = (202 if kind == "teams" else 200), None
            body, ctype = ("ok", "text/plain") if kind != "teams" else ("", "text/plain")
        with LOCK:
            REQUESTS.append({"method": self.command, "path": url.path, "query": q, "time": time.time(),
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "body": raw, "json": doc, "problems": problems, "status": status})
        self.answer(status, body, ctype, extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--max-time", type=float, default=600)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.port_file)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    parent, started = os.getppid(), time.time()
    while os.getppid() == parent and time.time() - started < args.max_time:
        time.sleep(0.3)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
