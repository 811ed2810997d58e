// The credential chain: which source applies and what a missing one says, the azure/login
// JSON, each source's token request (against a scripted Entra ID, GitHub OIDC and managed
// identity; the az CLI as the stand-in tests/tools/az), the token cache and its refresh
// margin, one request for concurrent askers, Entra's errors, and secret registration.
#include "tests/azure/fixture.hpp"

#include "azure/internal.hpp"

#include <cstdio>
#include <fstream>

using namespace hoist;
using namespace hoist::azure;
using namespace hoist::azure::testing;
using nlohmann::json;

namespace {

const std::string kArm = "https://management.azure.com/.default";

std::map<std::string, std::string> sp_env() {
  return {{"AZURE_CLIENT_ID", "app-1"}, {"AZURE_TENANT_ID", "tenant-1"}, {"AZURE_CLIENT_SECRET", "the-client-secret"}};
}

detail::Settings select(std::map<std::string, std::string> env, std::string source = "") {
  CredentialOptions o;
  o.source = std::move(source);
  if (!env.count("PATH")) env["PATH"] = "/nonexistent";
  return detail::select_source(o, map_env(env));
}

std::string select_error(std::map<std::string, std::string> env, std::string source = "") {
  try {
    select(std::move(env), std::move(source));
  } catch (const Error& e) {
    return std::string(to_string(e.code())) + ": " + e.message();
  }
  return "no error";
}

// Entra's token endpoint: counts requests, answers `expires_in`.
struct Entra {
  int requests = 0;
  double expires_in = 3600;
  std::vector<std::map<std::string, std::string>> forms;
  Reply operator()(const Seen& s) {
    std::map<std::string, std::string> form;
    std::string body = "?" + s.body;
    for (const char* k : {"grant_type", "client_id", "scope", "client_secret", "client_assertion_type", "client_assertion"})
      form[k] = query_param(body, k);
    forms.push_back(form);
    return json_reply(200, {{"token_type", "Bearer"}, {"access_token", "entra-token-" + std::to_string(++requests)},
                            {"expires_in", expires_in}});
  }
};

}  // namespace

TEST_CASE("the chain: the first source whose settings are present wins") {
  auto full = sp_env();
  full["AZURE_FEDERATED_TOKEN_FILE"] = "/tmp/x";
  full["ACTIONS_ID_TOKEN_REQUEST_URL"] = "https://gh/token";
  full["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "gh-request-token";
  CHECK(select(full).source == "client_secret");
  full.erase("AZURE_CLIENT_SECRET");
  CHECK(select(full).source == "workload_identity");
  full.erase("AZURE_FEDERATED_TOKEN_FILE");
  CHECK(select(full).source == "oidc");
  full.erase("ACTIONS_ID_TOKEN_REQUEST_URL");
  full["SYSTEM_OIDCREQUESTURI"] = "https://dev.azure.com/org/proj/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken";
  full["SYSTEM_ACCESSTOKEN"] = "job-access-token";
  full["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"] = "sc-1";
  CHECK(select(full).source == "azure_pipelines");
  // AzureCLI@2's names for the identity stand in for AZURE_CLIENT_ID/AZURE_TENANT_ID
  auto azp = select({{"SYSTEM_OIDCREQUESTURI", "https://x/oidctoken"}, {"SYSTEM_ACCESSTOKEN", "t"},
                     {"AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "sc-1"}, {"AZURESUBSCRIPTION_CLIENT_ID", "app-9"},
                     {"AZURESUBSCRIPTION_TENANT_ID", "tenant-9"}});
  CHECK(azp.source == "azure_pipelines");
  CHECK(azp.client_id == "app-9");
  CHECK(azp.tenant_id == "tenant-9");
  CHECK(select({{"IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"}, {"IDENTITY_HEADER", "h-1234"}}).source == "managed_identity");
  // IMDS joins the chain only where its address is configured
  CHECK(select({{"AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1"}}).source == "managed_identity");
  CHECK(select({{"PATH", std::string(HOIST_SOURCE_DIR) + "/tests/tools"}}).source == "az_cli");
  // the azure/login JSON stands for the three variables, its subscription kept
  auto sp = select({{"AZURE_CREDENTIALS",
                     R"({"clientId":"c","clientSecret":"s3cret!","subscriptionId":"sub-9","tenantId":"t","extra":1})"}});
  CHECK(sp.source == "client_secret");
  CHECK(sp.client_secret == "s3cret!");
  CHECK(sp.subscription_id == "sub-9");
  CHECK(sp.from == "AZURE_CREDENTIALS");
  auto sub = select({{"AZURE_CREDENTIALS", R"({"clientId":"c","clientSecret":"s","subscriptionId":"sub-9","tenantId":"t"})"},
                     {"AZURE_SUBSCRIPTION_ID", "sub-env"}});
  CHECK(sub.subscription_id == "sub-env");
}

TEST_CASE("a missing or broken source says exactly which variable, for that source") {
  struct Row {
    std::map<std::string, std::string> env;
    std::string source, expected;
  };
  for (const Row& row : {
           Row{{{"AZURE_CLIENT_ID", "a"}, {"AZURE_TENANT_ID", "t"}}, "client_secret",
               "unauthorized: azure credential 'client_secret': AZURE_CLIENT_SECRET is not set"},
           Row{{}, "workload_identity",
               "unauthorized: azure credential 'workload_identity': AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and "
               "AZURE_TENANT_ID are not set"},
           Row{{{"ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh"}, {"AZURE_CLIENT_ID", "a"}, {"AZURE_TENANT_ID", "t"}}, "oidc",
               "unauthorized: azure credential 'oidc': ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set"},
           Row{{{"SYSTEM_OIDCREQUESTURI", "https://x/oidctoken"}, {"AZURE_CLIENT_ID", "a"}, {"AZURE_TENANT_ID", "t"}},
               "azure_pipelines",
               "unauthorized: azure credential 'azure_pipelines': SYSTEM_ACCESSTOKEN and "
               "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID are not set"},
           Row{{{"IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"}}, "managed_identity",
               "unauthorized: azure credential 'managed_identity': IDENTITY_HEADER is not set"},
           Row{{}, "az_cli", "tool_missing: azure credential 'az_cli': the az CLI ('az' is not on PATH)"},
           Row{{}, "static", "unauthorized: azure credential 'static': the token option is not set"},
           Row{{}, "password", "invalid_argument: azure credential: unknown source 'password'"},
           Row{{{"AZURE_CREDENTIALS", "{not json"}}, "client_secret",
               "invalid_argument: azure credential 'client_secret': AZURE_CREDENTIALS is set but is not valid JSON "
               "(it breaks at line 1, column 3"},
           Row{{{"AZURE_CREDENTIALS", R"({"clientId":"c","tenantId":"t"})"}}, "client_secret",
               "invalid_argument: azure credential 'client_secret': AZURE_CREDENTIALS lacks 'clientSecret'"},
           Row{{}, "",
               "unauthorized: no Azure credential found (client_secret: AZURE_CLIENT_ID, AZURE_TENANT_ID and "
               "AZURE_CLIENT_SECRET are not set; workload_identity: AZURE_FEDERATED_TOKEN_FILE"},
       }) {
    CAPTURE(row.source);
    CHECK(select_error(row.env, row.source).find(row.expected) == 0);
  }
  // the chain names every source it tried, az last
  std::string none = select_error({});
  CHECK(none.find("oidc: ACTIONS_ID_TOKEN_REQUEST_URL") != std::string::npos);
  CHECK(none.find("azure_pipelines: SYSTEM_OIDCREQUESTURI, SYSTEM_ACCESSTOKEN") != std::string::npos);
  CHECK(none.find("managed_identity: IDENTITY_ENDPOINT and IDENTITY_HEADER (or AZURE_POD_IDENTITY_AUTHORITY_HOST") !=
        std::string::npos);
  CHECK(none.find("az_cli: the az CLI ('az' is not on PATH))") != std::string::npos);
  // a secret in a broken AZURE_CREDENTIALS is never echoed
  std::string typed = select_error({{"AZURE_CREDENTIALS", R"({"clientId":"c","clientSecret":12345678,"tenantId":"t"})"}},
                                   "client_secret");
  CHECK(typed.find("'clientSecret' must be a string") != std::string::npos);
  CHECK(typed.find("12345678") == std::string::npos);
}

TEST_CASE("a set but invalid AZURE_CREDENTIALS stops the chain, naming the variable and never its value") {
  struct Row {
    std::string value, expected;
  };
  const std::string secret = "s3cr3t-Value-77";
  for (const Row& row : {
           Row{"{not json " + secret, "AZURE_CREDENTIALS is set but is not valid JSON (it breaks at line 1, column 3;"},
           Row{R"({"clientId":"c","clientSecret":")" + secret, "AZURE_CREDENTIALS is set but is not valid JSON (it breaks at line 1, column "},
           Row{"   ", "AZURE_CREDENTIALS is set but is not valid JSON (it breaks at line 1, column 4: it is blank;"},
           Row{R"(["c",")" + secret + R"("])", "AZURE_CREDENTIALS is set but is an array in JSON, not an object"},
           Row{R"({"clientId":"c","clientSecret":")" + secret + R"(","tenantId":7})", "AZURE_CREDENTIALS: 'tenantId' must be a string, not a number"},
           Row{R"({"clientId":"c","clientSecret":")" + secret + R"("})", "AZURE_CREDENTIALS lacks 'tenantId'"},
       }) {
    CAPTURE(row.value);
    // az is on PATH (the stand-in): before the fix the chain fell through to it
    std::string msg = select_error({{"AZURE_CREDENTIALS", row.value}, {"PATH", std::string(HOIST_SOURCE_DIR) + "/tests/tools"}});
    CHECK(msg.find("invalid_argument: azure credential 'client_secret': " + row.expected) == 0);
    CHECK(msg.find(secret) == std::string::npos);
    CHECK(msg.find("az_cli") == std::string::npos);
  }
}

TEST_CASE("endpoints and scopes: sovereign clouds and tests move them") {
  Endpoints def = Endpoints::from(map_env({}));
  CHECK(def.authority == "https://login.microsoftonline.com");
  CHECK(def.resource_manager == "https://management.azure.com");
  CHECK(def.imds == "http://169.254.169.254");
  CHECK_FALSE(def.imds_configured);
  Endpoints e = Endpoints::from(map_env({{"AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn/"},
                                         {"AZURE_RESOURCE_MANAGER_ENDPOINT", "https://management.chinacloudapi.cn/"},
                                         {"AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:5013"}}));
  CHECK(e.authority == "https://login.chinacloudapi.cn");
  CHECK(e.resource_manager == "https://management.chinacloudapi.cn");
  CHECK(e.imds == "http://127.0.0.1:5013");
  CHECK(e.imds_configured);
  CHECK(resource_of_scope("https://management.azure.com/.default") == "https://management.azure.com/");
  CHECK(resource_of_scope("https://vault.azure.net") == "https://vault.azure.net");
}

TEST_CASE("the token cache renews a margin before expiry, at most half a token's life") {
  TokenCache c;
  c.put("k", AccessToken{"t1", 1000 + 3600}, 1000);
  CHECK(c.get("k", 1000 + 3000, 300).has_value());
  CHECK_FALSE(c.get("k", 1000 + 3301, 300).has_value());  // within 300 s of expiry
  c.put("short", AccessToken{"t2", 1000 + 60}, 1000);     // a 60-second token: renewed after 30 s
  CHECK(c.get("short", 1000 + 29, 300).has_value());
  CHECK_FALSE(c.get("short", 1000 + 31, 300).has_value());
  c.drop("k");
  CHECK_FALSE(c.get("k", 1000, 300).has_value());
  CHECK_FALSE(c.get("missing", 0, 0).has_value());
}

TEST_CASE("client secret: the client-credentials grant, cached per scope, every secret registered") {
  Fixture f;
  Entra entra;
  f.server.handler = [&](const Seen& s) {
    CHECK(path_of(s.target) == "/tenant-1/oauth2/v2.0/token");
    CHECK(s.headers.at("content-type") == "application/x-www-form-urlencoded");
    return entra(s);
  };
  CredentialOptions o;
  auto c = f.credential(o, sp_env());
  CHECK(c->source() == "client_secret");
  auto t1 = f.token(c);
  REQUIRE(t1.ok());
  CHECK(t1->token == "entra-token-1");
  CHECK(f.token(c)->token == "entra-token-1");  // cached
  CHECK(entra.requests == 1);
  CHECK(f.token(c, "https://vault.azure.net/.default")->token == "entra-token-2");  // another scope
  CHECK(f.token(c, kArm, true)->token == "entra-token-3");                         // fresh
  CHECK(entra.forms[0] == std::map<std::string, std::string>{{"grant_type", "client_credentials"},
                                                             {"client_id", "app-1"},
                                                             {"scope", kArm},
                                                             {"client_secret", "the-client-secret"},
                                                             {"client_assertion_type", ""},
                                                             {"client_assertion", ""}});
  CHECK(f.secrets->scrub("x the-client-secret entra-token-1 entra-token-3") == "x *** *** ***");
  // another credential of the run with the same identity shares the cache
  auto cache = std::make_shared<TokenCache>();
  auto a = Credential::create(f.io, f.http, f.secrets, &f.events, CredentialOptions{.env = map_env([&] {
                                auto e = sp_env();
                                e["AZURE_AUTHORITY_HOST"] = f.base();
                                return e;
                              }())}, cache);
  auto b = Credential::create(f.io, f.http, f.secrets, &f.events, CredentialOptions{.env = map_env([&] {
                                auto e = sp_env();
                                e["AZURE_AUTHORITY_HOST"] = f.base();
                                return e;
                              }())}, cache);
  int before = entra.requests;
  CHECK(f.token(a)->token == f.token(b)->token);
  CHECK(entra.requests == before + 1);
}

TEST_CASE("a short-lived token is fetched again; concurrent askers share one request") {
  Fixture f;
  Entra entra;
  entra.expires_in = 0;  // expired at once: every ask fetches
  f.server.handler = [&](const Seen& s) { return entra(s); };
  auto c = f.credential({}, sp_env());
  f.token(c);
  f.token(c);
  CHECK(entra.requests == 2);

  entra.expires_in = 3600;
  std::vector<std::string> got(3);
  auto out = f.run<int>(f.ctx(), [&](rest::ContextPtr x) -> Task<int> {
    co_await rest::for_each_bounded(x, 3, 3, [&, x](std::size_t i) -> Task<void> {
      got[i] = (co_await c->token(x, "https://other/.default", false)).token;
    });
    co_return 0;
  });
  REQUIRE(out.ok());
  CHECK(entra.requests == 3);  // one more, not three
  CHECK(got[0] == got[1]);
  CHECK(got[1] == got[2]);
}

TEST_CASE("Entra's refusal is unauthorized with its words and its AADSTS code") {
  Fixture f;
  f.server.handler = [&](const Seen&) {
    return json_reply(401, {{"error", "invalid_client"},
                            {"error_description", "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                                                  "being sent in the request is the client secret value."},
                            {"error_codes", json::array({7000215})},
                            {"trace_id", "tr-1"},
                            {"correlation_id", "co-1"}});
  };
  auto t = f.token(f.credential({}, sp_env()));
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().code() == Code::unauthorized);
  CHECK(t.error().message().find("azure credential 'client_secret': token for " + kArm +
                                 ": AADSTS7000215: Invalid client secret provided.") == 0);
  CHECK(t.error().details()["aadsts"] == "AADSTS7000215");
  CHECK(t.error().details()["error_codes"] == json::array({7000215}));
  CHECK(t.error().details()["trace_id"] == "tr-1");
  CHECK(t.error().details()["source"] == "client_secret");
  CHECK(t.error().message().find("the-client-secret") == std::string::npos);
}

TEST_CASE("workload identity: the federated token file is read again for every token request") {
  Fixture f;
  Entra entra;
  entra.expires_in = 0;
  f.server.handler = [&](const Seen& s) { return entra(s); };
  std::string file = "/tmp/hoist-azure-test-federated-" + std::to_string(::getpid());
  auto env = sp_env();
  env.erase("AZURE_CLIENT_SECRET");
  env["AZURE_FEDERATED_TOKEN_FILE"] = file;
  auto c = f.credential({}, env);
  CHECK(c->source() == "workload_identity");
  std::ofstream(file) << "assertion-one\n";
  REQUIRE(f.token(c).ok());
  std::ofstream(file) << "assertion-two";
  REQUIRE(f.token(c).ok());
  CHECK(entra.forms[0]["client_assertion"] == "assertion-one");
  CHECK(entra.forms[1]["client_assertion"] == "assertion-two");
  CHECK(entra.forms[1]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
  CHECK(entra.forms[1]["client_secret"] == "");
  CHECK(f.secrets->scrub("assertion-two") == "***");
  std::remove(file.c_str());
  auto gone = f.token(c);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().message().find("cannot read AZURE_FEDERATED_TOKEN_FILE " + file) != std::string::npos);
}

TEST_CASE("GitHub OIDC: a fresh assertion for every Entra token, with Azure's audience") {
  Fixture f;
  Entra entra;
  entra.expires_in = 0;
  int assertions = 0;
  f.server.handler = [&](const Seen& s) {
    if (path_of(s.target) == "/gh/token") {
      CHECK(s.headers.at("authorization") == "Bearer gh-request-token");
      CHECK(query_param(s.target, "audience") == "api://AzureADTokenExchange");
      CHECK(query_param(s.target, "api-version") == "2.0");
      return json_reply(200, {{"count", ++assertions}, {"value", "gh-assertion-" + std::to_string(assertions)}});
    }
    return entra(s);
  };
  auto env = sp_env();
  env.erase("AZURE_CLIENT_SECRET");
  env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f.server.url("/gh/token?api-version=2.0");
  env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "gh-request-token";
  auto c = f.credential({}, env);
  CHECK(c->source() == "oidc");
  REQUIRE(f.token(c).ok());
  REQUIRE(f.token(c).ok());
  CHECK(assertions == 2);
  CHECK(entra.forms[0]["client_assertion"] == "gh-assertion-1");
  CHECK(entra.forms[1]["client_assertion"] == "gh-assertion-2");
  CHECK(f.secrets->scrub("gh-request-token gh-assertion-1") == "*** ***");

  f.server.handler = [&](const Seen&) { return json_reply(200, {{"nothing", true}}); };
  auto bad = f.token(c);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message().find("GitHub OIDC token: the answer has no 'value'") != std::string::npos);
}

TEST_CASE("Azure Pipelines: the service connection's idToken, fresh for every Entra token") {
  Fixture f;
  Entra entra;
  entra.expires_in = 0;
  int asked = 0;
  f.server.handler = [&](const Seen& s) {
    if (path_of(s.target) == "/org/_apis/oidctoken") {
      CHECK(s.method == "POST");
      CHECK(s.headers.at("authorization") == "Bearer job-access-token");
      CHECK(s.headers.at("x-tfs-fedauthredirect") == "Suppress");
      CHECK(query_param(s.target, "api-version") == "7.1");
      CHECK(query_param(s.target, "serviceConnectionId") == "sc-42");
      return json_reply(200, {{"oidcToken", "azp-assertion-" + std::to_string(++asked)}});
    }
    return entra(s);
  };
  std::map<std::string, std::string> env = {{"SYSTEM_OIDCREQUESTURI", f.server.url("/org/_apis/oidctoken")},
                                            {"SYSTEM_ACCESSTOKEN", "job-access-token"},
                                            {"AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "sc-42"},
                                            {"AZURESUBSCRIPTION_CLIENT_ID", "app-azp"},
                                            {"AZURESUBSCRIPTION_TENANT_ID", "tenant-azp"}};
  auto c = f.credential({}, env);
  CHECK(c->source() == "azure_pipelines");
  REQUIRE(f.token(c).ok());
  REQUIRE(f.token(c).ok());
  CHECK(asked == 2);
  CHECK(entra.forms[0]["client_id"] == "app-azp");
  CHECK(entra.forms[0]["client_assertion"] == "azp-assertion-1");
  CHECK(entra.forms[1]["client_assertion"] == "azp-assertion-2");
  CHECK(entra.forms[1]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
  CHECK(f.secrets->scrub("job-access-token azp-assertion-2") == "*** ***");

  f.server.handler = [&](const Seen&) { return json_reply(200, {{"nothing", true}}); };
  auto bad = f.token(c);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message().find("Azure Pipelines idToken: the answer has no 'oidcToken'") != std::string::npos);
}

TEST_CASE("managed identity: App Service's IDENTITY_ENDPOINT, and IMDS at its configured address") {
  Fixture f;
  f.server.handler = [&](const Seen& s) {
    if (path_of(s.target) == "/msi/token") {
      CHECK(s.headers.at("x-identity-header") == "identity-header-value");
      CHECK(query_param(s.target, "api-version") == "2019-08-01");
      CHECK(query_param(s.target, "resource") == "https://management.azure.com/");
      return json_reply(200, {{"access_token", "msi-token"}, {"expires_on", "4102444800"}, {"token_type", "Bearer"}});
    }
    CHECK(path_of(s.target) == "/metadata/identity/oauth2/token");
    CHECK(s.headers.at("metadata") == "true");
    CHECK(query_param(s.target, "api-version") == "2018-02-01");
    CHECK(query_param(s.target, "client_id") == "user-assigned-1");
    return json_reply(200, {{"access_token", "imds-token"}, {"expires_in", "3599"}, {"expires_on", "4102444801"}});
  };
  auto app = f.credential({}, {{"IDENTITY_ENDPOINT", f.server.url("/msi/token")}, {"IDENTITY_HEADER", "identity-header-value"}});
  auto t = f.token(app);
  REQUIRE(t.ok());
  CHECK(t->token == "msi-token");
  CHECK(t->expires_on == 4102444800);
  CHECK(f.secrets->scrub("identity-header-value") == "***");
  auto imds = f.credential({}, {{"AZURE_POD_IDENTITY_AUTHORITY_HOST", f.base()}, {"AZURE_CLIENT_ID", "user-assigned-1"}});
  auto t2 = f.token(imds);
  REQUIRE(t2.ok());
  CHECK(t2->token == "imds-token");
  CHECK(t2->expires_on == 4102444801);
}

TEST_CASE("az CLI: az account get-access-token, run as argv; its failure in its own words") {
  Fixture f;
  std::string log = "/tmp/hoist-azure-test-az-" + std::to_string(::getpid());
  setenv("HOIST_FAKE_AZ_LOG", log.c_str(), 1);
  CredentialOptions o;
  o.source = "az_cli";
  o.az = std::string(HOIST_SOURCE_DIR) + "/tests/tools/az";
  auto c = f.credential(o);
  auto t = f.token(c);
  REQUIRE(t.ok());
  CHECK(t->token.rfind("fake-az-token-", 0) == 0);
  CHECK(t->expires_on > detail::now_unix() + 3000);
  std::ifstream in(log);
  std::string line;
  std::getline(in, line);
  CHECK(json::parse(line) ==
        json::array({"account", "get-access-token", "--resource", "https://management.azure.com/", "-o", "json"}));
  CHECK(f.secrets->scrub(t->token) == "***");

  setenv("HOIST_FAKE_AZ_FAIL", "1", 1);
  auto failed = f.token(c, "https://vault.azure.net/.default");
  unsetenv("HOIST_FAKE_AZ_FAIL");
  unsetenv("HOIST_FAKE_AZ_LOG");
  std::remove(log.c_str());
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code() == Code::unauthorized);
  CHECK(failed.error().message() ==
        "azure credential 'az_cli': az account get-access-token failed (exit 1): ERROR: Please run 'az login' to setup account.");
}
