#include "daemon/fault_injection.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace {

using forkd::daemon::FaultInjection;

TEST(FaultInjectionTest, ParsesAHandlerAndACallNumber) {
  const auto first = FaultInjection::parse("SIGHUP");
  EXPECT_EQ(first.handler(), "SIGHUP");
  EXPECT_EQ(first.nth(), 1U);
  const auto third = FaultInjection::parse("IPC from worker:3");
  EXPECT_EQ(third.handler(), "IPC from worker");
  EXPECT_EQ(third.nth(), 3U);
}

TEST(FaultInjectionTest, RefusesAnEmptyNameOrABadCallNumber) {
  for (const char* spec : {"", ":2", "SIGHUP:", "SIGHUP:0", "SIGHUP:x", "SIGHUP:-1", "SIGHUP:2x"}) {
    EXPECT_THROW((void)FaultInjection::parse(spec), std::invalid_argument) << spec;
  }
}

TEST(FaultInjectionTest, ThrowsOnceAtTheNthCallOfTheNamedHandler) {
  auto fault = FaultInjection::parse("SIGHUP:2");
  EXPECT_NO_THROW(fault.on_call("SIGHUP"));
  EXPECT_NO_THROW(fault.on_call("SIGTERM"));  // another handler does not count
  EXPECT_THROW(fault.on_call("SIGHUP"), std::runtime_error);
  EXPECT_NO_THROW(fault.on_call("SIGHUP"));
  EXPECT_NO_THROW(fault.on_call("SIGHUP"));
}

TEST(FaultInjectionTest, ANameMatchesWholeWordsAtTheStart) {
  auto ipc = FaultInjection::parse("IPC from worker");
  EXPECT_NO_THROW(ipc.on_call("IPC from workers"));
  EXPECT_NO_THROW(ipc.on_call("notify from worker pid 42"));
  EXPECT_THROW(ipc.on_call("IPC from worker pid 42"), std::runtime_error);

  auto control = FaultInjection::parse("control request");
  EXPECT_NO_THROW(control.on_call("control client closed"));
  EXPECT_THROW(control.on_call("control request"), std::runtime_error);
}

TEST(FaultInjectionTest, TheExceptionNamesTheVariable) {
  auto fault = FaultInjection::parse("timer");
  try {
    fault.on_call("timer");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "exception injected by FORKD_TEST_THROW=timer:1");
  }
}

}  // namespace
