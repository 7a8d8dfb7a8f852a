// The one wording of how a child ended, from waitpid's status word (the master) and from
// waitid's siginfo (the process library): both must describe the same fact the same way.
#include "common/exit_status.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

namespace {

using forkd::common::ExitStatus;
using forkd::common::signal_name;

siginfo_t child_info(int code, int status) {
  siginfo_t info{};
  info.si_code = code;
  info.si_status = status;
  return info;
}

TEST(ExitStatusTest, DescribesExitCodesAndSignals) {
  EXPECT_EQ(ExitStatus::from_wait_status(3 << 8).describe(), "exited with code 3");
  EXPECT_TRUE(ExitStatus::from_wait_status(0).success());
  EXPECT_FALSE(ExitStatus::from_wait_status(3 << 8).success());
  EXPECT_FALSE(ExitStatus::from_wait_status(SIGKILL).success());
  EXPECT_EQ(ExitStatus::from_wait_status(SIGKILL).describe(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(ExitStatus::from_wait_status(SIGSEGV | 0x80).describe(),
            "killed by signal 11 (SIGSEGV), core dumped");
}

TEST(ExitStatusTest, WaitidSiginfoReadsTheSameAsAWaitStatus) {
  EXPECT_EQ(ExitStatus::from_siginfo(child_info(CLD_EXITED, 3)).describe(),
            ExitStatus::from_wait_status(3 << 8).describe());
  EXPECT_TRUE(ExitStatus::from_siginfo(child_info(CLD_EXITED, 0)).success());
  EXPECT_EQ(ExitStatus::from_siginfo(child_info(CLD_KILLED, SIGTERM)).describe(),
            "killed by signal 15 (SIGTERM)");
  const ExitStatus dumped = ExitStatus::from_siginfo(child_info(CLD_DUMPED, SIGSEGV));
  EXPECT_TRUE(dumped.core_dumped);
  EXPECT_EQ(dumped.describe(), ExitStatus::from_wait_status(SIGSEGV | 0x80).describe());
}

TEST(ExitStatusTest, AnUnknownEndSaysSo) {
  // What the process library records when someone else reaped its child.
  const ExitStatus unknown{};
  EXPECT_FALSE(unknown.success());
  EXPECT_EQ(unknown.describe(), "exit status unknown");
}

TEST(ExitStatusTest, NamesSignals) {
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
  EXPECT_EQ(signal_name(SIGCHLD), "SIGCHLD");
  EXPECT_EQ(signal_name(64), "signal 64");
}

}  // namespace
