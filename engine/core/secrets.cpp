#include <hoist/secrets.hpp>

#include <hoist/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
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

// Percent-encoding as the usual encoders write it: upper- or lower-case hex, a space as
// "%20" or "+" (forms), "/" escaped or kept (paths, Python's quote()).
std::string url_encode(std::string_view in, bool lower, bool plus, bool keep_slash) {
  const char* hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += char(c);
    } else if (plus && c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
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

// The inside of a JSON string holding the value. style 0: the short escapes (\" \\ \n) and
// \u00xx for other control bytes; 1 and 2: every character JSON writers may escape
// (quote, backslash, control, <>&', non-ASCII bytes kept) as \u00xx in lower / upper case.
std::string json_escape(std::string_view in, int style) {
  const char* hex = style == 2 ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (unsigned char c : in) {
    bool special = c == '"' || c == '\\' || c < 0x20;
    bool html = c == '<' || c == '>' || c == '&' || c == '\'';
    if (style == 0 && special) {
      switch (c) {
        case '"': out += "\\\""; continue;
        case '\\': out += "\\\\"; continue;
        case '\n': out += "\\n"; continue;
        case '\r': out += "\\r"; continue;
        case '\t': out += "\\t"; continue;
        case '\b': out += "\\b"; continue;
        case '\f': out += "\\f"; continue;
        default: break;
      }
    }
    if (special || (style != 0 && html)) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out;
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
  // Every form is computed once here, so scrubbing stays one pass over the text.
  std::vector<std::string> forms{std::string(value)};
  for (bool lower : {false, true})
    for (bool plus : {false, true})
      for (bool keep_slash : {false, true}) forms.push_back(url_encode(value, lower, plus, keep_slash));
  forms.push_back(base64(value, false, true));
  forms.push_back(base64(value, true, true));
  add_shifted_base64(value, forms);
  for (bool lower : {false, true}) forms.push_back(hex_encode(value, lower));
  for (int style : {0, 1, 2}) forms.push_back(json_escape(value, style));
  try {  // non-ASCII text as \u code points, as JSON writers with ensure_ascii do
    std::string ascii = nlohmann::json(std::string(value)).dump(-1, ' ', true);
    forms.push_back(ascii.substr(1, ascii.size() - 2));
  } catch (const nlohmann::json::exception&) {  // not UTF-8: no such form
  }
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
  std::sort(patterns_.begin(), patterns_.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  for (auto& bucket : by_first_) bucket.clear();
  for (std::size_t i = 0; i < patterns_.size(); ++i)
    by_first_[static_cast<unsigned char>(patterns_[i][0])].push_back(i);
}

bool Secrets::empty() const {
  std::lock_guard lock(mu_);
  return patterns_.empty();
}

std::size_t Secrets::longest() const {
  std::lock_guard lock(mu_);
  return patterns_.empty() ? 0 : patterns_.front().size();
}

std::vector<std::string> Secrets::values() const {
  std::lock_guard lock(mu_);
  return raw_;
}

// One pass, leftmost match first, the longest pattern at a position winning: only the
// patterns that start with the byte at hand are compared.
std::string Secrets::scrub(std::string_view text) const {
  std::lock_guard lock(mu_);
  if (patterns_.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t matched = 0;
    for (std::size_t i : by_first_[static_cast<unsigned char>(text[pos])]) {
      const std::string& p = patterns_[i];
      if (text.compare(pos, p.size(), p) == 0) {
        matched = p.size();
        break;
      }
    }
    if (matched) {
      out += kMask;
      pos += matched;
    } else {
      out += text[pos++];
    }
  }
  return out;
}

std::string StreamScrubber::feed(std::string_view chunk) {
  pending_.append(chunk);
  size_t keep = secrets_ ? secrets_->longest() : 0;
  if (keep == 0) return std::exchange(pending_, {});
  std::string scrubbed = secrets_->scrub(pending_);
  // Hold back a tail that could be the start of a secret completed by the next write.
  size_t hold = std::min(scrubbed.size(), keep - 1);
  std::string ready = scrubbed.substr(0, scrubbed.size() - hold);
  pending_ = scrubbed.substr(scrubbed.size() - hold);
  return ready;
}

std::string StreamScrubber::finish() {
  std::string out = secrets_ ? secrets_->scrub(pending_) : pending_;
  pending_.clear();
  return out;
}

}  // namespace hoist
