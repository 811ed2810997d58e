#include <doctest/doctest.h>
#include <hoist/events.hpp>
#include <hoist/secrets.hpp>

#include <memory>

namespace {

std::string b64(std::string_view in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned val = 0;
  int bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(abc[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(abc[((val << 8) >> (bits + 8)) & 0x3F]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

}  // namespace

TEST_CASE("secrets are masked in every form they take") {
  hoist::Secrets s;
  const std::string secret = "hunter2-Pa$$word/x";
  s.add(secret);
  struct Row {
    const char* name;
    std::string text;
  };
  const Row rows[] = {
      {"raw", "password is " + secret + " ok"},
      {"base64", "Authorization: Basic " + b64(secret)},
      {"basic auth header user:secret", "Authorization: Basic " + b64("admin:" + secret)},
      {"basic auth header u:secret", "Authorization: Basic " + b64("ab:" + secret)},
      {"url-encoded", "https://x/?p=hunter2-Pa%24%24word%2Fx&q=1"},
  };
  for (auto& row : rows) {
    CAPTURE(row.name);
    auto out = s.scrub(row.text);
    CHECK(out.find(secret) == std::string::npos);
    CHECK(out.find("***") != std::string::npos);
    if (std::string(row.name).find("base64") != std::string::npos) CHECK(out.find(b64(secret)) == std::string::npos);
  }
}

TEST_CASE("short values are not registered, they would mask everything") {
  hoist::Secrets s;
  s.add("abc");
  CHECK(s.empty());
  CHECK(s.scrub("abc") == "abc");
}

TEST_CASE("a stream scrubber catches a secret split across writes") {
  auto s = std::make_shared<hoist::Secrets>();
  s->add("split-secret-value");
  hoist::StreamScrubber scrubber(s);
  std::string out = scrubber.feed("before split-sec");
  out += scrubber.feed("ret-value after\n");
  out += scrubber.finish();
  CHECK(out == "before *** after\n");
}

TEST_CASE("each line of a multi-line secret is masked on its own") {
  hoist::Secrets s;
  s.add("-----BEGIN KEY-----\nMIIEowIBAAKCAQEA1234\nabcdefghijklmnop\n-----END KEY-----\n");
  CHECK(s.scrub("line: MIIEowIBAAKCAQEA1234") == "line: ***");
  CHECK(s.scrub("abcdefghijklmnop") == "***");
}

TEST_CASE("the event bus scrubs messages and fields, keys included") {
  auto secrets = std::make_shared<hoist::Secrets>();
  hoist::EventBus bus(secrets);
  std::vector<hoist::Event> seen;
  bus.add_sink(hoist::make_callback_sink([&](const hoist::Event& e) { seen.push_back(e); }));
  secrets->add("tok-123456");
  bus.log("info", "using tok-123456", {{"tok-123456", {"tok-123456", 1}}});
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].message == "using ***");
  CHECK(seen[0].fields.dump().find("tok-123456") == std::string::npos);
}
