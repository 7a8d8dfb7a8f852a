#include "daemon/process_group.hpp"

#include <signal.h>

#include <cerrno>

namespace forkd::daemon {

namespace {

// EPERM: it exists, it is only not ours to signal.
bool exists(pid_t target) noexcept {
  return ::kill(target, 0) == 0 || errno == EPERM;
}

}  // namespace

bool leftover_group_alive(pid_t pgid) noexcept {
  return pgid > 1 && !exists(pgid) && exists(-pgid);
}

int signal_leftover_group(pid_t pgid, int signo) noexcept {
  if (!leftover_group_alive(pgid)) {
    errno = ESRCH;
    return -1;
  }
  return ::kill(-pgid, signo);
}

}  // namespace forkd::daemon
