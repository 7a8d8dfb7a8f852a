// Restart policy of one slot (restart.*): what to do when its worker exits unasked.
// Pure: no clocks, no processes; the caller passes uptimes and acts on the decision.
#pragma once

#include <chrono>

#include "common/config.hpp"

namespace forkd::daemon {

using common::Duration;

struct RestartDecision {
  enum class Kind { respawn, give_up } kind = Kind::respawn;
  Duration delay{0};      // wait this long before the respawn
  unsigned failures = 0;  // consecutive crashes so far, this one included
  bool crash = false;     // the exit counted as a crash (sooner than min_uptime)
};

class Backoff {
 public:
  explicit Backoff(common::RestartConfig config) : config_(config) {}

  // A worker of this slot exited without being asked to. An exit after min_uptime resets the
  // streak and respawns at once; a sooner one is a crash: delay doubles from restart.delay up
  // to max_delay, and after max_failures crashes in a row (if set) the slot gives up.
  [[nodiscard]] RestartDecision on_unexpected_exit(Duration uptime);
  // A crash that is not an exit: the worker never became ready in time, or could not start.
  [[nodiscard]] RestartDecision on_failed_start();
  // The worker of this slot has been up for min_uptime: forget past crashes.
  void on_stable() noexcept { failures_ = 0; }
  void reconfigure(common::RestartConfig config) noexcept { config_ = config; }
  [[nodiscard]] unsigned failures() const noexcept { return failures_; }

 private:
  [[nodiscard]] RestartDecision record_crash();

  common::RestartConfig config_;
  unsigned failures_ = 0;
};

}  // namespace forkd::daemon
