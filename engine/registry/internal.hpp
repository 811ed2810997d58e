#pragma once
// Private to engine/registry: the client's state and what its files share. Calls are
// coroutines on the engine/core REST layer (hoist/rest.hpp): each has a CallCtx whose
// cancel() aborts every transfer and timer it has in flight.
#include <hoist/registry.hpp>
#include <hoist/rest.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace hoist::registry::detail {

using rest::Task;

// One public call: the REST context plus what only the registry needs.
struct CallCtx : rest::Context {
  CallCtx(boost::asio::io_context& io, CallOptions o, EventBus* events = nullptr,
          std::shared_ptr<const Secrets> secrets = nullptr)
      : rest::Context(io, o, events, std::move(secrets)),
        credentials(std::move(o.credentials)),
        insecure_registries(std::move(o.insecure_registries)),
        concurrency(o.concurrency),
        buffer(o.buffer) {}
  std::map<std::string, Credentials> credentials;
  std::vector<std::string> insecure_registries;
  int concurrency;
  std::size_t buffer;
};
using Ctx = std::shared_ptr<CallCtx>;

struct Endpoint {
  std::string registry;  // "127.0.0.1:5000", "docker.io"
  std::string base;      // "http://127.0.0.1:5000"
};

// One request to a registry. `target` is a path ("/v2/...") or an absolute URL (upload
// Locations). `scopes` are the token scopes it needs ("repository:app:pull,push").
struct Req {
  Req(std::string method, std::string target, Headers headers, std::string body,
      std::vector<std::string> scopes, std::string what, std::string action = "",
      nlohmann::json fields = nlohmann::json::object())
      : method(std::move(method)), target(std::move(target)), headers(std::move(headers)),
        body(std::move(body)), scopes(std::move(scopes)), what(std::move(what)),
        action(std::move(action)), fields(std::move(fields)) {}
  std::string method;
  std::string target;
  Headers headers;
  std::string body;
  std::vector<std::string> scopes;
  std::string what;    // for error messages: "resolve 127.0.0.1:5000/app:v1"
  std::string action;  // its plan step in dry-run ("put_manifest")
  nlohmann::json fields;  // the plan step's digest, size
};

std::string absolute_url(const Endpoint& ep, const std::string& target);
std::string repo_scope(const std::string& repository, const std::string& actions);
// A registry's error body: its errors[] (kept in details), else a token server's error.
rest::RemoteError registry_error_body(const HttpResponse& resp);
// "user 'hoist' from registry.login": who the credentials are, never what.
std::string describe(const Credentials& c);
// `res` as a dry-run's answer: planned, with the steps the call planned.
CopyResult planned_result(const Ctx& ctx, CopyResult res);
Error digest_mismatch(const std::string& what, const std::string& expected, const std::string& actual);

struct CachedToken {
  std::string token;
  std::chrono::steady_clock::time_point expires;
};

class ClientImpl : public Client {
 public:
  ClientImpl(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
             EventBus* events, ClientOptions options);

  void login(const std::string& registry, Credentials credentials) override;
  void logout(const std::string& registry) override;
  OperationPtr resolve(Reference image, CallOptions o, Completion<Resolved> done) override;
  OperationPtr exists(Reference image, CallOptions o, Completion<bool> done) override;
  OperationPtr tags(Reference repository, int page_size, int limit, CallOptions o,
                    Completion<std::vector<std::string>> done) override;
  OperationPtr catalog(std::string registry, int page_size, int limit, CallOptions o,
                       Completion<std::vector<std::string>> done) override;
  OperationPtr manifest(Reference image, CallOptions o, Completion<Manifest> done) override;
  OperationPtr remove(Reference image, CallOptions o, Completion<CopyResult> done) override;
  OperationPtr copy(Reference from, Reference to, CallOptions o, Completion<CopyResult> done) override;
  OperationPtr retag(Reference image, std::string tag, CallOptions o,
                     Completion<CopyResult> done) override;
  OperationPtr exchange_acr_token(std::string registry, std::string aad_token, CallOptions o,
                                  Completion<std::string> done) override;

  // ---- shared by the registry files
  boost::asio::io_context& io() { return io_; }
  HttpClient& http() { return http_; }
  const rest::Client& rest() const { return rest_; }
  Endpoint endpoint(const Ctx& ctx, const std::string& registry) const;

  // Sends on the REST layer with auth (challenge, token, one re-auth on 401); retries and
  // dry-run per the context. Returns any final HTTP status; throws transport errors.
  Task<rest::Response> send(Ctx ctx, Endpoint ep, Req req);
  rest::Request rest_request(const Ctx& ctx, const Endpoint& ep, const Req& req);
  // The error for a registry's answer; a 401 says whether credentials were missing or refused.
  Error status_error(const Ctx& ctx, const HttpResponse& resp, const Req& req, const Endpoint& ep) const;
  [[noreturn]] void fail(const Ctx& ctx, const HttpResponse& resp, const Req& req, const Endpoint& ep) const;
  // The Authorization header for a request needing `scopes` ("" = none known yet).
  Task<std::string> authorization(Ctx ctx, Endpoint ep, std::vector<std::string> scopes);
  // Records a 401's challenge and drops cached tokens so the next authorization() renews.
  void on_unauthorized(const Endpoint& ep, const HttpResponse& resp);

  Task<Resolved> do_resolve(Ctx ctx, Reference image);
  Task<Manifest> get_manifest(Ctx ctx, Endpoint ep, std::string repository, std::string target,
                              std::vector<std::string> scopes, std::string what);
  // get_manifest, except that in dry-run a missing source is not an error (an earlier
  // planned step may be what would create it): nullopt, and a warning in the plan.
  Task<std::optional<Manifest>> planned_source(Ctx ctx, Endpoint ep, std::string repository,
                                               std::string target, std::vector<std::string> scopes,
                                               std::string what);
  Task<CopyResult> do_copy(Ctx ctx, Reference from, Reference to);
  // Streams one blob from `src` to an upload `location` on `dst` (bytes hashed on the way).
  Task<std::int64_t> stream_blob(Ctx ctx, Endpoint src, std::string src_repo, Endpoint dst,
                                 std::vector<std::string> dst_scopes, std::string location,
                                 Descriptor blob);

  template <class T>
  OperationPtr start(CallOptions o, std::function<Task<T>(Ctx)> body, Completion<T> done);

 private:
  Task<Credentials> credentials_for(Ctx ctx, std::string registry);
  Task<Credentials> from_helper(Ctx ctx, std::string helper, std::string registry);
  Task<std::string> bearer_token(Ctx ctx, Endpoint ep, Challenge ch, std::vector<std::string> scopes,
                                 Credentials creds);
  Task<std::string> acr_refresh_token(Ctx ctx, Endpoint ep, Challenge ch, Credentials creds);
  Task<nlohmann::json> token_request(Ctx ctx, rest::Request req, Credentials creds);
  void remember(const Credentials& c);
  // The credentials a call uses for a registry, once looked up (null before).
  const Credentials* known_credentials(const Ctx& ctx, const std::string& registry) const;

  boost::asio::io_context& io_;
  HttpClient& http_;
  rest::Client rest_;
  std::shared_ptr<Secrets> secrets_;
  EventBus* events_;
  ClientOptions options_;
  std::map<std::string, Credentials> logins_;
  std::map<std::string, Credentials> configured_;   // from config.json / helpers, per run
  std::map<std::string, Challenge> challenges_;     // what each registry asked for
  std::map<std::string, CachedToken> tokens_;       // registry|who|scopes
  std::map<std::string, std::string> refresh_tokens_;  // registry|who -> ACR refresh token
};

}  // namespace hoist::registry::detail

// ------------------------------------------------------------------ template definitions

namespace hoist::registry::detail {

template <class T>
OperationPtr ClientImpl::start(CallOptions o, std::function<Task<T>(Ctx)> body, Completion<T> done) {
  auto ctx = std::make_shared<CallCtx>(io_, std::move(o), events_, secrets_);
  auto self = std::static_pointer_cast<ClientImpl>(shared_from_this());
  return rest::spawn<T, CallCtx>(ctx, std::move(body), [self, done = std::move(done)](Outcome<T> out) {
    done(std::move(out));
  });
}

}  // namespace hoist::registry::detail
