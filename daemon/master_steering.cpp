// Reuseport steering as the master carries it out: the eligible set handed to the steering
// program after each pass, a stalled worker's queue lent to another, and a replacement's own
// socket settled once it took over or failed.
#include <array>
#include <nlohmann/json.hpp>

#include "daemon/master.hpp"
#include "daemon/worker_channel.hpp"

namespace forkd::daemon {

void Master::steer_connections() {
  const std::array<const ListenerSet*, 2> owners = {&listeners_,
                                                    reload_ ? &reload_->listeners : nullptr};
  steering_->update(owners, pool_, config_.worker.stall_after);
}

// Only a built-in worker of the current generation knows {"forkd":"take_queued"}: an exec'd
// program would get a descriptor it does not expect.
bool Master::lend_queued(pid_t helper, int listener_fd) {
  if (exec_mode()) return false;
  const Lane* lane = pool_.find(helper);
  if (lane == nullptr || lane->generation != pool_.generation()) return false;
  const auto io = workers_.find(helper);
  if (io == workers_.end() || !io->second.channel) return false;
  return io->second.channel->send_with_fd({{"forkd", "take_queued"}}, listener_fd);
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
