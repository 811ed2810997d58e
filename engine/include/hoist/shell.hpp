#pragma once
// A shell command run as system() runs it (/bin/sh -c, blocking, stdin inherited), its
// stdout and stderr passed on to this process's own through the secret scrubber.
#include <hoist/secrets.hpp>

#include <memory>
#include <string>

namespace hoist {

// The wait status as system() returns it (WEXITSTATUS, WTERMSIG apply); -1 when the shell
// cannot be started. Returns when the shell exits: output a background job writes later is
// lost (it gets EPIPE), so redirect what you leave running.
int system_scrubbed(const std::string& command, const std::shared_ptr<const Secrets>& secrets);

}  // namespace hoist
