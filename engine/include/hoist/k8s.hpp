#pragma once
// hoist.k8s: a Kubernetes client on the engine/core REST layer (hoist/rest.hpp): kubeconfig
// (merged files, contexts, certificates, tokens, exec credential plugins, in-cluster service
// account), discovery so any kind maps to its resource, get/list/watch/create/patch/delete and
// server-side apply, Status errors as structured errors, and the status classification rollout
// tracking is built on (pure functions on objects). See docs/kubernetes.md.
#include <hoist/error.hpp>
#include <hoist/events.hpp>
#include <hoist/http.hpp>
#include <hoist/operation.hpp>
#include <hoist/rest.hpp>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hoist::k8s {

using rest::Task;

// ------------------------------------------------------------------ kubeconfig

// users[].user.exec: a credential plugin (kubelogin, aws, gke-gcloud-auth-plugin).
struct ExecConfig {
  std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
  std::string command;      // relative paths with a '/' are relative to the kubeconfig file
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string interactive_mode;  // Never | IfAvailable | Always ("" in v1beta1)
  bool provide_cluster_info = false;
  std::string install_hint;
};

struct Cluster {
  std::string server;  // https://host:port[/path]
  std::string ca_file;
  std::string ca_data;  // PEM (certificate-authority-data decoded)
  bool insecure = false;  // insecure-skip-tls-verify
  std::string proxy_url;  // tls-server-name is refused (not supported), never ignored
};

struct User {
  std::string client_cert_file, client_key_file;
  std::string client_cert_data, client_key_data;  // PEM (decoded)
  std::string token;       // a bearer token as written (a secret)
  std::string token_file;  // read at first use and again after a 401
  std::optional<ExecConfig> exec;
};

// What one context resolves to: where to connect and as whom.
struct Config {
  std::string context;  // "" in-cluster
  std::string cluster_name, user_name;
  std::string namespace_ = "default";
  Cluster cluster;
  User user;
  std::string source;  // "kubeconfig a:b" | "in-cluster"
  // Requests of one client in flight at once (watch streams not counted); the others wait
  // their turn. Each request in flight holds a connection with its TLS state: fifty rollouts
  // starting together would open fifty (client-go limits its clients too: 5/s, bursts of 10).
  int max_requests = 8;
};

struct LoadOptions {
  std::string kubeconfig;  // files joined by ':'; "" = $KUBECONFIG, else ~/.kube/config
  std::string context;     // "" = current-context
  std::string namespace_;  // "" = the context's (else "default")
  // Used when no kubeconfig file exists and KUBERNETES_SERVICE_HOST/PORT are set.
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
};

// One kubeconfig file as JSON (YAML parsed by engine/core/yaml), every relative path in it
// (certificate-authority, client-certificate, client-key, tokenFile, an exec command holding
// '/') made absolute against the file's folder, as kubectl does. Throws invalid_argument
// naming the file.
nlohmann::json read_kubeconfig(const std::string& path);
// kubectl's merge of several files: for clusters, users and contexts the first file that
// names an entry wins; current-context is the first one set.
nlohmann::json merge_kubeconfigs(const std::vector<nlohmann::json>& files);
// The named context (or current-context) of a merged kubeconfig, its cluster and user
// resolved and *-data fields decoded. Throws invalid_argument naming what is missing.
Config select_context(const nlohmann::json& kubeconfig, const std::string& context,
                      const std::string& namespace_override = "", const std::string& source = "");
// The pod's service account: KUBERNETES_SERVICE_HOST/PORT, and token, ca.crt and namespace
// from `dir`. Throws invalid_argument when not inside a cluster.
Config in_cluster_config(const std::string& dir, const std::string& namespace_override = "");
// KUBECONFIG (or ~/.kube/config), else the in-cluster service account.
Config load_config(const LoadOptions& options);

// ------------------------------------------------------------------ objects and resources

// A kind's REST resource, as discovery describes it.
struct Resource {
  std::string group, version, kind, name;  // name: the plural ("deployments")
  bool namespaced = true;
  std::vector<std::string> verbs;
  std::string api_version() const;  // "v1", "apps/v1"
  // "/api/v1" or "/apis/apps/v1", then "/namespaces/<ns>" when namespaced and ns given,
  // then "/<plural>", then "/<name>" when given.
  std::string path(const std::string& ns, const std::string& object_name = "") const;
};

// Which object or objects a call is about. kind may be a Kind, a plural, a singular or a
// short name ("Deployment", "deployments", "deploy"); api_version "" = search every group.
struct Target {
  std::string api_version, kind, name, namespace_;  // namespace_ "" = the client's
  bool all_namespaces = false;                      // list/watch only
};

// Multi-document YAML (or JSON) -> objects, in order; empty documents skipped, `kind: List`
// expanded. Each object must have apiVersion, kind and metadata.name (or generateName).
// Throws invalid_argument naming the document (1-based) and what is missing.
std::vector<nlohmann::json> parse_manifests(std::string_view text);
// Checks objects given as values (a Lua table, one object, a list or an array of them) the
// same way; returns them flattened in order.
std::vector<nlohmann::json> check_manifests(const nlohmann::json& value);

// The structured error for a Kubernetes Status body (rest::Api::parse_error): reason ->
// code (NotFound -> not_found, AlreadyExists/Conflict -> conflict, Invalid/BadRequest ->
// invalid_argument with details.causes, Forbidden, Unauthorized, TooManyRequests -> throttled
// with details.retry_after, Expired/Gone -> not_found with details.reason Expired).
rest::RemoteError status_error_parser(const HttpResponse& response);

// ------------------------------------------------------------------ status classification

// How a rollout stands, from the object alone. `done`, `progressing` and `failed` follow
// `kubectl rollout status` for Deployment, StatefulSet and DaemonSet; Pods and Jobs have
// failure reasons of their own. `suspended`: a paused Deployment or a suspended Job (waiting
// is pointless). `unknown`: no rule for the kind.
enum class Verdict { done, progressing, failed, suspended, unknown };
std::string_view to_string(Verdict verdict);

struct ClassifyOptions {
  int crashloop_restarts = 2;  // a crashed container restarted this often is failing
};

struct Classification {
  Verdict verdict = Verdict::unknown;
  std::string reason;   // ProgressDeadlineExceeded, ImagePullBackOff, CrashLoopBackOff, ...
  std::string message;  // kubectl's words where kubectl has some
  nlohmann::json progress = nlohmann::json::object();  // replicas, updated, ready, available
  nlohmann::json details = nlohmann::json::object();   // container, missing, restarts, ...
  nlohmann::json to_json() const;
};

Classification classify(const nlohmann::json& object, const ClassifyOptions& options = {});

// ------------------------------------------------------------------ the client

// Per call: the REST layer's options plus the server-side dry run.
struct CallOptions : rest::Options {
  bool server_dry_run = false;  // ?dryRun=All on mutating calls: the server validates, stores nothing
};

struct ListOptions {
  std::string label_selector, field_selector;
  int page_size = 500;  // ?limit= per request (0 = let the server decide)
  int limit = 0;        // stop after that many items (0 = all)
};

struct WatchOptions : ListOptions {
  std::string resource_version;  // "" = list first, then watch from the list's version
  bool bookmarks = true;         // allowWatchBookmarks
  int timeout_seconds = 300;     // per watch request; the watch reconnects after it
  std::size_t max_queued = 10000;  // events not yet taken by next() before the watch fails
  // Join the client's one namespace-wide stream of this resource and namespace (opened by
  // the first shared watch, closed with the last) instead of a stream of its own; the
  // selectors are evaluated on our side (Selector). resource_version must be "".
  bool shared = false;
};

// A label selector and a field selector evaluated on our side as the API server evaluates
// them (shared watches filter one namespace-wide stream with it). Label selectors in full:
// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas; field
// selectors `=`, `==`, `!=` on metadata.name and metadata.namespace only. parse() throws
// invalid_argument naming the selector and what is wrong in it.
class Selector {
 public:
  static Selector parse(std::string_view labels, std::string_view fields = {});
  bool matches(const nlohmann::json& object) const;
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { equals, not_equals, in, not_in, exists, not_exists };
  struct Requirement {
    bool field = false;  // metadata.<key> rather than metadata.labels[key]
    std::string key;
    Op op = Op::exists;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

struct PatchType {
  static constexpr std::string_view merge = "application/merge-patch+json";
  static constexpr std::string_view strategic = "application/strategic-merge-patch+json";
  static constexpr std::string_view json = "application/json-patch+json";
  static constexpr std::string_view apply = "application/apply-patch+yaml";
};

// One watch event: ADDED, MODIFIED, DELETED or BOOKMARK as the server sends it, or LIST: the
// initial list and each relist after 410 Gone (a consumer replaces what it knew), with the
// list's apiVersion, kind and metadata in `object` and its objects in `items`. Objects are
// shared and never changed once made: a shared watch hands one object to every watch that
// selects it rather than a copy each.
struct WatchEvent {
  std::string type;
  std::shared_ptr<const nlohmann::json> object;
  std::vector<std::shared_ptr<const nlohmann::json>> items;  // LIST only
  nlohmann::json to_json() const;  // {type, object}, a LIST's items inside its object
};

// A watch in progress. A dropped stream reconnects from the last resourceVersion seen.
class Watch {
 public:
  virtual ~Watch() = default;
  // The next event; nullopt after `timeout` seconds without one (0 = wait forever); the
  // watch's error when it failed. One next() at a time.
  virtual OperationPtr next(double timeout, Completion<std::optional<WatchEvent>> done) = 0;
  virtual void close() = 0;
  virtual std::string resource_version() const = 0;
  virtual int reconnects() const = 0;
  virtual int relists() const = 0;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  // Secrets of the config (tokens, key data) are registered with `secrets`.
  static std::shared_ptr<Client> create(boost::asio::io_context& io, HttpClient& http,
                                        std::shared_ptr<Secrets> secrets, EventBus* events, Config config);
  virtual ~Client() = default;
  virtual const Config& config() const = 0;

  // Runs body on the loop with a fresh call context (retry policy, dry run, cancellation).
  using Ctx = rest::ContextPtr;
  virtual OperationPtr run(CallOptions o, std::function<Task<nlohmann::json>(Ctx)> body,
                           Completion<nlohmann::json> done) = 0;

  // ---- each a coroutine on `ctx` (use run() from outside)
  virtual Task<Resource> resource(Ctx ctx, std::string api_version, std::string kind) = 0;
  virtual Task<nlohmann::json> get(Ctx ctx, Target t) = 0;
  // {apiVersion, kind, metadata: {resourceVersion}, items}: every page joined.
  virtual Task<nlohmann::json> list(Ctx ctx, Target t, ListOptions o) = 0;
  virtual Task<nlohmann::json> create(Ctx ctx, nlohmann::json object, std::string namespace_) = 0;
  virtual Task<nlohmann::json> patch(Ctx ctx, Target t, std::string patch, std::string_view type) = 0;
  // propagation: "" (server default) | Foreground | Background | Orphan. Returns the Status
  // or the object the server answers with.
  virtual Task<nlohmann::json> remove(Ctx ctx, Target t, std::string propagation) = 0;
  // Server-side apply (fieldManager=hoist); returns the object as stored (or planned).
  virtual Task<nlohmann::json> apply(Ctx ctx, nlohmann::json object, std::string namespace_, bool force) = 0;

  // The last lines a pod's container wrote (text); `previous`: of its last run, for a
  // container that crashed and restarted.
  virtual Task<nlohmann::json> logs(Ctx ctx, Target pod, std::string container, int tail_lines, bool previous) = 0;

  // Starts a watch (its own context: it lives until close()).
  virtual std::shared_ptr<Watch> watch(Target t, WatchOptions o, CallOptions call) = 0;

  // Drops the discovery cache (a CRD was created).
  virtual void forget_discovery() = 0;

  // Streams open for shared watches (WatchOptions::shared) now.
  virtual int shared_streams() const = 0;
};

}  // namespace hoist::k8s
