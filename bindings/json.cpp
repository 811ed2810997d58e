// hoist.native.json: JSON text <-> Lua values. The conversion rules live in json_bridge.hpp;
// stdlib/hoist/json.lua checks options and adds the array/object markers.
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <hoist/json.hpp>

#include <cmath>

namespace hoist::lua {
namespace {

// text = json.encode(value, {pretty=, indent=, ascii=})
int l_encode(lua_State* L) {
  int indent = -1;
  bool ascii = false;
  if (lua_istable(L, 2)) {
    bool pretty = opt_bool(L, 2, "pretty", false);
    double n = opt_number(L, 2, "indent", pretty ? 2 : -1);
    if (n != std::floor(n) || n < -1 || n > 16)
      throw Error(Code::invalid_argument, "option 'indent' must be an integer from 0 to 16");
    indent = static_cast<int>(n);
    ascii = opt_bool(L, 2, "ascii", false);
  } else if (!lua_isnoneornil(L, 2)) {
    throw Error(Code::invalid_argument, std::string("options must be a table, got ") + luaL_typename(L, 2));
  }
  nlohmann::json value = to_json(L, 1);  // checks UTF-8, so dump() cannot fail on it
  std::string text = value.dump(indent, ' ', ascii);
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

// value = json.decode(text)
int l_decode(lua_State* L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    throw Error(Code::invalid_argument, std::string("expected JSON text (a string), got ") + luaL_typename(L, 1));
  size_t n;
  const char* s = lua_tolstring(L, 1, &n);
  nlohmann::json value = parse_json(std::string_view(s, n));
  if (value.is_null()) {
    lua_pushnil(L);  // a document that is just `null`: nil, as nothing else can hold it
  } else {
    push_json(L, value);
  }
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"encode", protect<l_encode>},
    {"decode", protect<l_decode>},
    {nullptr, nullptr},
};

// Sets module[field] to the marker metatable that mark() puts on a table.
void export_marker(lua_State* L, const char* field, void (*mark)(lua_State*)) {
  lua_newtable(L);
  mark(L);
  lua_getmetatable(L, -1);
  lua_setfield(L, -3, field);
  lua_pop(L, 1);
}

}  // namespace

int luaopen_hoist_json(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  push_null(L);
  lua_setfield(L, -2, "null");
  export_marker(L, "array_mt", mark_array);
  export_marker(L, "object_mt", mark_object);
  return 1;
}

}  // namespace hoist::lua
