#!/usr/bin/env python3
"""Unit tests of the emulator's pure parts (no server, no Docker): patches, selectors,
server-side apply field ownership, the store's watch history, template hashes."""

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
from api import Api                       # noqa: E402
from objects import ApiError, labels_match, parse_label_selector  # noqa: E402
from store import Store                   # noqa: E402

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


if __name__ == "__main__":
    unittest.main(verbosity=1)
