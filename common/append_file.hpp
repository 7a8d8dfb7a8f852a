// Opening a log or audit file for appending, as root may, without being led somewhere else: a
// symlink in the last component is refused (O_NOFOLLOW), so is anything but a regular file (a
// FIFO would block the master, a device is no log), and so is a file another non-root user
// owns (it could be a hard link they planted to a file of ours, or be swapped at their will).
// It opens and checks only; what to do when it fails is the caller's.
#pragma once

#include <string>

#include "common/fd.hpp"

namespace forkd::common {

// Exactly one is set: the descriptor (O_WRONLY | O_APPEND | O_CLOEXEC, created 0640), or why
// not, naming the path ("/var/log/x.log is a symbolic link (not followed)").
struct AppendFile {
  UniqueFd fd;
  std::string error;
};

[[nodiscard]] AppendFile open_for_append(const std::string& path);

}  // namespace forkd::common
