#pragma once
// Registered secret values, and scrubbing of every byte hoist writes.
#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace hoist {

class Secrets {
 public:
  static constexpr std::string_view kMask = "***";

  // Shorter values cannot be masked: they would mask everything.
  static constexpr std::size_t kMinLength = 4;

  // Registers a value. Masked from then on: the value; each line of 8 bytes or more of a
  // multi-line value; base64 (std and url alphabets, padded or not, at any alignment); hex
  // (either case); URL-encoded (any byte as %XX in either case, "+" for a space, other bytes
  // as they are); JSON-escaped (any short escape, \/ included, any character as \uXXXX in
  // either case, surrogate pairs beyond U+FFFF, other bytes as they are). A value shorter
  // than kMinLength is ignored, or with `required` (hoist.secret, Engine::add_secret) refused
  // with invalid_argument; "" is always ignored.
  void add(std::string_view value, bool required = false);
  bool empty() const;
  // `text` with the union of every range where a form of a secret occurs replaced by kMask
  // (one kMask per run of overlapping ranges; ranges that only touch get one each).
  std::string scrub(std::string_view text) const;
  std::vector<std::string> values() const;  // the raw secrets (for ::add-mask::)
  // Called with each newly registered value (GitHub Actions needs `::add-mask::`).
  void on_add(std::function<void(const std::string&)> fn);

 private:
  friend class StreamScrubber;
  struct Scan {
    std::size_t stop;     // text[0, stop) was written to the output
    std::size_t covered;  // the last mask written covers text up to here (0 when none)
  };
  void add_locked(std::string_view value);
  // How far the longest form starting at text[pos] reaches (pos when none); with `partial`,
  // npos when text ends inside what may still become a form.
  std::size_t reach(std::string_view text, std::size_t pos, bool partial) const;
  // Writes text scrubbed to `out`; text[0, covered) is already under a mask written earlier.
  // With `partial` (more text follows), stops where a form may be cut by the end of text.
  Scan scan(std::string_view text, std::size_t covered, bool partial, std::string& out) const;

  mutable std::mutex mu_;
  std::vector<std::string> raw_;
  std::vector<std::string> patterns_;                   // literal forms, longest first
  std::array<std::vector<std::size_t>, 256> by_first_;  // indexes into patterns_ by first byte
  std::array<std::vector<std::size_t>, 256> by_value_first_;  // indexes into raw_ by first byte
  std::array<bool, 256> escaped_start_{};  // whether a URL or JSON form may start with this byte
  std::array<bool, 256> may_start_{};      // whether any form may
  std::function<void(const std::string&)> on_add_;
};

// Scrubs a byte stream that arrives in arbitrary pieces (a child's stdout): a secret split
// across two writes is still caught, and the result is what Secrets::scrub gives for the
// whole stream. feed() returns what is safe to emit now: all but a tail that may be the
// start of a form.
class StreamScrubber {
 public:
  explicit StreamScrubber(std::shared_ptr<const Secrets> secrets) : secrets_(std::move(secrets)) {}
  std::string feed(std::string_view chunk);
  std::string finish();

 private:
  std::shared_ptr<const Secrets> secrets_;
  std::string pending_;
  std::size_t covered_ = 0;  // bytes at the start of pending_ under a mask already emitted
};

}  // namespace hoist
