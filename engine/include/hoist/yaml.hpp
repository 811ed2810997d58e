#pragma once
// YAML text <-> nlohmann::json, with yaml-cpp underneath.
//
// Reading: anchors and aliases are resolved, `<<` merge keys applied, and plain (unquoted)
// scalars typed by the YAML 1.2 core schema: null/Null/NULL/~/empty, true/false (three
// spellings each), decimal/0o octal/0x hex integers, floats with .inf/.nan; anything else,
// and every quoted or block scalar, is a string. Mapping keys are kept as their text.
// A duplicate mapping key is an error (as in kubectl's strict decoding). A stream may expand
// to at most 1,000,000 nodes + its size and 64 MiB + its size of text (alias copies
// included). Malformed text raises invalid_argument naming the line and column (details
// {line, column, reason}).
//
// Writing: block style, keys sorted (nlohmann::json objects are ordered maps), and every
// string that a YAML 1.2 or 1.1 reader would take for another type is double-quoted
// ("1.10", "true", "yes", "null", "0755", ""), so Kubernetes' YAML 1.1 parser reads it back
// as a string too. Every string parse_yaml_all can return is written so that it reads back
// as the same bytes: one holding a character outside YAML's printable set (C0 controls but
// tab and newline, DEL, C1 controls, the BOM, U+2028/U+2029, the noncharacters such as
// U+FFFE and U+FFFF) is double-quoted with that character escaped (\xXX, \uXXXX,
// \UXXXXXXXX). A string that is not UTF-8 cannot be written (YAML has no escape for a raw
// byte): invalid_argument naming the byte. A key whose written form is longer than 1024 bytes is explicit ("? ").
#include <hoist/error.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace hoist {

// How deep YAML may nest, read or written: below the 1000 of JSON because yaml-cpp's parser
// stops at about 500 levels.
constexpr int kMaxYamlDepth = 400;

// Every document of a YAML stream, in order. An empty document (e.g. after a trailing
// "---") is null; an empty stream has no documents.
std::vector<nlohmann::json> parse_yaml_all(std::string_view text);

// One document as block-style YAML ending in "\n" (no "---" marker).
std::string dump_yaml(const nlohmann::json& value);

// How a plain (unquoted) scalar reads under the YAML 1.2 core schema.
enum class YamlPlain { null, boolean, integer, floating, string };
YamlPlain yaml_plain_kind(std::string_view text);

}  // namespace hoist
