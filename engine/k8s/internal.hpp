#pragma once
// Private to engine/k8s: credentials (tokens, token files, exec plugins, TLS files), the
// client's state, and the small helpers its files share.
#include <hoist/k8s.hpp>
#include <hoist/rest.hpp>

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace hoist::k8s::detail {
std::string read_text_file(const std::string& path, const std::string& what);
// RFC 3339 ("2026-01-02T03:04:05Z", fractions and offsets allowed) as unix seconds; nullopt
// when malformed.
std::optional<double> parse_rfc3339(std::string_view text);

// A call's context: the REST layer's plus the server-side dry run.
struct CallCtx : rest::Context {
  CallCtx(boost::asio::io_context& io, const CallOptions& o, EventBus* events, std::shared_ptr<const Secrets> secrets)
      : rest::Context(io, o, events, std::move(secrets)), server_dry_run(o.server_dry_run) {}
  bool server_dry_run;
};
bool server_dry_run(const rest::ContextPtr& ctx);

// A 0600 file holding `content` for as long as the object lives (libcurl reads PEM from files).
class TempFile {
 public:
  TempFile(const std::string& content, const std::string& name);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What an exec plugin handed back.
struct ExecCredential {
  std::string token, client_cert, client_key;  // PEM for the pair
  std::optional<double> expires;               // unix seconds; none = valid for the run
};
// Parses a plugin's stdout (an ExecCredential of the plugin's apiVersion). Throws
// unauthorized naming the plugin and what is wrong.
ExecCredential parse_exec_credential(std::string_view output, const ExecConfig& exec);
// The KUBERNETES_EXEC_INFO value for a plugin.
std::string exec_info(const ExecConfig& exec, const Cluster& cluster);

// One cluster user's credentials for every request: a static token, a token file (re-read
// after a minute or a 401), or an exec plugin (run once, cached until its expiry, run again
// after a 401); client certificates as files. Tokens and keys are registered as secrets.
class Auth {
 public:
  Auth(boost::asio::io_context& io, const Config& config, std::shared_ptr<Secrets> secrets);
  // The Authorization header ("" = none: client certificates or anonymous).
  Task<std::string> authorization(rest::ContextPtr ctx);
  // A 401: forget what may be stale; true when asking again may succeed.
  bool renew();
  // CA, client certificate and key for a request (after authorization(): an exec plugin may
  // hand out a certificate).
  void tls(HttpRequest& h) const;
  int exec_runs() const { return exec_runs_; }

 private:
  Task<void> run_plugin(rest::ContextPtr ctx);
  void keep_secret(const std::string& value) const;

  boost::asio::io_context& io_;
  Config config_;
  std::shared_ptr<Secrets> secrets_;
  std::unique_ptr<TempFile> ca_, cert_, key_, exec_cert_, exec_key_;
  std::string file_token_;
  std::chrono::steady_clock::time_point file_read_{};
  std::optional<ExecCredential> exec_;
  bool exec_running_ = false;
  std::shared_ptr<boost::asio::steady_timer> exec_done_;  // wakes calls waiting on a run
  int exec_runs_ = 0;
};

class Hub;

// At most `limit` requests at once (Config::max_requests); acquire() waits for a slot, the
// slot is given back when the returned object goes.
class RequestSlots : public std::enable_shared_from_this<RequestSlots> {
 public:
  RequestSlots(boost::asio::io_context& io, int limit) : io_(io), limit_(std::max(limit, 1)) {}
  using Slot = std::shared_ptr<void>;
  Task<Slot> acquire(rest::ContextPtr ctx);

 private:
  struct Waiter {
    explicit Waiter(boost::asio::io_context& io) : turn(io, std::chrono::steady_clock::time_point::max()) {}
    boost::asio::steady_timer turn;
    bool granted = false;
  };
  void release();
  boost::asio::io_context& io_;
  int limit_, used_ = 0;
  std::deque<std::shared_ptr<Waiter>> waiting_;
};

class ClientImpl : public Client {
 public:
  ClientImpl(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets, EventBus* events,
             Config config);
  const Config& config() const override { return config_; }
  OperationPtr run(CallOptions o, std::function<Task<nlohmann::json>(Ctx)> body,
                   Completion<nlohmann::json> done) override;

  Task<Resource> resource(Ctx ctx, std::string api_version, std::string kind) override;
  Task<nlohmann::json> get(Ctx ctx, Target t) override;
  Task<nlohmann::json> list(Ctx ctx, Target t, ListOptions o) override;
  Task<nlohmann::json> create(Ctx ctx, nlohmann::json object, std::string namespace_) override;
  Task<nlohmann::json> patch(Ctx ctx, Target t, std::string patch, std::string_view type) override;
  Task<nlohmann::json> remove(Ctx ctx, Target t, std::string propagation) override;
  Task<nlohmann::json> apply(Ctx ctx, nlohmann::json object, std::string namespace_, bool force) override;
  Task<nlohmann::json> logs(Ctx ctx, Target pod, std::string container, int tail_lines, bool previous) override;
  std::shared_ptr<Watch> watch(Target t, WatchOptions o, CallOptions call) override;
  void forget_discovery() override { groups_.clear(), group_list_.reset(); }
  int shared_streams() const override;

  // ---- shared with watch.cpp
  boost::asio::io_context& io() { return io_; }
  EventBus* events() const { return events_; }
  const std::shared_ptr<Secrets>& secrets() const { return secrets_; }
  const rest::Client& rest() const { return rest_; }
  // A request to `path` ("/api/v1/...", query included) with auth and TLS wired in.
  rest::Request request(Ctx ctx, std::string method, std::string path, std::string what);
  // Runs an exec plugin first when its client certificate is needed for the TLS handshake.
  Task<void> ready(Ctx ctx, rest::Request& req);
  // Sends; a non-2xx answer is thrown as the structured error. The body parsed as JSON
  // (null when planned in dry-run).
  Task<nlohmann::json> call(Ctx ctx, rest::Request req);
  std::string ns_of(const Target& t) const { return t.namespace_.empty() ? config_.namespace_ : t.namespace_; }
  // The collection path for t (all namespaces when asked or cluster-scoped).
  Task<std::string> collection(Ctx ctx, const Target& t, Resource* out = nullptr);
  // ---- shared with shared_watch.cpp: the hubs of shared watches, by collection path
  std::map<std::string, std::weak_ptr<Hub>>& hubs() { return hubs_; }

 private:
  Task<nlohmann::json> group_version(Ctx ctx, std::string gv);
  Task<std::optional<Resource>> find_in(Ctx ctx, std::string gv, std::string kind);

  boost::asio::io_context& io_;
  HttpClient& http_;
  rest::Client rest_;
  std::shared_ptr<Secrets> secrets_;
  EventBus* events_;
  Config config_;
  std::shared_ptr<Auth> auth_;
  std::map<std::string, nlohmann::json> groups_;  // "apps/v1" -> its APIResourceList
  std::optional<std::vector<std::string>> group_list_;  // preferred group versions, core first
  std::map<std::string, std::weak_ptr<Hub>> hubs_;
  std::shared_ptr<RequestSlots> slots_;
};

// A watch joining the client's shared stream of its resource and namespace (shared_watch.cpp).
std::shared_ptr<Watch> shared_watch(const std::shared_ptr<ClientImpl>& client, Target t, WatchOptions o, CallOptions call);

}  // namespace hoist::k8s::detail
