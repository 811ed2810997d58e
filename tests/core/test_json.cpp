// JSON and YAML below Lua (engine/core/json.cpp, yaml.cpp) and the Lua <-> JSON bridge
// (bindings/json_bridge.cpp) on a bare lua_State.
#include "bindings/json_bridge.hpp"

#include <doctest/doctest.h>
#include <hoist/json.hpp>
#include <hoist/yaml.hpp>

#include <cmath>
#include <string>

using nlohmann::json;

namespace {

hoist::Error error_of(auto&& fn) {
  try {
    fn();
  } catch (const hoist::Error& e) {
    return e;
  }
  FAIL("no error raised");
  return hoist::Error(hoist::Code::internal, "unreachable");
}

// A Lua state with the standard libraries (ffi included) that runs snippets.
struct Lua {
  lua_State* L = luaL_newstate();
  Lua() { luaL_openlibs(L); }
  ~Lua() { lua_close(L); }
  // Runs `code` (which returns one value) and leaves the value on the stack.
  void eval(const std::string& code) {
    REQUIRE_MESSAGE(luaL_loadstring(L, code.c_str()) == 0, lua_tostring(L, -1));
    REQUIRE_MESSAGE(lua_pcall(L, 0, 1, 0) == 0, lua_tostring(L, -1));
  }
  // Calls `function(v) return <expr> end` with the value on top of the stack; pops it.
  std::string check(const std::string& expr) {
    std::string code = "return function(v) return tostring(" + expr + ") end";
    REQUIRE(luaL_loadstring(L, code.c_str()) == 0);
    REQUIRE(lua_pcall(L, 0, 1, 0) == 0);
    lua_insert(L, -2);
    REQUIRE_MESSAGE(lua_pcall(L, 1, 1, 0) == 0, lua_tostring(L, -1));
    std::string out = lua_tostring(L, -1);
    lua_pop(L, 1);
    return out;
  }
};

}  // namespace

TEST_CASE("position_in counts lines and byte columns from 1") {
  CHECK(hoist::position_in("abc", 0).column == 1);
  auto p = hoist::position_in("ab\ncd\nef", 7);
  CHECK(p.line == 3);
  CHECK(p.column == 2);
  CHECK(hoist::position_in("ab", 99).column == 3);  // the end of input
}

TEST_CASE("parse_json reports line and column of malformed text") {
  struct Row {
    const char* text;
    int line, column;
  };
  for (Row row : {Row{"{\"a\": 1,\n \"b\": }", 2, 7}, Row{"[1, 2", 1, 6}, Row{"", 1, 1}, Row{"[1,\n 1e400]", 2, 2}}) {
    CAPTURE(row.text);
    auto e = error_of([&] { hoist::parse_json(row.text); });
    CHECK(e.code() == hoist::Code::invalid_argument);
    CHECK(e.details()["line"] == row.line);
    CHECK(e.details()["column"] == row.column);
    CHECK(e.message().find("line " + std::to_string(row.line) + ", column " + std::to_string(row.column)) !=
          std::string::npos);
  }
  CHECK(hoist::parse_json(R"({"a":[1,2.5,"x",null]})") == json{{"a", {1, 2.5, "x", nullptr}}});
}

TEST_CASE("valid_utf8 replaces only broken sequences") {
  CHECK(hoist::valid_utf8("plain") == "plain");
  CHECK(hoist::valid_utf8("h\xc3\xa9") == "h\xc3\xa9");
  CHECK(hoist::valid_utf8("a\xff" "b") == "a\xef\xbf\xbd" "b");
}

TEST_CASE("yaml_plain_kind follows the YAML 1.2 core schema") {
  using K = hoist::YamlPlain;
  struct Row {
    const char* text;
    K kind;
  };
  for (Row row : {Row{"", K::null}, Row{"~", K::null}, Row{"NULL", K::null}, Row{"True", K::boolean},
                  Row{"yes", K::string}, Row{"0x1F", K::integer}, Row{"0o17", K::integer}, Row{"-12", K::integer},
                  Row{"1.10", K::floating}, Row{".5", K::floating}, Row{"-.inf", K::floating},
                  Row{".NaN", K::floating}, Row{"1e3", K::floating}, Row{"1.2.3", K::string},
                  Row{"0b101", K::string}, Row{"nginx:1.25", K::string}}) {
    CAPTURE(row.text);
    CHECK(hoist::yaml_plain_kind(row.text) == row.kind);
  }
}

TEST_CASE("parse_yaml_all types scalars and keeps 64-bit integers") {
  auto docs = hoist::parse_yaml_all("a: 9007199254740993\nb: -9223372036854775808\nc: 18446744073709551615\n"
                                    "d: '1.0'\ne: 1.0\nf: ~\n---\n");
  REQUIRE(docs.size() == 2);
  CHECK(docs[1].is_null());
  const json& d = docs[0];
  CHECK(d["a"].get<std::int64_t>() == 9007199254740993LL);
  CHECK(d["b"].get<std::int64_t>() == INT64_MIN);
  CHECK(d["c"].is_number_unsigned());
  CHECK(d["c"].get<std::uint64_t>() == UINT64_MAX);
  CHECK(d["d"] == "1.0");
  CHECK(d["e"].is_number_float());
  CHECK(d["f"].is_null());
}

TEST_CASE("parse_yaml_all reports line and column") {
  auto e = error_of([] { hoist::parse_yaml_all("a: 1\nb: [1, 2\nc: 3\n"); });
  CHECK(e.code() == hoist::Code::invalid_argument);
  CHECK(e.details()["line"] == 3);
  CHECK(e.message().rfind("malformed YAML at line 3, column 2: ", 0) == 0);
  auto dup = error_of([] { hoist::parse_yaml_all("a: 1\na: 2\n"); });
  CHECK(dup.details()["line"] == 2);
  CHECK(dup.message().find("duplicate key 'a'") != std::string::npos);
}

TEST_CASE("dump_yaml writes sorted block style and quotes look-alike strings") {
  json v = {{"z", {1, 2}}, {"a", "1.10"}, {"b", "yes"}, {"c", json::object()}, {"d", nullptr}, {"e", 0.5},
            {"f", std::nan("")}};
  CHECK(hoist::dump_yaml(v) == "a: \"1.10\"\nb: \"yes\"\nc: {}\nd: null\ne: 0.5\nf: .nan\nz:\n  - 1\n  - 2\n");
  auto back = hoist::parse_yaml_all(hoist::dump_yaml(v));
  REQUIRE(back.size() == 1);
  CHECK(back[0]["a"] == "1.10");
  CHECK(std::isnan(back[0]["f"].get<double>()));
}

TEST_CASE("push_json: big integers become int64_t / uint64_t cdata, containers carry markers") {
  Lua lua;
  hoist::lua::push_json(lua.L, json::parse("9007199254740993"));
  CHECK(lua.check("require('ffi').istype('int64_t', v) and v == 9007199254740993LL") == "true");
  hoist::lua::push_json(lua.L, json::parse("18446744073709551615"));
  CHECK(lua.check("require('ffi').istype('uint64_t', v) and v == 18446744073709551615ULL") == "true");
  hoist::lua::push_json(lua.L, json::parse("9007199254740992"));
  CHECK(lua.check("type(v)") == "number");
  hoist::lua::push_json(lua.L, json::parse(R"({"a":[],"b":[null]})"));
  CHECK(lua.check("getmetatable(v.a).__jsontype .. getmetatable(v).__jsontype .. #v.b") == "arrayobject1");
  CHECK(lua_gettop(lua.L) == 0);
}

TEST_CASE("to_json: exact 64-bit integers, markers, null sentinel") {
  Lua lua;
  lua.eval("return {a = -9223372036854775807LL - 1, b = 18446744073709551615ULL, c = 3.0, d = 0.25}");
  json v = hoist::lua::to_json(lua.L, -1);
  CHECK(v["a"].get<std::int64_t>() == INT64_MIN);
  CHECK(v["b"].get<std::uint64_t>() == UINT64_MAX);
  CHECK(v["c"].is_number_integer());
  CHECK(v["d"] == 0.25);
  lua_pop(lua.L, 1);

  lua_newtable(lua.L);
  hoist::lua::mark_array(lua.L);
  CHECK(hoist::lua::to_json(lua.L, -1) == json::array());
  lua_pop(lua.L, 1);

  hoist::lua::push_null(lua.L);
  CHECK(hoist::lua::is_null(lua.L, -1));
  CHECK(hoist::lua::to_json(lua.L, -1).is_null());
  hoist::lua::push_null(lua.L);
  CHECK(lua_rawequal(lua.L, -1, -2));  // one sentinel per state
  lua_pop(lua.L, 2);
}

TEST_CASE("to_json names the path of what it cannot encode") {
  Lua lua;
  struct Row {
    const char* code;
    const char* message;
  };
  for (Row row : {Row{"return {a = {b = {1, 2, print}}}", "cannot encode a function at $.a.b[3]"},
                  Row{"local t = {}; t.x = {t}; return t", "cannot encode a table that contains itself (a cycle) at $.x[1]"},
                  Row{"return {n = 0/0}", "cannot encode NaN (JSON has no such number) at $.n"},
                  Row{"return {['a b'] = '\\255'}", "invalid UTF-8 in a string at byte 1 (0xFF) at $[\"a b\"]"}}) {
    CAPTURE(row.code);
    lua.eval(row.code);
    auto e = error_of([&] { hoist::lua::to_json(lua.L, -1); });
    CHECK(e.code() == hoist::Code::invalid_argument);
    CHECK(e.message() == row.message);
    lua_settop(lua.L, 0);
  }
  lua.eval("return {n = 0/0}");
  CHECK(std::isnan(hoist::lua::to_json(lua.L, -1, {.allow_nonfinite = true})["n"].get<double>()));
}

TEST_CASE("JSON nested deeper than 1000 levels is refused before parsing, naming the place") {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto e = error_of([&] { hoist::parse_json(deep); });
  CHECK(e.code() == hoist::Code::invalid_argument);
  CHECK(std::string(e.message()) == "malformed JSON at line 1, column 1001: nested deeper than 1000 levels");
  // brackets inside strings do not count; 1000 levels are fine
  std::string ok = std::string(1000, '[') + "\"[[{{\\\"[\"" + std::string(1000, ']');
  CHECK(hoist::parse_json(ok).is_array());
  CHECK(hoist::json_depth_exceeded("{\"a\": [[1]]}", 2) == 7);
  CHECK(hoist::json_depth_exceeded("{\"a\": [[1]]}", 3) == std::string_view::npos);
}
