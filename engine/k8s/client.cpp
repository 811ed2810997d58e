// The Kubernetes client on the REST layer: requests with the context's credentials and TLS,
// Status bodies as structured errors, discovery (any kind, CRDs included, to its resource),
// and get, list, create, patch, delete and server-side apply.
#include "k8s/internal.hpp"

#include <hoist/base64.hpp>

#include <hoist/json.hpp>
#include <hoist/strings.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>

namespace hoist::k8s {

using nlohmann::json;

// ------------------------------------------------------------------ resources and errors

std::string Resource::api_version() const { return group.empty() ? version : group + "/" + version; }

std::string Resource::path(const std::string& ns, const std::string& object_name) const {
  std::string p = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (namespaced && !ns.empty()) p += "/namespaces/" + rest::url_encode(ns);
  p += "/" + name;
  if (!object_name.empty()) p += "/" + rest::url_encode(object_name);
  return p;
}

rest::RemoteError status_error_parser(const HttpResponse& resp) {
  rest::RemoteError out = rest::default_error_parser(resp);
  json body = parse_json_or_discarded(resp.body);
  if (!body.is_object() || body.value("kind", "") != "Status") return out;
  static const std::pair<const char*, Code> kReasons[] = {
      {"NotFound", Code::not_found},         {"AlreadyExists", Code::conflict},
      {"Conflict", Code::conflict},          {"Invalid", Code::invalid_argument},
      {"BadRequest", Code::invalid_argument}, {"Forbidden", Code::forbidden},
      {"Unauthorized", Code::unauthorized},  {"TooManyRequests", Code::throttled},
      {"Expired", Code::not_found},          {"Gone", Code::not_found},
      {"Timeout", Code::timeout},            {"ServerTimeout", Code::timeout},
      {"ServiceUnavailable", Code::unavailable}, {"MethodNotAllowed", Code::invalid_argument},
  };
  std::string reason = body.value("reason", "");
  for (const auto& [name, code] : kReasons)
    if (reason == name) out.code = code;
  // A 500 is not always a passing fault: server-side apply of a field the kind's schema lacks
  // answers 500 without a reason ("failed to create typed patch object (...): .spec.x: field
  // not declared in schema", kubernetes#122480; structuredmerge.go returns a plain error), and
  // the same body comes back however often it is sent. The message decides, so it is not
  // retried as `unavailable`.
  static const char* const kDeterministic[] = {"failed to create typed patch object", "field not declared in schema"};
  if (!out.code && (reason.empty() || reason == "InternalError")) {
    std::string message = body.value("message", "");
    for (const char* m : kDeterministic)
      if (message.find(m) != std::string::npos) out.code = Code::invalid_argument;
  }
  // the field causes of Invalid, at the top of details where a script looks first
  if (auto d = body.find("details"); d != body.end() && d->is_object() && d->contains("causes"))
    out.details["causes"] = (*d)["causes"];
  if (std::string after = resp.header("retry-after"); !after.empty())
    if (auto s = rest::parse_retry_after(after, 0); s) out.details["retry_after"] = *s;
  return out;
}

namespace detail {

bool server_dry_run(const rest::ContextPtr& ctx) {
  auto c = std::dynamic_pointer_cast<CallCtx>(ctx);
  return c && c->server_dry_run;
}

namespace {

using text::lower;

// Does an APIResource of a discovery list answer to `kind` (Kind, plural, singular, short name)?
int match(const json& r, const std::string& kind) {
  if (r.value("kind", "") == kind) return 3;
  std::string k = lower(kind);
  if (lower(r.value("kind", "")) == k || r.value("name", "") == k || r.value("singularName", "") == k) return 2;
  if (auto s = r.find("shortNames"); s != r.end() && s->is_array())
    for (const auto& n : *s)
      if (n.is_string() && n.get<std::string>() == k) return 1;
  return 0;
}

std::string with_params(std::string path, const std::vector<std::pair<std::string, std::string>>& params) {
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    path += (path.find('?') == std::string::npos ? "?" : "&") + k + "=" + rest::url_encode(v);
  }
  return path;
}

std::string name_of(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return "";
  return obj["metadata"].value("name", "");
}

std::string ns_in(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return "";
  return obj["metadata"].value("namespace", "");
}

// A Secret's values become secrets of the run (decoded and as written), and what a plan shows
// of it has them masked: a dry run prints the manifest it would apply.
json guard_secret(const json& obj, const std::shared_ptr<Secrets>& secrets) {
  if (!obj.is_object() || obj.value("kind", "") != "Secret") return obj;
  json masked = obj;
  for (const char* field : {"data", "stringData"}) {
    auto it = masked.find(field);
    if (it == masked.end() || !it->is_object()) continue;
    for (auto& [key, value] : it->items()) {
      if (!value.is_string()) continue;
      const std::string& v = value.get_ref<const std::string&>();
      if (secrets && v.size() >= Secrets::kMinLength) {
        secrets->add(v);
        if (std::string(field) == "data") {
          try {
            std::string plain = base64_decode(v, "Secret data");
            if (plain.size() >= Secrets::kMinLength) secrets->add(plain);
          } catch (const Error&) {
            // the server will refuse it; nothing to hide beyond the text itself
          }
        }
      }
      value = "***";
    }
  }
  return masked;
}

json planned(const rest::Request& req, const json& object) {
  json j = {{"planned", true}, {"method", req.http.method}, {"url", redact_url(req.http.url)}, {"action", req.action}};
  if (!object.is_null()) j["object"] = object;
  return j;
}

}  // namespace

// ------------------------------------------------------------------ the client

ClientImpl::ClientImpl(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets, EventBus* events,
                       Config config)
    : io_(io),
      http_(http),
      rest_(http, rest::Api{"k8s", {"audit-id", "x-request-id"}, status_error_parser}),
      secrets_(std::move(secrets)),
      events_(events),
      config_(std::move(config)),
      auth_(std::make_shared<Auth>(io, config_, secrets_)),
      slots_(std::make_shared<RequestSlots>(io, config_.max_requests)) {}

Task<RequestSlots::Slot> RequestSlots::acquire(rest::ContextPtr ctx) {
  ctx->check();
  std::weak_ptr<RequestSlots> weak = weak_from_this();
  auto slot = [weak] {
    return Slot(nullptr, [weak](void*) {
      if (auto self = weak.lock()) self->release();
    });
  };
  if (used_ < limit_ && waiting_.empty()) {
    ++used_;
    co_return slot();
  }
  // first come, first served: release() hands its slot to the first waiting
  auto w = std::make_shared<Waiter>(io_);
  waiting_.push_back(w);
  auto stop = std::make_shared<FunctionOperation>([w] { w->turn.cancel(); });  // held: tracked weakly
  ctx->track(stop);
  co_await w->turn.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  if (!w->granted) {
    std::erase(waiting_, w);
    ctx->check();
    throw Error(Code::cancelled, "k8s: cancelled while waiting for a request slot");
  }
  Slot held = slot();
  ctx->check();  // cancelled meanwhile: `held` gives the slot back
  co_return held;
}

void RequestSlots::release() {
  if (waiting_.empty()) {
    --used_;
    return;
  }
  auto next = waiting_.front();
  waiting_.pop_front();
  next->granted = true;
  next->turn.cancel();
}

OperationPtr ClientImpl::run(CallOptions o, std::function<Task<json>(Ctx)> body, Completion<json> done) {
  auto ctx = std::make_shared<CallCtx>(io_, o, events_, secrets_);
  auto self = shared_from_this();  // the client outlives its calls
  return rest::spawn<json, rest::Context>(ctx, std::move(body), [self, done = std::move(done)](Outcome<json> out) {
    done(std::move(out));
  });
}

rest::Request ClientImpl::request(Ctx ctx, std::string method, std::string path, std::string what) {
  rest::Request r;
  r.http.method = std::move(method);
  r.http.url = config_.cluster.server + path;
  r.http.headers = {{"Accept", "application/json"}, {"User-Agent", "hoist"}};
  auth_->tls(r.http);
  r.what = std::move(what);
  auto auth = auth_;
  r.authorization = [auth, ctx]() { return auth->authorization(ctx); };
  r.renew = [auth](const HttpResponse&) { return auth->renew(); };
  return r;
}

Task<void> ClientImpl::ready(Ctx ctx, rest::Request& req) {
  // an exec plugin's client certificate is known only once the plugin has run
  if (!config_.user.exec) co_return;
  co_await auth_->authorization(ctx);
  auth_->tls(req.http);
}

Task<json> ClientImpl::call(Ctx ctx, rest::Request req) {
  co_await ready(ctx, req);
  auto slot = co_await slots_->acquire(ctx);
  rest::Response r = co_await rest_.send(ctx, req);
  slot.reset();
  if (r.planned) co_return nullptr;
  if (r.status < 200 || r.status > 299) throw rest_.status_error(r, req);
  if (r.body.empty()) co_return json::object();
  json body = parse_json_or_discarded(r.body);
  if (body.is_discarded())
    throw Error(Code::internal, req.what + ": the answer is not JSON", {{"url", redact_url(req.http.url)}, {"body", r.body.substr(0, 512)}});
  co_return body;
}

// ------------------------------------------------------------------ discovery

Task<json> ClientImpl::group_version(Ctx ctx, std::string gv) {
  if (auto it = groups_.find(gv); it != groups_.end()) co_return it->second;
  std::string path = gv.find('/') == std::string::npos ? "/api/" + gv : "/apis/" + gv;
  auto req = request(ctx, "GET", path, "discover " + gv);
  json list;
  try {
    list = co_await call(ctx, req);
  } catch (const Error& e) {
    if (e.code() != Code::not_found) throw;
    list = nullptr;  // the server has no such group version
  }
  groups_[gv] = list;
  co_return list;
}

Task<std::optional<Resource>> ClientImpl::find_in(Ctx ctx, std::string gv, std::string kind) {
  json list = co_await group_version(ctx, gv);
  if (!list.is_object() || !list.contains("resources") || !list["resources"].is_array()) co_return std::nullopt;
  const json* best = nullptr;
  int best_score = 0;
  for (const auto& r : list["resources"]) {
    if (!r.is_object() || r.value("name", "").find('/') != std::string::npos) continue;  // subresources
    int s = match(r, kind);
    if (s > best_score) best = &r, best_score = s;
  }
  if (!best) co_return std::nullopt;
  Resource res;
  auto slash = gv.find('/');
  res.group = slash == std::string::npos ? "" : gv.substr(0, slash);
  res.version = slash == std::string::npos ? gv : gv.substr(slash + 1);
  res.kind = best->value("kind", "");
  res.name = best->value("name", "");
  res.namespaced = best->value("namespaced", true);
  if (auto v = best->find("verbs"); v != best->end() && v->is_array())
    for (const auto& x : *v)
      if (x.is_string()) res.verbs.push_back(x.get<std::string>());
  co_return res;
}

Task<Resource> ClientImpl::resource(Ctx ctx, std::string api_version, std::string kind) {
  if (kind.empty()) throw Error(Code::invalid_argument, "k8s: kind is required");
  if (!api_version.empty()) {
    for (int pass = 0; pass < 2; ++pass) {  // the second pass re-reads a cached group (a new CRD)
      if (auto r = co_await find_in(ctx, api_version, kind)) co_return *r;
      if (pass == 0 && groups_.count(api_version)) groups_.erase(api_version);
    }
    json list = groups_[api_version];
    if (list.is_null())
      throw Error(Code::not_found, "k8s: the server has no API group version \"" + api_version + "\"", {{"api_version", api_version}});
    std::string known;
    for (const auto& r : list.value("resources", json::array()))
      if (r.value("name", "").find('/') == std::string::npos) known += (known.empty() ? "" : ", ") + r.value("kind", "");
    throw Error(Code::not_found, "k8s: no kind \"" + kind + "\" in " + api_version + " (known: " + known + ")",
                {{"api_version", api_version}, {"kind", kind}});
  }
  for (int pass = 0; pass < 2; ++pass) {
    if (!group_list_) {
      std::vector<std::string> gvs;
      json core = co_await call(ctx, request(ctx, "GET", "/api", "discover /api"));
      for (const auto& v : core.value("versions", json::array()))
        if (v.is_string()) gvs.push_back(v.get<std::string>());
      json apis = co_await call(ctx, request(ctx, "GET", "/apis", "discover /apis"));
      for (const auto& g : apis.value("groups", json::array())) {
        std::string pv = g.is_object() && g.contains("preferredVersion") ? g["preferredVersion"].value("groupVersion", "") : "";
        if (!pv.empty()) gvs.push_back(pv);
      }
      group_list_ = gvs;
    }
    for (const auto& gv : *group_list_)
      if (auto r = co_await find_in(ctx, gv, kind)) co_return *r;
    forget_discovery();
  }
  throw Error(Code::not_found, "k8s: the server has no resource for kind \"" + kind + "\"", {{"kind", kind}});
}

Task<std::string> ClientImpl::collection(Ctx ctx, const Target& t, Resource* out) {
  Resource r = co_await resource(ctx, t.api_version, t.kind);
  if (out) *out = r;
  co_return r.path(t.all_namespaces ? "" : ns_of(t));
}

// ------------------------------------------------------------------ verbs

Task<json> ClientImpl::get(Ctx ctx, Target t) {
  if (t.name.empty()) throw Error(Code::invalid_argument, "k8s.get: name is required");
  Resource r = co_await resource(ctx, t.api_version, t.kind);
  co_return co_await call(ctx, request(ctx, "GET", r.path(ns_of(t), t.name), "get " + r.kind + " " + t.name));
}

Task<json> ClientImpl::list(Ctx ctx, Target t, ListOptions o) {
  Resource r;
  std::string path = co_await collection(ctx, t, &r);
  path = with_params(path, {{"labelSelector", o.label_selector}, {"fieldSelector", o.field_selector},
                            {"limit", o.page_size > 0 ? std::to_string(o.page_size) : ""}});
  auto req = request(ctx, "GET", path, "list " + r.name);
  co_await ready(ctx, req);
  auto out = std::make_shared<json>(json{{"apiVersion", r.api_version()}, {"kind", r.kind + "List"},
                                         {"metadata", json::object()}, {"items", json::array()}});
  int limit = o.limit;
  std::function<bool(json&)> on_page = [out, limit](json& page) {
    if (page.contains("metadata") && page["metadata"].is_object())
      (*out)["metadata"]["resourceVersion"] = page["metadata"].value("resourceVersion", "");
    for (auto& item : page.value("items", json::array())) {
      if (limit > 0 && static_cast<int>((*out)["items"].size()) >= limit) return false;
      // items of a list carry no kind; put it back so each stands alone
      if (item.is_object() && !item.contains("kind")) {
        item["kind"] = (*out)["kind"].get<std::string>().substr(0, (*out)["kind"].get<std::string>().size() - 4);
        item["apiVersion"] = (*out)["apiVersion"];
      }
      (*out)["items"].push_back(std::move(item));
    }
    return limit <= 0 || static_cast<int>((*out)["items"].size()) < limit;
  };
  auto slot = co_await slots_->acquire(ctx);
  co_await rest::paginate(rest_, ctx, req, rest::next_by_continue(), on_page);
  co_return std::move(*out);
}

// Strict field validation on create and patch: without it the API server's default (Warn) drops a
// field the kind lacks (a typo such as readinessProbe spelled readinesProbe) and answers success, and
// the object runs without it. Server-side apply refuses such fields whatever this says.
constexpr std::pair<const char*, const char*> kStrictFields{"fieldValidation", "Strict"};

Task<json> ClientImpl::create(Ctx ctx, json obj, std::string ns) {
  Resource r = co_await resource(ctx, obj.value("apiVersion", ""), obj.value("kind", ""));
  std::string target_ns = !ns_in(obj).empty() ? ns_in(obj) : !ns.empty() ? ns : config_.namespace_;
  std::string path = with_params(r.path(target_ns), {{"dryRun", server_dry_run(ctx) ? "All" : ""}, kStrictFields});
  auto req = request(ctx, "POST", path, "create " + r.kind + " " + name_of(obj));
  req.http.headers.emplace_back("Content-Type", "application/json");
  json shown = guard_secret(obj, secrets_);
  req.http.body = ctx->options.dry_run ? shown.dump() : obj.dump();  // in a dry run the body is only shown
  req.action = "k8s.create";
  req.plan_fields = {{"kind", r.kind}, {"name", name_of(obj)}, {"namespace", r.namespaced ? target_ns : ""}};
  json out = co_await call(ctx, req);
  co_return out.is_null() ? planned(req, shown) : out;
}

Task<json> ClientImpl::patch(Ctx ctx, Target t, std::string body, std::string_view type) {
  if (t.name.empty()) throw Error(Code::invalid_argument, "k8s.patch: name is required");
  Resource r = co_await resource(ctx, t.api_version, t.kind);
  std::string path = with_params(r.path(ns_of(t), t.name), {{"dryRun", server_dry_run(ctx) ? "All" : ""}, kStrictFields});
  auto req = request(ctx, "PATCH", path, "patch " + r.kind + " " + t.name);
  req.http.headers.emplace_back("Content-Type", std::string(type));
  req.http.body = std::move(body);
  req.action = "k8s.patch";
  req.plan_fields = {{"kind", r.kind}, {"name", t.name}, {"namespace", r.namespaced ? ns_of(t) : ""}, {"patch_type", type}};
  json out = co_await call(ctx, req);
  co_return out.is_null() ? planned(req, nullptr) : out;
}

Task<json> ClientImpl::remove(Ctx ctx, Target t, std::string propagation) {
  if (t.name.empty()) throw Error(Code::invalid_argument, "k8s.delete: name is required");
  if (!propagation.empty() && propagation != "Foreground" && propagation != "Background" && propagation != "Orphan")
    throw Error(Code::invalid_argument, "k8s.delete: propagation must be Foreground, Background or Orphan, got \"" + propagation + "\"");
  Resource r = co_await resource(ctx, t.api_version, t.kind);
  std::string path = with_params(r.path(ns_of(t), t.name), {{"dryRun", server_dry_run(ctx) ? "All" : ""}});
  auto req = request(ctx, "DELETE", path, "delete " + r.kind + " " + t.name);
  if (!propagation.empty()) {
    req.http.headers.emplace_back("Content-Type", "application/json");
    req.http.body = json{{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", propagation}}.dump();
  }
  req.action = "k8s.delete";
  req.plan_fields = {{"kind", r.kind}, {"name", t.name}, {"namespace", r.namespaced ? ns_of(t) : ""}};
  json out = co_await call(ctx, req);
  co_return out.is_null() ? planned(req, nullptr) : out;
}

Task<json> ClientImpl::apply(Ctx ctx, json obj, std::string ns, bool force) {
  std::string name = name_of(obj);
  if (name.empty()) throw Error(Code::invalid_argument, "k8s.apply: the object has no metadata.name");
  Resource r = co_await resource(ctx, obj.value("apiVersion", ""), obj.value("kind", ""));
  std::string target_ns = !ns_in(obj).empty() ? ns_in(obj) : !ns.empty() ? ns : config_.namespace_;
  std::string path = with_params(r.path(target_ns, name), {{"fieldManager", "hoist"},
                                                          {"force", force ? "true" : ""},
                                                          {"dryRun", server_dry_run(ctx) ? "All" : ""}});
  auto req = request(ctx, "PATCH", path, "apply " + r.kind + " " + name);
  req.http.headers.emplace_back("Content-Type", std::string(PatchType::apply));
  json shown = guard_secret(obj, secrets_);
  // JSON is YAML: the server reads it as the applied configuration; a dry run only shows it
  req.http.body = ctx->options.dry_run ? shown.dump() : obj.dump();
  req.action = "k8s.apply";
  req.plan_fields = {{"kind", r.kind}, {"name", name}, {"namespace", r.namespaced ? target_ns : ""}};
  json out = co_await call(ctx, req);
  co_return out.is_null() ? planned(req, shown) : out;
}

Task<json> ClientImpl::logs(Ctx ctx, Target pod, std::string container, int tail_lines, bool previous) {
  if (pod.name.empty()) throw Error(Code::invalid_argument, "k8s.logs: name is required");
  Resource r{"", "v1", "Pod", "pods", true, {}};
  std::string path = with_params(r.path(ns_of(pod), pod.name) + "/log",
                                 {{"container", container}, {"tailLines", tail_lines > 0 ? std::to_string(tail_lines) : ""},
                                  {"previous", previous ? "true" : ""}});
  auto req = request(ctx, "GET", path, "logs of pod " + pod.name + (container.empty() ? "" : " container " + container));
  co_await ready(ctx, req);
  auto slot = co_await slots_->acquire(ctx);
  rest::Response resp = co_await rest_.send(ctx, req);
  slot.reset();
  if (resp.status < 200 || resp.status > 299) throw rest_.status_error(resp, req);
  co_return json(resp.body);
}

}  // namespace detail

std::shared_ptr<Client> Client::create(boost::asio::io_context& io, HttpClient& http, std::shared_ptr<Secrets> secrets,
                                       EventBus* events, Config config) {
  return std::make_shared<detail::ClientImpl>(io, http, std::move(secrets), events, std::move(config));
}

}  // namespace hoist::k8s
