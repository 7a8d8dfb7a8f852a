// Reuseport steering as the master carries it out: the eligible set handed to the steering
// program after each pass, and a replacement's own socket settled once it took over or failed.
#include <array>

#include "daemon/master.hpp"

namespace forkd::daemon {

void Master::steer_connections() {
  const std::array<const ListenerSet*, 2> owners = {&listeners_,
                                                    reload_ ? &reload_->listeners : nullptr};
  steering_->update(owners, pool_, config_.worker.stall_after);
}

void Master::settle_incoming_sockets() {
  for (const auto& slot : pool_.slots()) {
    if (slot.incoming) continue;
    const auto holder = incoming_holders_.find(slot.id);
    if (listeners_.has_incoming(slot.id)) {
      if (holder != incoming_holders_.end() && slot.current.pid == holder->second) {
        listeners_.promote_incoming(slot.id);
      } else {
        listeners_.drop_incoming(slot.id);
      }
    }
    if (holder != incoming_holders_.end()) incoming_holders_.erase(holder);
  }
}

}  // namespace forkd::daemon
