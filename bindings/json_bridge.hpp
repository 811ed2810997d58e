#pragma once
// Lua values <-> nlohmann::json. Shared by every binding that passes tables.
//
// Lua has one table type; JSON has two. A table with keys 1..n (n >= 1) is an array, any
// other non-empty table an object. An empty table is an object unless it carries the
// hoist.json.array() marker (a metatable); hoist.json.null is a light userdata distinct from nil.
#include <lua.hpp>
#include <nlohmann/json.hpp>

namespace hoist::lua {

void push_json(lua_State* L, const nlohmann::json& value);
nlohmann::json to_json(lua_State* L, int index);

// Pushes the hoist.json.null sentinel.
void push_null(lua_State* L);
bool is_null(lua_State* L, int index);
// Sets the array / object marker metatable on the table at the top of the stack.
void mark_array(lua_State* L);
void mark_object(lua_State* L);

}  // namespace hoist::lua
