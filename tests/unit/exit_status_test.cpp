#include "daemon/exit_status.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

namespace {

using forkd::daemon::ExitStatus;

TEST(ExitStatusTest, DescribesExitCodesAndSignals) {
  EXPECT_EQ(ExitStatus::from_wait_status(3 << 8).describe(), "exited with code 3");
  EXPECT_TRUE(ExitStatus::from_wait_status(0).clean());
  EXPECT_EQ(ExitStatus::from_wait_status(SIGKILL).describe(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(ExitStatus::from_wait_status(SIGSEGV | 0x80).describe(),
            "killed by signal 11 (SIGSEGV), core dumped");
}

}  // namespace
