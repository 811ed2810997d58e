// HTTP header values a registry (or any REST remote) sends: WWW-Authenticate, Link and
// Retry-After. Properties: schemes and parameter names come back lower-cased and non-empty;
// Retry-After is absent or a finite delay >= 0.
#include "fuzz/fuzz.hpp"

#include <hoist/rest.hpp>

#include <cctype>
#include <cmath>
#include <cstdint>

namespace {
bool lower_case(const std::string& s) {
  for (unsigned char c : s)
    if (std::isupper(c)) return false;
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  namespace reg = hoist::rest;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& c : reg::parse_www_authenticate(text)) {
      check(!c.scheme.empty() && lower_case(c.scheme), "challenge scheme '" + c.scheme + "'");
      for (const auto& [name, value] : c.params)
        check(!name.empty() && lower_case(name), "challenge parameter name '" + name + "'");
      (void)c.param("realm");
    }
    (void)reg::parse_link_next(text);
    auto delay = reg::parse_retry_after(text, 1.7e9);
    if (delay) check(std::isfinite(*delay) && *delay >= 0, "Retry-After delay " + std::to_string(*delay));
  } catch (const hoist::Error& e) {
    expect_invalid_argument(e, "header parsing");
  }
  return 0;
}
