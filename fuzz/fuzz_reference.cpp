// Image reference parsing (Docker's grammar). Properties: a parsed reference has a registry
// and a repository, and its str() parses back to the same parts; a registry host parses back
// to itself.
#include "fuzz/fuzz.hpp"

#include <hoist/registry.hpp>

#include <cstdint>

using hoist::registry::Reference;

namespace {

void round_trip(std::string_view text, bool repository_only) {
  using namespace hoist::fuzz;
  Reference r;
  try {
    r = repository_only ? Reference::parse_repository(text) : Reference::parse(text);
  } catch (const hoist::Error& e) {
    expect_invalid_argument(e, "Reference::parse");
    return;
  }
  check(!r.registry.empty() && !r.repository.empty(), "parsed with an empty part: " + r.str());
  if (repository_only) check(r.tag.empty() && r.digest.empty(), "parse_repository kept a tag or digest");
  (void)r.target();
  (void)r.host();
  Reference again;
  try {
    again = Reference::parse(r.str());
  } catch (const hoist::Error& e) {
    fail("str() of a parsed reference does not parse: " + r.str() + ": " + e.message());
  }
  check(again.registry == r.registry && again.repository == r.repository && again.tag == r.tag &&
            again.digest == r.digest,
        "round trip changed " + std::string(text) + " -> " + r.str() + " -> " + again.str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  round_trip(text, false);
  round_trip(text, true);
  (void)hoist::registry::is_loopback_host(text);
  try {
    std::string host = hoist::registry::parse_registry_host(text);
    check(hoist::registry::parse_registry_host(host) == host, "registry host does not parse to itself: " + host);
  } catch (const hoist::Error& e) {
    expect_invalid_argument(e, "parse_registry_host");
  }
  return 0;
}
