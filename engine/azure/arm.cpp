// The Resource Manager client on the REST layer: bearer tokens from the credential (renewed
// once on a 401), api-versions from the table, the ARM RPC's long-running operations
// (Azure-AsyncOperation, Location, provisioningState; Retry-After between polls; the final GET
// the RPC asks for), nextLink pages, and the error envelope through the REST layer's status
// errors. Retries of 429/5xx and the dry-run hook are the REST layer's.
#include "azure/internal.hpp"
#include <hoist/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace hoist::azure {
namespace {

using detail::lower;
using detail::now_unix;

using Clock = std::chrono::steady_clock;



std::string with_api_version(const std::string& url, const std::string& version) {
  if (version.empty() || lower(url).find("api-version=") != std::string::npos) return url;
  return rest::with_query(url, "api-version", version);
}

std::string last_segment(const std::string& url) {
  std::string path = url.substr(0, url.find('?'));
  return path.substr(path.rfind('/') + 1);
}

nlohmann::json body_of(const HttpResponse& r) {
  if (r.body.empty()) return nullptr;
  auto j = hoist::parse_json_or_discarded(r.body);
  return j.is_discarded() ? nlohmann::json(r.body) : j;
}

std::string provisioning_state(const nlohmann::json& body) {
  static const nlohmann::json::json_pointer ptr("/properties/provisioningState");
  if (body.is_object() && body.contains(ptr) && body.at(ptr).is_string()) return body.at(ptr).get<std::string>();
  return "";
}

nlohmann::json request_ids(const HttpResponse& r) {
  nlohmann::json ids = nlohmann::json::object();
  for (const char* name : {"x-ms-request-id", "x-ms-correlation-request-id"})
    if (auto v = r.header(name); !v.empty()) ids[name] = v;
  return ids;
}

// An operation's ARM error code as one of ours: the code says more than "it failed".
Code code_of_operation_error(const std::string& arm_code) {
  std::string c = lower(arm_code);
  if (c.find("notfound") != std::string::npos) return Code::not_found;
  if (c.find("conflict") != std::string::npos || c == "anotheroperationinprogress") return Code::conflict;
  if (c.find("authorizationfailed") != std::string::npos || c == "forbidden") return Code::forbidden;
  if (c.find("quota") != std::string::npos || c == "toomanyrequests") return Code::throttled;
  if (c.rfind("invalid", 0) == 0 || c == "badrequest") return Code::invalid_argument;
  return Code::rollout_failed;
}

// ARM's envelope {error: {code, message, ...}} as every client reads it; Microsoft.Web (App
// Service) sends its own instead, at the top level and in PascalCase: {Code, Message, Target,
// Details: [{Message}, {Code}, {ErrorEntity: {ExtendedCode, ...}}], Innererror} (its 409 "Cannot
// modify this site because another operation is in progress. Details: ..., OperationName:
// SwapSiteSlots, ..."). That one is kept as ARM's shape in details.error, so the message names
// the operation and callers read one shape. No code is set: the status decides retries as before.
rest::RemoteError arm_error(const HttpResponse& resp) {
  rest::RemoteError out = rest::default_error_parser(resp);
  if (!out.message.empty()) return out;
  auto body = hoist::parse_json_or_discarded(resp.body);
  if (body.is_discarded() || !body.is_object() || !body.contains("Message") || !body["Message"].is_string()) return out;
  nlohmann::json error = {{"message", body["Message"]}};
  std::string code = body.contains("Code") && body["Code"].is_string() ? body["Code"].get<std::string>() : "";
  if (!code.empty()) error["code"] = code;
  if (body.contains("Target") && !body["Target"].is_null()) error["target"] = body["Target"];
  if (body.contains("Details") && body["Details"].is_array()) {
    error["details"] = body["Details"];
    for (const auto& d : body["Details"])
      if (d.is_object() && d.contains("ErrorEntity") && d["ErrorEntity"].is_object() &&
          d["ErrorEntity"].contains("ExtendedCode"))
        error["extended_code"] = d["ErrorEntity"]["ExtendedCode"];
  }
  out.message = body["Message"].get<std::string>() + (code.empty() ? "" : " (" + code + ")");
  out.details["error"] = std::move(error);
  return out;
}

rest::Api arm_api() {
  rest::Api api;
  api.name = "arm";
  api.parse_error = arm_error;
  return api;
}

enum class Poll { async_operation, location, resource };

}  // namespace

Arm::Arm(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Credential> credential, EventBus* events,
         std::string endpoint)
    : io_(io),
      credential_(std::move(credential)),
      events_(events),
      endpoint_(endpoint.empty() && credential_ ? credential_->endpoints().resource_manager : std::move(endpoint)),
      scope_("https://management.azure.com/.default"),
      rest_(http, arm_api()) {
  while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
}

void Arm::set_audience(std::string audience) {
  while (!audience.empty() && audience.back() == '/') audience.pop_back();
  scope_ = audience + "/.default";
}

std::string Arm::url_of(const ArmRequest& req) const {
  bool absolute = req.path.rfind("https://", 0) == 0 || req.path.rfind("http://", 0) == 0;
  if (!absolute && (req.path.empty() || req.path[0] != '/'))
    throw Error(Code::invalid_argument, "azure request: path '" + req.path + "' must start with '/' (or be a URL)",
                {{"path", req.path}});
  std::string url = absolute ? req.path : endpoint_ + req.path;
  std::string version = req.api_version.empty() ? api_version_for(req.path) : req.api_version;
  if (version.empty() && lower(url).find("api-version=") == std::string::npos)
    throw Error(Code::invalid_argument,
                "azure request: no api-version is pinned for resource type '" + resource_type_of(req.path) +
                    "' (" + req.path + "): pass api_version",
                {{"path", req.path}, {"resource_type", resource_type_of(req.path)}});
  url = with_api_version(url, version);
  for (auto& [k, v] : req.query) url = rest::with_query(url, k, v);
  return url;
}

rest::Request Arm::prepare(rest::ContextPtr ctx, const std::string& method, const std::string& url,
                           const std::string& what) const {
  rest::Request r;
  r.http.method = method;
  r.http.url = url;
  r.http.headers = {{"Accept", "application/json"}};
  r.what = what;
  if (credential_) {
    auto cred = credential_;
    auto scope = scope_;
    r.authorization = [cred, scope, ctx]() -> Task<std::string> {
      AccessToken t = co_await cred->token(ctx, scope, false);
      co_return "Bearer " + t.token;
    };
    r.renew = [cred, scope](const HttpResponse&) {
      cred->forget(scope);  // the token was refused (revoked, rotated): one more try with a new one
      return true;
    };
  }
  return r;
}

Task<ArmResponse> Arm::send(rest::ContextPtr ctx, ArmRequest req, ArmOptions options) {
  std::string url = url_of(req);
  std::string method = req.method;
  for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (req.what.empty()) req.what = method + " " + redact_url(req.path);
  rest::Request r = prepare(ctx, method, url, req.what);
  for (auto& h : req.headers) r.http.headers.push_back(h);
  if (req.body) {
    r.http.body = req.body->dump();
    r.http.headers.emplace_back("Content-Type", "application/json");
  }
  // ARM's read-only actions are POSTs named list* (listKeys, listCredentials): not plan steps
  r.safe = req.safe.value_or(method == "POST" && last_segment(url).rfind("list", 0) == 0);
  r.action = req.action.empty() ? "azure." + lower(method) : req.action;
  r.plan_fields = {{"resource_type", resource_type_of(req.path)}};

  rest::Response first = co_await rest_.send(ctx, r);
  ArmResponse out;
  if (first.planned) {
    out.planned = true;
    co_return out;
  }
  if (first.status >= 300) throw rest_.status_error(first, r);
  out.status = first.status;
  out.headers = first.headers;
  out.body = body_of(first);
  std::string aao = first.header("azure-asyncoperation"), location = first.header("location");
  bool started = !aao.empty() || (!location.empty() && first.status == 202) ||
                 ((method == "PUT" || method == "PATCH") && !provisioning_state(out.body).empty() &&
                  !is_terminal(provisioning_state(out.body)));
  if (started && !req.wait) {
    out.poll_url = !aao.empty() ? aao : !location.empty() ? location : url;
  } else if (started) {
    out = co_await wait_for(ctx, req, url, std::move(first), options);
  }
  if (req.paged) co_await follow_pages(ctx, out, req);
  co_return out;
}

Task<ArmResponse> Arm::wait_for(rest::ContextPtr ctx, const ArmRequest& req, std::string url, rest::Response first,
                                ArmOptions options) {
  std::string method = lower(req.method);
  std::string version = req.api_version.empty() ? api_version_for(req.path) : req.api_version;
  std::string aao = first.header("azure-asyncoperation"), location = first.header("location");
  Poll mode = !aao.empty() ? Poll::async_operation : (!location.empty() && first.status == 202) ? Poll::location
                                                                                               : Poll::resource;
  std::string poll_url = with_api_version(mode == Poll::async_operation ? aao : mode == Poll::location ? location : url,
                                          version);
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.wait_timeout));
  ArmResponse out;
  out.status = first.status;
  out.headers = first.headers;
  out.body = body_of(first);
  HttpResponse last = first;
  std::string state;
  ctx->emit("debug", "azure.lro", req.what + ": waiting for the operation",
            {{"poll", redact_url(poll_url)}, {"mode", mode == Poll::async_operation ? "azure-asyncoperation"
                                                      : mode == Poll::location      ? "location"
                                                                                    : "provisioningState"}});
  while (true) {
    auto after = rest::parse_retry_after(last.header("retry-after"), now_unix());
    double delay = std::clamp(after.value_or(options.poll_interval), 0.0, options.retry.max_retry_after);
    if (Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay)) > deadline)
      throw Error(Code::timeout,
                  req.what + ": the operation did not end within " + std::to_string(int(options.wait_timeout)) + " s",
                  {{"poll", redact_url(poll_url)}, {"status", state}, {"polls", out.polls}});
    co_await rest::sleep_for(ctx, delay);
    rest::Request p = prepare(ctx, "GET", poll_url, req.what + " (polling the operation)");
    rest::Response r = co_await rest_.send(ctx, p);
    ++out.polls;
    last = r;
    if (r.status >= 300 && !(mode == Poll::location && r.status == 202)) throw rest_.status_error(r, p);
    nlohmann::json body = body_of(r);
    if (mode == Poll::location) {
      if (r.status == 202) continue;
      out.status = r.status;
      out.headers = r.headers;
      out.body = body;  // POST and DELETE: the Location's final answer is the result
      out.operation_status = "Succeeded";
      break;
    }
    state = mode == Poll::async_operation ? (body.is_object() ? body.value("status", "") : "") : provisioning_state(body);
    if (mode == Poll::resource) out.body = body;
    if (!is_terminal(state)) continue;
    out.operation_status = state;
    out.status = r.status;  // the operation's own answer, unless a final GET follows
    out.headers = r.headers;
    if (!is_success(state)) {
      nlohmann::json error = body.is_object() && body.contains("error") ? body["error"] : nlohmann::json(nullptr);
      if (error.is_null() && mode == Poll::resource) error = {{"code", "ProvisioningState" + state}};
      std::string code = error.is_object() ? error.value("code", "") : "";
      std::string message = error.is_object() ? error.value("message", "") : "";
      nlohmann::json details = {{"operation_status", state}, {"url", redact_url(poll_url)}, {"error", error},
                                {"request_ids", request_ids(r)}, {"polls", out.polls}};
      throw Error(code_of_operation_error(code),
                  req.what + ": the operation ended " + state + (message.empty() ? "" : ": " + message) +
                      (code.empty() ? "" : " (" + code + ")"),
                  details);
    }
    break;
  }
  // the RPC's final answer: PUT/PATCH GET the resource; a POST with a Location GETs it
  if (mode == Poll::async_operation && (method == "put" || method == "patch" || (method == "post" && !location.empty()))) {
    std::string final_url = method == "post" ? with_api_version(location, version) : url;
    while (true) {
      rest::Request g = prepare(ctx, "GET", final_url, req.what + " (the operation's result)");
      rest::Response r = co_await rest_.send(ctx, g);
      if (r.status >= 300 && r.status != 202) throw rest_.status_error(r, g);
      if (r.status == 202) {  // a Location still catching up with its operation
        auto after = rest::parse_retry_after(r.header("retry-after"), now_unix());
        co_await rest::sleep_for(ctx, std::clamp(after.value_or(options.poll_interval), 0.0, options.retry.max_retry_after));
        if (Clock::now() > deadline) throw Error(Code::timeout, req.what + ": the operation's result never came");
        continue;
      }
      out.status = r.status;
      out.headers = r.headers;
      out.body = body_of(r);
      break;
    }
  } else if (mode == Poll::async_operation) {
    out.body = nullptr;  // DELETE, or a POST whose result is in no Location
  }
  co_return out;
}

Task<void> Arm::follow_pages(rest::ContextPtr ctx, ArmResponse& out, const ArmRequest& req) {
  nlohmann::json all = nlohmann::json::array();
  auto take = [&all](nlohmann::json& page) {
    if (auto v = page.find("value"); v != page.end() && v->is_array())
      for (auto& item : *v) all.push_back(std::move(item));
    return true;
  };
  if (!out.body.is_object()) {
    if (out.body.is_array()) all = out.body;
    out.body = {{"value", all}};
    co_return;
  }
  take(out.body);
  std::string next = out.body.value("nextLink", "");
  if (!next.empty()) {
    rest::Request first = prepare(ctx, "GET", next, req.what + " (next page)");
    co_await rest::paginate(rest_, ctx, first, rest::next_by_field("/nextLink"), take);
  }
  out.body = {{"value", all}};
}

OperationPtr Arm::request(ArmRequest req, ArmOptions options, Completion<ArmResponse> done) {
  auto secrets = events_ ? events_->secrets() : nullptr;
  auto ctx = std::make_shared<rest::Context>(io_, static_cast<rest::Options>(options), events_, secrets);
  auto self = std::make_shared<Arm>(*this);
  return rest::spawn<ArmResponse, rest::Context>(
      ctx, [self, req = std::move(req), options](rest::ContextPtr c) { return self->send(c, req, options); },
      std::move(done));
}

}  // namespace hoist::azure
