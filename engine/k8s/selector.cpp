// Label and field selectors evaluated on our side, as the API server evaluates them (shared
// watches filter one namespace-wide stream with them). The grammar is apimachinery's
// (labels.Parse, fields.ParseSelector) without the numeric `>`/`<` operators, which no
// workload selector uses: they are refused, never ignored.
#include <hoist/k8s.hpp>
#include <hoist/strings.hpp>

#include <algorithm>

namespace hoist::k8s {

using nlohmann::json;

// (a named namespace: the unity build joins files, and other files have a trim of their own)
namespace selector_text {

using text::trim;

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_' || c == '/';
}

// Top-level parts of "a=b,c in (x,y),!d": commas inside parentheses do not split.
std::vector<std::string_view> parts_of(std::string_view text, const std::string& what) {
  std::vector<std::string_view> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    char c = i < text.size() ? text[i] : ',';
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) throw Error(Code::invalid_argument, what + ": unbalanced ')'");
    if (c != ',' || depth > 0) continue;
    std::string_view part = trim(text.substr(start, i - start));
    if (part.empty()) throw Error(Code::invalid_argument, what + ": an empty requirement");
    out.push_back(part);
    start = i + 1;
  }
  if (depth != 0) throw Error(Code::invalid_argument, what + ": unbalanced '('");
  return out;
}

std::string_view take_key(std::string_view& rest) {
  std::size_t n = 0;
  while (n < rest.size() && key_char(rest[n])) ++n;
  std::string_view key = rest.substr(0, n);
  rest = trim(rest.substr(n));
  return key;
}

}  // namespace selector_text

Selector Selector::parse(std::string_view labels, std::string_view fields) {
  using namespace selector_text;
  Selector s;
  labels = trim(labels);
  fields = trim(fields);
  if (!labels.empty()) {
    const std::string what = "k8s label selector '" + std::string(labels) + "'";
    for (std::string_view part : parts_of(labels, what)) {
      Requirement r;
      std::string_view rest = part;
      bool negated = !rest.empty() && rest.front() == '!';
      if (negated) rest = trim(rest.substr(1));
      r.key = std::string(take_key(rest));
      auto bad = [&](const char* why) {
        return Error(Code::invalid_argument, what + ": '" + std::string(part) + "': " + why);
      };
      if (r.key.empty()) throw bad("no key");
      if (negated || rest.empty()) {
        if (!rest.empty()) throw bad("'!' takes a key alone");
        r.op = negated ? Op::not_exists : Op::exists;
      } else if (rest.rfind("!=", 0) == 0 || rest.rfind("==", 0) == 0 || rest.front() == '=') {
        r.op = rest.front() == '!' ? Op::not_equals : Op::equals;
        std::string_view value = trim(rest.substr(rest.front() == '=' && (rest.size() < 2 || rest[1] != '=') ? 1 : 2));
        if (std::any_of(value.begin(), value.end(), [](char c) { return !key_char(c) || c == '/'; }))
          throw bad("a value may hold letters, digits, '-', '_' and '.' only");
        r.values.emplace_back(value);
      } else {
        std::string_view op = take_key(rest);
        if (op != "in" && op != "notin") throw bad("expected =, ==, !=, in or notin (> and < are not supported)");
        if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') throw bad("expected a list of values in parentheses");
        r.op = op == "in" ? Op::in : Op::not_in;
        std::string_view list = rest.substr(1, rest.size() - 2);
        std::size_t start = 0;
        for (std::size_t i = 0; i <= list.size(); ++i) {
          if (i < list.size() && list[i] != ',') continue;
          r.values.emplace_back(trim(list.substr(start, i - start)));
          start = i + 1;
        }
      }
      s.requirements_.push_back(std::move(r));
    }
  }
  if (!fields.empty()) {
    const std::string what = "k8s field selector '" + std::string(fields) + "'";
    for (std::string_view part : parts_of(fields, what)) {
      Requirement r;
      r.field = true;
      std::size_t at = part.find('=');
      if (at == std::string_view::npos || at == 0)
        throw Error(Code::invalid_argument, what + ": '" + std::string(part) + "': expected field=value, field==value or field!=value");
      bool negated = part[at - 1] == '!';
      std::string_view field = trim(part.substr(0, negated ? at - 1 : at));
      std::string_view value = trim(part.substr(at + 1));
      if (!negated && !value.empty() && value.front() == '=') value = trim(value.substr(1));
      if (field != "metadata.name" && field != "metadata.namespace")
        throw Error(Code::invalid_argument, what + ": the field '" + std::string(field) +
                                                "' cannot be evaluated here (only metadata.name and metadata.namespace)");
      r.key = std::string(field.substr(9));  // after "metadata."
      r.op = negated ? Op::not_equals : Op::equals;
      r.values.emplace_back(value);
      s.requirements_.push_back(std::move(r));
    }
  }
  return s;
}

bool Selector::matches(const json& object) const {
  static const json kNone = json::object();
  auto meta_it = object.is_object() ? object.find("metadata") : object.end();
  const json& meta = object.is_object() && meta_it != object.end() && meta_it->is_object() ? *meta_it : kNone;
  auto labels_it = meta.find("labels");
  const json& labels = labels_it != meta.end() && labels_it->is_object() ? *labels_it : kNone;
  for (const auto& r : requirements_) {
    const json& from = r.field ? meta : labels;
    auto it = from.find(r.key);
    bool has = it != from.end() && it->is_string();
    std::string value = has ? it->get<std::string>() : "";
    if (r.field) has = true;  // a field always has a value ("" when unset)
    bool listed = std::find(r.values.begin(), r.values.end(), value) != r.values.end();
    bool ok = false;
    switch (r.op) {
      case Op::equals: ok = has && value == r.values[0]; break;
      case Op::not_equals: ok = !has || value != r.values[0]; break;
      case Op::in: ok = has && listed; break;
      case Op::not_in: ok = !has || !listed; break;
      case Op::exists: ok = has; break;
      case Op::not_exists: ok = !has; break;
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace hoist::k8s
