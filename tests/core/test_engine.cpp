#include <doctest/doctest.h>
#include <hoist/engine.hpp>

#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <chrono>
#include <thread>

namespace {
hoist::EngineOptions quiet() {
  hoist::EngineOptions o;
  o.log_format = "none";
  o.write_run_dir = false;
  o.lua_path = HOIST_SOURCE_DIR;
  return o;
}
}  // namespace

TEST_CASE("a script returns a value as JSON") {
  hoist::Engine engine(quiet());
  auto r = engine.run_string("return {a = 1, b = {'x', 'y'}}", "t");
  REQUIRE(r.ok);
  CHECK(r.value == nlohmann::json{{"a", 1}, {"b", {"x", "y"}}});
}

TEST_CASE("script errors carry code, message and the script's line") {
  hoist::Engine engine(quiet());
  auto r = engine.run_string("local x = 1\nhoist.error{code='not_found', message='no such app'}", "inline");
  REQUIRE_FALSE(r.ok);
  CHECK(r.error->code() == hoist::Code::not_found);
  CHECK(r.error->message() == "no such app");
  CHECK(r.where == "inline:2");
  CHECK(r.exit_code == 1);
}

TEST_CASE("a plain Lua error becomes internal with its location") {
  hoist::Engine engine(quiet());
  auto r = engine.run_string("\n\nerror('boom')", "inline");
  REQUIRE_FALSE(r.ok);
  CHECK(r.error->code() == hoist::Code::internal);
  CHECK(r.where == "inline:3");
}

TEST_CASE("a syntax error names the file and line") {
  hoist::Engine engine(quiet());
  auto r = engine.run_string("local = 1", "bad.lua");
  REQUIRE_FALSE(r.ok);
  CHECK(r.error->code() == hoist::Code::invalid_argument);
  CHECK(r.error->message().find("bad.lua:1") != std::string::npos);
}

TEST_CASE("a missing script file is a usage error") {
  hoist::Engine engine(quiet());
  auto r = engine.run_file("/nonexistent/x.lua");
  REQUIRE_FALSE(r.ok);
  CHECK(r.exit_code == 2);
  CHECK(r.error->message().find("/nonexistent/x.lua") != std::string::npos);
}

TEST_CASE("host functions are callable from Lua and their errors are structured") {
  hoist::Engine engine(quiet());
  engine.register_function("myapp", "greet", [](const nlohmann::json& a) {
    return nlohmann::json{{"hello", a.at("name")}};
  });
  engine.register_function("myapp", "fail", [](const nlohmann::json&) -> nlohmann::json {
    throw hoist::Error(hoist::Code::conflict, "already there");
  });
  auto r = engine.run_string("return require('myapp').greet{name='x'}.hello", "t");
  REQUIRE(r.ok);
  CHECK(r.value == "x");
  r = engine.run_string("local ok, e = pcall(require('myapp').fail)\nreturn e.code", "t");
  CHECK(r.value == "conflict");
}

TEST_CASE("events reach the embedding callback, scrubbed") {
  std::vector<hoist::Event> seen;
  auto o = quiet();
  o.on_event = [&](const hoist::Event& e) { seen.push_back(e); };
  hoist::Engine engine(o);
  engine.add_secret("s3cr3t-value");
  auto r = engine.run_string("hoist.log.info('token is s3cr3t-value', {k = 's3cr3t-value'})", "t");
  REQUIRE(r.ok);
  bool found = false;
  for (auto& e : seen)
    if (e.kind == "log") {
      found = true;
      CHECK(e.message == "token is ***");
      CHECK(e.fields["k"] == "***");
    }
  CHECK(found);
}

TEST_CASE("cancel from another thread stops a sleeping script") {
  hoist::Engine engine(quiet());
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    engine.cancel();
  });
  auto start = std::chrono::steady_clock::now();
  auto r = engine.run_string("hoist.sleep(30)", "t");
  t.join();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  REQUIRE_FALSE(r.ok);
  CHECK(r.error->code() == hoist::Code::cancelled);
  CHECK(r.exit_code == 130);
}

TEST_CASE("each run on one engine sees its own arguments") {
  hoist::Engine engine(quiet());
  auto a = engine.run_string("return hoist.args.name", "t", {{"name", "first"}});
  auto b = engine.run_string("return hoist.args.name", "t", {{"name", "second"}});
  CHECK(a.value == "first");
  CHECK(b.value == "second");
}

// ---------------------------------------------------------------- results that cannot be pushed
namespace {
nlohmann::json nested(int depth) {
  nlohmann::json v = 1;
  for (int i = 0; i < depth; ++i) {
    nlohmann::json a = nlohmann::json::array();
    a.push_back(std::move(v));
    v = std::move(a);
  }
  return v;
}

// ok, value = deep.wait(depth): a waiting primitive whose result nests `depth` levels
int l_deep_wait(lua_State* L) {
  int depth = static_cast<int>(luaL_checkinteger(L, 1));
  return hoist::lua::suspend(L, [depth](hoist::lua::Resumer r) -> hoist::OperationPtr {
    auto value = std::make_shared<nlohmann::json>(nested(depth));
    r.ok([value](lua_State* co) {
      hoist::lua::push_json(co, *value);
      return 1;
    });
    return nullptr;
  });
}

int open_deep(lua_State* L) {
  lua_newtable(L);
  lua_pushcfunction(L, hoist::lua::protect<l_deep_wait>);
  lua_setfield(L, -2, "wait");
  return 1;
}
}  // namespace

TEST_CASE("a result too deep to push fails the wait as a catchable error; compensations can run") {
  hoist::Engine engine(quiet());
  engine.register_lua_module("deep", open_deep);
  hoist::RunResult r;
  REQUIRE_NOTHROW(r = engine.run_string(R"(
    local deep = require "deep"
    local function wait(n)
      local ok, v = deep.wait(n)
      if not ok then error(v, 0) end
      return v
    end
    local small = wait(3)
    local ok, e = pcall(wait, 1500)
    return { small = small[1][1][1], ok = ok, code = e.code, message = e.message, after = wait(2)[1][1] }
  )", "deep"));
  REQUIRE(r.ok);
  CHECK(r.value["small"] == 1);
  CHECK(r.value["ok"] == false);
  CHECK(r.value["code"] == "invalid_argument");
  CHECK(r.value["message"].get<std::string>().find("deeper than 1000") != std::string::npos);
  CHECK(r.value["after"] == 1);
}
