#pragma once
// Structured errors: a few stable codes, the remote's own words kept in `details`.
#include <nlohmann/json.hpp>

#include <exception>
#include <optional>
#include <string>
#include <string_view>

namespace hoist {

enum class Code {
  timeout,
  cancelled,
  not_found,
  conflict,
  unauthorized,
  forbidden,
  throttled,
  unavailable,
  invalid_argument,
  policy_violation,
  rollout_failed,
  tool_missing,
  tool_failed,
  internal,
};

std::string_view to_string(Code code);
std::optional<Code> code_from_string(std::string_view name);
// timeout, throttled and unavailable are worth another try; the rest are not.
bool default_retryable(Code code);

class Error : public std::exception {
 public:
  Error(Code code, std::string message, nlohmann::json details = nlohmann::json::object());
  Error(Code code, std::string message, bool retryable, nlohmann::json details);

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retryable() const { return retryable_; }
  const nlohmann::json& details() const { return details_; }
  nlohmann::json& details() { return details_; }
  const char* what() const noexcept override { return what_.c_str(); }

  nlohmann::json to_json() const;

 private:
  Code code_;
  std::string message_;
  bool retryable_;
  nlohmann::json details_;
  std::string what_;
};

// The Error a failed coroutine left in `e` (not null): the Error itself, or internal with
// what() for another std::exception. Anything else is thrown again.
Error error_of(std::exception_ptr e);

// Maps an HTTP status to the error code a caller should see.
Code code_for_http_status(long status);

}  // namespace hoist
