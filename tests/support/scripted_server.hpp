#pragma once
// A small scripted HTTP/1.1 server on 127.0.0.1 for C++ tests of REST clients: it runs on the
// test's own loop, answers each request with handler(request) and keeps every request it saw.
// Used by tests/core/test_rest.cpp and tests/azure/.
#include <hoist/rest.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace hoist::testing {

namespace asio = boost::asio;
using asio::ip::tcp;
using rest::Task;

struct Seen {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

struct Reply {
  int status = 200;
  hoist::Headers headers;
  std::string body;
  std::vector<std::string> chunks;  // when set: chunked, one write each, `gap` seconds apart
  double gap = 0;
};

// Answers each request with handler(request); keeps every request it saw.
class Server {
 public:
  explicit Server(asio::io_context& io) : io_(io), acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept(), asio::detached);
  }
  ~Server() { acceptor_.close(); }
  std::string url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + target;
  }
  std::function<Reply(const Seen&)> handler = [](const Seen&) { return Reply{}; };
  std::vector<Seen> seen;

 private:
  Task<void> accept() {
    while (acceptor_.is_open()) {
      auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, session(std::move(sock)), asio::detached);
    }
  }

  Task<void> session(tcp::socket sock) {
    std::string buf;
    while (true) {
      auto [ec, n] = co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), "\r\n\r\n",
                                                     asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      Seen s;
      std::string head = buf.substr(0, n);
      buf.erase(0, n);
      auto line_end = head.find("\r\n");
      auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      s.method = head.substr(0, sp1);
      s.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
      for (auto pos = line_end + 2; pos < head.size();) {
        auto end = head.find("\r\n", pos);
        std::string h = head.substr(pos, end - pos);
        pos = end + 2;
        auto colon = h.find(':');
        if (colon == std::string::npos) continue;
        std::string name = h.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        s.headers[name] = h.substr(h.find_first_not_of(' ', colon + 1));
      }
      std::size_t length = s.headers.count("content-length") ? std::stoul(s.headers["content-length"]) : 0;
      if (buf.size() < length) {
        auto [ec2, m] = co_await asio::async_read(sock, asio::dynamic_buffer(buf),
                                                  asio::transfer_exactly(length - buf.size()),
                                                  asio::as_tuple(asio::use_awaitable));
        if (ec2) co_return;
      }
      s.body = buf.substr(0, length);
      buf.erase(0, length);
      seen.push_back(s);
      Reply r = handler(s);
      std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\n";
      for (auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
      if (r.chunks.empty()) out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
      else out += "Transfer-Encoding: chunked\r\n\r\n";
      if (!co_await write(sock, out)) co_return;
      for (auto& c : r.chunks) {
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", c.size());
        if (!co_await write(sock, size + c + "\r\n")) co_return;
        asio::steady_timer t(io_, std::chrono::milliseconds(static_cast<int>(r.gap * 1000)));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (!r.chunks.empty() && !co_await write(sock, "0\r\n\r\n")) co_return;
    }
  }

  static Task<bool> write(tcp::socket& sock, std::string data) {
    auto [ec, n] = co_await asio::async_write(sock, asio::buffer(data), asio::as_tuple(asio::use_awaitable));
    co_return !ec;
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
};

}  // namespace hoist::testing
