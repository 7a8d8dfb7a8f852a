// Restart policy of one slot (SPEC `restart`): when a lane whose process is gone starts again.
// Pure: no clocks, no processes; the caller passes the times and acts on the decision.
// A failed start (gone before it was ready) grows the delay and counts toward max_failures; a
// runtime exit (it had been ready) respawns at once, braked only by `burst`, never growing.
#pragma once

#include <chrono>
#include <deque>

#include "common/config.hpp"

namespace forkd::daemon {

using common::Duration;
using PolicyClock = std::chrono::steady_clock;

struct RestartDecision {
  enum class Kind { respawn, give_up } kind = Kind::respawn;
  Duration delay{0};      // wait this long before the respawn
  unsigned failures = 0;  // consecutive failed starts so far, this one included
  bool braked = false;    // a runtime exit held back by restart.burst
};

class Backoff {
 public:
  explicit Backoff(common::RestartConfig config) : config_(config) {}

  // The process never became ready (or, with `ready: started`, was not up min_uptime): the delay
  // doubles from restart.delay up to max_delay; after max_failures in a row the slot gives up.
  [[nodiscard]] RestartDecision on_failed_start();
  // The process had been ready: respawn at once, unless more than `burst` such exits fell in the
  // last second, then after `delay` (a brake on tight loops that never grows).
  [[nodiscard]] RestartDecision on_runtime_exit(PolicyClock::time_point now);
  // Up min_uptime after ready: past failed starts are forgotten.
  void on_stable() noexcept { failures_ = 0; }
  void reconfigure(common::RestartConfig config) noexcept { config_ = config; }
  [[nodiscard]] unsigned failures() const noexcept { return failures_; }

 private:
  common::RestartConfig config_;
  unsigned failures_ = 0;
  std::deque<PolicyClock::time_point> recent_exits_;  // runtime exits in the last second
};

}  // namespace forkd::daemon
