#include <hoist/secrets.hpp>

#include <hoist/error.hpp>
#include <hoist/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <utility>

namespace hoist {
namespace {

std::string base64(std::string_view in, bool url, bool pad) {
  static const char* std_abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  static const char* url_abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const char* abc = url ? url_abc : std_abc;
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {abc[v >> 18 & 63], abc[v >> 12 & 63], abc[v >> 6 & 63], abc[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += {abc[v >> 18 & 63], abc[v >> 12 & 63]};
    if (pad) out += "==";
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {abc[v >> 18 & 63], abc[v >> 12 & 63], abc[v >> 6 & 63]};
    if (pad) out += "=";
  }
  return out;
}

std::string hex_encode(std::string_view in, bool lower) {
  const char* hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

// ---------------------------------------------------------------- escaped forms
// URL and JSON escapes can be mixed freely inside one form (an encoder escapes `/` or not,
// writes `\n` or `\u000a`, upper- or lower-case hex), so these forms are not listed but
// matched: the text is decoded while it is compared with the value, one byte at a time.

// What a form matcher says at a position: how many bytes of text the form spans, kNone, or
// kOpen when the text ends while it still matches (more text may complete it).
constexpr std::size_t kNone = 0;
constexpr std::size_t kOpen = std::string_view::npos;
constexpr int kBad = -1, kShort = -2;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return kBad;
}

// The number written by `n` hex digits (either case) at text[at]: kBad, or kShort when the
// text ends first.
int hex_at(std::string_view text, std::size_t at, int n) {
  int v = 0;
  for (int k = 0; k < n; ++k) {
    if (at + k >= text.size()) return kShort;
    int d = hex_digit(text[at + k]);
    if (d < 0) return kBad;
    v = v * 16 + d;
  }
  return v;
}

// The byte a JSON short escape (the character after the backslash) stands for, or kBad.
int short_escape(char e) {
  switch (e) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return kBad;
  }
}

// `value` URL-encoded at text[pos]: each byte as %XX (either case), a space as "+", or the
// byte itself ("%" only as %25).
std::size_t url_form(std::string_view text, std::size_t pos, std::string_view value) {
  std::size_t i = pos;
  for (unsigned char c : value) {
    if (i == text.size()) return kOpen;
    unsigned char t = text[i];
    if (t == '%') {
      int v = hex_at(text, i + 1, 2);
      if (v == kShort) return kOpen;
      if (v != c) return kNone;
      i += 3;
    } else if (t == c || (t == '+' && c == ' ')) {
      ++i;
    } else {
      return kNone;
    }
  }
  return i - pos;
}

// Whether text[i] is a \uXXXX escape of `unit`; nullopt when the text ends before it says.
std::optional<bool> unit_at(std::string_view text, std::size_t i, std::uint32_t unit) {
  if (i == text.size()) return std::nullopt;
  if (text[i] != '\\') return false;
  if (i + 1 == text.size()) return std::nullopt;
  if (text[i + 1] != 'u') return false;
  int v = hex_at(text, i + 2, 4);
  if (v == kShort) return std::nullopt;
  return v == static_cast<int>(unit);
}

// `value` inside a JSON string at text[pos]: each character as a short escape, as \uXXXX
// (either case; a surrogate pair beyond U+FFFF), or as it is (a backslash only escaped).
std::size_t json_form(std::string_view text, std::size_t pos, std::string_view value) {
  std::size_t i = pos;
  for (std::size_t j = 0; j < value.size();) {
    if (i == text.size()) return kOpen;
    unsigned char c = value[j];
    if (text[i] != '\\') {
      if (static_cast<unsigned char>(text[i]) != c) return kNone;
      ++i, ++j;
      continue;
    }
    if (i + 1 == text.size()) return kOpen;
    if (text[i + 1] != 'u') {
      if (short_escape(text[i + 1]) != c) return kNone;
      i += 2, ++j;
      continue;
    }
    auto [cp, len] = utf8_at(value, j);  // JSON has no \u form for a byte that is not UTF-8
    if (len == 0) return kNone;
    std::uint32_t first = cp < 0x10000 ? cp : 0xD800 + ((cp - 0x10000) >> 10);
    auto ok = unit_at(text, i, first);
    if (!ok) return kOpen;
    if (!*ok) return kNone;
    i += 6;
    if (cp >= 0x10000) {
      ok = unit_at(text, i, 0xDC00 + ((cp - 0x10000) & 0x3FF));
      if (!ok) return kOpen;
      if (!*ok) return kNone;
      i += 6;
    }
    j += len;
  }
  return i - pos;
}

// The first byte of what the JSON escape at text[pos] ('\\') stands for, in UTF-8: kBad, or
// kShort when the text ends first.
int json_first_byte(std::string_view text, std::size_t pos) {
  if (pos + 1 == text.size()) return kShort;
  if (text[pos + 1] != 'u') return short_escape(text[pos + 1]);
  int unit = hex_at(text, pos + 2, 4);
  if (unit < 0x80) return unit;  // kBad and kShort too
  if (unit >= 0xDC00 && unit <= 0xDFFF) return kBad;
  if (unit >= 0xD800) return 0xF0 | ((0x10000 + ((unit - 0xD800) << 10)) >> 18);
  return unit < 0x800 ? 0xC0 | (unit >> 6) : 0xE0 | (unit >> 12);
}

// The base64 of a secret embedded in a longer base64 text (an auth header of
// "user:secret") is aligned differently; the three shifted encodings, trimmed of the
// characters that depend on neighbours, catch those too.
void add_shifted_base64(std::string_view value, std::vector<std::string>& out) {
  for (int shift = 0; shift < 3; ++shift) {
    std::string padded(shift, '\0');
    padded.append(value);
    for (bool url : {false, true}) {
      std::string enc = base64(padded, url, false);
      size_t skip = shift == 0 ? 0 : (shift == 1 ? 2 : 3);
      size_t total_bits = padded.size() * 8;
      size_t stable = total_bits / 6;  // characters fully determined by our bytes
      if (stable <= skip + 3) continue;
      out.push_back(enc.substr(skip, stable - skip));
    }
  }
}

// How far the longest URL or JSON form starting at text[pos] reaches (pos when none; kOpen
// with `partial` when the text ends inside one). The first character is decoded once, and
// only the values starting with what it stands for are tried.
std::size_t escaped_reach(std::string_view text, std::size_t pos, bool partial,
                          const std::array<std::vector<std::size_t>, 256>& by_first,
                          const std::vector<std::string>& values) {
  const unsigned char first = text[pos];
  const char next = pos + 1 < text.size() ? text[pos + 1] : '%';
  std::size_t end = pos;
  bool open = false;
  // `as_is`: text[pos] is the byte itself, not the start of an escape of it
  auto forms = [&](unsigned char byte, bool url, bool json, bool as_is) {
    for (std::size_t i : by_first[byte]) {
      const std::string& v = values[i];
      // most false starts end at the second byte: a byte as it is there can only be v[1]
      if (as_is && next != v[1] && next != '%' && next != '\\' && next != '+') continue;
      for (std::size_t n : {url ? url_form(text, pos, v) : kNone, json ? json_form(text, pos, v) : kNone}) {
        if (n == kOpen) {
          open = true;
        } else {
          end = std::max(end, pos + n);
        }
      }
    }
  };
  if (first == '%' || first == '\\') {
    int byte = first == '%' ? hex_at(text, pos + 1, 2) : json_first_byte(text, pos);
    if (byte == kShort) open = true;
    if (byte >= 0) forms(static_cast<unsigned char>(byte), first == '%', first == '\\', false);
    forms(first, first != '%', first != '\\', true);  // the other encoding takes it as it is
  } else {
    forms(first, true, true, true);
    if (first == '+') forms(' ', true, false, false);
  }
  return open && partial ? kOpen : end;
}

}  // namespace

void Secrets::on_add(std::function<void(const std::string&)> fn) {
  std::lock_guard lock(mu_);
  on_add_ = std::move(fn);
}

void Secrets::add(std::string_view value, bool required) {
  if (value.size() < kMinLength) {
    if (required && !value.empty())
      throw Error(Code::invalid_argument, "a secret must be at least " + std::to_string(kMinLength) +
                                              " bytes long to be masked; this one has " +
                                              std::to_string(value.size()));
    return;
  }
  std::function<void(const std::string&)> notify;
  {
    std::lock_guard lock(mu_);
    if (std::find(raw_.begin(), raw_.end(), value) != raw_.end()) return;
    add_locked(value);
    notify = on_add_;
  }
  if (notify) notify(std::string(value));
}

void Secrets::add_locked(std::string_view value) {
  raw_.emplace_back(value);
  // The literal forms are computed once here; URL and JSON forms are matched (above).
  std::vector<std::string> forms{std::string(value)};
  forms.push_back(base64(value, false, true));
  forms.push_back(base64(value, true, true));
  add_shifted_base64(value, forms);
  for (bool lower : {false, true}) forms.push_back(hex_encode(value, lower));
  // A multi-line secret (a PEM key) is echoed line by line by children: mask each line.
  for (size_t start = 0, end; value.find('\n') != std::string_view::npos && start < value.size(); start = end + 1) {
    end = value.find('\n', start);
    if (end == std::string_view::npos) end = value.size();
    auto line = value.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() >= 8 && line.find("-----") != 0) forms.emplace_back(line);
  }
  for (auto& f : forms)
    if (f.size() >= kMinLength && std::find(patterns_.begin(), patterns_.end(), f) == patterns_.end())
      patterns_.push_back(f);
  std::stable_sort(patterns_.begin(), patterns_.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  for (auto& bucket : by_first_) bucket.clear();
  for (std::size_t i = 0; i < patterns_.size(); ++i)
    by_first_[static_cast<unsigned char>(patterns_[i][0])].push_back(i);
  by_value_first_[static_cast<unsigned char>(value[0])].push_back(raw_.size() - 1);
  for (unsigned b = 0; b < 256; ++b) {
    escaped_start_[b] = !by_value_first_[b].empty() || b == '%' || b == '\\' ||
                        (b == '+' && !by_value_first_[' '].empty());
    may_start_[b] = escaped_start_[b] || !by_first_[b].empty();
  }
}

bool Secrets::empty() const {
  std::lock_guard lock(mu_);
  return patterns_.empty();
}

std::vector<std::string> Secrets::values() const {
  std::lock_guard lock(mu_);
  return raw_;
}

std::size_t Secrets::reach(std::string_view text, std::size_t pos, bool partial) const {
  const unsigned char first = text[pos];
  const std::size_t left = text.size() - pos;
  std::size_t end = pos;
  // longest first: the first literal form that matches is the longest one
  for (std::size_t i : by_first_[first]) {
    const std::string& p = patterns_[i];
    if (p.size() > left) {
      if (partial && text.compare(pos, left, p, 0, left) == 0) return kOpen;
    } else if (text.compare(pos, p.size(), p) == 0) {
      end = pos + p.size();
      break;
    }
  }
  if (!escaped_start_[first]) return end;
  std::size_t escaped = escaped_reach(text, pos, partial, by_value_first_, raw_);
  return escaped == kOpen ? kOpen : std::max(end, escaped);
}

// Every position is tried, inside masked ranges too, so that overlapping occurrences (of one
// secret repeating itself, or of two secrets sharing bytes) are masked as their union.
Secrets::Scan Secrets::scan(std::string_view text, std::size_t covered, bool partial, std::string& out) const {
  std::lock_guard lock(mu_);
  if (patterns_.empty()) {
    out.append(text.substr(std::min(covered, text.size())));
    return {text.size(), 0};
  }
  out.reserve(out.size() + text.size());
  for (std::size_t pos = 0; pos < text.size(); ++pos) {
    std::size_t end = may_start_[static_cast<unsigned char>(text[pos])] ? reach(text, pos, partial) : pos;
    if (end == kOpen) return {pos, covered};
    if (pos < covered) {
      covered = std::max(covered, end);
    } else if (end > pos) {
      out += kMask;
      covered = end;
    } else {
      out += text[pos];
    }
  }
  return {text.size(), covered};
}

std::string Secrets::scrub(std::string_view text) const {
  std::string out;
  scan(text, 0, false, out);
  return out;
}

std::string StreamScrubber::feed(std::string_view chunk) {
  pending_.append(chunk);
  if (!secrets_) return std::exchange(pending_, {});
  std::string out;
  Secrets::Scan s = secrets_->scan(pending_, covered_, true, out);
  pending_.erase(0, s.stop);
  covered_ = s.covered > s.stop ? s.covered - s.stop : 0;
  return out;
}

std::string StreamScrubber::finish() {
  std::string out;
  if (secrets_) {
    secrets_->scan(pending_, covered_, false, out);
  } else {
    out = pending_;
  }
  pending_.clear();
  covered_ = 0;
  return out;
}

}  // namespace hoist
