// Manifests, media types, digests and credentials from docker's config.json.
#include <doctest/doctest.h>
#include <hoist/registry.hpp>

#include <cstdlib>

using namespace hoist::registry;

namespace {
const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');
}  // namespace

TEST_CASE("sha256 digests, whole and incremental") {
  // sha256("") and sha256("abc") from FIPS 180-2
  CHECK(sha256_digest("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_digest("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update("a");
  h.update("bc");
  CHECK(h.digest() == sha256_digest("abc"));
  CHECK(digest_matches("abc", sha256_digest("abc")));
  CHECK_FALSE(digest_matches("abd", sha256_digest("abc")));
  CHECK_FALSE(digest_matches("abc", "md5:900150983cd24fb0d6963f7d28e17f72"));
  CHECK(digest_matches("abc",
                       "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                       "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"));
}

TEST_CASE("digest syntax") {
  CHECK_NOTHROW(check_digest(kA));
  CHECK_THROWS_WITH_AS(check_digest("sha256:xyz"), doctest::Contains("64 lower-case hex"), hoist::Error);
  CHECK_THROWS_WITH_AS(check_digest("abc"), doctest::Contains("no algorithm"), hoist::Error);
  CHECK_THROWS_WITH_AS(check_digest("md5:abc"), doctest::Contains("unsupported algorithm"), hoist::Error);
}

TEST_CASE("media types") {
  CHECK(media::is_index(media::oci_index));
  CHECK(media::is_index(media::docker_list));
  CHECK_FALSE(media::is_index(media::docker_manifest));
  CHECK(media::is_manifest(media::oci_manifest));
  CHECK_FALSE(media::is_manifest("application/vnd.docker.distribution.manifest.v1+prettyjws"));
  auto accept = media::accept_manifests();
  for (auto t : {media::oci_index, media::oci_manifest, media::docker_list, media::docker_manifest})
    CHECK(accept.find(t) != std::string::npos);
}

TEST_CASE("an image manifest lists its config and layers") {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":")" + kA + R"("},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":")" + kB + R"("}]})";
  auto m = parse_manifest(body, "");
  CHECK_FALSE(m.index);
  CHECK(m.media_type == media::docker_manifest);
  REQUIRE(m.blobs.size() == 2);
  CHECK(m.blobs[0].digest == kA);
  CHECK(m.blobs[0].size == 10);
  CHECK(m.blobs[1].digest == kB);
}

TEST_CASE("an index lists its manifests; media type from the header when the body has none") {
  std::string body = R"({"schemaVersion":2,"manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":5,"digest":")" + kA + R"(","platform":{"os":"linux","architecture":"amd64"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":6,"digest":")" + kC + R"("}]})";
  auto m = parse_manifest(body, "application/vnd.oci.image.index.v1+json; charset=utf-8");
  CHECK(m.index);
  CHECK(m.media_type == media::oci_index);
  REQUIRE(m.manifests.size() == 2);
  CHECK(m.manifests[0].platform["architecture"] == "amd64");
  CHECK(m.manifests[1].digest == kC);
  // no mediaType anywhere: the fields tell
  CHECK(parse_manifest(body, "").media_type == media::oci_index);
}

TEST_CASE("bad manifests say what is wrong") {
  CHECK_THROWS_WITH_AS(parse_manifest("not json", ""), doctest::Contains("not a JSON object"), hoist::Error);
  CHECK_THROWS_WITH_AS(parse_manifest(R"({"mediaType":"text/plain"})", ""),
                       doctest::Contains("unsupported media type"), hoist::Error);
  CHECK_THROWS_WITH_AS(parse_manifest(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json"})", ""),
                       doctest::Contains("no config"), hoist::Error);
  CHECK_THROWS_WITH_AS(
      parse_manifest(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"size":1,"digest":"sha256:zz"}})", ""),
      doctest::Contains("config"), hoist::Error);
  CHECK_THROWS_WITH_AS(
      parse_manifest(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":")" + kA + R"("}]})", ""),
      doctest::Contains("manifests[0] has no valid size"), hoist::Error);
}

TEST_CASE("docker config.json: auths, credHelpers, credsStore") {
  // "hoist:s3cret" and "00000000-0000-0000-0000-000000000000:refresh"
  auto config = nlohmann::json::parse(R"({
    "auths": {
      "127.0.0.1:5001": {"auth": "aG9pc3Q6czNjcmV0"},
      "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
      "https://other.example/v2/": {"username": "u", "password": "p"},
      "acr.example": {"identitytoken": "the-refresh-token"},
      "empty.example": {}
    },
    "credHelpers": {"helped.example": "fake"}
  })");
  auto l = lookup_docker_config(config, "127.0.0.1:5001");
  REQUIRE(l.credentials);
  CHECK(l.credentials->username == "hoist");
  CHECK(l.credentials->password == "s3cret");
  CHECK(l.credentials->source == "config");
  CHECK(lookup_docker_config(config, "docker.io").credentials->username == "hub");
  CHECK(lookup_docker_config(config, "other.example").credentials->password == "p");
  CHECK(lookup_docker_config(config, "acr.example").credentials->identity_token == "the-refresh-token");
  CHECK_FALSE(lookup_docker_config(config, "empty.example").credentials);
  CHECK_FALSE(lookup_docker_config(config, "unknown.example").credentials);
  CHECK(lookup_docker_config(config, "helped.example").helper == "fake");

  config["credsStore"] = "desktop";  // docker: the store serves every registry without a helper
  CHECK(lookup_docker_config(config, "127.0.0.1:5001").helper == "desktop");
  CHECK(lookup_docker_config(config, "helped.example").helper == "fake");
}

TEST_CASE("bad config.json entries are named") {
  auto config = nlohmann::json::parse(R"({"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}})");  // "nocolon"
  CHECK_THROWS_WITH_AS(lookup_docker_config(config, "r.example"), doctest::Contains("auths[\"r.example\"]"),
                       hoist::Error);
  auto bad64 = nlohmann::json::parse(R"({"auths": {"r.example": {"auth": "!!!"}}})");
  CHECK_THROWS_WITH_AS(lookup_docker_config(bad64, "r.example"), doctest::Contains("base64"), hoist::Error);
  CHECK_THROWS_AS(lookup_docker_config(nlohmann::json::array(), "r.example"), hoist::Error);
}

TEST_CASE("credential helper output") {
  auto c = parse_helper_output(R"({"ServerURL":"r.example","Username":"bob","Secret":"pw"})", "fake");
  CHECK(c.username == "bob");
  CHECK(c.password == "pw");
  CHECK(c.source == "helper:fake");
  auto t = parse_helper_output(R"({"ServerURL":"r.example","Username":"<token>","Secret":"idt"})", "fake");
  CHECK(t.identity_token == "idt");
  CHECK(t.username.empty());
  CHECK_THROWS_WITH_AS(parse_helper_output("oops", "fake"), doctest::Contains("docker-credential-fake"), hoist::Error);
}

TEST_CASE("docker_config_path follows DOCKER_CONFIG") {
  const char* old_home = std::getenv("HOME");
  std::string home = old_home ? old_home : "";
  const char* old_dc = std::getenv("DOCKER_CONFIG");
  std::string dc = old_dc ? old_dc : "";
  setenv("DOCKER_CONFIG", "/tmp/some-dir", 1);
  CHECK(docker_config_path() == "/tmp/some-dir/config.json");
  unsetenv("DOCKER_CONFIG");
  setenv("HOME", "/home/x", 1);
  CHECK(docker_config_path() == "/home/x/.docker/config.json");
  setenv("HOME", home.c_str(), 1);
  if (old_dc) setenv("DOCKER_CONFIG", dc.c_str(), 1);
}
