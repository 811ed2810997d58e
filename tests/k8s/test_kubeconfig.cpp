// kubeconfig: kubectl's merge of several files, contexts and namespaces, *-data fields, the
// in-cluster service account, and credentials: static tokens, token files and exec plugins
// (tests/tools/fake-kube-credential stands in for kubelogin).
#include <doctest/doctest.h>

#include "k8s/internal.hpp"

#include <hoist/yaml.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace hoist::k8s;
using hoist::Code;
using hoist::Error;
using nlohmann::json;
using hoist::parse_yaml_all;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hoist-kubeconfig.XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    fs::create_directories((path / name).parent_path());
    std::ofstream(path / name) << text;
    return path / name;
  }
};

std::string b64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < s.size(); i += 3) {
    unsigned v = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) v |= static_cast<unsigned char>(s[i + 1]) << 8;
    if (i + 2 < s.size()) v |= static_cast<unsigned char>(s[i + 2]);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < s.size() ? t[(v >> 6) & 63] : '=';
    out += i + 2 < s.size() ? t[v & 63] : '=';
  }
  return out;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string kPlugin = std::string(HOIST_SOURCE_DIR) + "/tests/tools/fake-kube-credential";

// Sets an environment variable for one scope.
struct Env {
  std::string name;
  std::optional<std::string> old;
  Env(std::string n, const char* value) : name(std::move(n)) {
    if (const char* o = std::getenv(name.c_str())) old = o;
    value ? ::setenv(name.c_str(), value, 1) : ::unsetenv(name.c_str());
  }
  ~Env() { old ? ::setenv(name.c_str(), old->c_str(), 1) : ::unsetenv(name.c_str()); }
};

// Runs a coroutine on a fresh loop to its end.
template <class T>
hoist::Outcome<T> run(asio::io_context& io, std::function<Task<T>(hoist::rest::ContextPtr)> body) {
  auto ctx = std::make_shared<hoist::rest::Context>(io, hoist::rest::Options{});
  std::optional<hoist::Outcome<T>> out;
  hoist::rest::spawn<T, hoist::rest::Context>(ctx, body, [&](hoist::Outcome<T> o) { out.emplace(std::move(o)); });
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!out && std::chrono::steady_clock::now() < deadline) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(out.has_value());
  return std::move(*out);
}

Config exec_config(const TempDir& dir, std::vector<std::pair<std::string, std::string>> env,
                   std::string api = "client.authentication.k8s.io/v1") {
  std::string envs;
  env.emplace_back("FAKE_LOG", (dir.path / "plugin.log").string());
  for (auto& [k, v] : env) envs += "      - {name: " + k + ", value: '" + v + "'}\n";
  auto path = dir.write("exec.yaml",
                        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: " +
                            b64("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n") +
                            "}}]\n"
                            "users:\n- name: u\n  user:\n    exec:\n      apiVersion: " +
                            api + "\n      command: " + kPlugin +
                            "\n      args: [get-token, --server-id, abc]\n      interactiveMode: Never\n"
                            "      provideClusterInfo: true\n      installHint: install kubelogin\n      env:\n" +
                            envs);
  return select_context(read_kubeconfig(path.string()), "");
}

int plugin_runs(const TempDir& dir) {
  std::ifstream in(dir.path / "plugin.log");
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

TEST_CASE("kubeconfig: several files merge as kubectl merges them (first wins per name)") {
  TempDir d;
  auto a = d.write("a/config",
                   "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
                   "clusters: [{name: shared, cluster: {server: 'https://a.example:6443/', certificate-authority: ca.pem}}]\n"
                   "users: [{name: me, user: {client-certificate: certs/me.crt, client-key: /abs/me.key, tokenFile: tok}}]\n"
                   "contexts: [{name: dev, context: {cluster: shared, user: me, namespace: team-a}}]\n");
  auto b = d.write("b/config",
                   "apiVersion: v1\nkind: Config\ncurrent-context: prod\n"
                   "clusters: [{name: shared, cluster: {server: 'https://b.example'}}, {name: prod, cluster: {server: 'https://p.example'}}]\n"
                   "users: [{name: me, user: {token: from-b-1234}}, {name: ops, user: {token: ops-token-1234}}]\n"
                   "contexts: [{name: dev, context: {cluster: prod, user: ops}}, {name: prod, context: {cluster: prod, user: ops}}]\n");
  json merged = merge_kubeconfigs({read_kubeconfig(a.string()), read_kubeconfig(b.string())});
  CHECK(merged["current-context"] == "dev");
  CHECK(merged["clusters"].size() == 2);
  CHECK(merged["contexts"].size() == 2);

  Config dev = select_context(merged, "");
  CHECK(dev.context == "dev");
  CHECK(dev.cluster.server == "https://a.example:6443");  // a's entry, trailing slash dropped
  CHECK(dev.cluster.ca_file == (d.path / "a" / "ca.pem").string());  // relative to a's folder
  CHECK(dev.user.client_cert_file == (d.path / "a" / "certs" / "me.crt").string());
  CHECK(dev.user.client_key_file == "/abs/me.key");
  CHECK(dev.user.token_file == (d.path / "a" / "tok").string());
  CHECK(dev.user.token.empty());  // b's "me" lost to a's
  CHECK(dev.namespace_ == "team-a");

  Config prod = select_context(merged, "prod", "override");
  CHECK(prod.cluster.server == "https://p.example");
  CHECK(prod.user.token == "ops-token-1234");
  CHECK(prod.namespace_ == "override");
  CHECK(select_context(merged, "prod").namespace_ == "default");

  // KUBECONFIG order is the merge order; a listed file that does not exist is skipped
  std::string list = b.string() + ":" + (d.path / "missing").string() + ":" + a.string();
  Env env("KUBECONFIG", list.c_str());
  Config viaenv = load_config({});
  CHECK(viaenv.context == "prod");
  CHECK(viaenv.source == "kubeconfig " + b.string() + ":" + a.string());
  CHECK(load_config({.context = "dev"}).cluster.server == "https://p.example");  // b's "dev" first now
}

TEST_CASE("kubeconfig: errors name what is missing or wrong") {
  TempDir d;
  json kc = parse_yaml_all(
                "clusters: [{name: k, cluster: {server: 'https://x'}}, {name: noserver, cluster: {}}]\n"
                "users: [{name: u, user: {client-key-data: '!!notbase64'}}, {name: old, user: {auth-provider: {name: azure}}}]\n"
                "contexts: [{name: a, context: {cluster: k, user: u}}, {name: b, context: {cluster: nope}},"
                " {name: c, context: {cluster: noserver}}, {name: d, context: {cluster: k, user: ghost}},"
                " {name: e, context: {cluster: k, user: old}}]\n")
                .at(0);
  struct Row { std::string context, pattern; };
  for (const auto& row : {Row{"", "no context given and no current-context set"},
                          Row{"zz", "context \"zz\" not found (known: a, b, c, d, e)"},
                          Row{"a", "users[u].client-key-data is not valid base64"},
                          Row{"b", "names cluster \"nope\", which is not defined"},
                          Row{"c", "clusters[noserver] has no server"},
                          Row{"d", "names user \"ghost\", which is not defined"},
                          Row{"e", "auth-provider"}}) {
    CAPTURE(row.context);
    try {
      select_context(kc, row.context);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.code() == Code::invalid_argument);
      CHECK_MESSAGE(e.message().find(row.pattern) != std::string::npos, e.message());
    }
  }
  auto bad = d.write("bad.yaml", "clusters: [unclosed\n");
  CHECK_THROWS_WITH_AS(read_kubeconfig(bad.string()), doctest::Contains(bad.string().c_str()), Error);
  CHECK_THROWS_WITH_AS(load_config({.kubeconfig = (d.path / "none").string()}), doctest::Contains("does not exist"), Error);
  // exec: v1 needs interactiveMode; only the two API versions exist
  json ex = parse_yaml_all("clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
                           "contexts: [{name: a, context: {cluster: k, user: u}}, {name: b, context: {cluster: k, user: w}}]\n"
                           "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: x}}},"
                           " {name: w, user: {exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}}}]\n")
                .at(0);
  CHECK_THROWS_WITH_AS(select_context(ex, "a"), doctest::Contains("interactiveMode is required"), Error);
  CHECK_THROWS_WITH_AS(select_context(ex, "b"), doctest::Contains("v1alpha1"), Error);
}

TEST_CASE("kubeconfig: *-data fields decode, and reach libcurl as 0600 files removed afterwards") {
  std::string ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::string key = "-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----\n";
  json kc = parse_yaml_all("current-context: a\nclusters: [{name: k, cluster: {server: 'https://x', certificate-authority-data: " +
                           b64(ca) + ", proxy-url: 'http://127.0.0.1:3128'}}]\n"
                           "contexts: [{name: a, context: {cluster: k, user: u}}]\n"
                           "users: [{name: u, user: {client-certificate-data: " + b64("CERT") + ", client-key-data: " + b64(key) +
                           ", token: static-token-5678}}]\n")
                .at(0);
  Config c = select_context(kc, "");
  CHECK(c.cluster.ca_data == ca);
  CHECK(c.user.client_key_data == key);
  asio::io_context io;
  auto secrets = std::make_shared<hoist::Secrets>();
  std::string ca_path, key_path;
  {
    detail::Auth auth(io, c, secrets);
    hoist::HttpRequest h;
    auth.tls(h);
    ca_path = h.cacert, key_path = h.client_key;
    CHECK(read(ca_path) == ca);
    CHECK(read(key_path) == key);
    struct stat st {};
    REQUIRE(::stat(key_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(h.proxy == "http://127.0.0.1:3128");
    // the token and the key are secrets from the moment the config is in use
    CHECK(secrets->scrub("Bearer static-token-5678") == "Bearer ***");
    CHECK(secrets->scrub(key).find("secret-key-material") == std::string::npos);
    auto out = run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); });
    CHECK(out.value() == "Bearer static-token-5678");
  }
  CHECK_FALSE(fs::exists(ca_path));
  CHECK_FALSE(fs::exists(key_path));
}

TEST_CASE("kubeconfig: the in-cluster service account") {
  TempDir d;
  d.write("sa/token", "sa-token-abcdef\n");
  d.write("sa/ca.crt", "CA");
  d.write("sa/namespace", "payments\n");
  {
    Env host("KUBERNETES_SERVICE_HOST", nullptr);
    CHECK_THROWS_WITH_AS(in_cluster_config((d.path / "sa").string()), doctest::Contains("KUBERNETES_SERVICE_HOST"), Error);
  }
  Env host("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  Env port("KUBERNETES_SERVICE_PORT", "443");
  Config c = in_cluster_config((d.path / "sa").string());
  CHECK(c.cluster.server == "https://10.0.0.1:443");
  CHECK(c.cluster.ca_file == (d.path / "sa" / "ca.crt").string());
  CHECK(c.namespace_ == "payments");
  CHECK(c.source == "in-cluster");
  // no kubeconfig anywhere: load_config falls back to it
  Env kc("KUBECONFIG", (d.path / "none").string().c_str());
  CHECK(load_config({.service_account_dir = (d.path / "sa").string()}).source == "in-cluster");
  // the token file is read at use, trimmed, and becomes a secret
  asio::io_context io;
  auto secrets = std::make_shared<hoist::Secrets>();
  detail::Auth auth(io, c, secrets);
  CHECK(run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); }).value() == "Bearer sa-token-abcdef");
  CHECK(secrets->scrub("sa-token-abcdef") == "***");
  // rotated on disk: a 401 makes it read again
  d.write("sa/token", "sa-token-rotated\n");
  CHECK(auth.renew());
  CHECK(run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); }).value() == "Bearer sa-token-rotated");
  CHECK_THROWS_WITH_AS(in_cluster_config((d.path / "nowhere").string()), doctest::Contains("no service account token"), Error);
}

TEST_CASE("kubeconfig: an exec plugin runs once, with KUBERNETES_EXEC_INFO, its token cached until expiry") {
  TempDir d;
  asio::io_context io;
  auto secrets = std::make_shared<hoist::Secrets>();
  Config c = exec_config(d, {{"FAKE_TOKEN", "exec-token-0001"}});
  detail::Auth auth(io, c, secrets);
  auto get = [&] { return run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); }); };
  CHECK(get().value() == "Bearer exec-token-0001");
  CHECK(get().value() == "Bearer exec-token-0001");
  CHECK(plugin_runs(d) == 1);  // no expiry: valid for the run
  CHECK(secrets->scrub("exec-token-0001") == "***");
  json line = json::parse(read(d.path / "plugin.log").substr(0, read(d.path / "plugin.log").find('\n')));
  CHECK(line["argv"] == json::array({"get-token", "--server-id", "abc"}));
  CHECK(line["exec_info"]["apiVersion"] == "client.authentication.k8s.io/v1");
  CHECK(line["exec_info"]["kind"] == "ExecCredential");
  CHECK(line["exec_info"]["spec"]["interactive"] == false);
  CHECK(line["exec_info"]["spec"]["cluster"]["server"] == "https://127.0.0.1:1");  // provideClusterInfo
  // a 401 runs it again
  CHECK(auth.renew());
  CHECK(get().value() == "Bearer exec-token-0001");
  CHECK(plugin_runs(d) == 2);
  // several calls at once share one run
  auto ctx = std::make_shared<hoist::rest::Context>(io, hoist::rest::Options{});
  auth.renew();
  int answered = 0;
  for (int i = 0; i < 3; ++i)
    hoist::rest::spawn<std::string, hoist::rest::Context>(ctx, [&](auto c) { return auth.authorization(c); },
                                                          [&](hoist::Outcome<std::string> o) { answered += o.ok(); });
  io.restart();
  for (int i = 0; i < 1500 && answered < 3; ++i) io.run_one_for(std::chrono::milliseconds(20));
  CHECK(answered == 3);
  CHECK(plugin_runs(d) == 3);
}

TEST_CASE("kubeconfig: an exec credential about to expire is renewed; v1beta1 works too") {
  TempDir d;
  asio::io_context io;
  Config c = exec_config(d, {{"FAKE_EXPIRES_IN", "5"}}, "client.authentication.k8s.io/v1beta1");
  detail::Auth auth(io, c, std::make_shared<hoist::Secrets>());
  for (int i = 0; i < 2; ++i) CHECK(run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); }).ok());
  CHECK(plugin_runs(d) == 2);  // within the 10 s margin: each use asks again
}

TEST_CASE("kubeconfig: exec plugin failures say which plugin and why") {
  TempDir d;
  struct Row { std::vector<std::pair<std::string, std::string>> env; Code code; std::string pattern; };
  std::vector<Row> rows = {
      {{{"FAKE_EXIT", "3"}, {"FAKE_STDERR", "AADSTS50076: MFA required"}}, Code::unauthorized, "exited with code 3: AADSTS50076: MFA required"},
      {{{"FAKE_OUTPUT", "hello"}}, Code::unauthorized, "not an ExecCredential (not JSON)"},
      {{{"FAKE_OUTPUT", R"({"kind":"Other"})"}}, Code::unauthorized, "kind \"Other\""},
      {{{"FAKE_API_VERSION", "client.authentication.k8s.io/v1beta1"}}, Code::unauthorized, "answered apiVersion"},
      {{{"FAKE_OUTPUT", R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}})"}},
       Code::unauthorized, "neither a token nor a client certificate"},
      {{{"FAKE_OUTPUT", R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"abcd","expirationTimestamp":"tomorrow"}})"}},
       Code::unauthorized, "\"tomorrow\" is not RFC 3339"},
  };
  for (auto& row : rows) {
    CAPTURE(row.pattern);
    asio::io_context io;
    detail::Auth auth(io, exec_config(d, row.env), std::make_shared<hoist::Secrets>());
    auto out = run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); });
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().code() == row.code);
    CHECK_MESSAGE(out.error().message().find(row.pattern) != std::string::npos, out.error().message());
    CHECK(out.error().message().find(kPlugin) != std::string::npos);
  }
  asio::io_context io;
  Config missing = exec_config(d, {});
  missing.user.exec->command = "/nonexistent/kubelogin";
  detail::Auth auth(io, missing, nullptr);
  auto out = run<std::string>(io, [&](auto ctx) { return auth.authorization(ctx); });
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().code() == Code::tool_missing);
  CHECK(out.error().message() == "exec plugin /nonexistent/kubelogin not found: install kubelogin");
  Config always = exec_config(d, {});
  always.user.exec->interactive_mode = "Always";
  detail::Auth auth2(io, always, nullptr);
  auto out2 = run<std::string>(io, [&](auto ctx) { return auth2.authorization(ctx); });
  CHECK_FALSE(out2.ok());
  CHECK(out2.error().message().find("needs a terminal") != std::string::npos);
}

TEST_CASE("kubeconfig: RFC 3339 timestamps") {
  CHECK(detail::parse_rfc3339("1970-01-01T00:01:00Z") == 60);
  CHECK(detail::parse_rfc3339("1970-01-01T01:00:00.123456+01:00") == 0);
  CHECK(detail::parse_rfc3339("1970-01-01T00:00:00-00:30") == 1800);
  CHECK_FALSE(detail::parse_rfc3339("1970-01-01 00:00:00Z"));
  CHECK_FALSE(detail::parse_rfc3339("1970-01-01T00:00:00"));
}
