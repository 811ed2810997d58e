#include <hoist/json.hpp>

#include <algorithm>

namespace hoist {

TextPosition position_in(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  TextPosition pos;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++pos.line;
      line_start = i + 1;
    }
  }
  pos.column = static_cast<int>(offset - line_start) + 1;
  return pos;
}

std::string valid_utf8(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return std::string(text);
  // nlohmann replaces bad bytes while writing; reading the result back undoes the escaping
  auto quoted = nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

namespace {

// nlohmann's what() is "[json.exception.parse_error.101] parse error at line 1, column 2: why";
// keep only "why": we compute line and column ourselves (nlohmann counts a newline that
// ends a string as the start of the next line).
std::string reason_of(const std::string& what) {
  auto column = what.find("column ");
  auto colon = what.find(": ", column == std::string::npos ? 0 : column);
  if (colon != std::string::npos) return valid_utf8(what.substr(colon + 2));
  auto bracket = what.find("] ");
  return valid_utf8(bracket == std::string::npos ? what : what.substr(bracket + 2));
}

Error malformed(std::string_view text, std::size_t offset, const std::string& reason) {
  TextPosition pos = position_in(text, offset);
  return Error(Code::invalid_argument,
               "malformed JSON at line " + std::to_string(pos.line) + ", column " +
                   std::to_string(pos.column) + ": " + reason,
               {{"line", pos.line}, {"column", pos.column}, {"offset", offset}, {"reason", reason}});
}

}  // namespace

std::size_t json_depth_exceeded(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

nlohmann::json parse_json(std::string_view text) {
  if (auto at = json_depth_exceeded(text); at != std::string_view::npos)
    throw malformed(text, at, "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte counts the characters read, the bad one included
    throw malformed(text, e.byte == 0 ? 0 : e.byte - 1, reason_of(e.what()));
  } catch (const nlohmann::json::exception& e) {
    // out_of_range.406, "number overflow parsing '1e400'": nlohmann gives no position, so
    // look for the quoted number in the text
    std::string reason = reason_of(e.what());
    auto open = reason.find('\''), close = reason.rfind('\'');
    std::size_t offset = 0;
    if (open != std::string::npos && close > open)
      offset = std::min(text.find(reason.substr(open + 1, close - open - 1)), text.size());
    throw malformed(text, offset, reason);
  }
}

nlohmann::json parse_json_or_discarded(std::string_view text) {
  if (json_depth_exceeded(text) != std::string_view::npos) return nlohmann::json::value_t::discarded;
  return nlohmann::json::parse(text, nullptr, false);
}

CodePoint utf8_at(std::string_view text, std::size_t at) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[at + k]); };
  unsigned char c = byte(0);
  if (c < 0x80) return {c, 1};
  std::size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (length == 0 || c > 0xF4 || at + length > text.size()) return {};
  std::uint32_t cp = c & (0x7F >> length);
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return {};
    cp = cp << 6 | (byte(k) & 0x3F);
  }
  static constexpr std::uint32_t kLeast[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kLeast[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {};
  return {cp, length};
}

}  // namespace hoist
