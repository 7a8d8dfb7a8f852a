// PidHandle: the one owner responsible for reaping one child pid, through a pidfd (Linux 5.3+)
// when the kernel gives one, else by the pid itself. It never calls waitpid(-1) and installs no
// SIGCHLD handler, so it leaves other children of the process alone; a waitpid(-1) reaper
// elsewhere in the process (such as forkd's master) would take its child's exit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <system_error>

#include "common/exit_status.hpp"
#include "common/fd.hpp"

namespace forkd::process {

// Owns the duty to reap one child. Destroying a handle whose child still runs sends it SIGKILL
// and waits for it at most kReapOnDestroyLimit (the kernel tears a killed process down in
// microseconds; the bound only matters for one stuck in the kernel), so no zombie is left.
// A disowned handle does not kill: it only reaps a child that has already exited.
class PidHandle {
 public:
  enum class Wait { pidfd, poll };  // poll: never open a pidfd (the pre-5.3 path, for tests)
  static constexpr std::chrono::milliseconds kReapOnDestroyLimit{1000};

  PidHandle() noexcept = default;
  // `pid` must be a child of this process not yet waited for.
  explicit PidHandle(pid_t pid, Wait wait = Wait::pidfd) noexcept;
  PidHandle(PidHandle&& other) noexcept;
  PidHandle& operator=(PidHandle&& other) noexcept;
  PidHandle(const PidHandle&) = delete;
  PidHandle& operator=(const PidHandle&) = delete;
  ~PidHandle();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  // -1 when the kernel has no pidfd_open (callers then poll).
  [[nodiscard]] int pidfd() const noexcept { return pidfd_.get(); }
  [[nodiscard]] bool reaped() const noexcept { return exit_.has_value(); }
  [[nodiscard]] const std::optional<common::ExitStatus>& exit() const noexcept { return exit_; }

  // Reaps the child if it has exited; never blocks. EINTR-safe.
  std::optional<common::ExitStatus> try_reap() noexcept;
  // Waits at most `limit` for the child to exit and reaps it.
  std::optional<common::ExitStatus> reap_within(std::chrono::milliseconds limit) noexcept;
  // Through the pidfd when there is one, so a recycled pid is never hit; ESRCH once reaped.
  [[nodiscard]] std::error_code send_signal(int signo) noexcept;
  // Destruction will no longer kill the child.
  void disown() noexcept { disowned_ = true; }

 private:
  void release_child() noexcept;

  pid_t pid_ = -1;
  common::UniqueFd pidfd_;
  bool waitid_pidfd_ = true;  // P_PIDFD came with 5.4, pidfd_open with 5.3
  bool disowned_ = false;
  std::optional<common::ExitStatus> exit_;
};

}  // namespace forkd::process
