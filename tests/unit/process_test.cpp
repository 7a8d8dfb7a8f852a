#include "process/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "process/exit_watch.hpp"

#include "tests/unit/process_test_support.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::common::ExitStatus;
using forkd::common::UniqueFd;
using forkd::process::ChildProcess;
using forkd::process::ExitWatcher;
using forkd::process::PidHandle;
using forkd::process::spawn;
using forkd::process::SpawnError;
using forkd::process::SpawnOptions;
using forkd::process::StdioSpec;
using forkd::test::TempDir;
using namespace std::chrono_literals;
using forkd::test::kPatience;
using forkd::test::pid_is_gone;
using forkd::test::run_until;

// Reads a stream to EOF into `out`; sets `*eof` at the end.
void read_all(asio::posix::stream_descriptor& stream, const std::shared_ptr<std::string>& out,
              const std::shared_ptr<bool>& eof) {
  auto chunk = std::make_shared<std::array<char, 4096>>();
  stream.async_read_some(asio::buffer(*chunk),
                         [&stream, out, eof, chunk](const std::error_code& ec, std::size_t n) {
                           out->append(chunk->data(), n);
                           if (ec) {
                             *eof = true;
                             return;
                           }
                           read_all(stream, out, eof);
                         });
}

struct Outcome {
  std::string out;
  std::string err;
  ExitStatus exit;
};

// Collects stdout and stderr to EOF and the exit status of a child with piped fds 1 and 2.
std::optional<Outcome> collect(asio::io_context& io, ChildProcess& child) {
  auto out = std::make_shared<std::string>();
  auto err = std::make_shared<std::string>();
  auto out_eof = std::make_shared<bool>(false);
  auto err_eof = std::make_shared<bool>(false);
  std::optional<ExitStatus> exit;
  if (child.stdout_pipe() != nullptr) {
    read_all(*child.stdout_pipe(), out, out_eof);
  } else {
    *out_eof = true;
  }
  if (child.stderr_pipe() != nullptr) {
    read_all(*child.stderr_pipe(), err, err_eof);
  } else {
    *err_eof = true;
  }
  child.async_wait([&exit](const ExitStatus& e) { exit = e; });
  if (!run_until(io, [&] { return *out_eof && *err_eof && exit.has_value(); })) {
    return std::nullopt;
  }
  return Outcome{*out, *err, *exit};
}

// Prints the open fds of the python3 child, space-separated.
const char* const kListFds =
    "import os\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "        return True\n"
    "    except OSError:\n"
    "        return False\n"
    "print(' '.join(str(fd) for fd in range(4096) if is_open(fd)))\n";

TEST(ProcessSpawnTest, CapturesStdoutAndStderrSeparately) {
  asio::io_context io;
  auto child = spawn(io, "/bin/sh", {"-c", "echo out; echo err >&2; exit 0"});
  EXPECT_GT(child.pid(), 0);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "out\n");
  EXPECT_EQ(outcome->err, "err\n");
  EXPECT_EQ(outcome->exit.code, 0);
  EXPECT_FALSE(outcome->exit.signal);
  EXPECT_FALSE(child.running());
}

TEST(ProcessSpawnTest, PipesStdinToTheChild) {
  asio::io_context io;
  auto child = spawn(io, "/bin/cat");
  const std::string text = "line one\nline two\n";
  bool written = false;
  asio::async_write(*child.stdin_pipe(), asio::buffer(text),
                    [&](const std::error_code& ec, std::size_t) {
                      EXPECT_FALSE(ec);
                      written = true;
                      child.stdin_pipe()->close();  // EOF for cat
                    });
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(written);
  EXPECT_EQ(outcome->out, text);
  EXPECT_EQ(outcome->exit.code, 0);
}

TEST(ProcessSpawnTest, EnvIsAddedToOursByDefault) {
  ASSERT_NE(std::getenv("PATH"), nullptr);
  asio::io_context io;
  SpawnOptions options;
  options.env = {{"FORKD_TEST_ADDED", "added value"}};
  auto child = spawn(io, "/usr/bin/env", {}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_NE(outcome->out.find("FORKD_TEST_ADDED=added value\n"), std::string::npos);
  EXPECT_NE(outcome->out.find("PATH=" + std::string(std::getenv("PATH")) + "\n"),
            std::string::npos);
}

TEST(ProcessSpawnTest, EnvReplacesOursWhenAsked) {
  asio::io_context io;
  SpawnOptions options;
  options.env = {{"ONLY", "this"}};
  options.replace_env = true;
  auto child = spawn(io, "/usr/bin/env", {}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "ONLY=this\n");
}

TEST(ProcessSpawnTest, RunsInTheGivenCwd) {
  TempDir dir;
  asio::io_context io;
  SpawnOptions options;
  options.cwd = dir.path();
  auto child = spawn(io, "/bin/pwd", {"-P"}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, dir.path() + "\n");
}

TEST(ProcessSpawnTest, RelativeProgramPathResolvesInCwd) {
  TempDir dir;
  const std::string script = dir.file("tool.sh");
  std::ofstream(script) << "#!/bin/sh\necho from tool\n";
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  asio::io_context io;
  SpawnOptions options;
  options.cwd = dir.path();
  auto child = spawn(io, "./tool.sh", {}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "from tool\n");
}

TEST(ProcessSpawnTest, ReportsTheExitCode) {
  asio::io_context io;
  auto child = spawn(io, "/bin/sh", {"-c", "exit 3"});
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->exit.code, 3);
  EXPECT_FALSE(outcome->exit.success());
  EXPECT_EQ(outcome->exit.describe(), "exited with code 3");
}

TEST(ProcessSpawnTest, ReportsTheKillingSignal) {
  asio::io_context io;
  auto child = spawn(io, "/bin/sh", {"-c", "kill -TERM $$"});
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->exit.code);
  EXPECT_EQ(outcome->exit.signal, SIGTERM);
  EXPECT_EQ(outcome->exit.describe(), "killed by signal 15 (SIGTERM)");
}

TEST(ProcessSpawnTest, ChildKeepsTheDefaultSigint) {
  // The daemon's own children ignore the terminal's SIGINT; a library child must not.
  asio::io_context io;
  auto child = spawn(io, "/bin/sh", {"-c", "kill -INT $$; exit 0"});
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->exit.signal, SIGINT);
}

TEST(ProcessSpawnTest, KillSignalsTheChildAndThenRefuses) {
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::ignore(), StdioSpec::ignore()};
  auto child = spawn(io, "/bin/sleep", {"30"}, options);
  EXPECT_TRUE(child.running());
  EXPECT_FALSE(child.kill(SIGKILL));
  std::optional<ExitStatus> exit;
  child.async_wait([&](const ExitStatus& e) { exit = e; });
  ASSERT_TRUE(run_until(io, [&] { return exit.has_value(); }));
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_EQ(child.kill(SIGTERM), std::make_error_code(std::errc::no_such_process));
  // A wait registered after the exit is still answered.
  std::optional<ExitStatus> late;
  child.async_wait([&](const ExitStatus& e) { late = e; });
  ASSERT_TRUE(run_until(io, [&] { return late.has_value(); }));
  EXPECT_EQ(late->signal, SIGKILL);
  EXPECT_TRUE(pid_is_gone(child.pid()));
}

TEST(ProcessSpawnTest, MissingProgramIsSpawnEnoentWithThePath) {
  asio::io_context io;
  try {
    auto child = spawn(io, "/nonexistent/forkd-nope", {"arg"});
    FAIL() << "spawned " << child.pid();
  } catch (const SpawnError& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOENT, std::system_category()));
    EXPECT_EQ(e.path(), "/nonexistent/forkd-nope");
    EXPECT_STREQ(e.what(), "spawn /nonexistent/forkd-nope ENOENT: No such file or directory");
  }
  try {
    auto child = spawn(io, "forkd-no-such-program-anywhere");
    FAIL() << "spawned " << child.pid();
  } catch (const SpawnError& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOENT, std::system_category()));
    EXPECT_STREQ(e.what(),
                 "spawn forkd-no-such-program-anywhere ENOENT: No such file or directory");
  }
}

TEST(ProcessSpawnTest, NonExecutableIsSpawnEaccesNotExit127) {
  TempDir dir;
  const std::string file = dir.file("not-executable");
  std::ofstream(file) << "#!/bin/sh\nexit 0\n";
  std::filesystem::permissions(
      file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  asio::io_context io;
  for (const auto& target : {file, dir.path()}) {
    try {
      auto child = spawn(io, target);
      FAIL() << "spawned " << target;
    } catch (const SpawnError& e) {
      EXPECT_EQ(e.code(), std::error_code(EACCES, std::system_category())) << target;
      EXPECT_EQ(std::string(e.what()), "spawn " + target + " EACCES: Permission denied");
    }
  }
}

TEST(ProcessSpawnTest, MissingCwdNamesTheStep) {
  asio::io_context io;
  SpawnOptions options;
  options.cwd = "/nonexistent/forkd-dir";
  try {
    auto child = spawn(io, "/bin/true", {}, options);
    FAIL() << "spawned " << child.pid();
  } catch (const SpawnError& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOENT, std::system_category()));
    EXPECT_STREQ(
        e.what(),
        "spawn /bin/true ENOENT (chdir /nonexistent/forkd-dir): No such file or directory");
  }
}

TEST(ProcessSpawnTest, ArgumentsArePassedLiterallyWithoutShell) {
  asio::io_context io;
  const std::vector<std::string> args = {"a b",   "'single'", "\"double\"", "x; echo injected",
                                         "$HOME", "`id`",     "*"};
  auto child = spawn(io, "/bin/echo", args);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "a b 'single' \"double\" x; echo injected $HOME `id` *\n");
}

TEST(ProcessSpawnTest, ShellTrueInterpretsTheJoinedCommand) {
  asio::io_context io;
  SpawnOptions options;
  options.shell = true;
  options.env = {{"FORKD_TEST_WORD", "expanded"}};
  auto child =
      spawn(io, "echo", {"one;", "echo", "$FORKD_TEST_WORD", "|", "tr", "a-z", "A-Z"}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "one\nEXPANDED\n");
}

TEST(ProcessSpawnTest, Argv0CanBeChosen) {
  asio::io_context io;
  SpawnOptions options;
  options.argv0 = "custom-name";
  auto child = spawn(io, "/bin/sh", {"-c", "echo $0"}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "custom-name\n");
}

TEST(ProcessSpawnTest, IpcRoundTripWithAPythonChild) {
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::ipc()};
  // What a Node child does: find the channel in NODE_CHANNEL_FD, one JSON value per line.
  const char* const script =
      "import json, os, socket\n"
      "fd = int(os.environ['NODE_CHANNEL_FD'])\n"
      "mode = os.environ['NODE_CHANNEL_SERIALIZATION_MODE']\n"
      "channel = socket.socket(fileno=fd)\n"
      "reader = channel.makefile('r')\n"
      "channel.sendall(b'{\"cmd\": \"NODE_HANDLE_ACK\"}\\n')\n"
      "for line in reader:\n"
      "    message = json.loads(line)\n"
      "    channel.sendall((json.dumps({'received': message, 'fd': fd, 'mode': mode}) + "
      "'\\n').encode())\n"
      "print('channel closed')\n";
  auto child = spawn(io, "python3", {"-c", script}, options);
  ASSERT_NE(child.ipc(), nullptr);
  EXPECT_EQ(child.stdio(3), nullptr);
  std::vector<nlohmann::json> replies;
  bool disconnected = false;
  child.ipc()->on_message([&](const nlohmann::json& m) {
    replies.push_back(m);
    if (replies.size() == 2) child.ipc()->disconnect();
  });
  child.ipc()->on_disconnect([&] { disconnected = true; });
  EXPECT_TRUE(child.ipc()->send({{"hello", "world"}}));
  EXPECT_TRUE(child.ipc()->send("ready"));
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome) << "replies: " << replies.size();
  EXPECT_EQ(outcome->err, "");
  ASSERT_EQ(replies.size(), 2U);  // the NODE_ internal message was not delivered
  EXPECT_EQ(replies[0],
            (nlohmann::json{{"received", {{"hello", "world"}}}, {"fd", 3}, {"mode", "json"}}));
  EXPECT_EQ(replies[1]["received"], "ready");
  EXPECT_TRUE(disconnected);
  EXPECT_EQ(outcome->out, "channel closed\n");  // our disconnect was its EOF
  EXPECT_EQ(outcome->exit.code, 0);
}

TEST(ProcessSpawnTest, IpcRoundTripWithANodeChild) {
  if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "node is not installed";
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::ipc()};
  // The classic child_process.fork() example, unchanged.
  auto child = spawn(io, "/usr/bin/node",
                     {"-e",
                      "process.on('message', (m) => process.send({received: m}));"
                      "process.on('disconnect', () => console.log('disconnected'));"},
                     options);
  std::vector<nlohmann::json> replies;
  child.ipc()->on_message([&](const nlohmann::json& m) {
    replies.push_back(m);
    if (replies.size() == 2) child.ipc()->disconnect();
  });
  EXPECT_TRUE(child.ipc()->send({{"hello", "node"}}));
  EXPECT_TRUE(child.ipc()->send(nlohmann::json::array({1, "two", nullptr})));
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->err, "");
  ASSERT_EQ(replies.size(), 2U);
  EXPECT_EQ(replies[0], (nlohmann::json{{"received", {{"hello", "node"}}}}));
  EXPECT_EQ(replies[1], (nlohmann::json{{"received", nlohmann::json::array({1, "two", nullptr})}}));
  EXPECT_EQ(outcome->out, "disconnected\n");  // our disconnect is its 'disconnect'; it exits
  EXPECT_EQ(outcome->exit.code, 0);
}

TEST(ProcessSpawnTest, InheritedChannelVariablesDoNotLeakIntoChildren) {
  ASSERT_EQ(::setenv("NODE_CHANNEL_FD", "7", 1), 0);
  asio::io_context io;
  auto child = spawn(io, "/usr/bin/env");
  ::unsetenv("NODE_CHANNEL_FD");
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out.find("NODE_CHANNEL_FD"), std::string::npos);
}

TEST(ProcessSpawnTest, IgnoreGivesDevNullAndNothingBeyondFd2) {
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::ignore(),
                   StdioSpec::ignore()};
  auto child = spawn(io, "/bin/sh",
                     {"-c",
                      "readlink /proc/self/fd/0; cat; readlink /proc/$$/fd/2; "
                      "test -e /proc/$$/fd/3 || echo no fd 3"},
                     options);
  EXPECT_EQ(child.stdin_pipe(), nullptr);
  EXPECT_EQ(child.stderr_pipe(), nullptr);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "/dev/null\n/dev/null\nno fd 3\n");
}

TEST(ProcessSpawnTest, InheritSharesOurDescriptor) {
  // Our fd 2 is the test runner's stderr; the child prints what its fd 2 is instead of
  // writing to it.
  struct stat ours {};
  ASSERT_EQ(::fstat(2, &ours), 0);
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::inherit()};
  auto child = spawn(io, "python3", {"-c", "import os; s = os.fstat(2); print(s.st_dev, s.st_ino)"},
                     options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, std::to_string(ours.st_dev) + " " + std::to_string(ours.st_ino) + "\n");
}

TEST(ProcessSpawnTest, PassesAnFdAtTheChosenNumber) {
  auto [read_end, write_end] = forkd::common::make_pipe();
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::ignore(),
                   StdioSpec::pass(write_end.get())};
  auto child = spawn(io, "/bin/sh", {"-c", "echo through four >&4"}, options);
  write_end.reset();  // the child holds the only write end now
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->exit.code, 0) << outcome->err;
  std::string got(64, '\0');
  const ssize_t n = ::read(read_end.get(), got.data(), got.size());
  ASSERT_GT(n, 0);
  got.resize(static_cast<std::size_t>(n));
  EXPECT_EQ(got, "through four\n");
}

TEST(ProcessSpawnTest, PipeBeyondFd2IsDuplex) {
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::pipe()};
  auto child = spawn(io, "/bin/sh", {"-c", "read line <&3; echo \"got $line\" >&3"}, options);
  ASSERT_NE(child.stdio(3), nullptr);
  const std::string question = "question\n";
  asio::write(*child.stdio(3), asio::buffer(question));
  auto reply = std::make_shared<std::string>();
  auto eof = std::make_shared<bool>(false);
  read_all(*child.stdio(3), reply, eof);
  ASSERT_TRUE(run_until(io, [&] { return *eof; }));
  EXPECT_EQ(*reply, "got question\n");
}

TEST(ProcessSpawnTest, DetachedChildLeadsANewSession) {
  asio::io_context io;
  SpawnOptions options;
  options.stdio = {StdioSpec::ignore(), StdioSpec::ignore(), StdioSpec::ignore()};
  options.detached = true;
  auto detached = spawn(io, "/bin/sleep", {"30"}, options);
  EXPECT_EQ(::getsid(detached.pid()), detached.pid());
  EXPECT_EQ(::getpgid(detached.pid()), detached.pid());
  options.detached = false;
  auto attached = spawn(io, "/bin/sleep", {"30"}, options);
  EXPECT_EQ(::getsid(attached.pid()), ::getsid(0));
}

TEST(ProcessSpawnTest, ChildGetsOnlyTheFdsItWasGiven) {
  // Descriptors of ours without close-on-exec, which a naive fork/exec would leak.
  UniqueFd leaky_file(::open("/dev/null", O_RDONLY));
  ASSERT_TRUE(leaky_file);
  int raw[2];
  ASSERT_EQ(::pipe(raw), 0);
  UniqueFd leaky_read(raw[0]);
  UniqueFd leaky_write(raw[1]);
  asio::io_context io;
  auto plain = spawn(io, "python3", {"-c", kListFds});
  const auto outcome = collect(io, plain);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "0 1 2\n");

  SpawnOptions options;
  options.stdio = {StdioSpec::pipe(), StdioSpec::pipe(),   StdioSpec::pipe(),
                   StdioSpec::ipc(),  StdioSpec::ignore(), StdioSpec::pass(leaky_file.get())};
  auto asked = spawn(io, "python3", {"-c", kListFds}, options);
  asked.stdin_pipe()->close();
  const auto asked_outcome = collect(io, asked);
  ASSERT_TRUE(asked_outcome);
  EXPECT_EQ(asked_outcome->out, "0 1 2 3 5\n");
}

TEST(ProcessSpawnTest, DestroyingTheChildProcessKillsAndReapsIt) {
  asio::io_context io;
  pid_t pid = -1;
  {
    auto child = spawn(io, "/bin/sleep", {"30"});
    pid = child.pid();
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_TRUE(pid_is_gone(pid));  // killed and reaped: no zombie
}

TEST(ProcessSpawnTest, MovedChildProcessStillOwnsItsChild) {
  asio::io_context io;
  std::optional<ChildProcess> holder;
  {
    auto child = spawn(io, "/bin/sh", {"-c", "exit 5"});
    holder.emplace(std::move(child));
  }
  std::optional<ExitStatus> exit;
  holder->async_wait([&](const ExitStatus& e) { exit = e; });
  ASSERT_TRUE(run_until(io, [&] { return exit.has_value(); }));
  EXPECT_EQ(exit->code, 5);
  const pid_t pid = holder->pid();
  holder.reset();
  EXPECT_TRUE(pid_is_gone(pid));
}

TEST(ProcessSpawnTest, DisownedChildLivesOnAndIsReapedByTheLoop) {
  asio::io_context io;
  auto [read_end, write_end] = forkd::common::make_pipe();
  SpawnOptions options;
  options.stdio = {StdioSpec::pass(read_end.get()), StdioSpec::ignore(), StdioSpec::ignore()};
  pid_t pid = -1;
  {
    // It waits for a line on its stdin, so it is still running when its ChildProcess goes.
    auto child = spawn(io, "/bin/sh", {"-c", "read line"}, options);
    pid = child.pid();
    child.disown();
  }
  read_end.reset();
  ASSERT_EQ(::kill(pid, 0), 0) << "the disowned child was killed";
  ASSERT_EQ(::write(write_end.get(), "go\n", 3), 3);
  EXPECT_TRUE(run_until(io, [&] { return pid_is_gone(pid); }));
}

TEST(ProcessSpawnTest, DisownedChildOutlivesTheLoopToo) {
  pid_t pid = -1;
  {
    asio::io_context io;
    auto child = spawn(io, "/bin/sleep", {"30"});
    pid = child.pid();
    child.disown();
  }
  // Still running: disowned means never killed by us. Nobody watches it any more; clean up.
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
}

// True once `pid` has exited (gone, or a zombie its new parent has not reaped yet).
bool has_exited(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto paren = line.rfind(')');
  return paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z';
}

TEST(ProcessSpawnTest, DieWithParentTakesTheChildDownWithUs) {
  auto [read_end, write_end] = forkd::common::make_pipe();
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    // A parent of its own that spawns, reports the pid, and dies without cleaning up.
    asio::io_context io;
    SpawnOptions options;
    options.stdio = {StdioSpec::ignore(), StdioSpec::ignore(), StdioSpec::ignore()};
    options.die_with_parent = true;
    auto child = spawn(io, "/bin/sleep", {"30"}, options);
    const pid_t pid = child.pid();
    child.disown();
    [[maybe_unused]] const ssize_t n = ::write(write_end.get(), &pid, sizeof(pid));
    ::_exit(0);
  }
  write_end.reset();
  PidHandle parent_handle(parent);
  pid_t grandchild = -1;
  ASSERT_EQ(::read(read_end.get(), &grandchild, sizeof(grandchild)),
            static_cast<ssize_t>(sizeof(grandchild)));
  ASSERT_TRUE(parent_handle.reap_within(kPatience));
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (!has_exited(grandchild) && std::chrono::steady_clock::now() < deadline) {
    ::usleep(10'000);  // polling a process we cannot wait for: it is not our child
  }
  EXPECT_TRUE(has_exited(grandchild));
  if (!has_exited(grandchild)) ::kill(grandchild, SIGKILL);
}

TEST(ProcessSpawnTest, DropsTheUserWhenAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to change user";
  asio::io_context io;
  SpawnOptions options;
  options.uid = 65534;
  options.gid = 65534;
  auto child = spawn(io, "/bin/sh", {"-c", "id -u; id -g"}, options);
  const auto outcome = collect(io, child);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->out, "65534\n65534\n");
}

TEST(ProcessExitWatcherTest, ReapsThroughPidfd) {
  asio::io_context io;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(7);
  PidHandle handle(pid);
  EXPECT_GE(handle.pidfd(), 0);
  auto record = std::make_shared<std::optional<ExitStatus>>();
  std::optional<ExitStatus> seen;
  auto watcher = ExitWatcher::start(io, std::move(handle), record);
  watcher->add_handler([&](const ExitStatus& e) { seen = e; });
  watcher.reset();  // it keeps itself alive while it waits
  ASSERT_TRUE(run_until(io, [&] { return seen.has_value(); }));
  EXPECT_EQ(seen->code, 7);
  EXPECT_EQ((*record)->code, 7);
  EXPECT_TRUE(pid_is_gone(pid));
}

TEST(ProcessExitWatcherTest, FallsBackToPollingWithoutPidfd) {
  asio::io_context io;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::usleep(100'000);  // exits while the watcher is already polling
    ::_exit(9);
  }
  PidHandle handle(pid, PidHandle::Wait::poll);
  EXPECT_EQ(handle.pidfd(), -1);
  auto record = std::make_shared<std::optional<ExitStatus>>();
  std::optional<ExitStatus> seen;
  auto watcher = ExitWatcher::start(io, std::move(handle), record);
  watcher->add_handler([&](const ExitStatus& e) { seen = e; });
  watcher.reset();
  ASSERT_TRUE(run_until(io, [&] { return seen.has_value(); }));
  EXPECT_EQ(seen->code, 9);
  EXPECT_TRUE(pid_is_gone(pid));
}

TEST(ProcessExitWatcherTest, PidHandleKillsAndReapsOnDestruction) {
  for (const auto wait : {PidHandle::Wait::pidfd, PidHandle::Wait::poll}) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    {
      PidHandle handle(pid, wait);
      EXPECT_FALSE(handle.try_reap());
    }
    EXPECT_TRUE(pid_is_gone(pid));
  }
}

TEST(ProcessExitWatcherTest, SignalledAfterReapIsRefused) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(0);
  PidHandle handle(pid);
  const auto exit = handle.reap_within(kPatience);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->code, 0);
  EXPECT_EQ(handle.send_signal(SIGTERM), std::make_error_code(std::errc::no_such_process));
}

}  // namespace
