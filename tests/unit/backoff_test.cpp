#include "daemon/backoff.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::Backoff;
using forkd::daemon::RestartDecision;
using std::chrono::milliseconds;

forkd::common::RestartConfig restart(unsigned max_failures = 0) {
  forkd::common::RestartConfig c;
  c.delay = milliseconds(100);
  c.max_delay = milliseconds(1000);
  c.min_uptime = milliseconds(1000);
  c.max_failures = max_failures;
  return c;
}

TEST(BackoffTest, CrashDelaysDoubleUpToMaxDelay) {
  Backoff b(restart());
  std::vector<long> delays;
  delays.reserve(7);
  for (int i = 0; i < 7; ++i)
    delays.push_back(b.on_unexpected_exit(milliseconds(10)).delay.count());
  EXPECT_EQ(delays, (std::vector<long>{100, 200, 400, 800, 1000, 1000, 1000}));
  EXPECT_EQ(b.failures(), 7U);
}

TEST(BackoffTest, ExitAfterMinUptimeRespawnsAtOnceAndResetsTheStreak) {
  Backoff b(restart());
  (void)b.on_unexpected_exit(milliseconds(10));
  (void)b.on_unexpected_exit(milliseconds(10));
  const RestartDecision d = b.on_unexpected_exit(milliseconds(1000));
  EXPECT_EQ(d.kind, RestartDecision::Kind::respawn);
  EXPECT_EQ(d.delay.count(), 0);
  EXPECT_FALSE(d.crash);
  EXPECT_EQ(b.failures(), 0U);
  EXPECT_EQ(b.on_unexpected_exit(milliseconds(10)).delay.count(), 100);
}

TEST(BackoffTest, GivesUpAfterMaxFailuresCountingTheFirst) {
  Backoff b(restart(3));
  EXPECT_EQ(b.on_unexpected_exit(milliseconds(1)).kind, RestartDecision::Kind::respawn);
  EXPECT_EQ(b.on_failed_start().kind, RestartDecision::Kind::respawn);
  const auto d = b.on_unexpected_exit(milliseconds(1));
  EXPECT_EQ(d.kind, RestartDecision::Kind::give_up);
  EXPECT_EQ(d.failures, 3U);
}

TEST(BackoffTest, FailedStartIsACrashWhateverTheUptime) {
  Backoff b(restart());
  EXPECT_TRUE(b.on_failed_start().crash);
  EXPECT_EQ(b.on_failed_start().delay.count(), 200);
}

TEST(BackoffTest, NoOverflowWithHugeStreaks) {
  auto c = restart();
  c.max_delay = std::chrono::hours(24);
  Backoff b(c);
  RestartDecision d;
  for (int i = 0; i < 200; ++i) d = b.on_unexpected_exit(milliseconds(0));
  EXPECT_EQ(d.delay, std::chrono::hours(24));
}

}  // namespace
