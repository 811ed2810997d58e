// HTTP header grammars REST clients lean on: WWW-Authenticate challenges (RFC 7235), Link
// rel="next" (RFC 8288) for pagination, Retry-After (RFC 9110); and URL building.
#include <hoist/rest.hpp>
#include <hoist/strings.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <cstring>

namespace hoist::rest {
namespace {

bool tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c));
}
bool token68_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || (c != 0 && std::strchr("-._~+/", c));
}
bool ows(char c) { return c == ' ' || c == '\t'; }

using text::lower;

// A cursor over one header value.
struct Scan {
  std::string_view s;
  std::size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek(std::size_t ahead = 0) const { return i + ahead < s.size() ? s[i + ahead] : '\0'; }
  void skip_ws() { while (!done() && ows(s[i])) ++i; }
  void skip_ws_commas() { while (!done() && (ows(s[i]) || s[i] == ',')) ++i; }
  std::string_view token() {
    std::size_t start = i;
    while (!done() && tchar(s[i])) ++i;
    return s.substr(start, i - start);
  }
  // quoted-string with backslash escapes; the cursor is on the opening quote
  std::string quoted() {
    std::string out;
    ++i;
    while (!done() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      out += s[i++];
    }
    if (!done()) ++i;  // closing quote
    return out;
  }
};

// Tries `name = value` at the cursor; leaves the cursor unchanged when it is not one.
bool read_param(Scan& sc, std::string& name, std::string& value) {
  Scan t = sc;
  auto n = t.token();
  if (n.empty()) return false;
  t.skip_ws();
  if (t.peek() != '=') return false;
  ++t.i;
  t.skip_ws();
  if (t.peek() == '"') {
    value = t.quoted();
  } else {
    auto v = t.token();
    if (v.empty()) return false;  // "abc=" is a token68, not a parameter
    value = std::string(v);
  }
  name = lower(n);
  sc = t;
  return true;
}

}  // namespace

std::string Challenge::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? "" : it->second;
}

std::vector<Challenge> parse_www_authenticate(std::string_view header) {
  std::vector<Challenge> out;
  Scan sc{header};
  while (true) {
    sc.skip_ws_commas();
    if (sc.done()) break;
    auto scheme = sc.token();
    if (scheme.empty()) {  // junk: skip a character and carry on
      ++sc.i;
      continue;
    }
    Challenge c;
    c.scheme = lower(scheme);
    sc.skip_ws();
    // token68 (e.g. "Negotiate abc=="), only right after the scheme
    {
      Scan t = sc;
      std::size_t start = t.i;
      while (!t.done() && token68_char(t.s[t.i])) ++t.i;
      std::size_t body_end = t.i;
      while (!t.done() && t.s[t.i] == '=') ++t.i;
      Scan after = t;
      after.skip_ws();
      if (body_end > start && (after.done() || after.peek() == ',')) {
        c.token68 = std::string(sc.s.substr(start, t.i - start));
        sc = after;
        out.push_back(std::move(c));
        continue;
      }
    }
    while (true) {
      std::string name, value;
      Scan t = sc;
      t.skip_ws_commas();
      if (!read_param(t, name, value)) break;  // the next challenge (or the end)
      c.params[name] = value;
      sc = t;
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string parse_link_next(std::string_view header) {
  Scan sc{header};
  while (true) {
    sc.skip_ws_commas();
    if (sc.done() || sc.peek() != '<') return "";
    auto close = header.find('>', sc.i);
    if (close == std::string_view::npos) return "";
    std::string url(header.substr(sc.i + 1, close - sc.i - 1));
    sc.i = close + 1;
    bool next = false;
    while (true) {  // ; name=value parameters of this link
      sc.skip_ws();
      if (sc.peek() != ';') break;
      ++sc.i;
      sc.skip_ws();
      std::string name, value;
      if (!read_param(sc, name, value)) break;
      if (name == "rel") {
        // rel may hold several space-separated relation types
        std::string v = " " + lower(value) + " ";
        if (v.find(" next ") != std::string::npos) next = true;
      }
    }
    if (next) return url;
    while (!sc.done() && sc.peek() != ',') ++sc.i;
  }
}

std::optional<double> parse_retry_after(std::string_view value, double now_unix) {
  while (!value.empty() && ows(value.front())) value.remove_prefix(1);
  while (!value.empty() && ows(value.back())) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::nullopt;
    return std::strtod(std::string(value).c_str(), nullptr);
  }
  // IMF-fixdate, and the two obsolete forms RFC 9110 still asks recipients to accept
  static constexpr const char* kFormats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                             "%a %b %e %H:%M:%S %Y"};
  std::string v(value);
  for (const char* format : kFormats) {
    std::tm tm{};
    const char* end = strptime(v.c_str(), format, &tm);
    if (!end || *end) continue;
    double at = static_cast<double>(timegm(&tm));
    return at > now_unix ? at - now_unix : 0.0;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ urls

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string resolve_url(std::string_view base, std::string_view ref) {
  auto scheme = ref.find("://");
  if (scheme != std::string_view::npos && ref.find_first_of("/?#") > scheme) return std::string(ref);
  auto origin_end = base.find('/', base.find("://") == std::string_view::npos ? 0 : base.find("://") + 3);
  std::string_view origin = base.substr(0, origin_end);
  if (ref.substr(0, 2) == "//") return std::string(base.substr(0, base.find("://") + 1)) + std::string(ref);
  if (!ref.empty() && ref.front() == '/') return std::string(origin) + std::string(ref);
  std::string_view path = origin_end == std::string_view::npos ? "/" : base.substr(origin_end);
  path = path.substr(0, path.find_first_of("?#"));
  if (!ref.empty() && ref.front() == '?') return std::string(origin) + std::string(path) + std::string(ref);
  return std::string(origin) + std::string(path.substr(0, path.rfind('/') + 1)) + std::string(ref);
}

std::string url_host(std::string_view url) {
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  auto end = url.find_first_of("/?#", start);
  std::string_view host = url.substr(start, end == std::string_view::npos ? url.npos : end - start);
  if (auto at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  return std::string(host);
}

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (v.empty()) continue;
    if (!out.empty()) out += '&';
    out += url_encode(k) + "=" + url_encode(v);
  }
  return out;
}

std::string with_query(std::string_view url, std::string_view name, std::string_view value) {
  std::string_view fragment;
  if (auto hash = url.find('#'); hash != std::string_view::npos) {
    fragment = url.substr(hash);
    url = url.substr(0, hash);
  }
  auto q = url.find('?');
  std::string out(url.substr(0, q));
  std::string query;
  if (q != std::string_view::npos) {
    std::string_view rest = url.substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      if (pair.substr(0, pair.find('=')) != name && !pair.empty())
        query += (query.empty() ? "" : "&") + std::string(pair);
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }
  query += (query.empty() ? "" : "&") + std::string(name) + "=" + url_encode(value);
  return out + "?" + query + std::string(fragment);
}

}  // namespace hoist::rest
