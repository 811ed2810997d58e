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

  // Registers a value and the forms it takes on its way out: base64 (std and url
  // alphabets, padded or not, at any alignment), URL-encoded (upper/lower-case hex, "+" or
  // "%20" for a space, "/" escaped or kept), hex (either case) and JSON-escaped (short
  // escapes, or \u00xx in either case). A value shorter than kMinLength is ignored, or with
  // `required` (hoist.secret, Engine::add_secret) refused with invalid_argument; "" is
  // always ignored.
  void add(std::string_view value, bool required = false);
  bool empty() const;
  std::string scrub(std::string_view text) const;
  // Longest registered pattern: a stream scrubber must hold back this many bytes - 1.
  std::size_t longest() const;
  std::vector<std::string> values() const;  // the raw secrets (for ::add-mask::)
  // Called with each newly registered value (GitHub Actions needs `::add-mask::`).
  void on_add(std::function<void(const std::string&)> fn);

 private:
  void add_locked(std::string_view value);
  mutable std::mutex mu_;
  std::vector<std::string> raw_;
  std::vector<std::string> patterns_;  // sorted longest first
  std::array<std::vector<std::size_t>, 256> by_first_;  // indexes into patterns_ by first byte
  std::function<void(const std::string&)> on_add_;
};

// Scrubs a byte stream that arrives in arbitrary pieces (a child's stdout): a secret split
// across two writes is still caught. feed() returns what is safe to emit now.
class StreamScrubber {
 public:
  explicit StreamScrubber(std::shared_ptr<const Secrets> secrets) : secrets_(std::move(secrets)) {}
  std::string feed(std::string_view chunk);
  std::string finish();

 private:
  std::shared_ptr<const Secrets> secrets_;
  std::string pending_;
};

}  // namespace hoist
