#pragma once
// HTTP on the engine's loop: libcurl's multi interface driven by Asio (no thread, no
// blocking). Used by hoist.http, the registry client, Azure, Kubernetes and verify.
#include <hoist/operation.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
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
  std::string proxy;             // a proxy URL for this request (kubeconfig proxy-url); "" = the environment's
  bool follow_redirects = true;  // keeps Authorization only on the same host
  int max_redirects = 10;

  // Streaming upload: called for more body bytes; return the bytes written, 0 at the end,
  // or HttpClient::kPause to pause until Transfer::resume(). body_size: -1 when unknown
  // (chunked encoding).
  std::function<std::size_t(char* buffer, std::size_t size)> read_body;
  std::int64_t body_size = -1;
  // Streaming download: every received piece; return false to pause until resume(). The
  // piece is consumed either way (false means "no more for now", not "give it back").
  // When set, HttpResponse::body stays empty.
  std::function<bool(std::string_view piece)> on_data;
  // Called once with the final response's status and headers, before its first body byte
  // (or at the end when there is no body). Headers of redirects and 1xx are not seen.
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
// un-pauses a paused upload or download. Both may be called from inside the transfer's own
// callbacks (read_body, on_data) or another transfer's; the work is deferred when needed.
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

// The URL with secret-looking parts masked: userinfo passwords and the values of query
// parameters such as sig, token, password, X-Amz-Signature. For logs, events and errors.
std::string redact_url(std::string_view url);

// Streams the body of one transfer into another (a blob GET into a PUT) through a bounded
// buffer, pausing the source when the buffer is full and the sink when it is empty:
//
//   auto pipe = std::make_shared<BodyPipe>(1 << 20);
//   pipe->connect(get_request, put_request);   // sets get.on_data, put.read_body
//   pipe->source = http.request(get_request, [pipe](auto r) { pipe->source_done(r); ... });
//   pipe->sink = http.request(put_request, [pipe](auto r) { pipe->sink_done(r); ... });
//
// put_request.body_size should be the source's length when known (else chunked). When one
// side fails, the other is cancelled. Create it with make_shared (callbacks hold weak refs).
class BodyPipe : public std::enable_shared_from_this<BodyPipe> {
 public:
  explicit BodyPipe(std::size_t capacity = 1 << 20) : capacity_(capacity) {}
  void connect(HttpRequest& source, HttpRequest& sink);
  // Ends the stream (ok) or aborts the sink (error).
  void source_done(const Outcome<HttpResponse>& outcome);
  // Cancels the source if the sink failed (or finished before reading everything).
  void sink_done(const Outcome<HttpResponse>& outcome);

  std::shared_ptr<Transfer> source, sink;
  std::size_t max_buffered() const { return max_buffered_; }  // for tests
  std::size_t pauses() const { return pauses_; }

 private:
  std::size_t capacity_;
  std::string buffer_;
  std::size_t head_ = 0;  // consumed bytes at the front of buffer_
  bool ended_ = false, failed_ = false, source_paused_ = false, sink_paused_ = false;
  std::size_t max_buffered_ = 0, pauses_ = 0;
};

}  // namespace hoist
