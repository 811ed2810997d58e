#!/usr/bin/env python3
"""Unit tests of the emulator's pure parts (no server, no Docker): patches, selectors,
server-side apply field ownership, the store's watch history, template hashes, and the
StatefulSet and Job controllers driven by hand, the kubelet's bookkeeping of dead containers."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apply as ssa                       # noqa: E402
import controllers                        # noqa: E402
import discovery                          # noqa: E402
import patch                              # noqa: E402
import protobuf                           # noqa: E402
import schema                             # noqa: E402
import server                             # noqa: E402
import tables                             # noqa: E402
import versions                           # noqa: E402
from api import Api                       # noqa: E402
from objects import ApiError, labels_match, parse_label_selector  # noqa: E402
from store import Store                   # noqa: E402
import kubelet                            # noqa: E402

DEPLOY = discovery.BY_KEY["apps/deployments"]
CM = discovery.BY_KEY["/configmaps"]
NS = discovery.BY_KEY["/namespaces"]


def dep(image="a:1", replicas=2):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": {"containers": [{"name": "c", "image": image,
                                                           "env": [{"name": "A", "value": "1"}]}]}}}}


class Patches(unittest.TestCase):
    def test_merge_patch_null_deletes(self):
        self.assertEqual(patch.merge_patch({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"d": 3}}),
                         {"b": {"c": 2, "d": 3}})

    def test_json_patch_ops_and_errors(self):
        doc = {"a": [1, 2], "m": {"x": 1}}
        out = patch.json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3},
                                     {"op": "replace", "path": "/m/x", "value": 2},
                                     {"op": "remove", "path": "/a/0"},
                                     {"op": "test", "path": "/m/x", "value": 2}])
        self.assertEqual(out, {"a": [2, 3], "m": {"x": 2}})
        self.assertEqual(doc["a"], [1, 2])           # input untouched
        with self.assertRaises(ApiError) as e:
            patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])
        self.assertIn("/nope", e.exception.message)
        with self.assertRaises(ApiError):
            patch.json_patch(doc, [{"op": "frobnicate", "path": "/a"}])
        with self.assertRaises(ApiError):
            patch.json_patch(doc, {"op": "add"})

    def test_strategic_merge_by_name(self):
        live = dep()["spec"]["template"]["spec"]
        live["containers"].append({"name": "side", "image": "s:1"})
        out = patch.strategic_merge(live, {"containers": [{"name": "c", "image": "a:2",
                                                           "env": [{"name": "B", "value": "2"}]}]})
        self.assertEqual([c["image"] for c in out["containers"]], ["a:2", "s:1"])
        self.assertEqual([e["name"] for e in out["containers"][0]["env"]], ["A", "B"])
        out = patch.strategic_merge(live, {"containers": [{"name": "side", "$patch": "delete"}]})
        self.assertEqual([c["name"] for c in out["containers"]], ["c"])

    def test_depth_bound(self):
        deep = {}
        cur = deep
        for _ in range(200):
            cur["x"] = {}
            cur = cur["x"]
        with self.assertRaises(ApiError):
            patch.merge_patch({}, deep)


class Selectors(unittest.TestCase):
    def test_label_selector_forms(self):
        reqs = parse_label_selector("app=web,tier!=db,env in (a, b),!legacy,track")
        self.assertTrue(labels_match(reqs, {"app": "web", "env": "a", "track": "x"}))
        self.assertFalse(labels_match(reqs, {"app": "web", "env": "c", "track": "x"}))
        self.assertFalse(labels_match(reqs, {"app": "web", "env": "a", "track": "x", "legacy": "1"}))
        with self.assertRaises(ApiError):
            parse_label_selector("a b c")


class ServerSideApply(unittest.TestCase):
    def test_conflict_then_force(self):
        live = ssa.server_side_apply(None, dep(), "alice", False)
        with self.assertRaises(ApiError) as e:
            ssa.server_side_apply(live, dep(replicas=5), "bob", False)
        self.assertEqual(e.exception.code, 409)
        self.assertEqual(e.exception.details["causes"][0]["field"], ".spec.replicas")
        self.assertIn('conflict with "alice"', e.exception.message)
        same = ssa.server_side_apply(live, dep(), "bob", False)      # same values: shared, no conflict
        self.assertEqual(len(same["metadata"]["managedFields"]), 2)
        forced = ssa.server_side_apply(live, dep(replicas=5), "bob", True)
        self.assertEqual(forced["spec"]["replicas"], 5)
        alice = next(m for m in forced["metadata"]["managedFields"] if m["manager"] == "alice")
        self.assertNotIn("f:replicas", alice["fieldsV1"]["f:spec"])

    def test_removed_field_is_pruned_and_list_items_keyed(self):
        live = ssa.server_side_apply(None, dep(), "alice", False)
        cfg = dep()
        del cfg["spec"]["template"]["spec"]["containers"][0]["env"]
        out = ssa.server_side_apply(live, cfg, "alice", False)
        self.assertNotIn("env", out["spec"]["template"]["spec"]["containers"][0])
        fs = live["metadata"]["managedFields"][0]["fieldsV1"]
        self.assertIn('k:{"name":"c"}', fs["f:spec"]["f:template"]["f:spec"]["f:containers"])


class StoreWatch(unittest.TestCase):
    def test_history_window_and_filtering(self):
        store = Store(history=3)
        api = Api(store)
        api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)
        rv0 = store.current_rv()
        for i in range(5):
            api.create(CM, "default", {"metadata": {"name": f"c{i}", "labels": {"i": str(i)}}})
        with self.assertRaises(LookupError):
            store.watch(CM.key, "default", lambda o: True, rv0)
        w, backlog = store.watch(CM.key, "default", lambda o: o["metadata"]["labels"]["i"] == "4",
                                 store.current_rv() - 2)
        self.assertEqual([(t, o["metadata"]["name"]) for t, o in backlog], [("ADDED", "c4")])
        api.patch(CM, "default", "c4", json.dumps({"metadata": {"labels": {"i": "9"}}}).encode(),
                  "application/merge-patch+json")
        self.assertEqual(w.q.get_nowait()[0], "DELETED")   # left the selector
        store.compact()
        with self.assertRaises(LookupError):
            store.watch(CM.key, "default", lambda o: True, rv0 + 4)

    def test_update_conflict_and_generation(self):
        store = Store()
        api = Api(store)
        api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)
        d = api.create(DEPLOY, "default", dep())
        self.assertEqual(d["metadata"]["generation"], 1)
        d2 = api.patch(DEPLOY, "default", "d", b'{"spec":{"replicas":3}}', "application/merge-patch+json")
        self.assertEqual(d2["metadata"]["generation"], 2)
        d3 = api.patch(DEPLOY, "default", "d", b'{"metadata":{"labels":{"x":"y"}}}', "application/merge-patch+json")
        self.assertEqual(d3["metadata"]["generation"], 2)
        stale = dict(d, metadata=dict(d["metadata"]))
        with self.assertRaises(ApiError) as e:
            api.update(DEPLOY, "default", "d", stale)
        self.assertEqual(e.exception.reason, "Conflict")
        with self.assertRaises(ApiError) as e:
            api.create(DEPLOY, "nope", dep())
        self.assertEqual((e.exception.code, e.exception.message), (404, 'namespaces "nope" not found'))


class Validation(unittest.TestCase):
    def setUp(self):
        self.api = Api(Store())
        self.api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)

    def invalid(self, fn, *args):
        with self.assertRaises(ApiError) as e:
            fn(*args)
        self.assertEqual((e.exception.code, e.exception.reason), (422, "Invalid"), e.exception.message)
        return e.exception

    def test_names_follow_the_rule_of_their_kind(self):
        svc = discovery.BY_KEY["/services"]
        e = self.invalid(self.api.create, svc, "default", {"metadata": {"name": "web.v1"},
                                                           "spec": {"ports": [{"port": 80}]}})
        self.assertEqual(e.details["causes"][0]["field"], "metadata.name")
        self.assertIn('Invalid value: "web.v1": a DNS-1035 label must consist of', e.message)
        self.invalid(self.api.create, svc, "default", {"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}})
        e = self.invalid(self.api.create, NS, None, {"metadata": {"name": "team.a"}})
        self.assertIn("RFC 1123 label", e.message)
        e = self.invalid(self.api.create, CM, "default", {"metadata": {"name": "Web_1"}})
        self.assertIn("RFC 1123 subdomain", e.message)
        self.invalid(self.api.create, CM, "default", {"metadata": {"name": "a" * 254}})
        d = dep()
        d["metadata"]["name"] = "web.v1"                 # a subdomain: fine for a Deployment or a ConfigMap
        self.assertEqual(self.api.create(DEPLOY, "default", d)["metadata"]["name"], "web.v1")
        self.api.create(CM, "default", {"metadata": {"name": "web.v1"}})

    def test_a_deployment_selector_is_immutable(self):
        self.api.create(DEPLOY, "default", dep())
        moved = dep()
        moved["spec"]["selector"]["matchLabels"]["app"] = "e"
        moved["spec"]["template"]["metadata"]["labels"]["app"] = "e"
        e = self.invalid(self.api.update, DEPLOY, "default", "d", moved)
        self.assertEqual(e.details["causes"][0]["field"], "spec.selector")
        self.assertEqual(e.message, 'Deployment.apps "d" is invalid: spec.selector: Invalid value: '
                         'v1.LabelSelector{MatchLabels:map[string]string{"app":"e"}, '
                         'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable')
        self.invalid(self.api.patch, DEPLOY, "default", "d", json.dumps(
            {"spec": moved["spec"]}).encode(), "application/merge-patch+json")
        self.invalid(self.api.patch, DEPLOY, "default", "d", json.dumps(moved).encode(),
                     "application/apply-patch+yaml", {"fieldManager": "m", "force": "true"})
        same = self.api.patch(DEPLOY, "default", "d", b'{"spec":{"replicas":5}}', "application/merge-patch+json")
        self.assertEqual(same["spec"]["replicas"], 5)


class FieldValidation(unittest.TestCase):
    """Unknown fields: Strict refuses, Warn (the default) drops and warns, Ignore drops;
    server-side apply always refuses (a 500 without a reason, as the API server answers)."""

    def setUp(self):
        self.api = Api(Store())
        self.api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)

    def typo(self):
        d = dep()
        d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 80}}
        return d

    def test_create_update_patch_honour_field_validation(self):
        with self.assertRaises(ApiError) as e:
            self.api.create(DEPLOY, "default", self.typo(), {"fieldValidation": "Strict"})
        self.assertEqual((e.exception.code, e.exception.reason), (400, "BadRequest"))
        self.assertIn('strict decoding error: unknown field "spec.template.spec.containers[0].readinesProbe"',
                      e.exception.message)
        warnings = []
        made = self.api.create(DEPLOY, "default", self.typo(), {}, warnings=warnings)
        self.assertNotIn("readinesProbe", made["spec"]["template"]["spec"]["containers"][0])
        self.assertEqual(warnings, ['unknown field "spec.template.spec.containers[0].readinesProbe"'])
        with self.assertRaises(ApiError) as e:
            self.api.update(DEPLOY, "default", "d", dict(self.typo(), metadata=made["metadata"]),
                            {"fieldValidation": "Strict"})
        self.assertEqual(e.exception.code, 400)
        with self.assertRaises(ApiError) as e:
            self.api.patch(DEPLOY, "default", "d", b'{"spec":{"replica":3}}', "application/merge-patch+json",
                           {"fieldValidation": "Strict"})
        self.assertIn('unknown field "spec.replica"', e.exception.message)
        warnings = []
        out = self.api.patch(DEPLOY, "default", "d", b'{"spec":{"replica":3},"metadata":{"labels":{"a":"b"}}}',
                             "application/merge-patch+json", {"fieldValidation": "Ignore"}, warnings=warnings)
        self.assertEqual((out["metadata"]["labels"], "replica" in out["spec"], warnings), ({"a": "b"}, False, []))
        with self.assertRaises(ApiError) as e:
            self.api.create(CM, "default", {"metadata": {"name": "x"}}, {"fieldValidation": "strict"})
        self.assertIn('supported values: "Ignore", "Strict", "Warn"', e.exception.message)

    def test_server_side_apply_refuses_unknown_fields(self):
        for q in ({"fieldManager": "m"}, {"fieldManager": "m", "fieldValidation": "Ignore"}):
            with self.assertRaises(ApiError) as e:
                self.api.patch(DEPLOY, "default", "d", json.dumps(self.typo()).encode(),
                               "application/apply-patch+yaml", q)
            self.assertEqual(e.exception.code, 500)
            self.assertNotIn("reason", e.exception.status())
            self.assertEqual(e.exception.message, 'failed to create typed patch object (default/d; apps/v1, '
                             'Kind=Deployment): .spec.template.spec.containers[name="c"].readinesProbe: field '
                             'not declared in schema')
        self.api.patch(DEPLOY, "default", "d", json.dumps(dep()).encode(), "application/apply-patch+yaml",
                       {"fieldManager": "m"})

    def test_the_emulator_own_objects_have_only_known_fields(self):
        for res_key, obj in ((DEPLOY.key, dep()), ("/services", {"metadata": {"name": "s"}, "spec": {
                "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "d"}}}),
                ("/pods", {"metadata": {"name": "p"}, "spec": dep()["spec"]["template"]["spec"]})):
            res = discovery.BY_KEY[res_key]
            made = self.api.create(res, "default", obj, {"fieldValidation": "Strict"})
            self.assertEqual(schema.unknown(res, made), [], res.plural)    # a GET then PUT passes Strict


class Namespaces(unittest.TestCase):
    def test_no_new_content_in_a_terminating_namespace(self):
        store = Store()
        api = Api(store)
        api.create(NS, None, {"metadata": {"name": "t"}}, internal=True)
        api.create(CM, "t", {"metadata": {"name": "a"}})
        gone = api.delete(NS, None, "t")
        self.assertEqual(gone["status"]["phase"], "Terminating")
        with self.assertRaises(ApiError) as e:
            api.create(CM, "t", {"metadata": {"name": "b"}})
        self.assertEqual(e.exception.code, 403)
        self.assertIn("namespace t because it is being terminated", e.exception.message)


class PodDeletion(unittest.TestCase):
    def test_graceful_then_force(self):
        store = Store()
        api = Api(store)
        handed = []
        api.on_pod_delete = handed.append          # a kubelet that takes graceful deletions
        pod_res = discovery.BY_KEY["/pods"]
        api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)
        api.create(pod_res, "default", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "n", "containers": [{"name": "c", "image": "i:1"}]}})
        first = api.delete(pod_res, "default", "p")
        self.assertTrue(first["metadata"]["deletionTimestamp"])
        self.assertEqual(first["metadata"]["deletionGracePeriodSeconds"], 30)
        again = api.delete(pod_res, "default", "p")           # e.g. the garbage collector
        self.assertIsNotNone(store.get(pod_res.key, "default", "p"))
        self.assertEqual(again["metadata"]["uid"], first["metadata"]["uid"])
        self.assertEqual(len(handed), 1)
        api.delete(pod_res, "default", "p", {"gracePeriodSeconds": 0})
        self.assertIsNone(store.get(pod_res.key, "default", "p"))


class ContainerDeaths(unittest.TestCase):
    """The docker events thread and a pod worker race: a container that exits at once can die
    before `docker run -d` has handed its id to the worker (a crash loop never seen as one)."""

    def kubelet(self):
        k = kubelet.Kubelet.__new__(kubelet.Kubelet)   # no server, no Docker: the bookkeeping only
        k.by_container, k.lock = {}, kubelet.threading.RLock()
        k.unclaimed_deaths = kubelet.collections.deque(maxlen=256)
        return k

    def test_death_before_claim_is_not_lost(self):
        k, worker = self.kubelet(), object()
        self.assertIsNone(k.died("abc123"))                    # docker events prints the short id
        self.assertTrue(k.claim("abc123def456", worker))       # the worker learns it died
        self.assertFalse(k.claim("fff000", worker))

    def test_death_after_claim_goes_to_its_worker(self):
        k, worker = self.kubelet(), object()
        self.assertFalse(k.claim("abc123def456", worker))
        self.assertEqual(k.died("abc123"), (worker, "abc123def456"))


class CrashBackOff(unittest.TestCase):
    """The kubelet's schedule: the first crash restarts at once, then 10 s, 20 s, ... 5 min; an
    instance that ran ten minutes starts the schedule again."""

    def test_schedule(self):
        w = kubelet.PodWorker.__new__(kubelet.PodWorker)
        w.k = type("K", (), {"backoff": 10.0})()
        c = kubelet.Container({"name": "app"})
        waits = []
        for _ in range(9):
            waits.append(w.crash_back_off(c, kubelet.time.time()))
            w.restart_begins(c)
        self.assertEqual(waits, [0, 10, 20, 40, 80, 160, 300, 300, 300])
        self.assertEqual([kubelet.go_duration(x) for x in (10, 80, 160, 300)], ["10s", "1m20s", "2m40s", "5m0s"])
        self.assertEqual(w.crash_back_off(c, kubelet.time.time() + 601), 0)     # ran ten minutes: reset
        w.restart_begins(c)
        self.assertEqual(w.crash_back_off(c, kubelet.time.time()), 10)


class ProtobufBodies(unittest.TestCase):
    """Bodies kubectl 1.32 sent (-v=9) for `create deployment web --image=busybox:1 --port=80
    --replicas=2 -- sh -c 'echo hi'`, `create job j --image=busybox:1 -- sh -c 'echo hi'` and
    `auth can-i create pods` in namespace kemu-p: every non-pointer field written, set or not."""
    DEPLOYMENT = bytes.fromhex(
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412d6010a250a0377656212001a066b656d752d7022"
        "002a003200380042005a0a0a036170701203776562129e010802120c0a0a0a0361707012037765621a83010a1c0a0012"
        "001a0022002a003200380042005a0a0a036170701203776562126312450a0762757379626f78120962757379626f783a"
        "311a0273681a022d631a076563686f2068692a00320a0a001000185022002a0042006a007200800100880100900100a2"
        "01001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000"
        "280038001a002200")
    JOB = bytes.fromhex(
        "6b3873000a0f0a0862617463682f763112034a6f621291010a170a016a12001a066b656d752d7022002a003200380042"
        "00126c326a0a100a0012001a0022002a00320038004200125612330a016a120962757379626f783a311a0273681a022d"
        "631a076563686f2068692a0042006a007200800100880100900100a201001a054e65766572320042004a005200580060"
        "0068008201008a01009a0100c201001a082000280030003a001a002200")
    REVIEW = bytes.fromhex(
        "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365"
        "7373526576696577123e0a100a0012001a0022002a0032003800420012200a1e0a066b656d752d701206637265617465"
        "1a0022002a04706f647332003a001a08080012001a0020001a002200")

    def test_kubectl_create_deployment_job_and_can_i(self):
        d = protobuf.decode(self.DEPLOYMENT)
        self.assertEqual(d["metadata"], {"name": "web", "namespace": "kemu-p", "labels": {"app": "web"}})
        self.assertEqual(d["spec"]["replicas"], 2)
        self.assertEqual(d["spec"]["selector"], {"matchLabels": {"app": "web"}})
        self.assertEqual(d["spec"]["template"]["spec"], {"containers": [{
            "name": "busybox", "image": "busybox:1", "command": ["sh", "-c", "echo hi"],
            "ports": [{"containerPort": 80}]}]})
        self.assertNotIn("strategy", d["spec"])                   # empty: left to the defaults
        j = protobuf.decode(self.JOB)
        self.assertEqual((j["kind"], j["spec"]["template"]["spec"]["restartPolicy"]), ("Job", "Never"))
        r = protobuf.decode(self.REVIEW)
        self.assertEqual(r["spec"], {"resourceAttributes": {"namespace": "kemu-p", "verb": "create",
                                                              "resource": "pods"}})

    def test_a_field_not_in_the_tables_is_refused_unless_empty(self):
        where = "Deployment.spec.template.spec.containers"
        self.assertEqual(protobuf.message(bytes.fromhex("0a01617a00"), protobuf.CONTAINER, where), {"name": "a"})
        with self.assertRaises(ApiError) as e:                      # field 15 (securityContext), set
            protobuf.message(bytes.fromhex("0a01617a020801"), protobuf.CONTAINER, where)
        self.assertEqual(e.exception.code, 415)
        self.assertIn("field 15 of Deployment.spec.template.spec.containers", e.exception.message)


class Versions(unittest.TestCase):
    def test_autoscaling_v1_is_stored_as_v2_and_read_back(self):
        v1 = discovery.lookup("autoscaling", "v1", "horizontalpodautoscalers")
        body = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"},
                         "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}}
        stored = versions.to_storage(v1, body)
        self.assertEqual(stored["apiVersion"], "autoscaling/v2")
        self.assertEqual(stored["spec"]["metrics"], [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 70}}}])
        back = versions.from_storage(v1, stored)
        self.assertEqual((back["apiVersion"], back["spec"]), ("autoscaling/v1", body["spec"]))
        v2 = discovery.lookup("autoscaling", "v2", "horizontalpodautoscalers")
        self.assertIs(versions.storage(v1), v2)
        self.assertIs(versions.to_storage(v2, stored), stored)


class Hashes(unittest.TestCase):
    def test_template_hash_ignores_the_hash_label(self):
        t = dep()["spec"]["template"]
        h = controllers.template_hash(t)
        t2 = json.loads(json.dumps(t))
        t2["metadata"]["labels"]["pod-template-hash"] = h
        self.assertEqual(controllers.template_hash(t2), h)
        self.assertTrue(controllers.same_template(t, t2))
        self.assertTrue(set(h) <= set(controllers.SAFE))
        self.assertNotEqual(controllers.template_hash(dep("a:2")["spec"]["template"]), h)

    def test_resolve_percentages(self):
        self.assertEqual(controllers.resolve("25%", 3, True), 1)
        self.assertEqual(controllers.resolve("25%", 3, False), 0)
        self.assertEqual(controllers.resolve(2, 3, False), 2)


class Workloads(unittest.TestCase):
    """The StatefulSet and Job controllers driven by hand (no worker thread, no kubelet)."""

    def setUp(self):
        class Srv:
            pass
        self.srv = Srv()
        self.srv.store = self.store = Store()
        self.srv.api = self.api = Api(self.store)
        self.srv.kubelet = None
        self.ctl = controllers.Controllers(self.srv)
        self.w = self.ctl.workloads
        self.api.create(NS, None, {"metadata": {"name": "default"}}, internal=True)
        self.pod = discovery.BY_KEY["/pods"]

    def pods(self):
        return {p["metadata"]["name"]: p for p in self.store.list(self.pod.key, "default")[0]}

    def set_pod(self, name, phase, ready=False, restarts=0):
        def put(o):
            o["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                           "containerStatuses": [{"name": "c", "restartCount": restarts}]}
        self.ctl.mutate(self.pod, "default", name, put, "status")

    def job(self, policy, backoff):
        res = discovery.BY_KEY["batch/jobs"]
        self.api.create(res, "default", {"metadata": {"name": "j"}, "spec": {"backoffLimit": backoff, "template": {
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "i:1"}]}}}})
        self.w.sync_job("default", "j")
        return lambda: self.store.get(res.key, "default", "j")

    def test_job_never_fails_after_backoff_limit_failed_pods(self):
        job = self.job("Never", 1)
        first = list(self.pods())
        self.assertEqual(len(first), 1)
        self.assertEqual(job()["status"]["active"], 1)
        self.assertEqual(job()["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
                         job()["metadata"]["uid"])
        self.set_pod(first[0], "Failed")
        self.w.sync_job("default", "j")
        self.assertEqual(len(self.pods()), 2, "one retry")
        self.assertFalse(job()["status"].get("conditions"))
        second = [n for n in self.pods() if n not in first][0]
        self.set_pod(second, "Failed")
        self.w.sync_job("default", "j")
        st = job()["status"]
        self.assertEqual(st["failed"], 2)
        self.assertEqual([(c["type"], c["reason"]) for c in st["conditions"]],
                         [("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")])
        self.assertEqual(len(self.pods()), 2, "failed pods are kept")

    def test_job_on_failure_counts_restarts_and_completes(self):
        job = self.job("OnFailure", 2)
        name = list(self.pods())[0]
        self.set_pod(name, "Running", restarts=1)
        self.w.sync_job("default", "j")
        self.assertFalse(job()["status"].get("conditions"))
        self.set_pod(name, "Running", restarts=2)
        self.w.sync_job("default", "j")
        self.assertEqual(job()["status"]["conditions"][-1]["reason"], "BackoffLimitExceeded")
        self.assertEqual(self.pods(), {}, "the running pod of a failed job is deleted")
        job2 = discovery.BY_KEY["batch/jobs"]
        self.api.create(job2, "default", {"metadata": {"name": "ok"}, "spec": {"template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}}}})
        self.w.sync_job("default", "ok")
        self.set_pod(list(self.pods())[0], "Succeeded")
        self.w.sync_job("default", "ok")
        st = self.store.get(job2.key, "default", "ok")["status"]
        self.assertEqual((st["succeeded"], st["conditions"][-1]["type"], bool(st.get("completionTime"))),
                         (1, "Complete", True))

    def test_statefulset_ordered_then_partitioned_update_from_the_top(self):
        res = discovery.BY_KEY["apps/statefulsets"]
        sts = {"metadata": {"name": "s"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "s"}},
               "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}
        self.api.create(res, "default", sts)
        for i in range(3):
            self.w.sync_statefulset("default", "s")
            self.assertEqual(sorted(self.pods()), [f"s-{k}" for k in range(i + 1)], "one pod at a time")
            self.w.sync_statefulset("default", "s")
            self.assertEqual(len(self.pods()), i + 1, "the next waits for this one to be ready")
            self.set_pod(f"s-{i}", "Running", ready=True)
        self.w.sync_statefulset("default", "s")
        first = self.store.get(res.key, "default", "s")["status"]
        self.assertEqual((first["readyReplicas"], first["updatedReplicas"]), (3, 3))
        self.api.patch(res, "default", "s", json.dumps({"spec": {
            "updateStrategy": {"rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}}), "application/merge-patch+json")
        self.w.sync_statefulset("default", "s")
        self.assertEqual(sorted(self.pods()), ["s-0", "s-1"], "the highest ordinal goes first")
        self.w.sync_statefulset("default", "s")
        self.set_pod("s-2", "Running", ready=True)
        self.w.sync_statefulset("default", "s")
        st = self.store.get(res.key, "default", "s")["status"]
        revs = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in self.pods().items()}
        self.assertEqual(revs, {"s-0": first["currentRevision"], "s-1": first["currentRevision"],
                                "s-2": st["updateRevision"]}, "below the partition the old revision stays")
        self.assertEqual((st["updatedReplicas"], st["currentRevision"]), (1, first["currentRevision"]))


class Protobuf(unittest.TestCase):
    def test_secret_envelope(self):
        def field(n, data):
            return bytes([n << 3 | 2, len(data)]) + data
        meta = field(1, b"db")
        entry = field(1, b"password") + field(2, b"s3cret")
        raw = field(1, meta) + field(2, entry) + field(3, b"Opaque")
        unknown = field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, raw)
        obj = protobuf.decode(protobuf.MAGIC + unknown)
        self.assertEqual(obj["metadata"]["name"], "db")
        self.assertEqual(obj["data"], {"password": "czNjcmV0"})
        with self.assertRaises(ApiError):
            protobuf.decode(b"k8s\x00\x0a\xff")



class Printers(unittest.TestCase):
    def test_nodes_print_the_columns_of_a_real_cluster(self):
        node = Api(Store()).create(discovery.BY_KEY["/nodes"], None, server.node_manifest(), internal=True)
        t = tables.table(discovery.BY_KEY["/nodes"], [node], {})
        names = [c["name"] for c in t["columnDefinitions"] if c["priority"] == 0]
        wide = [c["name"] for c in t["columnDefinitions"] if c["priority"] == 1]
        self.assertEqual(names, ["Name", "Status", "Roles", "Age", "Version"])
        self.assertEqual(wide, ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"])
        cells = t["rows"][0]["cells"]
        self.assertEqual(cells[:3], ["hoist-emulator", "Ready", "control-plane"])
        self.assertTrue(cells[4].startswith("v1.32.") and cells[5] == "127.0.0.1" and cells[9].startswith("docker://"),
                        cells)


if __name__ == "__main__":
    unittest.main(verbosity=1)
