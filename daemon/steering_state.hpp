// Whether a worker's own reuseport socket may get new connections, decided from its lane alone
// (and whether the master saw it stall): pure, like the pool it reads.
#pragma once

#include <cstdint>

#include "daemon/worker_pool.hpp"

namespace forkd::daemon {

enum class SteeringState : std::uint8_t {
  in,         // ready and taking connections: new ones may go to its socket
  not_ready,  // starting: nothing until it says it is ready
  draining,   // asked to stop (replaced, scaled down, shutdown): nothing new
  stalled,    // ready, but its queue did not move for worker.stall_after
};

[[nodiscard]] SteeringState steering_state(const Lane& lane, bool stalled) noexcept;
[[nodiscard]] const char* to_string(SteeringState state) noexcept;

}  // namespace forkd::daemon
