// The client's pure parts: Status bodies to structured errors (the recorded kubectl bodies in
// ../shared/fixtures/k8s/kubectl, and our own), resource paths, and manifests.
#include <doctest/doctest.h>
#include <hoist/k8s.hpp>

#include "tests/support/shared_fixtures.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;
using namespace hoist::k8s;
using hoist::Code;
using hoist::Error;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

hoist::Error error_for(long status, std::string body, hoist::Headers headers = {}) {
  hoist::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  hoist::rest::Request req;
  req.http.method = "PATCH";
  req.http.url = "https://127.0.0.1:5020/api/v1/namespaces/x/services/svc1";
  req.what = "apply Service svc1";
  // status_error is the REST layer's; the parser is ours
  boost::asio::io_context io;
  hoist::HttpClient http(io);
  hoist::rest::Client client(http, hoist::rest::Api{"k8s", {"audit-id"}, status_error_parser});
  auto e = client.status_error(r, req);
  return e;
}

std::string status(const std::string& reason, int code, const std::string& message, json details = json::object()) {
  return json{{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"}, {"reason", reason},
              {"code", code}, {"message", message}, {"details", details}}.dump();
}

}  // namespace

TEST_CASE("k8s errors: the recorded Status bodies of kubectl's tests") {
  fs::path dir = hoist_test::shared_fixtures_dir("k8s/kubectl", "recorded Status bodies");
  if (dir.empty()) return;
  auto invalid = error_for(422, slurp(dir / "edit-create-list-error-3.response.json"));
  CHECK(invalid.code() == Code::invalid_argument);
  CHECK(invalid.message().find("Service \"svc2\" is invalid") != std::string::npos);
  CHECK(invalid.message().find("(HTTP 422 from 127.0.0.1:5020)") != std::string::npos);
  REQUIRE(invalid.details()["causes"].size() == 2);
  CHECK(invalid.details()["causes"][0]["field"] == "spec.ports[0].protocol");
  CHECK(invalid.details()["causes"][1]["field"] == "spec.clusterIP");
  CHECK(invalid.details()["reason"] == "Invalid");

  auto missing = error_for(404, slurp(dir / "edit-missing-service-0.response.json"));
  CHECK(missing.code() == Code::not_found);
  CHECK(missing.message().find("services \"missing\" not found (NotFound)") != std::string::npos);
  CHECK(missing.details()["details"]["name"] == "missing");

  auto immutable = error_for(422, slurp(dir / "edit-error-reedit-2.response.json"));
  CHECK(immutable.details()["causes"][0]["message"] == "Invalid value: \"10.0.0.146.1\": field is immutable");
}

TEST_CASE("k8s errors: each Status reason to its code, whatever the HTTP status says") {
  struct Row { long http; std::string reason; Code code; };
  for (const auto& row : {Row{409, "AlreadyExists", Code::conflict}, Row{409, "Conflict", Code::conflict},
                          Row{403, "Forbidden", Code::forbidden}, Row{401, "Unauthorized", Code::unauthorized},
                          Row{429, "TooManyRequests", Code::throttled}, Row{410, "Expired", Code::not_found},
                          Row{400, "BadRequest", Code::invalid_argument}, Row{500, "NotFound", Code::not_found},
                          Row{504, "Timeout", Code::timeout}, Row{503, "ServiceUnavailable", Code::unavailable}}) {
    CAPTURE(row.reason);
    auto e = error_for(row.http, status(row.reason, static_cast<int>(row.http), "the server says " + row.reason));
    CHECK(e.code() == row.code);
    CHECK(e.message().find("the server says " + row.reason + " (" + row.reason + ")") != std::string::npos);
  }
  auto throttled = error_for(429, status("TooManyRequests", 429, "slow down"), {{"retry-after", "7"}, {"audit-id", "a-1"}});
  CHECK(throttled.details()["retry_after"] == 7);
  CHECK(throttled.details()["request_ids"]["audit-id"] == "a-1");
  // not a Status: the status code decides, the body is kept
  auto plain = error_for(502, "<html>bad gateway</html>");
  CHECK(plain.code() == Code::unavailable);
  CHECK(plain.details()["body"] == "<html>bad gateway</html>");
}

TEST_CASE("k8s errors: a deterministic 500 is classified by its Status body, not its code") {
  // server-side apply of a field the schema lacks: 500, no reason (kubernetes#122480's body)
  std::string body = json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
                          {"message", "failed to create typed patch object (prod/web; apps/v1, Kind=Deployment): "
                                      ".spec.template.spec.containers[name=\"app\"].imagePullPolcy: field not declared in schema"},
                          {"code", 500}}.dump();
  auto e = error_for(500, body);
  CHECK(e.code() == Code::invalid_argument);
  CHECK_FALSE(e.retryable());
  CHECK(e.message().find("imagePullPolcy: field not declared in schema") != std::string::npos);
  // an InternalError that says nothing of the kind stays a server fault, retried
  auto transient = error_for(500, status("InternalError", 500, "Internal error occurred: etcdserver: request timed out"));
  CHECK(transient.code() == Code::unavailable);
  CHECK(transient.retryable());
}

TEST_CASE("k8s resources: paths for namespaced, cluster-scoped and core kinds") {
  Resource deploy{"apps", "v1", "Deployment", "deployments", true, {}};
  CHECK(deploy.api_version() == "apps/v1");
  CHECK(deploy.path("prod", "web") == "/apis/apps/v1/namespaces/prod/deployments/web");
  CHECK(deploy.path("") == "/apis/apps/v1/deployments");  // all namespaces
  Resource ns{"", "v1", "Namespace", "namespaces", false, {}};
  CHECK(ns.path("ignored", "prod") == "/api/v1/namespaces/prod");
  Resource crd{"stable.example.com", "v1", "CronTab", "crontabs", true, {}};
  CHECK(crd.path("a b") == "/apis/stable.example.com/v1/namespaces/a%20b/crontabs");
}

TEST_CASE("k8s manifests: documents, Lists, and what each must have") {
  auto docs = parse_manifests(
      "---\n# leading comment\napiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n---\n"
      "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
      "- {apiVersion: v1, kind: ConfigMap, metadata: {generateName: b-}}\n---\n"
      "{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {\"name\": \"web\"}}\n");
  REQUIRE(docs.size() == 4);
  CHECK(docs[0]["kind"] == "Namespace");
  CHECK(docs[2]["metadata"]["generateName"] == "b-");
  CHECK(docs[3]["kind"] == "Deployment");
  CHECK(parse_manifests("").empty());

  struct Row { std::string text, pattern; };
  for (const auto& row : {Row{"kind: Service\nmetadata: {name: a}\n", "manifest document 1 has no apiVersion"},
                          Row{"apiVersion: v1\nkind: Service\n", "manifest document 1 (Service) has no metadata.name"},
                          Row{"a: 1\n---\n- 1\n", "manifest document 1 has no apiVersion"},
                          Row{"apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n- 1\n", "manifest document 2 is not an object"},
                          Row{"apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: []}]\n", "a List inside a List"},
                          Row{"apiVersion: v1\nkind: [\n", "manifest: "}}) {
    CAPTURE(row.text);
    CHECK_THROWS_WITH_AS(parse_manifests(row.text), doctest::Contains(row.pattern.c_str()), Error);
  }
  auto values = check_manifests(json::array({{{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", "s"}}}}}));
  CHECK(values.size() == 1);
  CHECK_THROWS_WITH_AS(check_manifests(json::array({json::object(), 1})), doctest::Contains("manifest 1 has no apiVersion"), Error);
}
