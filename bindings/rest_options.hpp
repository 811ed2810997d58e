#pragma once
// The REST call options every remote-API binding reads (registry, Azure Resource Manager,
// Kubernetes) from a Lua options table: attempts, backoff, max_backoff, timeout and dry_run,
// with one set of checks and the defaults of hoist::rest::Options. A domain reads its own
// fields after this.
#include "bindings/runtime.hpp"

#include <hoist/error.hpp>
#include <hoist/rest.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

namespace hoist::lua {

// options[field] as a number, `fallback` when absent; `what` names the call in the error.
inline double option_number(const nlohmann::json& j, const std::string& what, const char* field, double fallback,
                            double min = -HUGE_VAL) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number())
    throw Error(Code::invalid_argument, what + ": option '" + field + "' must be a number");
  double v = it->get<double>();
  if (!(v >= min))
    throw Error(Code::invalid_argument, what + ": option '" + field + "' must be at least " +
                                            std::to_string(static_cast<long long>(min)));
  return v;
}

inline void read_rest_options(lua_State* L, const nlohmann::json& j, const std::string& what, rest::Options& o) {
  o.retry.attempts = static_cast<int>(option_number(j, what, "attempts", o.retry.attempts, 1));
  o.retry.backoff = option_number(j, what, "backoff", o.retry.backoff, 0);
  o.retry.max_backoff = option_number(j, what, "max_backoff", o.retry.max_backoff, 0);
  o.timeout = option_number(j, what, "timeout", o.timeout, 0);
  auto dry = j.find("dry_run");
  o.dry_run = Runtime::from(L).dry_run() || (dry != j.end() && dry->is_boolean() && dry->get<bool>());
}

}  // namespace hoist::lua
