// Loading the daemon's configuration file with what only the daemon knows: the names of the
// built-in apps. Used at start-up and by every reload, so both accept exactly the same files.
#pragma once

#include <string>

#include "common/config.hpp"

namespace forkd::daemon {

// Throws common::ConfigError.
[[nodiscard]] common::Config load_daemon_config(const std::string& path);

}  // namespace forkd::daemon
