#pragma once
// JSON text <-> nlohmann::json with errors a person can act on: a malformed document raises
// invalid_argument naming the line and column (details {line, column, offset, reason}).
#include <hoist/error.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
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

// How deep JSON values may nest anywhere in hoist: nlohmann::json copies, compares and
// writes values recursively, so a deeper document from a remote could overflow the stack.
constexpr int kMaxJsonDepth = 1000;

// The offset of the first '[' or '{' that opens a level deeper than max_depth, or npos.
// A linear scan of the text (strings skipped), to run before parsing untrusted input.
std::size_t json_depth_exceeded(std::string_view text, int max_depth = kMaxJsonDepth);

// Parses one JSON document (RFC 8259; no comments, no trailing commas), nested at most
// kMaxJsonDepth levels. Throws hoist::Error(invalid_argument) with "at line L, column C" in
// its message.
nlohmann::json parse_json(std::string_view text);

// For text from a remote or another program that may not be JSON at all: the document, or a
// discarded value (is_discarded()) when it is malformed or nested deeper than kMaxJsonDepth.
// Every engine parse of such text goes through here (or checks json_depth_exceeded first), never
// nlohmann::json::parse on unchecked text.
nlohmann::json parse_json_or_discarded(std::string_view text);

// The code point of the UTF-8 sequence at text[at] and its length in bytes; length 0 when none
// starts there (a stray or truncated byte, an overlong form, a surrogate, beyond U+10FFFF).
struct CodePoint {
  std::uint32_t value = 0;
  std::size_t length = 0;
};
CodePoint utf8_at(std::string_view text, std::size_t at);

}  // namespace hoist
