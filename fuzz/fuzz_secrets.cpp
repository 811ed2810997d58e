// The secret scrubber. Property: for random secrets and random output around them, no
// registered secret appears in the scrubbed output in any form hoist promises to mask, whether
// the output is scrubbed whole (Secrets::scrub) or as a stream cut at random points
// (StreamScrubber); and the stream gives what the whole gives.
//
// The forms below are this file's own oracle, written from the promise (docs/core.md), not
// from secrets.cpp: raw, URL-encoded (upper- and lower-case hex, `+` for space, `/` kept),
// base64 (both alphabets, any alignment), each line of a multi-line secret, JSON-escaped, hex;
// and a URL- or JSON-encoded form with each character's escape picked by the input.
#include "fuzz/fuzz.hpp"

#include <hoist/secrets.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

using Forms = std::vector<std::string>;

std::string base64(std::string_view in, bool url) {
  const char* abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t bits = 0;
  int n = 0;
  for (unsigned char c : in) {
    bits = bits << 8 | c;
    n += 8;
    while (n >= 6) out += abc[(bits >> (n -= 6)) & 63];
  }
  if (n > 0) out += abc[(bits << (6 - n)) & 63];
  while (out.size() % 4) out += '=';
  return out;
}

// The base64 characters that depend only on the secret's bytes when it starts `shift` bytes
// into the encoded text (an "user:secret" auth header): 6-bit groups wholly inside it.
void base64_aligned(std::string_view s, Forms& out) {
  for (std::size_t shift = 0; shift < 3; ++shift) {
    std::string padded(shift, '\0');
    padded.append(s);
    for (bool url : {false, true}) {
      std::string enc = base64(padded, url);
      std::size_t first = (8 * shift + 5) / 6, end = 8 * padded.size() / 6;
      if (end > first) out.push_back(enc.substr(first, end - first));
    }
  }
}

std::string url_encode(std::string_view s, bool lower_hex, bool plus_space, bool keep_slash) {
  const char* hex = lower_hex ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else if (plus_space && c == ' ') {
      out += '+';
    } else {
      out += {'%', hex[c >> 4], hex[c & 15]};
    }
  }
  return out;
}

std::string hex(std::string_view s, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += {digits[c >> 4], digits[c & 15]};
  return out;
}

// JSON string escaping as encoders write it: \" \\ and \u00XX for control bytes.
std::string json_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += {'\\', static_cast<char>(c)};
    } else if (c < 0x20) {
      out += {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The code point of the UTF-8 sequence at s[i] and its length, or length 0 when s[i] does
// not start one (a byte JSON can only carry as it is).
std::pair<std::uint32_t, std::size_t> utf8_at(std::string_view s, std::size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return {c, 1};
  std::size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return {0, 0};
  std::uint32_t cp = c & (0xFF >> (n + 1));
  for (std::size_t k = 1; k < n; ++k) {
    unsigned char t = s[i + k];
    if ((t & 0xC0) != 0x80) return {0, 0};
    cp = cp << 6 | (t & 0x3F);
  }
  const std::uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return {0, 0};
  return {cp, n};
}

std::string u_escape(std::uint32_t unit, bool upper) {
  const char* d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  return {'\\', 'u', d[unit >> 12 & 15], d[unit >> 8 & 15], d[unit >> 4 & 15], d[unit & 15]};
}

using Pick = std::function<std::size_t(const std::vector<std::string>& ways)>;

// `s` inside a JSON string, each character written in the way `pick` chooses among those
// that JSON allows, in this order: as it is (not '"', '\\' or a control byte), its short
// escape (\" \\ \/ \b \f \n \r \t), \u in lower-case hex, \u in upper-case hex (a code point
// beyond U+FFFF as a surrogate pair). A byte that is not UTF-8 has one way: as it is.
std::string json_form(std::string_view s, const Pick& pick) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    auto [cp, n] = utf8_at(s, i);
    if (n == 0) {
      out += s[i++];
      continue;
    }
    std::vector<std::string> ways;
    if (cp >= 0x20 && cp != '"' && cp != '\\') ways.emplace_back(s.substr(i, n));
    const char* shorts = "\"\\/\b\f\n\r\t";
    const char* letters = "\"\\/bfnrt";
    if (cp < 0x80 && cp != 0 && std::strchr(shorts, static_cast<int>(cp)))
      ways.push_back({'\\', letters[std::strchr(shorts, static_cast<int>(cp)) - shorts]});
    for (bool upper : {false, true}) {
      if (cp < 0x10000) {
        ways.push_back(u_escape(cp, upper));
      } else {
        std::uint32_t v = cp - 0x10000;
        ways.push_back(u_escape(0xD800 + (v >> 10), upper) + u_escape(0xDC00 + (v & 0x3FF), upper));
      }
    }
    out += ways[pick(ways) % ways.size()];
    i += n;
  }
  return out;
}

// `s` URL-encoded, each byte in the way `pick` chooses among: as it is (unreserved
// characters and '/'), "+" (a space), %xx, %XX.
std::string url_form(std::string_view s, const Pick& pick) {
  std::string out;
  for (unsigned char c : s) {
    std::vector<std::string> ways;
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') ways.emplace_back(1, c);
    if (c == ' ') ways.emplace_back("+");
    for (const char* d : {"0123456789abcdef", "0123456789ABCDEF"}) ways.push_back({'%', d[c >> 4], d[c & 15]});
    out += ways[pick(ways) % ways.size()];
  }
  return out;
}

// Each line of a multi-line secret (a PEM key, echoed line by line), when long enough to be
// worth masking (8 bytes) and not a "-----BEGIN" marker line.
void lines(std::string_view s, Forms& out) {
  if (s.find('\n') == std::string_view::npos) return;
  for (std::size_t start = 0; start < s.size();) {
    std::size_t end = std::min(s.find('\n', start), s.size());
    std::string_view line = s.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() >= 8 && !line.starts_with("-----")) out.emplace_back(line);
    start = end + 1;
  }
}

// Every form of `s` that must not survive scrubbing.
Forms forms_of(const std::string& s) {
  Forms f{s, url_encode(s, false, false, false), base64(s, false), base64(s, true)};
  base64_aligned(s, f);
  lines(s, f);
  f.push_back(url_encode(s, true, false, false));
  f.push_back(url_encode(s, false, true, false));
  f.push_back(url_encode(s, false, false, true));
  f.push_back(json_escape(s));
  f.push_back(hex(s, false));
  f.push_back(hex(s, true));
  std::erase_if(f, [](const std::string& x) { return x.size() < 4; });
  return f;
}

// What must not survive: forms_of, and more JSON forms: the shortest way (\n, '/' as it is),
// every character as \u, a short escape wherever one exists (\/ too). (Kept out of forms_of,
// whose list the input indexes, so that the inputs found before them build the same output.)
Forms checked_forms_of(const std::string& s) {
  Forms f = forms_of(s);
  f.push_back(json_form(s, [](const auto&) { return 0; }));
  f.push_back(json_form(s, [](const auto& ways) { return ways.size() - 2; }));
  f.push_back(json_form(s, [](const auto& ways) {
    auto it = std::find_if(ways.begin(), ways.end(), [](const auto& w) { return w.size() == 2 && w[0] == '\\'; });
    return it == ways.end() ? 0 : static_cast<std::size_t>(it - ways.begin());
  }));
  std::erase_if(f, [](const std::string& x) { return x.size() < 4; });
  return f;
}

// No form of any secret in `output`, nor any of the `picked` forms written into it.
void expect_clean(const std::string& output, const std::vector<std::string>& secrets, const char* how,
                  const Forms& picked) {
  auto fail = [&](const std::string& form, const std::string& of) {
    hoist::fuzz::fail(std::string(how) + " left a form of a secret: '" + form + "' of '" + of +
                      "' in: " + output.substr(0, 400));
  };
  for (const auto& s : secrets)
    for (const auto& form : checked_forms_of(s))
      if (output.find(form) != std::string::npos) fail(form, s);
  for (const auto& form : picked)
    if (output.find(form) != std::string::npos) fail(form, "(picked form)");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  auto secrets = std::make_shared<hoist::Secrets>();
  int count = in.ConsumeIntegralInRange(1, 3);
  for (int i = 0; i < count; ++i) {
    std::string s = in.ConsumeRandomLengthString(48);
    // The mask is "***": a secret holding '*' can be rebuilt from a mask and its neighbours,
    // which is no leak.
    std::erase(s, '*');
    try {
      secrets->add(s);
    } catch (const hoist::Error& e) {
      hoist::fuzz::expect_invalid_argument(e, "Secrets::add");  // too short to mask
    }
  }
  std::vector<std::string> values = secrets->values();
  if (values.empty()) return 0;

  // Output: random text with secrets in random forms, some inside longer base64 text.
  std::string output;
  for (int piece = 0; piece < 8 && in.remaining_bytes() > 0; ++piece) {
    output += in.ConsumeRandomLengthString(24);
    const std::string& s = values[in.ConsumeIntegralInRange<std::size_t>(0, values.size() - 1)];
    Forms f = forms_of(s);
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0: output += f[in.ConsumeIntegralInRange<std::size_t>(0, f.size() - 1)]; break;
      case 1: {  // "user:secret" and the like, base64-encoded whole
        std::string around = in.ConsumeRandomLengthString(6);
        output += base64(around + s + in.ConsumeRandomLengthString(6), in.ConsumeBool());
        break;
      }
      default: output += s; break;
    }
  }
  // A URL- or JSON-encoded form with each character's escape picked by the input. (After
  // the pieces, so that the inputs found before it came still build the same pieces.)
  Forms picked;
  for (int k = 0; k < 2 && in.remaining_bytes() > 0; ++k) {
    const std::string& s = values[in.ConsumeIntegralInRange<std::size_t>(0, values.size() - 1)];
    Pick pick = [&in](const std::vector<std::string>& ways) {
      return in.ConsumeIntegralInRange<std::size_t>(0, ways.size() - 1);
    };
    picked.push_back(in.ConsumeBool() ? json_form(s, pick) : url_form(s, pick));
    output += in.ConsumeRandomLengthString(8) + picked.back();
  }
  output += in.ConsumeRemainingBytesAsString();
  const std::string scrubbed = secrets->scrub(output);
  expect_clean(scrubbed, values, "Secrets::scrub", picked);

  // The same output as a child's stdout arriving in pieces.
  hoist::StreamScrubber stream(secrets);
  std::string streamed;
  std::size_t cut_seed = size;
  for (std::size_t at = 0; at < output.size();) {
    cut_seed = cut_seed * 6364136223846793005ULL + 1442695040888963407ULL;  // cuts follow the input
    std::size_t n = std::min(output.size() - at, 1 + (cut_seed >> 33) % 17);
    streamed += stream.feed(std::string_view(output).substr(at, n));
    at += n;
  }
  streamed += stream.finish();
  expect_clean(streamed, values, "StreamScrubber", picked);
  hoist::fuzz::check(streamed == scrubbed, "StreamScrubber wrote '" + streamed.substr(0, 300) +
                                               "' where Secrets::scrub wrote '" + scrubbed.substr(0, 300) + "'");
  return 0;
}
