// hoist serve's HTTP(S) server (see hoist/serve.hpp): Beast over the engine's Asio loop,
// one session per connection, keep-alive, a timeout per read, bodies bounded.
#include <hoist/serve.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

namespace hoist::serve {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// ---------------------------------------------------------------- crypto

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), out, &n))
    throw Error(Code::internal, "HMAC-SHA256 failed (OpenSSL)");
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr))
    throw Error(Code::internal, "SHA-256 failed (OpenSSL)");
  return std::string(reinterpret_cast<char*>(out), n);
}

bool same_bytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // lengths are not secret: a digest's is fixed
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---------------------------------------------------------------- the server

struct Listener::Impl : std::enable_shared_from_this<Listener::Impl> {
  asio::io_context& io;
  ListenOptions options;
  OnRequest on_request;
  OnRefused on_refused;
  tcp::acceptor acceptor;
  std::optional<asio::ssl::context> ssl;
  std::size_t connections = 0;
  bool closed = false;

  Impl(asio::io_context& io_, ListenOptions o, OnRequest on, OnRefused refused)
      : io(io_), options(std::move(o)), on_request(std::move(on)), on_refused(std::move(refused)), acceptor(io_) {}

  void refused(const std::string& remote, int status, const std::string& why) {
    if (on_refused) on_refused(remote, status, why);
  }
  void accept();
};

namespace {

const char* reason_text(int status) { return http::obsolete_reason(static_cast<http::status>(status)).data(); }

std::string json_error(int status, const std::string& message) {
  // message is ours (no request content): quotes and backslashes are all it may need escaped
  std::string m;
  for (char c : message) {
    if (c == '"' || c == '\\') m += '\\';
    m += c;
  }
  return "{\"status\":" + std::to_string(status) + ",\"error\":\"" + m + "\"}";
}

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(std::shared_ptr<Listener::Impl> owner, Stream stream, std::string remote)
      : owner_(std::move(owner)), stream_(std::move(stream)), remote_(std::move(remote)) {}
  ~Session() { --owner_->connections; }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read_header();
    } else {
      beast::get_lowest_layer(stream_).expires_after(owner_->options.read_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) return self->owner_->refused(self->remote_, 0, "TLS handshake failed: " + ec.message());
        self->read_header();
      });
    }
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->body_limit(owner_->options.max_body);
    parser_->header_limit(32 * 1024);
    beast::get_lowest_layer(stream_).expires_after(owner_->options.read_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_header(ec);
    });
  }

  // An error while reading: refuse what deserves an answer, drop the rest.
  void on_read_error(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == asio::ssl::error::stream_truncated || ec == asio::error::operation_aborted)
      return;  // the client went away between requests
    if (ec == beast::error::timeout) return owner_->refused(remote_, 0, "the client sent too slowly (read timeout)");
    if (ec == http::error::body_limit)
      return refuse(413, "the body is larger than " + std::to_string(owner_->options.max_body) + " bytes (--max-body)");
    if (ec == http::error::header_limit) return refuse(431, "the request's headers are larger than 32 KiB");
    refuse(400, "not an HTTP/1.1 request: " + ec.message());
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, req.version());
      http::async_write(stream_, *cont, [self = this->shared_from_this(), cont](beast::error_code ec, std::size_t) {
        if (ec) return;
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    beast::get_lowest_layer(stream_).expires_after(owner_->options.read_timeout);
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_body(ec);
    });
  }

  void on_body(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    beast::get_lowest_layer(stream_).expires_never();
    auto message = parser_->release();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    Request r;
    r.method = std::string(message.method_string());
    r.target = std::string(message.target());
    r.remote = remote_;
    for (auto& field : message) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      r.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    r.body = std::move(message.body());
    auto self = this->shared_from_this();
    // Answered once: by the caller, or with 500 when its Respond is dropped unanswered.
    struct Guard {
      std::shared_ptr<Session> session;
      bool answered = false;
      ~Guard() {
        if (!answered) {
          auto s = session;
          asio::post(s->owner_->io, [s] { s->write(Response{500, json_error(500, "the request was not answered"), "application/json", {}}); });
        }
      }
    };
    auto guard = std::make_shared<Guard>();
    guard->session = self;
    owner_->on_request(std::move(r), [guard](Response response) {
      if (std::exchange(guard->answered, true)) return;
      auto s = guard->session;
      asio::post(s->owner_->io, [s, response = std::move(response)]() mutable { s->write(std::move(response)); });
    });
  }

  void refuse(int status, const std::string& why) {
    owner_->refused(remote_, status, why);
    keep_alive_ = false;  // what is left of the request on the wire cannot be trusted
    write(Response{status, json_error(status, why), "application/json", {}});
  }

  void write(Response r) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), version_);
    res->reason(reason_text(r.status));
    res->set(http::field::server, "hoist-serve");
    res->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res->set(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive_ && !owner_->closed);
    res->prepare_payload();
    beast::get_lowest_layer(stream_).expires_after(owner_->options.read_timeout);
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec) return;
      if (res->keep_alive()) return self->read_header();
      self->shutdown();
    });
  }

  void shutdown() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      // Read what the client still sends (a body refused with 413 before it was read) until
      // it closes: closing with unread data resets the connection, and a client without
      // `Expect: 100-continue` would see the reset instead of the answer. Bounded in time and bytes.
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      drain(std::make_shared<std::array<char, 16384>>(), 0);
    } else {
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    }
  }

  void drain(std::shared_ptr<std::array<char, 16384>> buf, std::size_t total) {
    if (total > (64u << 20)) return;  // as a web server's lingering close: enough for a refused body
    stream_.async_read_some(asio::buffer(*buf), [self = this->shared_from_this(), buf, total](beast::error_code ec, std::size_t n) {
      if (!ec) self->drain(buf, total + n);
    });
  }

  std::shared_ptr<Listener::Impl> owner_;
  Stream stream_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
};

}  // namespace

void Listener::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (self->closed || ec == asio::error::operation_aborted) return;
    if (ec) {
      // out of file descriptors, say: accepting again at once would spin; wait a little
      self->refused("-", 0, "cannot accept a connection: " + ec.message());
      auto timer = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(100));
      timer->async_wait([self, timer](beast::error_code) {
        if (!self->closed) self->accept();
      });
      return;
    }
    {
      beast::error_code ignored;
      auto peer = socket.remote_endpoint(ignored);
      std::string remote = ignored ? std::string("?") : peer.address().to_string();
      if (self->connections >= self->options.max_connections) {
        self->refused(remote, 0, "too many open connections (" + std::to_string(self->connections) + ")");
        socket.close(ignored);
      } else {
        ++self->connections;
        if (self->ssl) {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
              self, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *self->ssl), remote)
              ->start();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(self, beast::tcp_stream(std::move(socket)), remote)->start();
        }
      }
    }
    self->accept();
  });
}

Listener::Listener(asio::io_context& io, ListenOptions options, OnRequest on_request, OnRefused on_refused)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(on_request), std::move(on_refused))) {
  auto& o = impl_->options;
  if (o.tls_cert.empty() != o.tls_key.empty())
    throw Error(Code::invalid_argument, "HTTPS needs both a certificate (--tls-cert) and its key (--tls-key)");
  if (!o.tls_cert.empty()) {
    impl_->ssl.emplace(asio::ssl::context::tls_server);
    auto& ctx = *impl_->ssl;
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    ctx.use_certificate_chain_file(o.tls_cert, ec);
    if (ec) throw Error(Code::invalid_argument, "cannot load the certificate " + o.tls_cert + ": " + ec.message());
    ctx.use_private_key_file(o.tls_key, asio::ssl::context::pem, ec);
    if (ec) throw Error(Code::invalid_argument, "cannot load the key " + o.tls_key + ": " + ec.message());
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(o.host, ec);
  if (ec) throw Error(Code::invalid_argument, "cannot listen on '" + o.host + "': not a numeric address");
  tcp::endpoint endpoint(address, o.port);
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (ec)
    throw Error(ec == asio::error::address_in_use ? Code::conflict : Code::invalid_argument,
                "cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " + ec.message());
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw Error(Code::internal, "cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " + ec.message());
  impl_->accept();
}

Listener::~Listener() { close(); }

std::uint16_t Listener::port() const {
  beast::error_code ec;
  auto e = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : e.port();
}

bool Listener::tls() const { return impl_->ssl.has_value(); }

void Listener::close() {
  if (impl_->closed) return;
  impl_->closed = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace hoist::serve
