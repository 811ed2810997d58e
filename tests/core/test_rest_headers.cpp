// The REST layer's header grammars (WWW-Authenticate, Link, Retry-After) and URL helpers.
#include <doctest/doctest.h>
#include <hoist/rest.hpp>

using namespace hoist::rest;

TEST_CASE("a registry's Bearer challenge") {
  auto c = parse_www_authenticate(
      R"(Bearer realm="http://127.0.0.1:5003/token",service="127.0.0.1:5002",scope="repository:app:pull,push")");
  REQUIRE(c.size() == 1);
  CHECK(c[0].scheme == "bearer");
  CHECK(c[0].param("realm") == "http://127.0.0.1:5003/token");
  CHECK(c[0].param("service") == "127.0.0.1:5002");
  CHECK(c[0].param("scope") == "repository:app:pull,push");
  CHECK(c[0].param("error").empty());
}

TEST_CASE("challenge parameters: case, spaces, unquoted values, escapes, errors") {
  auto c = parse_www_authenticate(
      R"(BEARER  Realm = "https://auth.example/token" , service=registry.example ,)"
      R"( error="insufficient_scope", error_description="say \"hi\"")");
  REQUIRE(c.size() == 1);
  CHECK(c[0].scheme == "bearer");
  CHECK(c[0].param("realm") == "https://auth.example/token");
  CHECK(c[0].param("service") == "registry.example");
  CHECK(c[0].param("error") == "insufficient_scope");
  CHECK(c[0].param("error_description") == "say \"hi\"");
}

TEST_CASE("several challenges in one header, and a comma inside quotes") {
  auto c = parse_www_authenticate(
      R"(Basic realm="a, b", Bearer realm="https://t/token",service="s", Negotiate)");
  REQUIRE(c.size() == 3);
  CHECK(c[0].scheme == "basic");
  CHECK(c[0].param("realm") == "a, b");
  CHECK(c[1].scheme == "bearer");
  CHECK(c[1].param("service") == "s");
  CHECK(c[2].scheme == "negotiate");
  CHECK(c[2].params.empty());
}

TEST_CASE("token68 challenges") {
  auto c = parse_www_authenticate("Negotiate abc+/def==, Basic realm=\"x\"");
  REQUIRE(c.size() == 2);
  CHECK(c[0].token68 == "abc+/def==");
  CHECK(c[1].param("realm") == "x");
}

TEST_CASE("empty and junk headers do not crash") {
  CHECK(parse_www_authenticate("").empty());
  CHECK(parse_www_authenticate(" , ,").empty());
  auto c = parse_www_authenticate("Bearer realm=\"unterminated");
  REQUIRE(c.size() == 1);
  CHECK(c[0].param("realm") == "unterminated");
}

TEST_CASE("Link rel=next") {
  CHECK(parse_link_next(R"(</v2/app/tags/list?last=b&n=2>; rel="next")") == "/v2/app/tags/list?last=b&n=2");
  CHECK(parse_link_next(R"(<https://r/v2/_catalog?last=x>;rel=next)") == "https://r/v2/_catalog?last=x");
  CHECK(parse_link_next(R"(</first>; rel="prev", </second>; rel="next")") == "/second");
  CHECK(parse_link_next(R"(</a>; rel="prev next")") == "/a");
  CHECK(parse_link_next(R"(</a>; rel="prev")").empty());
  CHECK(parse_link_next("").empty());
}

TEST_CASE("Retry-After: seconds or an HTTP date") {
  CHECK(*parse_retry_after("3", 0) == 3);
  CHECK(*parse_retry_after(" 120 ", 0) == 120);
  // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
  CHECK(*parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == doctest::Approx(10));
  CHECK(*parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490) == 0);
  CHECK_FALSE(parse_retry_after("", 0));
  CHECK_FALSE(parse_retry_after("soon", 0));
  CHECK_FALSE(parse_retry_after("-1", 0));
  CHECK_FALSE(parse_retry_after("1e3", 0));
  CHECK_FALSE(parse_retry_after("99999999999999999999", 0));
  CHECK_FALSE(parse_retry_after("\xff\xfe", 0));
}

TEST_CASE("Retry-After: the obsolete date forms RFC 9110 still asks recipients to accept") {
  CHECK(*parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412470) == doctest::Approx(10));
  CHECK(*parse_retry_after("Wed Oct 21 07:28:00 2015", 1445412470) == doctest::Approx(10));
}

TEST_CASE("urls: encode, resolve, set a query parameter, host") {
  CHECK(url_encode("sha256:ab/c d~") == "sha256%3Aab%2Fc%20d~");
  CHECK(resolve_url("http://r:5000/v2/app/tags/list?n=2", "/v2/app/tags/list?last=b") ==
        "http://r:5000/v2/app/tags/list?last=b");
  CHECK(resolve_url("http://r:5000/v2/app/tags/list", "https://other/x") == "https://other/x");
  CHECK(resolve_url("http://r:5000/a/b?x=1", "c?y=2") == "http://r:5000/a/c?y=2");
  CHECK(resolve_url("http://r:5000/a/b?x=1", "?y=2") == "http://r:5000/a/b?y=2");
  CHECK(resolve_url("https://r/a", "//s/b") == "https://s/b");
  CHECK(with_query("http://k/api/v1/pods?limit=2&continue=old", "continue", "a b=") ==
        "http://k/api/v1/pods?limit=2&continue=a%20b%3D");
  CHECK(with_query("http://k/x", "digest", "sha256:ab") == "http://k/x?digest=sha256%3Aab");
  CHECK(with_query("http://k/x?_state=s#f", "digest", "d") == "http://k/x?_state=s&digest=d#f");
  CHECK(url_host("https://user:pw@myacr.azurecr.io/v2/?x") == "myacr.azurecr.io");
  CHECK(url_host("http://127.0.0.1:5000") == "127.0.0.1:5000");
}

// A remote's error body is copied into details: one nested 100k deep must not recurse.
TEST_CASE("an error body nested 100k deep is ignored, not copied") {
  for (const char* open : {"[", "{\"error\":"}) {
    hoist::HttpResponse resp;
    resp.status = 500;
    std::string body;
    for (int i = 0; i < 100000; ++i) body += open;
    resp.body = body + "1" + std::string(100000, open[0] == '[' ? ']' : '}');
    auto e = default_error_parser(resp);
    CHECK(e.details.empty());
    CHECK(e.message.empty());
  }
}
