#include "daemon/backoff.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::Backoff;
using forkd::daemon::PolicyClock;
using forkd::daemon::RestartDecision;
using std::chrono::milliseconds;

forkd::common::RestartConfig restart(unsigned max_failures = 0, unsigned burst = 20) {
  forkd::common::RestartConfig c;
  c.delay = milliseconds(100);
  c.max_delay = milliseconds(1000);
  c.min_uptime = milliseconds(1000);
  c.max_failures = max_failures;
  c.burst = burst;
  return c;
}

TEST(BackoffTest, FailedStartDelaysDoubleUpToMaxDelay) {
  Backoff b(restart());
  std::vector<long> delays;
  delays.reserve(7);
  for (int i = 0; i < 7; ++i) delays.push_back(b.on_failed_start().delay.count());
  EXPECT_EQ(delays, (std::vector<long>{100, 200, 400, 800, 1000, 1000, 1000}));
  EXPECT_EQ(b.failures(), 7U);
}

TEST(BackoffTest, RuntimeExitRespawnsAtOnceAndDoesNotGrowTheBackoff) {
  Backoff b(restart());
  const PolicyClock::time_point t0{};
  (void)b.on_failed_start();
  for (int i = 0; i < 5; ++i) {
    const RestartDecision d = b.on_runtime_exit(t0 + milliseconds(300 * i));
    EXPECT_EQ(d.kind, RestartDecision::Kind::respawn);
    EXPECT_EQ(d.delay.count(), 0);
    EXPECT_FALSE(d.braked);
  }
  EXPECT_EQ(b.failures(), 1U);
  EXPECT_EQ(b.on_failed_start().delay.count(), 200);
}

TEST(BackoffTest, BurstBrakesTightLoopsWithTheFirstDelayNeverGrowing) {
  Backoff b(restart(0, 3));
  const PolicyClock::time_point t0{};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.on_runtime_exit(t0 + milliseconds(i)).delay.count(), 0);
  for (int i = 3; i < 10; ++i) {
    const auto d = b.on_runtime_exit(t0 + milliseconds(i));
    EXPECT_TRUE(d.braked);
    EXPECT_EQ(d.delay.count(), 100);
  }
  // A second later the window is clear again.
  EXPECT_EQ(b.on_runtime_exit(t0 + milliseconds(1100)).delay.count(), 0);
}

TEST(BackoffTest, StableForgetsFailedStarts) {
  Backoff b(restart());
  (void)b.on_failed_start();
  (void)b.on_failed_start();
  b.on_stable();
  EXPECT_EQ(b.failures(), 0U);
  EXPECT_EQ(b.on_failed_start().delay.count(), 100);
}

TEST(BackoffTest, GivesUpAfterMaxFailuresCountingTheFirst) {
  Backoff b(restart(3));
  EXPECT_EQ(b.on_failed_start().kind, RestartDecision::Kind::respawn);
  EXPECT_EQ(b.on_failed_start().kind, RestartDecision::Kind::respawn);
  const auto d = b.on_failed_start();
  EXPECT_EQ(d.kind, RestartDecision::Kind::give_up);
  EXPECT_EQ(d.failures, 3U);
}

TEST(BackoffTest, NoOverflowWithHugeStreaks) {
  auto c = restart();
  c.max_delay = std::chrono::hours(24);
  Backoff b(c);
  RestartDecision d;
  for (int i = 0; i < 200; ++i) d = b.on_failed_start();
  EXPECT_EQ(d.delay, std::chrono::hours(24));
}

}  // namespace
