// libcurl's multi interface on the engine's Asio loop. curl says which sockets to watch
// (SOCKETFUNCTION) and when to wake it (TIMERFUNCTION); Asio waits and hands the events back
// with curl_multi_socket_action. No thread, nothing blocks, every callback runs on the loop.
//
// curl owns its sockets: Asio only watches them (stream_descriptor::release() before curl
// closes one, see on_close), so Asio never closes a socket curl still uses.
#include <hoist/http.hpp>
#include <hoist/strings.hpp>
#include <hoist/version.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <curl/curl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace hoist {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

using text::lower;
using text::trim;

// Asio's epoll reactor is edge-triggered: a wait armed while bytes are already waiting
// would sleep until the next packet. curl may leave bytes unread, so look before waiting.
bool ready_now(int fd, bool read) {
  pollfd p{fd, static_cast<short>(read ? POLLIN : POLLOUT), 0};
  return ::poll(&p, 1, 0) > 0 && p.revents != 0;
}

Error transport_error(CURLcode rc, const std::string& curl_message, const std::string& url) {
  std::string what = curl_message.empty() ? curl_easy_strerror(rc) : curl_message;
  nlohmann::json details{{"url", redact_url(url)}, {"curl_code", static_cast<int>(rc)},
                         {"curl_message", what}};
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error(Code::timeout, "HTTP request timed out: " + what, details);
    case CURLE_URL_MALFORMAT:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return Error(Code::invalid_argument, "bad HTTP request: " + what, details);
    case CURLE_SEND_FAIL_REWIND:
      return Error(Code::internal, "HTTP request body could not be sent again: " + what, details);
    default:  // refused, DNS, TLS, reset, empty reply, too many redirects...
      return Error(Code::unavailable, "HTTP request failed: " + what, details);
  }
}

bool looks_secret(std::string_view name) {
  static const char* const kWords[] = {"sig", "token", "secret", "password", "passwd", "pwd",
                                       "key", "credential", "auth", "code"};
  auto n = lower(name);
  return std::any_of(std::begin(kWords), std::end(kWords),
                     [&](const char* w) { return n.find(w) != std::string::npos; });
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  auto want = lower(name);
  for (auto& [k, v] : headers)
    if (k == want) return v;
  return {};
}

std::string redact_url(std::string_view url) {
  std::string out(url);
  // user:password@host
  auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    auto host_end = out.find_first_of("/?#", scheme + 3);
    auto at = out.rfind('@', host_end == std::string::npos ? out.size() : host_end);
    if (at != std::string::npos && at > scheme) {
      auto colon = out.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  auto q = out.find('?');
  if (q == std::string::npos) return out;
  auto frag = out.find('#', q);
  std::string query = out.substr(q + 1, frag == std::string::npos ? std::string::npos : frag - q - 1);
  std::string redacted;
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    std::string_view part(query.data() + pos, (amp == std::string::npos ? query.size() : amp) - pos);
    auto eq = part.find('=');
    if (!redacted.empty() || pos > 0) redacted += '&';
    if (eq != std::string::npos && eq + 1 < part.size() && looks_secret(part.substr(0, eq)))
      redacted.append(part.substr(0, eq + 1)).append("***");
    else
      redacted.append(part);
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return out.substr(0, q + 1) + redacted + (frag == std::string::npos ? "" : out.substr(frag));
}

// ---------------------------------------------------------------- transfer

class Multi;

class TransferImpl final : public Transfer, public std::enable_shared_from_this<TransferImpl> {
 public:
  TransferImpl(std::weak_ptr<Multi> multi, HttpRequest req, Completion<HttpResponse> done)
      : multi(std::move(multi)), req(std::move(req)), done(std::move(done)) {}
  ~TransferImpl() override {
    if (easy) curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }
  void cancel() override;
  void resume() override;

  void configure(Multi& m);  // throws Error on bad options
  void deliver_headers();
  int pause_bits() const {
    return (recv_paused ? CURLPAUSE_RECV : 0) | (send_paused ? CURLPAUSE_SEND : 0);
  }

  static size_t on_write(char* p, size_t size, size_t n, void* self);
  static size_t on_read(char* p, size_t size, size_t n, void* self);
  static size_t on_header(char* p, size_t size, size_t n, void* self);
  static int on_seek(void* self, curl_off_t offset, int origin);

  std::weak_ptr<Multi> multi;
  HttpRequest req;
  Completion<HttpResponse> done;
  HttpResponse resp;
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  std::size_t body_offset = 0;
  bool added = false;            // in the multi handle
  bool finished = false;         // completion posted; callbacks abort from now on
  bool recv_paused = false, send_paused = false, resume_posted = false;
  bool headers_delivered = false;
  std::optional<Error> callback_error;  // a callback of ours threw
  char errbuf[CURL_ERROR_SIZE] = {};
  Clock::time_point started = Clock::now();
};

// ---------------------------------------------------------------- multi

struct Socket {
  Socket(asio::io_context& io, curl_socket_t fd) : sd(io, fd), fd(fd) {}
  asio::posix::stream_descriptor sd;
  curl_socket_t fd;
  int want = 0;                           // CURL_POLL_IN / CURL_POLL_OUT bits
  bool reading = false, writing = false;  // a wait is armed (or posted)
  bool gone = false;                      // curl is done with it
};

class Multi : public std::enable_shared_from_this<Multi> {
 public:
  explicit Multi(asio::io_context& io) : io(io), timer(io) {
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Multi::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Multi::on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }

  ~Multi() {
    for (auto& [easy, t] : active) {
      if (t->added) curl_multi_remove_handle(multi, easy);
      t->added = false;
      t->finished = true;  // the loop is going away: no completion
    }
    active.clear();
    curl_multi_cleanup(multi);  // closes cached connections through on_close
    for (auto& [fd, s] : sockets) forget(*s);
  }

  void start(const std::shared_ptr<TransferImpl>& t) {
    if (t->finished) return;
    active[t->easy] = t;
    if (auto rc = curl_multi_add_handle(multi, t->easy); rc != CURLM_OK) {
      active.erase(t->easy);
      fail(*t, Error(Code::internal, std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc)));
      return;
    }
    t->added = true;
  }

  // Ends a transfer with an error now (cancel, setup failure); curl is told at once unless
  // we are inside one of its callbacks, where it is told right after.
  void fail(TransferImpl& t, Error error) {
    if (t.finished) return;
    t.finished = true;
    post_completion(t, std::move(error));
    if (in_callback > 0) {
      asio::post(io, [w = weak_from_this(), t = t.shared_from_this()] {
        if (auto m = w.lock()) m->detach(*t);
      });
    } else {
      detach(t);
    }
  }

  void post_completion(TransferImpl& t, Outcome<HttpResponse> outcome) {
    if (!t.done) return;
    asio::post(io, [done = std::move(t.done), out = std::move(outcome)]() mutable {
      done(std::move(out));
    });
  }

  void detach(TransferImpl& t) {
    auto keep = t.shared_from_this();
    if (t.added) curl_multi_remove_handle(multi, t.easy);
    t.added = false;
    active.erase(t.easy);
  }

  // Hands an event to curl, then collects finished transfers.
  void action(curl_socket_t fd, int events) {
    auto keep = shared_from_this();
    int running = 0;
    ++in_callback;
    curl_multi_socket_action(multi, fd, events, &running);
    --in_callback;
    collect();
  }

  void collect() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      auto it = active.find(msg->easy_handle);
      if (it == active.end()) continue;
      auto t = it->second;
      CURLcode rc = msg->data.result;  // msg dies with remove_handle
      detach(*t);
      if (!t->finished) complete(*t, rc);
    }
  }

  void complete(TransferImpl& t, CURLcode rc) {
    t.finished = true;
    t.resp.duration = std::chrono::duration<double>(Clock::now() - t.started).count();
    if (t.callback_error) return post_completion(t, *t.callback_error);
    if (rc != CURLE_OK) return post_completion(t, transport_error(rc, t.errbuf, t.req.url));
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.resp.status);
    char* url = nullptr;
    if (curl_easy_getinfo(t.easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url)
      t.resp.effective_url = url;
    t.deliver_headers();
    post_completion(t, std::move(t.resp));
  }

  // CURLMOPT_SOCKETFUNCTION: what curl wants to hear about `fd` now.
  static int on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) {
    auto* m = static_cast<Multi*>(self);
    auto it = m->sockets.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (it != m->sockets.end()) {
        forget(*it->second);
        m->sockets.erase(it);
      }
      return 0;
    }
    std::shared_ptr<Socket> s;
    if (it != m->sockets.end()) {
      s = it->second;
    } else {
      try {
        s = std::make_shared<Socket>(m->io, fd);
      } catch (const std::exception&) {
        return -1;  // could not watch it: curl fails the transfer
      }
      m->sockets[fd] = s;
    }
    s->want = what;
    if ((what & CURL_POLL_IN) && !s->reading) m->arm(s, true);
    if ((what & CURL_POLL_OUT) && !s->writing) m->arm(s, false);
    return 0;
  }

  void arm(const std::shared_ptr<Socket>& s, bool read) {
    (read ? s->reading : s->writing) = true;
    auto handler = [w = weak_from_this(), s, read](boost::system::error_code ec) {
      (read ? s->reading : s->writing) = false;
      if (ec || s->gone) return;
      auto m = w.lock();
      if (!m) return;
      m->action(s->fd, read ? CURL_CSELECT_IN : CURL_CSELECT_OUT);
      if (!s->gone && (s->want & (read ? CURL_POLL_IN : CURL_POLL_OUT)) &&
          !(read ? s->reading : s->writing))
        m->arm(s, read);
    };
    if (ready_now(s->fd, read))
      asio::post(io, [handler]() mutable { handler({}); });
    else
      s->sd.async_wait(read ? asio::posix::descriptor_base::wait_read
                            : asio::posix::descriptor_base::wait_write,
                       std::move(handler));
  }

  // Stops watching without closing: the socket is curl's.
  static void forget(Socket& s) {
    s.gone = true;
    boost::system::error_code ignored;
    s.sd.cancel(ignored);
    s.sd.release();
  }

  // CURLMOPT_TIMERFUNCTION: call curl back in `ms` (-1: never). Never call curl from here.
  static int on_timer(CURLM*, long ms, void* self) {
    auto* m = static_cast<Multi*>(self);
    if (ms < 0) {
      m->timer.cancel();
      return 0;
    }
    m->timer.expires_after(std::chrono::milliseconds(ms));
    m->timer.async_wait([w = m->weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto m = w.lock()) m->action(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }

  // CURLOPT_OPENSOCKETFUNCTION: close-on-exec (children of hoist.exec must not inherit
  // connections), and a number the kernel reuses must not find a stale watcher of ours.
  static curl_socket_t on_open(void* self, curlsocktype, curl_sockaddr* a) {
    auto* m = static_cast<Multi*>(self);
    int fd = ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    if (auto it = m->sockets.find(fd); it != m->sockets.end()) {
      forget(*it->second);
      m->sockets.erase(it);
    }
    return fd;
  }

  // CURLOPT_CLOSESOCKETFUNCTION: let go of the descriptor before curl's socket is closed,
  // so epoll never watches a number the kernel hands out again.
  static int on_close(void* self, curl_socket_t fd) {
    auto* m = static_cast<Multi*>(self);
    if (auto it = m->sockets.find(fd); it != m->sockets.end()) {
      forget(*it->second);
      m->sockets.erase(it);
    }
    return ::close(fd);
  }

  asio::io_context& io;
  asio::steady_timer timer;
  CURLM* multi = nullptr;
  std::unordered_map<curl_socket_t, std::shared_ptr<Socket>> sockets;
  std::unordered_map<CURL*, std::shared_ptr<TransferImpl>> active;
  int in_callback = 0;  // > 0 while curl may be running our callbacks
};

// ---------------------------------------------------------------- transfer callbacks

void TransferImpl::cancel() {
  if (finished) return;
  if (auto m = multi.lock()) {
    m->fail(*this, Error(Code::cancelled, "HTTP request cancelled", {{"url", redact_url(req.url)}}));
  } else {
    finished = true;
  }
}

void TransferImpl::resume() {
  auto m = multi.lock();
  if (!m || finished || resume_posted) return;
  resume_posted = true;
  // Deferred: curl_easy_pause may run write callbacks at once, and resume() is usually
  // called from inside another transfer's callback.
  asio::post(m->io, [w = weak_from_this()] {
    auto t = w.lock();
    if (!t) return;
    t->resume_posted = false;
    auto m = t->multi.lock();
    if (!m || t->finished || !t->added || (!t->recv_paused && !t->send_paused)) return;
    t->recv_paused = t->send_paused = false;
    ++m->in_callback;
    curl_easy_pause(t->easy, CURLPAUSE_CONT);
    --m->in_callback;
    m->action(CURL_SOCKET_TIMEOUT, 0);  // get it going now, not at curl's next timeout
  });
}

void TransferImpl::deliver_headers() {
  if (headers_delivered) return;
  headers_delivered = true;
  if (!req.on_headers) return;
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  try {
    req.on_headers(status, resp.headers);
  } catch (const Error& e) {
    callback_error = e;
  } catch (const std::exception& e) {
    callback_error = Error(Code::internal, std::string("on_headers: ") + e.what());
  }
}

size_t TransferImpl::on_write(char* p, size_t size, size_t n, void* self) {
  auto* t = static_cast<TransferImpl*>(self);
  size_t len = size * n;
  if (t->finished || t->callback_error) return 0;  // curl aborts with a write error
  if (t->recv_paused) return CURL_WRITEFUNC_PAUSE;  // curl keeps it for after resume()
  t->deliver_headers();
  if (t->callback_error) return 0;
  if (!t->req.on_data) {
    t->resp.body.append(p, len);
    return len;
  }
  try {
    if (!t->req.on_data(std::string_view(p, len))) {
      t->recv_paused = true;
      curl_easy_pause(t->easy, t->pause_bits());
    }
  } catch (const Error& e) {
    t->callback_error = e;
    return 0;
  } catch (const std::exception& e) {
    t->callback_error = Error(Code::internal, std::string("on_data: ") + e.what());
    return 0;
  }
  return len;
}

size_t TransferImpl::on_read(char* p, size_t size, size_t n, void* self) {
  auto* t = static_cast<TransferImpl*>(self);
  size_t cap = size * n;
  if (t->finished || t->callback_error) return CURL_READFUNC_ABORT;
  if (!t->req.read_body) {
    size_t k = std::min(cap, t->req.body.size() - t->body_offset);
    std::memcpy(p, t->req.body.data() + t->body_offset, k);
    t->body_offset += k;
    return k;
  }
  try {
    size_t got = t->req.read_body(p, cap);
    if (got == HttpClient::kPause) {
      t->send_paused = true;
      return CURL_READFUNC_PAUSE;
    }
    if (got > cap) throw Error(Code::internal, "read_body returned more bytes than asked for");
    return got;
  } catch (const Error& e) {
    t->callback_error = e;
  } catch (const std::exception& e) {
    t->callback_error = Error(Code::internal, std::string("read_body: ") + e.what());
  }
  return CURL_READFUNC_ABORT;
}

// Headers of every response pass here (1xx, redirects, the final one): a status line starts
// a new set, so only the last response's headers remain.
size_t TransferImpl::on_header(char* p, size_t size, size_t n, void* self) {
  auto* t = static_cast<TransferImpl*>(self);
  size_t len = size * n;
  if (t->finished) return 0;
  std::string_view line(p, len);
  if (line.starts_with("HTTP/")) {
    t->resp.headers.clear();
    return len;
  }
  auto colon = line.find(':');
  if (trim(line).empty() || colon == std::string_view::npos) return len;
  t->resp.headers.emplace_back(lower(trim(line.substr(0, colon))),
                               std::string(trim(line.substr(colon + 1))));
  return len;
}

int TransferImpl::on_seek(void* self, curl_off_t offset, int origin) {
  auto* t = static_cast<TransferImpl*>(self);
  if (t->req.read_body || origin != SEEK_SET || offset < 0 ||
      static_cast<size_t>(offset) > t->req.body.size())
    return CURL_SEEKFUNC_CANTSEEK;
  t->body_offset = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// ---------------------------------------------------------------- request setup

namespace {

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
  });
}

const char* ca_bundle_from_env() {
  for (const char* name : {"CURL_CA_BUNDLE", "SSL_CERT_FILE"})
    if (const char* v = std::getenv(name); v && *v) return v;
  return nullptr;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

// The host of a URL, lower-case ("" when curl cannot parse it).
std::string url_host(const std::string& url) {
  std::string host;
  if (CURLU* u = curl_url()) {
    char* h = nullptr;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h) {
      host = lower(h);
      curl_free(h);
    }
    curl_url_cleanup(u);
  }
  return host;
}

bool is_loopback(std::string_view host) {
  return host == "localhost" || host == "[::1]" || host.substr(0, 4) == "127.";
}

const char* env_of(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = std::getenv(n); v && *v) return v;
  return nullptr;
}

// NO_PROXY as curl reads it: "*", or comma-separated names, each matching the host itself or
// a host under it ("example.com" and ".example.com" both match "a.example.com").
bool no_proxy_matches(std::string_view host) {
  const char* np = env_of({"no_proxy", "NO_PROXY"});
  if (!np) return false;
  std::string_view list(np);
  while (!list.empty()) {
    auto comma = list.find(',');
    auto entry = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (entry == "*") return true;
    if (!entry.empty() && entry.front() == '.') entry.remove_prefix(1);
    if (entry.empty()) continue;
    auto e = lower(entry);
    if (host == e || (host.size() > e.size() && host.substr(host.size() - e.size()) == e &&
                      host[host.size() - e.size() - 1] == '.'))
      return true;
  }
  return false;
}

// Against an Azure emulator (AZURE_RESOURCE_MANAGER_ENDPOINT on a loopback address) the cloud
// host names of what it runs (*.azurecontainer.io, *.azurewebsites.net, ...) are answered by
// its proxy. A request for one that no proxy takes would look the name up on the real DNS:
// the name leaks and the run fails late, or reaches a real service. Refused before it starts,
// naming the variable to set.
std::string unproxied_cloud_host(const HttpRequest& req) {
  if (!req.unix_socket.empty() || !req.proxy.empty()) return {};
  const char* arm = std::getenv("AZURE_RESOURCE_MANAGER_ENDPOINT");
  if (!arm || !is_loopback(url_host(arm))) return {};
  auto host = url_host(req.url);
  static constexpr std::string_view kCloud[] = {
      ".azure.com", ".azure.net", ".azurewebsites.net", ".azurecontainer.io", ".azurecontainerapps.io",
      ".azurecr.io", ".azmk8s.io", ".windows.net", ".microsoftonline.com", ".azureedge.net"};
  bool cloud = std::any_of(std::begin(kCloud), std::end(kCloud), [&](std::string_view d) {
    return host.size() > d.size() && host.compare(host.size() - d.size(), d.size(), d) == 0;
  });
  if (!cloud) return {};
  bool https = starts_with_ci(req.url, "https://");
  const char* proxy = https ? env_of({"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
                            : env_of({"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"});
  if (proxy && !no_proxy_matches(host)) return {};
  std::string var = https ? "HTTPS_PROXY" : "HTTP_PROXY";
  return "HTTP request to " + host + ": an Azure host name, while AZURE_RESOURCE_MANAGER_ENDPOINT (" + arm +
         ") is a local emulator and " +
         (proxy ? "NO_PROXY sends " + host + " past the proxy" : var + " is not set") +
         "; set " + var + " to the emulator's proxy (tests/env/up.sh writes it to cloud.sh) so the name is "
         "not looked up on the real DNS";
}

}  // namespace

void TransferImpl::configure(Multi& m) {
  auto bad = [&](const std::string& msg) {
    throw Error(Code::invalid_argument, msg, {{"url", redact_url(req.url)}});
  };
  if (req.url.empty()) bad("HTTP request: url is empty");
  if (!starts_with_ci(req.url, "http://") && !starts_with_ci(req.url, "https://"))
    bad("HTTP request: url must start with http:// or https://");
  if (auto problem = unproxied_cloud_host(req); !problem.empty()) bad(problem);
  std::string method = req.method.empty() ? "GET" : req.method;
  for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!is_token(method)) bad("HTTP request: bad method '" + req.method + "'");
  bool has_expect = false;
  for (auto& [name, value] : req.headers) {
    if (!is_token(name)) bad("HTTP request: bad header name '" + name + "'");
    if (value.find_first_of("\r\n", 0) != std::string::npos || value.find('\0') != std::string::npos)
      bad("HTTP request: header '" + name + "' has a line break in its value");
    has_expect = has_expect || lower(name) == "expect";
    auto line = value.empty() ? name + ";" : name + ": " + value;  // "Name;" sends it empty
    header_list = curl_slist_append(header_list, line.c_str());
  }
  // curl would wait up to a second for "100 Continue" before sending an upload body.
  if (!has_expect) header_list = curl_slist_append(header_list, "Expect:");

  easy = curl_easy_init();
  if (!easy) throw Error(Code::internal, "curl_easy_init failed");
  auto set = [&](CURLoption opt, auto value) {
    if (auto rc = curl_easy_setopt(easy, opt, value); rc != CURLE_OK)
      throw transport_error(rc, curl_easy_strerror(rc), req.url);
  };
  set(CURLOPT_URL, req.url.c_str());
  set(CURLOPT_PRIVATE, static_cast<void*>(this));
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_ERRORBUFFER, errbuf);
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  set(CURLOPT_USERAGENT, (std::string("hoist/") + kVersion).c_str());
  set(CURLOPT_HTTPHEADER, header_list);
  set(CURLOPT_HEADERFUNCTION, &TransferImpl::on_header);
  set(CURLOPT_HEADERDATA, static_cast<void*>(this));
  set(CURLOPT_WRITEFUNCTION, &TransferImpl::on_write);
  set(CURLOPT_WRITEDATA, static_cast<void*>(this));
  set(CURLOPT_OPENSOCKETFUNCTION, &Multi::on_open);
  set(CURLOPT_OPENSOCKETDATA, static_cast<void*>(&m));
  set(CURLOPT_CLOSESOCKETFUNCTION, &Multi::on_close);
  set(CURLOPT_CLOSESOCKETDATA, static_cast<void*>(&m));
  if (req.timeout > 0) set(CURLOPT_TIMEOUT_MS, std::max(1L, static_cast<long>(req.timeout * 1000)));
  if (req.connect_timeout > 0)
    set(CURLOPT_CONNECTTIMEOUT_MS, std::max(1L, static_cast<long>(req.connect_timeout * 1000)));
  set(CURLOPT_FOLLOWLOCATION, req.follow_redirects ? 1L : 0L);
  set(CURLOPT_MAXREDIRS, static_cast<long>(req.max_redirects));
  // Registries redirect blob GETs to storage hosts: credentials stay with the first host.
  set(CURLOPT_UNRESTRICTED_AUTH, 0L);
  set(CURLOPT_SSL_VERIFYPEER, req.insecure ? 0L : 1L);
  set(CURLOPT_SSL_VERIFYHOST, req.insecure ? 0L : 2L);
  // The CA bundle: the request's own, else the usual variables (curl's CURL_CA_BUNDLE, then
  // OpenSSL's SSL_CERT_FILE), else libcurl's built-in system bundle.
  if (!req.cacert.empty()) {
    set(CURLOPT_CAINFO, req.cacert.c_str());
  } else if (const char* bundle = ca_bundle_from_env()) {
    set(CURLOPT_CAINFO, bundle);
  }
  if (!req.client_cert.empty()) set(CURLOPT_SSLCERT, req.client_cert.c_str());
  if (!req.client_key.empty()) set(CURLOPT_SSLKEY, req.client_key.c_str());
  if (!req.unix_socket.empty()) {
    set(CURLOPT_UNIX_SOCKET_PATH, req.unix_socket.c_str());
    set(CURLOPT_PROXY, "");  // a local socket is never proxied
  } else if (!req.proxy.empty()) {
    set(CURLOPT_PROXY, req.proxy.c_str());
  } else if (starts_with_ci(req.url, "http://") && !std::getenv("http_proxy")) {
    // curl reads only the lower-case http_proxy (a CGI concern); Go, Docker and most tools
    // also read HTTP_PROXY. NO_PROXY / no_proxy still apply: curl checks them itself.
    if (const char* p = std::getenv("HTTP_PROXY"); p && *p) set(CURLOPT_PROXY, p);
  }

  bool has_body = req.read_body || !req.body.empty() || method == "POST" || method == "PUT" ||
                  method == "PATCH";
  if (method == "HEAD") set(CURLOPT_NOBODY, 1L);
  if (has_body) {
    // "upload" mode sends the body from on_read with no default Content-Type; a size of -1
    // makes it chunked.
    set(CURLOPT_UPLOAD, 1L);
    set(CURLOPT_READFUNCTION, &TransferImpl::on_read);
    set(CURLOPT_READDATA, static_cast<void*>(this));
    set(CURLOPT_SEEKFUNCTION, &TransferImpl::on_seek);  // lets curl resend after a redirect
    set(CURLOPT_SEEKDATA, static_cast<void*>(this));
    set(CURLOPT_INFILESIZE_LARGE,
        static_cast<curl_off_t>(req.read_body ? req.body_size : static_cast<std::int64_t>(req.body.size())));
  }
  if (method != "GET" && method != "HEAD" && !(method == "PUT" && has_body))
    set(CURLOPT_CUSTOMREQUEST, method.c_str());
}

// ---------------------------------------------------------------- client

struct HttpClient::Impl {
  std::shared_ptr<Multi> multi;
};

HttpClient::HttpClient(asio::io_context& io) : impl_(std::make_unique<Impl>()) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->multi = std::make_shared<Multi>(io);
}

HttpClient::~HttpClient() = default;

std::shared_ptr<Transfer> HttpClient::request(HttpRequest request, Completion<HttpResponse> done) {
  auto& m = *impl_->multi;
  auto t = std::make_shared<TransferImpl>(impl_->multi, std::move(request), std::move(done));
  try {
    t->configure(m);
  } catch (const Error& e) {
    t->finished = true;
    m.post_completion(*t, e);
    return t;
  }
  if (m.in_callback > 0)  // curl refuses add_handle from inside its callbacks
    asio::post(m.io, [w = std::weak_ptr<Multi>(impl_->multi), t] {
      if (auto m = w.lock()) m->start(t);
    });
  else
    m.start(t);
  return t;
}

namespace {

// Holds the loop's shared client; goes away with the io_context.
class HttpService : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;
  explicit HttpService(asio::io_context& io) : service(io) {
    // Services are shut down newest first: register the ones our sockets and timer use
    // before this one, so they are still there when the client goes.
    asio::posix::stream_descriptor warm_up(io);
    client = std::make_unique<HttpClient>(io);
  }
  void shutdown() override { client.reset(); }
  std::unique_ptr<HttpClient> client;
};

}  // namespace

HttpClient& HttpClient::for_loop(asio::io_context& io) {
  return *asio::use_service<HttpService>(io).client;
}

}  // namespace hoist
