"""The fields of the kinds the emulator serves, for field validation (unknown fields).

Written here from the API reference, compact: a struct is a dict of field name -> type, a list
is [item type], and the leaves are
  S  a scalar (string, integer, boolean, quantity, int-or-string, time: types are not checked),
  M  a map of free keys (labels, annotations, data, nodeSelector, limits),
  F  a free-form object whose inside is not checked (status, affinity, the volume sources,
     managedFields' fieldsV1): field validation stops there.
`unknown(res, obj)` returns the paths of the fields a kind does not have; `prune` drops them.
"""

from patch import list_keys

S, M, F = "scalar", "map", "free"

OBJECT_META = {
    "name": S, "generateName": S, "namespace": S, "selfLink": S, "uid": S, "resourceVersion": S,
    "generation": S, "creationTimestamp": S, "deletionTimestamp": S, "deletionGracePeriodSeconds": S,
    "labels": M, "annotations": M, "finalizers": [S], "managedFields": [F],
    "ownerReferences": [{"apiVersion": S, "kind": S, "name": S, "uid": S, "controller": S,
                         "blockOwnerDeletion": S}],
}
LABEL_SELECTOR = {"matchLabels": M, "matchExpressions": [{"key": S, "operator": S, "values": [S]}]}
KEY_REF = {"name": S, "key": S, "optional": S}
ENV_VAR = {"name": S, "value": S, "valueFrom": {
    "fieldRef": {"apiVersion": S, "fieldPath": S},
    "resourceFieldRef": {"containerName": S, "resource": S, "divisor": S},
    "configMapKeyRef": KEY_REF, "secretKeyRef": KEY_REF}}
HANDLER = {                                   # what a probe or a lifecycle hook runs
    "exec": {"command": [S]},
    "httpGet": {"path": S, "port": S, "host": S, "scheme": S, "httpHeaders": [{"name": S, "value": S}]},
    "tcpSocket": {"port": S, "host": S},
    "grpc": {"port": S, "service": S},
}
PROBE = dict(HANDLER, initialDelaySeconds=S, timeoutSeconds=S, periodSeconds=S, successThreshold=S,
             failureThreshold=S, terminationGracePeriodSeconds=S)
CONTAINER = {
    "name": S, "image": S, "command": [S], "args": [S], "workingDir": S,
    "ports": [{"name": S, "containerPort": S, "hostPort": S, "hostIP": S, "protocol": S}],
    "env": [ENV_VAR],
    "envFrom": [{"prefix": S, "configMapRef": {"name": S, "optional": S},
                 "secretRef": {"name": S, "optional": S}}],
    "resources": {"limits": M, "requests": M, "claims": [{"name": S, "request": S}]},
    "resizePolicy": [{"resourceName": S, "restartPolicy": S}],
    "restartPolicy": S,
    "volumeMounts": [{"name": S, "mountPath": S, "subPath": S, "subPathExpr": S, "readOnly": S,
                      "recursiveReadOnly": S, "mountPropagation": S}],
    "volumeDevices": [{"name": S, "devicePath": S}],
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "lifecycle": {"postStart": HANDLER, "preStop": dict(HANDLER, sleep={"seconds": S}), "stopSignal": S},
    "terminationMessagePath": S, "terminationMessagePolicy": S, "imagePullPolicy": S,
    "securityContext": F, "stdin": S, "stdinOnce": S, "tty": S,
}
VOLUME = {"name": S, **{src: F for src in (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
    "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image")}}
POD_SPEC = {
    "volumes": [VOLUME], "initContainers": [CONTAINER], "containers": [CONTAINER], "ephemeralContainers": [F],
    "restartPolicy": S, "terminationGracePeriodSeconds": S, "activeDeadlineSeconds": S, "dnsPolicy": S,
    "nodeSelector": M, "serviceAccountName": S, "serviceAccount": S, "automountServiceAccountToken": S,
    "nodeName": S, "hostNetwork": S, "hostPID": S, "hostIPC": S, "shareProcessNamespace": S,
    "securityContext": F, "imagePullSecrets": [{"name": S}], "hostname": S, "subdomain": S, "affinity": F,
    "schedulerName": S, "tolerations": [{"key": S, "operator": S, "value": S, "effect": S, "tolerationSeconds": S}],
    "hostAliases": [{"ip": S, "hostnames": [S]}], "priorityClassName": S, "priority": S, "dnsConfig": F,
    "readinessGates": [{"conditionType": S}], "runtimeClassName": S, "enableServiceLinks": S,
    "preemptionPolicy": S, "overhead": M, "topologySpreadConstraints": [F], "setHostnameAsFQDN": S, "os": F,
    "hostUsers": S, "schedulingGates": [{"name": S}], "resourceClaims": [F], "resources": F,
}
TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}
ROLLING = {"maxUnavailable": S, "maxSurge": S, "partition": S}


def kind(spec=None, **top):
    """A kind's top level: apiVersion, kind, metadata, status (not checked) and its own fields."""
    fields = {"apiVersion": S, "kind": S, "metadata": OBJECT_META, "status": F, **top}
    if spec is not None:
        fields["spec"] = spec
    return fields


KINDS = {
    "namespaces": kind({"finalizers": [S]}),
    "nodes": kind({"podCIDR": S, "podCIDRs": [S], "providerID": S, "unschedulable": S,
                   "taints": [{"key": S, "value": S, "effect": S, "timeAdded": S}], "configSource": F,
                   "externalID": S}),
    "pods": kind(POD_SPEC),
    "services": kind({
        "ports": [{"name": S, "protocol": S, "appProtocol": S, "port": S, "targetPort": S, "nodePort": S}],
        "selector": M, "clusterIP": S, "clusterIPs": [S], "type": S, "externalIPs": [S], "sessionAffinity": S,
        "loadBalancerIP": S, "loadBalancerSourceRanges": [S], "externalName": S, "externalTrafficPolicy": S,
        "healthCheckNodePort": S, "publishNotReadyAddresses": S, "sessionAffinityConfig": F, "ipFamilies": [S],
        "ipFamilyPolicy": S, "allocateLoadBalancerNodePorts": S, "loadBalancerClass": S,
        "internalTrafficPolicy": S, "trafficDistribution": S}),
    "endpoints": kind(subsets=[{"addresses": [F], "notReadyAddresses": [F],
                                "ports": [{"name": S, "port": S, "protocol": S, "appProtocol": S}]}]),
    "events": kind(involvedObject=F, reason=S, message=S, source=F, firstTimestamp=S, lastTimestamp=S, count=S,
                   type=S, eventTime=S, series=F, action=S, related=F, reportingComponent=S,
                   reportingInstance=S),
    "configmaps": kind(data=M, binaryData=M, immutable=S),
    "secrets": kind(data=M, stringData=M, type=S, immutable=S),
    "serviceaccounts": kind(secrets=[F], imagePullSecrets=[{"name": S}], automountServiceAccountToken=S),
    "deployments": kind({"replicas": S, "selector": LABEL_SELECTOR, "template": TEMPLATE,
                         "strategy": {"type": S, "rollingUpdate": {"maxUnavailable": S, "maxSurge": S}},
                         "minReadySeconds": S, "revisionHistoryLimit": S, "paused": S,
                         "progressDeadlineSeconds": S}),
    "replicasets": kind({"replicas": S, "minReadySeconds": S, "selector": LABEL_SELECTOR, "template": TEMPLATE}),
    "statefulsets": kind({"replicas": S, "selector": LABEL_SELECTOR, "template": TEMPLATE,
                          "volumeClaimTemplates": [F], "serviceName": S, "podManagementPolicy": S,
                          "updateStrategy": {"type": S, "rollingUpdate": ROLLING}, "revisionHistoryLimit": S,
                          "minReadySeconds": S, "persistentVolumeClaimRetentionPolicy": {
                              "whenDeleted": S, "whenScaled": S}, "ordinals": {"start": S}}),
    "daemonsets": kind({"selector": LABEL_SELECTOR, "template": TEMPLATE,
                        "updateStrategy": {"type": S, "rollingUpdate": ROLLING}, "minReadySeconds": S,
                        "revisionHistoryLimit": S}),
    "controllerrevisions": kind(data=F, revision=S),
    "jobs": kind({"parallelism": S, "completions": S, "activeDeadlineSeconds": S, "podFailurePolicy": F,
                  "successPolicy": F, "backoffLimit": S, "backoffLimitPerIndex": S, "maxFailedIndexes": S,
                  "selector": LABEL_SELECTOR, "manualSelector": S, "template": TEMPLATE,
                  "ttlSecondsAfterFinished": S, "completionMode": S, "suspend": S, "podReplacementPolicy": S,
                  "managedBy": S}),
    "horizontalpodautoscalers": kind({"scaleTargetRef": {"apiVersion": S, "kind": S, "name": S},
                                      "minReplicas": S, "maxReplicas": S, "metrics": [F], "behavior": F,
                                      "targetCPUUtilizationPercentage": S}),
    "poddisruptionbudgets": kind({"minAvailable": S, "maxUnavailable": S, "selector": LABEL_SELECTOR,
                                  "unhealthyPodEvictionPolicy": S}),
    "leases": kind({"holderIdentity": S, "leaseDurationSeconds": S, "acquireTime": S, "renewTime": S,
                    "leaseTransitions": S, "strategy": S, "preferredHolder": S}),
}


def _walk(value, schema, path, keyed, out, depth=0):
    """Appends (path, container dict, field) for every field `schema` lacks."""
    if depth > 64 or schema in (S, M, F):
        return
    if isinstance(schema, list):
        if isinstance(value, list):
            keys = list_keys(path[-1][0], value) if path and path[-1][0] else None
            for i, item in enumerate(value):
                if keyed and keys and isinstance(item, dict):
                    sel = ",".join(f'{k}={_go_quote(item.get(k, "TCP" if k == "protocol" else None))}'
                                   for k in keys)
                    step = ("", f"[{sel}]")
                else:
                    step = ("", f"[{i}]")
                _walk(item, schema[0], path + [step], keyed, out, depth + 1)
        return
    if not isinstance(value, dict):
        return
    for k, v in value.items():
        if k not in schema:
            out.append((path + [(k, k)], value, k))
        else:
            _walk(v, schema[k], path + [(k, k)], keyed, out, depth + 1)


def _go_quote(v):
    return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _text(path, lead):
    s = ""
    for name, shown in path:
        s += shown if shown.startswith("[") else ("." if s or lead else "") + shown
    return s


def unknown(res, obj, keyed=False):
    """The paths of unknown fields: 'spec.x.y[0].z' (strict decoding's form) or, keyed=True,
    '.spec.x.y[name="c"].z' (server-side apply's form, list items by their merge keys)."""
    schema = KINDS.get(res.plural)
    if schema is None or not isinstance(obj, dict):
        return []
    out = []
    _walk(obj, schema, [], keyed, out)
    return [_text(p, keyed) for p, _, _ in out]


def prune(res, obj):
    """Drops the unknown fields from obj (in place); returns their paths (strict decoding's form)."""
    schema = KINDS.get(res.plural)
    if schema is None or not isinstance(obj, dict):
        return []
    out = []
    _walk(obj, schema, [], False, out)
    for _, holder, field in out:
        holder.pop(field, None)
    return [_text(p, False) for p, _, _ in out]
