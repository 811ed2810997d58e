// JSON bridge: JSON text -> Lua (hoist.native.json decode) -> JSON text (encode), in a fresh
// lua_State. Property: what decodes encodes again, to the same value.
#include "fuzz/fuzz.hpp"

#include <hoist/json.hpp>

#include <cstdint>

namespace hoist::lua {
int luaopen_hoist_json(lua_State* L);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hoist::fuzz;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json want;
  try {
    want = hoist::parse_json(text);
  } catch (const hoist::Error& e) {
    expect_invalid_argument(e, "parse_json");
    return 0;
  }
  LuaState s;
  lua_State* L = s.L;
  lua_pushcfunction(L, hoist::lua::luaopen_hoist_json);
  lua_call(L, 0, 1);  // 1: the module
  lua_getfield(L, 1, "decode");
  lua_pushlstring(L, text.data(), text.size());
  if (lua_pcall(L, 1, 1, 0) != 0) {  // parse_json took it: only a limit (nesting) may refuse
    check(error_code(L) == "invalid_argument", "json.decode of valid JSON raised " + error_text(L));
    return 0;
  }
  lua_getfield(L, 1, "encode");  // 2: the value
  lua_pushvalue(L, 2);
  if (lua_pcall(L, 1, 1, 0) != 0) fail("json.encode of a decoded value raised " + error_text(L));
  std::size_t n;
  const char* out = lua_tolstring(L, -1, &n);
  nlohmann::json back;
  try {
    back = hoist::parse_json(std::string_view(out, n));
  } catch (const hoist::Error& e) {
    fail("json.encode wrote text parse_json refuses: " + e.message());
  }
  check(back == want, "round trip changed the value: " + want.dump().substr(0, 200) + " -> " +
                          back.dump().substr(0, 200));
  return 0;
}
