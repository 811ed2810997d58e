// Image references, Docker's grammar (distribution/reference), with error messages that say
// which part is wrong.
#include <hoist/registry.hpp>

#include <algorithm>
#include <cctype>

namespace hoist::registry {
namespace {

constexpr std::string_view kDockerHub = "docker.io";
constexpr std::size_t kMaxName = 255;

[[noreturn]] void bad(std::string_view ref, const std::string& what) {
  throw Error(Code::invalid_argument,
              "invalid image reference '" + std::string(ref) + "': " + what,
              nlohmann::json{{"reference", std::string(ref)}});
}

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// path-component: [a-z0-9]+ ( (\.|_|__|-+) [a-z0-9]+ )*
std::string path_component_problem(std::string_view c) {
  if (c.empty()) return "empty path component";
  for (char ch : c)
    if (ch >= 'A' && ch <= 'Z') return "repository name must be lowercase";
  if (!lower_alnum(c.front()) || !lower_alnum(c.back()))
    return "path component '" + std::string(c) + "' must start and end with a letter or digit";
  for (std::size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (lower_alnum(ch)) continue;
    std::size_t j = i;
    while (j < c.size() && !lower_alnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" ||
              std::all_of(sep.begin(), sep.end(), [](char s) { return s == '-'; });
    if (!ok) return "bad separator '" + std::string(sep) + "' in '" + std::string(c) + "'";
    i = j - 1;
  }
  return "";
}

// domain-component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool domain_component_ok(std::string_view c) {
  if (c.empty() || c.front() == '-' || c.back() == '-') return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-';
  });
}

std::string host_problem(std::string_view host) {
  std::string_view name = host, port;
  if (!host.empty() && host.front() == '[') {  // [ipv6]:port
    auto close = host.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 address";
    auto ip = host.substr(1, close - 1);
    if (ip.empty() || !std::all_of(ip.begin(), ip.end(), [](char ch) {
          return std::isxdigit(static_cast<unsigned char>(ch)) || ch == ':' || ch == '.';
        }))
      return "bad IPv6 address";
    name = {};
    auto rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "junk after IPv6 address";
      port = rest.substr(1);
      if (port.empty()) return "empty port";
    }
  } else {
    auto colon = host.rfind(':');
    if (colon != std::string_view::npos) {
      name = host.substr(0, colon);
      port = host.substr(colon + 1);
      if (port.empty()) return "empty port";
    }
    if (name.empty()) return "empty registry host";
    std::size_t start = 0;
    while (true) {
      auto dot = name.find('.', start);
      auto part = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (!domain_component_ok(part)) return "bad registry host '" + std::string(host) + "'";
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit))
      return "bad port '" + std::string(port) + "'";
    if (std::stoi(std::string(port)) > 65535) return "port out of range";
  }
  return "";
}

// The first path segment is a registry when it looks like a host (Docker's rule).
bool looks_like_host(std::string_view first) {
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
         first == "localhost" || (!first.empty() && first.front() == '[') ||
         std::any_of(first.begin(), first.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

std::string normalize_registry(std::string_view host) {
  if (host == "index.docker.io" || host == "registry-1.docker.io") return std::string(kDockerHub);
  return std::string(host);
}

Reference parse_impl(std::string_view text, bool repository_only) {
  if (text.empty()) bad(text, "empty reference");
  for (char c : text)
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      bad(text, "contains whitespace or control characters");
  Reference r;
  std::string_view rest = text;

  if (auto at = rest.find('@'); at != std::string_view::npos) {
    if (repository_only) bad(text, "a repository takes no digest");
    r.digest = std::string(rest.substr(at + 1));
    try {
      check_digest(r.digest);
    } catch (const Error& e) {
      bad(text, e.message());
    }
    rest = rest.substr(0, at);
  }

  // A tag is after the last ':' that follows the last '/' (a port's ':' precedes a '/').
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    if (repository_only) bad(text, "a repository takes no tag");
    std::string_view tag = rest.substr(colon + 1);
    if (tag.empty()) bad(text, "empty tag");
    if (tag.size() > 128) bad(text, "tag longer than 128 characters");
    if (!word_char(tag.front()) ||
        !std::all_of(tag.begin(), tag.end(), [](char c) { return word_char(c) || c == '.' || c == '-'; }))
      bad(text, "bad tag '" + std::string(tag) + "' (letters, digits, _ . -; not starting with . or -)");
    r.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) bad(text, "empty repository");

  auto first_slash = rest.find('/');
  std::string_view path = rest;
  if (first_slash != std::string_view::npos && looks_like_host(rest.substr(0, first_slash))) {
    std::string_view host = rest.substr(0, first_slash);
    if (auto p = host_problem(host); !p.empty()) bad(text, p);
    r.registry = normalize_registry(host);
    path = rest.substr(first_slash + 1);
  } else {
    r.registry = std::string(kDockerHub);
  }
  if (path.empty()) bad(text, "empty repository");

  std::size_t start = 0;
  while (true) {
    auto next = path.find('/', start);
    auto comp = path.substr(start, next == std::string_view::npos ? next : next - start);
    if (auto p = path_component_problem(comp); !p.empty()) bad(text, p);
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  r.repository = std::string(path);
  if (r.registry == kDockerHub && r.repository.find('/') == std::string::npos)
    r.repository = "library/" + r.repository;
  if (r.name().size() > kMaxName) bad(text, "repository name longer than 255 characters");
  return r;
}

}  // namespace

Reference Reference::parse(std::string_view text) { return parse_impl(text, false); }
Reference Reference::parse_repository(std::string_view text) { return parse_impl(text, true); }

std::string Reference::name() const { return registry + "/" + repository; }

std::string Reference::str() const {
  std::string s = name();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::target() const {
  if (!digest.empty()) return digest;
  return tag.empty() ? "latest" : tag;
}

std::string Reference::host() const {
  return registry == kDockerHub ? "registry-1.docker.io" : registry;
}

std::string parse_registry_host(std::string_view text) {
  std::string_view host = text;
  for (std::string_view scheme : {"https://", "http://"})
    if (host.substr(0, scheme.size()) == scheme) host.remove_prefix(scheme.size());
  while (!host.empty() && host.back() == '/') host.remove_suffix(1);
  if (host.empty())
    throw Error(Code::invalid_argument, "invalid registry '" + std::string(text) + "': empty");
  if (host.find('/') != std::string_view::npos)
    throw Error(Code::invalid_argument,
                "invalid registry '" + std::string(text) + "': a registry is a host[:port], no path");
  if (auto p = host_problem(host); !p.empty())
    throw Error(Code::invalid_argument, "invalid registry '" + std::string(text) + "': " + p);
  return normalize_registry(host);
}

bool is_loopback_host(std::string_view registry) {
  std::string_view h = registry;
  if (!h.empty() && h.front() == '[') {
    auto close = h.find(']');
    return h.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1) == "::1";
  }
  if (auto colon = h.rfind(':'); colon != std::string_view::npos) h = h.substr(0, colon);
  if (h == "localhost") return true;
  if (h.substr(0, 4) != "127.") return false;
  // 127.a.b.c with numeric octets only (127.example.com is a name, not loopback)
  return std::all_of(h.begin(), h.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; });
}

}  // namespace hoist::registry
