// The shared-listener accept path's pure decisions: when a worker holds more than its share of
// open connections, and when it rotates to the tail of the listeners' wait queues.
#include "worker/accept_policy.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::worker::AcceptPolicy;
using forkd::worker::RotationClock;

TEST(AcceptPolicyTest, AWorkerAloneNeverHoldsTooMuch) {
  const AcceptPolicy policy;
  EXPECT_FALSE(policy.holds_too_much(1000, 1000, 1));
  EXPECT_FALSE(policy.holds_too_much(1000, 1000, 0));
}

TEST(AcceptPolicyTest, FewConnectionsNeverCount) {
  const AcceptPolicy policy;  // fair + 2, from 16 connections in all
  EXPECT_FALSE(policy.holds_too_much(2, 2, 2));
  EXPECT_FALSE(policy.holds_too_much(15, 15, 2));
  EXPECT_TRUE(policy.holds_too_much(16, 16, 2));  // limit 8 + 2
  AcceptPolicy small;
  small.share_min_total = 0;                    // the slack alone
  EXPECT_FALSE(small.holds_too_much(4, 4, 2));  // limit 2 + 2
  EXPECT_TRUE(small.holds_too_much(6, 6, 2));   // limit 3 + 2
}

// The kernel is asked for the total only when some total could make the worker's own count too
// much: with 2 workers from 11 connections (at the least total, 16: limit 8 + 2), with 4 from 7.
TEST(AcceptPolicyTest, TheTotalIsAskedForOnlyWhenItCouldMatter) {
  const AcceptPolicy policy;
  EXPECT_FALSE(policy.could_hold_too_much(1, 2));
  EXPECT_FALSE(policy.could_hold_too_much(10, 2));
  EXPECT_TRUE(policy.could_hold_too_much(11, 2));
  EXPECT_FALSE(policy.could_hold_too_much(6, 4));
  EXPECT_TRUE(policy.could_hold_too_much(7, 4));
  EXPECT_FALSE(policy.could_hold_too_much(1000, 1));
  // Never false where holds_too_much could be true.
  for (std::size_t own = 0; own < 64; ++own) {
    for (std::size_t total = own; total < 256; ++total) {
      if (policy.holds_too_much(own, total, 3)) {
        EXPECT_TRUE(policy.could_hold_too_much(own, 3));
      }
    }
  }
}

TEST(AcceptPolicyTest, ClearlyMoreThanTheFairShareHoldsTooMuch) {
  const AcceptPolicy policy;
  // 50 over 2 workers: fair 25, limit 27, so a burst of 50 ends no worse than 27/23.
  EXPECT_FALSE(policy.holds_too_much(25, 50, 2));
  EXPECT_FALSE(policy.holds_too_much(27, 50, 2));
  EXPECT_TRUE(policy.holds_too_much(28, 50, 2));
  // 100 over 4 workers: fair 25, limit 27.
  EXPECT_FALSE(policy.holds_too_much(27, 100, 4));
  EXPECT_TRUE(policy.holds_too_much(28, 100, 4));
  // A looser rule, as a deployment may want it: 1.25 x fair + 2.
  AcceptPolicy loose;
  loose.share_factor = 1.25;
  EXPECT_FALSE(loose.holds_too_much(33, 100, 4));  // limit 31.25 + 2
  EXPECT_TRUE(loose.holds_too_much(34, 100, 4));
}

TEST(AcceptPolicyTest, CountsThatDoNotAddUpAreIgnored) {
  const AcceptPolicy policy;
  EXPECT_FALSE(policy.holds_too_much(50, 10, 2));  // own > total: a stale total
}

TEST(AcceptPolicyTest, YieldsAgainOnlyWhileTheOthersKeepUp) {
  // Not straight from a yield: always let the others go first.
  EXPECT_TRUE(AcceptPolicy::yield_now(0, 0, false));
  EXPECT_TRUE(AcceptPolicy::yield_now(5, 10, false));
  // Back from a yield during which the others took connections: let them take more.
  EXPECT_TRUE(AcceptPolicy::yield_now(12, 10, true));
  // They took none (stalled, or starved of CPU): accept ourselves rather than pause again.
  EXPECT_FALSE(AcceptPolicy::yield_now(10, 10, true));
  EXPECT_FALSE(AcceptPolicy::yield_now(8, 10, true));
}

TEST(AcceptPolicyTest, RotationComesEveryNAccepts) {
  RotationClock clock(3);
  EXPECT_FALSE(clock.rotate_after(0));
  EXPECT_FALSE(clock.rotate_after(1));
  EXPECT_FALSE(clock.rotate_after(1));
  EXPECT_TRUE(clock.rotate_after(1));
  EXPECT_FALSE(clock.rotate_after(2));
  EXPECT_TRUE(clock.rotate_after(4));  // a batch larger than the period rotates once
  EXPECT_FALSE(clock.rotate_after(0));
}

TEST(AcceptPolicyTest, RotationEveryZeroMeansEveryAccept) {
  RotationClock clock(0);
  EXPECT_FALSE(clock.rotate_after(0));
  EXPECT_TRUE(clock.rotate_after(1));
  EXPECT_TRUE(clock.rotate_after(1));
}

}  // namespace
