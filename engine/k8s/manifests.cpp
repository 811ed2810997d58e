// Manifests: multi-document YAML or JSON text, or values already decoded (a Lua table), to a
// flat list of objects, each checked for what every verb needs.
#include <hoist/k8s.hpp>
#include <hoist/yaml.hpp>

namespace hoist::k8s {

using nlohmann::json;

namespace {

void check_one(const json& obj, const std::string& where) {
  if (!obj.is_object()) throw Error(Code::invalid_argument, where + " is not an object", {{"document", where}});
  for (const char* field : {"apiVersion", "kind"})
    if (!obj.contains(field) || !obj[field].is_string() || obj[field].get_ref<const std::string&>().empty())
      throw Error(Code::invalid_argument, where + " has no " + field, {{"document", where}});
  const json& meta = obj.contains("metadata") ? obj["metadata"] : json();
  bool named = meta.is_object() && ((meta.contains("name") && meta["name"].is_string() && !meta["name"].get_ref<const std::string&>().empty()) ||
                                    (meta.contains("generateName") && meta["generateName"].is_string()));
  if (!named)
    throw Error(Code::invalid_argument, where + " (" + obj["kind"].get<std::string>() + ") has no metadata.name",
                {{"document", where}});
}

// A `kind: List` (kubectl get -o yaml) stands for its items; a List inside a List is refused
// (no recursion on input depth).
void add(std::vector<json>& out, json obj, const std::string& where) {
  if (obj.is_object() && obj.value("kind", "") == "List" && obj.contains("items")) {
    if (!obj["items"].is_array()) throw Error(Code::invalid_argument, where + ": List items must be a list");
    std::size_t i = 0;
    for (auto& item : obj["items"]) {
      std::string w = where + " item " + std::to_string(++i);
      if (item.is_object() && item.value("kind", "") == "List") throw Error(Code::invalid_argument, w + ": a List inside a List");
      check_one(item, w);
      out.push_back(std::move(item));
    }
    return;
  }
  check_one(obj, where);
  out.push_back(std::move(obj));
}

}  // namespace

std::vector<json> parse_manifests(std::string_view text) {
  std::vector<json> docs;
  try {
    docs = parse_yaml_all(text);  // JSON is YAML
  } catch (const Error& e) {
    throw Error(Code::invalid_argument, "manifest: " + e.message(), e.details());
  }
  std::vector<json> out;
  std::size_t i = 0;
  for (auto& d : docs) {
    ++i;
    if (d.is_null()) continue;
    add(out, std::move(d), "manifest document " + std::to_string(i));
  }
  return out;
}

std::vector<json> check_manifests(const json& value) {
  std::vector<json> out;
  if (value.is_array()) {
    std::size_t i = 0;
    for (const auto& v : value) add(out, v, "manifest " + std::to_string(++i));
  } else {
    add(out, value, "manifest");
  }
  return out;
}

}  // namespace hoist::k8s
