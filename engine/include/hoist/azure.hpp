#pragma once
// hoist.azure: the Azure credential chain (Entra ID tokens from a client secret, a federated
// token file, GitHub's OIDC, managed identity or the az CLI) and a Resource Manager client on
// the REST layer (bearer auth, api-versions per resource type, long-running operations per
// the ARM RPC, nextLink pagination, the error envelope, dry-run). See docs/azure.md.
#include <hoist/error.hpp>
#include <hoist/events.hpp>
#include <hoist/http.hpp>
#include <hoist/operation.hpp>
#include <hoist/rest.hpp>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hoist::azure {

using rest::Task;

// ------------------------------------------------------------------ environment

// Reads one variable; nullopt when unset (an empty value counts as unset). Tests pass a map.
using Env = std::function<std::optional<std::string>(const std::string& name)>;
Env process_env();
Env map_env(std::map<std::string, std::string> vars);

// Where the cloud is: public Azure by default; AZURE_AUTHORITY_HOST,
// AZURE_RESOURCE_MANAGER_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST move it (sovereign
// clouds, tests). No trailing slash.
struct Endpoints {
  std::string authority = "https://login.microsoftonline.com";
  std::string resource_manager = "https://management.azure.com";
  std::string imds = "http://169.254.169.254";
  bool imds_configured = false;  // AZURE_POD_IDENTITY_AUTHORITY_HOST was set
  static Endpoints from(const Env& env);
};

// The azure/login JSON: {clientId, clientSecret, subscriptionId, tenantId, ...}. Throws
// invalid_argument naming the missing or mistyped field (never echoing the secret).
struct ServicePrincipal {
  std::string client_id, client_secret, tenant_id, subscription_id;
};
ServicePrincipal parse_azure_credentials(std::string_view json_text);

// "https://management.azure.com/.default" -> "https://management.azure.com/" (what managed
// identity and az take as --resource).
std::string resource_of_scope(std::string_view scope);

// ------------------------------------------------------------------ credentials

struct AccessToken {
  std::string token;
  double expires_on = 0;  // unix seconds
};

// The sources, in the chain's order. "static" (a token given by the caller) is only chosen
// by name.
inline constexpr const char* kSources[] = {"client_secret", "workload_identity", "oidc",
                                           "azure_pipelines", "managed_identity", "az_cli"};

struct CredentialOptions {
  std::string source;  // "" = the chain: the first source whose settings are present
  // Explicit values beat the environment.
  std::string tenant_id, client_id, client_secret;
  std::string token;  // source "static"
  std::string az = "az";  // the az CLI executable (name on PATH or a path)
  double refresh_margin = 300;  // seconds before expiry a cached token is renewed (at most half its life)
  double timeout = 60;          // seconds per token request
  Env env;                      // default: process_env()
};

// Tokens shared by the credentials of a run, keyed by (source, identity, scope).
class TokenCache {
 public:
  // The token unless it expires within `margin` seconds (at most half its life) of `now`.
  std::optional<AccessToken> get(const std::string& key, double now, double margin) const;
  void put(const std::string& key, AccessToken token, double now);
  void drop(const std::string& key);

 private:
  struct Entry {
    std::string token;
    double expires_on, issued;
  };
  std::map<std::string, Entry> tokens_;
};

// One resolved source of Entra tokens. Every secret it reads and every token or assertion it
// obtains is registered with `secrets` before anything can print it.
class Credential : public std::enable_shared_from_this<Credential> {
 public:
  // Picks the source now (throws unauthorized naming what is missing: the variables of a
  // source asked for by name, or of every source when the chain finds none).
  static std::shared_ptr<Credential> create(boost::asio::io_context& io, HttpClient& http,
                                            std::shared_ptr<Secrets> secrets, EventBus* events,
                                            CredentialOptions options,
                                            std::shared_ptr<TokenCache> cache = nullptr);
  virtual ~Credential() = default;

  virtual const std::string& source() const = 0;   // "client_secret", ...
  virtual const Endpoints& endpoints() const = 0;
  virtual std::string subscription_id() const = 0;  // AZURE_SUBSCRIPTION_ID or AZURE_CREDENTIALS', "" if none
  // A token for `scope` ("https://management.azure.com/.default"): cached until `margin`
  // before it expires; `fresh` skips the cache (after a 401).
  virtual Task<AccessToken> token(rest::ContextPtr ctx, std::string scope, bool fresh = false) = 0;
  virtual void forget(const std::string& scope) = 0;  // the next token() fetches anew
  OperationPtr get_token(std::string scope, rest::Options options, Completion<AccessToken> done);

 protected:
  boost::asio::io_context* io_ = nullptr;
  EventBus* events_ = nullptr;
  std::shared_ptr<Secrets> secrets_;
};

// Entra's token endpoint error: the description with its AADSTS code kept in details.
rest::RemoteError entra_error(const HttpResponse& response);

// ------------------------------------------------------------------ Resource Manager

// api-versions pinned per resource type ("Microsoft.Web/sites"); the longest known prefix of
// a path's type wins. "" when none is known.
std::string api_version_for(std::string_view path);
// "Microsoft.ContainerInstance/containerGroups" for ".../providers/Microsoft.ContainerInstance/
// containerGroups/web", "Microsoft.Resources/resourceGroups" for "/subscriptions/s/resourceGroups/rg".
std::string resource_type_of(std::string_view path);

struct ArmRequest {
  std::string method = "GET";
  std::string path;         // "/subscriptions/..." on the endpoint, or an absolute URL
  std::string api_version;  // "" = api_version_for(path)
  std::vector<std::pair<std::string, std::string>> query;
  std::optional<nlohmann::json> body;  // none = no body
  Headers headers;
  bool wait = true;    // follow a long-running operation to its end
  bool paged = false;  // follow nextLink: the result is {value: [every page's values]}
  std::optional<bool> safe;  // a POST that only reads (default: list* actions are)
  std::string what, action;  // error messages and plan steps; made from method and path if empty
};

struct ArmResponse {
  long status = 0;
  nlohmann::json body;  // the final answer: the resource, the action's result, or null
  Headers headers;      // of the last response
  bool planned = false;
  std::string operation_status;  // a long-running operation's terminal status, "" if none
  std::string poll_url;          // wait = false: where its status is (Azure-AsyncOperation or Location)
  int polls = 0;
};

struct ArmOptions : rest::Options {
  double poll_interval = 5;    // between polls when the service gives no Retry-After
  double wait_timeout = 1800;  // a long-running operation's whole life
};

class Arm {
 public:
  Arm(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Credential> credential,
      EventBus* events, std::string endpoint = "");  // "" = the credential's resource manager

  OperationPtr request(ArmRequest req, ArmOptions options, Completion<ArmResponse> done);
  Task<ArmResponse> send(std::shared_ptr<rest::Context> ctx, ArmRequest req, ArmOptions options);

  // The token audience: https://management.azure.com/ unless set (a sovereign cloud's own).
  void set_audience(std::string audience);
  const std::string& endpoint() const { return endpoint_; }
  const rest::Client& rest() const { return rest_; }
  std::string url_of(const ArmRequest& req) const;  // endpoint + path + api-version + query

 private:
  rest::Request prepare(std::shared_ptr<rest::Context> ctx, const std::string& method, const std::string& url,
                        const std::string& what) const;
  Task<ArmResponse> wait_for(std::shared_ptr<rest::Context> ctx, const ArmRequest& req, std::string url,
                             rest::Response first, ArmOptions options);
  Task<void> follow_pages(std::shared_ptr<rest::Context> ctx, ArmResponse& out, const ArmRequest& req);

  boost::asio::io_context& io_;
  std::shared_ptr<Credential> credential_;
  EventBus* events_;
  std::string endpoint_, scope_;
  rest::Client rest_;
};

// The ARM RPC's terminal states (case-insensitive).
bool is_terminal(std::string_view status);
bool is_success(std::string_view status);

}  // namespace hoist::azure
