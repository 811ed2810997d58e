// hoist.native.http: HTTP requests on the engine's loop (engine/core/http.cpp). Thin: reads
// the options, waits, pushes the response. JSON, query strings, `check` and the combination
// rules live in stdlib/hoist/http.lua.
#include "bindings/json_bridge.hpp"
#include "bindings/runtime.hpp"

#include <hoist/http.hpp>
#include <hoist/strings.hpp>

#include <algorithm>
#include <cctype>
#include <map>

namespace hoist::lua {
namespace {

using text::lower;

// opts.headers = {Name = "value", ...}; numbers are taken as text.
Headers read_headers(lua_State* L, int opts) {
  Headers out;
  lua_getfield(L, opts, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return out;
  }
  if (!lua_istable(L, -1))
    throw Error(Code::invalid_argument, std::string("option 'headers' must be a table, got ") + luaL_typename(L, -1));
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      throw Error(Code::invalid_argument, "option 'headers': names must be strings");
    std::string name = lua_tostring(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      throw Error(Code::invalid_argument, "option 'headers': value of '" + name + "' must be a string, got " +
                                              luaL_typename(L, -1));
    size_t n;
    const char* v = lua_tolstring(L, -1, &n);  // converts the stack copy only
    out.emplace_back(name, std::string(v, n));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  std::sort(out.begin(), out.end());  // a stable order on the wire
  return out;
}

// Credentials in headers are masked everywhere from now on, even if the script prints them.
void register_header_secrets(Secrets& secrets, const Headers& headers) {
  for (auto& [name, value] : headers) {
    auto n = lower(name);
    if (n != "authorization" && n != "proxy-authorization" && n != "x-api-key" && n != "api-key") continue;
    secrets.add(value);
    if (auto space = value.find(' '); space != std::string::npos) secrets.add(value.substr(space + 1));
  }
}

void push_response(lua_State* L, const HttpResponse& r) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, static_cast<lua_Integer>(r.status));
  lua_setfield(L, -2, "status");
  // Repeated names are joined with ", " (RFC 9110 5.3).
  std::map<std::string, std::string> joined;
  for (auto& [k, v] : r.headers) {
    auto [it, fresh] = joined.emplace(k, v);
    if (!fresh) it->second += ", " + v;
  }
  lua_createtable(L, 0, static_cast<int>(joined.size()));
  for (auto& [k, v] : joined) {
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, k.c_str());
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r.body.data(), r.body.size());
  lua_setfield(L, -2, "body");
  lua_pushlstring(L, r.effective_url.data(), r.effective_url.size());
  lua_setfield(L, -2, "url");
  lua_pushnumber(L, r.duration);
  lua_setfield(L, -2, "duration");
}

HttpRequest read_request(lua_State* L) {
  if (!lua_istable(L, 1))
    throw Error(Code::invalid_argument, std::string("http.request: expected an options table, got ") +
                                            luaL_typename(L, 1));
  HttpRequest req;
  req.url = opt_string(L, 1, "url");
  if (req.url.empty()) throw Error(Code::invalid_argument, "http.request: option 'url' is required");
  req.method = opt_string(L, 1, "method", "GET");
  req.headers = read_headers(L, 1);
  req.body = opt_string(L, 1, "body");
  req.timeout = opt_number(L, 1, "timeout", req.timeout);
  req.connect_timeout = opt_number(L, 1, "connect_timeout", req.connect_timeout);
  if (req.timeout < 0) throw Error(Code::invalid_argument, "option 'timeout' must be >= 0");
  if (req.connect_timeout < 0) throw Error(Code::invalid_argument, "option 'connect_timeout' must be >= 0");
  req.insecure = opt_bool(L, 1, "insecure", false);
  req.cacert = opt_string(L, 1, "cacert");
  req.client_cert = opt_string(L, 1, "client_cert");
  req.client_key = opt_string(L, 1, "client_key");
  req.unix_socket = opt_string(L, 1, "unix_socket");
  req.follow_redirects = opt_bool(L, 1, "follow_redirects", true);
  req.max_redirects = static_cast<int>(opt_number(L, 1, "max_redirects", req.max_redirects));
  return req;
}

// ok, response = http.request{method=, url=, headers=, body=, timeout=, connect_timeout=,
//   insecure=, cacert=, client_cert=, client_key=, unix_socket=, follow_redirects=,
//   max_redirects=}
// response = {status=, headers={name=value}, body=, url=, duration=}
int l_request(lua_State* L) {
  HttpRequest req = read_request(L);
  Runtime& rt = Runtime::from(L);
  register_header_secrets(rt.secrets(), req.headers);
  std::string method = req.method;
  std::transform(method.begin(), method.end(), method.begin(), ::toupper);
  std::string shown_url = redact_url(req.url);  // the event bus masks registered secrets too
  EventBus* events = &rt.events();
  std::shared_ptr<const Secrets> secrets = events->secrets();
  auto& http = HttpClient::for_loop(rt.io());
  return suspend(L, [&](Resumer r) -> OperationPtr {
    return http.request(std::move(req), [r, events, secrets, method, shown_url](Outcome<HttpResponse> out) {
      nlohmann::json fields{{"method", method}, {"url", shown_url}};
      if (out) {
        fields["status"] = out->status;
        fields["duration"] = out->duration;
        events->emit(Event{0, "debug", "http.request",
                           method + " " + shown_url + " -> " + std::to_string(out->status), fields});
        auto resp = std::make_shared<HttpResponse>(std::move(out.value()));
        r.ok([resp](lua_State* co) {
          push_response(co, *resp);
          return 1;
        });
        return;
      }
      fields["error"] = to_string(out.error().code());
      events->emit(Event{0, "debug", "http.request", method + " " + shown_url + " failed: " +
                                                          out.error().message(), fields});
      // The error reaches the script: no registered secret in it (e.g. in the query string).
      Error e = out.error();
      auto details = e.details();
      if (details.contains("url")) details["url"] = secrets->scrub(details["url"].get<std::string>());
      r.fail(Error(e.code(), secrets->scrub(e.message()), e.retryable(), std::move(details)));
    });
  });
}

// code = http.code_for_status(status): the error code a failed status maps to
int l_code_for_status(lua_State* L) {
  auto code = to_string(code_for_http_status(static_cast<long>(luaL_checknumber(L, 1))));
  lua_pushlstring(L, code.data(), code.size());
  return 1;
}

// text = http.redact_url(url): secret-looking query values and passwords masked
int l_redact_url(lua_State* L) {
  auto out = redact_url(luaL_checkstring(L, 1));
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

const luaL_Reg kFunctions[] = {
    {"request", protect<l_request>},
    {"code_for_status", protect<l_code_for_status>},
    {"redact_url", protect<l_redact_url>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_http(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
