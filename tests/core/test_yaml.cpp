// The YAML writer (engine/core/yaml.cpp dump_yaml): every string the reader can return is
// written so that it reads back as the same bytes. The rows are the YAML round-trip fuzzer's
// findings of 2026-12-01 (fuzz/corpus/yaml), by kind.
#include <doctest/doctest.h>
#include <hoist/error.hpp>
#include <hoist/yaml.hpp>

#include <string>

using nlohmann::json;

namespace {

// `s` as a value, a list item and a key: written, read back, the same.
void round_trips(const std::string& s) {
  json doc = {{"v", s}, {"list", {s, {{"k", s}}}}, {s, 1}};
  std::string text = hoist::dump_yaml(doc);
  CAPTURE(text);
  auto back = hoist::parse_yaml_all(text);
  REQUIRE(back.size() == 1);
  CHECK(back[0] == doc);
  // and alone, as the whole document
  auto alone = hoist::parse_yaml_all(hoist::dump_yaml(s));
  REQUIRE(alone.size() == 1);
  CHECK(alone[0] == s);
}

}  // namespace

TEST_CASE("strings holding characters outside YAML's printable set round-trip") {
  const std::pair<const char*, std::string> rows[] = {
      {"C0 controls", std::string("a\x01\x02\x08\x0b\x0c\x1b\x1fz", 10)},
      {"NUL", std::string("nul\0byte", 8)},
      {"C0 controls next to non-ASCII text", "\x01\xC3\xA9t\xC3\xA9\x02"},
      {"DEL", "del\x7f"},
      {"U+FFFF (a noncharacter) written as U+FFFD before", "x\xEF\xBF\xBFy"},
      {"U+FFFE", "\xEF\xBF\xBE"},
      {"U+FDD0", "\xEF\xB7\x90-"},
      {"U+1FFFF", "\xF0\x9F\xBF\xBF"},
      {"C1 control NEL, a line break to YAML 1.1", "a\xC2\x85" "b"},
      {"U+2028 and U+2029", "a\xE2\x80\xA8" "b\xE2\x80\xA9"},
      {"byte order mark", "\xEF\xBB\xBF" "bom"},
      {"no-break space first", "\xC2\xA0nbsp"},
      {"CR and LF", "a\r\nb\n"},
      {"control in a text of lines", "line\x01\nnext\n"},
      {"noncharacter in a text of lines", "line\xEF\xBF\xBF\nnext\n"},
      {"tab leading a text of lines", "\tx\ny\n"},
      {"document marker in a text of lines", "---\n...\n"},
      {"document markers", "--- x"},
      {"emoji", "\xF0\x9F\x98\x80"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.first);
    round_trips(row.second);
  }
}

TEST_CASE("the writer escapes what is not printable and keeps the rest as it is") {
  CHECK(hoist::dump_yaml(json{{"a", "x\xEF\xBF\xBFy"}}) == "a: \"x\\uffffy\"\n");
  CHECK(hoist::dump_yaml(json{{"a", std::string("\x01\x7f\xC2\x85\0", 5)}}) == "a: \"\\x01\\x7f\\x85\\x00\"\n");
  CHECK(hoist::dump_yaml(json{{"a", "\xF0\x9F\xBF\xBF"}}) == "a: \"\\U0001ffff\"\n");
  CHECK(hoist::dump_yaml(json{{"a", "caf\xC3\xA9 \xF0\x9F\x98\x80"}}) == "a: caf\xC3\xA9 \xF0\x9F\x98\x80\n");
  CHECK(hoist::dump_yaml(json{{"a", "line1\nline2\n"}}) == "a: |\n  line1\n  line2\n");
  CHECK(hoist::dump_yaml(json::parse(R"({"a": [{"b": [1, []]}, [1]]})")) ==
        "a:\n  - b:\n      - 1\n      - []\n  -\n    - 1\n");
}

TEST_CASE("a key written longer than 1024 bytes is an explicit key") {
  std::string k(1100, 'k');
  json doc = {{k, {1, 2}}, {"b", 1}};
  std::string text = hoist::dump_yaml(doc);
  CHECK(text.starts_with("b: 1\n? " + k + "\n:\n  - 1\n"));
  CHECK(hoist::parse_yaml_all(text).at(0) == doc);
  // what counts is the key as written: 300 NULs are 1202 bytes as "\x00..."
  json nuls = {{std::string(300, '\0'), 1}};
  CHECK(hoist::dump_yaml(nuls).starts_with("? \"\\x00"));
  CHECK(hoist::parse_yaml_all(hoist::dump_yaml(nuls)).at(0) == nuls);
}

TEST_CASE("a string that is not UTF-8 cannot be written, and the error names the byte") {
  for (std::string bad : {"ab\xff", "ab\xC3", "ab\xC0\xAF", "ab\xED\xA0\x80"}) {
    CAPTURE(bad);
    try {
      hoist::dump_yaml(json{{"k", bad}});
      FAIL("no error");
    } catch (const hoist::Error& e) {
      CHECK(e.code() == hoist::Code::invalid_argument);
      CHECK(std::string(e.message()).starts_with("cannot write YAML: invalid UTF-8 in a string at byte 3 (0x"));
    }
  }
}

TEST_CASE("nesting up to the YAML limit round-trips; one level more is refused both ways") {
  json deep = json::array();
  json* at = &deep;
  for (int i = 0; i < (hoist::kMaxYamlDepth - 1) / 2; ++i) {  // 1 + 2 per step: 399 levels
    at->push_back(json::object({{"k", json::array()}}));
    at = &(*at)[0]["k"];
  }
  at->push_back("leaf");
  auto back = hoist::parse_yaml_all(hoist::dump_yaml(deep));
  REQUIRE(back.size() == 1);
  CHECK(back[0] == deep);
  // 401 levels: an empty [] innermost counts, as decode counts it
  json over = json::array();
  at = &over;
  for (int i = 1; i < hoist::kMaxYamlDepth; ++i) {
    at->push_back(json::array());
    at = &(*at)[0];
  }
  at->push_back(json::array());
  CHECK_THROWS_WITH(hoist::dump_yaml(over), "invalid_argument: cannot write YAML: nesting deeper than 400 levels");
  CHECK_THROWS_WITH(hoist::parse_yaml_all(std::string(401, '[') + std::string(401, ']')),
                    "invalid_argument: malformed YAML at line 1, column 401: nesting deeper than 400 levels");
}
