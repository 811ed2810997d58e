#pragma once
// The HTTP(S) front of `hoist serve`: a small server on the engine's Asio loop that reads
// whole requests (bounded), hands each to a callback with a way to answer it, and refuses
// what it cannot hand over (a body over the limit: 413; a request HTTP cannot parse: 400)
// by itself. What a request means (signatures, routes, the queue) is decided by the caller:
// stdlib/hoist/serve.lua.
//
// Also the two primitives a webhook receiver needs from OpenSSL: HMAC-SHA256 and a
// comparison whose time does not depend on where two byte strings differ.
#include <hoist/error.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hoist::serve {

struct Request {
  std::string method;
  std::string target;  // path and query, as sent
  std::string remote;  // peer address
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct ListenOptions {
  std::string host = "127.0.0.1";  // a numeric address
  std::uint16_t port = 0;          // 0: an ephemeral port (see Listener::port())
  std::string tls_cert, tls_key;   // PEM files: both for HTTPS, neither for HTTP
  std::size_t max_body = 1024 * 1024;
  std::size_t max_connections = 512;
  std::chrono::milliseconds read_timeout{10000};  // a client that sends too slowly is cut off
};

// Answers the request it came with; call it once (later calls are ignored). Destroying it
// unanswered answers 500.
using Respond = std::function<void(Response)>;
using OnRequest = std::function<void(Request, Respond)>;
// A request the server answered by itself (status 400, 413, 503) or a connection it dropped
// (status 0): for the log. `why` holds no header or body content.
using OnRefused = std::function<void(const std::string& remote, int status, const std::string& why)>;

class Listener {
 public:
  // Binds and starts accepting on `io`. Throws conflict (address in use) or invalid_argument
  // (bad address, a certificate or key that does not load).
  Listener(boost::asio::io_context& io, ListenOptions options, OnRequest on_request, OnRefused on_refused = {});
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  std::uint16_t port() const;
  bool tls() const;
  // Stops accepting; exchanges in flight finish. Idempotent.
  void close();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// HMAC-SHA256 of `data` under `key`: 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
// SHA-256 of `data`: 32 raw bytes.
std::string sha256(std::string_view data);
// True when a and b hold the same bytes; the time taken depends only on their lengths
// (CRYPTO_memcmp), so a signature cannot be guessed byte by byte from response times.
bool same_bytes(std::string_view a, std::string_view b);

}  // namespace hoist::serve
