#include <hoist/yaml.hpp>

#include <hoist/json.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <initializer_list>
#include <cmath>
#include <cstdint>
#include <limits>
#include <regex>

namespace hoist {
namespace {

constexpr int kMaxDepth = 1000;
// Aliases let a few lines expand to billions of nodes ("billion laughs"). Without aliases a
// text cannot hold more nodes than bytes, so this budget only stops alias expansion.
constexpr std::size_t kNodeBudget = 1'000'000;
const std::string kCoreTag = "tag:yaml.org,2002:";

bool matches(std::string_view s, const std::regex& re) {
  return std::regex_match(s.begin(), s.end(), re);
}

bool one_of(std::string_view s, std::initializer_list<std::string_view> words) {
  return std::find(words.begin(), words.end(), s) != words.end();
}

// Numbers start with one of these; other non-letters make plain strings. Words are looked up
// directly: the regular expressions are slow, and most keys and values start with a letter.
bool numeric_start(char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'; }

// Strings that YAML 1.1 readers (Kubernetes' go-yaml, PyYAML) type differently from 1.2.
bool yaml11_special(std::string_view s) {
  if (one_of(s, {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
                 "=", "<<"}))
    return true;
  if (s.empty() || !numeric_start(s[0])) return false;
  static const std::regex re(
      "[-+]?0b[01_]+"                                   // binary
      "|[-+]?[0-9][0-9_]*(\\.[0-9_]*)?([eE][-+]?[0-9]+)?"  // with underscores, 1.1 floats
      "|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\\.[0-9_]*)?"  // base 60 (1:20)
      "|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?");      // timestamps
  return matches(s, re);
}

bool needs_quotes(std::string_view s) {
  return yaml_plain_kind(s) != YamlPlain::string || yaml11_special(s);
}

// yaml-cpp writes a literal block ("|") without a chomping or indentation indicator, which
// reads back exactly only for text that ends in a single "\n" and whose first line with
// content starts with no blank.
bool literal_safe(std::string_view s) {
  if (s.size() < 2 || s.back() != '\n' || s[s.size() - 2] == '\n') return false;
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
  auto first = s.find_first_not_of('\n');
  return first != std::string_view::npos && s[first] != ' ' && s[first] != '\t';
}

// ---------------------------------------------------------------- reading

class Loader {
 public:
  explicit Loader(std::size_t text_size) : max_nodes_(kNodeBudget + text_size) {}

  nlohmann::json convert(const YAML::Node& node, int depth) {
    if (depth > kMaxDepth) fail(node.Mark(), "nesting deeper than " + std::to_string(kMaxDepth));
    if (++nodes_ > max_nodes_)
      fail(node.Mark(), "aliases expand the stream to more than " + std::to_string(max_nodes_) + " nodes");
    switch (node.Type()) {
      case YAML::NodeType::Scalar: return scalar(node);
      case YAML::NodeType::Sequence: {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& item : node) arr.push_back(convert(item, depth + 1));
        return arr;
      }
      case YAML::NodeType::Map: return map(node, depth);
      case YAML::NodeType::Null:
        if (node.Tag() == kCoreTag + "str") return "";  // `key: !!str`
        return nullptr;
      default: return nullptr;
    }
  }

  [[noreturn]] static void fail(const YAML::Mark& mark, const std::string& why) {
    std::string reason = valid_utf8(why);  // it may quote the input
    if (mark.is_null() || mark.line < 0) {
      throw Error(Code::invalid_argument, "malformed YAML: " + reason, {{"reason", reason}});
    }
    int line = mark.line + 1, column = mark.column + 1;
    throw Error(Code::invalid_argument,
                "malformed YAML at line " + std::to_string(line) + ", column " + std::to_string(column) +
                    ": " + reason,
                {{"line", line}, {"column", column}, {"reason", reason}});
  }

 private:
  nlohmann::json map(const YAML::Node& node, int depth) {
    nlohmann::json obj = nlohmann::json::object();
    std::vector<YAML::Node> merges;
    for (const auto& kv : node) {
      const YAML::Node& key = kv.first;
      if (key.IsScalar() && key.Tag() == "?" && key.Scalar() == "<<") {
        merges.push_back(kv.second);
        continue;
      }
      std::string name;
      if (key.IsScalar()) {
        name = key.Scalar();
      } else if (key.IsNull()) {
        name = "null";
      } else {
        fail(key.Mark(), "a mapping key must be a scalar, not a " +
                             std::string(key.IsMap() ? "mapping" : "sequence"));
      }
      if (obj.contains(name)) fail(key.Mark(), "duplicate key '" + name + "'");
      obj[name] = convert(kv.second, depth + 1);
    }
    // keys written in the mapping win over merged ones; earlier merge sources win over later
    for (const auto& source : merges) {
      std::vector<YAML::Node> maps;
      if (source.IsSequence()) {
        for (const auto& m : source) maps.push_back(m);
      } else {
        maps.push_back(source);
      }
      for (const auto& m : maps) {
        if (!m.IsMap()) fail(m.Mark(), "a '<<' merge key needs a mapping or a sequence of mappings");
        nlohmann::json merged = convert(m, depth + 1);
        for (auto& [k, v] : merged.items()) obj.emplace(k, v);
      }
    }
    return obj;
  }

  nlohmann::json scalar(const YAML::Node& node) {
    const std::string& tag = node.Tag();
    const std::string& text = node.Scalar();
    if (tag == "!") return text;  // quoted or block scalar
    if (tag.compare(0, kCoreTag.size(), kCoreTag) != 0) return plain(node, text);  // "?" or a local tag
    std::string name = tag.substr(kCoreTag.size());
    YamlPlain kind = yaml_plain_kind(text);
    if (name == "int" && kind != YamlPlain::integer) fail(node.Mark(), "'" + text + "' is not an !!int");
    if (name == "float" && kind != YamlPlain::integer && kind != YamlPlain::floating)
      fail(node.Mark(), "'" + text + "' is not a !!float");
    if (name == "bool" && kind != YamlPlain::boolean) fail(node.Mark(), "'" + text + "' is not a !!bool");
    if (name == "null" && kind != YamlPlain::null) fail(node.Mark(), "'" + text + "' is not a !!null");
    if (name == "float") return to_double(node, text);
    if (name == "int" || name == "bool" || name == "null") return plain(node, text);
    return text;  // !!str, !!binary, !!timestamp and the rest stay text
  }

  static nlohmann::json plain(const YAML::Node& node, const std::string& text) {
    switch (yaml_plain_kind(text)) {
      case YamlPlain::null: return nullptr;
      case YamlPlain::boolean: return text[0] == 't' || text[0] == 'T';
      case YamlPlain::integer: return to_integer(node, text);
      case YamlPlain::floating: return to_double(node, text);
      case YamlPlain::string: break;
    }
    return text;
  }

  // Decimal integers beyond 64 bits become doubles (as in JSON); octal and hex ones fail.
  static nlohmann::json to_integer(const YAML::Node& node, std::string_view s) {
    bool negative = s[0] == '-';
    if (s[0] == '-' || s[0] == '+') s.remove_prefix(1);
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
      base = s[1] == 'x' ? 16 : 8;
      s.remove_prefix(2);
    }
    std::uint64_t magnitude = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
    if (ec != std::errc() || end != s.data() + s.size()) {
      if (base != 10) fail(node.Mark(), "integer '" + node.Scalar() + "' does not fit in 64 bits");
      return to_double(node, node.Scalar());
    }
    constexpr std::uint64_t kMinMagnitude = std::uint64_t(1) << 63;
    if (!negative) {
      if (magnitude <= std::uint64_t(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(magnitude);
      return magnitude;
    }
    if (magnitude < kMinMagnitude) return -static_cast<std::int64_t>(magnitude);
    if (magnitude == kMinMagnitude) return std::numeric_limits<std::int64_t>::min();
    return to_double(node, node.Scalar());
  }

  static nlohmann::json to_double(const YAML::Node& node, std::string_view s) {
    bool negative = !s.empty() && s[0] == '-';
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
    if (s == ".inf" || s == ".Inf" || s == ".INF")
      return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
    double d = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec == std::errc::result_out_of_range) fail(node.Mark(), "number '" + node.Scalar() + "' is out of range");
    if (ec != std::errc() || end != s.data() + s.size())
      fail(node.Mark(), "'" + node.Scalar() + "' is not a number");
    return negative ? -d : d;
  }

  std::size_t nodes_ = 0;
  std::size_t max_nodes_;
};

// ---------------------------------------------------------------- writing

std::string float_text(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  return nlohmann::json(d).dump();  // shortest text that reads back as the same double
}

void emit_string(YAML::Emitter& out, const std::string& s, bool key) {
  if (needs_quotes(s)) {
    out << YAML::DoubleQuoted << s;
  } else if (s.find('\n') != std::string::npos || s.find('\r') != std::string::npos) {
    if (!key && literal_safe(s)) {
      out << YAML::Literal << s;
    } else {
      out << YAML::DoubleQuoted << s;
    }
  } else {
    out << s;  // yaml-cpp quotes it when plain style would not read back
  }
}

void emit(YAML::Emitter& out, const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::null: out << YAML::Null; break;
    case T::boolean: out << v.get<bool>(); break;
    case T::number_integer: out << v.get<std::int64_t>(); break;
    case T::number_unsigned: out << v.get<std::uint64_t>(); break;
    case T::number_float: out << float_text(v.get<double>()); break;
    case T::string: emit_string(out, v.get_ref<const std::string&>(), false); break;
    case T::array:
      if (v.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& item : v) emit(out, item);
      out << YAML::EndSeq;
      break;
    case T::object:
      if (v.empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (const auto& [k, item] : v.items()) {
        out << YAML::Key;
        emit_string(out, k, true);
        out << YAML::Value;
        emit(out, item);
      }
      out << YAML::EndMap;
      break;
    default: out << YAML::Null; break;  // binary and discarded values have no YAML form here
  }
}

}  // namespace

YamlPlain yaml_plain_kind(std::string_view s) {
  if (one_of(s, {"", "~", "null", "Null", "NULL"})) return YamlPlain::null;
  if (one_of(s, {"true", "True", "TRUE", "false", "False", "FALSE"})) return YamlPlain::boolean;
  if (!numeric_start(s[0])) return YamlPlain::string;
  static const std::regex int_re("[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+");
  static const std::regex float_re(
      "[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)");
  if (matches(s, int_re)) return YamlPlain::integer;
  if (matches(s, float_re)) return YamlPlain::floating;
  return YamlPlain::string;
}

std::vector<nlohmann::json> parse_yaml_all(std::string_view text) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    Loader::fail(e.mark, e.msg);
  }
  std::vector<nlohmann::json> out;
  out.reserve(docs.size());
  Loader loader(text.size());
  for (const auto& doc : docs) out.push_back(loader.convert(doc, 0));
  return out;
}

std::string dump_yaml(const nlohmann::json& value) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out.SetIndent(2);
  emit(out, value);
  if (!out.good()) throw Error(Code::internal, "YAML emitter: " + out.GetLastError());
  return std::string(out.c_str(), out.size()) + "\n";
}

}  // namespace hoist
