#include "common/spawner.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <string>

#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using forkd::common::ChildStep;
using forkd::common::spawn_process;
using forkd::common::SpawnSpec;
using forkd::test::TempDir;

constexpr uid_t kOtherId = 54321;  // no account needed: only the switch to it is tried

// What the tester process (a child of this test) found, as its exit code.
enum Verdict : int { ok = 0, not_forked, no_failure, wrong_step, wrong_errno, not_127, prep };

// In a child of its own (the test process keeps its ids), `prepare` takes some privilege away,
// then a worker is spawned that should switch to kOtherId: it must report `step` with EPERM
// through the error pipe and exit 127 without running its program, which would leave a file.
void expect_refused_switch(bool (*prepare)(), ChildStep step) {
  TempDir dir;
  fs::permissions(dir.path(), fs::perms::all);  // the program could write here as anyone
  const std::string marker = dir.file("ran");
  const pid_t tester = ::fork();
  ASSERT_GE(tester, 0);
  if (tester == 0) {
    if (!prepare()) ::_exit(prep);
    SpawnSpec spec;
    spec.program = "/bin/sh";
    spec.argv = {"/bin/sh", "-c", "echo > " + marker};
    spec.uid = kOtherId;
    spec.gid = kOtherId;
    spec.groups = {kOtherId};
    const auto result = spawn_process(spec);
    if (result.pid <= 0) ::_exit(not_forked);
    int status = 0;
    ::waitpid(result.pid, &status, 0);
    if (!result.failure) ::_exit(no_failure);
    if (result.failure->step != step) ::_exit(wrong_step);
    if (result.failure->error != EPERM) ::_exit(wrong_errno);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 127) ::_exit(not_127);
    ::_exit(ok);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(tester, &status, 0), tester);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), ok) << "see enum Verdict";
  EXPECT_FALSE(fs::exists(marker)) << "the program ran with ids it should not have";
}

// An unprivileged process: setgroups() is the first step refused.
bool become_unprivileged() {
  if (::geteuid() != 0) return true;
  return ::setgroups(0, nullptr) == 0 && ::setresgid(65534, 65534, 65534) == 0 &&
         ::setresuid(65534, 65534, 65534) == 0;
}

// Root that lost CAP_SETUID only (as in a container that drops it): the groups and gid change,
// setuid() is refused.
bool lose_cap_setuid() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> caps{};
  if (::syscall(SYS_capget, &header, caps.data()) != 0) return false;
  const auto bit = static_cast<unsigned>(1U << CAP_SETUID);
  caps[0].effective &= ~bit;
  caps[0].permitted &= ~bit;
  return ::syscall(SYS_capset, &header, caps.data()) == 0;
}

TEST(SpawnerTest, AChildThatCannotSetItsGroupsNeverRunsItsProgram) {
  expect_refused_switch(&become_unprivileged, ChildStep::groups);
}

TEST(SpawnerTest, AChildThatCannotSetItsUidNeverRunsItsProgram) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, minus CAP_SETUID";
  expect_refused_switch(&lose_cap_setuid, ChildStep::setuid);
}

// A worker leads a group of its own in our session, whether it was forked or vforked.
TEST(SpawnerTest, OwnProcessGroupInTheSameSession) {
  for (const bool vfork : {false, true}) {
    SpawnSpec spec;
    spec.program = "/bin/sleep";
    spec.argv = {"/bin/sleep", "100"};
    spec.own_process_group = true;
    spec.vfork = vfork;
    const auto result = spawn_process(spec);
    ASSERT_GT(result.pid, 0);
    EXPECT_FALSE(result.failure) << result.describe(spec);
    EXPECT_EQ(::getpgid(result.pid), result.pid) << "vfork " << vfork;
    EXPECT_EQ(::getsid(result.pid), ::getsid(0)) << "vfork " << vfork;
    ASSERT_EQ(::kill(-result.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(result.pid, &status, 0), result.pid);
  }
}

}  // namespace
