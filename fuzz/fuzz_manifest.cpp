// Manifest and index parsing (what a registry answers to GET /v2/<name>/manifests/<ref>).
// The input is the body; its length picks the Content-Type header (so a recorded manifest
// replays as it is). Properties: only
// invalid_argument refuses a body; what parses has a manifest media type and descriptors with
// valid digests and sizes.
#include "fuzz/fuzz.hpp"

#include <hoist/registry.hpp>

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  namespace reg = hoist::registry;
  namespace media = hoist::registry::media;
  static const std::string kTypes[] = {
      "", "application/json", std::string(media::oci_index), std::string(media::oci_manifest),
      std::string(media::docker_list), std::string(media::docker_manifest) + "; charset=utf-8", "text/plain"};
  const std::string& content_type = kTypes[size % std::size(kTypes)];
  std::string_view body(reinterpret_cast<const char*>(data), size);
  reg::ManifestContent m;
  try {
    m = reg::parse_manifest(body, content_type);
  } catch (const hoist::Error& e) {
    expect_invalid_argument(e, "parse_manifest");
    return 0;
  } catch (const std::exception& e) {
    fail(std::string("parse_manifest threw a non-hoist exception: ") + e.what());
  }
  check(media::is_manifest(m.media_type), "parsed media type '" + m.media_type + "'");
  check(m.index == media::is_index(m.media_type), "index flag disagrees with " + m.media_type);
  for (const auto* list : {&m.manifests, &m.blobs}) {
    for (const auto& d : *list) {
      check(d.size >= 0, "descriptor size " + std::to_string(d.size));
      try {
        reg::check_digest(d.digest);
      } catch (const hoist::Error& e) {
        fail("parsed descriptor with a bad digest: " + e.message());
      }
    }
  }
  return 0;
}
