// Image references: Docker's grammar, docker.io defaults, and errors that say what is wrong.
#include <doctest/doctest.h>
#include <hoist/registry.hpp>

#include <string>

using hoist::registry::Reference;

namespace {

struct Good {
  const char* text;
  const char* registry;
  const char* repository;
  const char* tag;
  const char* digest;
};

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string error_of(const std::string& text) {
  try {
    Reference::parse(text);
  } catch (const hoist::Error& e) {
    CHECK(e.code() == hoist::Code::invalid_argument);
    return e.message();
  }
  return "";
}

}  // namespace

TEST_CASE("references parse like docker's") {
  const Good cases[] = {
      {"busybox", "docker.io", "library/busybox", "", ""},
      {"busybox:1.36", "docker.io", "library/busybox", "1.36", ""},
      {"user/app", "docker.io", "user/app", "", ""},
      {"docker.io/busybox", "docker.io", "library/busybox", "", ""},
      {"index.docker.io/user/app:v1", "docker.io", "user/app", "v1", ""},
      {"127.0.0.1:5000/app", "127.0.0.1:5000", "app", "", ""},
      {"127.0.0.1:5000/team/app:v1.2-rc_3", "127.0.0.1:5000", "team/app", "v1.2-rc_3", ""},
      {"localhost/app:latest", "localhost", "app", "latest", ""},
      {"localhost:5000/a/b/c", "localhost:5000", "a/b/c", "", ""},
      {"[::1]:5000/app:v1", "[::1]:5000", "app", "v1", ""},
      {"myacr.azurecr.io/web/api:2024.01", "myacr.azurecr.io", "web/api", "2024.01", ""},
      {"Registry.Example.com/app", "Registry.Example.com", "app", "", ""},
      {"my-reg.io/a.b/c__d/e---f", "my-reg.io", "a.b/c__d/e---f", "", ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    Reference r = Reference::parse(c.text);
    CHECK(r.registry == c.registry);
    CHECK(r.repository == c.repository);
    CHECK(r.tag == c.tag);
    CHECK(r.digest == c.digest);
  }
}

TEST_CASE("a digest, with or without a tag") {
  Reference r = Reference::parse("127.0.0.1:5000/app:v1@" + kDigest);
  CHECK(r.tag == "v1");
  CHECK(r.digest == kDigest);
  CHECK(r.target() == kDigest);
  CHECK(r.str() == "127.0.0.1:5000/app:v1@" + kDigest);
  Reference d = Reference::parse("127.0.0.1:5000/app@" + kDigest);
  CHECK(d.tag.empty());
  CHECK(d.name() == "127.0.0.1:5000/app");
}

TEST_CASE("target, host and str") {
  CHECK(Reference::parse("127.0.0.1:5000/app").target() == "latest");
  CHECK(Reference::parse("127.0.0.1:5000/app:v2").target() == "v2");
  CHECK(Reference::parse("busybox").host() == "registry-1.docker.io");
  CHECK(Reference::parse("busybox").str() == "docker.io/library/busybox");
  CHECK(Reference::parse("127.0.0.1:5000/app").host() == "127.0.0.1:5000");
}

TEST_CASE("bad references name the reference and what is wrong") {
  struct Bad {
    std::string text, why;
  };
  const Bad cases[] = {
      {"", "empty reference"},
      {"127.0.0.1:5000/App", "must be lowercase"},
      {"MyApp", "must be lowercase"},
      {"127.0.0.1:5000/app:", "empty tag"},
      {"127.0.0.1:5000/app:-bad", "bad tag"},
      {"127.0.0.1:5000/app:" + std::string(129, 'a'), "longer than 128"},
      {"127.0.0.1:5000/app@sha256:abc", "64 lower-case hex"},
      {"127.0.0.1:5000/app@md5:" + std::string(32, 'a'), "unsupported algorithm"},
      {"127.0.0.1:5000/app@" + std::string(64, 'a'), "no algorithm"},
      {"127.0.0.1:5000/app@sha256:" + std::string(64, 'A'), "hex"},
      {"127.0.0.1:5000/", "empty repository"},
      {"127.0.0.1:5000//app", "empty path component"},
      {"127.0.0.1:5000/-app", "start and end"},
      {"127.0.0.1:5000/a..b", "bad separator"},
      {"127.0.0.1:99999/app", "port out of range"},
      {"127.0.0.1:/app", "empty port"},
      {"bad_host.io/app", "bad registry host"},
      {"app with space", "whitespace"},
      {"[::1/app", "IPv6"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    std::string msg = error_of(c.text);
    CHECK(msg.find("'" + c.text + "'") != std::string::npos);
    CHECK(msg.find(c.why) != std::string::npos);
  }
  std::string long_name = "127.0.0.1:5000/" + std::string(250, 'a');
  CHECK(error_of(long_name).find("longer than 255") != std::string::npos);
}

TEST_CASE("repositories take no tag or digest") {
  CHECK(Reference::parse_repository("127.0.0.1:5000/app").repository == "app");
  CHECK_THROWS_WITH_AS(Reference::parse_repository("127.0.0.1:5000/app:v1"),
                       doctest::Contains("takes no tag"), hoist::Error);
  CHECK_THROWS_WITH_AS(Reference::parse_repository("127.0.0.1:5000/app@" + kDigest),
                       doctest::Contains("takes no digest"), hoist::Error);
}

TEST_CASE("registry hosts") {
  using hoist::registry::is_loopback_host;
  using hoist::registry::parse_registry_host;
  CHECK(parse_registry_host("127.0.0.1:5000") == "127.0.0.1:5000");
  CHECK(parse_registry_host("https://myacr.azurecr.io/") == "myacr.azurecr.io");
  CHECK(parse_registry_host("index.docker.io") == "docker.io");
  CHECK_THROWS_WITH_AS(parse_registry_host("host/path"), doctest::Contains("no path"), hoist::Error);
  CHECK_THROWS_AS(parse_registry_host(""), hoist::Error);
  CHECK(is_loopback_host("127.0.0.1:5000"));
  CHECK(is_loopback_host("127.1.2.3"));
  CHECK(is_loopback_host("localhost:5000"));
  CHECK(is_loopback_host("[::1]:5000"));
  CHECK_FALSE(is_loopback_host("127.example.com"));
  CHECK_FALSE(is_loopback_host("10.0.0.1:5000"));
  CHECK_FALSE(is_loopback_host("myacr.azurecr.io"));
}
