// Which credential source applies: each source's settings read from the options and the
// environment, the chain's order, and the message that says exactly what is missing.
#include "azure/internal.hpp"

#include <hoist/process.hpp>

namespace hoist::azure::detail {
namespace {

std::string pick(const std::string& given, const Env& env, const char* name) {
  if (!given.empty()) return given;
  return env(name).value_or("");
}

// One source's settings, or the names of what it lacks.
struct Probe {
  Settings settings;
  std::vector<std::string> missing;
  std::string failure;  // a present but unusable setting (AZURE_CREDENTIALS that is not JSON)
  nlohmann::json failure_details;
  bool applies() const { return missing.empty() && failure.empty(); }
  // The option `given`, else the variable `name`; with neither, `name` is what the source lacks.
  std::string need(const Env& env, const char* name, const std::string& given = "") {
    std::string value = pick(given, env, name);
    if (value.empty()) missing.push_back(name);
    return value;
  }
};

std::string join(const std::vector<std::string>& names, const char* last_sep) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? last_sep : ", ";
    out += names[i];
  }
  return out;
}

// AZURE_CLIENT_ID and AZURE_TENANT_ID, which every federated source needs too.
void identity(Probe& p, const CredentialOptions& o, const Env& env) {
  p.settings.client_id = p.need(env, "AZURE_CLIENT_ID", o.client_id);
  p.settings.tenant_id = p.need(env, "AZURE_TENANT_ID", o.tenant_id);
}

Probe client_secret(const CredentialOptions& o, const Env& env) {
  Probe p;
  p.settings.source = "client_secret";
  std::string secret = pick(o.client_secret, env, "AZURE_CLIENT_SECRET");
  auto json = env("AZURE_CREDENTIALS");
  if (secret.empty() && json) {  // the azure/login JSON, when the variables are not set
    try {
      ServicePrincipal sp = parse_azure_credentials(*json);
      p.settings.client_id = o.client_id.empty() ? sp.client_id : o.client_id;
      p.settings.tenant_id = o.tenant_id.empty() ? sp.tenant_id : o.tenant_id;
      p.settings.client_secret = sp.client_secret;
      p.settings.subscription_id = sp.subscription_id;
      p.settings.from = "AZURE_CREDENTIALS";
    } catch (const Error& e) {
      p.failure = e.message();
      p.failure_details = e.details();
    }
    return p;
  }
  identity(p, o, env);
  p.settings.client_secret = secret;
  p.settings.from = o.client_secret.empty() ? "AZURE_CLIENT_SECRET" : "options";
  if (secret.empty()) p.missing.push_back("AZURE_CLIENT_SECRET");
  return p;
}

Probe workload_identity(const CredentialOptions& o, const Env& env) {
  Probe p;
  p.settings.source = "workload_identity";
  p.settings.token_file = p.need(env, "AZURE_FEDERATED_TOKEN_FILE");
  identity(p, o, env);
  return p;
}

Probe oidc(const CredentialOptions& o, const Env& env) {
  Probe p;
  p.settings.source = "oidc";
  p.settings.oidc_url = p.need(env, "ACTIONS_ID_TOKEN_REQUEST_URL");
  p.settings.oidc_token = p.need(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  identity(p, o, env);
  return p;
}

// Azure Pipelines' workload identity federation: the job asks its service connection for an
// idToken (SYSTEM_OIDCREQUESTURI, authorized by the job's SYSTEM_ACCESSTOKEN, which a step
// only sees when mapped into its env). AzureCLI@2 and the Azure SDKs name the connection and
// its identity AZURESUBSCRIPTION_*; AZURE_CLIENT_ID/AZURE_TENANT_ID win when set.
Probe azure_pipelines(const CredentialOptions& o, const Env& env) {
  Probe p;
  p.settings.source = "azure_pipelines";
  p.settings.oidc_url = p.need(env, "SYSTEM_OIDCREQUESTURI");
  p.settings.oidc_token = p.need(env, "SYSTEM_ACCESSTOKEN");
  p.settings.service_connection_id = p.need(env, "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID");
  p.settings.client_id = pick(o.client_id, env, "AZURE_CLIENT_ID");
  if (p.settings.client_id.empty()) p.settings.client_id = env("AZURESUBSCRIPTION_CLIENT_ID").value_or("");
  p.settings.tenant_id = pick(o.tenant_id, env, "AZURE_TENANT_ID");
  if (p.settings.tenant_id.empty()) p.settings.tenant_id = env("AZURESUBSCRIPTION_TENANT_ID").value_or("");
  if (p.settings.client_id.empty()) p.missing.push_back("AZURE_CLIENT_ID (or AZURESUBSCRIPTION_CLIENT_ID)");
  if (p.settings.tenant_id.empty()) p.missing.push_back("AZURE_TENANT_ID (or AZURESUBSCRIPTION_TENANT_ID)");
  return p;
}

// In the chain only where its endpoint is configured: IDENTITY_ENDPOINT (App Service), or
// AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS. Probing IMDS's link-local default from every
// machine that has no credential would cost a timeout; named, it goes there.
Probe managed_identity(const CredentialOptions& o, const Env& env, bool named) {
  Probe p;
  p.settings.source = "managed_identity";
  p.settings.identity_endpoint = env("IDENTITY_ENDPOINT").value_or("");
  p.settings.identity_header = env("IDENTITY_HEADER").value_or("");
  p.settings.client_id = pick(o.client_id, env, "AZURE_CLIENT_ID");  // a user-assigned identity
  bool app_service = !p.settings.identity_endpoint.empty() && !p.settings.identity_header.empty();
  if (!p.settings.identity_endpoint.empty() && p.settings.identity_header.empty())
    p.missing.push_back("IDENTITY_HEADER");
  else if (!app_service && !named && !env("AZURE_POD_IDENTITY_AUTHORITY_HOST"))
    p.missing.push_back("IDENTITY_ENDPOINT and IDENTITY_HEADER (or AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS)");
  return p;
}

Probe az_cli(const CredentialOptions& o, const Env& env) {
  Probe p;
  p.settings.source = "az_cli";
  p.settings.tenant_id = o.tenant_id;
  auto path = which(o.az.empty() ? "az" : o.az, env("PATH").value_or(""));
  if (path) p.settings.az = *path;
  else p.missing.push_back("the az CLI ('" + (o.az.empty() ? std::string("az") : o.az) + "' is not on PATH)");
  return p;
}

Probe probe(const std::string& source, const CredentialOptions& o, const Env& env, bool named) {
  if (source == "client_secret") return client_secret(o, env);
  if (source == "workload_identity") return workload_identity(o, env);
  if (source == "oidc") return oidc(o, env);
  if (source == "azure_pipelines") return azure_pipelines(o, env);
  if (source == "managed_identity") return managed_identity(o, env, named);
  if (source == "az_cli") return az_cli(o, env);
  Probe p;
  p.settings.source = "static";
  p.settings.static_token = o.token;
  if (o.token.empty()) p.missing.push_back("the token option");
  return p;
}

// A variable that is set but unusable is the user's mistake, not a source that is absent: it
// stops the chain (falling through to az would blame a missing `az login`).
[[noreturn]] void refuse(const Probe& p) {
  nlohmann::json details = p.failure_details.is_object() ? p.failure_details : nlohmann::json::object();
  details["source"] = p.settings.source;
  throw Error(Code::invalid_argument, "azure credential '" + p.settings.source + "': " + p.failure, details);
}

std::string why(const Probe& p) {
  return join(p.missing, " and ") + (p.missing.size() == 1 ? " is not set" : " are not set");
}

}  // namespace

Settings select_source(const CredentialOptions& o, const Env& env) {
  std::string sub = env("AZURE_SUBSCRIPTION_ID").value_or("");
  auto done = [&](Probe p) {
    if (!sub.empty()) p.settings.subscription_id = sub;  // the variable beats the JSON
    return p.settings;
  };
  if (!o.source.empty()) {
    bool known = o.source == "static";
    for (const char* s : kSources) known = known || o.source == s;
    if (!known)
      throw Error(Code::invalid_argument, "azure credential: unknown source '" + o.source +
                                              "' (known: client_secret, workload_identity, oidc, azure_pipelines, managed_identity, az_cli, static)");
    Probe p = probe(o.source, o, env, true);
    if (!p.failure.empty()) refuse(p);
    if (!p.applies()) {
      bool tool = o.source == "az_cli";
      throw Error(tool ? Code::tool_missing : Code::unauthorized,
                  "azure credential '" + o.source + "': " + (o.source == "az_cli" ? join(p.missing, ", ") : why(p)),
                  {{"source", o.source}, {"missing", p.missing}});
    }
    return done(std::move(p));
  }
  std::vector<std::string> reasons;
  for (const char* s : kSources) {
    Probe p = probe(s, o, env, false);
    if (!p.failure.empty()) refuse(p);
    if (p.applies()) return done(std::move(p));
    // a source half configured is named first: that is the one the user meant
    reasons.push_back(std::string(s) + ": " + (s == std::string("az_cli") ? join(p.missing, ", ") : why(p)));
  }
  std::string all;
  for (auto& r : reasons) all += (all.empty() ? "" : "; ") + r;
  throw Error(Code::unauthorized, "no Azure credential found (" + all + ")",
              {{"tried", reasons}});
}

}  // namespace hoist::azure::detail
