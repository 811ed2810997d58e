// hoist.native.image: image references, parsed by the engine's one parser
// (engine/registry/reference.cpp, Docker's grammar). stdlib/hoist/image.lua is the Lua face.
#include "bindings/runtime.hpp"

#include <hoist/registry.hpp>

namespace hoist::lua {
namespace {

void set_field(lua_State* L, const char* key, const std::string& value) {
  if (value.empty()) return;  // absent parts stay nil
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, key);
}

// {registry=, repository=, path=, tag=, digest=, image=} = image.parse(text): raises
// invalid_argument naming the reference and what is wrong with it
int l_parse(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  auto r = registry::Reference::parse(std::string_view(s, n));
  lua_createtable(L, 0, 6);
  set_field(L, "registry", r.registry);
  set_field(L, "repository", r.name());
  set_field(L, "path", r.repository);
  set_field(L, "tag", r.tag);
  set_field(L, "digest", r.digest);
  set_field(L, "image", r.str());
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"parse", protect<l_parse>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_image(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
