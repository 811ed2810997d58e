#pragma once
// The recorded fixtures of ../shared/fixtures (next to the repository; HOIST_FIXTURES points
// elsewhere, HOIST_SHARED_FIXTURES too), for the conformance cases that read them. Without the
// folder a case prints "skipped: ../shared/fixtures absent (...)" and returns, except under
// CI=true, where it fails: CI has the fixtures. The ctest `shared-fixtures`
// (tests/shared_fixtures.sh) shows such a skip in the ctest summary.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

namespace hoist_test {

inline std::filesystem::path shared_fixtures() {
  for (const char* name : {"HOIST_FIXTURES", "HOIST_SHARED_FIXTURES"}) {
    if (const char* env = std::getenv(name); env && *env) return env;
  }
  return std::filesystem::path(HOIST_SOURCE_DIR) / ".." / "shared" / "fixtures";
}

// shared_fixtures()/sub when it is a folder; otherwise "" after the skip line (what: what the
// case checks against), or a failure of the case under CI=true.
inline std::filesystem::path shared_fixtures_dir(const std::string& sub, const std::string& what) {
  std::filesystem::path dir = shared_fixtures() / sub;
  if (std::filesystem::is_directory(dir)) return dir;
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") {
    FAIL("../shared/fixtures absent (" << dir.string() << ": " << what << ") and CI=true: not skipping");
  }
  std::cout << "skipped: ../shared/fixtures absent (" << what << ")\n";
  return {};
}

}  // namespace hoist_test
