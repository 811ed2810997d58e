#pragma once
// What the Azure C++ tests share: a loop, the HTTP client, a scripted server standing in for
// Entra ID and Resource Manager, the secrets and events of a run, and a way to run a call to
// its end.
#include <doctest/doctest.h>
#include <hoist/azure.hpp>

#include "tests/support/scripted_server.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hoist::azure::testing {

using hoist::testing::Reply;
using hoist::testing::Seen;
using hoist::testing::Server;

inline std::string json_body(const nlohmann::json& j) { return j.dump(); }

inline Reply json_reply(int status, const nlohmann::json& j, Headers headers = {}) {
  headers.emplace_back("Content-Type", "application/json");
  return Reply{status, std::move(headers), j.dump()};
}

// The query parameter `name` of a request target, url-decoded enough for tests ("" if absent).
inline std::string query_param(const std::string& target, const std::string& name) {
  auto q = target.find('?');
  if (q == std::string::npos) return "";
  std::string rest = target.substr(q + 1);
  std::size_t i = 0;
  while (i <= rest.size()) {
    auto amp = rest.find('&', i);
    if (amp == std::string::npos) amp = rest.size();
    std::string kv = rest.substr(i, amp - i);
    auto eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1), out;
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (v[k] == '%' && k + 2 < v.size()) {
          out += static_cast<char>(std::stoi(v.substr(k + 1, 2), nullptr, 16));
          k += 2;
        } else {
          out += v[k] == '+' ? ' ' : v[k];
        }
      }
      return out;
    }
    i = amp + 1;
  }
  return "";
}

inline std::string path_of(const std::string& target) { return target.substr(0, target.find('?')); }

struct Fixture {
  boost::asio::io_context io;
  HttpClient http{io};
  Server server{io};
  std::shared_ptr<Secrets> secrets = std::make_shared<Secrets>();
  EventBus events{secrets};
  std::vector<Event> seen_events;

  Fixture() {
    events.add_sink(make_callback_sink([this](const Event& e) { seen_events.push_back(e); }));
  }

  std::string base() const {
    std::string u = server.url("/");
    u.pop_back();
    return u;
  }

  std::shared_ptr<Credential> credential(CredentialOptions o, std::map<std::string, std::string> env = {}) {
    if (!env.count("AZURE_AUTHORITY_HOST")) env["AZURE_AUTHORITY_HOST"] = base();
    if (!env.count("AZURE_RESOURCE_MANAGER_ENDPOINT")) env["AZURE_RESOURCE_MANAGER_ENDPOINT"] = base();
    o.env = map_env(std::move(env));
    return Credential::create(io, http, secrets, &events, std::move(o));
  }
  std::shared_ptr<Credential> static_token(std::string token = "static-test-token") {
    CredentialOptions o;
    o.source = "static";
    o.token = std::move(token);
    return credential(o);
  }

  rest::ContextPtr ctx(rest::Options o = {}) {
    o.retry.backoff = 0.001;
    return std::make_shared<rest::Context>(io, o, &events, secrets);
  }

  // Runs body(ctx) to its end (or 20 s).
  template <class T>
  Outcome<T> run(rest::ContextPtr ctx, std::function<Task<T>(rest::ContextPtr)> body) {
    std::optional<Outcome<T>> out;
    auto op = rest::spawn<T, rest::Context>(ctx, body, [&](Outcome<T> o) { out.emplace(std::move(o)); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    io.restart();
    while (!out && std::chrono::steady_clock::now() < deadline) io.run_one_for(std::chrono::milliseconds(20));
    REQUIRE_MESSAGE(out.has_value(), "the call did not finish in 20 s");
    return std::move(*out);
  }

  Outcome<AccessToken> token(const std::shared_ptr<Credential>& c, std::string scope = "https://management.azure.com/.default",
                             bool fresh = false) {
    return run<AccessToken>(ctx(), [c, scope, fresh](rest::ContextPtr x) { return c->token(x, scope, fresh); });
  }

  Outcome<ArmResponse> arm(const std::shared_ptr<Credential>& c, ArmRequest req, ArmOptions o = {}) {
    if (o.poll_interval == 5) o.poll_interval = 0.01;
    o.retry.backoff = 0.001;
    Arm client(io, http, c, &events, base());
    auto x = std::make_shared<rest::Context>(io, static_cast<rest::Options>(o), &events, secrets);
    return run<ArmResponse>(x, [client, req, o](rest::ContextPtr c2) mutable { return client.send(c2, req, o); });
  }

  std::vector<std::string> requests() const {
    std::vector<std::string> out;
    for (auto& s : server.seen) out.push_back(s.method + " " + path_of(s.target));
    return out;
  }
};

}  // namespace hoist::azure::testing
