#pragma once
// A small TCP front for a local service (`hoist proxy`): it accepts on 127.0.0.1:PORT and
// splices every connection to the current upstream. Switching the upstream changes where NEW
// connections go; connections already open keep theirs. A deploy can therefore start a new
// container beside the old one, switch, drain and stop the old one without refusing a single
// connection on the service port.
//
// The proxy is described by a JSON state file (pid, listen, upstream, ...). A switch writes
// the wanted upstream and a request token into it and sends SIGHUP; the proxy re-reads the
// file, applies the upstream and writes the token back as `ack`, which the switcher waits for.
//
//   {"name": "app", "pid": 4242, "listen": "127.0.0.1:8080", "upstream": "127.0.0.1:32771",
//    "applied": "127.0.0.1:32771", "request": "r17", "ack": "r17", "error": "",
//    "log": ".../app.log", "started_at": "2024-05-01T10:00:00Z"}
#include <hoist/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace hoist::proxy {

// host:port with a numeric IPv4/IPv6 host (a proxy in front of a local service needs no DNS).
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string str() const;
  // "127.0.0.1:8080", "[::1]:8080"; throws invalid_argument naming `what`.
  static Endpoint parse(std::string_view text, std::string_view what = "endpoint");
  bool operator==(const Endpoint&) const = default;
};

struct Options {
  Endpoint listen;          // port 0: an ephemeral port (see Server::port())
  Endpoint upstream;
  std::string state_file;   // empty: no state file (in-process use, tests)
  std::string name;         // service name, recorded in the state file
  std::string log_file;     // detached mode: stdout/stderr go here (default <state>.log)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds drain_timeout{10000};  // on stop: how long open connections may finish
  bool log = true;          // one line per switch, failure and stop on stderr
};

struct Stats {
  std::uint64_t accepted = 0;         // client connections accepted
  std::uint64_t upstream_failed = 0;  // of which the upstream could not be reached
  std::uint64_t active = 0;           // open right now
  std::uint64_t switches = 0;         // upstream changes applied
};

// The proxy itself, on its own io_context. Construction binds the listen socket (throws
// conflict when the port is taken); run() serves until stop().
class Server {
 public:
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const;
  Endpoint upstream() const;  // the upstream new connections go to
  Stats stats() const;

  // Serves until stop(); with handle_signals, SIGHUP reloads and SIGTERM/SIGINT stop.
  void run(bool handle_signals = false);
  // Thread-safe. New connections go to `upstream` once this returns... after the loop has
  // picked it up; use switch_upstream() for the acknowledged path.
  void set_upstream(const Endpoint& upstream);
  // Thread-safe: re-reads the state file and applies its upstream (what SIGHUP does).
  void reload();
  // Thread-safe: stops accepting, lets open connections finish (drain_timeout), returns run().
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- state file

// Reads the state file; nullopt when it does not exist. Throws invalid_argument when it is
// not a JSON object.
std::optional<nlohmann::json> read_state(const std::string& path);
// Writes atomically (temporary file + rename), mode 0600, creating the parent folder.
void write_state(const std::string& path, const nlohmann::json& state);
// True when `pid` is a live `hoist proxy` process.
bool proxy_alive(int pid);

// ---------------------------------------------------------------- the command

// `hoist proxy --listen --upstream --state [--detach]`: serves in the foreground (returns
// the exit code when stopped), or, detached, returns 0 once the daemon (double fork, setsid)
// has bound the port and written the state file; its state is printed on stdout.
int serve(const Options& options, bool detach);

// Switches the running proxy of `state_file` to `upstream` and waits until it confirms
// (new connections then go there). Throws not_found (no proxy running), timeout, or
// invalid_argument (the proxy refused the upstream). Returns the new state.
nlohmann::json switch_upstream(const std::string& state_file, const Endpoint& upstream,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Stops the proxy of `state_file` (SIGTERM, then SIGKILL after `timeout`) and removes the
// state file. Returns false when none was running.
bool stop(const std::string& state_file, std::chrono::milliseconds timeout = std::chrono::seconds(15));

// The state plus "running": true|false; {"running": false} when there is no state file.
nlohmann::json status(const std::string& state_file);

}  // namespace hoist::proxy
