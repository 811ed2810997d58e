// hoist.native.json: encode/decode (placeholder until the JSON/YAML bridge lands)
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

namespace hoist::lua {
namespace {

// text = json.encode(value, {pretty=bool})
int l_encode(lua_State* L) {
  bool pretty = lua_istable(L, 2) && opt_bool(L, 2, "pretty", false);
  std::string s = to_json(L, 1).dump(pretty ? 2 : -1);
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

// value = json.decode(text)
int l_decode(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  try {
    push_json(L, nlohmann::json::parse(s, s + n));
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(Code::invalid_argument, std::string("malformed JSON: ") + e.what());
  }
  return 1;
}

int l_null(lua_State* L) {
  push_null(L);
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"encode", protect<l_encode>},
    {"decode", protect<l_decode>},
    {"null", protect<l_null>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_json(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
