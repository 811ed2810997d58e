// Conformance: the real manifests and indexes of ../shared/fixtures/oci (from the OCI
// image spec and the distribution spec) through the registry's manifest parser.
#include <doctest/doctest.h>
#include <hoist/registry.hpp>

#include "tests/support/shared_fixtures.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

TEST_CASE("conformance: recorded OCI and Docker manifests parse as their specs say") {
  fs::path dir = hoist_test::shared_fixtures_dir("oci", "conformance against recorded manifests");
  if (dir.empty()) return;
  int files = 0;
  for (auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++files;
    CAPTURE(entry.path().filename().string());
    std::ifstream in(entry.path());
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    auto raw = nlohmann::json::parse(bytes);
    auto content = hoist::registry::parse_manifest(bytes, "");
    CHECK(content.media_type == raw.value("mediaType", std::string()));
    if (raw.contains("manifests")) {
      CHECK(content.index);
      REQUIRE(content.manifests.size() == raw["manifests"].size());
      for (size_t i = 0; i < content.manifests.size(); ++i) {
        CHECK(content.manifests[i].digest == raw["manifests"][i]["digest"]);
        CHECK(content.manifests[i].size == raw["manifests"][i]["size"].get<std::int64_t>());
      }
    } else {
      CHECK_FALSE(content.index);
      REQUIRE(content.blobs.size() == raw["layers"].size() + 1);
      CHECK(content.blobs[0].digest == raw["config"]["digest"]);
      CHECK(content.blobs.back().digest == raw["layers"].back()["digest"]);
    }
  }
  CHECK(files >= 5);
}
