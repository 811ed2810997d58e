#pragma once
// Private to engine/azure: which credential source applies and the settings it reads, and
// the small helpers its files share.
#include <hoist/azure.hpp>
#include <hoist/strings.hpp>

#include <cctype>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace hoist::azure::detail {

inline double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

using text::lower;

struct Settings {
  std::string source;  // the chosen source
  std::string tenant_id, client_id, client_secret;
  std::string token_file;              // workload_identity
  std::string oidc_url, oidc_token;    // GitHub's ACTIONS_ID_TOKEN_REQUEST_*, Azure Pipelines' SYSTEM_OIDCREQUESTURI
                                       // and SYSTEM_ACCESSTOKEN
  std::string service_connection_id;   // azure_pipelines: the service connection whose idToken is asked for
  std::string identity_endpoint, identity_header;  // App Service managed identity
  std::string az;                      // az_cli: the resolved executable
  std::string static_token;
  std::string subscription_id;
  std::string from;  // where the client secret came from: "AZURE_CLIENT_SECRET", "AZURE_CREDENTIALS", "options"
};

// The first source that applies (or the one named), or unauthorized/tool_missing naming
// exactly what is missing.
Settings select_source(const CredentialOptions& options, const Env& env);

}  // namespace hoist::azure::detail
