// A source's log lines through its limit: the summary line says how many were left out and
// whose they were; sources keyed by uid are limited each on its own.
#include "daemon/limited_log.hpp"

#include "tests/unit/recording_sink.hpp"

#include <gtest/gtest.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using forkd::daemon::LimitedLog;
using forkd::daemon::LimitedLogs;

using forkd::test::RecordingSink;

struct Recorded {
  std::shared_ptr<RecordingSink> sink = std::make_shared<RecordingSink>();
  std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>("limited-test", sink);
};

TEST(LimitedLogTest, PassesTheBurstAndSaysHowManyWereSuppressedWhenFlushed) {
  Recorded r;
  LimitedLog log(r.logger, "worker 0 (pid 42) messages", {.burst = 3, .per_second = 1});
  for (int i = 0; i < 1000; ++i) log.log(spdlog::level::warn, "bad line {}", i);
  log.flush();
  log.flush();  // said once
  EXPECT_EQ(r.sink->lines,
            (std::vector<std::string>{
                "warning bad line 0", "warning bad line 1", "warning bad line 2",
                "warning worker 0 (pid 42) messages: 997 lines suppressed (limit 3 at once, then "
                "1/s)"}));
}

TEST(LimitedLogTest, LinesBelowTheLevelCostNothing) {
  Recorded r;
  r.logger->set_level(spdlog::level::warn);
  LimitedLog log(r.logger, "src", {.burst = 1, .per_second = 1});
  for (int i = 0; i < 100; ++i) log.log(spdlog::level::debug, "chatter {}", i);
  log.log(spdlog::level::warn, "the one that matters");
  log.flush();
  EXPECT_EQ(r.sink->lines, (std::vector<std::string>{"warning the one that matters"}));
}

TEST(LimitedLogTest, EachKeyHasItsOwnLimit) {
  Recorded r;
  LimitedLogs logs(r.logger, "refused control clients of uid ", {.burst = 2, .per_second = 1});
  for (int i = 0; i < 500; ++i) logs.of(65534).log(spdlog::level::warn, "refused uid 65534");
  logs.of(1000).log(spdlog::level::warn, "refused uid 1000");
  logs.of(65534).flush();
  EXPECT_EQ(r.sink->lines,
            (std::vector<std::string>{"warning refused uid 65534", "warning refused uid 65534",
                                      "warning refused uid 1000",
                                      "warning refused control clients of uid 65534: 498 lines "
                                      "suppressed (limit 2 at once, then 1/s)"}));
}

TEST(LimitedLogTest, KeysBeyondTheBoundShareOneLimit) {
  Recorded r;
  LimitedLogs logs(r.logger, "uid ", {.burst = 1, .per_second = 1});
  // Every source busy (its bucket empty): none can be forgotten.
  for (std::uint64_t key = 0; key < LimitedLogs::kMaxSources; ++key) {
    logs.of(key).log(spdlog::level::warn, "from {}", key);
  }
  LimitedLog& shared = logs.of(100000);
  EXPECT_EQ(&shared, &logs.of(100001));
  EXPECT_NE(&shared, &logs.of(0));
  shared.log(spdlog::level::warn, "from the others");
  shared.log(spdlog::level::warn, "suppressed");
  shared.flush();
  EXPECT_EQ(r.sink->lines.back(),
            "warning uid others: 1 line suppressed (limit 1 at once, then 1/s)");
}

}  // namespace
