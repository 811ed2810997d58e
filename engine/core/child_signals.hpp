#pragma once
// What a child of the engine resets between fork and exec: ignored signals and the signal mask
// survive exec, so without this a child would start with the engine's (SIGPIPE ignored, the
// loop's signals blocked). Async-signal-safe calls only: it runs in a forked child.
// Used by the process layer (process.cpp) and os.execute's shell (shell.cpp).
#include <signal.h>

namespace hoist::detail {

inline void reset_child_signals() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD}) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace hoist::detail
