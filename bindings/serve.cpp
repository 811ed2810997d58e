// hoist.native.serve: the HTTP(S) listener of `hoist serve` (engine/serve/listener.cpp) and
// the HMAC and constant-time comparison its signatures need. What a request means is decided
// in stdlib/hoist/serve.lua.
#include "bindings/runtime.hpp"

#include <hoist/serve.hpp>

#include <deque>
#include <memory>
#include <optional>

namespace hoist::lua {
namespace {

const char* const kServerMeta = "hoist.Server";
const char* const kReplyMeta = "hoist.ServeReply";

struct ServerState {
  std::unique_ptr<serve::Listener> listener;
  std::deque<std::pair<serve::Request, serve::Respond>> ready;
  std::optional<Resumer> waiter;
  void wake() {
    if (auto w = std::exchange(waiter, std::nullopt)) w->ok([](lua_State*) { return 0; });
  }
};

struct ServerBox {
  std::shared_ptr<ServerState> state;
};

struct ReplyBox {
  serve::Respond* respond;
};

ServerState& check_server(lua_State* L) {
  auto* box = static_cast<ServerBox*>(luaL_checkudata(L, 1, kServerMeta));
  if (!box->state || !box->state->listener) throw Error(Code::invalid_argument, "the server is closed");
  return *box->state;
}

// server = serve.listen{host=, port=, tls_cert=, tls_key=, max_body=, max_connections=, read_timeout=}
int l_listen(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  serve::ListenOptions o;
  o.host = opt_string(L, 1, "host", "127.0.0.1");
  double port = opt_number(L, 1, "port", 0);
  if (port < 0 || port > 65535) throw Error(Code::invalid_argument, "serve.listen: port must be 0..65535");
  o.port = static_cast<std::uint16_t>(port);
  o.tls_cert = opt_string(L, 1, "tls_cert");
  o.tls_key = opt_string(L, 1, "tls_key");
  o.max_body = static_cast<std::size_t>(opt_number(L, 1, "max_body", static_cast<double>(o.max_body)));
  o.max_connections = static_cast<std::size_t>(opt_number(L, 1, "max_connections", static_cast<double>(o.max_connections)));
  o.read_timeout = std::chrono::milliseconds(static_cast<long>(opt_number(L, 1, "read_timeout", 10) * 1000));
  Runtime& rt = Runtime::from(L);
  auto state = std::make_shared<ServerState>();
  std::weak_ptr<ServerState> weak = state;
  EventBus* events = &rt.events();
  state->listener = std::make_unique<serve::Listener>(
      rt.io(), o,
      [weak](serve::Request r, serve::Respond respond) {
        auto s = weak.lock();
        if (!s) return respond(serve::Response{503, "{\"status\":503,\"error\":\"the server is stopping\"}"});
        s->ready.emplace_back(std::move(r), std::move(respond));
        s->wake();
      },
      [events](const std::string& remote, int status, const std::string& why) {
        events->emit(Event{0, status >= 400 && status < 500 ? "warn" : "info", "serve.refused",
                           (status ? std::to_string(status) + " to " : "dropped ") + remote + ": " + why,
                           {{"status", status}, {"remote", remote}, {"reason", why}}});
      });
  auto* box = new (lua_newuserdata(L, sizeof(ServerBox))) ServerBox{std::move(state)};
  (void)box;
  luaL_getmetatable(L, kServerMeta);
  lua_setmetatable(L, -2);
  return 1;
}

void push_request(lua_State* L, serve::Request& r, serve::Respond respond) {
  lua_createtable(L, 0, 7);
  lua_pushlstring(L, r.method.data(), r.method.size());
  lua_setfield(L, -2, "method");
  auto q = r.target.find('?');
  std::string path = r.target.substr(0, q);
  lua_pushlstring(L, path.data(), path.size());
  lua_setfield(L, -2, "path");
  std::string query = q == std::string::npos ? "" : r.target.substr(q + 1);
  lua_pushlstring(L, query.data(), query.size());
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, r.remote.data(), r.remote.size());
  lua_setfield(L, -2, "remote");
  lua_newtable(L);
  for (auto& [k, v] : r.headers) {
    lua_getfield(L, -1, k.c_str());
    if (lua_isstring(L, -1)) {  // repeated header: joined as HTTP does
      std::string joined = std::string(lua_tostring(L, -1)) + ", " + v;
      lua_pop(L, 1);
      lua_pushlstring(L, joined.data(), joined.size());
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v.data(), v.size());
    }
    lua_setfield(L, -2, k.c_str());
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r.body.data(), r.body.size());
  lua_setfield(L, -2, "body");
  auto* reply = static_cast<ReplyBox*>(lua_newuserdata(L, sizeof(ReplyBox)));
  reply->respond = new serve::Respond(std::move(respond));
  luaL_getmetatable(L, kReplyMeta);
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "reply");
}

// request|nil = server:next()   {method=, path=, query=, remote=, headers={name=value}, body=, reply=}
// without waiting: nil when none is ready (then server:wait())
int l_next(lua_State* L) {
  auto& s = check_server(L);
  if (s.ready.empty()) {
    lua_pushnil(L);
    return 1;
  }
  auto item = std::move(s.ready.front());
  s.ready.pop_front();
  push_request(L, item.first, std::move(item.second));
  return 1;
}

// ok = server:wait(): until a request is ready (server:next() then has it)
int l_wait(lua_State* L) {
  auto* box = static_cast<ServerBox*>(luaL_checkudata(L, 1, kServerMeta));
  auto state = box->state;
  if (!state || !state->listener) throw Error(Code::invalid_argument, "the server is closed");
  if (!state->ready.empty()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (state->waiter) throw Error(Code::invalid_argument, "server:wait(): another task is already waiting");
  return suspend(L, [&](Resumer r) -> OperationPtr {
    state->waiter = r;
    std::weak_ptr<ServerState> weak = state;
    return std::make_shared<FunctionOperation>([weak] {
      if (auto s = weak.lock()) s->waiter.reset();
    });
  });
}

// port = server:port()
int l_port(lua_State* L) {
  lua_pushinteger(L, check_server(L).listener->port());
  return 1;
}

// bool = server:tls()
int l_tls(lua_State* L) {
  lua_pushboolean(L, check_server(L).listener->tls());
  return 1;
}

// server:close(): stops accepting; requests not taken are answered 503. Idempotent.
int l_close(lua_State* L) {
  auto* box = static_cast<ServerBox*>(luaL_checkudata(L, 1, kServerMeta));
  if (auto s = std::exchange(box->state, nullptr)) {
    if (s->listener) s->listener->close();
    for (auto& [r, respond] : s->ready)
      respond(serve::Response{503, "{\"status\":503,\"error\":\"the server is stopping\"}"});
    s->ready.clear();
    s->wake();
  }
  return 0;
}

int l_server_tostring(lua_State* L) {
  auto* box = static_cast<ServerBox*>(luaL_checkudata(L, 1, kServerMeta));
  std::string s = box->state && box->state->listener
                      ? "hoist.Server(" + std::string(box->state->listener->tls() ? "https" : "http") + " port " +
                            std::to_string(box->state->listener->port()) + ")"
                      : std::string("hoist.Server(closed)");
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

// reply:send{status=, body=, content_type=, headers={name=value}}: answers once; later calls do nothing
int l_send(lua_State* L) {
  auto* box = static_cast<ReplyBox*>(luaL_checkudata(L, 1, kReplyMeta));
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!box->respond) return 0;
  serve::Response r;
  r.status = static_cast<int>(opt_number(L, 2, "status", 200));
  if (r.status < 100 || r.status > 599) throw Error(Code::invalid_argument, "reply:send: status must be 100..599");
  r.body = opt_string(L, 2, "body");
  r.content_type = opt_string(L, 2, "content_type", "application/json");
  lua_getfield(L, 2, "headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
        r.headers.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  std::unique_ptr<serve::Respond> respond(std::exchange(box->respond, nullptr));
  (*respond)(std::move(r));
  return 0;
}

// reply:__gc: a request dropped unanswered gets 500 (from the listener's guard)
int l_reply_gc(lua_State* L) {
  auto* box = static_cast<ReplyBox*>(luaL_checkudata(L, 1, kReplyMeta));
  delete std::exchange(box->respond, nullptr);
  return 0;
}

int l_reply_tostring(lua_State* L) {
  auto* box = static_cast<ReplyBox*>(luaL_checkudata(L, 1, kReplyMeta));
  lua_pushstring(L, box->respond ? "hoist.ServeReply(open)" : "hoist.ServeReply(sent)");
  return 1;
}

// bytes = serve.hmac_sha256(key, data): 32 raw bytes
int l_hmac_sha256(lua_State* L) {
  size_t kn, dn;
  const char* k = luaL_checklstring(L, 1, &kn);
  const char* d = luaL_checklstring(L, 2, &dn);
  auto out = serve::hmac_sha256({k, kn}, {d, dn});
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// bytes = serve.sha256(data): 32 raw bytes
int l_sha256(lua_State* L) {
  size_t n;
  const char* d = luaL_checklstring(L, 1, &n);
  auto out = serve::sha256({d, n});
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// bool = serve.same_bytes(a, b): constant time for equal lengths (CRYPTO_memcmp)
int l_same_bytes(lua_State* L) {
  size_t an, bn;
  const char* a = luaL_checklstring(L, 1, &an);
  const char* b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, serve::same_bytes({a, an}, {b, bn}));
  return 1;
}

const luaL_Reg kMethods[] = {
    {"next", protect<l_next>},
    {"wait", protect<l_wait>},
    {"port", protect<l_port>},
    {"tls", protect<l_tls>},
    {"close", protect<l_close>},
    {nullptr, nullptr},
};

const luaL_Reg kReplyMethods[] = {
    {"send", protect<l_send>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"listen", protect<l_listen>},
    {"hmac_sha256", protect<l_hmac_sha256>},
    {"sha256", protect<l_sha256>},
    {"same_bytes", protect<l_same_bytes>},
    {nullptr, nullptr},
};

}  // namespace

int luaopen_hoist_serve(lua_State* L) {
  luaL_newmetatable(L, kReplyMeta);
  lua_newtable(L);
  luaL_register(L, nullptr, kReplyMethods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, protect<l_reply_gc>);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, protect<l_reply_tostring>);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  return open_module_with_class(L, kServerMeta, kMethods, protect<l_close>, protect<l_server_tostring>, kFunctions);
}

}  // namespace hoist::lua
