#pragma once
// Text helpers the engine and the bindings share: ASCII case folding (header names, media
// types, Kubernetes kinds), trimming of blanks and the time now as text, one copy each.
#include <boost/algorithm/string/case_conv.hpp>

#include <ctime>
#include <locale>
#include <string>
#include <string_view>

namespace hoist::text {

// `s` in lower case, ASCII only (the classic locale: no user locale changes a header name).
inline std::string lower(std::string_view s) {
  return boost::algorithm::to_lower_copy(std::string(s), std::locale::classic());
}

// `s` without leading and trailing blanks (space, tab, CR, LF): a view into `s`.
inline std::string_view trim(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

// The time now in UTC as strftime writes `format` ("%Y-%m-%dT%H:%M:%SZ"); at most 63 bytes.
inline std::string utc_now(const char* format) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof buf, format, &tm));
}

}  // namespace hoist::text
