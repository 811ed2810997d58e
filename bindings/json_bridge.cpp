#include "bindings/json_bridge.hpp"

#include <hoist/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace hoist::lua {
namespace {

const char* const kArrayMeta = "hoist.json.array";
const char* const kObjectMeta = "hoist.json.object";
const char* const kNullKey = "hoist.json.null";
const char* const kFfiKey = "hoist.json.ffi";
constexpr int kMaxDepth = kMaxJsonDepth;
constexpr double kMaxExact = 9007199254740992.0;  // 2^53: doubles are exact integers up to here
constexpr std::int64_t kMaxExactInt = std::int64_t(1) << 53;
constexpr int kTypeCdata = 10;                     // LuaJIT's LUA_TCDATA, not in lua.h

// The C API cannot make or inspect cdata, so a few lines of Lua do it for us: [1] tells an
// int64_t / uint64_t box from other cdata, [2] makes an empty box that C then fills in.
const char kFfiHelpers[] = R"(
local ok, ffi = pcall(require, "ffi")
if not ok then return false end
local int64, uint64, istype = ffi.typeof("int64_t"), ffi.typeof("uint64_t"), ffi.istype
return {
  function(v)
    if istype(int64, v) then return 1 end
    if istype(uint64, v) then return 2 end
    return tostring(ffi.typeof(v))
  end,
  function(unsigned) if unsigned then return uint64() end return int64() end,
}
)";

// Pushes the helper table, or false when this LuaJIT has no FFI.
void push_ffi(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kFfiKey);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, kFfiHelpers, sizeof kFfiHelpers - 1, "=hoist.json.ffi") != 0 ||
      lua_pcall(L, 0, 1, 0) != 0) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, kFfiKey);
}

// Pushes a 64-bit integer as an int64_t / uint64_t cdata (a lossy number without FFI).
void push_boxed(lua_State* L, std::uint64_t bits, bool is_unsigned) {
  push_ffi(L);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnumber(L, is_unsigned ? static_cast<double>(bits) : static_cast<double>(static_cast<std::int64_t>(bits)));
    return;
  }
  lua_rawgeti(L, -1, 2);
  lua_pushboolean(L, is_unsigned);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    std::string why = lua_tostring(L, -1) ? lua_tostring(L, -1) : "?";
    lua_pop(L, 2);
    throw Error(Code::internal, "cannot make a 64-bit integer: " + why);
  }
  // lua_topointer gives a cdata's payload: the 8 bytes of the fresh box
  std::memcpy(const_cast<void*>(lua_topointer(L, -1)), &bits, sizeof bits);
  lua_remove(L, -2);
}

void push_marker(lua_State* L, const char* name, const char* kind) {
  if (luaL_newmetatable(L, name)) {
    lua_pushstring(L, kind);  // lets Lua code ask getmetatable(t).__jsontype
    lua_setfield(L, -2, "__jsontype");
  }
}

enum class Marker { none, array, object };

Marker marker_of(lua_State* L, int index) {
  if (!lua_getmetatable(L, index)) return Marker::none;
  Marker found = Marker::none;
  luaL_getmetatable(L, kArrayMeta);
  if (lua_rawequal(L, -1, -2)) found = Marker::array;
  lua_pop(L, 1);
  luaL_getmetatable(L, kObjectMeta);
  if (lua_rawequal(L, -1, -2)) found = Marker::object;
  lua_pop(L, 2);
  return found;
}

bool is_identifier(const std::string& key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string number_key(double k) {
  if (k == std::floor(k) && std::fabs(k) <= kMaxExact) return std::to_string(static_cast<long long>(k));
  return nlohmann::json(k).dump();
}

// Walks a Lua value depth-first, keeping the path for error messages and the tables on it
// to catch cycles.
class Encoder {
 public:
  Encoder(lua_State* L, const ToJsonOptions& options) : L_(L), options_(options) {}

  nlohmann::json value(int index, int depth) {
    if (index < 0 && index > LUA_REGISTRYINDEX) index = lua_gettop(L_) + index + 1;
    switch (lua_type(L_, index)) {
      case LUA_TNIL: return nullptr;
      case LUA_TBOOLEAN: return static_cast<bool>(lua_toboolean(L_, index));
      case LUA_TNUMBER: return number(lua_tonumber(L_, index));
      case LUA_TSTRING: return string(index, "string");
      case LUA_TTABLE: return table(index, depth);
      case LUA_TUSERDATA:
        if (is_null(L_, index)) return nullptr;
        break;
      case kTypeCdata: return cdata(index);
      default: break;
    }
    fail(std::string("cannot encode a ") + luaL_typename(L_, index));
  }

 private:
  // "<what> at $.a.b[2]<advice>"
  [[noreturn]] void fail(const std::string& what, const std::string& advice = "") {
    std::string where = path();
    throw Error(Code::invalid_argument, what + " at " + where + advice, {{"path", where}});
  }

  std::string path() const {
    std::string out = "$";
    for (const auto& s : path_) out += s;
    return out;
  }

  nlohmann::json number(double d) {
    if (!std::isfinite(d)) {
      if (!options_.allow_nonfinite) fail("cannot encode " + std::string(std::isnan(d) ? "NaN" : "infinity") + " (JSON has no such number)");
      return d;
    }
    if (d == std::floor(d) && std::fabs(d) <= kMaxExact) return static_cast<std::int64_t>(d);
    return d;
  }

  std::string string(int index, const char* what) {
    size_t n;
    const char* s = lua_tolstring(L_, index, &n);
    check_utf8(s, n, what);
    return std::string(s, n);
  }

  // nlohmann checks UTF-8 only while writing; write the one string to find the bad byte.
  void check_utf8(const char* s, size_t n, const char* what) {
    if (std::all_of(s, s + n, [](char c) { return static_cast<unsigned char>(c) < 0x80; })) return;
    try {
      nlohmann::json(std::string(s, n)).dump();
    } catch (const nlohmann::json::type_error& e) {
      std::string msg = e.what();  // "... invalid UTF-8 byte at index 2: 0xFF" or "incomplete ..."
      auto at = msg.find("index ");
      std::string where = at == std::string::npos ? "the end" : "byte " + std::to_string(std::stoul(msg.substr(at + 6)) + 1);
      auto last = msg.rfind(": ");
      std::string byte = last == std::string::npos ? "" : " (" + msg.substr(last + 2) + ")";
      fail("invalid UTF-8 in a " + std::string(what) + " at " + where + byte);
    }
  }

  nlohmann::json cdata(int index) {
    push_ffi(L_);
    if (!lua_istable(L_, -1)) fail("cannot encode a cdata value");
    lua_rawgeti(L_, -1, 1);
    lua_pushvalue(L_, index);
    if (lua_pcall(L_, 1, 1, 0) != 0 || lua_type(L_, -1) != LUA_TNUMBER) {
      std::string type = lua_isstring(L_, -1) ? lua_tostring(L_, -1) : "cdata";
      lua_pop(L_, 2);
      fail("cannot encode a " + type + " value (only int64_t and uint64_t cdata)");
    }
    bool is_unsigned = lua_tointeger(L_, -1) == 2;
    lua_pop(L_, 2);
    std::uint64_t bits;
    std::memcpy(&bits, lua_topointer(L_, index), sizeof bits);
    if (is_unsigned) return bits;
    return static_cast<std::int64_t>(bits);
  }

  nlohmann::json table(int index, int depth) {
    const void* id = lua_topointer(L_, index);
    if (std::find(open_.begin(), open_.end(), id) != open_.end()) fail("cannot encode a table that contains itself (a cycle)");
    if (depth >= kMaxDepth) fail("cannot encode nesting deeper than " + std::to_string(kMaxDepth));
    if (!lua_checkstack(L_, 8)) fail("cannot encode: Lua stack exhausted");
    Marker marker = marker_of(L_, index);

    std::size_t count = 0, max_index = 0;
    bool all_index = true, all_string = true;
    std::string odd_key;  // the first key that is not a list index, for the error message
    lua_pushnil(L_);
    while (lua_next(L_, index)) {
      ++count;
      int type = lua_type(L_, -2);
      if (type == LUA_TNUMBER) {
        double k = lua_tonumber(L_, -2);
        all_string = false;
        if (k >= 1 && k == std::floor(k) && k <= kMaxExact) {
          max_index = std::max(max_index, static_cast<std::size_t>(k));
        } else {
          all_index = false;
          if (odd_key.empty()) odd_key = number_key(k);
        }
      } else if (type == LUA_TSTRING) {
        all_index = false;
        if (odd_key.empty()) odd_key = lua_tostring(L_, -2);
      } else {
        fail(std::string("cannot encode a table key of type ") + luaL_typename(L_, -2));
      }
      lua_pop(L_, 1);
    }

    bool as_array;
    if (marker == Marker::array) {
      if (!all_index) fail("cannot encode an array-marked table with the key '" + odd_key + "'");
      as_array = true;
    } else if (marker == Marker::object || count == 0) {
      as_array = false;
    } else if (all_index) {
      as_array = true;
    } else if (all_string) {
      as_array = false;
    } else {
      fail("cannot encode a table that mixes list items and keys like '" + odd_key + "'",
           "; hoist.json.object(t) writes number keys as strings");
    }
    if (as_array && max_index != count)
      fail("cannot encode a sparse array",
           " (index " + std::to_string(max_index) + " set, " + std::to_string(count) +
               " items); fill holes with hoist.json.null or use hoist.json.object(t)");

    open_.push_back(id);
    nlohmann::json out = as_array ? array(index, count, depth) : object(index, depth);
    open_.pop_back();
    return out;
  }

  nlohmann::json array(int index, std::size_t count, int depth) {
    nlohmann::json arr = nlohmann::json::array();
    arr.get_ref<nlohmann::json::array_t&>().reserve(count);
    for (std::size_t i = 1; i <= count; ++i) {
      path_.push_back("[" + std::to_string(i) + "]");
      lua_rawgeti(L_, index, static_cast<int>(i));
      arr.push_back(value(-1, depth + 1));
      lua_pop(L_, 1);
      path_.pop_back();
    }
    return arr;
  }

  nlohmann::json object(int index, int depth) {
    nlohmann::json obj = nlohmann::json::object();
    lua_pushnil(L_);
    while (lua_next(L_, index)) {
      // lua_tolstring on a number key would change the key under lua_next: format it instead
      std::string key = lua_type(L_, -2) == LUA_TNUMBER ? number_key(lua_tonumber(L_, -2)) : string(-2, "key");
      path_.push_back(is_identifier(key) ? "." + key : "[" + nlohmann::json(key).dump() + "]");
      if (obj.contains(key)) fail("cannot encode a table with both a number and a string key '" + key + "'");
      obj[key] = value(-1, depth + 1);
      path_.pop_back();
      lua_pop(L_, 1);
    }
    return obj;
  }

  lua_State* L_;
  ToJsonOptions options_;
  std::vector<std::string> path_;
  std::vector<const void*> open_;
};

void push_value(lua_State* L, const nlohmann::json& v, int depth) {
  if (depth >= kMaxDepth) throw Error(Code::invalid_argument, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  if (!lua_checkstack(L, 4)) throw Error(Code::invalid_argument, "nesting too deep for the Lua stack");
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::boolean: lua_pushboolean(L, v.get<bool>()); break;
    case T::number_integer: {
      auto i = v.get<std::int64_t>();
      if (i >= -kMaxExactInt && i <= kMaxExactInt) {
        lua_pushnumber(L, static_cast<lua_Number>(i));
      } else {
        push_boxed(L, static_cast<std::uint64_t>(i), false);
      }
      break;
    }
    case T::number_unsigned: {
      auto u = v.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(kMaxExactInt)) {
        lua_pushnumber(L, static_cast<lua_Number>(u));
      } else {
        push_boxed(L, u, u > static_cast<std::uint64_t>(INT64_MAX));
      }
      break;
    }
    case T::number_float: lua_pushnumber(L, v.get<double>()); break;
    case T::string: {
      auto& s = v.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case T::array: {
      lua_createtable(L, static_cast<int>(v.size()), 0);
      int i = 1;
      for (const auto& item : v) {
        push_value(L, item, depth + 1);
        lua_rawseti(L, -2, i++);
      }
      mark_array(L);
      break;
    }
    case T::object: {
      lua_createtable(L, 0, static_cast<int>(v.size()));
      for (const auto& [k, item] : v.items()) {
        lua_pushlstring(L, k.data(), k.size());
        push_value(L, item, depth + 1);
        lua_rawset(L, -3);
      }
      mark_object(L);
      break;
    }
    default: push_null(L); break;  // null, and binary/discarded values, which JSON text never yields
  }
}

int null_tostring(lua_State* L) {
  lua_pushliteral(L, "hoist.json.null");
  return 1;
}

}  // namespace

void push_null(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kNullKey);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_newuserdata(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, null_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "hoist.json.null");
  lua_setfield(L, -2, "__metatable");  // getmetatable() sees this string; nobody can replace it
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, kNullKey);
}

bool is_null(lua_State* L, int index) {
  if (lua_type(L, index) != LUA_TUSERDATA) return false;
  lua_getfield(L, LUA_REGISTRYINDEX, kNullKey);
  bool yes = lua_rawequal(L, index < 0 && index > LUA_REGISTRYINDEX ? index - 1 : index, -1);
  lua_pop(L, 1);
  return yes;
}

void mark_array(lua_State* L) {
  push_marker(L, kArrayMeta, "array");
  lua_setmetatable(L, -2);
}

void mark_object(lua_State* L) {
  push_marker(L, kObjectMeta, "object");
  lua_setmetatable(L, -2);
}

void push_json(lua_State* L, const nlohmann::json& value) { push_value(L, value, 0); }

nlohmann::json to_json(lua_State* L, int index) { return to_json(L, index, ToJsonOptions{}); }

nlohmann::json to_json(lua_State* L, int index, const ToJsonOptions& options) {
  if (index < 0 && index > LUA_REGISTRYINDEX) index = lua_gettop(L) + index + 1;
  return Encoder(L, options).value(index, 0);
}

}  // namespace hoist::lua
