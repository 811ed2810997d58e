#pragma once
// Child processes on the engine's loop: argv (never a shell), env, cwd, stdin, timeout,
// stdout/stderr read asynchronously and optionally handed over line by line.
//
//   hoist::ExecOptions o;
//   o.argv = {"docker", "version"};
//   o.timeout = 10;
//   auto op = hoist::exec_async(io, o, [](hoist::Outcome<hoist::ExecResult> r) { ... });
//
// The child runs in its own process group, so a timeout or a cancel reaches its children
// too (a shell's background jobs, docker's plugins). A non-zero exit is data, not an error;
// errors are for programs that cannot be started (tool_missing) and for cancellation.
#include <hoist/operation.hpp>

#include <boost/asio/io_context.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hoist {

struct ExecOptions {
  std::vector<std::string> argv;           // argv[0] is looked up on PATH unless it holds a '/'
  std::map<std::string, std::string> env;  // added to (or replacing) the inherited environment
  bool clear_env = false;                  // true: the child sees only `env`
  std::string cwd;                         // empty: the engine's working directory
  std::optional<std::string> stdin_data;   // written then closed; none: stdin is /dev/null
  double timeout = 0;                      // seconds, 0 = none
  double kill_grace = 2;                   // seconds between SIGTERM and SIGKILL on timeout
  // Called on the loop for every complete line (without its "\n" or "\r\n"); a final
  // unterminated line is delivered at the end. stream is "stdout" or "stderr".
  std::function<void(std::string_view stream, std::string_view line)> on_line;
};

struct ExecResult {
  int code = 0;     // exit status; 128+signal when killed; 124 when timed out; -1 when the
                    // status was lost (a host that sets SIGCHLD to SIG_IGN reaps it first)
  int signal = 0;   // the signal that ended the child, 0 if it exited
  std::string out;  // everything it wrote, raw
  std::string err;
  double duration = 0;  // seconds
  bool timed_out = false;
  int pid = 0;
};

// Starts argv[0]. The completion runs once, on the loop, never inline: with the result, with
// tool_missing when the program cannot be started, invalid_argument for bad options, or
// cancelled after cancel() (which SIGKILLs the whole process group at once).
OperationPtr exec_async(boost::asio::io_context& io, ExecOptions options, Completion<ExecResult> done);

// Full path of an executable `name` on `path` (a PATH value; empty: this process's PATH).
// A name holding '/' is returned as is when it is an executable file.
std::optional<std::string> which(const std::string& name, const std::string& path = "");

}  // namespace hoist
