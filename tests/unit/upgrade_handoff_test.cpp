#include "daemon/upgrade_handoff.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::UpgradeHandoff;
using D = UpgradeHandoff::Decision;
using std::chrono::seconds;

const UpgradeHandoff::TimePoint t0{seconds(100)};

TEST(UpgradeHandoff, ReadyNewMasterIsHandedOverAndItsLaterExitChangesNothing) {
  UpgradeHandoff u;
  ASSERT_TRUE(u.idle());
  u.started(42, t0 + seconds(40));
  EXPECT_FALSE(u.idle());
  EXPECT_TRUE(u.pending());
  EXPECT_EQ(u.next_wakeup(), t0 + seconds(40));
  EXPECT_EQ(u.ready_word(), D::hand_over);
  EXPECT_FALSE(u.pending());  // this master may finish now
  EXPECT_FALSE(u.next_wakeup().has_value());
  EXPECT_EQ(u.deadline_check(t0 + seconds(100)), D::none);
  EXPECT_EQ(u.exited(42), D::exited_after);
  EXPECT_FALSE(u.idle());  // no second upgrade from a master that handed over
}

TEST(UpgradeHandoff, NotReadyInTimeIsQuitThenKilledAndThisMasterServesOn) {
  UpgradeHandoff u;
  u.started(42, t0 + seconds(40));
  EXPECT_EQ(u.deadline_check(t0 + seconds(39)), D::none);
  EXPECT_EQ(u.deadline_check(t0 + seconds(40)), D::quit_new);
  EXPECT_EQ(u.next_wakeup(), t0 + seconds(45));
  EXPECT_EQ(u.ready_word(), D::none);  // ready after being told to quit: too late
  EXPECT_EQ(u.deadline_check(t0 + seconds(45)), D::kill_new);
  EXPECT_EQ(u.deadline_check(t0 + seconds(99)), D::none);  // killed once
  EXPECT_TRUE(u.pending());
  EXPECT_EQ(u.exited(42), D::failed);
  EXPECT_TRUE(u.idle());
}

TEST(UpgradeHandoff, NewMasterThatDiesFirstIsAFailedUpgrade) {
  UpgradeHandoff u;
  u.started(42, t0 + seconds(40));
  EXPECT_EQ(u.exited(7), D::none);  // some other child
  EXPECT_EQ(u.exited(42), D::failed);
  EXPECT_TRUE(u.idle());
  EXPECT_EQ(u.ready_word(), D::none);
}

}  // namespace
