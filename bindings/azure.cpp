// hoist.native.azure: the credential chain and the Resource Manager client (engine/azure) for
// Lua. One token cache per Lua state, shared by every credential of the run; waiting calls
// yield. Options are checked in stdlib/hoist/azure (util.check_opts), not here.
#include "bindings/json_bridge.hpp"
#include "bindings/rest_options.hpp"
#include "bindings/runtime.hpp"

#include <hoist/azure.hpp>

namespace hoist::lua {
namespace {

using namespace hoist::azure;
using nlohmann::json;

const char* const kCredentialMeta = "hoist.AzureCredential";
const char* const kCacheKey = "hoist.azure.cache";

struct CredentialBox {
  std::shared_ptr<Credential> credential;
};

std::shared_ptr<TokenCache> cache_of(lua_State* L) {
  return state_object<TokenCache>(L, kCacheKey, [] { return std::make_shared<TokenCache>(); });
}

CredentialBox* check_credential(lua_State* L, int index) {
  auto* box = static_cast<CredentialBox*>(luaL_checkudata(L, index, kCredentialMeta));
  if (!box->credential) throw Error(Code::invalid_argument, "azure credential: used after close()");
  return box;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

double num(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

std::shared_ptr<Credential> make_credential(lua_State* L, const json& o) {
  CredentialOptions c;
  c.source = str(o, "source");
  c.tenant_id = str(o, "tenant_id");
  c.client_id = str(o, "client_id");
  c.client_secret = str(o, "client_secret");
  c.token = str(o, "token");
  if (auto az = str(o, "az"); !az.empty()) c.az = az;
  c.refresh_margin = num(o, "refresh_margin", c.refresh_margin);
  c.timeout = num(o, "timeout", c.timeout);
  Runtime& rt = Runtime::from(L);
  return Credential::create(rt.io(), HttpClient::for_loop(rt.io()), rt.events().secrets(), &rt.events(), c,
                            cache_of(L));
}

rest::Options rest_options(lua_State* L, const json& o) {
  rest::Options r;
  read_rest_options(L, o, "hoist.azure", r);
  return r;
}

json token_json(const AccessToken& t) { return {{"token", t.token}, {"expires_on", t.expires_on}}; }

// cred = azure.credential{source=, tenant_id=, client_id=, client_secret=, token=, az=, refresh_margin=}
int l_credential(lua_State* L) {
  json o = lua_istable(L, 1) ? to_json(L, 1) : json::object();
  auto credential = make_credential(L, o);
  new (lua_newuserdata(L, sizeof(CredentialBox))) CredentialBox{std::move(credential)};
  luaL_getmetatable(L, kCredentialMeta);
  lua_setmetatable(L, -2);
  return 1;
}

// ok, {token, expires_on} = cred:get_token(scope, {timeout=, attempts=})
int l_get_token(lua_State* L) {
  auto credential = check_credential(L, 1)->credential;
  std::string scope = luaL_checkstring(L, 2);
  json o = lua_istable(L, 3) ? to_json(L, 3) : json::object();
  rest::Options r = rest_options(L, o);
  return suspend_json<AccessToken>(L, [&](auto done) { return credential->get_token(scope, r, done); }, token_json);
}

// cred:source() -> "client_secret" | ...; cred:subscription_id() -> string
int l_source(lua_State* L) {
  lua_pushstring(L, check_credential(L, 1)->credential->source().c_str());
  return 1;
}

int l_subscription_id(lua_State* L) {
  lua_pushstring(L, check_credential(L, 1)->credential->subscription_id().c_str());
  return 1;
}

int l_close(lua_State* L) {
  auto* box = static_cast<CredentialBox*>(luaL_checkudata(L, 1, kCredentialMeta));
  box->~CredentialBox();
  new (box) CredentialBox{};
  return 0;
}

int l_tostring(lua_State* L) {
  auto* box = static_cast<CredentialBox*>(luaL_checkudata(L, 1, kCredentialMeta));
  std::string s = "hoist.AzureCredential(" + (box->credential ? box->credential->source() : std::string("closed")) + ")";
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

// ok, {status, body, headers, planned, operation_status, poll_url, polls} =
//   azure.request(cred, {method=, path=, api_version=, query=, body=, headers=, wait=, paged=, safe=,
//                        endpoint=, audience=, poll_interval=, wait_timeout=, what=, action=, ...})
int l_request(lua_State* L) {
  auto credential = check_credential(L, 1)->credential;
  luaL_checktype(L, 2, LUA_TTABLE);
  json o = to_json(L, 2);
  ArmRequest req;
  req.method = o.value("method", "GET");
  req.path = str(o, "path");
  req.api_version = str(o, "api_version");
  if (auto q = o.find("query"); q != o.end() && q->is_object())
    for (auto& [k, v] : q->items()) req.query.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  if (auto h = o.find("headers"); h != o.end() && h->is_object())
    for (auto& [k, v] : h->items()) req.headers.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  if (auto b = o.find("body"); b != o.end() && !b->is_null()) req.body = *b;
  req.wait = o.value("wait", true);
  req.paged = o.value("paged", false);
  if (auto s = o.find("safe"); s != o.end() && s->is_boolean()) req.safe = s->get<bool>();
  req.what = str(o, "what");
  req.action = str(o, "action");
  ArmOptions options;
  static_cast<rest::Options&>(options) = rest_options(L, o);
  options.poll_interval = num(o, "poll_interval", options.poll_interval);
  options.wait_timeout = num(o, "wait_timeout", options.wait_timeout);
  Runtime& rt = Runtime::from(L);
  Arm arm(rt.io(), HttpClient::for_loop(rt.io()), credential, &rt.events(), str(o, "endpoint"));
  if (auto a = str(o, "audience"); !a.empty()) arm.set_audience(a);
  return suspend_json<ArmResponse>(L, [&](auto done) { return arm.request(req, options, done); }, [](const ArmResponse& r) {
    json headers = json::object();
    for (auto& [k, v] : r.headers) headers[k] = v;
    json j = {{"status", r.status}, {"body", r.body}, {"headers", headers}, {"planned", r.planned}, {"polls", r.polls}};
    if (!r.operation_status.empty()) j["operation_status"] = r.operation_status;
    if (!r.poll_url.empty()) j["poll_url"] = r.poll_url;
    return j;
  });
}

// version = azure.api_version(path), type = azure.resource_type(path)
int l_api_version(lua_State* L) {
  lua_pushstring(L, api_version_for(luaL_checkstring(L, 1)).c_str());
  return 1;
}

int l_resource_type(lua_State* L) {
  lua_pushstring(L, resource_type_of(luaL_checkstring(L, 1)).c_str());
  return 1;
}

const luaL_Reg kMethods[] = {
    {"get_token", protect<l_get_token>},
    {"source", protect<l_source>},
    {"subscription_id", protect<l_subscription_id>},
    {"close", protect<l_close>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"credential", protect<l_credential>},   {"request", protect<l_request>},
    {"api_version", protect<l_api_version>}, {"resource_type", protect<l_resource_type>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_azure(lua_State* L) {
  return open_module_with_class(L, kCredentialMeta, kMethods, protect<l_close>, protect<l_tostring>, kFunctions);
}

}  // namespace hoist::lua
