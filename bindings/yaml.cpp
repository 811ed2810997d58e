// hoist.native.yaml: YAML text <-> Lua values, through nlohmann::json so that YAML and JSON
// share one set of rules (json_bridge.hpp): the same null, markers and 64-bit integers.
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <hoist/yaml.hpp>

namespace hoist::lua {
namespace {

std::string_view check_text(lua_State* L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    throw Error(Code::invalid_argument, std::string("expected YAML text (a string), got ") + luaL_typename(L, 1));
  size_t n;
  const char* s = lua_tolstring(L, 1, &n);
  return {s, n};
}

// Documents with content: an empty one (a trailing "---") or a bare null is skipped, as
// kubectl does.
std::vector<nlohmann::json> documents(lua_State* L) {
  std::vector<nlohmann::json> docs = parse_yaml_all(check_text(L));
  std::erase_if(docs, [](const nlohmann::json& d) { return d.is_null(); });
  return docs;
}

// text = yaml.encode(value)
int l_encode(lua_State* L) {
  std::string text = dump_yaml(to_json(L, 1, ToJsonOptions{.allow_nonfinite = true}));
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

// text = yaml.encode_all(documents)
int l_encode_all(lua_State* L) {
  if (!lua_istable(L, 1))
    throw Error(Code::invalid_argument, std::string("expected a list of documents, got ") + luaL_typename(L, 1));
  nlohmann::json docs = to_json(L, 1, ToJsonOptions{.allow_nonfinite = true});
  if (docs.is_object() && docs.empty()) docs = nlohmann::json::array();
  if (!docs.is_array()) throw Error(Code::invalid_argument, "expected a list of documents, got a table with keys");
  std::string text;
  for (const auto& doc : docs) {
    if (!text.empty()) text += "---\n";
    text += dump_yaml(doc);
  }
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

// value = yaml.decode(text)
int l_decode(lua_State* L) {
  std::vector<nlohmann::json> docs = documents(L);
  if (docs.size() > 1)
    throw Error(Code::invalid_argument,
                "the YAML stream holds " + std::to_string(docs.size()) +
                    " documents; hoist.yaml.decode_all returns them as a list",
                {{"documents", docs.size()}});
  if (docs.empty()) {
    lua_pushnil(L);
  } else {
    push_json(L, docs[0]);
  }
  return 1;
}

// documents = yaml.decode_all(text)
int l_decode_all(lua_State* L) {
  push_json(L, nlohmann::json(documents(L)));
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"encode", protect<l_encode>},
    {"encode_all", protect<l_encode_all>},
    {"decode", protect<l_decode>},
    {"decode_all", protect<l_decode_all>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_yaml(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
