// The process group of a worker that has exited and been reaped: its id is the worker's old
// pid, and what is left in it is what the worker left behind.
#pragma once

#include <sys/types.h>

namespace forkd::daemon {

// True while processes of group `pgid` remain. A process that has the number `pgid` as its
// pid means the number was recycled, which the kernel does only once the group is empty: the
// group is gone then too, and a new one under that number is not ours to signal.
[[nodiscard]] bool leftover_group_alive(pid_t pgid) noexcept;

// kill(-pgid, signo) while leftover_group_alive(pgid); 0, or -1 with errno (ESRCH: gone).
int signal_leftover_group(pid_t pgid, int signo) noexcept;

}  // namespace forkd::daemon
