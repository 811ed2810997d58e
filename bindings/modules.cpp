// The native modules every engine has, as package.preload["hoist.native.<name>"].
// One line per bindings/<name>.cpp.
#include "bindings/runtime.hpp"

namespace hoist::lua {

int luaopen_hoist_core(lua_State* L);
int luaopen_hoist_json(lua_State* L);
int luaopen_hoist_yaml(lua_State* L);
int luaopen_hoist_process(lua_State* L);
int luaopen_hoist_journal(lua_State* L);
int luaopen_hoist_http(lua_State* L);
int luaopen_hoist_registry(lua_State* L);
int luaopen_hoist_fs(lua_State* L);
int luaopen_hoist_image(lua_State* L);
int luaopen_hoist_lock(lua_State* L);
int luaopen_hoist_azure(lua_State* L);
int luaopen_hoist_k8s(lua_State* L);
int luaopen_hoist_serve(lua_State* L);

void register_builtin_modules(Runtime& rt) {
  rt.preload("hoist.native.core", luaopen_hoist_core);
  rt.preload("hoist.native.json", luaopen_hoist_json);
  rt.preload("hoist.native.yaml", luaopen_hoist_yaml);
  rt.preload("hoist.native.process", luaopen_hoist_process);
  rt.preload("hoist.native.journal", luaopen_hoist_journal);
  rt.preload("hoist.native.http", luaopen_hoist_http);
  rt.preload("hoist.native.registry", luaopen_hoist_registry);
  rt.preload("hoist.native.fs", luaopen_hoist_fs);
  rt.preload("hoist.native.image", luaopen_hoist_image);
  rt.preload("hoist.native.lock", luaopen_hoist_lock);
  rt.preload("hoist.native.azure", luaopen_hoist_azure);
  rt.preload("hoist.native.k8s", luaopen_hoist_k8s);
  rt.preload("hoist.native.serve", luaopen_hoist_serve);
}

}  // namespace hoist::lua
