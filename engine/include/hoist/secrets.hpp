#pragma once
// Registered secret values, and scrubbing of every byte hoist writes.
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

  // Registers a value, its base64 forms (std and url alphabets, padded or not) and its
  // URL-encoded form. Values shorter than 4 bytes are refused (they would mask everything).
  void add(std::string_view value);
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
