#pragma once
// Lua values <-> nlohmann::json. Shared by every binding that passes tables.
//
// Lua -> JSON (to_json):
//   nil and hoist.json.null -> null; booleans; strings (must be valid UTF-8);
//   numbers: integral values within +-2^53 -> integers ("3", never "3.0"), others -> floats;
//     NaN and infinities are refused unless allow_nonfinite (JSON has neither);
//   int64_t / uint64_t cdata (1LL, 2ULL) -> exact 64-bit integers;
//   tables: hoist.json.array()-marked -> array (keys 1..n only); hoist.json.object()-marked
//     -> object (string and number keys, numbers written as text); unmarked: empty -> object,
//     keys exactly 1..n -> array, string keys only -> object, anything else is refused.
//   A function, userdata, thread, other cdata, a cycle or nesting deeper than 1000 raises
//   invalid_argument naming the path: "at $.a.b[2]" (Lua indexes, from 1), details {path=}.
//
// JSON -> Lua (push_json):
//   null -> hoist.json.null (a caller decides what a top-level null means); integers within
//   +-2^53 -> numbers, larger ones -> int64_t (or uint64_t above 2^63-1) cdata so no digit is
//   lost; arrays and objects -> tables carrying the array / object marker metatable, so they
//   encode back the same even when empty.
#include "bindings/runtime.hpp"

#include <hoist/error.hpp>

#include <lua.hpp>
#include <nlohmann/json.hpp>

namespace hoist::lua {

struct ToJsonOptions {
  bool allow_nonfinite = false;  // YAML has .nan and .inf; JSON has not
};

void push_json(lua_State* L, const nlohmann::json& value);
nlohmann::json to_json(lua_State* L, int index);
nlohmann::json to_json(lua_State* L, int index, const ToJsonOptions& options);

// Pushes the hoist.json.null sentinel (one userdata per Lua state).
void push_null(lua_State* L);
bool is_null(lua_State* L, int index);
// Sets the array / object marker metatable on the table at the top of the stack.
void mark_array(lua_State* L);
void mark_object(lua_State* L);

// Suspends until start(Completion<T>) completes, then resumes with convert(value) pushed as
// one Lua value (or the error): the body of a waiting binding whose result is JSON.
template <class T, class Start, class Convert>
int suspend_json(lua_State* L, Start start, Convert convert) {
  return suspend(L, [&](Resumer r) -> OperationPtr {
    return start([r, convert](Outcome<T> out) {
      if (!out) return r.fail(out.error());
      nlohmann::json j = convert(out.value());
      r.ok([j = std::move(j)](lua_State* co) {
        push_json(co, j);
        return 1;
      });
    });
  });
}

}  // namespace hoist::lua
