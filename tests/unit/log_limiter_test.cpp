// The per-source log limit: a burst, then a steady rate; what is refused is counted and
// reported once, with a line that passes (at most once a second) or when the source ends.
#include "daemon/log_limiter.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

namespace {

using forkd::daemon::LogLimiter;
using namespace std::chrono_literals;

const LogLimiter::TimePoint t0 = LogLimiter::Clock::time_point{} + 1000h;

TEST(LogLimiterTest, ABurstPassesThenTheRestIsCounted) {
  LogLimiter limiter({.burst = 3, .per_second = 1});
  for (int i = 0; i < 3; ++i) {
    const auto a = limiter.admit(t0);
    EXPECT_TRUE(a.log);
    EXPECT_EQ(a.suppressed, 0U);
  }
  for (int i = 0; i < 40000; ++i) EXPECT_FALSE(limiter.admit(t0).log);
  EXPECT_EQ(limiter.take_suppressed(), 40000U);
  EXPECT_EQ(limiter.take_suppressed(), 0U);
}

TEST(LogLimiterTest, TheBucketRefillsAtTheRateAndTheCountComesWithTheNextLine) {
  LogLimiter limiter({.burst = 2, .per_second = 4});
  EXPECT_TRUE(limiter.admit(t0).log);
  EXPECT_TRUE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.admit(t0 + 249ms).log);  // a quarter second earns one line
  const auto a = limiter.admit(t0 + 250ms);
  EXPECT_TRUE(a.log);
  EXPECT_EQ(a.suppressed, 2U);
  EXPECT_FALSE(limiter.admit(t0 + 250ms).log);
  // A long quiet time fills the bucket up to the burst, no further.
  EXPECT_TRUE(limiter.admit(t0 + 1h).log);
  EXPECT_TRUE(limiter.admit(t0 + 1h).log);
  EXPECT_FALSE(limiter.admit(t0 + 1h).log);
}

// A source that keeps flooding: its lines pass at the rate, its summary at most once a second.
TEST(LogLimiterTest, AFloodGivesTheRateAndOneSummaryASecond) {
  LogLimiter limiter({.burst = 10, .per_second = 10});
  std::uint64_t logged = 0;
  std::uint64_t summaries = 0;
  std::uint64_t suppressed = 0;
  constexpr int kPerMillisecond = 10;
  for (int ms = 0; ms < 5000; ++ms) {
    for (int i = 0; i < kPerMillisecond; ++i) {
      const auto a = limiter.admit(t0 + std::chrono::milliseconds(ms));
      logged += a.log ? 1 : 0;
      summaries += a.suppressed > 0 ? 1 : 0;
      suppressed += a.suppressed;
    }
  }
  suppressed += limiter.take_suppressed();
  EXPECT_EQ(logged, 10U + 50U - 1U);  // the burst, then 10/s over 4.999 s
  EXPECT_EQ(summaries, 5U);
  EXPECT_EQ(logged + suppressed, 5000U * kPerMillisecond);
}

TEST(LogLimiterTest, ALineCostsItsWeightAndAlwaysFitsAFullBucket) {
  LogLimiter limiter({.burst = 10, .per_second = 10});
  EXPECT_TRUE(limiter.admit(t0, 6).log);
  EXPECT_FALSE(limiter.admit(t0, 6).log);
  EXPECT_TRUE(limiter.admit(t0, 4).log);
  EXPECT_TRUE(limiter.admit(t0 + 1s, 1000).log);  // as dear as the whole bucket, no dearer
  EXPECT_FALSE(limiter.admit(t0 + 1s, 0).log);    // and nothing is free
}

TEST(LogLimiterTest, IdleOnceFullAndNothingIsOwed) {
  LogLimiter limiter({.burst = 1, .per_second = 1});
  EXPECT_TRUE(limiter.idle(t0));
  EXPECT_TRUE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.idle(t0));
  EXPECT_TRUE(limiter.idle(t0 + 1s));
  EXPECT_FALSE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.idle(t0 + 1h));  // one suppressed, not said yet
  EXPECT_EQ(limiter.take_suppressed(), 1U);
  EXPECT_TRUE(limiter.idle(t0 + 1h));
}

TEST(LogLimiterTest, TimeGoingBackwardsEarnsNothing) {
  LogLimiter limiter({.burst = 1, .per_second = 1});
  EXPECT_TRUE(limiter.admit(t0 + 10s).log);
  EXPECT_FALSE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.admit(t0 + 10s).log);
  EXPECT_TRUE(limiter.admit(t0 + 11s).log);
}

}  // namespace
