// YAML bridge: YAML text -> Lua (hoist.native.yaml decode_all) -> YAML text (encode_all) ->
// Lua again. Property: what decodes encodes, and decodes back to the same documents.
#include "bindings/json_bridge.hpp"
#include "fuzz/fuzz.hpp"

#include <cmath>
#include <cstdint>

namespace hoist::lua {
int luaopen_hoist_yaml(lua_State* L);
}

namespace {

// == with NaN equal to NaN (YAML has .nan; JSON's == says NaN != NaN)
bool same(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number_float() && b.is_number_float() && std::isnan(a.get<double>()) && std::isnan(b.get<double>()))
    return true;
  if (a.type() != b.type() || !(a.is_array() || a.is_object())) return a == b;
  if (a.size() != b.size()) return false;
  if (a.is_array()) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  for (auto it = a.begin(); it != a.end(); ++it)
    if (!b.contains(it.key()) || !same(it.value(), b[it.key()])) return false;
  return true;
}

// Calls module.<fn>(arg at index) and leaves its one result on the stack; false on an error
// (left on the stack instead).
bool call(lua_State* L, const char* fn, int arg) {
  lua_getfield(L, 1, fn);
  lua_pushvalue(L, arg);
  return lua_pcall(L, 1, 1, 0) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  hoist::fuzz::LuaState s;
  lua_State* L = s.L;
  lua_pushcfunction(L, hoist::lua::luaopen_hoist_yaml);
  lua_call(L, 0, 1);                                                // 1: the module
  lua_pushlstring(L, reinterpret_cast<const char*>(data), size);  // 2: the text
  if (!call(L, "decode_all", 2)) {
    check(error_code(L) == "invalid_argument", "yaml.decode_all raised " + error_text(L));
    return 0;
  }
  // what decode returns (UTF-8 only, nested at most 400 levels), encode writes
  if (!call(L, "encode_all", 3)) fail("yaml.encode_all of decoded documents raised " + error_text(L));  // 3: the documents
  std::string written = lua_tostring(L, 4);  // 4: the text written
  if (!call(L, "decode_all", 4)) fail("yaml.decode_all refused what encode_all wrote: " + error_text(L) + "\n" + written);
  nlohmann::json first, second;
  try {
    first = hoist::lua::to_json(L, 3, {.allow_nonfinite = true});
    second = hoist::lua::to_json(L, 5, {.allow_nonfinite = true});
  } catch (const hoist::Error& e) {
    fail("to_json of decoded documents raised " + e.message());
  }
  check(same(first, second), "round trip changed the documents: " + first.dump().substr(0, 300) + "\nwritten:\n" +
                                 written.substr(0, 300) + "\nread back: " + second.dump().substr(0, 300));
  return 0;
}
