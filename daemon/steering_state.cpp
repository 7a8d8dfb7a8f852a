#include "daemon/steering_state.hpp"

namespace forkd::daemon {

SteeringState steering_state(const Lane& lane, bool stalled) noexcept {
  if (lane.asked_to_stop || lane.state == SlotState::stopping) return SteeringState::draining;
  if (lane.state != SlotState::ready) return SteeringState::not_ready;
  return stalled ? SteeringState::stalled : SteeringState::in;
}

const char* to_string(SteeringState state) noexcept {
  switch (state) {
    case SteeringState::in:
      return "in";
    case SteeringState::not_ready:
      return "not ready";
    case SteeringState::draining:
      return "draining";
    case SteeringState::stalled:
      return "stalled";
  }
  return "?";
}

}  // namespace forkd::daemon
