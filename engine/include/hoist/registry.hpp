#pragma once
// hoist.registry: a native OCI Distribution client on the engine's loop (HttpClient), with
// Docker's auth (Basic, Bearer token challenges, config.json, credential helpers, ACR
// refresh-token exchange). Nothing touches the disk: blobs stream from registry to registry.
#include <hoist/error.hpp>
#include <hoist/events.hpp>
#include <hoist/http.hpp>
#include <hoist/operation.hpp>
#include <hoist/rest.hpp>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hoist::registry {

// ------------------------------------------------------------------ references

// `[registry[:port]/]repository[:tag][@algorithm:hex]`, Docker's grammar. Docker Hub names
// are understood (docker.io, the library/ prefix) and contacted as registry-1.docker.io.
struct Reference {
  std::string registry;    // "127.0.0.1:5000", "docker.io"
  std::string repository;  // "app", "library/busybox"
  std::string tag;         // "" when absent
  std::string digest;      // "" when absent

  // Throws Error(invalid_argument) naming the reference and what is wrong with it.
  static Reference parse(std::string_view text);
  // A repository only (no tag or digest allowed).
  static Reference parse_repository(std::string_view text);

  std::string name() const;    // registry/repository
  std::string str() const;     // name[:tag][@digest]
  std::string target() const;  // digest, else tag, else "latest"
  std::string host() const;    // where to connect: registry-1.docker.io for docker.io
};

// A registry host: "127.0.0.1:5000", "[::1]:5000", "myacr.azurecr.io". Throws invalid_argument.
std::string parse_registry_host(std::string_view text);
bool is_loopback_host(std::string_view registry);

// ------------------------------------------------------------------ content

namespace media {
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view docker_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_manifest =
    "application/vnd.docker.distribution.manifest.v2+json";
// The Accept header for manifests: indexes first, like docker.
std::string accept_manifests();
bool is_index(std::string_view media_type);
bool is_manifest(std::string_view media_type);  // any of the four above
}  // namespace media

struct Descriptor {
  std::string media_type;
  std::string digest;
  std::int64_t size = -1;
  nlohmann::json platform;  // index entries only (null otherwise)
};

// What a manifest refers to: children manifests (index) or config + layers (image).
struct ManifestContent {
  std::string media_type;
  bool index = false;
  std::vector<Descriptor> manifests;
  std::vector<Descriptor> blobs;  // config first, then layers
  nlohmann::json json;
};

// Decodes manifest bytes; `content_type` is used when the body has no mediaType field.
// Throws invalid_argument (not JSON, unknown media type, bad descriptor).
ManifestContent parse_manifest(std::string_view bytes, std::string_view content_type);

// "sha256:<64 hex>" (or sha512:<128 hex>); throws invalid_argument naming what is wrong.
void check_digest(std::string_view digest);

// Incremental sha256 (OpenSSL EVP): digest() gives "sha256:<hex>".
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  std::string digest();  // finishes; call once

 private:
  void* ctx_;
};
std::string sha256_digest(std::string_view bytes);
// True when `bytes` hash to `digest` (sha256 or sha512).
bool digest_matches(std::string_view bytes, std::string_view digest);

// ------------------------------------------------------------------ auth

// The header grammars (WWW-Authenticate, Link, Retry-After) live in the REST layer
// (hoist/rest.hpp); a challenge is the registry's word for rest::Challenge.
using rest::Challenge;

struct Credentials {
  std::string username, password;
  std::string identity_token;  // a refresh token (config.json identitytoken, ACR)
  std::string registry_token;  // a bearer token sent as is
  std::string aad_token;       // ACR: exchanged for a refresh token first
  std::string source;          // "login" | "options" | "config" | "helper:<name>" | "anonymous"
  bool empty() const {
    return username.empty() && password.empty() && identity_token.empty() &&
           registry_token.empty() && aad_token.empty();
  }
};

// ACR's convention: this user name means "the password is a refresh token".
inline constexpr std::string_view kAcrTokenUser = "00000000-0000-0000-0000-000000000000";

// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
std::string docker_config_path();

// What config.json says for a registry host: inline credentials or a helper to run.
struct ConfigLookup {
  std::optional<Credentials> credentials;
  std::string helper;  // "" or the suffix of docker-credential-<helper>
};
// Throws invalid_argument when the config is not valid JSON or an auth field is bad.
ConfigLookup lookup_docker_config(const nlohmann::json& config, std::string_view registry);
// Decodes a credential helper's `get` output ({ServerURL, Username, Secret}).
Credentials parse_helper_output(std::string_view output, std::string_view helper);

// ------------------------------------------------------------------ client

struct ClientOptions {
  std::vector<std::string> insecure_registries;  // plain HTTP (loopback always is)
  std::string docker_config;                     // path; "" = docker_config_path()
  bool use_docker_config = true;
};

// Per call: the REST layer's options (retry policy, which stdlib sets; timeout per request;
// dry run) plus credentials and concurrency.
struct CallOptions : rest::Options {
  std::map<std::string, Credentials> credentials;  // by registry host, beats login/config
  std::vector<std::string> insecure_registries;
  int concurrency = 4;       // blobs in flight (copy)
  std::size_t buffer = 8 << 20;  // bytes held between a source GET and a destination PUT
};

struct Resolved {
  std::string digest, media_type;
  std::int64_t size = 0;
};

struct Manifest {
  Resolved resolved;
  std::string bytes;
  ManifestContent content;
};

struct CopyResult {
  std::string digest, media_type, image;
  int blobs_copied = 0, blobs_mounted = 0, blobs_skipped = 0, manifests = 0;
  std::int64_t bytes = 0;
  bool planned = false;
  std::vector<rest::PlanStep> steps;  // dry-run: {method, url, action, body, digest, size}
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  // `events` receives plan and progress events (may be null).
  static std::shared_ptr<Client> create(boost::asio::io_context& io, HttpClient& http,
                                        std::shared_ptr<Secrets> secrets, EventBus* events,
                                        ClientOptions options = {});
  virtual ~Client() = default;

  // Credentials kept for this client's life (a run); every secret is registered.
  virtual void login(const std::string& registry, Credentials credentials) = 0;
  virtual void logout(const std::string& registry) = 0;

  virtual OperationPtr resolve(Reference image, CallOptions o, Completion<Resolved> done) = 0;
  virtual OperationPtr exists(Reference image, CallOptions o, Completion<bool> done) = 0;
  // page_size: `n` per request; limit: stop after that many (0 = all).
  virtual OperationPtr tags(Reference repository, int page_size, int limit, CallOptions o,
                            Completion<std::vector<std::string>> done) = 0;
  virtual OperationPtr catalog(std::string registry, int page_size, int limit, CallOptions o,
                               Completion<std::vector<std::string>> done) = 0;
  virtual OperationPtr manifest(Reference image, CallOptions o, Completion<Manifest> done) = 0;
  virtual OperationPtr remove(Reference image, CallOptions o, Completion<CopyResult> done) = 0;
  virtual OperationPtr copy(Reference from, Reference to, CallOptions o,
                            Completion<CopyResult> done) = 0;
  virtual OperationPtr retag(Reference image, std::string tag, CallOptions o,
                             Completion<CopyResult> done) = 0;
  // ACR: exchanges an Entra (Azure AD) access token for the registry's refresh token, the
  // password `docker login -u 00000000-0000-0000-0000-000000000000` takes (what `az acr
  // login` does). The exchange endpoint is found from the registry's Bearer challenge.
  virtual OperationPtr exchange_acr_token(std::string registry, std::string aad_token, CallOptions o,
                                          Completion<std::string> done) = 0;
};

}  // namespace hoist::registry
