#pragma once
// HTTP on the engine's loop: libcurl's multi interface driven by Asio (no thread, no
// blocking). Used by hoist.http, the registry client, Azure, Kubernetes and verify.
#include <hoist/operation.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hoist {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;              // sent as is (unless read_body is set)
  double timeout = 30;           // seconds for the whole transfer; 0 = none
  double connect_timeout = 10;
  bool insecure = false;         // skip TLS verification
  std::string cacert;            // CA bundle file
  std::string client_cert, client_key;  // mutual TLS (kubeconfig)
  std::string unix_socket;       // e.g. /var/run/docker.sock
  bool follow_redirects = true;  // keeps Authorization only on the same host
  int max_redirects = 10;

  // Streaming upload: called for more body bytes; return the bytes written, 0 at the end,
  // or HttpClient::kPause to pause until Transfer::resume(). body_size: -1 when unknown
  // (chunked encoding).
  std::function<std::size_t(char* buffer, std::size_t size)> read_body;
  std::int64_t body_size = -1;
  // Streaming download: every received piece; return false to pause until resume().
  // When set, HttpResponse::body stays empty.
  std::function<bool(std::string_view piece)> on_data;
  // Called once the status line and headers are in (before body bytes).
  std::function<void(long status, const Headers& headers)> on_headers;
};

struct HttpResponse {
  long status = 0;
  Headers headers;              // names lower-cased, in arrival order (last response only)
  std::string body;
  std::string effective_url;
  double duration = 0;          // seconds
  std::string header(std::string_view name) const;  // first value, "" if absent
};

// A transfer in flight: cancel() aborts it (completion gets Code::cancelled), resume()
// un-pauses a paused upload or download.
class Transfer : public Operation {
 public:
  virtual void resume() = 0;
};

class HttpClient {
 public:
  static constexpr std::size_t kPause = static_cast<std::size_t>(-1);

  explicit HttpClient(boost::asio::io_context& io);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;

  // Completion runs on the loop. Transport failures map to Code::unavailable (connection
  // refused, DNS, TLS) or Code::timeout; any HTTP status, 4xx/5xx included, is a response.
  std::shared_ptr<Transfer> request(HttpRequest request, Completion<HttpResponse> done);

  // One client per loop, shared by every module (connection reuse).
  static HttpClient& for_loop(boost::asio::io_context& io);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hoist
