// Registry auth, in docker's order: explicit credentials (options, then login), docker's
// config.json (auths, credHelpers, credsStore), then anonymous. Basic and Bearer
// challenges; bearer tokens cached per (registry, identity, scopes) until they expire; ACR's
// AAD -> refresh token -> access token exchange. Every credential and token is a secret.
#include "registry/internal.hpp"
#include <hoist/base64.hpp>
#include <hoist/json.hpp>

#include <hoist/process.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace hoist::registry::detail {
namespace {

// Who is asking, for cache keys: never the secret itself.
std::string who(const Credentials& c) {
  if (c.empty()) return "anonymous";
  return c.username + "#" + sha256_digest(c.password + "\n" + c.identity_token + "\n" +
                                          c.registry_token + "\n" + c.aad_token).substr(7, 16);
}

std::string origin(const std::string& url) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  auto slash = url.find('/', scheme + 3);
  return url.substr(0, slash);
}


std::vector<std::string> all_scopes(std::vector<std::string> scopes, const Challenge& ch) {
  std::istringstream extra(ch.param("scope"));
  for (std::string s; extra >> s;) scopes.push_back(s);
  std::sort(scopes.begin(), scopes.end());
  scopes.erase(std::unique(scopes.begin(), scopes.end()), scopes.end());
  return scopes;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

std::string describe(const Credentials& c) {
  std::string who = !c.username.empty() && c.username != kAcrTokenUser ? "user '" + c.username + "'"
                    : !c.aad_token.empty()                                ? "an Azure AD token"
                    : !c.registry_token.empty()                           ? "a registry token"
                                                                          : "a refresh token";
  if (c.source == "options") return who + " from the call's auth option";
  if (c.source == "login") return who + " from registry.login";
  if (c.source == "config") return who + " from docker's config.json";
  if (c.source.rfind("helper:", 0) == 0) return who + " from docker-credential-" + c.source.substr(7);
  return who;
}

const Credentials* ClientImpl::known_credentials(const Ctx& ctx, const std::string& registry) const {
  const std::map<std::string, Credentials>* maps[] = {&ctx->credentials, &logins_, &configured_};
  for (const auto* m : maps)
    if (auto it = m->find(registry); it != m->end()) return &it->second;
  return nullptr;
}

void ClientImpl::remember(const Credentials& c) {
  for (const std::string* s : {&c.password, &c.identity_token, &c.registry_token, &c.aad_token})
    if (s->size() >= 4) secrets_->add(*s);
  if (!c.password.empty()) secrets_->add(c.username + ":" + c.password);  // the Basic header's form
}

void ClientImpl::login(const std::string& registry, Credentials credentials) {
  if (credentials.source.empty()) credentials.source = "login";
  remember(credentials);
  logout(registry);  // drop tokens obtained as someone else
  logins_[registry] = std::move(credentials);
}

void ClientImpl::logout(const std::string& registry) {
  logins_.erase(registry);
  configured_.erase(registry);
  std::erase_if(tokens_, [&](auto& kv) { return kv.first.rfind(registry + "|", 0) == 0; });
  std::erase_if(refresh_tokens_, [&](auto& kv) { return kv.first.rfind(registry + "|", 0) == 0; });
}

Task<Credentials> ClientImpl::credentials_for(Ctx ctx, std::string registry) {
  if (auto it = ctx->credentials.find(registry); it != ctx->credentials.end()) {
    remember(it->second);
    co_return it->second;
  }
  if (auto it = logins_.find(registry); it != logins_.end()) co_return it->second;
  if (auto it = configured_.find(registry); it != configured_.end()) co_return it->second;

  Credentials found;
  found.source = "anonymous";
  std::string path = options_.docker_config.empty() ? docker_config_path() : options_.docker_config;
  std::ifstream in(path);
  if (options_.use_docker_config && in) {
    auto config = nlohmann::json::parse(in, nullptr, false);
    if (config.is_discarded())
      throw Error(Code::invalid_argument, "docker config " + path + " is not valid JSON", {{"path", path}});
    ConfigLookup l = lookup_docker_config(config, registry);
    if (!l.helper.empty()) found = co_await from_helper(ctx, l.helper, registry);
    else if (l.credentials) found = *l.credentials;
  }
  remember(found);
  configured_[registry] = found;
  co_return found;
}

Task<Credentials> ClientImpl::from_helper(Ctx ctx, std::string helper, std::string registry) {
  ExecOptions o;
  o.argv = {"docker-credential-" + helper, "get"};
  o.stdin_data = registry == "docker.io" ? "https://index.docker.io/v1/" : registry;
  o.timeout = 60;
  auto out = co_await rest::await_op<ExecResult>(ctx, [&](Completion<ExecResult> done) {
    return exec_async(io_, o, std::move(done));
  });
  if (!out.ok()) {
    const Error& e = out.error();
    if (e.code() == Code::tool_missing)
      throw Error(Code::tool_missing, "credential helper " + o.argv[0] + " (docker config for " + registry +
                                          ") is not on PATH", {{"helper", helper}});
    throw e;
  }
  ExecResult& r = out.value();
  if (r.code != 0) {
    // docker-credential-* say so on stdout when they have nothing for this registry
    if ((r.out + r.err).find("credentials not found") != std::string::npos) {
      Credentials none;
      none.source = "anonymous";
      co_return none;
    }
    throw Error(Code::tool_failed, o.argv[0] + " get failed for " + registry + " (exit " + std::to_string(r.code) + ")",
                {{"helper", helper}, {"exit_code", r.code}, {"stderr", secrets_->scrub(r.err.substr(0, 2048))}});
  }
  Credentials c = parse_helper_output(r.out, helper);
  remember(c);
  co_return c;
}

void ClientImpl::on_unauthorized(const Endpoint& ep, const HttpResponse& resp) {
  for (auto& [name, value] : resp.headers) {
    if (name != "www-authenticate") continue;
    for (auto& ch : rest::parse_www_authenticate(value)) {
      if (ch.scheme != "bearer" && ch.scheme != "basic") continue;
      // a second 401 with the same scheme means our token is stale or too narrow
      std::erase_if(tokens_, [&](auto& kv) { return kv.first.rfind(ep.registry + "|", 0) == 0; });
      challenges_[ep.registry] = ch;
      return;
    }
  }
}

Task<std::string> ClientImpl::authorization(Ctx ctx, Endpoint ep, std::vector<std::string> scopes) {
  auto it = challenges_.find(ep.registry);
  if (it == challenges_.end()) co_return "";
  Challenge ch = it->second;  // a copy: the map may change while we wait
  Credentials c = co_await credentials_for(ctx, ep.registry);
  if (ch.scheme == "basic") {
    // no credentials: go without, so the registry's own 401 answer is what the caller sees
    if (c.username.empty() && c.password.empty()) co_return "";
    co_return "Basic " + base64_encode(c.username + ":" + c.password);
  }
  std::string token = co_await bearer_token(ctx, ep, ch, scopes, c);
  co_return "Bearer " + token;
}

Task<std::string> ClientImpl::bearer_token(Ctx ctx, Endpoint ep, Challenge ch,
                                           std::vector<std::string> scopes, Credentials c) {
  if (!c.registry_token.empty()) co_return c.registry_token;
  scopes = all_scopes(std::move(scopes), ch);
  std::string key = ep.registry + "|" + who(c) + "|" + join(scopes, " ");
  auto now = std::chrono::steady_clock::now();
  if (auto it = tokens_.find(key); it != tokens_.end() && it->second.expires > now) co_return it->second.token;

  std::string realm = ch.param("realm");
  if (realm.empty())
    throw Error(Code::unauthorized, ep.registry + " sent a Bearer challenge without a realm",
                {{"registry", ep.registry}});
  std::string service = ch.param("service");
  std::string refresh = c.identity_token;
  if (c.username == kAcrTokenUser) refresh = c.password;  // ACR: the password is a refresh token
  if (!c.aad_token.empty()) refresh = co_await acr_refresh_token(ctx, ep, ch, c);

  rest::Request req;
  req.what = "token for " + ep.registry;
  req.timeout = std::min(ctx->options.timeout, 60.0);
  req.safe = true;  // a token request changes nothing: dry-runs need the token too
  HttpRequest& h = req.http;
  if (!refresh.empty()) {  // OAuth2 refresh grant (docker's identity tokens, ACR)
    h.method = "POST";
    h.url = realm;
    h.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
    h.body = rest::form_encode({{"grant_type", "refresh_token"}, {"service", service}, {"scope", join(scopes, " ")},
                   {"refresh_token", refresh}, {"client_id", "hoist"}});
  } else {  // docker's token GET, Basic-authenticated when we have a user
    h.url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + rest::form_encode({{"service", service}});
    for (auto& s : scopes) h.url += "&scope=" + rest::url_encode(s);
    h.url += "&client_id=hoist";
    if (!c.username.empty() || !c.password.empty())
      h.headers.emplace_back("Authorization", "Basic " + base64_encode(c.username + ":" + c.password));
  }
  auto j = co_await token_request(ctx, std::move(req), c);
  std::string token = j.value("token", "");
  if (token.empty()) token = j.value("access_token", "");
  if (token.empty())
    throw Error(Code::unauthorized, "the token server of " + ep.registry + " returned no token",
                {{"registry", ep.registry}, {"realm", realm}});
  secrets_->add(token);
  double ttl = j.contains("expires_in") && j["expires_in"].is_number() ? j["expires_in"].get<double>() : 60;
  ttl -= std::min(30.0, ttl / 2);  // renew before the registry would refuse it
  tokens_[key] = {token, now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   std::chrono::duration<double>(ttl))};
  co_return token;
}

Task<std::string> ClientImpl::acr_refresh_token(Ctx ctx, Endpoint ep, Challenge ch, Credentials c) {
  std::string key = ep.registry + "|" + who(c);
  if (auto it = refresh_tokens_.find(key); it != refresh_tokens_.end()) co_return it->second;
  // ACR serves /oauth2/exchange next to its token endpoint (the realm)
  rest::Request req;
  req.what = "ACR token exchange for " + ep.registry;
  req.timeout = std::min(ctx->options.timeout, 60.0);
  req.safe = true;
  req.http.method = "POST";
  req.http.url = origin(ch.param("realm")) + "/oauth2/exchange";
  req.http.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  req.http.body = rest::form_encode({{"grant_type", "access_token"}, {"service", ch.param("service")},
                        {"access_token", c.aad_token}});
  auto j = co_await token_request(ctx, std::move(req), c);
  std::string refresh = j.value("refresh_token", "");
  if (refresh.empty())
    throw Error(Code::unauthorized, "ACR token exchange for " + ep.registry + " returned no refresh_token",
                {{"registry", ep.registry}});
  secrets_->add(refresh);
  refresh_tokens_[key] = refresh;
  co_return refresh;
}

OperationPtr ClientImpl::exchange_acr_token(std::string registry, std::string aad_token, CallOptions o,
                                            Completion<std::string> done) {
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  Credentials c;
  c.aad_token = std::move(aad_token);
  c.source = "options";
  secrets_->add(c.aad_token);
  o.credentials[registry] = c;
  auto body = [self, registry, c](Ctx ctx) -> Task<std::string> {
    Endpoint ep = self->endpoint(ctx, registry);
    if (!self->challenges_.count(ep.registry))  // the challenge names the token endpoint
      co_await self->send(ctx, ep, Req{"GET", "/v2/", {}, {}, {}, "ping " + registry});
    auto it = self->challenges_.find(ep.registry);
    if (it == self->challenges_.end() || it->second.scheme != "bearer")
      throw Error(Code::invalid_argument,
                  registry + " does not ask for Bearer tokens: it has no ACR token exchange",
                  {{"registry", registry}});
    co_return co_await self->acr_refresh_token(ctx, ep, it->second, c);
  };
  return start<std::string>(std::move(o), body, std::move(done));
}

Task<nlohmann::json> ClientImpl::token_request(Ctx ctx, rest::Request req, Credentials creds) {
  rest::Response r = co_await rest_.send(ctx, req);
  if (r.status != 200) {
    Error e = rest_.status_error(r, req);
    // a refused login is "unauthorized", whatever status the token server chose
    bool refused = r.status == 400 || r.status == 401 || r.status == 403;
    std::string message = e.message();
    if (refused && !creds.empty())
      message = req.what + ": the token server rejected the credentials given (" + describe(creds) + "): " +
                message.substr(std::min(message.size(), req.what.size() + 2));
    throw Error(refused ? Code::unauthorized : e.code(), message, e.retryable(), e.details());
  }
  auto j = hoist::parse_json_or_discarded(r.body);
  if (j.is_discarded() || !j.is_object())
    throw Error(Code::unauthorized, req.what + ": the token server's answer is not JSON",
                {{"url", redact_url(req.http.url)}});
  co_return j;
}

}  // namespace hoist::registry::detail
