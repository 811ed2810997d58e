// kubeconfig: reading files (paths made absolute against each file's folder), kubectl's merge
// of several files (first one wins per name), choosing a context, and the in-cluster service
// account. Nothing here talks to a cluster.
#include "k8s/internal.hpp"

#include <hoist/base64.hpp>

#include <hoist/yaml.hpp>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace hoist::k8s {

using nlohmann::json;
namespace fs = std::filesystem;

namespace detail {

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Code::invalid_argument, what + ": cannot read " + path, {{"path", path}});
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace detail

namespace {

// Named lists of a kubeconfig: clusters[{name, cluster}], users[{name, user}], contexts[{name, context}].
constexpr const char* kLists[][2] = {{"clusters", "cluster"}, {"users", "user"}, {"contexts", "context"}};

void absolutize(json& obj, const char* key, const fs::path& dir, bool only_with_slash = false) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return;
  std::string v = it->get<std::string>();
  if (v.empty() || v[0] == '/' || v[0] == '~') return;
  if (only_with_slash && v.find('/') == std::string::npos) return;  // a name looked up on PATH
  *it = (dir / v).lexically_normal().string();
}

const json* named(const json& config, const char* list, const std::string& name) {
  auto l = config.find(list);
  if (l == config.end() || !l->is_array()) return nullptr;
  for (const auto& e : *l)
    if (e.is_object() && e.value("name", "") == name) return &e;
  return nullptr;
}

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A *-data field (base64) decoded, else "".
std::string data(const json& j, const char* key, const std::string& where) {
  std::string v = text(j, key);
  return v.empty() ? v : base64_decode(v, where + "." + key);
}

ExecConfig exec_config(const json& e, const std::string& where) {
  ExecConfig x;
  x.api_version = text(e, "apiVersion");
  x.command = text(e, "command");
  if (x.command.empty()) throw Error(Code::invalid_argument, where + ".exec: command is required");
  if (x.api_version != "client.authentication.k8s.io/v1" && x.api_version != "client.authentication.k8s.io/v1beta1")
    throw Error(Code::invalid_argument,
                where + ".exec: apiVersion must be client.authentication.k8s.io/v1 or v1beta1, got \"" + x.api_version + "\"");
  if (auto a = e.find("args"); a != e.end() && a->is_array())
    for (const auto& v : *a)
      if (v.is_string()) x.args.push_back(v.get<std::string>());
  if (auto env = e.find("env"); env != e.end() && env->is_array())
    for (const auto& v : *env)
      if (v.is_object()) x.env.emplace_back(text(v, "name"), text(v, "value"));
  x.interactive_mode = text(e, "interactiveMode");
  if (x.api_version.ends_with("/v1") && x.interactive_mode.empty())
    throw Error(Code::invalid_argument, where + ".exec: interactiveMode is required in client.authentication.k8s.io/v1");
  x.provide_cluster_info = e.value("provideClusterInfo", false);
  x.install_hint = text(e, "installHint");
  return x;
}

}  // namespace

json read_kubeconfig(const std::string& path) {
  std::string body = detail::read_text_file(path, "kubeconfig");
  std::vector<json> docs;
  try {
    docs = parse_yaml_all(body);
  } catch (const Error& e) {
    throw Error(Code::invalid_argument, "kubeconfig " + path + ": " + e.message(), e.details());
  }
  json config = docs.empty() || docs[0].is_null() ? json::object() : docs[0];
  if (!config.is_object()) throw Error(Code::invalid_argument, "kubeconfig " + path + ": not a mapping");
  fs::path dir = fs::absolute(fs::path(path)).parent_path();
  for (auto [list, inner] : kLists) {
    auto l = config.find(list);
    if (l == config.end() || l->is_null()) continue;
    if (!l->is_array()) throw Error(Code::invalid_argument, "kubeconfig " + path + ": " + list + " must be a list");
    for (auto& e : *l) {
      if (!e.is_object() || !e.contains(inner) || !(*e.find(inner)).is_object()) continue;
      json& v = e[inner];
      absolutize(v, "certificate-authority", dir);
      absolutize(v, "client-certificate", dir);
      absolutize(v, "client-key", dir);
      absolutize(v, "tokenFile", dir);
      if (v.contains("exec") && v["exec"].is_object()) absolutize(v["exec"], "command", dir, true);
    }
  }
  return config;
}

json merge_kubeconfigs(const std::vector<json>& files) {
  json out = {{"apiVersion", "v1"}, {"kind", "Config"}, {"clusters", json::array()},
              {"users", json::array()}, {"contexts", json::array()}};
  std::string current;
  for (const auto& f : files) {
    if (!f.is_object()) continue;
    if (current.empty()) current = text(f, "current-context");
    for (auto [list, inner] : kLists) {
      auto l = f.find(list);
      if (l == f.end() || !l->is_array()) continue;
      for (const auto& e : *l) {
        std::string name = e.is_object() ? text(e, "name") : "";
        if (!name.empty() && !named(out, list, name)) out[list].push_back(e);
      }
    }
  }
  if (!current.empty()) out["current-context"] = current;
  return out;
}

Config select_context(const json& kc, const std::string& context, const std::string& ns, const std::string& source) {
  Config c;
  c.source = source;
  c.context = context.empty() ? text(kc, "current-context") : context;
  if (c.context.empty())
    throw Error(Code::invalid_argument, "kubeconfig" + (source.empty() ? "" : " (" + source + ")") +
                                            ": no context given and no current-context set");
  const json* ctx = named(kc, "contexts", c.context);
  if (!ctx || !ctx->contains("context") || !(*ctx)["context"].is_object()) {
    std::vector<std::string> names;
    if (kc.contains("contexts") && kc["contexts"].is_array())
      for (const auto& e : kc["contexts"]) names.push_back(e.value("name", ""));
    std::string known;
    for (const auto& name : names) known += (known.empty() ? "" : ", ") + name;
    throw Error(Code::invalid_argument, "kubeconfig: context \"" + c.context + "\" not found (known: " + known + ")",
                {{"context", c.context}});
  }
  const json& cx = (*ctx)["context"];
  c.cluster_name = text(cx, "cluster");
  c.user_name = text(cx, "user");
  std::string ctx_ns = text(cx, "namespace");
  c.namespace_ = !ns.empty() ? ns : !ctx_ns.empty() ? ctx_ns : "default";

  const json* cl = named(kc, "clusters", c.cluster_name);
  if (!cl || !cl->contains("cluster"))
    throw Error(Code::invalid_argument, "kubeconfig: context \"" + c.context + "\" names cluster \"" + c.cluster_name +
                                            "\", which is not defined");
  const json& cj = (*cl)["cluster"];
  std::string where = "clusters[" + c.cluster_name + "]";
  c.cluster.server = text(cj, "server");
  if (c.cluster.server.empty()) throw Error(Code::invalid_argument, "kubeconfig: " + where + " has no server");
  while (c.cluster.server.size() > 1 && c.cluster.server.back() == '/') c.cluster.server.pop_back();
  c.cluster.ca_file = text(cj, "certificate-authority");
  c.cluster.ca_data = data(cj, "certificate-authority-data", where);
  c.cluster.insecure = cj.value("insecure-skip-tls-verify", false);
  c.cluster.proxy_url = text(cj, "proxy-url");
  if (!text(cj, "tls-server-name").empty())
    throw Error(Code::invalid_argument, "kubeconfig: " + where + ": tls-server-name is not supported by hoist");

  if (!c.user_name.empty()) {
    const json* u = named(kc, "users", c.user_name);
    if (!u)
      throw Error(Code::invalid_argument, "kubeconfig: context \"" + c.context + "\" names user \"" + c.user_name +
                                              "\", which is not defined");
    const json& uj = u->contains("user") && (*u)["user"].is_object() ? (*u)["user"] : json::object();
    where = "users[" + c.user_name + "]";
    c.user.client_cert_file = text(uj, "client-certificate");
    c.user.client_key_file = text(uj, "client-key");
    c.user.client_cert_data = data(uj, "client-certificate-data", where);
    c.user.client_key_data = data(uj, "client-key-data", where);
    c.user.token = text(uj, "token");
    c.user.token_file = text(uj, "tokenFile");
    if (uj.contains("exec") && uj["exec"].is_object()) c.user.exec = exec_config(uj["exec"], where);
    if (uj.contains("auth-provider"))
      throw Error(Code::invalid_argument, "kubeconfig: " + where +
                                              " uses auth-provider, which kubectl no longer supports: use an exec plugin (kubelogin)");
  }
  return c;
}

Config in_cluster_config(const std::string& dir, const std::string& ns) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port)
    throw Error(Code::invalid_argument, "no kubeconfig found and not inside a cluster (KUBERNETES_SERVICE_HOST/PORT unset)");
  Config c;
  c.source = "in-cluster";
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
  c.cluster.server = "https://" + h + ":" + port;
  c.cluster_name = c.user_name = "in-cluster";
  std::string token = dir + "/token";
  if (!fs::exists(token)) throw Error(Code::invalid_argument, "in-cluster: no service account token at " + token);
  c.user.token_file = token;
  if (fs::exists(dir + "/ca.crt")) c.cluster.ca_file = dir + "/ca.crt";
  std::string file_ns;
  if (fs::exists(dir + "/namespace")) {
    file_ns = detail::read_text_file(dir + "/namespace", "in-cluster namespace");
    while (!file_ns.empty() && std::isspace(static_cast<unsigned char>(file_ns.back()))) file_ns.pop_back();
  }
  c.namespace_ = !ns.empty() ? ns : !file_ns.empty() ? file_ns : "default";
  return c;
}

Config load_config(const LoadOptions& o) {
  std::string paths = o.kubeconfig;
  if (paths.empty())
    if (const char* env = std::getenv("KUBECONFIG")) paths = env;
  bool explicit_paths = !paths.empty();
  if (paths.empty())
    if (const char* home = std::getenv("HOME")) paths = std::string(home) + "/.kube/config";
  std::vector<json> files;
  std::string used;
  std::istringstream split(paths);
  for (std::string p; std::getline(split, p, ':');) {
    if (p.empty()) continue;
    // kubectl skips listed files that do not exist; an explicit single file must exist
    if (!fs::exists(p)) {
      if (!o.kubeconfig.empty() && o.kubeconfig.find(':') == std::string::npos)
        throw Error(Code::invalid_argument, "kubeconfig " + p + " does not exist", {{"path", p}});
      continue;
    }
    files.push_back(read_kubeconfig(p));
    used += (used.empty() ? "" : ":") + p;
  }
  if (files.empty()) {
    if (std::getenv("KUBERNETES_SERVICE_HOST")) return in_cluster_config(o.service_account_dir, o.namespace_);
    throw Error(Code::invalid_argument,
                explicit_paths ? "no kubeconfig file found in " + paths : "no kubeconfig: set KUBECONFIG or create ~/.kube/config");
  }
  return select_context(merge_kubeconfigs(files), o.context, o.namespace_, "kubeconfig " + used);
}

}  // namespace hoist::k8s
