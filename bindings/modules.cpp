// The native modules every engine has, as package.preload["hoist.native.<name>"].
// One line per bindings/<name>.cpp.
#include "bindings/runtime.hpp"

namespace hoist::lua {

int luaopen_hoist_core(lua_State* L);
int luaopen_hoist_json(lua_State* L);

void register_builtin_modules(Runtime& rt) {
  rt.preload("hoist.native.core", luaopen_hoist_core);
  rt.preload("hoist.native.json", luaopen_hoist_json);
}

}  // namespace hoist::lua
