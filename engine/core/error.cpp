#include <hoist/error.hpp>

#include <array>
#include <utility>

namespace hoist {
namespace {

constexpr std::array<std::pair<Code, std::string_view>, 14> kNames{{
    {Code::timeout, "timeout"},
    {Code::cancelled, "cancelled"},
    {Code::not_found, "not_found"},
    {Code::conflict, "conflict"},
    {Code::unauthorized, "unauthorized"},
    {Code::forbidden, "forbidden"},
    {Code::throttled, "throttled"},
    {Code::unavailable, "unavailable"},
    {Code::invalid_argument, "invalid_argument"},
    {Code::policy_violation, "policy_violation"},
    {Code::rollout_failed, "rollout_failed"},
    {Code::tool_missing, "tool_missing"},
    {Code::tool_failed, "tool_failed"},
    {Code::internal, "internal"},
}};

}  // namespace

std::string_view to_string(Code code) {
  for (auto& [c, name] : kNames)
    if (c == code) return name;
  return "internal";
}

std::optional<Code> code_from_string(std::string_view name) {
  for (auto& [c, n] : kNames)
    if (n == name) return c;
  return std::nullopt;
}

bool default_retryable(Code code) {
  return code == Code::timeout || code == Code::throttled || code == Code::unavailable;
}

Error::Error(Code code, std::string message, nlohmann::json details)
    : Error(code, std::move(message), default_retryable(code), std::move(details)) {}

Error::Error(Code code, std::string message, bool retryable, nlohmann::json details)
    : code_(code), message_(std::move(message)), retryable_(retryable), details_(std::move(details)) {
  if (details_.is_null()) details_ = nlohmann::json::object();
  what_ = std::string(to_string(code_)) + ": " + message_;
}

nlohmann::json Error::to_json() const {
  return {{"code", to_string(code_)}, {"message", message_}, {"retryable", retryable_}, {"details", details_}};
}

Error error_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return err;
  } catch (const std::exception& err) {
    return Error(Code::internal, err.what());
  }
}

Code code_for_http_status(long status) {
  switch (status) {
    case 400: case 422: return Code::invalid_argument;
    case 401: return Code::unauthorized;
    case 403: return Code::forbidden;
    case 404: case 410: return Code::not_found;
    case 408: case 504: return Code::timeout;
    case 409: case 412: return Code::conflict;
    case 429: return Code::throttled;
    default: return status >= 500 ? Code::unavailable : Code::internal;
  }
}

}  // namespace hoist
