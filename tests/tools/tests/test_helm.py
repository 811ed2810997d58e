#!/usr/bin/env python3
"""Tests of the helm stand-in (tests/tools/helm): helm's flags, rendering, values, and the
release history logic over a fake kubectl. Its use against the Kubernetes emulator is tested
where hoist drives helm (tests/lua). Run: python3 tests/tools/tests/test_helm.py"""
import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
HELM = os.path.join(REPO, "tests", "tools", "helm")
CHART = os.path.join(REPO, "examples", "charts", "app")


class HelmStandIn(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.env = dict(os.environ, FAKE_KUBECTL_STATE=os.path.join(self.dir.name, "state.json"),
                        HOIST_HELM_KUBECTL=os.path.join(HERE, "fake_kubectl.py"))
        self.env.pop("FAKE_KUBECTL_UNREADY", None)

    def tearDown(self):
        self.dir.cleanup()

    def helm(self, *args, ok=True, **env):
        r = subprocess.run([HELM, *args], capture_output=True, text=True,
                           env=dict(self.env, **env), timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def state(self):
        with open(self.env["FAKE_KUBECTL_STATE"], encoding="utf-8") as fh:
            return json.load(fh)

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    # flags -------------------------------------------------------------------------------

    def test_unknown_flags_are_refused_like_helm(self):
        r = self.helm("upgrade", "--install", "web", CHART, "--wiat", ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("Error: unknown flag: --wiat", r.stderr)
        r = self.helm("upgrade", "-x", "web", CHART, ok=False)
        self.assertIn("unknown shorthand flag: 'x' in -x", r.stderr)
        r = self.helm("rollback", "web", "--install", ok=False)  # an upgrade flag
        self.assertIn("unknown flag: --install", r.stderr)
        r = self.helm("upgrade", "web", CHART, "--timeout", "ten", ok=False)
        self.assertIn('invalid duration "ten"', r.stderr)
        r = self.helm("frobnicate", ok=False)
        self.assertIn('unknown command "frobnicate"', r.stderr)

    def test_real_flag_spellings_parse(self):
        r = self.helm("template", "web", CHART, "-n", "prod", "--namespace=prod", "-f",
                      self.write("v.yaml", "replicaCount: 2\n"), "--set=image.tag=v9",
                      "--wait", "--atomic", "--timeout", "10m", "--kube-context", "x")
        self.assertIn('image: "127.0.0.1:5000/app:v9"', r.stdout)
        self.assertIn("replicas: 2", r.stdout)

    # rendering and values ------------------------------------------------------------------

    def test_values_files_and_set_merge_in_helm_order(self):
        prod = self.write("prod.yaml", "replicaCount: 3\nautoscaling:\n  enabled: true\n"
                          "  maxReplicas: 20\nresources:\n  limits:\n    cpu: \"1\"\n")
        r = self.helm("template", "web", CHART, "-f", prod, "--set",
                      "autoscaling.maxReplicas=9,image.tag=v2", "--set-string", "containerPort=8080")
        out = r.stdout
        self.assertIn("kind: HorizontalPodAutoscaler", out)
        self.assertIn("maxReplicas: 9", out)             # --set after -f wins
        self.assertIn("containerPort: 8080", out)
        self.assertIn('cpu: "1"', out)
        kinds = [l.split()[1] for l in out.splitlines() if l.startswith("kind:")]
        self.assertEqual(kinds, ["Service", "Deployment", "HorizontalPodAutoscaler"])

    def test_json_values_files(self):
        r = self.helm("template", "web", CHART, "-f",
                      self.write("v.json", json.dumps({"image": {"tag": "j1"}})))
        self.assertIn("app:j1", r.stdout)

    def test_templates_beyond_the_subset_are_refused_by_name(self):
        chart = os.path.join(self.dir.name, "c")
        os.makedirs(os.path.join(chart, "templates"))
        self.write("c/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
        self.write("c/templates/x.yaml", "a: {{ include \"x\" . }}\n")
        r = self.helm("template", "r", chart, ok=False)
        self.assertIn("c/templates/x.yaml", r.stderr)
        self.assertIn("cannot evaluate", r.stderr)

    def test_missing_chart_and_values_file_name_the_path(self):
        r = self.helm("template", "web", "/no/chart", ok=False)
        self.assertIn('"/no/chart" not found', r.stderr)
        r = self.helm("template", "web", CHART, "-f", "/no/values.yaml", ok=False)
        self.assertIn("open /no/values.yaml", r.stderr)

    # releases ---------------------------------------------------------------------------------

    def test_upgrade_install_history_rollback(self):
        self.helm("upgrade", "--install", "web", CHART, "--set", "image.tag=v1", "--wait")
        self.helm("upgrade", "--install", "web", CHART, "--set", "image.tag=v2", "--wait")
        hist = json.loads(self.helm("history", "web", "-o", "json").stdout)
        self.assertEqual([(h["revision"], h["status"]) for h in hist],
                         [(1, "superseded"), (2, "deployed")])
        self.assertEqual(self.state()["objects"]["default/Deployment/web"]["image"],
                         "127.0.0.1:5000/app:v2")
        self.assertIn("app:v1", self.helm("get", "manifest", "web", "--revision", "1").stdout)
        self.helm("rollback", "web")
        hist = json.loads(self.helm("history", "web", "-o", "json").stdout)
        self.assertEqual(hist[-1]["revision"], 3)
        self.assertEqual(hist[-1]["description"], "Rollback to 1")
        self.assertEqual(self.state()["objects"]["default/Deployment/web"]["image"],
                         "127.0.0.1:5000/app:v1")
        secrets = [k for k in self.state()["objects"] if "/Secret/sh.helm.release.v1.web." in k]
        self.assertEqual(len(secrets), 3)

    def test_upgrade_without_install_needs_a_release(self):
        r = self.helm("upgrade", "web", CHART, ok=False)
        self.assertIn('UPGRADE FAILED: "web" has no deployed releases', r.stderr)

    def test_failed_wait_marks_the_revision_failed_and_atomic_rolls_back(self):
        self.helm("upgrade", "--install", "web", CHART, "--set", "image.tag=v1")
        r = self.helm("upgrade", "web", CHART, "--set", "image.tag=bad", "--wait",
                      "--timeout", "5s", ok=False, FAKE_KUBECTL_UNREADY="bad")
        self.assertIn("UPGRADE FAILED", r.stderr)
        self.assertIn("Deployment/web not ready", r.stderr)
        hist = json.loads(self.helm("history", "web", "-o", "json").stdout)
        self.assertEqual(hist[-1]["status"], "failed")
        r = self.helm("upgrade", "web", CHART, "--set", "image.tag=bad2", "--atomic",
                      ok=False, FAKE_KUBECTL_UNREADY="bad")
        self.assertIn("has been rolled back due to atomic being set", r.stderr)
        hist = json.loads(self.helm("history", "web", "-o", "json").stdout)
        self.assertEqual(hist[-1]["description"], "Rollback to 1")
        self.assertEqual(self.state()["objects"]["default/Deployment/web"]["image"],
                         "127.0.0.1:5000/app:v1")

    def test_uninstall_removes_resources_and_records(self):
        self.helm("install", "web", CHART)
        self.helm("uninstall", "web")
        self.assertEqual([k for k in self.state()["objects"]], [])
        r = self.helm("status", "web", ok=False)
        self.assertIn("release: not found", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
