// Entra ID tokens from the chosen source: the client-credentials grant with a secret or a
// client assertion (a federated token file read anew for every request, or a fresh GitHub
// OIDC token for every request, so a deploy outlives any one assertion), managed identity
// (App Service's IDENTITY_ENDPOINT or IMDS) and `az account get-access-token`. Tokens are
// cached per (source, identity, scope) and renewed a margin before they expire; concurrent
// askers of one key share one request.
#include "azure/internal.hpp"

#include <hoist/json.hpp>
#include <hoist/process.hpp>
#include <hoist/registry.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace hoist::azure {
namespace {

namespace asio = boost::asio;
using detail::lower;
using detail::now_unix;
using detail::Settings;



// A number, or a number written as a string (managed identity writes "3599").
std::optional<double> number_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number()) return it->get<double>();
  if (it->is_string()) {
    try {
      std::size_t used = 0;
      double v = std::stod(it->get<std::string>(), &used);
      if (used == it->get_ref<const std::string&>().size()) return v;
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

// When a token answer says it expires: expires_on (unix seconds) or expires_in; az's older
// expiresOn is local time "2026-12-01 13:00:00.000000".
double expiry_of(const nlohmann::json& j, double now) {
  if (auto on = number_of(j, "expires_on")) return *on;
  if (auto in = number_of(j, "expires_in")) return now + *in;
  if (auto it = j.find("expiresOn"); it != j.end() && it->is_string()) {
    std::tm tm{};
    std::istringstream in(it->get<std::string>());
    in >> std::get_time(&tm, "%Y-%m-%d %H:%M:%S");
    if (!in.fail()) {
      tm.tm_isdst = -1;
      return static_cast<double>(std::mktime(&tm));
    }
  }
  return now + 300;  // unknown: short, so a wrong guess costs one extra request
}

struct Pending {
  explicit Pending(asio::io_context& io) : wake(io) { wake.expires_at(std::chrono::steady_clock::time_point::max()); }
  asio::steady_timer wake;
  std::optional<AccessToken> token;
};

class CredentialImpl : public Credential {
 public:
  CredentialImpl(asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets, EventBus* events,
                 CredentialOptions options, std::shared_ptr<TokenCache> cache, Settings settings, Endpoints endpoints)
      : http_(http),
        rest_(http, rest::Api{"entra", {"x-ms-request-id", "client-request-id", "x-ms-correlation-request-id"},
                              entra_error}),
        options_(std::move(options)),
        cache_(cache ? std::move(cache) : std::make_shared<TokenCache>()),
        s_(std::move(settings)),
        endpoints_(std::move(endpoints)) {
    io_ = &io;
    events_ = events;
    secrets_ = std::move(secrets);
    for (const std::string* v : {&s_.client_secret, &s_.oidc_token, &s_.identity_header, &s_.static_token})
      if (!v->empty()) secrets_->add(*v);
  }

  const std::string& source() const override { return s_.source; }
  const Endpoints& endpoints() const override { return endpoints_; }
  std::string subscription_id() const override { return s_.subscription_id; }

  void forget(const std::string& scope) override { cache_->drop(key(scope)); }

  Task<AccessToken> token(rest::ContextPtr ctx, std::string scope, bool fresh) override {
    std::string k = key(scope);
    double margin = options_.refresh_margin;
    if (!fresh)
      if (auto t = cache_->get(k, now_unix(), margin)) co_return *t;
    if (auto it = pending_.find(k); it != pending_.end() && !fresh) {
      auto p = it->second;  // someone is asking already: wait for their answer
      co_await p->wake.async_wait(asio::as_tuple(asio::use_awaitable));
      ctx->check();
      if (p->token) co_return *p->token;
    }
    auto p = std::make_shared<Pending>(*io_);
    pending_[k] = p;
    std::optional<AccessToken> got;
    std::exception_ptr failed;
    try {
      got = co_await fetch(ctx, scope);
    } catch (...) {
      failed = std::current_exception();
    }
    if (pending_[k] == p) pending_.erase(k);
    p->token = got;
    p->wake.cancel();
    if (failed) std::rethrow_exception(failed);
    secrets_->add(got->token);
    cache_->put(k, *got, now_unix());
    ctx->emit("debug", "azure.token", "azure token from " + s_.source + " for " + scope,
              {{"source", s_.source}, {"scope", scope}, {"expires_on", got->expires_on}});
    co_return *got;
  }

 private:
  // The material is part of the key (as its hash): a credential with another secret, token
  // file or endpoint never gets the token another one earned.
  std::string key(const std::string& scope) const {
    return s_.source + "|" + s_.tenant_id + "|" + s_.client_id + "|" + scope + "|" +
           registry::sha256_digest(s_.client_secret + "\n" + s_.static_token + "\n" + s_.token_file + "\n" + s_.oidc_url +
                         "\n" + s_.service_connection_id + "\n" + s_.identity_endpoint + "\n" + s_.az);
  }
  std::string what() const { return "azure credential '" + s_.source + "'"; }

  Task<AccessToken> fetch(rest::ContextPtr ctx, const std::string& scope) {
    if (s_.source == "static") co_return AccessToken{s_.static_token, now_unix() + 3600};
    if (s_.source == "client_secret")
      co_return co_await entra(ctx, scope, {"client_secret", s_.client_secret});
    if (s_.source == "workload_identity") co_return co_await entra(ctx, scope, {"client_assertion", read_token_file()});
    if (s_.source == "oidc") {
      std::string assertion = co_await github_assertion(ctx);
      co_return co_await entra(ctx, scope, {"client_assertion", assertion});
    }
    if (s_.source == "azure_pipelines") {
      std::string assertion = co_await azure_pipelines_assertion(ctx);
      co_return co_await entra(ctx, scope, {"client_assertion", assertion});
    }
    if (s_.source == "managed_identity") co_return co_await managed_identity(ctx, scope);
    co_return co_await az_cli(ctx, scope);
  }

  // Re-read for every request: the kubelet rotates the file, and an old assertion expires.
  std::string read_token_file() {
    std::ifstream in(s_.token_file, std::ios::binary);
    if (!in)
      throw Error(Code::unauthorized, what() + ": cannot read AZURE_FEDERATED_TOKEN_FILE " + s_.token_file,
                  {{"path", s_.token_file}});
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    if (text.empty())
      throw Error(Code::unauthorized, what() + ": AZURE_FEDERATED_TOKEN_FILE " + s_.token_file + " is empty",
                  {{"path", s_.token_file}});
    secrets_->add(text);
    return text;
  }

  // The client-credentials grant: {kind, value} is the secret or the assertion.
  Task<AccessToken> entra(rest::ContextPtr ctx, std::string scope, std::pair<std::string, std::string> cred) {
    rest::Request req;
    req.what = what() + ": token for " + scope;
    req.timeout = options_.timeout;
    req.safe = true;  // a token changes nothing: dry runs need one too
    req.http.method = "POST";
    req.http.url = endpoints_.authority + "/" + rest::url_encode(s_.tenant_id) + "/oauth2/v2.0/token";
    req.http.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
    bool assertion = cred.first == "client_assertion";
    req.http.body = rest::form_encode({{"grant_type", "client_credentials"}, {"client_id", s_.client_id}, {"scope", scope},
                          {"client_secret", assertion ? "" : cred.second},
                          {"client_assertion_type",
                           assertion ? "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" : ""},
                          {"client_assertion", assertion ? cred.second : ""}});
    auto j = co_await json_answer(ctx, std::move(req), "Entra ID");
    co_return parse_token(j, "access_token", "Entra ID");
  }

  Task<std::string> github_assertion(rest::ContextPtr ctx) {
    rest::Request req;
    const std::string label = what() + ": GitHub OIDC token";
    req.what = label;
    req.timeout = options_.timeout;
    req.http.url = rest::with_query(s_.oidc_url, "audience", "api://AzureADTokenExchange");
    req.http.headers = {{"Authorization", "Bearer " + s_.oidc_token}, {"Accept", "application/json"}};
    auto j = co_await json_answer(ctx, std::move(req), "GitHub's OIDC endpoint");
    auto v = j.find("value");
    if (v == j.end() || !v->is_string() || v->get_ref<const std::string&>().empty())
      throw Error(Code::unauthorized, label + ": the answer has no 'value' (ACTIONS_ID_TOKEN_REQUEST_URL)",
                  {{"url", redact_url(s_.oidc_url)}});
    secrets_->add(v->get<std::string>());
    co_return v->get<std::string>();
  }

  // The service connection's idToken, fresh for every Entra token as GitHub's: a POST with an
  // empty body (Azure DevOps' REST API 7.1, "OIDC token - create"); FedAuthRedirect
  // suppressed so a refused access token answers 401, not a sign-in page.
  Task<std::string> azure_pipelines_assertion(rest::ContextPtr ctx) {
    rest::Request req;
    const std::string label = what() + ": Azure Pipelines idToken";
    req.what = label;
    req.timeout = options_.timeout;
    req.safe = true;  // it changes nothing: dry runs need a token too
    req.http.method = "POST";
    req.http.url = rest::with_query(rest::with_query(s_.oidc_url, "api-version", "7.1"), "serviceConnectionId",
                                    s_.service_connection_id);
    req.http.headers = {{"Authorization", "Bearer " + s_.oidc_token},
                        {"Content-Type", "application/json"},
                        {"Accept", "application/json"},
                        {"X-TFS-FedAuthRedirect", "Suppress"}};
    auto j = co_await json_answer(ctx, std::move(req), "Azure DevOps' OIDC endpoint");
    auto v = j.find("oidcToken");
    if (v == j.end() || !v->is_string() || v->get_ref<const std::string&>().empty())
      throw Error(Code::unauthorized, label + ": the answer has no 'oidcToken' (SYSTEM_OIDCREQUESTURI)",
                  {{"url", redact_url(s_.oidc_url)}, {"service_connection_id", s_.service_connection_id}});
    secrets_->add(v->get<std::string>());
    co_return v->get<std::string>();
  }

  Task<AccessToken> managed_identity(rest::ContextPtr ctx, const std::string& scope) {
    std::string resource = resource_of_scope(scope);
    rest::Request req;
    req.what = what() + ": token for " + resource;
    req.timeout = options_.timeout;
    bool app_service = !s_.identity_endpoint.empty();
    std::string url = app_service ? s_.identity_endpoint : endpoints_.imds + "/metadata/identity/oauth2/token";
    url = rest::with_query(url, "api-version", app_service ? "2019-08-01" : "2018-02-01");
    url = rest::with_query(url, "resource", resource);
    if (!s_.client_id.empty()) url = rest::with_query(url, "client_id", s_.client_id);
    req.http.url = url;
    if (app_service) req.http.headers = {{"X-IDENTITY-HEADER", s_.identity_header}};
    else req.http.headers = {{"Metadata", "true"}};
    auto j = co_await json_answer(ctx, std::move(req), app_service ? "IDENTITY_ENDPOINT" : "IMDS");
    co_return parse_token(j, "access_token", app_service ? "IDENTITY_ENDPOINT" : "IMDS");
  }

  Task<AccessToken> az_cli(rest::ContextPtr ctx, const std::string& scope) {
    ExecOptions o;
    o.argv = {s_.az, "account", "get-access-token", "--resource", resource_of_scope(scope), "-o", "json"};
    if (!s_.tenant_id.empty()) o.argv.insert(o.argv.end(), {"--tenant", s_.tenant_id});
    o.timeout = options_.timeout;
    auto out = co_await rest::await_op<ExecResult>(ctx, [&](Completion<ExecResult> done) {
      return exec_async(*io_, o, std::move(done));
    });
    if (!out.ok()) {
      if (out.error().code() == Code::tool_missing)
        throw Error(Code::tool_missing, what() + ": " + s_.az + " cannot be started", {{"az", s_.az}});
      throw out.error();
    }
    ExecResult& r = out.value();
    if (r.code != 0) {
      std::string err = secrets_->scrub(r.err.substr(0, 2048));
      std::string first = err.substr(0, err.find('\n'));
      throw Error(Code::unauthorized,
                  what() + ": az account get-access-token failed (exit " + std::to_string(r.code) + "): " + first,
                  {{"exit_code", r.code}, {"stderr", err}});
    }
    auto j = hoist::parse_json_or_discarded(r.out);
    if (j.is_discarded() || !j.is_object())
      throw Error(Code::unauthorized, what() + ": az account get-access-token printed no JSON object");
    co_return parse_token(j, "accessToken", "az");
  }

  // Sends a token request; a refusal becomes unauthorized with the remote's own words.
  Task<nlohmann::json> json_answer(rest::ContextPtr ctx, rest::Request req, const char* who) {
    rest::Response r = co_await rest_.send(ctx, req);
    if (r.status != 200) {
      Error e = rest_.status_error(r, req);
      bool refused = r.status == 400 || r.status == 401 || r.status == 403;
      nlohmann::json details = e.details();
      details["source"] = s_.source;
      throw Error(refused ? Code::unauthorized : e.code(), secrets_->scrub(e.message()), e.retryable(), details);
    }
    auto j = hoist::parse_json_or_discarded(r.body);
    if (j.is_discarded() || !j.is_object())
      throw Error(Code::unauthorized, req.what + ": " + who + "'s answer is not a JSON object",
                  {{"url", redact_url(req.http.url)}});
    co_return j;
  }

  AccessToken parse_token(const nlohmann::json& j, const char* field, const char* who) {
    auto t = j.find(field);
    if (t == j.end() || !t->is_string() || t->get_ref<const std::string&>().empty())
      throw Error(Code::unauthorized, what() + ": " + who + " answered without '" + field + "'");
    secrets_->add(t->get<std::string>());
    return AccessToken{t->get<std::string>(), expiry_of(j, now_unix())};
  }

  HttpClient& http_;
  rest::Client rest_;
  CredentialOptions options_;
  std::shared_ptr<TokenCache> cache_;
  Settings s_;
  Endpoints endpoints_;
  std::map<std::string, std::shared_ptr<Pending>> pending_;
};

}  // namespace

// ------------------------------------------------------------------ public

std::optional<AccessToken> TokenCache::get(const std::string& key, double now, double margin) const {
  auto it = tokens_.find(key);
  if (it == tokens_.end()) return std::nullopt;
  // at most half its life: a 60-second token is renewed after 30 s, not at once
  double life = it->second.expires_on - it->second.issued;
  double m = std::min(margin, std::max(life, 0.0) / 2);
  if (now >= it->second.expires_on - m) return std::nullopt;
  return AccessToken{it->second.token, it->second.expires_on};
}

void TokenCache::put(const std::string& key, AccessToken token, double now) {
  tokens_[key] = Entry{std::move(token.token), token.expires_on, now};
}

void TokenCache::drop(const std::string& key) { tokens_.erase(key); }

rest::RemoteError entra_error(const HttpResponse& response) {
  rest::RemoteError e = rest::default_error_parser(response);
  // "AADSTS7000215: Invalid client secret provided. ..." -> details.aadsts
  std::string description = e.details.value("error_description", "");
  if (description.rfind("AADSTS", 0) == 0) {
    auto colon = description.find(':');
    e.details["aadsts"] = description.substr(0, colon);
  }
  auto body = hoist::parse_json_or_discarded(response.body);
  if (body.is_object())
    for (const char* k : {"error_codes", "trace_id", "correlation_id"})
      if (body.contains(k)) e.details[k] = body[k];
  return e;
}

std::shared_ptr<Credential> Credential::create(asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
                                               EventBus* events, CredentialOptions options,
                                               std::shared_ptr<TokenCache> cache) {
  if (!options.env) options.env = process_env();
  Settings s = detail::select_source(options, options.env);
  Endpoints e = Endpoints::from(options.env);
  return std::make_shared<CredentialImpl>(io, http, std::move(secrets), events, std::move(options), std::move(cache),
                                          std::move(s), std::move(e));
}

OperationPtr Credential::get_token(std::string scope, rest::Options options, Completion<AccessToken> done) {
  auto ctx = std::make_shared<rest::Context>(*io_, std::move(options), events_, secrets_);
  auto self = shared_from_this();
  return rest::spawn<AccessToken, rest::Context>(
      ctx, [self, scope](rest::ContextPtr c) { return self->token(c, scope, false); }, std::move(done));
}

}  // namespace hoist::azure
