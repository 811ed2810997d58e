// Credentials for a cluster: static tokens, token files, exec credential plugins
// (client.authentication.k8s.io v1 and v1beta1: KUBERNETES_EXEC_INFO in, ExecCredential out,
// cached until status.expirationTimestamp, run again after a 401), and the TLS files libcurl
// reads (kubeconfig *-data written to 0600 temporary files, removed with the client).
#include "k8s/internal.hpp"

#include <hoist/json.hpp>
#include <hoist/process.hpp>

#include <boost/asio/as_tuple.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>

namespace hoist::k8s::detail {

using nlohmann::json;
namespace asio = boost::asio;

std::optional<double> parse_rfc3339(std::string_view s) {
  std::tm tm{};
  int consumed = 0;
  std::string text(s);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6 || consumed != 19)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  double t = static_cast<double>(timegm(&tm));
  std::string_view rest = s.substr(19);
  if (!rest.empty() && rest[0] == '.') {
    std::size_t i = 1;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i;
    rest.remove_prefix(i);
  }
  if (rest == "Z" || rest == "z") return t;
  if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int h = 0, m = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &h, &m) != 2) return std::nullopt;
    double offset = h * 3600.0 + m * 60.0;
    return rest[0] == '+' ? t - offset : t + offset;
  }
  return std::nullopt;
}

TempFile::TempFile(const std::string& content, const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/hoist-k8s-" + name + ".XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw Error(Code::internal, "cannot create a temporary file for the " + name);
  ::fchmod(fd, 0600);
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t w = ::write(fd, content.data() + off, content.size() - off);
    if (w <= 0) {
      ::close(fd);
      ::unlink(tmpl.c_str());
      throw Error(Code::internal, "cannot write a temporary file for the " + name);
    }
    off += static_cast<std::size_t>(w);
  }
  ::close(fd);
  path_ = tmpl;
}

TempFile::~TempFile() { ::unlink(path_.c_str()); }

// ------------------------------------------------------------------ exec plugins

std::string exec_info(const ExecConfig& x, const Cluster& cluster) {
  json spec = {{"interactive", false}};
  if (x.provide_cluster_info) {
    json c = {{"server", cluster.server}, {"insecure-skip-tls-verify", cluster.insecure}};
    if (!cluster.ca_data.empty()) c["certificate-authority-data"] = cluster.ca_data;
    if (!cluster.proxy_url.empty()) c["proxy-url"] = cluster.proxy_url;
    spec["cluster"] = c;
  }
  return json{{"apiVersion", x.api_version}, {"kind", "ExecCredential"}, {"spec", spec}}.dump();
}

ExecCredential parse_exec_credential(std::string_view output, const ExecConfig& x) {
  std::string who = "exec plugin " + x.command;
  json j = parse_json_or_discarded(output);
  if (j.is_discarded() || !j.is_object())
    throw Error(Code::unauthorized, who + ": its output is not an ExecCredential (not JSON)");
  if (j.value("kind", "") != "ExecCredential")
    throw Error(Code::unauthorized, who + ": its output is not an ExecCredential (kind \"" + j.value("kind", "") + "\")");
  if (j.value("apiVersion", "") != x.api_version)
    throw Error(Code::unauthorized, who + ": answered apiVersion \"" + j.value("apiVersion", "") + "\", the kubeconfig asks for \"" +
                                        x.api_version + "\"");
  auto st = j.find("status");
  if (st == j.end() || !st->is_object()) throw Error(Code::unauthorized, who + ": the ExecCredential has no status");
  ExecCredential c;
  c.token = st->value("token", "");
  c.client_cert = st->value("clientCertificateData", "");
  c.client_key = st->value("clientKeyData", "");
  if (c.client_cert.empty() != c.client_key.empty())
    throw Error(Code::unauthorized, who + ": status has only one of clientCertificateData and clientKeyData");
  if (c.token.empty() && c.client_cert.empty())
    throw Error(Code::unauthorized, who + ": status has neither a token nor a client certificate");
  std::string expiry = st->value("expirationTimestamp", "");
  if (!expiry.empty()) {
    c.expires = parse_rfc3339(expiry);
    if (!c.expires) throw Error(Code::unauthorized, who + ": status.expirationTimestamp \"" + expiry + "\" is not RFC 3339");
  }
  return c;
}

namespace {
double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

Auth::Auth(asio::io_context& io, const Config& config, std::shared_ptr<Secrets> secrets)
    : io_(io), config_(config), secrets_(std::move(secrets)) {
  const Cluster& c = config_.cluster;
  const User& u = config_.user;
  keep_secret(u.token);
  keep_secret(u.client_key_data);
  if (!c.ca_data.empty()) ca_ = std::make_unique<TempFile>(c.ca_data, "ca");
  if (!u.client_cert_data.empty()) cert_ = std::make_unique<TempFile>(u.client_cert_data, "cert");
  if (!u.client_key_data.empty()) key_ = std::make_unique<TempFile>(u.client_key_data, "key");
}

void Auth::keep_secret(const std::string& value) const {
  if (secrets_ && !value.empty()) secrets_->add(value);
}

void Auth::tls(HttpRequest& h) const {
  const Cluster& c = config_.cluster;
  h.insecure = c.insecure;
  if (ca_) h.cacert = ca_->path();
  else if (!c.ca_file.empty()) h.cacert = c.ca_file;
  if (exec_cert_) {
    h.client_cert = exec_cert_->path();
    h.client_key = exec_key_->path();
  } else {
    h.client_cert = cert_ ? cert_->path() : config_.user.client_cert_file;
    h.client_key = key_ ? key_->path() : config_.user.client_key_file;
  }
  h.proxy = c.proxy_url;
}

bool Auth::renew() {
  const User& u = config_.user;
  if (u.exec) {
    exec_.reset();
    return true;
  }
  if (!u.token_file.empty()) {
    file_read_ = {};
    return true;
  }
  return false;
}

Task<void> Auth::run_plugin(rest::ContextPtr ctx) {
  const ExecConfig& x = *config_.user.exec;
  if (x.interactive_mode == "Always")
    throw Error(Code::unauthorized, "exec plugin " + x.command +
                                        ": interactiveMode Always needs a terminal, and hoist runs without one");
  ExecOptions o;
  o.argv.push_back(x.command);
  o.argv.insert(o.argv.end(), x.args.begin(), x.args.end());
  for (const auto& [k, v] : x.env) o.env[k] = v;
  o.env["KUBERNETES_EXEC_INFO"] = exec_info(x, config_.cluster);
  o.timeout = 120;
  ++exec_runs_;
  ctx->emit("debug", "k8s.exec_plugin", "running exec credential plugin " + x.command, {{"command", x.command}});
  auto out = co_await rest::await_op<ExecResult>(ctx, [&](Completion<ExecResult> done) {
    return exec_async(io_, o, std::move(done));
  });
  if (!out.ok()) {
    Error e = out.error();
    if (e.code() == Code::tool_missing)
      throw Error(Code::tool_missing, "exec plugin " + x.command + " not found" +
                                          (x.install_hint.empty() ? "" : ": " + x.install_hint),
                  {{"command", x.command}});
    throw e;
  }
  const ExecResult& r = out.value();
  if (r.code != 0) {
    std::string err = r.err.size() > 2048 ? r.err.substr(r.err.size() - 2048) : r.err;
    while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) err.pop_back();
    throw Error(Code::unauthorized, "exec plugin " + x.command + " exited with code " + std::to_string(r.code) +
                                        (err.empty() ? "" : ": " + err),
                {{"command", x.command}, {"exit_code", r.code}});
  }
  ExecCredential c = parse_exec_credential(r.out, x);
  keep_secret(c.token);
  keep_secret(c.client_key);
  if (!c.client_cert.empty()) {
    exec_cert_ = std::make_unique<TempFile>(c.client_cert, "exec-cert");
    exec_key_ = std::make_unique<TempFile>(c.client_key, "exec-key");
  }
  exec_ = std::move(c);
}

Task<std::string> Auth::authorization(rest::ContextPtr ctx) {
  const User& u = config_.user;
  if (u.exec) {
    // one plugin run at a time: the calls that arrive meanwhile wait for its credential
    while (exec_running_) {
      auto wake = exec_done_;
      co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
      ctx->check();
    }
    bool fresh = exec_ && (!exec_->expires || *exec_->expires > now_unix() + 10);
    if (!fresh) {
      exec_running_ = true;
      exec_done_ = std::make_shared<asio::steady_timer>(io_, std::chrono::steady_clock::time_point::max());
      std::optional<Error> failed;
      try {
        co_await run_plugin(ctx);
      } catch (const Error& e) {
        failed = e;
      }
      exec_running_ = false;
      exec_done_->cancel();
      if (failed) throw *failed;
    }
    co_return exec_->token.empty() ? "" : "Bearer " + exec_->token;
  }
  if (!u.token_file.empty()) {
    auto now = std::chrono::steady_clock::now();
    if (file_token_.empty() || now - file_read_ > std::chrono::minutes(1)) {
      std::string t = read_text_file(u.token_file, "tokenFile");
      while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
      if (t.empty()) throw Error(Code::unauthorized, "tokenFile " + u.token_file + " is empty");
      file_token_ = t;
      file_read_ = now;
      keep_secret(t);
    }
    co_return "Bearer " + file_token_;
  }
  if (!u.token.empty()) co_return "Bearer " + u.token;
  co_return "";
}

}  // namespace hoist::k8s::detail
