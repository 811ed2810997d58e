#include <hoist/yaml.hpp>

#include <hoist/json.hpp>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_map>

namespace hoist {
namespace {

// yaml-cpp 0.7 refuses a path of 500 nodes (containers plus the scalar at the end) with its
// own "bad file"; hoist stops both ways below that, so what it writes it can read, and the
// message says what is wrong.
constexpr int kMaxDepth = kMaxYamlDepth;
static_assert(kMaxYamlDepth < 498, "yaml-cpp must not reach its own depth limit first");
// What one stream may expand to. Without aliases a text cannot hold more nodes or text than
// it has bytes, so these budgets stop alias expansion ("billion laughs") and parser loops.
constexpr std::size_t kNodeBudget = 1'000'000;
constexpr std::size_t kByteBudget = 64u << 20;
const std::string kCoreTag = "tag:yaml.org,2002:";

bool one_of(std::string_view s, std::initializer_list<std::string_view> words) {
  return std::find(words.begin(), words.end(), s) != words.end();
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Numbers start with one of these; other non-letters make plain strings.
bool numeric_start(char c) { return is_digit(c) || c == '+' || c == '-' || c == '.'; }

// A cursor over a scalar for the number grammars below: plain scanning, no regular
// expressions (std::regex recurses per character and overflows the stack on long input).
struct Cursor {
  std::string_view s;
  std::size_t i = 0;
  bool done() const { return i == s.size(); }
  bool eat(char c) {
    if (i < s.size() && s[i] == c) return ++i, true;
    return false;
  }
  void sign() { eat('+') || eat('-'); }
  template <class Pred>
  std::size_t run(Pred pred) {
    std::size_t from = i;
    while (i < s.size() && pred(s[i])) ++i;
    return i - from;
  }
  std::string_view rest() const { return s.substr(i); }
};

bool digit_or_underscore(char c) { return is_digit(c) || c == '_'; }

// [-+]?0b[01_]+
bool yaml11_binary(std::string_view s) {
  Cursor c{s};
  c.sign();
  return c.eat('0') && c.eat('b') && c.run([](char x) { return x == '0' || x == '1' || x == '_'; }) > 0 && c.done();
}

// [-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?  and base 60: [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?
bool yaml11_number(std::string_view s) {
  Cursor c{s};
  c.sign();
  if (c.done() || !is_digit(s[c.i])) return false;
  c.run(digit_or_underscore);
  if (c.eat(':')) {
    do {
      std::size_t from = c.i, n = c.run(is_digit);
      if (n == 0 || n > 2 || (n == 2 && s[from] > '5')) return false;
    } while (c.eat(':'));
    if (c.eat('.')) c.run(digit_or_underscore);
    return c.done();
  }
  if (c.eat('.')) c.run(digit_or_underscore);
  if (c.eat('e') || c.eat('E')) {
    c.sign();
    if (c.run(is_digit) == 0) return false;
  }
  return c.done();
}

// [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?
bool yaml11_timestamp(std::string_view s) {
  Cursor c{s};
  if (c.run(is_digit) != 4 || !c.eat('-')) return false;
  std::size_t n = c.run(is_digit);
  if (n < 1 || n > 2 || !c.eat('-')) return false;
  n = c.run(is_digit);
  if (n < 1 || n > 2) return false;
  return c.done() || c.eat('T') || c.eat('t') || c.eat(' ');
}

// Strings that YAML 1.1 readers (Kubernetes' go-yaml, PyYAML) type differently from 1.2.
bool yaml11_special(std::string_view s) {
  if (one_of(s, {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
                 "=", "<<"}))
    return true;
  if (s.empty() || !numeric_start(s[0])) return false;
  return yaml11_binary(s) || yaml11_number(s) || yaml11_timestamp(s);
}

bool needs_quotes(std::string_view s) {
  return yaml_plain_kind(s) != YamlPlain::string || yaml11_special(s);
}

// ---------------------------------------------------------------- reading

[[noreturn]] void fail(const YAML::Mark& mark, const std::string& why) {
  std::string reason = valid_utf8(why);  // it may quote the input
  if (mark.is_null() || mark.line < 0) {
    throw Error(Code::invalid_argument, "malformed YAML: " + reason, {{"reason", reason}});
  }
  int line = mark.line + 1, column = mark.column + 1;
  throw Error(Code::invalid_argument,
              "malformed YAML at line " + std::to_string(line) + ", column " + std::to_string(column) + ": " +
                  reason,
              {{"line", line}, {"column", column}, {"reason", reason}});
}

// 'text' for a message, cut to a readable length.
std::string shown(std::string_view text) {
  constexpr std::size_t kShown = 64;
  if (text.size() <= kShown) return "'" + std::string(text) + "'";
  return "'" + std::string(text.substr(0, kShown)) + "...' (" + std::to_string(text.size()) + " bytes)";
}

// Types a scalar by its tag and text (YAML 1.2 core schema).
class Scalars {
 public:
  static nlohmann::json typed(const YAML::Mark& mark, const std::string& tag, const std::string& text) {
    if (tag == "!") return text;  // quoted or block scalar
    if (tag.compare(0, kCoreTag.size(), kCoreTag) != 0) return plain(mark, text);  // "?" or a local tag
    std::string name = tag.substr(kCoreTag.size());
    YamlPlain kind = yaml_plain_kind(text);
    if (name == "int" && kind != YamlPlain::integer) fail(mark, shown(text) + " is not an !!int");
    if (name == "float" && kind != YamlPlain::integer && kind != YamlPlain::floating)
      fail(mark, shown(text) + " is not a !!float");
    if (name == "bool" && kind != YamlPlain::boolean) fail(mark, shown(text) + " is not a !!bool");
    if (name == "null" && kind != YamlPlain::null) fail(mark, shown(text) + " is not a !!null");
    if (name == "float") return to_double(mark, text, text);
    if (name == "int" || name == "bool" || name == "null") return plain(mark, text);
    return text;  // !!str, !!binary, !!timestamp and the rest stay text
  }

 private:
  static nlohmann::json plain(const YAML::Mark& mark, const std::string& text) {
    switch (yaml_plain_kind(text)) {
      case YamlPlain::null: return nullptr;
      case YamlPlain::boolean: return text[0] == 't' || text[0] == 'T';
      case YamlPlain::integer: return to_integer(mark, text);
      case YamlPlain::floating: return to_double(mark, text, text);
      case YamlPlain::string: break;
    }
    return text;
  }

  // Decimal integers beyond 64 bits become doubles (as in JSON); octal and hex ones fail.
  static nlohmann::json to_integer(const YAML::Mark& mark, const std::string& text) {
    std::string_view s = text;
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
      if (base != 10) fail(mark, "integer " + shown(text) + " does not fit in 64 bits");
      return to_double(mark, text, text);
    }
    constexpr std::uint64_t kMinMagnitude = std::uint64_t(1) << 63;
    if (!negative) {
      if (magnitude <= std::uint64_t(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(magnitude);
      return magnitude;
    }
    if (magnitude < kMinMagnitude) return -static_cast<std::int64_t>(magnitude);
    if (magnitude == kMinMagnitude) return std::numeric_limits<std::int64_t>::min();
    return to_double(mark, text, text);
  }

  static nlohmann::json to_double(const YAML::Mark& mark, std::string_view s, const std::string& text) {
    bool negative = !s.empty() && s[0] == '-';
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
    if (s == ".inf" || s == ".Inf" || s == ".INF")
      return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
    double d = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec == std::errc::result_out_of_range) fail(mark, "number " + shown(text) + " is out of range");
    if (ec != std::errc() || end != s.data() + s.size()) fail(mark, shown(text) + " is not a number");
    return negative ? -d : d;
  }
};

// A finished node and what it cost: aliases copy it, so its cost counts again at each use.
struct Node {
  nlohmann::json value;
  std::size_t nodes = 1;
  std::size_t bytes = 0;
  int height = 0;                // levels of nesting below it
  std::optional<std::string> key;  // a scalar's own text, as a mapping key uses it
};

// Builds JSON values from yaml-cpp's parser events with an explicit stack (no recursion),
// resolving anchors, aliases and `<<` merge keys, and keeping every stream within budget.
class Builder : public YAML::EventHandler {
 public:
  explicit Builder(std::string_view text)
      : text_(text), max_nodes_(kNodeBudget + text.size()), max_bytes_(kByteBudget + text.size()) {}

  std::vector<nlohmann::json> documents;

  void OnDocumentStart(const YAML::Mark& mark) override {
    // yaml-cpp 0.7 starts empty documents forever at some stray characters ("'',")
    if (started_ && mark.pos == last_start_) {
      std::string what = mark.pos >= 0 && static_cast<std::size_t>(mark.pos) < text_.size()
                             ? "'" + std::string(1, text_[mark.pos]) + "'"
                             : "text";
      fail(mark, "unexpected " + what);
    }
    started_ = true;
    last_start_ = mark.pos;
    anchors_.clear();  // anchors are per document
    count(mark, 1, 0);
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    add(mark, anchor, Node{nullptr, 1, 0, 0, "null"});
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) fail(mark, "an alias refers to the node that contains it (a cycle)");
    const Node& target = it->second;
    if (static_cast<int>(stack_.size()) + target.height > kMaxDepth)
      fail(mark, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    count(mark, target.nodes, target.bytes);
    add(mark, YAML::NullAnchor, target);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    count(mark, 1, value.size());
    utf8_or_fail(mark, value);
    if (want_key()) {
      if (tag == "?" && value == "<<") {
        stack_.back().merge_next = true;
        stack_.back().want_key = false;
        return;
      }
      // a key is its text; typed only for an alias that may use it as a value later
      nlohmann::json typed = anchor == YAML::NullAnchor ? nlohmann::json(value) : Scalars::typed(mark, tag, value);
      add(mark, anchor, Node{std::move(typed), 1, value.size(), 0, value});
      return;
    }
    add(mark, anchor, Node{Scalars::typed(mark, tag, value), 1, value.size(), 0, value});
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor, false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor, true);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    bool is_map = false;
    YAML::Mark mark;
    YAML::anchor_t anchor = YAML::NullAnchor;
    Node node;
    bool want_key = true;
    bool merge_next = false;
    std::string key;
    std::vector<std::pair<YAML::Mark, nlohmann::json>> merges;
  };

  // yaml-cpp passes bytes that are not UTF-8 through; such a string could not be written back
  // (YAML has no escape for a raw byte), so it is refused here, where the text is, as go-yaml
  // (kubectl) refuses it.
  static void utf8_or_fail(const YAML::Mark& mark, std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    for (std::size_t i = 0; i < s.size();) {
      std::size_t len = static_cast<unsigned char>(s[i]) < 0x80 ? 1 : utf8_at(s, i).length;
      if (len == 0) {
        unsigned char b = s[i];
        fail(mark, "invalid UTF-8 in a scalar at byte " + std::to_string(i + 1) + " (0x" + hex[b >> 4] + hex[b & 15] +
                       "); YAML text is Unicode");
      }
      i += len;
    }
  }

  bool want_key() const { return !stack_.empty() && stack_.back().is_map && stack_.back().want_key; }

  void count(const YAML::Mark& mark, std::size_t nodes, std::size_t bytes) {
    nodes_ += nodes;
    bytes_ += bytes;
    if (nodes_ > max_nodes_)
      fail(mark, "aliases expand the stream to more than " + std::to_string(max_nodes_) + " nodes");
    if (bytes_ > max_bytes_)
      fail(mark, "aliases expand the stream to more than " + std::to_string(max_bytes_) + " bytes of text");
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor, bool is_map) {
    if (want_key()) fail(mark, std::string("a mapping key must be a scalar, not a ") + (is_map ? "mapping" : "sequence"));
    if (static_cast<int>(stack_.size()) >= kMaxDepth)
      fail(mark, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    count(mark, 1, 0);
    Frame& f = stack_.emplace_back();
    f.is_map = is_map;
    f.mark = mark;
    f.anchor = anchor;
    f.node = Node{is_map ? nlohmann::json::object() : nlohmann::json::array(), 1, 0, 1, {}};
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    // keys written in the mapping win over merged ones; earlier merge sources win over later
    for (auto& [mark, source] : f.merges) {
      if (source.is_object()) source = nlohmann::json::array({std::move(source)});
      for (auto& m : source)
        for (auto& [k, v] : m.items()) f.node.value.emplace(k, std::move(v));
    }
    f.node.key.reset();
    add(f.mark, f.anchor, std::move(f.node));
  }

  void add(const YAML::Mark& mark, YAML::anchor_t anchor, Node node) {
    if (anchor != YAML::NullAnchor) {
      count(mark, node.nodes, node.bytes);  // the copy kept for later aliases
      anchors_[anchor] = node;
    }
    if (stack_.empty()) {
      documents.push_back(std::move(node.value));
      return;
    }
    Frame& f = stack_.back();
    f.node.nodes += node.nodes;
    f.node.bytes += node.bytes;
    f.node.height = std::max(f.node.height, node.height + 1);
    if (!f.is_map) {
      f.node.value.push_back(std::move(node.value));
      return;
    }
    if (f.want_key) {
      if (!node.key) fail(mark, "a mapping key must be a scalar");
      if (f.node.value.contains(*node.key)) fail(mark, "duplicate key " + shown(*node.key));
      f.key = std::move(*node.key);
      f.want_key = false;
      return;
    }
    f.want_key = true;
    if (f.merge_next) {
      f.merge_next = false;
      bool maps = node.value.is_object() ||
                  (node.value.is_array() &&
                   std::all_of(node.value.begin(), node.value.end(), [](const auto& m) { return m.is_object(); }));
      if (!maps) fail(mark, "a '<<' merge key needs a mapping or a sequence of mappings");
      f.merges.emplace_back(mark, std::move(node.value));
      return;
    }
    f.node.value[f.key] = std::move(node.value);
  }

  std::string_view text_;
  std::size_t max_nodes_, max_bytes_;
  std::size_t nodes_ = 0, bytes_ = 0;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Node> anchors_;
  bool started_ = false;
  int last_start_ = -1;
};

// ---------------------------------------------------------------- writing
// hoist writes YAML itself (yaml-cpp's emitter writes U+FFFE, U+FFFF and other noncharacters
// as U+FFFD, and DEL raw): every string the reader can return is written so that it reads
// back as the same bytes. A string goes plain when it is printable and reads back as itself,
// as a literal block ("|") when it is printable text of lines, else double-quoted with every
// character outside the printable set escaped.

std::string float_text(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  return nlohmann::json(d).dump();  // shortest text that reads back as the same double
}

// Characters written as they are outside double quotes: YAML's printable set (c-printable)
// less the ones a YAML 1.1 reader (Kubernetes) takes for line breaks (NEL, U+2028, U+2029),
// the byte order mark, C1 controls and the noncharacters. Tab and line breaks are the
// caller's business.
bool printable(std::uint32_t cp) {
  if (cp < 0x80) return cp >= 0x20 && cp != 0x7F;
  if (cp < 0xA0 || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF) return false;
  if (cp >= 0xFDD0 && cp <= 0xFDEF) return false;
  return (cp & 0xFFFE) != 0xFFFE;
}

[[noreturn]] void not_utf8(std::string_view s, std::size_t at) {
  static const char* hex = "0123456789ABCDEF";
  unsigned char b = s[at];
  throw Error(Code::invalid_argument,
              "cannot write YAML: invalid UTF-8 in a string at byte " + std::to_string(at + 1) + " (0x" + hex[b >> 4] +
                  hex[b & 15] + "); YAML text is Unicode and has no escape for a raw byte",
              {{"byte", at + 1}});
}

// Whether every character of s is printable, with tabs and line breaks allowed or not.
bool all_printable(std::string_view s, bool breaks) {
  for (std::size_t i = 0; i < s.size();) {
    auto [cp, len] = utf8_at(s, i);
    if (len == 0) not_utf8(s, i);
    if (!printable(cp) && !(breaks && (cp == '\n' || cp == '\t'))) return false;
    i += len;
  }
  return true;
}

// A plain scalar in block context that reads back as this same string (its type is
// needs_quotes' business): no indicator first, no ": " or " #", no blank at either end, no
// document marker, printable.
bool plain_safe(std::string_view s) {
  if (s.empty() || s.front() == ' ' || s.back() == ' ' || s.back() == ':') return false;
  if (std::string_view("#,[]{}&*!|>'\"%@`").find(s[0]) != std::string_view::npos) return false;
  if ((s[0] == '-' || s[0] == '?' || s[0] == ':') && (s.size() == 1 || s[1] == ' ')) return false;
  if (s.starts_with("---") || s.starts_with("...")) return false;
  if (s.find(": ") != std::string_view::npos || s.find(" #") != std::string_view::npos) return false;
  return all_printable(s, false);
}

// A literal block ("|", clip chomping) reads back exactly text that ends in a single "\n",
// whose first line with content starts with no blank (that would set the indentation), and
// that holds only printable characters, tabs and "\n".
bool literal_safe(std::string_view s) {
  if (s.size() < 2 || s.back() != '\n' || s[s.size() - 2] == '\n') return false;
  auto first = s.find_first_not_of('\n');
  if (first == std::string_view::npos || s[first] == ' ' || s[first] == '\t') return false;
  return all_printable(s, true);
}

// "s" with \" \\ \t \n \r, \xXX for other controls below U+0100, \uXXXX / \UXXXXXXXX above.
std::string double_quoted(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    auto [cp, len] = utf8_at(s, i);
    if (len == 0) not_utf8(s, i);
    if (cp == '"' || cp == '\\') {
      out += {'\\', static_cast<char>(cp)};
    } else if (cp == '\n' || cp == '\t' || cp == '\r') {
      out += {'\\', cp == '\n' ? 'n' : cp == '\t' ? 't' : 'r'};
    } else if (printable(cp)) {
      out.append(s.substr(i, len));
    } else {
      int digits = cp < 0x100 ? 2 : cp < 0x10000 ? 4 : 8;
      out += '\\';
      out += digits == 2 ? 'x' : digits == 4 ? 'u' : 'U';
      for (int d = digits - 1; d >= 0; --d) out += hex[(cp >> (4 * d)) & 15];
    }
    i += len;
  }
  return out + "\"";
}

enum class Style { plain, literal, quoted };

Style style_of(std::string_view s, bool key) {
  if (needs_quotes(s)) return Style::quoted;
  if (!key && literal_safe(s)) return Style::literal;
  return plain_safe(s) ? Style::plain : Style::quoted;
}

// The text of a scalar on its line; "|" for a literal block, whose lines follow.
std::string scalar_text(const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::boolean: return v.get<bool>() ? "true" : "false";
    case T::number_integer: return std::to_string(v.get<std::int64_t>());
    case T::number_unsigned: return std::to_string(v.get<std::uint64_t>());
    case T::number_float: return float_text(v.get<double>());
    case T::string: {
      const auto& s = v.get_ref<const std::string&>();
      switch (style_of(s, false)) {
        case Style::plain: return s;
        case Style::literal: return "|";
        case Style::quoted: return double_quoted(s);
      }
      return s;
    }
    case T::array: return "[]";
    case T::object: return "{}";
    default: return "null";  // null; binary and discarded values have no YAML form here
  }
}

bool is_block(const nlohmann::json& v) { return (v.is_array() || v.is_object()) && !v.empty(); }

// Block-style YAML with an explicit stack: the depth of a value costs heap, not native stack.
class Writer {
 public:
  std::string write(const nlohmann::json& doc) {
    if (!is_block(doc)) {
      scalar_line(doc, 2);  // a literal block's lines indented: "---" in it is no marker
      return std::move(out_);
    }
    stack_.push_back({&doc, doc.begin(), 0, false});
    while (!stack_.empty()) {
      Frame& f = stack_.back();
      if (f.it == f.node->end()) {
        stack_.pop_back();
        continue;
      }
      const nlohmann::json& child = *f.it;
      const int indent = f.indent;
      if (f.inline_first) {
        f.inline_first = false;  // "- " is written already
      } else {
        out_.append(indent, ' ');
      }
      if (f.node->is_object()) {
        key(f.it.key(), indent);
      } else {
        out_ += '-';
      }
      const bool in_seq = f.node->is_array();
      ++f.it;  // f is not used below: push_back may move it
      // an empty [] or {} is a level too: decode counts it
      if (child.is_structured() && static_cast<int>(stack_.size()) >= kMaxDepth)
        throw Error(Code::invalid_argument,
                    "cannot write YAML: nesting deeper than " + std::to_string(kMaxDepth) + " levels",
                    {{"max_depth", kMaxDepth}});
      if (!is_block(child)) {
        out_ += ' ';
        scalar_line(child, indent + 2);
      } else if (in_seq && child.is_object()) {
        out_ += ' ';  // a mapping in a sequence starts on the dash's line
        stack_.push_back({&child, child.begin(), indent + 2, true});
      } else {
        out_ += '\n';
        stack_.push_back({&child, child.begin(), indent + 2, false});
      }
    }
    return std::move(out_);
  }

 private:
  struct Frame {
    const nlohmann::json* node;
    nlohmann::json::const_iterator it;
    int indent;
    bool inline_first;
  };

  // "key:"; a key written longer than YAML's 1024-character limit for an implicit key (escapes
  // count) is explicit.
  void key(const std::string& k, int indent) {
    std::string text = style_of(k, true) == Style::plain ? k : double_quoted(k);
    if (text.size() <= 1024) {
      out_ += text + ":";
      return;
    }
    out_ += "? " + text + "\n";
    out_.append(indent, ' ');
    out_ += ':';
  }

  // A scalar and its newline; a literal block's lines at `indent`.
  void scalar_line(const nlohmann::json& v, int indent) {
    std::string text = scalar_text(v);
    out_ += text + "\n";
    if (text != "|") return;
    std::string_view s = v.get_ref<const std::string&>();
    s.remove_suffix(1);  // the final "\n" is the block's own
    for (std::size_t start = 0; start <= s.size();) {
      std::size_t end = std::min(s.find('\n', start), s.size());
      if (end > start) out_.append(indent, ' ').append(s.substr(start, end - start));
      out_ += '\n';
      start = end + 1;
    }
  }

  std::string out_;
  std::vector<Frame> stack_;
};

}  // namespace

YamlPlain yaml_plain_kind(std::string_view s) {
  if (one_of(s, {"", "~", "null", "Null", "NULL"})) return YamlPlain::null;
  if (one_of(s, {"true", "True", "TRUE", "false", "False", "FALSE"})) return YamlPlain::boolean;
  if (!numeric_start(s[0])) return YamlPlain::string;
  // integers: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+
  Cursor c{s};
  c.sign();
  if (c.run(is_digit) > 0 && c.done()) return YamlPlain::integer;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
    Cursor r{s.substr(2)};
    bool hex = s[1] == 'x';
    if (r.run([hex](char x) { return hex ? std::isxdigit(static_cast<unsigned char>(x)) != 0 : x >= '0' && x <= '7'; }) > 0 &&
        r.done())
      return YamlPlain::integer;
  }
  // floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)
  Cursor f{s};
  f.sign();
  if (one_of(f.rest(), {".inf", ".Inf", ".INF"})) return YamlPlain::floating;
  if (f.i == 0 && one_of(s, {".nan", ".NaN", ".NAN"})) return YamlPlain::floating;
  if (f.eat('.')) {
    if (f.run(is_digit) == 0) return YamlPlain::string;
  } else {
    if (f.run(is_digit) == 0) return YamlPlain::string;
    if (f.eat('.')) f.run(is_digit);
  }
  if (f.eat('e') || f.eat('E')) {
    f.sign();
    if (f.run(is_digit) == 0) return YamlPlain::string;
  }
  return f.done() ? YamlPlain::floating : YamlPlain::string;
}

std::vector<nlohmann::json> parse_yaml_all(std::string_view text) {
  std::istringstream in{std::string(text)};
  Builder builder(text);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const YAML::DeepRecursion& e) {  // kept as a guard; the Builder stops first
    fail(e.mark, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  } catch (const YAML::Exception& e) {
    fail(e.mark, e.msg);
  }
  return std::move(builder.documents);
}

std::string dump_yaml(const nlohmann::json& value) { return Writer().write(value); }

}  // namespace hoist
