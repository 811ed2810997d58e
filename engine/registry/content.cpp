// Manifests, media types and digests: what an image is made of and how it is verified.
#include <hoist/json.hpp>
#include <hoist/registry.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace hoist::registry {

namespace media {

std::string accept_manifests() {
  return std::string(oci_index) + ", " + std::string(docker_list) + ", " + std::string(oci_manifest) +
         ", " + std::string(docker_manifest);
}

bool is_index(std::string_view t) { return t == oci_index || t == docker_list; }

bool is_manifest(std::string_view t) {
  return is_index(t) || t == oci_manifest || t == docker_manifest;
}

}  // namespace media

namespace {

[[noreturn]] void bad_manifest(const std::string& what) {
  throw Error(Code::invalid_argument, "invalid manifest: " + what);
}

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Descriptor read_descriptor(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad_manifest(where + " is not an object");
  Descriptor d;
  if (!j.contains("digest") || !j["digest"].is_string()) bad_manifest(where + " has no digest");
  d.digest = j["digest"].get<std::string>();
  try {
    check_digest(d.digest);
  } catch (const Error& e) {
    bad_manifest(where + ": " + e.message());
  }
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<std::int64_t>() < 0)
    bad_manifest(where + " has no valid size");
  d.size = j["size"].get<std::int64_t>();
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.media_type = j["mediaType"];
  if (j.contains("platform")) d.platform = j["platform"];
  return d;
}

std::string hex(const unsigned char* p, unsigned n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = kHex[p[i] >> 4];
    s[2 * i + 1] = kHex[p[i] & 15];
  }
  return s;
}

std::string hash_hex(const EVP_MD* md, std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned n = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), out.data(), &n, md, nullptr))
    throw Error(Code::internal, "OpenSSL digest failed");
  return hex(out.data(), n);
}

}  // namespace

ManifestContent parse_manifest(std::string_view bytes, std::string_view content_type) {
  ManifestContent m;
  if (json_depth_exceeded(bytes) != std::string_view::npos)  // copied recursively later
    bad_manifest("nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  m.json = nlohmann::json::parse(bytes, nullptr, false);  // depth checked just above
  if (m.json.is_discarded() || !m.json.is_object()) bad_manifest("not a JSON object");
  const auto& j = m.json;
  if (j.contains("mediaType") && j["mediaType"].is_string()) m.media_type = j["mediaType"];
  std::string_view ct = content_type.substr(0, content_type.find(';'));
  if (m.media_type.empty()) m.media_type = std::string(ct);
  if (m.media_type.empty() || m.media_type == "application/json") {
    // OCI allows an absent mediaType: tell an index from a manifest by its fields
    m.media_type = j.contains("manifests") ? media::oci_index : media::oci_manifest;
  }
  if (!media::is_manifest(m.media_type))
    bad_manifest("unsupported media type '" + m.media_type + "'");
  m.index = media::is_index(m.media_type);
  if (m.index) {
    if (!j.contains("manifests") || !j["manifests"].is_array()) bad_manifest("index has no manifests array");
    for (std::size_t i = 0; i < j["manifests"].size(); ++i)
      m.manifests.push_back(read_descriptor(j["manifests"][i], "manifests[" + std::to_string(i) + "]"));
  } else {
    if (!j.contains("config")) bad_manifest("image manifest has no config");
    m.blobs.push_back(read_descriptor(j["config"], "config"));
    if (j.contains("layers")) {
      if (!j["layers"].is_array()) bad_manifest("layers is not an array");
      for (std::size_t i = 0; i < j["layers"].size(); ++i)
        m.blobs.push_back(read_descriptor(j["layers"][i], "layers[" + std::to_string(i) + "]"));
    }
  }
  return m;
}

void check_digest(std::string_view digest) {
  auto colon = digest.find(':');
  if (colon == std::string_view::npos)
    throw Error(Code::invalid_argument, "digest '" + std::string(digest) + "' has no algorithm (expected sha256:<hex>)");
  auto algo = digest.substr(0, colon);
  auto hexpart = digest.substr(colon + 1);
  std::size_t want = algo == "sha256" ? 64 : algo == "sha512" ? 128 : 0;
  if (want == 0)
    throw Error(Code::invalid_argument, "digest '" + std::string(digest) + "': unsupported algorithm '" +
                                            std::string(algo) + "'");
  if (hexpart.size() != want || !lower_hex(hexpart))
    throw Error(Code::invalid_argument, "digest '" + std::string(digest) + "': expected " +
                                            std::to_string(want) + " lower-case hex digits");
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || !EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr))
    throw Error(Code::internal, "OpenSSL sha256 init failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(std::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

std::string Sha256::digest() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &n);
  return "sha256:" + hex(out.data(), n);
}

std::string sha256_digest(std::string_view bytes) { return "sha256:" + hash_hex(EVP_sha256(), bytes); }

bool digest_matches(std::string_view bytes, std::string_view digest) {
  if (digest.substr(0, 7) == "sha256:") return hash_hex(EVP_sha256(), bytes) == digest.substr(7);
  if (digest.substr(0, 7) == "sha512:") return hash_hex(EVP_sha512(), bytes) == digest.substr(7);
  return false;
}

}  // namespace hoist::registry
