// The code that runs in a freshly forked worker before exec or app entry.
// Everything it needs is prepared by the parent in a ChildPlan beforehand.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace forkd::common {

// Runs a program's in-process entry (a built-in app) in the child instead of exec; never returns.
using ChildEntry = void (*)(const void* arg) noexcept;

// Which step failed, reported to the parent with errno through the error pipe.
enum class ChildStep : int {
  pdeathsig,
  fds,
  rlimit,
  affinity,
  chdir,
  groups,
  setgid,
  setuid,
  capabilities,
  exec,
  session,
  process_group,
};
[[nodiscard]] const char* to_string(ChildStep step) noexcept;

struct ChildFailure {
  ChildStep step;
  int error;
};

// An fd_sources entry: the child gets nothing at that number (Node's 'ignore' beyond fd 2).
inline constexpr int kCloseFd = -2;

struct ChildPlan {
  ChildEntry entry = nullptr;  // enter this in-process; else exec `path`
  const void* entry_arg = nullptr;
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  char* listen_pid_digits = nullptr;  // inside envp's "LISTEN_PID=" entry, 20 chars of room
  std::vector<int> fd_sources;        // fd_sources[i] becomes fd i; -1 = leave fd i as it is,
                                      // kCloseFd = fd i is closed in the child
  int error_pipe = -1;
  pid_t master_pid = 0;
  bool die_with_master = true;  // PR_SET_PDEATHSIG; off for a hot upgrade's new master
  bool ignore_sigpipe = false;
  bool ignore_sigint = true;  // the terminal's Ctrl-C is the master's; a library child keeps it
  bool new_session = false;   // setsid(): its own session and process group (Node's detached)
  // setpgid(0, 0): a process group of its own in the master's session, so that whatever it
  // starts can be signalled with it; the parent does the same, whichever runs first.
  bool own_process_group = false;
  std::uint64_t rlimit_nofile = 0;
  bool pin_cpu = false;
  cpu_set_t cpu{};
  const char* cwd = nullptr;
  bool set_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // A non-root child gives up every capability the parent holds (ambient ones included), so a
  // master started with CAP_NET_BIND_SERVICE does not pass it on to its workers.
  bool drop_capabilities = false;
};

// Runs in the child; never returns. Only async-signal-safe calls: no allocation, no logging,
// no exceptions — the parent's heap and locks are in an unknown state after fork(). It
// rewrites the plan's descriptor numbers as it moves them: after fork() that is the child's
// own copy; under vfork() it is the parent's, which does not read the plan again.
[[noreturn]] void run_child(ChildPlan& plan) noexcept;

}  // namespace forkd::common
