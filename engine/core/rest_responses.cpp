// What to make of a remote's answer: a failure as a structured error (the code from the HTTP
// status, DESIGN.md's codes via code_for_http_status, unless the remote's body says better;
// the remote's own message; status, method, url and request ids in details), and where the
// next page of a list is.
#include <hoist/rest.hpp>
#include <hoist/json.hpp>

#include <set>

namespace hoist::rest {
namespace {

std::string text_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// Words for a status when the body has none.
std::string fallback_message(long status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "authentication required";
    case 403: return "access denied";
    case 404: return "not found";
    case 408: return "request timeout";
    case 409: return "conflict";
    case 412: return "precondition failed";
    case 422: return "unprocessable request";
    case 429: return "too many requests";
    default: return status >= 500 ? "server error" : "unexpected answer";
  }
}

}  // namespace

RemoteError default_error_parser(const HttpResponse& resp) {
  RemoteError out;
  auto body = hoist::parse_json_or_discarded(resp.body);
  if (body.is_discarded() || !body.is_object()) return out;
  if (auto e = body.find("error"); e != body.end() && e->is_object()) {
    // ARM and OData: {error: {code, message, target, details}}
    std::string code = text_of(*e, "code"), message = text_of(*e, "message");
    out.message = message.empty() ? code : code.empty() ? message : message + " (" + code + ")";
    out.details["error"] = *e;
  } else if (e != body.end()) {
    // OAuth2 token endpoints: {error: "invalid_grant", error_description: "..."}
    std::string code = text_of(body, "error"), description = text_of(body, "error_description");
    out.message = description.empty() ? code : description + " (" + code + ")";
    out.details["error"] = *e;
    if (!description.empty()) out.details["error_description"] = description;
  } else if (body.contains("message")) {
    // Kubernetes Status {kind: Status, reason, message, details} and most other APIs
    std::string reason = text_of(body, "reason");
    out.message = text_of(body, "message") + (reason.empty() ? "" : " (" + reason + ")");
    for (const char* key : {"reason", "details", "code"})
      if (body.contains(key)) out.details[key] = body[key];
  }
  return out;
}

Error Client::status_error(const HttpResponse& resp, const Request& req) const {
  RemoteError remote = api_.parse_error ? api_.parse_error(resp) : default_error_parser(resp);
  Code code = remote.code.value_or(code_for_http_status(resp.status));
  nlohmann::json details = {{"status", resp.status},
                            {"method", req.http.method},
                            {"url", redact_url(req.http.url)}};
  nlohmann::json ids = nlohmann::json::object();
  for (const auto& name : api_.request_id_headers)
    if (auto v = resp.header(name); !v.empty()) ids[name] = v;
  if (!ids.empty()) details["request_ids"] = ids;
  if (remote.details.is_object())
    for (auto& [k, v] : remote.details.items()) details[k] = v;
  if (remote.message.empty()) {
    if (!resp.body.empty()) details["body"] = resp.body.substr(0, 2048);
    remote.message = fallback_message(resp.status);
  }
  std::string what = req.what.empty() ? req.http.method + " " + redact_url(req.http.url) : req.what;
  return Error(code,
               what + ": " + remote.message + " (HTTP " + std::to_string(resp.status) + " from " +
                   url_host(req.http.url) + ")",
               details);
}

// ------------------------------------------------------------------ pagination

NextPage next_by_link() {
  return [](const std::string& url, const HttpResponse& resp, const nlohmann::json&) {
    std::string next = parse_link_next(resp.header("link"));
    return next.empty() ? next : resolve_url(url, next);
  };
}

NextPage next_by_field(std::string pointer) {
  return [ptr = nlohmann::json::json_pointer(pointer)](const std::string&, const HttpResponse&,
                                                       const nlohmann::json& body) {
    if (!body.contains(ptr) || !body.at(ptr).is_string()) return std::string();
    return body.at(ptr).get<std::string>();
  };
}

NextPage next_by_continue() {
  return [](const std::string& url, const HttpResponse&, const nlohmann::json& body) {
    static const nlohmann::json::json_pointer ptr("/metadata/continue");
    if (!body.contains(ptr) || !body.at(ptr).is_string() || body.at(ptr).get_ref<const std::string&>().empty())
      return std::string();
    return with_query(url, "continue", body.at(ptr).get<std::string>());
  };
}

Task<void> paginate(const Client& client, ContextPtr ctx, Request req, NextPage next,
                    std::function<bool(nlohmann::json& page)> on_page) {
  std::set<std::string> seen;
  while (true) {
    if (!seen.insert(req.http.url).second)
      throw Error(Code::internal, req.what + ": the server's pagination loops",
                  {{"url", redact_url(req.http.url)}});
    Response r = co_await client.send(ctx, req);
    if (r.status != 200) throw client.status_error(r, req);
    auto page = hoist::parse_json_or_discarded(r.body);
    if (page.is_discarded() || !page.is_object())
      throw Error(Code::internal, req.what + ": the answer is not a JSON object",
                  {{"url", redact_url(req.http.url)}, {"body", r.body.substr(0, 512)}});
    std::string url = next(req.http.url, r, page);
    if (!on_page(page) || url.empty()) co_return;
    req.http.url = std::move(url);
  }
}

}  // namespace hoist::rest
