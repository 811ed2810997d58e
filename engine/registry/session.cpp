// Sending a registry request on the REST layer (auth hooks, plan steps) and turning a
// registry's answer into a structured error.
#include "registry/internal.hpp"
#include <hoist/json.hpp>

#include <cstdlib>
#include <sstream>

namespace hoist::registry::detail {

namespace asio = boost::asio;

// ------------------------------------------------------------------ urls and errors

std::string absolute_url(const Endpoint& ep, const std::string& target) {
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) return target;
  return ep.base + (target.empty() || target.front() != '/' ? "/" : "") + target;
}

std::string repo_scope(const std::string& repository, const std::string& actions) {
  return "repository:" + repository + ":" + actions;
}

rest::RemoteError registry_error_body(const HttpResponse& resp) {
  rest::RemoteError out;
  auto body = hoist::parse_json_or_discarded(resp.body);
  if (!body.is_discarded() && body.is_object() && body.contains("errors") && body["errors"].is_array()) {
    out.details["errors"] = body["errors"];
    for (auto& e : body["errors"]) {
      if (!e.is_object()) continue;
      std::string m = e.value("message", "");
      std::string c = e.value("code", "");
      if (!out.message.empty()) out.message += "; ";
      out.message += m.empty() ? c : c.empty() ? m : m + " (" + c + ")";
    }
  } else {
    out = rest::default_error_parser(resp);  // token servers: {"error": ..., "error_description": ...}
  }
  // 405: the registry does not allow the operation (deletes disabled, read-only mirror)
  if (resp.status == 405) out.code = Code::forbidden;
  return out;
}

const rest::Api& registry_api() {
  static const rest::Api api{"registry", rest::Api{}.request_id_headers, registry_error_body};
  return api;
}

CopyResult planned_result(const Ctx& ctx, CopyResult res) {
  res.planned = true;
  res.steps = ctx->plan;
  return res;
}

Error digest_mismatch(const std::string& what, const std::string& expected, const std::string& actual) {
  return Error(Code::internal,
               what + ": content does not match its digest (expected " + expected + ", got " + actual + ")",
               false,
               {{"reason", "digest_mismatch"}, {"expected", expected}, {"actual", actual}});
}

// ------------------------------------------------------------------ client basics

ClientImpl::ClientImpl(asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
                       EventBus* events, ClientOptions options)
    : io_(io), http_(http), rest_(http, registry_api()), secrets_(std::move(secrets)), events_(events),
      options_(std::move(options)) {
  if (const char* env = std::getenv("HOIST_INSECURE_REGISTRIES")) {
    std::stringstream ss(env);
    for (std::string item; std::getline(ss, item, ',');) {
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (!item.empty()) options_.insecure_registries.push_back(item);
    }
  }
}

Endpoint ClientImpl::endpoint(const Ctx& ctx, const std::string& registry) const {
  Reference r;
  r.registry = registry;
  std::string host = r.host();
  // like docker: plain HTTP on loopback and for registries the user calls insecure
  bool plain = is_loopback_host(host);
  const std::vector<std::string>* lists[] = {&options_.insecure_registries, &ctx->insecure_registries};
  for (const auto* list : lists)
    for (const auto& h : *list)
      if (h == registry || h == host) plain = true;
  return Endpoint{registry, (plain ? "http://" : "https://") + host};
}

rest::Request ClientImpl::rest_request(const Ctx& ctx, const Endpoint& ep, const Req& req) {
  rest::Request r;
  r.http.method = req.method;
  r.http.url = absolute_url(ep, req.target);
  r.http.headers = req.headers;
  r.http.body = req.body;
  r.what = req.what;
  r.action = req.action;
  r.plan_fields = req.fields;
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  r.authorization = [self, ctx, ep, scopes = req.scopes] { return self->authorization(ctx, ep, scopes); };
  // the first answer of a registry is often a 401 with its challenge: not a failure
  r.renew = [self, ep](const HttpResponse& resp) {
    if (resp.header("www-authenticate").empty()) return false;
    self->on_unauthorized(ep, resp);
    return true;
  };
  return r;
}

Task<rest::Response> ClientImpl::send(Ctx ctx, Endpoint ep, Req req) {
  co_return co_await rest_.send(ctx, rest_request(ctx, ep, req));
}

Error ClientImpl::status_error(const Ctx& ctx, const HttpResponse& resp, const Req& req, const Endpoint& ep) const {
  rest::Request info;
  info.http.method = req.method;
  info.http.url = absolute_url(ep, req.target);
  info.what = req.what;
  Error e = rest_.status_error(resp, info);
  nlohmann::json details = e.details();
  details["registry"] = ep.registry;
  std::string message = e.message();
  if (resp.status == 401) {
    const Credentials* c = known_credentials(ctx, ep.registry);
    if (c && !c->empty()) {
      // say who was refused (never the secret), so nobody hunts for credentials that were given
      std::string remote = message.substr(std::min(message.size(), req.what.size() + 2));
      message = req.what + ": " + ep.registry + " rejected the credentials given (" + describe(*c) + "): " + remote;
      details["credentials"] = describe(*c);
    } else {
      message += "; give credentials with registry.login{}, options.auth or docker login";
    }
  }
  return Error(e.code(), message, e.retryable(), details);
}

void ClientImpl::fail(const Ctx& ctx, const HttpResponse& resp, const Req& req, const Endpoint& ep) const {
  throw status_error(ctx, resp, req, ep);
}

}  // namespace hoist::registry::detail

namespace hoist::registry {

std::shared_ptr<Client> Client::create(boost::asio::io_context& io, HttpClient& http,
                                       std::shared_ptr<Secrets> secrets, EventBus* events,
                                       ClientOptions options) {
  return std::make_shared<detail::ClientImpl>(io, http, std::move(secrets), events, std::move(options));
}

}  // namespace hoist::registry
