// The client's transport choices and its errors (engine/registry/internal.hpp).
#include <doctest/doctest.h>

#include "registry/internal.hpp"

#include <cstdlib>

using namespace hoist::registry;
using namespace hoist::registry::detail;

namespace {

struct Fixture {
  boost::asio::io_context io;
  hoist::HttpClient http{io};
  std::shared_ptr<ClientImpl> make(ClientOptions o = {}) {
    return std::static_pointer_cast<ClientImpl>(
        Client::create(io, http, std::make_shared<hoist::Secrets>(), nullptr, std::move(o)));
  }
  Ctx ctx(CallOptions o = {}) { return std::make_shared<CallCtx>(io, std::move(o)); }
};

}  // namespace

TEST_CASE("HTTPS by default, plain HTTP on loopback and for insecure registries") {
  Fixture f;
  auto c = f.make();
  auto ctx = f.ctx();
  CHECK(c->endpoint(ctx, "myacr.azurecr.io").base == "https://myacr.azurecr.io");
  CHECK(c->endpoint(ctx, "docker.io").base == "https://registry-1.docker.io");
  CHECK(c->endpoint(ctx, "127.0.0.1:5000").base == "http://127.0.0.1:5000");
  CHECK(c->endpoint(ctx, "127.3.2.1").base == "http://127.3.2.1");
  CHECK(c->endpoint(ctx, "localhost:5000").base == "http://localhost:5000");
  CHECK(c->endpoint(ctx, "[::1]:5000").base == "http://[::1]:5000");
  CHECK(c->endpoint(ctx, "10.0.0.5:5000").base == "https://10.0.0.5:5000");

  CallOptions o;
  o.insecure_registries = {"10.0.0.5:5000"};
  CHECK(c->endpoint(f.ctx(o), "10.0.0.5:5000").base == "http://10.0.0.5:5000");

  auto c2 = f.make(ClientOptions{{"mirror.internal"}, "", true});
  CHECK(c2->endpoint(ctx, "mirror.internal").base == "http://mirror.internal");
  CHECK(c2->endpoint(ctx, "other.internal").base == "https://other.internal");
}

TEST_CASE("HOIST_INSECURE_REGISTRIES is a comma list") {
  setenv("HOIST_INSECURE_REGISTRIES", " a.example:5000 , b.example,", 1);
  Fixture f;
  auto c = f.make();
  auto ctx = f.ctx();
  CHECK(c->endpoint(ctx, "a.example:5000").base == "http://a.example:5000");
  CHECK(c->endpoint(ctx, "b.example").base == "http://b.example");
  CHECK(c->endpoint(ctx, "c.example").base == "https://c.example");
  unsetenv("HOIST_INSECURE_REGISTRIES");
}

TEST_CASE("registry errors keep the registry's own words") {
  Fixture f;
  auto c = f.make();
  auto ctx = f.ctx();
  hoist::HttpResponse r;
  r.status = 404;
  r.body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]})";
  Req req{"GET", "/v2/app/manifests/v9", {}, {}, {}, "resolve 127.0.0.1:5000/app:v9"};
  Endpoint ep{"127.0.0.1:5000", "http://127.0.0.1:5000"};
  hoist::Error e = c->status_error(ctx, r, req, ep);
  CHECK(e.code() == hoist::Code::not_found);
  CHECK(e.message() == "resolve 127.0.0.1:5000/app:v9: manifest unknown (MANIFEST_UNKNOWN) (HTTP 404 from 127.0.0.1:5000)");
  CHECK(e.details()["errors"][0]["detail"]["Tag"] == "v9");
  CHECK(e.details()["url"] == "http://127.0.0.1:5000/v2/app/manifests/v9");
  CHECK(e.details()["registry"] == "127.0.0.1:5000");

  r.status = 405;
  r.body = "";
  CHECK(c->status_error(ctx, r, req, ep).code() == hoist::Code::forbidden);
  r.status = 503;
  r.body = "<html>down</html>";
  auto e503 = c->status_error(ctx, r, req, ep);
  CHECK(e503.code() == hoist::Code::unavailable);
  CHECK(e503.retryable());
  CHECK(e503.details()["body"] == "<html>down</html>");

  auto m = digest_mismatch("copy blob x", "sha256:aa", "sha256:bb");
  CHECK(m.code() == hoist::Code::internal);
  CHECK_FALSE(m.retryable());
  CHECK(m.details()["reason"] == "digest_mismatch");
}

TEST_CASE("a 401 says credentials are missing when none were given, rejected when they were") {
  Fixture f;
  auto c = f.make(ClientOptions{{}, "", false});
  hoist::HttpResponse r;
  r.status = 401;
  r.body = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})";
  Req req{"GET", "/v2/app/manifests/v1", {}, {}, {}, "resolve 127.0.0.1:5001/app:v1"};
  Endpoint ep{"127.0.0.1:5001", "http://127.0.0.1:5001"};

  auto none = c->status_error(f.ctx(), r, req, ep);
  CHECK(none.code() == hoist::Code::unauthorized);
  CHECK(none.message().find("give credentials with registry.login{}") != std::string::npos);
  CHECK(none.message().find("rejected") == std::string::npos);

  CallOptions o;
  Credentials given;
  given.username = "hoist";
  given.password = "wrong-password";
  given.source = "options";
  o.credentials["127.0.0.1:5001"] = given;
  auto refused = c->status_error(f.ctx(o), r, req, ep);
  CHECK(refused.code() == hoist::Code::unauthorized);
  CHECK(refused.message() ==
        "resolve 127.0.0.1:5001/app:v1: 127.0.0.1:5001 rejected the credentials given (user 'hoist' from "
        "the call's auth option): authentication required (UNAUTHORIZED) (HTTP 401 from 127.0.0.1:5001)");
  CHECK(refused.message().find("registry.login{}") == std::string::npos);
  CHECK(refused.to_json().dump().find("wrong-password") == std::string::npos);

  given.source = "";  // login() names its own source
  c->login("127.0.0.1:5001", given);
  CHECK(c->status_error(f.ctx(), r, req, ep).message().find("(user 'hoist' from registry.login)") !=
        std::string::npos);
}

TEST_CASE("urls") {
  Endpoint ep{"r.io", "https://r.io"};
  CHECK(absolute_url(ep, "/v2/") == "https://r.io/v2/");
  CHECK(absolute_url(ep, "v2/x") == "https://r.io/v2/x");
  CHECK(absolute_url(ep, "https://other/upload?x=1") == "https://other/upload?x=1");
  CHECK(repo_scope("team/app", "pull,push") == "repository:team/app:pull,push");
}
