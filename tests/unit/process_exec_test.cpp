#include "process/exec.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::process::exec;
using forkd::process::exec_file;
using forkd::process::ExecError;
using forkd::process::ExecOptions;
using namespace std::chrono_literals;
using forkd::test::pid_is_gone;
using forkd::test::run_until;

struct ExecOutcome {
  bool called = false;
  std::optional<ExecError> error;
  std::string out;
  std::string err;

  forkd::process::ExecCallback callback() {
    return [this](const std::optional<ExecError>& e, std::string o, std::string r) {
      EXPECT_FALSE(called) << "callback ran twice";
      called = true;
      error = e;
      out = std::move(o);
      err = std::move(r);
    };
  }
};

ExecOutcome run_exec(const std::string& command, const ExecOptions& options = {}) {
  asio::io_context io;
  ExecOutcome outcome;
  const pid_t pid = exec(io, command, options, outcome.callback());
  EXPECT_GT(pid, 0);
  EXPECT_FALSE(outcome.called) << "the callback must not run inside exec()";
  EXPECT_TRUE(run_until(io, [&] { return outcome.called; }));
  EXPECT_TRUE(pid_is_gone(pid));
  return outcome;
}

ExecOutcome run_exec_file(const std::string& file, const std::vector<std::string>& args,
                          const ExecOptions& options = {}) {
  asio::io_context io;
  ExecOutcome outcome;
  const pid_t pid = exec_file(io, file, args, options, outcome.callback());
  EXPECT_FALSE(outcome.called) << "the callback must not run inside exec_file()";
  EXPECT_TRUE(run_until(io, [&] { return outcome.called; }));
  if (pid > 0) {
    EXPECT_TRUE(pid_is_gone(pid));
  }
  return outcome;
}

TEST(ProcessExecTest, RunsThroughTheShellWithPipesAndVariables) {
  ExecOptions options;
  options.env = {{"GREETING", "hello from the shell"}};
  const auto outcome = run_exec("echo \"$GREETING\" | tr a-z A-Z; echo warn >&2", options);
  EXPECT_FALSE(outcome.error) << outcome.error->message;
  EXPECT_EQ(outcome.out, "HELLO FROM THE SHELL\n");
  EXPECT_EQ(outcome.err, "warn\n");
}

TEST(ProcessExecTest, NonZeroExitIsAnErrorCarryingCodeAndOutput) {
  const auto outcome = run_exec("echo partial; echo oops >&2; exit 4");
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::exit_status);
  EXPECT_EQ(outcome.error->exit.code, 4);
  EXPECT_FALSE(outcome.error->killed);
  EXPECT_EQ(outcome.error->command, "echo partial; echo oops >&2; exit 4");
  EXPECT_EQ(outcome.error->message,
            "Command failed: echo partial; echo oops >&2; exit 4 (exited with code 4)\noops\n");
  EXPECT_EQ(outcome.out, "partial\n");
  EXPECT_EQ(outcome.err, "oops\n");
}

TEST(ProcessExecTest, KilledBySignalIsAnError) {
  const auto outcome = run_exec("kill -KILL $$");
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->exit.signal, SIGKILL);
  EXPECT_FALSE(outcome.error->killed);  // not by us
}

TEST(ProcessExecTest, ExecFilePassesArgumentsLiterally) {
  const std::vector<std::string> args = {"a b",   "'q'",   "\"dq\"", "x; echo injected",
                                         "$HOME", "$(id)", "a|b"};
  const auto outcome = run_exec_file("/bin/echo", args);
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(outcome.out, "a b 'q' \"dq\" x; echo injected $HOME $(id) a|b\n");
}

TEST(ProcessExecTest, ExecFileSearchesPath) {
  const auto outcome = run_exec_file("printf", {"%s-%s", "x y", "z"});
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(outcome.out, "x y-z");
}

TEST(ProcessExecTest, ExecFileOfAMissingProgramIsSpawnEnoent) {
  asio::io_context io;
  ExecOutcome outcome;
  const pid_t pid = exec_file(io, "/nonexistent/forkd-nope", {"x"}, {}, outcome.callback());
  EXPECT_EQ(pid, -1);
  EXPECT_FALSE(outcome.called);
  ASSERT_TRUE(run_until(io, [&] { return outcome.called; }));
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::spawn_failed);
  EXPECT_EQ(outcome.error->error, std::error_code(ENOENT, std::system_category()));
  EXPECT_EQ(outcome.error->message,
            "spawn /nonexistent/forkd-nope ENOENT: No such file or directory");
}

TEST(ProcessExecTest, ShellCommandNotFoundIsExit127FromTheShell) {
  // Through a shell the shell starts fine; the missing command is its exit code, as in Node.
  const auto outcome = run_exec("forkd-no-such-command-anywhere");
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::exit_status);
  EXPECT_EQ(outcome.error->exit.code, 127);
}

TEST(ProcessExecTest, FeedsInputToStdin) {
  ExecOptions options;
  options.input = "fed through stdin\n";
  const auto outcome = run_exec_file("/bin/cat", {}, options);
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(outcome.out, "fed through stdin\n");
}

TEST(ProcessExecTest, StdinIsClosedWithoutInput) {
  const auto outcome = run_exec_file("/bin/cat", {});
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(outcome.out, "");
}

TEST(ProcessExecTest, RunsInCwd) {
  ExecOptions options;
  options.cwd = "/";
  const auto outcome = run_exec("pwd", options);
  EXPECT_EQ(outcome.out, "/\n");
}

TEST(ProcessExecTest, MaxBufferExceededKillsTheChild) {
  ExecOptions options;
  options.max_buffer = 1000;
  const auto start = std::chrono::steady_clock::now();
  const auto outcome = run_exec_file("/usr/bin/yes", {}, options);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::max_buffer);
  EXPECT_EQ(outcome.error->error, std::make_error_code(std::errc::no_buffer_space));
  EXPECT_NE(outcome.error->message.find("stdout maxBuffer exceeded"), std::string::npos);
  EXPECT_TRUE(outcome.error->killed);
  EXPECT_TRUE(outcome.error->exit.signal.has_value());  // SIGTERM, or SIGPIPE if it wrote first
  EXPECT_EQ(outcome.out.size(), 1000U);
  EXPECT_EQ(outcome.out.substr(0, 4), "y\ny\n");
}

TEST(ProcessExecTest, MaxBufferAppliesToStderrToo) {
  ExecOptions options;
  options.max_buffer = 10;
  const auto outcome = run_exec("echo 0123456789abcdef >&2; sleep 30", options);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::max_buffer);
  EXPECT_NE(outcome.error->message.find("stderr maxBuffer exceeded"), std::string::npos);
  EXPECT_EQ(outcome.err, "0123456789");
}

TEST(ProcessExecTest, TimeoutKillsWithTheKillSignal) {
  ExecOptions options;
  options.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  const auto outcome = run_exec_file("/bin/sleep", {"30"}, options);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::timed_out);
  EXPECT_EQ(outcome.error->error, std::make_error_code(std::errc::timed_out));
  EXPECT_TRUE(outcome.error->killed);
  EXPECT_EQ(outcome.error->exit.signal, SIGTERM);
  EXPECT_EQ(outcome.error->message,
            "Command timed out after 200 ms: /bin/sleep 30 (killed by signal 15 (SIGTERM))");
}

TEST(ProcessExecTest, TimeoutUsesTheChosenKillSignal) {
  ExecOptions options;
  options.timeout = 200ms;
  options.kill_signal = SIGKILL;
  // It ignores SIGTERM; only the chosen SIGKILL ends it.
  const auto outcome = run_exec("trap '' TERM; echo started; exec sleep 30", options);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::timed_out);
  EXPECT_EQ(outcome.error->exit.signal, SIGKILL);
  EXPECT_EQ(outcome.out, "started\n");
}

TEST(ProcessExecTest, TimeoutDoesNotWaitForAGrandchildHoldingThePipes) {
  ExecOptions options;
  options.timeout = 200ms;
  asio::io_context io;
  ExecOutcome outcome;
  // The shell leaves a background sleep holding stdout; it prints its pid first.
  const pid_t pid = exec(io, "sleep 30 & echo $!; wait", options, outcome.callback());
  ASSERT_GT(pid, 0);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until(io, [&] { return outcome.called; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->kind, ExecError::Kind::timed_out);
  const pid_t grandchild = std::stoi(outcome.out);
  ASSERT_GT(grandchild, 0);
  ::kill(grandchild, SIGKILL);  // not our child: its new parent reaps it
}

TEST(ProcessExecTest, DestroyingTheLoopKillsAndReapsARunningExec) {
  pid_t pid = -1;
  bool called = false;
  {
    asio::io_context io;
    pid = exec(io, "exec sleep 30", {},
               [&](const std::optional<ExecError>&, const std::string&, const std::string&) {
                 called = true;
               });
    ASSERT_GT(pid, 0);
    io.poll();
  }
  EXPECT_FALSE(called);
  EXPECT_TRUE(pid_is_gone(pid));
}

}  // namespace
