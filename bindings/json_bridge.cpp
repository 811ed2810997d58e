#include "bindings/json_bridge.hpp"

#include <cmath>
#include <string>

namespace hoist::lua {
namespace {

const char* const kArrayMeta = "hoist.json.array";
const char* const kObjectMeta = "hoist.json.object";
char null_sentinel;

bool has_meta(lua_State* L, int index, const char* name) {
  if (!lua_getmetatable(L, index)) return false;
  luaL_getmetatable(L, name);
  bool yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

nlohmann::json convert(lua_State* L, int index, int depth) {
  if (depth > 200) throw std::runtime_error("json: table nesting too deep (a cycle?)");
  switch (lua_type(L, index)) {
    case LUA_TNIL: return nullptr;
    case LUA_TBOOLEAN: return static_cast<bool>(lua_toboolean(L, index));
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, index);
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9007199254740992.0)
        return static_cast<std::int64_t>(d);
      return d;
    }
    case LUA_TSTRING: {
      size_t n;
      const char* s = lua_tolstring(L, index, &n);
      return std::string(s, n);
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, index) == &null_sentinel) return nullptr;
      break;
    case LUA_TTABLE: {
      index = index < 0 ? lua_gettop(L) + index + 1 : index;
      size_t n = lua_objlen(L, index);
      bool array_marked = has_meta(L, index, kArrayMeta);
      bool object_marked = has_meta(L, index, kObjectMeta);
      // count keys to tell an array (1..n) from an object
      size_t count = 0;
      bool only_ints = true;
      lua_pushnil(L);
      while (lua_next(L, index)) {
        ++count;
        if (lua_type(L, -2) != LUA_TNUMBER) only_ints = false;
        lua_pop(L, 1);
      }
      if (!object_marked && ((count == 0 && array_marked) || (count > 0 && only_ints && count == n))) {
        nlohmann::json arr = nlohmann::json::array();
        for (size_t i = 1; i <= n; ++i) {
          lua_rawgeti(L, index, static_cast<int>(i));
          arr.push_back(convert(L, -1, depth + 1));
          lua_pop(L, 1);
        }
        return arr;
      }
      nlohmann::json obj = nlohmann::json::object();
      lua_pushnil(L);
      while (lua_next(L, index)) {
        std::string key;
        if (lua_type(L, -2) == LUA_TSTRING) {
          key = lua_tostring(L, -2);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
          lua_pushvalue(L, -2);
          key = lua_tostring(L, -1);
          lua_pop(L, 1);
        } else {
          throw std::runtime_error(std::string("json: cannot encode a table key of type ") +
                                   luaL_typename(L, -2));
        }
        obj[key] = convert(L, -1, depth + 1);
        lua_pop(L, 1);
      }
      return obj;
    }
    default: break;
  }
  throw std::runtime_error(std::string("json: cannot encode a value of type ") + luaL_typename(L, index));
}

}  // namespace

void push_null(lua_State* L) { lua_pushlightuserdata(L, &null_sentinel); }

bool is_null(lua_State* L, int index) {
  return lua_type(L, index) == LUA_TLIGHTUSERDATA && lua_touserdata(L, index) == &null_sentinel;
}

void mark_array(lua_State* L) {
  luaL_newmetatable(L, kArrayMeta);
  lua_setmetatable(L, -2);
}

void mark_object(lua_State* L) {
  luaL_newmetatable(L, kObjectMeta);
  lua_setmetatable(L, -2);
}

void push_json(lua_State* L, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null: push_null(L); break;
    case nlohmann::json::value_t::boolean: lua_pushboolean(L, v.get<bool>()); break;
    case nlohmann::json::value_t::number_integer:
      lua_pushnumber(L, static_cast<lua_Number>(v.get<std::int64_t>()));
      break;
    case nlohmann::json::value_t::number_unsigned:
      lua_pushnumber(L, static_cast<lua_Number>(v.get<std::uint64_t>()));
      break;
    case nlohmann::json::value_t::number_float: lua_pushnumber(L, v.get<double>()); break;
    case nlohmann::json::value_t::string: {
      auto& s = v.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(v.size()), 0);
      int i = 1;
      for (auto& item : v) {
        push_json(L, item);
        lua_rawseti(L, -2, i++);
      }
      if (v.empty()) mark_array(L);
      break;
    }
    case nlohmann::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(v.size()));
      for (auto& [k, item] : v.items()) {
        lua_pushlstring(L, k.data(), k.size());
        push_json(L, item);
        lua_rawset(L, -3);
      }
      if (v.empty()) mark_object(L);
      break;
    }
    default: push_null(L); break;
  }
}

nlohmann::json to_json(lua_State* L, int index) { return convert(L, index, 0); }

}  // namespace hoist::lua
