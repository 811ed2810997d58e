// hoist.native.registry: the OCI Distribution client (engine/registry) for Lua. One client
// per Lua state (logins and token caches live for the run); every waiting call yields.
#include "bindings/json_bridge.hpp"
#include "bindings/rest_options.hpp"
#include "bindings/runtime.hpp"

#include <hoist/registry.hpp>

namespace hoist::lua {
namespace {

using namespace hoist::registry;
using nlohmann::json;

const char* const kClientKey = "hoist.registry.client";

std::shared_ptr<Client> client_of(lua_State* L) {
  return state_object<Client>(L, kClientKey, [L] {
    Runtime& rt = Runtime::from(L);
    return Client::create(rt.io(), HttpClient::for_loop(rt.io()), rt.events().secrets(), &rt.events());
  });
}

json args(lua_State* L, const char* fn) {
  if (!lua_istable(L, 1)) throw Error(Code::invalid_argument, std::string("registry.") + fn + ": expected an options table");
  return to_json(L, 1);
}

std::string str(const json& j, const char* fn, const char* field, bool required = true) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) throw Error(Code::invalid_argument, std::string("registry.") + fn + ": option '" + field + "' is required");
    return "";
  }
  if (!it->is_string())
    throw Error(Code::invalid_argument, std::string("registry.") + fn + ": option '" + field + "' must be a string");
  return it->get<std::string>();
}

double num(const json& j, const char* fn, const char* field, double fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number())
    throw Error(Code::invalid_argument, std::string("registry.") + fn + ": option '" + field + "' must be a number");
  return it->get<double>();
}

Credentials credentials(const json& j, const char* fn, const char* field) {
  Credentials c;
  c.source = "options";
  const json& a = j.at(field);
  if (!a.is_object())
    throw Error(Code::invalid_argument, std::string("registry.") + fn + ": option '" + field +
                                            "' must be a table {username=, password=} or {token=}");
  c.username = str(a, fn, "username", false);
  c.password = str(a, fn, "password", false);
  c.registry_token = str(a, fn, "token", false);
  c.identity_token = str(a, fn, "identity_token", false);
  c.aad_token = str(a, fn, "aad_token", false);
  if (c.empty())
    throw Error(Code::invalid_argument, std::string("registry.") + fn + ": option '" + field + "' holds no credentials");
  return c;
}

// Options every call shares; `auth` applies to the registries given.
CallOptions call_options(lua_State* L, const json& j, const char* fn, std::vector<std::string> registries) {
  CallOptions o;
  read_rest_options(L, j, std::string("registry.") + fn, o);
  o.concurrency = static_cast<int>(num(j, fn, "concurrency", o.concurrency));
  o.buffer = static_cast<std::size_t>(num(j, fn, "buffer", static_cast<double>(o.buffer)));
  if (auto it = j.find("insecure_registries"); it != j.end() && it->is_array())
    for (auto& r : *it)
      if (r.is_string()) o.insecure_registries.push_back(parse_registry_host(r.get<std::string>()));
  if (j.contains("auth"))
    for (auto& r : registries) o.credentials[r] = credentials(j, fn, "auth");
  return o;
}

// A call on one image, {image=, ...}: the reference and the call options (`auth` for the
// image's registry).
struct ImageCall {
  Reference image;
  CallOptions options;
};

ImageCall image_call(lua_State* L, const char* fn) {
  json j = args(L, fn);
  Reference image = Reference::parse(str(j, fn, "image"));
  CallOptions o = call_options(L, j, fn, {image.registry});
  return {std::move(image), std::move(o)};
}

// The page size (n=) and the most names (limit=) of a listing call; 0: the registry's own.
struct Paging {
  int n;
  int limit;
};

Paging paging(const json& j, const char* fn) {
  return {static_cast<int>(num(j, fn, "n", 0)), static_cast<int>(num(j, fn, "limit", 0))};
}

json names_json(const std::vector<std::string>& names) { return json(names); }

json resolved_json(const Resolved& r, const std::string& name) {
  return {{"digest", r.digest}, {"media_type", r.media_type}, {"size", r.size}, {"image", name + "@" + r.digest}};
}

json result_json(const CopyResult& r, bool copy) {
  json j = {{"digest", r.digest}, {"media_type", r.media_type}, {"image", r.image}};
  if (copy) {
    j["blobs_copied"] = r.blobs_copied;
    j["blobs_mounted"] = r.blobs_mounted;
    j["blobs_skipped"] = r.blobs_skipped;
    j["manifests"] = r.manifests;
    j["bytes"] = r.bytes;
  }
  if (r.planned) {
    j["planned"] = true;
    j["steps"] = json::array();
    for (auto& s : r.steps) j["steps"].push_back(to_json(s));
  }
  return j;
}

// r = registry.resolve{image=, auth=, attempts=, ...}
int l_resolve(lua_State* L) {
  ImageCall a = image_call(L, "resolve");
  auto c = client_of(L);
  return suspend_json<Resolved>(L, [&](auto done) { return c->resolve(a.image, a.options, done); },
                                [name = a.image.name()](const Resolved& r) { return resolved_json(r, name); });
}

// bool = registry.exists{image=, ...}
int l_exists(lua_State* L) {
  ImageCall a = image_call(L, "exists");
  auto c = client_of(L);
  return suspend_json<bool>(L, [&](auto done) { return c->exists(a.image, a.options, done); },
                            [](bool b) { return json(b); });
}

// tags = registry.tags{repository=, n=, limit=, ...}
int l_tags(lua_State* L) {
  json j = args(L, "tags");
  Reference repo = Reference::parse_repository(str(j, "tags", "repository"));
  CallOptions o = call_options(L, j, "tags", {repo.registry});
  Paging p = paging(j, "tags");
  auto c = client_of(L);
  return suspend_json<std::vector<std::string>>(L, [&](auto done) { return c->tags(repo, p.n, p.limit, o, done); },
                                                names_json);
}

// repositories = registry.catalog{registry=, n=, limit=, ...}
int l_catalog(lua_State* L) {
  json j = args(L, "catalog");
  std::string registry = parse_registry_host(str(j, "catalog", "registry"));
  CallOptions o = call_options(L, j, "catalog", {registry});
  Paging p = paging(j, "catalog");
  auto c = client_of(L);
  return suspend_json<std::vector<std::string>>(
      L, [&](auto done) { return c->catalog(registry, p.n, p.limit, o, done); }, names_json);
}

// m = registry.manifest{image=, ...}: {digest, media_type, size, raw, manifest}
int l_manifest(lua_State* L) {
  ImageCall a = image_call(L, "manifest");
  auto c = client_of(L);
  return suspend_json<Manifest>(L, [&](auto done) { return c->manifest(a.image, a.options, done); },
                                [name = a.image.name()](const Manifest& m) {
                                  json r = resolved_json(m.resolved, name);
                                  r["raw"] = m.bytes;
                                  r["manifest"] = m.content.json;
                                  return r;
                                });
}

// r = registry.delete{image=, ...}
int l_delete(lua_State* L) {
  ImageCall a = image_call(L, "delete");
  auto c = client_of(L);
  return suspend_json<CopyResult>(L, [&](auto done) { return c->remove(a.image, a.options, done); }, [](const CopyResult& r) {
    json out = result_json(r, false);
    if (!r.planned) out["deleted"] = true;
    return out;
  });
}

// r = registry.copy{from=, to=, auth=, from_auth=, to_auth=, concurrency=, ...}
int l_copy(lua_State* L) {
  json j = args(L, "copy");
  Reference from = Reference::parse(str(j, "copy", "from"));
  Reference to = Reference::parse(str(j, "copy", "to"));
  CallOptions o = call_options(L, j, "copy", {from.registry, to.registry});
  if (j.contains("from_auth")) o.credentials[from.registry] = credentials(j, "copy", "from_auth");
  if (j.contains("to_auth")) o.credentials[to.registry] = credentials(j, "copy", "to_auth");
  if (o.concurrency < 1) throw Error(Code::invalid_argument, "registry.copy: concurrency must be >= 1");
  auto c = client_of(L);
  return suspend_json<CopyResult>(L, [&](auto done) { return c->copy(from, to, o, done); },
                              [](const CopyResult& r) { return result_json(r, true); });
}

// r = registry.retag{image=, tag=, ...}
int l_retag(lua_State* L) {
  json j = args(L, "retag");
  Reference image = Reference::parse(str(j, "retag", "image"));
  std::string tag = str(j, "retag", "tag");
  Reference::parse(image.name() + ":" + tag);  // validates the tag, naming it
  CallOptions o = call_options(L, j, "retag", {image.registry});
  auto c = client_of(L);
  return suspend_json<CopyResult>(L, [&](auto done) { return c->retag(image, tag, o, done); },
                              [](const CopyResult& r) { return result_json(r, false); });
}

// refresh_token = registry.exchange_acr_token{registry=, aad_token=, timeout=, attempts=}
int l_exchange_acr_token(lua_State* L) {
  json j = args(L, "exchange_acr_token");
  std::string registry = parse_registry_host(str(j, "exchange_acr_token", "registry"));
  std::string aad = str(j, "exchange_acr_token", "aad_token");
  CallOptions o = call_options(L, j, "exchange_acr_token", {});
  auto c = client_of(L);
  return suspend_json<std::string>(L, [&](auto done) { return c->exchange_acr_token(registry, aad, o, done); },
                                   [](const std::string& t) { return json(t); });
}

// registry.login{registry=, username=, password=} | {registry=, token=} | {registry=, aad_token=}
int l_login(lua_State* L) {
  json j = args(L, "login");
  std::string registry = parse_registry_host(str(j, "login", "registry"));
  json wrapped = {{"auth", j}};
  Credentials c = credentials(wrapped, "login", "auth");
  c.source = "login";
  if (!c.password.empty() && c.username.empty())
    throw Error(Code::invalid_argument, "registry.login: a password needs a username");
  client_of(L)->login(registry, c);
  lua_pushstring(L, registry.c_str());
  return 1;
}

// registry.logout{registry=}
int l_logout(lua_State* L) {
  json j = args(L, "logout");
  client_of(L)->logout(parse_registry_host(str(j, "logout", "registry")));
  return 0;
}

const luaL_Reg kFunctions[] = {
    {"resolve", protect<l_resolve>},   {"exists", protect<l_exists>},   {"tags", protect<l_tags>},
    {"catalog", protect<l_catalog>},   {"manifest", protect<l_manifest>}, {"delete", protect<l_delete>},
    {"copy", protect<l_copy>},         {"retag", protect<l_retag>},     {"login", protect<l_login>},
    {"logout", protect<l_logout>},     {"exchange_acr_token", protect<l_exchange_acr_token>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_registry(lua_State* L) {
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace hoist::lua
