"""Object helpers: Status errors, selectors, defaulting, validation and Table rendering."""

import copy
import datetime
import json
import re
import uuid

MAX_DEPTH = 64          # nesting bound for every walk over a client-supplied object

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# The name rule of each kind, as the API server's validation picks it: most names are DNS-1123
# subdomains; a Service's name becomes a DNS label (DNS-1035: starts with a letter), a
# Namespace's a DNS-1123 label. (rule regex, max length, the API server's wording)
NAME_RULES = {
    "subdomain": (NAME_RE, 253, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
                  "'example.com', regex used for validation is "
                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    "dns1123-label": (LABEL_RE, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                      "characters or '-', and must start and end with an alphanumeric character (e.g. "
                      "'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
    "dns1035-label": (DNS1035_RE, 63, "a DNS-1035 label must consist of lower case alphanumeric characters or "
                      "'-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
                      "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
}
NAME_RULE_OF = {"services": "dns1035-label", "namespaces": "dns1123-label"}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def new_uid():
    return str(uuid.uuid4())


class ApiError(Exception):
    """An error answered as a metav1.Status (shape of the recorded Status bodies)."""

    def __init__(self, code, reason, message, details=None, retry_after=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.retry_after = details, retry_after

    def status(self):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message}
        if self.reason:                     # a plain error of the API server's has none
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(res):
    """deployments.apps, services: how the apiserver names a resource in messages."""
    return f"{res.plural}.{res.group}" if res.group else res.plural


def _details(res, name, kind=None):
    d = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = kind or res.plural
    return d


def not_found(res, name):
    return ApiError(404, "NotFound", f'{_qualified(res)} "{name}" not found', _details(res, name))


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", f'{_qualified(res)} "{name}" already exists', _details(res, name))


def conflict(res, name, why):
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(res)} "{name}": {why}',
                    _details(res, name))


def invalid(res, name, causes):
    """causes: [(field, reason, message)]; message format of the recorded 422 bodies."""
    msgs = [f"{f}: {m}" for f, _, m in causes]
    text = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    d = _details(res, name, res.kind)
    d["causes"] = [{"reason": r, "message": m, "field": f} for f, r, m in causes]
    kind = f"{res.kind}.{res.group}" if res.group else res.kind       # Deployment.apps "web" is invalid
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', d)


def bad_request(message):
    return ApiError(400, "BadRequest", message)


# ------------------------------------------------------------------------------------------
# selectors

def parse_label_selector(text):
    """Returns a list of (key, op, values); op in = != in notin exists !exists."""
    reqs = []
    if not text:
        return reqs
    parts, depth, cur = [], 0, ""
    for ch in text:                       # split on commas outside parentheses
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        if not p:
            continue
        m = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$", p)
        if m:
            vals = [v.strip() for v in m.group(3).split(",") if v.strip()]
            reqs.append((m.group(1), m.group(2), vals))
        elif p.startswith("!"):
            reqs.append((p[1:].strip(), "!exists", []))
        elif "!=" in p:
            k, v = p.split("!=", 1)
            reqs.append((k.strip(), "!=", [v.strip()]))
        elif "==" in p:
            k, v = p.split("==", 1)
            reqs.append((k.strip(), "=", [v.strip()]))
        elif "=" in p:
            k, v = p.split("=", 1)
            reqs.append((k.strip(), "=", [v.strip()]))
        elif re.match(r"^[A-Za-z0-9./_-]+$", p):
            reqs.append((p, "exists", []))
        else:
            raise bad_request(f'unable to parse requirement: invalid label selector "{text}"')
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for k, op, vals in reqs:
        has = k in labels
        v = labels.get(k)
        if op == "=" and v != vals[0]:
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and v not in vals:
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
    return True


def selector_from_label_selector(sel):
    """metav1.LabelSelector (matchLabels/matchExpressions) -> requirement list."""
    reqs = [(k, "=", [v]) for k, v in sorted((sel or {}).get("matchLabels", {}).items())]
    for e in (sel or {}).get("matchExpressions", []) or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists",
              "DoesNotExist": "!exists"}.get(e.get("operator"))
        if op:
            reqs.append((e.get("key"), op, e.get("values") or []))
    return reqs


FIELD_LABELS = {"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName",
                "spec.restartPolicy", "status.podIP", "type", "reason", "source",
                "reportingComponent", "spec.schedulerName", "spec.serviceAccountName"}


def parse_field_selector(text, res):
    reqs = []
    if not text:
        return reqs
    for p in text.split(","):
        p = p.strip()
        if not p:
            continue
        if "!=" in p:
            k, v = p.split("!=", 1)
            op = "!="
        elif "==" in p:
            k, v = p.split("==", 1)
            op = "="
        elif "=" in p:
            k, v = p.split("=", 1)
            op = "="
        else:
            raise bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{p}\'')
        k = k.strip()
        if k not in FIELD_LABELS and not (res.plural == "events" and k.startswith("involvedObject.")):
            raise bad_request(f'"{k}" is not a known field selector: only "metadata.name", '
                              f'"metadata.namespace"')
        reqs.append((k, op, v.strip()))
    return reqs


def field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def fields_match(reqs, obj):
    for k, op, v in reqs:
        got = field_value(obj, k)
        if (op == "=" and got != v) or (op == "!=" and got == v):
            return False
    return True


# ------------------------------------------------------------------------------------------
# walking nested objects with a depth bound

def check_depth(value, res, name):
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            raise invalid(res, name, [("metadata", "FieldValueInvalid",
                                       f"Invalid value: object nesting exceeds {MAX_DEPTH} levels")])
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------------------
# defaults (the ones kubectl output and the controllers rely on)

def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers", []) or []:
        if not isinstance(c, dict):
            continue
        img = c.get("image", "")
        tag = img.rsplit("/", 1)[-1]
        latest = "@" not in img and (":" not in tag or tag.endswith(":latest"))
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for p in c.get("ports", []) or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            pr = c.get(kind)
            if isinstance(pr, dict):
                pr.setdefault("timeoutSeconds", 1)
                pr.setdefault("periodSeconds", 10)
                pr.setdefault("successThreshold", 1)
                pr.setdefault("failureThreshold", 3)
                if isinstance(pr.get("httpGet"), dict):
                    pr["httpGet"].setdefault("path", "/")
                    pr["httpGet"].setdefault("scheme", "HTTP")


def default_template(tpl):
    if isinstance(tpl, dict):
        tpl.setdefault("metadata", {})
        if isinstance(tpl.get("spec"), dict):
            default_pod_spec(tpl["spec"])


def apply_defaults(res, obj):
    spec = obj.get("spec")
    if res.plural == "pods" and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        tol = spec.setdefault("tolerations", [])
        if not tol:
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                tol.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 300})
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    elif res.plural == "deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        st = spec.setdefault("strategy", {})
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        default_template(spec.get("template"))
        obj.setdefault("status", {})
    elif res.plural == "statefulsets" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        st = spec.setdefault("updateStrategy", {})
        if not st.get("type"):                   # the API server's defaults: RollingUpdate, partition 0
            st["type"] = "RollingUpdate"
            st.setdefault("rollingUpdate", {})
        if st["type"] == "RollingUpdate" and isinstance(st.get("rollingUpdate"), dict):
            st["rollingUpdate"].setdefault("partition", 0)
        default_template(spec.get("template"))
        obj.setdefault("status", {}).setdefault("replicas", 0)
        obj["status"].setdefault("availableReplicas", 0)
    elif res.plural == "daemonsets" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        st = spec.setdefault("updateStrategy", {})
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        default_template(spec.get("template"))
        obj.setdefault("status", {})
        for k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"):
            obj["status"].setdefault(k, 0)
    elif res.plural == "jobs" and isinstance(spec, dict):
        # like the API server's job strategy: a generated selector on the job's uid, and its
        # labels on the pod template (unless spec.manualSelector)
        uid = obj["metadata"].setdefault("uid", new_uid())
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1              # neither: one pod; parallelism alone: a work queue
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        if not spec.get("manualSelector"):
            name = obj["metadata"].get("name", "")
            tpl = spec.setdefault("template", {})
            if isinstance(tpl, dict):
                lab = tpl.setdefault("metadata", {}).setdefault("labels", {})
                for k, v in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                             ("controller-uid", uid), ("job-name", name)):
                    lab.setdefault(k, v)
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        default_template(spec.get("template"))
        obj.setdefault("status", {})
    elif res.plural == "replicasets" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        default_template(spec.get("template"))
        obj.setdefault("status", {}).setdefault("replicas", 0)
    elif res.plural == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []) or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif res.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif res.plural == "secrets":
        obj.setdefault("type", "Opaque")


# ------------------------------------------------------------------------------------------
# validation (enough for the Invalid paths clients test)

def _container_causes(spec, prefix):
    causes = []
    cs = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(cs, list) or not cs:
        causes.append((f"{prefix}.containers", "FieldValueRequired", "Required value"))
        return causes
    seen = set()
    for i, c in enumerate(cs):
        if not isinstance(c, dict):
            causes.append((f"{prefix}.containers[{i}]", "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        n = c.get("name")
        if not n:
            causes.append((f"{prefix}.containers[{i}].name", "FieldValueRequired", "Required value"))
        elif n in seen:
            causes.append((f"{prefix}.containers[{i}].name", "FieldValueDuplicate", f'Duplicate value: "{n}"'))
        seen.add(n)
        if not c.get("image"):
            causes.append((f"{prefix}.containers[{i}].image", "FieldValueRequired", "Required value"))
        for j, p in enumerate(c.get("ports") or []):
            cp = p.get("containerPort") if isinstance(p, dict) else None
            if not isinstance(cp, int) or not 0 < cp < 65536:
                causes.append((f"{prefix}.containers[{i}].ports[{j}].containerPort", "FieldValueInvalid",
                               f"Invalid value: {json.dumps(cp)}: must be between 1 and 65535, inclusive"))
    return causes


def validate(res, obj):
    md = obj.get("metadata") or {}
    name = md.get("name", "")
    causes = []
    rule, longest, wording = NAME_RULES[NAME_RULE_OF.get(res.plural, "subdomain")]
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "Required value: name or generateName is required"))
    else:
        why = ([f"must be no more than {longest} characters"] if len(name) > longest else []) + \
              ([wording] if not rule.match(name) else [])
        if why:
            causes.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {"; ".join(why)}'))
    for k, v in (md.get("labels") or {}).items():
        if not isinstance(v, str) or (v and not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", v)) or len(v) > 63:
            causes.append((f"metadata.labels", "FieldValueInvalid", f'Invalid value: {json.dumps(v)}: a valid label must be '
                           "an empty string or consist of alphanumeric characters, '-', '_' or '.'"))
    spec = obj.get("spec")
    if res.plural == "pods":
        causes += _container_causes(spec, "spec")
    elif res.plural in ("deployments", "replicasets", "statefulsets", "daemonsets", "jobs"):
        if not isinstance(spec, dict):
            causes.append(("spec", "FieldValueRequired", "Required value"))
        else:
            tpl = spec.get("template") or {}
            causes += _container_causes(tpl.get("spec"), "spec.template.spec")
            sel = spec.get("selector")
            if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
                causes.append(("spec.selector", "FieldValueRequired", "Required value"))
            elif not labels_match(selector_from_label_selector(sel), (tpl.get("metadata") or {}).get("labels")):
                causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                               f"Invalid value: {canonical((tpl.get('metadata') or {}).get('labels') or {})}: "
                               "`selector` does not match template `labels`"))
            if res.plural == "jobs":
                policy = (tpl.get("spec") or {}).get("restartPolicy") if isinstance(tpl.get("spec"), dict) else None
                if policy not in ("Never", "OnFailure"):
                    causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                                   f'Unsupported value: {json.dumps(policy)}: supported values: "OnFailure", "Never"'))
                for f in ("completions", "parallelism", "backoffLimit"):
                    v = spec.get(f)
                    if v is not None and (not isinstance(v, int) or v < 0):
                        causes.append((f"spec.{f}", "FieldValueInvalid",
                                       f"Invalid value: {json.dumps(v)}: must be greater than or equal to 0"))
            r = spec.get("replicas")
            if r is not None and (not isinstance(r, int) or r < 0):
                causes.append(("spec.replicas", "FieldValueInvalid",
                               f"Invalid value: {json.dumps(r)}: must be greater than or equal to 0"))
    elif res.plural == "services" and isinstance(spec, dict):
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p, dict):
                continue
            if p.get("protocol") not in ("TCP", "UDP", "SCTP"):
                causes.append((f"spec.ports[{i}].protocol", "FieldValueNotSupported",
                               f'Unsupported value: {json.dumps(p.get("protocol"))}: supported values: TCP, UDP, SCTP'))
            if not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                causes.append((f"spec.ports[{i}].port", "FieldValueInvalid",
                               f'Invalid value: {json.dumps(p.get("port"))}: must be between 1 and 65535, inclusive'))
        ip = spec.get("clusterIP")
        if ip not in (None, "", "None") and not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", str(ip)):
            causes.append(("spec.clusterIP", "FieldValueInvalid",
                           f"Invalid value: {json.dumps(ip)}: must be empty, 'None', or a valid IP address"))
    if causes:
        raise invalid(res, name, causes)


# the selectors the API server refuses to change once the object exists (apps/v1, batch/v1)
IMMUTABLE_SELECTOR = {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs"}


def _go_selector(sel):
    """A LabelSelector printed as the API server's Go %#v does in its 'field is immutable' message."""
    ml = (sel or {}).get("matchLabels")
    labels = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(ml.items())) + "}" \
        if ml else "map[string]string(nil)"
    exprs = (sel or {}).get("matchExpressions")
    ex = "[]v1.LabelSelectorRequirement(nil)" if not exprs else "[]v1.LabelSelectorRequirement{" + ", ".join(
        f'v1.LabelSelectorRequirement{{Key:"{e.get("key")}", Operator:"{e.get("operator")}", Values:[]string{{'
        + ", ".join(f'"{v}"' for v in e.get("values") or []) + "}}" for e in exprs) + "}"
    return f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{ex}}}"


def validate_update(res, old, new):
    """What an update may not change (after validate(new))."""
    if res.plural not in IMMUTABLE_SELECTOR:
        return
    was, now_ = (old.get("spec") or {}).get("selector"), (new.get("spec") or {}).get("selector")
    if canonical(was) != canonical(now_):
        raise invalid(res, new["metadata"]["name"], [("spec.selector", "FieldValueInvalid",
                                                     f"Invalid value: {_go_selector(now_)}: field is immutable")])


def drop_nulls(value):
    """Typed decoding drops null fields (e.g. the creationTimestamp: null in kubectl's templates)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            return
        if isinstance(v, dict):
            for k in [k for k, x in v.items() if x is None]:
                del v[k]
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


def strip_status(obj):
    obj = copy.copy(obj)
    obj.pop("status", None)
    return obj
