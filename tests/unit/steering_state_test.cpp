// Which lanes may get new connections on their reuseport socket.
#include "daemon/steering_state.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::Lane;
using forkd::daemon::SlotState;
using forkd::daemon::steering_state;
using forkd::daemon::SteeringState;

Lane lane(SlotState state, bool asked_to_stop = false) {
  Lane l;
  l.state = state;
  l.pid = 42;
  l.asked_to_stop = asked_to_stop;
  return l;
}

TEST(SteeringStateTest, OnlyAReadyWorkerThatTakesConnectionsIsIn) {
  EXPECT_EQ(steering_state(lane(SlotState::ready), false), SteeringState::in);
  EXPECT_EQ(steering_state(lane(SlotState::ready), true), SteeringState::stalled);
  EXPECT_EQ(steering_state(lane(SlotState::starting), false), SteeringState::not_ready);
  EXPECT_EQ(steering_state(lane(SlotState::starting), true), SteeringState::not_ready);
  EXPECT_EQ(steering_state(lane(SlotState::stopping), false), SteeringState::draining);
  EXPECT_EQ(steering_state(lane(SlotState::ready, true), false), SteeringState::draining);
  EXPECT_STREQ(to_string(SteeringState::not_ready), "not ready");
  EXPECT_STREQ(to_string(SteeringState::stalled), "stalled");
}

}  // namespace
