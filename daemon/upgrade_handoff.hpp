// The hot upgrade's decisions (SIGUSR2): the new master is our child until it says "ready";
// then this master hands over and drains. Not ready in time: SIGQUIT, and SIGKILL if it still
// runs; gone first: the upgrade failed and this master serves on. Pure: the master passes pids,
// words and times in and carries out what comes back.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>

#include "common/config.hpp"

namespace forkd::daemon {

class UpgradeHandoff {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  static constexpr common::Duration kQuitGrace = std::chrono::seconds(5);

  enum class Decision {
    none,
    hand_over,     // the new master is ready: it is the main process now; drain
    quit_new,      // not ready in time: SIGQUIT it, this master keeps serving
    kill_new,      // still there after the SIGQUIT: SIGKILL
    failed,        // it exited before it was ready: this master keeps serving
    exited_after,  // it exited after the hand-over (reported, nothing to undo)
  };

  // Another upgrade may start only when none is in progress (a handed-over one counts).
  [[nodiscard]] bool idle() const noexcept { return !pid_; }
  void started(pid_t pid, TimePoint ready_deadline) noexcept;
  [[nodiscard]] Decision ready_word() noexcept;
  [[nodiscard]] Decision deadline_check(TimePoint now) noexcept;
  [[nodiscard]] Decision exited(pid_t pid) noexcept;

  [[nodiscard]] bool is_new_master(pid_t pid) const noexcept { return pid_ && *pid_ == pid; }
  [[nodiscard]] std::optional<pid_t> pid() const noexcept { return pid_; }
  [[nodiscard]] bool handed_over() const noexcept { return handed_over_; }
  // Started and not handed over: this master may not finish before the outcome is known.
  [[nodiscard]] bool pending() const noexcept { return pid_ && !handed_over_; }
  [[nodiscard]] std::optional<TimePoint> next_wakeup() const noexcept;

 private:
  std::optional<pid_t> pid_;
  TimePoint deadline_{};
  bool quit_sent_ = false;
  bool kill_sent_ = false;
  bool handed_over_ = false;
};

}  // namespace forkd::daemon
