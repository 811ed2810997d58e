#pragma once
// JSON text <-> nlohmann::json with errors a person can act on: a malformed document raises
// invalid_argument naming the line and column (details {line, column, offset, reason}).
#include <hoist/error.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace hoist {

struct TextPosition {
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

// Line and column of the byte at `offset` (0-based) in `text`; offset may be text.size().
TextPosition position_in(std::string_view text, std::size_t offset);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD, for messages that quote input.
std::string valid_utf8(std::string_view text);

// Parses one JSON document (RFC 8259; no comments, no trailing commas).
// Throws hoist::Error(invalid_argument) with "at line L, column C" in its message.
nlohmann::json parse_json(std::string_view text);

}  // namespace hoist
