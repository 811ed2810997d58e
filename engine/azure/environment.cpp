// What the environment says about Azure: the cloud's endpoints, the azure/login JSON, and
// which api-version each resource type is pinned to.
#include "azure/internal.hpp"
#include <hoist/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace hoist::azure {
namespace {

using detail::lower;

std::string trim_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}


// Pinned per resource type: versions the service and the emulator both answer. A call may
// name another (ArmRequest::api_version). Keys are lower-cased.
const std::map<std::string, std::string>& api_versions() {
  static const std::map<std::string, std::string> table = {
      {"microsoft.resources/subscriptions", "2022-12-01"},
      {"microsoft.resources/resourcegroups", "2025-04-01"},
      {"microsoft.resources/providers", "2025-04-01"},
      {"microsoft.resources/deployments", "2025-04-01"},
      {"microsoft.authorization/roleassignments", "2022-04-01"},
      {"microsoft.authorization/roledefinitions", "2022-04-01"},
      {"microsoft.managedidentity", "2023-01-31"},
      {"microsoft.containerregistry", "2025-04-01"},
      {"microsoft.containerinstance", "2026-05-01"},
      {"microsoft.web", "2024-11-01"},
      {"microsoft.app", "2025-07-01"},
      {"microsoft.containerservice", "2025-10-01"},
      {"microsoft.machinelearningservices", "2025-09-01"},
  };
  return table;
}

std::vector<std::string> segments(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (auto s = path.find("://"); s != std::string_view::npos) {
    auto slash = path.find('/', s + 3);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

Env process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
}

Env map_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

Endpoints Endpoints::from(const Env& env) {
  Endpoints e;
  if (auto v = env("AZURE_AUTHORITY_HOST")) e.authority = trim_slash(*v);
  if (auto v = env("AZURE_RESOURCE_MANAGER_ENDPOINT")) e.resource_manager = trim_slash(*v);
  if (auto v = env("AZURE_POD_IDENTITY_AUTHORITY_HOST")) {
    e.imds = trim_slash(*v);
    e.imds_configured = true;
  }
  return e;
}

// "a number", "an array": what a JSON value is, for a message that must not show it.
static std::string a_type(const nlohmann::json& v) {
  std::string t = v.type_name();
  return (t[0] == 'a' || t[0] == 'o' ? "an " : "a ") + t;
}

// Every message names the variable and what is wrong with it, never its text: it holds a
// secret (so nlohmann's reason, which quotes what it last read, is left out).
ServicePrincipal parse_azure_credentials(std::string_view text) {
  static const std::string expected = "expected the azure/login JSON {clientId, clientSecret, subscriptionId, tenantId}";
  nlohmann::json j;
  try {
    j = hoist::parse_json(text);
  } catch (const Error& e) {
    const auto& d = e.details();
    throw Error(Code::invalid_argument,
                "AZURE_CREDENTIALS is set but is not valid JSON (it breaks at line " +
                    std::to_string(d.value("line", 0)) + ", column " + std::to_string(d.value("column", 0)) +
                    (text.find_first_not_of(" \t\r\n") == std::string_view::npos ? ": it is blank" : "") + "; " +
                    expected + ")",
                {{"variable", "AZURE_CREDENTIALS"}, {"line", d.value("line", 0)}, {"column", d.value("column", 0)}});
  }
  if (!j.is_object())
    throw Error(Code::invalid_argument,
                "AZURE_CREDENTIALS is set but is " + a_type(j) + " in JSON, not an object (" + expected + ")",
                {{"variable", "AZURE_CREDENTIALS"}});
  ServicePrincipal sp;
  auto field = [&](const char* name, std::string& into, bool required) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null() || (it->is_string() && it->get_ref<const std::string&>().empty())) {
      if (required)
        throw Error(Code::invalid_argument, std::string("AZURE_CREDENTIALS lacks '") + name + "' (" + expected + ")",
                    {{"variable", "AZURE_CREDENTIALS"}, {"field", name}});
      return;
    }
    if (!it->is_string())
      throw Error(Code::invalid_argument,
                  std::string("AZURE_CREDENTIALS: '") + name + "' must be a string, not " + a_type(*it),
                  {{"variable", "AZURE_CREDENTIALS"}, {"field", name}});
    into = it->get<std::string>();
  };
  field("clientId", sp.client_id, true);
  field("clientSecret", sp.client_secret, true);
  field("tenantId", sp.tenant_id, true);
  field("subscriptionId", sp.subscription_id, false);
  return sp;
}

std::string resource_of_scope(std::string_view scope) {
  std::string s(scope);
  constexpr std::string_view suffix = "/.default";
  if (s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0)
    s.resize(s.size() - suffix.size() + 1);  // keep the slash: ARM's audience ends with one
  return s;
}

// ------------------------------------------------------------------ resource types

std::string resource_type_of(std::string_view path) {
  auto seg = segments(path);
  // the last /providers/<Namespace> names the provider; what follows alternates type/name
  std::size_t ns = seg.size();
  for (std::size_t i = seg.size(); i-- > 0;)
    if (lower(seg[i]) == "providers" && i + 1 < seg.size()) {
      ns = i + 1;
      break;
    }
  if (ns == seg.size()) {
    // no provider: the Resources API itself
    if (seg.size() >= 3 && lower(seg[2]) == "resourcegroups") return "Microsoft.Resources/resourceGroups";
    if (!seg.empty() && lower(seg[0]) == "subscriptions") return "Microsoft.Resources/subscriptions";
    if (!seg.empty() && lower(seg[0]) == "providers") return "Microsoft.Resources/providers";
    return "";
  }
  std::size_t rest = seg.size() - ns - 1;  // segments after the namespace
  std::string after = ns + 1 < seg.size() ? lower(seg[ns + 1]) : "";
  // /subscriptions/s/providers/Microsoft.X and its register/unregister actions
  if (rest == 0 || (rest == 1 && (after == "register" || after == "unregister")))
    if (ns >= 2 && lower(seg[ns - 1]) == "providers" && (ns == 3 || ns == 1))
      return "Microsoft.Resources/providers";
  std::string type = seg[ns];
  for (std::size_t i = ns + 1; i < seg.size(); i += 2) type += "/" + seg[i];
  return type;
}

std::string api_version_for(std::string_view path) {
  std::string type = lower(resource_type_of(path));
  const auto& table = api_versions();
  // the longest known prefix at a '/' boundary: "microsoft.web/sites/slots" -> "microsoft.web"
  while (!type.empty()) {
    if (auto it = table.find(type); it != table.end()) return it->second;
    auto slash = type.rfind('/');
    if (slash == std::string::npos) break;
    type.resize(slash);
  }
  return "";
}

bool is_terminal(std::string_view status) {
  std::string s = lower(status);
  return s == "succeeded" || s == "failed" || s == "canceled" || s == "cancelled";
}

bool is_success(std::string_view status) { return lower(status) == "succeeded"; }

}  // namespace hoist::azure
