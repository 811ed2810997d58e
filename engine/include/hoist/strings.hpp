#pragma once
// Text helpers the engine and the bindings share: ASCII case folding (header names, media
// types, Kubernetes kinds) and trimming of blanks, one copy each.
#include <boost/algorithm/string/case_conv.hpp>

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

}  // namespace hoist::text
