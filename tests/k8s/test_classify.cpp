// Status classification against recorded objects: every gitops-engine health fixture of
// ../shared/fixtures/k8s (hoist's verdict agrees with the one in the file name, or differs
// where hoist means to, named below with why), and the project's own cases in
// tests/fixtures/k8s/classify, each carrying its expected verdict in an annotation.
#include <doctest/doctest.h>
#include <hoist/k8s.hpp>
#include <hoist/yaml.hpp>

#include "tests/support/shared_fixtures.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using hoist::k8s::classify;
using hoist::k8s::Verdict;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json load(const fs::path& p) {
  if (p.extension() == ".json") return json::parse(slurp(p));
  return hoist::parse_yaml_all(slurp(p)).at(0);
}

// gitops-engine's health status -> hoist's verdict.
std::string mapped(const std::string& health) {
  static const std::map<std::string, std::string> m = {
      {"healthy", "done"}, {"progressing", "progressing"}, {"degraded", "failed"}, {"suspended", "suspended"}};
  return m.at(health);
}

}  // namespace

TEST_CASE("k8s classify: gitops-engine's health fixtures, verdict for verdict") {
  fs::path dir = hoist_test::shared_fixtures_dir("k8s", "gitops-engine health fixtures");
  if (dir.empty()) return;
  // gitops-engine's own test (pkg/health/health_test.go) names the status of each file whose
  // name does not say it.
  const std::map<std::string, std::string> expected = {
      {"daemonset-ondelete", "healthy"},       {"deployment-degraded", "degraded"},
      {"deployment-progressing", "progressing"}, {"deployment-suspended", "suspended"},
      {"ingress", "healthy"},                  {"ingress-nonemptylist", "healthy"},
      {"ingress-unassigned", "progressing"},   {"job-failed", "degraded"},
      {"job-running", "progressing"},          {"job-succeeded", "healthy"},
      {"job-suspended", "suspended"},          {"pod-crashloop", "degraded"},
      {"pod-deletion", "progressing"},         {"pod-error", "degraded"},
      {"pod-failed", "degraded"},              {"pod-imagepullbackoff", "degraded"},
      {"pod-pending", "progressing"},          {"pod-running-not-ready", "progressing"},
      {"pod-running-restart-always", "healthy"}, {"pod-running-restart-never", "progressing"},
      {"pod-running-restart-onfailure", "progressing"}, {"pod-succeeded", "healthy"},
      {"statefulset", "healthy"},              {"statefulset-ondelete", "healthy"},
      {"svc-clusterip", "healthy"},            {"svc-loadbalancer", "healthy"},
      {"svc-loadbalancer-nonemptylist", "healthy"}, {"svc-loadbalancer-unassigned", "progressing"},
  };
  // Where hoist deliberately says otherwise, and why.
  const std::map<std::string, std::string> differs = {
      // a container restarted 4 times in CrashLoopBackOff is failing whatever the restart
      // policy: a rollout must stop on it (gitops-engine waits: the Job might still succeed)
      {"pod-running-restart-onfailure", "failed"},
  };
  // The recorded statefulset-ondelete.yaml has `updateStrategy` twice in one mapping: Go's
  // YAML reader keeps the last, hoist's refuses duplicate keys (as kubectl's strict decoding
  // does), so that file is never classified, and says why.
  const std::string refused = "statefulset-ondelete";
  int files = 0;
  for (auto& entry : fs::directory_iterator(dir)) {
    std::string file = entry.path().filename().string();
    if (!file.starts_with("gitops-engine-") || entry.path().extension() != ".yaml") continue;
    std::string name = file.substr(14, file.size() - 14 - 5);
    CAPTURE(file);
    REQUIRE_MESSAGE(expected.count(name), "a gitops-engine fixture with no recorded verdict: " << file);
    ++files;
    if (name == refused) {
      CHECK_THROWS_WITH_AS(load(entry.path()), doctest::Contains("duplicate key 'updateStrategy'"), hoist::Error);
      continue;
    }
    auto c = classify(load(entry.path()));
    std::string want = differs.count(name) ? differs.at(name) : mapped(expected.at(name));
    CHECK(std::string(to_string(c.verdict)) == want);
    CHECK_FALSE(c.message.empty());
  }
  CHECK(files == static_cast<int>(expected.size()));
}

TEST_CASE("k8s classify: the reasons a rollout stops on, from the recorded pods") {
  fs::path dir = hoist_test::shared_fixtures_dir("k8s", "recorded pods");
  if (dir.empty()) return;
  auto pull = classify(load(dir / "gitops-engine-pod-imagepullbackoff.yaml"));
  CHECK(pull.reason == "ImagePullBackOff");
  CHECK(pull.message.find("Back-off pulling image") != std::string::npos);  // the kubelet's own words
  auto crash = classify(load(dir / "gitops-engine-pod-crashloop.yaml"));
  CHECK(crash.reason == "CrashLoopBackOff");
  CHECK(crash.details["restarts"] == 3);
  CHECK(crash.details["exit_code"] == 1);
  // a higher threshold waits longer on the same pod
  auto patient = classify(load(dir / "gitops-engine-pod-crashloop.yaml"), {.crashloop_restarts = 5});
  CHECK(patient.verdict == Verdict::progressing);
  auto deadline = classify(load(dir / "gitops-engine-deployment-degraded.yaml"));
  CHECK(deadline.reason == "ProgressDeadlineExceeded");
  CHECK(deadline.message == "deployment \"guestbook-ui\" exceeded its progress deadline");
  // kubectl's words, for the same object kubectl would print them for
  auto rolling = classify(load(dir / "gitops-engine-deployment-progressing.yaml"));
  CHECK(rolling.message == "Waiting for deployment \"guestbook-ui\" rollout to finish: 1 old replicas are pending termination...");
  auto live = classify(load(dir / "gitops-engine-diff-deployment-live.json"));
  CHECK(live.verdict == Verdict::done);
  CHECK(live.progress["available"] == live.progress["replicas"]);
  auto recorded = classify(load(dir / "deployment-with-status.json"));
  CHECK(recorded.verdict == Verdict::done);  // NewReplicaSetAvailable, 3 of 3
}

TEST_CASE("k8s classify: the project's own cases (tests/fixtures/k8s/classify)") {
  fs::path dir = fs::path(HOIST_SOURCE_DIR) / "tests" / "fixtures" / "k8s" / "classify";
  REQUIRE(fs::is_directory(dir));
  int files = 0;
  for (auto& entry : fs::directory_iterator(dir)) {
    CAPTURE(entry.path().filename().string());
    json obj = load(entry.path());
    std::istringstream expect(obj["metadata"]["annotations"]["hoist.test/expect"].get<std::string>());
    std::string verdict, reason, missing_kind, missing_name;
    expect >> verdict >> reason >> missing_kind >> missing_name;
    auto c = classify(obj);
    CHECK(std::string(to_string(c.verdict)) == verdict);
    CHECK(c.reason == reason);
    if (!missing_kind.empty()) {
      CHECK(c.details["missing"]["kind"] == missing_kind);
      CHECK(c.details["missing"]["name"] == missing_name);
    }
    ++files;
  }
  CHECK(files >= 15);
}

TEST_CASE("k8s classify: what is not a workload") {
  CHECK(classify(json::array()).verdict == Verdict::unknown);
  CHECK(classify(json{{"kind", "Widget"}}).message == "no status rule for kind Widget");
  // a Deployment without status is waiting for its controller, never done
  CHECK(classify(json{{"kind", "Deployment"}, {"metadata", {{"name", "x"}, {"generation", 1}}}}).verdict == Verdict::progressing);
  auto pvc = classify(json{{"kind", "PersistentVolumeClaim"}, {"status", {{"phase", "Lost"}}}});
  CHECK(pvc.verdict == Verdict::failed);
}
