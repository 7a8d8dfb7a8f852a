#include "process/sync.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::process::exec_file_sync;
using forkd::process::exec_sync;
using forkd::process::ExecError;
using forkd::process::ExecOptions;
using forkd::process::ExecSyncError;
using forkd::process::spawn_sync;
using forkd::process::SpawnSyncOptions;
using forkd::process::StdioSpec;
using namespace std::chrono_literals;
using forkd::test::pid_is_gone;

constexpr std::size_t kMiB = std::size_t{1024} * 1024;

TEST(ProcessSyncTest, SpawnSyncCapturesOutputAndStatus) {
  const auto result = spawn_sync("/bin/sh", {"-c", "echo out; echo err >&2; exit 6"});
  EXPECT_GT(result.pid, 0);
  EXPECT_FALSE(result.error);
  EXPECT_EQ(result.exit.code, 6);  // a non-zero exit is not an error for spawn_sync
  EXPECT_EQ(result.stdout_data, "out\n");
  EXPECT_EQ(result.stderr_data, "err\n");
  EXPECT_TRUE(pid_is_gone(result.pid));
}

TEST(ProcessSyncTest, SpawnSyncFeedsInput) {
  SpawnSyncOptions options;
  options.input = "abc\n";
  const auto result = spawn_sync("/bin/cat", {}, options);
  EXPECT_EQ(result.stdout_data, "abc\n");
  EXPECT_EQ(result.exit.code, 0);
}

TEST(ProcessSyncTest, NoDeadlockWhenTheChildWritesAMebibyteToBothStreams) {
  // Each stream alone is far larger than a pipe buffer: reading only one of them at a time,
  // or only after the exit, would hang.
  const auto result = spawn_sync(
      "python3", {"-c",
                  "import sys\n"
                  "chunk = b'o' * 65536\n"
                  "for i in range(16):\n"
                  "    sys.stdout.buffer.write(chunk); sys.stdout.flush()\n"
                  "    sys.stderr.buffer.write(chunk.replace(b'o', b'e')); sys.stderr.flush()\n"});
  EXPECT_FALSE(result.error) << result.error_message;
  EXPECT_EQ(result.exit.code, 0);
  EXPECT_EQ(result.stdout_data, std::string(kMiB, 'o'));
  EXPECT_EQ(result.stderr_data, std::string(kMiB, 'e'));
}

TEST(ProcessSyncTest, NoDeadlockWhenStdoutThenStderrAreWrittenInFull) {
  SpawnSyncOptions options;
  options.max_buffer = 4 * kMiB;
  const auto result = spawn_sync(
      "/bin/sh", {"-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"}, options);
  EXPECT_EQ(result.exit.code, 0);
  EXPECT_EQ(result.stdout_data.size(), kMiB);
  EXPECT_EQ(result.stderr_data.size(), kMiB);
}

TEST(ProcessSyncTest, NoDeadlockWhenInputAndOutputAreBothLarge) {
  SpawnSyncOptions options;
  options.input = std::string(2 * kMiB, 'i');
  options.max_buffer = 4 * kMiB;
  const auto result = spawn_sync("/bin/cat", {}, options);
  EXPECT_EQ(result.exit.code, 0);
  EXPECT_EQ(result.stdout_data, options.input);
}

TEST(ProcessSyncTest, InputTheChildDoesNotReadIsNoSigpipe) {
  SpawnSyncOptions options;
  options.input = std::string(4 * kMiB, 'x');  // far more than the pipe holds
  const auto result = spawn_sync("/bin/true", {}, options);
  EXPECT_EQ(result.exit.code, 0);  // and we are still alive
}

TEST(ProcessSyncTest, SpawnSyncTimeoutKillsAndReportsEtimedout) {
  SpawnSyncOptions options;
  options.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  const auto result = spawn_sync("/bin/sleep", {"30"}, options);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(result.error, std::make_error_code(std::errc::timed_out));
  EXPECT_EQ(result.error_message, "spawnSync /bin/sleep timed out after 200 ms");
  EXPECT_EQ(result.exit.signal, SIGTERM);
  EXPECT_TRUE(pid_is_gone(result.pid));
}

TEST(ProcessSyncTest, SpawnSyncMaxBufferKillsAndReportsEnobufs) {
  SpawnSyncOptions options;
  options.max_buffer = 4096;
  const auto result = spawn_sync("/usr/bin/yes", {}, options);
  EXPECT_EQ(result.error, std::make_error_code(std::errc::no_buffer_space));
  EXPECT_EQ(result.error_message, "stdout maxBuffer exceeded (4096 bytes)");
  EXPECT_EQ(result.stdout_data.size(), 4096U);
  EXPECT_TRUE(result.exit.signal.has_value());
}

TEST(ProcessSyncTest, SpawnSyncReportsSpawnErrorsWithoutThrowing) {
  const auto result = spawn_sync("/nonexistent/forkd-nope");
  EXPECT_EQ(result.pid, -1);
  EXPECT_EQ(result.error, std::error_code(ENOENT, std::system_category()));
  EXPECT_EQ(result.error_message,
            "spawn /nonexistent/forkd-nope ENOENT: No such file or directory");
}

TEST(ProcessSyncTest, SpawnSyncHonoursStdioKindsAndCwdAndEnv) {
  SpawnSyncOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::ignore()};
  options.cwd = "/";
  options.env = {{"ONLY", "me"}};
  options.replace_env = true;
  const auto result =
      spawn_sync("/bin/sh", {"-c", "pwd; echo $ONLY; echo hidden >&2; cat"}, options);
  EXPECT_EQ(result.stdout_data, "/\nme\n");
  EXPECT_EQ(result.stderr_data, "");
  EXPECT_EQ(result.exit.code, 0);
}

TEST(ProcessSyncTest, SpawnSyncRefusesIpcAndExtraPipes) {
  SpawnSyncOptions options;
  options.stdio = {StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::ipc()};
  EXPECT_THROW((void)spawn_sync("/bin/true", {}, options), std::invalid_argument);
  options.stdio = {StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::pipe()};
  EXPECT_THROW((void)spawn_sync("/bin/true", {}, options), std::invalid_argument);
}

TEST(ProcessSyncTest, SpawnSyncSurvivesSignalsInterruptingItsWait) {
  // A handler installed without SA_RESTART makes every blocking call fail with EINTR.
  struct sigaction action {};
  action.sa_handler = [](int) {};
  ::sigemptyset(&action.sa_mask);
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGALRM, &action, &previous), 0);
  itimerval every_ms{{0, 1000}, {0, 1000}};
  ASSERT_EQ(::setitimer(ITIMER_REAL, &every_ms, nullptr), 0);
  SpawnSyncOptions options;
  options.input = std::string(std::size_t{256} * 1024, 'z');
  const auto result = spawn_sync("/bin/sh", {"-c", "sleep 0.3; cat"}, options);
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  ::sigaction(SIGALRM, &previous, nullptr);
  EXPECT_FALSE(result.error) << result.error_message;
  EXPECT_EQ(result.exit.code, 0);
  EXPECT_EQ(result.stdout_data, options.input);
}

TEST(ProcessSyncTest, ExecSyncReturnsStdout) {
  ExecOptions options;
  options.env = {{"WORD", "expanded"}};
  EXPECT_EQ(exec_sync("echo $WORD | tr a-z A-Z", options), "EXPANDED\n");
}

TEST(ProcessSyncTest, ExecSyncThrowsOnNonZeroExitWithTheOutput) {
  try {
    (void)exec_sync("echo some; echo bad >&2; exit 2");
    FAIL() << "no exception";
  } catch (const ExecSyncError& e) {
    EXPECT_EQ(e.detail().kind, ExecError::Kind::exit_status);
    EXPECT_EQ(e.detail().exit.code, 2);
    EXPECT_EQ(e.stdout_data(), "some\n");
    EXPECT_EQ(e.stderr_data(), "bad\n");
    EXPECT_STREQ(e.what(),
                 "Command failed: echo some; echo bad >&2; exit 2 (exited with code 2)\nbad\n");
    EXPECT_TRUE(pid_is_gone(e.pid()));
  }
}

TEST(ProcessSyncTest, ExecSyncTimeoutSaysTimedOut) {
  ExecOptions options;
  options.timeout = 200ms;
  try {
    (void)exec_sync("exec sleep 30", options);
    FAIL() << "no exception";
  } catch (const ExecSyncError& e) {
    EXPECT_EQ(e.detail().kind, ExecError::Kind::timed_out);
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
    EXPECT_EQ(e.detail().exit.signal, SIGTERM);
  }
}

TEST(ProcessSyncTest, ExecFileSyncPassesArgumentsLiterallyAndFeedsInput) {
  EXPECT_EQ(exec_file_sync("/bin/echo", {"a b", "c;d", "'e'", "$HOME"}), "a b c;d 'e' $HOME\n");
  ExecOptions options;
  options.input = "piped";
  EXPECT_EQ(exec_file_sync("cat", {}, options), "piped");
}

TEST(ProcessSyncTest, ExecFileSyncThrowsSpawnErrors) {
  try {
    (void)exec_file_sync("/nonexistent/forkd-nope");
    FAIL() << "no exception";
  } catch (const ExecSyncError& e) {
    EXPECT_EQ(e.detail().kind, ExecError::Kind::spawn_failed);
    EXPECT_EQ(e.detail().error, std::error_code(ENOENT, std::system_category()));
    EXPECT_STREQ(e.what(), "spawn /nonexistent/forkd-nope ENOENT: No such file or directory");
  }
}

TEST(ProcessSyncTest, ExecFileSyncMaxBuffer) {
  ExecOptions options;
  options.max_buffer = 100;
  try {
    (void)exec_file_sync("/usr/bin/yes", {}, options);
    FAIL() << "no exception";
  } catch (const ExecSyncError& e) {
    EXPECT_EQ(e.detail().kind, ExecError::Kind::max_buffer);
    EXPECT_NE(std::string(e.what()).find("maxBuffer exceeded"), std::string::npos);
    EXPECT_EQ(e.stdout_data().size(), 100U);
  }
}

}  // namespace
