// hoist.native.k8s: the Kubernetes client (engine/k8s) for Lua. A client is a hoist.Kube
// userdata, a watch a hoist.KubeWatch; every waiting call yields and returns `ok, ...` to the
// wrapper in stdlib/hoist/k8s.lua. Option checking and defaults live there.
#include "bindings/json_bridge.hpp"
#include "bindings/rest_options.hpp"
#include "bindings/runtime.hpp"

#include <hoist/k8s.hpp>

namespace hoist::lua {
namespace {

using namespace hoist::k8s;
using nlohmann::json;

const char* const kKubeMeta = "hoist.Kube";
const char* const kWatchMeta = "hoist.KubeWatch";

struct KubeBox {
  std::shared_ptr<Client> client;
};
struct WatchBox {
  std::shared_ptr<Watch> watch;
};

KubeBox* kube(lua_State* L) { return static_cast<KubeBox*>(luaL_checkudata(L, 1, kKubeMeta)); }
WatchBox* watch_box(lua_State* L) { return static_cast<WatchBox*>(luaL_checkudata(L, 1, kWatchMeta)); }

json opts(lua_State* L, int index) {
  if (!lua_istable(L, index)) throw Error(Code::invalid_argument, "hoist.k8s: expected an options table");
  return to_json(L, index);
}

std::string s(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

Target target(const json& j) {
  return Target{s(j, "api_version"), s(j, "kind"), s(j, "name"), s(j, "namespace"), j.value("all_namespaces", false)};
}

CallOptions call_options(lua_State* L, const json& j) {
  CallOptions o;
  read_rest_options(L, j, "hoist.k8s", o);
  o.server_dry_run = j.value("server_dry_run", false);
  return o;
}

// Runs body on the client's loop and resumes the fiber with its JSON result.
int wait_json(lua_State* L, const std::shared_ptr<Client>& c, CallOptions o,
              std::function<Task<json>(Client::Ctx)> body) {
  return suspend(L, [&](Resumer r) -> OperationPtr {
    return c->run(o, body, [r](Outcome<json> out) {
      if (!out) return r.fail(out.error());
      r.ok([j = std::move(out.value())](lua_State* co) {
        push_json(co, j);
        return 1;
      });
    });
  });
}

// kube = k8s.client{kubeconfig=, context=, namespace=, service_account_dir=, max_requests=}
int l_client(lua_State* L) {
  json j = opts(L, 1);
  LoadOptions lo;
  lo.kubeconfig = s(j, "kubeconfig");
  lo.context = s(j, "context");
  lo.namespace_ = s(j, "namespace");
  if (auto dir = s(j, "service_account_dir"); !dir.empty()) lo.service_account_dir = dir;
  Config config = load_config(lo);
  config.max_requests = j.value("max_requests", config.max_requests);
  Runtime& rt = Runtime::from(L);
  auto* box = new (lua_newuserdata(L, sizeof(KubeBox)))
      KubeBox{Client::create(rt.io(), HttpClient::for_loop(rt.io()), rt.events().secrets(), &rt.events(), std::move(config))};
  luaL_getmetatable(L, kKubeMeta);
  lua_setmetatable(L, -2);
  (void)box;
  return 1;
}

// {context, namespace, server, cluster, user, source, shared_streams} = kube:info()
int l_info(lua_State* L) {
  const auto& client = kube(L)->client;
  const Config& c = client->config();
  push_json(L, {{"context", c.context}, {"namespace", c.namespace_}, {"server", c.cluster.server},
                {"cluster", c.cluster_name}, {"user", c.user_name}, {"source", c.source},
                {"shared_streams", client->shared_streams()}});
  return 1;
}

// ok, obj = kube:get{api_version=, kind=, name=, namespace=}
int l_get(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  Target t = target(j);
  return wait_json(L, c, call_options(L, j), [c, t](Client::Ctx ctx) { return c->get(ctx, t); });
}

// ok, list = kube:list{api_version=, kind=, namespace=, all_namespaces=, label_selector=, field_selector=, limit=, page_size=}
int l_list(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  Target t = target(j);
  ListOptions lo{s(j, "label_selector"), s(j, "field_selector"), j.value("page_size", 500), j.value("limit", 0)};
  return wait_json(L, c, call_options(L, j), [c, t, lo](Client::Ctx ctx) { return c->list(ctx, t, lo); });
}

// ok, obj = kube:create{object=, namespace=}
int l_create(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  json obj = check_manifests(j.value("object", json())).at(0);
  std::string ns = s(j, "namespace");
  return wait_json(L, c, call_options(L, j), [c, obj, ns](Client::Ctx ctx) { return c->create(ctx, obj, ns); });
}

// ok, obj = kube:apply{object=, namespace=, force=}
int l_apply(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  json obj = check_manifests(j.value("object", json())).at(0);
  std::string ns = s(j, "namespace");
  bool force = j.value("force", false);
  return wait_json(L, c, call_options(L, j), [c, obj, ns, force](Client::Ctx ctx) { return c->apply(ctx, obj, ns, force); });
}

// ok, obj = kube:patch{kind=, name=, patch= (table or text), type= "merge"|"strategic"|"json"}
int l_patch(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  Target t = target(j);
  std::string type = s(j, "type");
  std::string_view media = type == "strategic" ? PatchType::strategic : type == "json" ? PatchType::json : PatchType::merge;
  const json& p = j.contains("patch") ? j["patch"] : json();
  std::string body = p.is_string() ? p.get<std::string>() : p.dump();
  return wait_json(L, c, call_options(L, j), [c, t, body, media](Client::Ctx ctx) { return c->patch(ctx, t, body, media); });
}

// ok, status = kube:delete{kind=, name=, namespace=, propagation=}
int l_delete(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  Target t = target(j);
  std::string propagation = s(j, "propagation");
  return wait_json(L, c, call_options(L, j), [c, t, propagation](Client::Ctx ctx) { return c->remove(ctx, t, propagation); });
}

// ok, {group, version, kind, name, namespaced, verbs} = kube:resource{api_version=, kind=}
int l_resource(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  std::string av = s(j, "api_version"), kind = s(j, "kind");
  return wait_json(L, c, call_options(L, j), [c, av, kind](Client::Ctx ctx) -> Task<json> {
    Resource r = co_await c->resource(ctx, av, kind);
    co_return json{{"group", r.group}, {"version", r.version}, {"api_version", r.api_version()}, {"kind", r.kind},
                   {"name", r.name}, {"namespaced", r.namespaced}, {"verbs", r.verbs}};
  });
}

// ok, text = kube:logs{name=, namespace=, container=, tail_lines=, previous=}
int l_logs(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  Target t{"v1", "Pod", s(j, "name"), s(j, "namespace"), false};
  std::string container = s(j, "container");
  int tail = j.value("tail_lines", 0);
  bool previous = j.value("previous", false);
  return wait_json(L, c, call_options(L, j), [c, t, container, tail, previous](Client::Ctx ctx) {
    return c->logs(ctx, t, container, tail, previous);
  });
}

// w = kube:watch{kind=, namespace=, label_selector=, field_selector=, resource_version=, timeout_seconds=, max_queued=, shared=}
int l_watch(lua_State* L) {
  auto c = kube(L)->client;
  json j = opts(L, 2);
  WatchOptions wo;
  wo.label_selector = s(j, "label_selector");
  wo.field_selector = s(j, "field_selector");
  wo.page_size = j.value("page_size", wo.page_size);
  wo.resource_version = s(j, "resource_version");
  wo.bookmarks = j.value("bookmarks", true);
  wo.timeout_seconds = j.value("timeout_seconds", wo.timeout_seconds);
  wo.max_queued = j.value("max_queued", wo.max_queued);
  wo.shared = j.value("shared", false);
  auto w = c->watch(target(j), wo, call_options(L, j));
  new (lua_newuserdata(L, sizeof(WatchBox))) WatchBox{w};
  luaL_getmetatable(L, kWatchMeta);
  lua_setmetatable(L, -2);
  return 1;
}

// {type, object} as Lua tables; a LIST's items go inside its object. Built when the fiber
// resumes, one event at a time: the objects are shared with the other watches until then.
void push_event(lua_State* L, const WatchEvent& ev) {
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, ev.type.data(), ev.type.size());
  lua_setfield(L, -2, "type");
  push_json(L, ev.object ? *ev.object : json::object());
  if (ev.type == "LIST") {
    lua_createtable(L, static_cast<int>(ev.items.size()), 0);
    for (std::size_t i = 0; i < ev.items.size(); ++i) {
      push_json(L, *ev.items[i]);
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    lua_setfield(L, -2, "items");
  }
  lua_setfield(L, -2, "object");
}

// ok, event|nil = w:next(timeout)
int l_watch_next(lua_State* L) {
  auto w = watch_box(L)->watch;
  if (!w) throw Error(Code::invalid_argument, "hoist.k8s: the watch is closed");
  double timeout = luaL_optnumber(L, 2, 0);
  return suspend(L, [&](Resumer r) -> OperationPtr {
    return w->next(timeout, [r](Outcome<std::optional<WatchEvent>> out) {
      if (!out) return r.fail(out.error());
      r.ok([ev = std::move(out.value())](lua_State* co) {
        if (!ev) lua_pushnil(co);
        else push_event(co, *ev);
        return 1;
      });
    });
  });
}

// {resource_version, reconnects, relists} = w:info()
int l_watch_info(lua_State* L) {
  auto w = watch_box(L)->watch;
  if (!w) throw Error(Code::invalid_argument, "hoist.k8s: the watch is closed");
  push_json(L, {{"resource_version", w->resource_version()}, {"reconnects", w->reconnects()}, {"relists", w->relists()}});
  return 1;
}

// w:close()  idempotent; also done by __gc
int l_watch_close(lua_State* L) {
  auto* box = watch_box(L);
  if (box->watch) box->watch->close();
  box->watch.reset();
  return 0;
}

int l_watch_gc(lua_State* L) {
  auto* box = static_cast<WatchBox*>(lua_touserdata(L, 1));
  if (box->watch) box->watch->close();
  box->~WatchBox();
  return 0;
}

int l_watch_tostring(lua_State* L) {
  lua_pushstring(L, watch_box(L)->watch ? "hoist.KubeWatch" : "hoist.KubeWatch(closed)");
  return 1;
}

int l_kube_gc(lua_State* L) {
  static_cast<KubeBox*>(lua_touserdata(L, 1))->~KubeBox();
  return 0;
}

int l_kube_tostring(lua_State* L) {
  const Config& c = kube(L)->client->config();
  std::string text = "hoist.Kube(" + (c.context.empty() ? c.source : c.context) + ", " + c.cluster.server + ")";
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

// {verdict, reason, message, progress?, details?} = k8s.classify(obj, crashloop_restarts)
int l_classify(lua_State* L) {
  json obj = to_json(L, 1);
  ClassifyOptions o;
  o.crashloop_restarts = static_cast<int>(luaL_optnumber(L, 2, o.crashloop_restarts));
  push_json(L, classify(obj, o).to_json());
  return 1;
}

// objects = k8s.parse_manifests(text) | k8s.parse_manifests(table)
int l_parse_manifests(lua_State* L) {
  std::vector<json> docs;
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t n;
    const char* text = lua_tolstring(L, 1, &n);
    docs = parse_manifests(std::string_view(text, n));
  } else {
    docs = check_manifests(to_json(L, 1));
  }
  push_json(L, json(docs));
  return 1;
}

const luaL_Reg kKubeMethods[] = {
    {"info", protect<l_info>},     {"get", protect<l_get>},       {"list", protect<l_list>},
    {"create", protect<l_create>}, {"apply", protect<l_apply>},   {"patch", protect<l_patch>},
    {"delete", protect<l_delete>}, {"resource", protect<l_resource>}, {"watch", protect<l_watch>},
    {"logs", protect<l_logs>},
    {nullptr, nullptr},
};

const luaL_Reg kWatchMethods[] = {
    {"next", protect<l_watch_next>}, {"info", protect<l_watch_info>}, {"close", protect<l_watch_close>},
    {nullptr, nullptr},
};

const luaL_Reg kNoFunctions[] = {{nullptr, nullptr}};

const luaL_Reg kFunctions[] = {
    {"client", protect<l_client>},
    {"classify", protect<l_classify>},
    {"parse_manifests", protect<l_parse_manifests>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_k8s(lua_State* L) {
  open_module_with_class(L, kWatchMeta, kWatchMethods, l_watch_gc, protect<l_watch_tostring>, kNoFunctions);
  lua_pop(L, 1);
  return open_module_with_class(L, kKubeMeta, kKubeMethods, l_kube_gc, protect<l_kube_tostring>, kFunctions);
}

}  // namespace hoist::lua
