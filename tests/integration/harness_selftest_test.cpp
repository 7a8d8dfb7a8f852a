// Self-tests of the integration harness against stand-ins (/bin/sh scripts and a tiny in-process
// HTTP server), so that a forkd test failing means forkd is wrong, not the harness.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/fd.hpp"
#include "tests/integration/harness.hpp"

namespace {

using namespace std::chrono_literals;
using forkd::common::UniqueFd;
using forkd::test::ForkdOptions;
using forkd::test::ForkdProcess;
using forkd::test::HttpConnection;
using forkd::test::Listener;
using forkd::test::LoadGenerator;
using forkd::test::LoadOptions;
using forkd::test::TempDir;
using Clock = std::chrono::steady_clock;

bool gone(pid_t pid) {
  return ::kill(pid, 0) == -1 && errno == ESRCH;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A /bin/sh stand-in for forkd: no "-c FILE", the script as argument.
ForkdOptions shell(const std::string& script) {
  ForkdOptions options;
  options.binary = "/bin/sh";
  options.use_config_flag = false;
  options.extra_args = {"-c", script};
  return options;
}

// Minimal HTTP/1.1 server, one thread per connection. Routes:
//   /          200 "hello" (Content-Length), X-Test: conn-<n>
//   /chunked   200, chunked body "hello chunked world"
//   /eof       200, no length, body until close
//   /close     200 with Connection: close, then closes
//   /bye       200 keep-alive, then closes the connection anyway (an idle close)
//   /continue  100 Continue, then 200 "after continue"
//   /hang      never answers
//   other      404
class TinyHttpServer {
 public:
  explicit TinyHttpServer(Listener listener) : listener_(std::move(listener)) {
    accept_thread_ = std::jthread([this](const std::stop_token& stop) { accept_loop(stop); });
  }
  TinyHttpServer(const TinyHttpServer&) = delete;
  TinyHttpServer& operator=(const TinyHttpServer&) = delete;
  TinyHttpServer(TinyHttpServer&&) = delete;
  TinyHttpServer& operator=(TinyHttpServer&&) = delete;
  ~TinyHttpServer() { stop(); }

  // Stops accepting, closes the listening socket and cuts every open connection.
  void stop() {
    accept_thread_.request_stop();
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.close();
    std::vector<std::jthread> threads;
    {
      const std::lock_guard lock(mutex_);
      for (const int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
      threads = std::move(threads_);
    }
    for (auto& thread : threads) thread.request_stop();
  }

  [[nodiscard]] std::size_t connections() const { return connections_.load(); }
  [[nodiscard]] std::size_t requests() const { return requests_.load(); }

 private:
  void accept_loop(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      pollfd pfd{listener_.fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) continue;
      UniqueFd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd) continue;
      const std::size_t number = ++connections_;
      const std::lock_guard lock(mutex_);
      open_fds_.push_back(fd.get());
      threads_.emplace_back([this, number, conn = std::move(fd)](const std::stop_token& token) {
        serve(token, conn.get(), number);
        const std::lock_guard inner(mutex_);
        std::erase(open_fds_, conn.get());
      });
    }
  }

  void serve(const std::stop_token& stop, int fd, std::size_t number) {
    std::string buffer;
    char chunk[4096];
    while (!stop.stop_requested()) {
      const auto end = buffer.find("\r\n\r\n");
      if (end == std::string::npos) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 20) <= 0) continue;
        const ssize_t got = ::recv(fd, chunk, sizeof(chunk), 0);
        if (got <= 0) return;
        buffer.append(chunk, static_cast<std::size_t>(got));
        continue;
      }
      const std::string head = buffer.substr(0, end);
      buffer.erase(0, end + 4);
      ++requests_;
      const auto path_start = head.find(' ') + 1;
      const std::string path = head.substr(path_start, head.find(' ', path_start) - path_start);
      const std::string tag = "X-Test: conn-" + std::to_string(number) + "\r\n";
      if (path == "/") {
        send_text(fd, "HTTP/1.1 200 OK\r\n" + tag + "Content-Length: 5\r\n\r\nhello");
      } else if (path == "/chunked") {
        send_text(fd, "HTTP/1.1 200 OK\r\n" + tag +
                          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\ne\r\n chunked world\r\n"
                          "0\r\nX-Trailer: t\r\n\r\n");
      } else if (path == "/eof") {
        send_text(fd, "HTTP/1.1 200 OK\r\n" + tag + "Connection: close\r\n\r\nuntil eof");
        return;
      } else if (path == "/close") {
        send_text(
            fd, "HTTP/1.1 200 OK\r\n" + tag + "Connection: close\r\nContent-Length: 3\r\n\r\nbye");
        return;
      } else if (path == "/bye") {
        send_text(fd, "HTTP/1.1 200 OK\r\n" + tag + "Content-Length: 3\r\n\r\nbye");
        return;
      } else if (path == "/continue") {
        send_text(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + tag +
                          "Content-Length: 14\r\n\r\nafter continue");
      } else if (path == "/hang") {
        while (!stop.stop_requested()) {
          pollfd pfd{fd, POLLIN, 0};
          if (::poll(&pfd, 1, 20) > 0 && ::recv(fd, chunk, sizeof(chunk), 0) <= 0) return;
        }
        return;
      } else {
        send_text(fd, "HTTP/1.1 404 Not Found\r\n" + tag + "Content-Length: 0\r\n\r\n");
      }
    }
  }

  static void send_text(int fd, const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t sent = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
      if (sent <= 0) return;
      done += static_cast<std::size_t>(sent);
    }
  }

  Listener listener_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> requests_{0};
  std::mutex mutex_;
  std::vector<int> open_fds_;
  std::vector<std::jthread> threads_;
  std::jthread accept_thread_;
};

// ---- TempDir ----------------------------------------------------------------------------------

TEST(HarnessTempDir, CreatesUnderTmpdirAndRemovesEverything) {
  const TempDir outer;
  const char* saved = std::getenv("TMPDIR");
  const std::string saved_value = saved != nullptr ? saved : "";
  ASSERT_EQ(::setenv("TMPDIR", outer.path().c_str(), 1), 0);
  std::string path;
  {
    const TempDir dir;
    if (saved != nullptr) {
      ::setenv("TMPDIR", saved_value.c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
    path = dir.path();
    EXPECT_EQ(path.rfind(outer.path() + "/", 0), 0u) << path;
    EXPECT_TRUE(std::filesystem::is_directory(path));
    const auto file = dir.write_file("sub/dir/a.txt", "content\n");
    EXPECT_EQ(file, path + "/sub/dir/a.txt");
    EXPECT_EQ(read_file(file), "content\n");
    EXPECT_EQ(dir.file("x"), path + "/x");
    // A directory the test made read-only must not survive either.
    ASSERT_EQ(::chmod((path + "/sub/dir").c_str(), 0500), 0);
    const auto moved_from = std::make_unique<TempDir>();
    const TempDir moved(std::move(*moved_from));
    EXPECT_TRUE(moved_from->path().empty());
    EXPECT_TRUE(std::filesystem::is_directory(moved.path()));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(outer.path()));
}

// ---- Listener ---------------------------------------------------------------------------------

void expect_connectable(const Listener& listener) {
  const auto endpoint = forkd::test::parse_endpoint(listener.address());
  EXPECT_EQ(endpoint.port, listener.port());
  HttpConnection connection(listener.host(), listener.port(), 5s);
  EXPECT_TRUE(connection.is_open()) << connection.error();
}

TEST(HarnessListener, TcpV4HasPortAndIsConnectable) {
  const auto listener = Listener::tcp_v4();
  EXPECT_NE(listener.port(), 0);
  EXPECT_GE(listener.fd(), 0);
  EXPECT_EQ(listener.address(), "127.0.0.1:" + std::to_string(listener.port()));
  expect_connectable(listener);
}

TEST(HarnessListener, TcpV6HasPortAndIsConnectable) {
  if (!forkd::test::ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
  const auto listener = Listener::tcp_v6();
  EXPECT_NE(listener.port(), 0);
  EXPECT_EQ(listener.address(), "[::1]:" + std::to_string(listener.port()));
  expect_connectable(listener);
}

TEST(HarnessListener, UnixSocketIsConnectable) {
  const TempDir dir;
  const auto listener = Listener::unix_socket(dir.file("s.sock"));
  EXPECT_EQ(listener.address(), "unix:" + dir.file("s.sock"));
  expect_connectable(listener);
}

TEST(HarnessListener, ClosedListenerRefuses) {
  auto listener = Listener::tcp_v4();
  const auto port = listener.port();
  listener.close();
  HttpConnection connection("127.0.0.1", port, 5s);
  EXPECT_FALSE(connection.is_open());
  EXPECT_NE(connection.error().find("refused"), std::string::npos) << connection.error();
}

TEST(HarnessEndpoint, ParsesForkdAddressSyntax) {
  const auto v4 = forkd::test::parse_endpoint("127.0.0.1:8080");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 8080);
  const auto v6 = forkd::test::parse_endpoint("[::1]:65535");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 65535);
  EXPECT_EQ(forkd::test::parse_endpoint("unix:/a/b").host, "unix:/a/b");
  EXPECT_THROW((void)forkd::test::parse_endpoint("127.0.0.1"), std::invalid_argument);
  EXPECT_THROW((void)forkd::test::parse_endpoint("127.0.0.1:65536"), std::invalid_argument);
}

// ---- run_command ------------------------------------------------------------------------------

TEST(HarnessRunCommand, CapturesExitCodeStdoutAndStderr) {
  const auto result =
      forkd::test::run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 10s);
  EXPECT_FALSE(result.timed_out);
  EXPECT_TRUE(result.exited());
  EXPECT_EQ(result.exit_code(), 3);
  EXPECT_EQ(result.out, "out\n");
  EXPECT_EQ(result.err, "err\n");
}

TEST(HarnessRunCommand, PassesEnvironmentAndCapturesLargeOutput) {
  const auto env =
      forkd::test::run_command({"/bin/sh", "-c", "printf %s \"$FOO\""}, 10s, {{"FOO", "bar baz"}});
  EXPECT_EQ(env.exit_code(), 0);
  EXPECT_EQ(env.out, "bar baz");
  const auto big = forkd::test::run_command(
      {"/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\000' x; echo done >&2"}, 10s);
  EXPECT_EQ(big.exit_code(), 0);
  EXPECT_EQ(big.out, std::string(300000, 'x'));
  EXPECT_EQ(big.err, "done\n");
}

TEST(HarnessRunCommand, TimeoutKillsTheWholeGroup) {
  const auto started = Clock::now();
  const auto result =
      forkd::test::run_command({"/bin/sh", "-c", "sleep 1000 & echo $!; wait"}, 300ms);
  const auto elapsed = Clock::now() - started;
  EXPECT_TRUE(result.timed_out);
  EXPECT_FALSE(result.exited());
  EXPECT_EQ(result.term_signal(), SIGKILL);
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 5s);
  const pid_t background = std::stoi(result.out);
  EXPECT_TRUE(gone(background)) << "background sleep " << background << " survived";
}

TEST(HarnessRunCommand, MissingProgramThrows) {
  try {
    (void)forkd::test::run_command({"/nonexistent/program"}, 5s);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT) << e.what();
  }
}

TEST(HarnessRunCommand, RunsAsAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const auto result = forkd::test::run_command({"/bin/sh", "-c", "id -u; id -g"}, 10s, {},
                                               forkd::test::Credentials{65534, 65534});
  EXPECT_EQ(result.exit_code(), 0) << result.err;
  EXPECT_EQ(result.out, "65534\n65534\n");
}

TEST(HarnessStatus, DescribesAndTails) {
  EXPECT_EQ(forkd::test::describe_status(3 << 8), "exited 3");
  EXPECT_EQ(forkd::test::last_lines("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(forkd::test::last_lines("a\nb\nc", 2), "b\nc");
  EXPECT_EQ(forkd::test::last_lines("a\nb\n", 5), "a\nb\n");
  EXPECT_EQ(forkd::test::last_lines("", 5), "");
}

// ---- ForkdProcess with a /bin/sh stand-in ------------------------------------------------------

TEST(HarnessForkdProcess, PassesSocketsAndWaitsForLinesWrittenLater) {
  TempDir dir;
  const auto first = Listener::tcp_v4();
  const auto second = Listener::unix_socket(dir.file("admin.sock"));
  // An fd the test leaks without CLOEXEC must not reach the child.
  const UniqueFd leaked(::dup(first.fd()));
  ASSERT_TRUE(leaked.valid());
  auto options = shell(
      "echo \"boot pid=$$ fds=$LISTEN_FDS lpid=$LISTEN_PID names=$LISTEN_FDNAMES"
      " journal=${JOURNAL_STREAM:-unset} extra=$EXTRA\" >&2\n"
      "echo to stdout\n"
      "while [ ! -e \"$GO\" ]; do sleep 0.01; done\n"
      "echo 'worker 1 started' >&2\n"
      "echo 'worker 22 started' >&2\n"
      "printf 'partial line' >&2\n"
      "exec sleep 1000\n");
  options.listen_fds = {first.fd(), second.fd()};
  options.listen_fdnames = "http:admin";
  options.env = {{"GO", dir.file("go")}, {"EXTRA", "x y"}};
  ASSERT_EQ(::setenv("JOURNAL_STREAM", "8:123", 1), 0);
  ForkdProcess process;
  process.start(dir, options);
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_EQ(::getpgid(process.pid()), process.pid());

  const auto boot = process.wait_for_log(
      R"(^boot pid=(\d+) fds=(\d+) lpid=(\d+) names=(\S*) journal=(\S+) extra=(.*)$)", 10s);
  ASSERT_TRUE(boot) << process.log();
  EXPECT_EQ((*boot)[1], std::to_string(process.pid()));
  EXPECT_EQ((*boot)[2], "2");
  EXPECT_EQ((*boot)[3], std::to_string(process.pid()));
  EXPECT_EQ((*boot)[4], "http:admin");
  EXPECT_EQ((*boot)[5], "unset");
  EXPECT_EQ((*boot)[6], "x y");
  ASSERT_TRUE(process.wait_for_stdout("^to stdout$", 10s));
  EXPECT_EQ(process.stdout_text(), "to stdout\n");

  // The later lines are not there until the test lets the script go on.
  EXPECT_EQ(process.count_log(R"(worker \d+ started)"), 0u);
  dir.write_file("go", "");
  const auto one = process.wait_for_log(R"(worker (\d+) started)", 10s, boot->end_offset);
  ASSERT_TRUE(one) << process.log();
  EXPECT_EQ((*one)[1], "1");
  EXPECT_EQ(one->line, "worker 1 started");
  const auto two = process.wait_for_log(R"(worker (\d+) started)", 10s, one->end_offset);
  ASSERT_TRUE(two) << process.log();
  EXPECT_EQ((*two)[1], "22");
  EXPECT_EQ(process.count_log(R"(worker \d+ started)"), 2u);
  EXPECT_EQ(process.count_log(R"(worker \d+ started)", one->end_offset), 1u);
  EXPECT_FALSE(process.wait_for_log(R"(worker (\d+) started)", 100ms, two->end_offset));
  // A line still being written never matches, even though its text is in the file.
  ASSERT_TRUE(forkd::test::wait_until(
      [&] { return process.log().find("partial line") != std::string::npos; }, 10s));
  EXPECT_FALSE(process.wait_for_log("partial line", 100ms));

  // After exec sleep: exactly stdin, stdout, stderr and the two listeners at 3 and 4.
  const std::vector<std::string> expected = {
      "0 -> /dev/null",
      "1 -> " + process.stdout_path(),
      "2 -> " + process.log_path(),
      "3 -> " + forkd::test::fd_link_target(first.fd()),
      "4 -> " + forkd::test::fd_link_target(second.fd()),
  };
  EXPECT_TRUE(forkd::test::wait_until(
      [&] { return forkd::test::open_fds(process.pid()) == expected; }, 10s))
      << testing::PrintToString(forkd::test::open_fds(process.pid()));
  EXPECT_TRUE(process.running());
}

TEST(HarnessForkdProcess, ReportsExitStatusAndSignals) {
  TempDir dir;
  ForkdProcess exits;
  exits.start(dir, shell("echo bye >&2; exit 7"));
  const auto status = exits.wait_exit(10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
  EXPECT_FALSE(exits.running());
  EXPECT_FALSE(exits.signal(SIGTERM));
  EXPECT_EQ(exits.log(), "bye\n");

  ForkdProcess sleeper;
  sleeper.start(dir, shell("echo up >&2; exec sleep 1000"));
  EXPECT_NE(sleeper.log_path(), exits.log_path());  // one temp dir, separate files
  ASSERT_TRUE(sleeper.wait_for_log("^up$", 10s));
  EXPECT_TRUE(sleeper.running());
  EXPECT_FALSE(sleeper.wait_exit(50ms));
  EXPECT_TRUE(sleeper.signal(SIGTERM));
  const auto killed = sleeper.wait_exit(10s);
  ASSERT_TRUE(killed);
  EXPECT_TRUE(WIFSIGNALED(*killed));
  EXPECT_EQ(WTERMSIG(*killed), SIGTERM);
}

TEST(HarnessForkdProcess, WaitForLogGivesUpWhenNothingIsLeftToWrite) {
  TempDir dir;
  ForkdProcess process;
  process.start(dir, shell("echo 'config error' >&2; exit 78"));
  const auto started = Clock::now();
  EXPECT_FALSE(process.wait_for_log("ready", 30s));
  EXPECT_LT(Clock::now() - started, 10s);
  const auto status = process.wait_exit(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 78);
}

TEST(HarnessForkdProcess, WritesConfigAndPassesConfigFlag) {
  TempDir dir;
  const auto fake = dir.write_file("fake-forkd", "#!/bin/sh\necho \"args: $*\" >&2\n");
  ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
  ForkdOptions options;
  options.binary = fake;
  options.config_yaml = "workers: 2\n";
  options.extra_args = {"--log-level", "debug"};
  ForkdProcess process;
  process.start(dir, options);
  ASSERT_TRUE(process.wait_exit(10s));
  EXPECT_EQ(process.config_path(), dir.file("forkd.yaml"));
  EXPECT_EQ(read_file(process.config_path()), "workers: 2\n");
  EXPECT_EQ(process.log(), "args: -c " + process.config_path() + " --log-level debug\n");
}

TEST(HarnessForkdProcess, MissingBinaryThrows) {
  TempDir dir;
  ForkdProcess process;
  ForkdOptions options;
  options.binary = "/nonexistent/forkd";
  try {
    process.start(dir, options);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT) << e.what();
  }
}

TEST(HarnessForkdProcess, TeardownKillsGroupAndTrackedChildren) {
  TempDir dir;
  pid_t master = 0;
  std::vector<pid_t> workers;
  {
    ForkdProcess process;
    // One worker in the master's group, one in a session of its own (outside the group kill).
    process.start(dir, shell("sleep 1000 & setsid sleep 1000 & echo spawned >&2; wait"));
    master = process.pid();
    ASSERT_TRUE(process.wait_for_log("^spawned$", 10s));
    // Wait until the second one has really left the group (setsid runs after the fork).
    ASSERT_TRUE(forkd::test::wait_until(
        [&] {
          workers = process.children();
          return workers.size() == 2 &&
                 (::getpgid(workers[0]) != master || ::getpgid(workers[1]) != master);
        },
        10s));
    for (const pid_t worker : workers) {
      EXPECT_EQ(forkd::test::parent_pid(worker), master);
      EXPECT_TRUE(forkd::test::process_alive(worker));
    }
  }
  EXPECT_TRUE(gone(master));
  for (const pid_t worker : workers) EXPECT_TRUE(gone(worker)) << worker;
}

TEST(HarnessForkdProcess, TeardownKillsTrackedWorkersOfAKilledMaster) {
  TempDir dir;
  pid_t orphan = 0;
  {
    ForkdProcess process;
    process.start(dir, shell("setsid sleep 1000 & echo spawned >&2; wait"));
    ASSERT_TRUE(process.wait_for_log("^spawned$", 10s));
    ASSERT_TRUE(forkd::test::wait_until([&] { return process.children().size() == 1; }, 10s));
    orphan = process.children().at(0);
    EXPECT_TRUE(process.signal(SIGKILL));
    ASSERT_TRUE(process.wait_exit(10s));
    // Reparented to the test process (the harness made it a subreaper), not to PID 1.
    EXPECT_TRUE(forkd::test::wait_until(
        [&] { return forkd::test::parent_pid(orphan) == ::getpid(); }, 10s));
    EXPECT_TRUE(forkd::test::process_alive(orphan));
  }
  EXPECT_TRUE(gone(orphan)) << orphan;
}

TEST(HarnessForkdProcess, TeardownKillsUnseenGroupMembersAfterTheMasterExited) {
  TempDir dir;
  pid_t grandchild = 0;
  {
    ForkdProcess process;
    // The intermediate shell exits at once, so the grandchild is never a child of the master.
    process.start(dir, shell("sh -c 'sleep 1000 & echo \"grandchild=$!\" >&2'; exit 0"));
    const auto match = process.wait_for_log(R"(grandchild=(\d+))", 10s);
    ASSERT_TRUE(match);
    grandchild = std::stoi((*match)[1]);
    const auto status = process.wait_exit(10s);
    ASSERT_TRUE(status);
    EXPECT_EQ(WEXITSTATUS(*status), 0);
    EXPECT_TRUE(forkd::test::process_alive(grandchild));
  }
  EXPECT_TRUE(gone(grandchild)) << grandchild;
}

TEST(HarnessForkdProcess, DescendantsAreFoundThroughTheTree) {
  TempDir dir;
  ForkdProcess process;
  process.start(dir, shell("sh -c 'sleep 1000 & wait' & echo spawned >&2; wait"));
  ASSERT_TRUE(process.wait_for_log("^spawned$", 10s));
  ASSERT_TRUE(forkd::test::wait_until(
      [&] { return forkd::test::descendant_pids(process.pid()).size() == 2; }, 10s));
  EXPECT_EQ(process.children().size(), 1u);
}

// ---- /proc helpers ------------------------------------------------------------------------------

TEST(HarnessProc, SeesZombiesParentsChildrenAndFds) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  EXPECT_TRUE(forkd::test::wait_until([&] { return forkd::test::is_zombie(child); }, 10s));
  EXPECT_FALSE(forkd::test::process_alive(child));
  EXPECT_EQ(forkd::test::parent_pid(child), ::getpid());
  const auto children = forkd::test::child_pids(::getpid());
  EXPECT_NE(std::find(children.begin(), children.end(), child), children.end());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(forkd::test::is_zombie(child));
  EXPECT_FALSE(forkd::test::parent_pid(child));

  EXPECT_TRUE(forkd::test::process_alive(::getpid()));
  const auto listener = Listener::tcp_v4();
  const std::string entry =
      std::to_string(listener.fd()) + " -> " + forkd::test::fd_link_target(listener.fd());
  EXPECT_EQ(forkd::test::fd_link_target(listener.fd()).rfind("socket:[", 0), 0u);
  const auto fds = forkd::test::open_fds(::getpid());
  EXPECT_NE(std::find(fds.begin(), fds.end(), entry), fds.end());
}

TEST(HarnessWaitUntil, ReturnsAtOnceOrAfterTheTimeout) {
  EXPECT_TRUE(forkd::test::wait_until([] { return true; }, 10s));
  const auto started = Clock::now();
  int calls = 0;
  EXPECT_FALSE(forkd::test::wait_until(
      [&] {
        ++calls;
        return false;
      },
      100ms, 10ms));
  EXPECT_GE(Clock::now() - started, 100ms);
  EXPECT_GE(calls, 2);
}

// ---- HTTP -------------------------------------------------------------------------------------

TEST(HarnessHttp, GetParsesStatusHeadersAndBodies) {
  auto listener = Listener::tcp_v4();
  const auto port = listener.port();
  TinyHttpServer server(std::move(listener));
  std::string error;
  const auto hello = forkd::test::http_get("127.0.0.1", port, "/", 5s, &error);
  ASSERT_TRUE(hello) << error;
  EXPECT_EQ(hello->status, 200);
  EXPECT_EQ(hello->body, "hello");
  EXPECT_EQ(hello->header("x-test"), "conn-1");
  EXPECT_EQ(hello->headers.at("content-length"), "5");
  const auto chunked = forkd::test::http_get("127.0.0.1", port, "/chunked", 5s, &error);
  ASSERT_TRUE(chunked) << error;
  EXPECT_EQ(chunked->body, "hello chunked world");
  const auto eof = forkd::test::http_get("127.0.0.1", port, "/eof", 5s, &error);
  ASSERT_TRUE(eof) << error;
  EXPECT_EQ(eof->body, "until eof");
  const auto interim = forkd::test::http_get("127.0.0.1", port, "/continue", 5s, &error);
  ASSERT_TRUE(interim) << error;
  EXPECT_EQ(interim->status, 200);
  EXPECT_EQ(interim->body, "after continue");
  const auto missing = forkd::test::http_get("127.0.0.1", port, "/nope", 5s, &error);
  ASSERT_TRUE(missing) << error;
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(server.connections(), 5u);  // a fresh connection each time
}

TEST(HarnessHttp, GetOverUnixSocketAndIpv6) {
  const TempDir dir;
  TinyHttpServer unix_server(Listener::unix_socket(dir.file("http.sock")));
  std::string error;
  const auto over_unix = forkd::test::http_get("unix:" + dir.file("http.sock"), 0, "/", 5s, &error);
  ASSERT_TRUE(over_unix) << error;
  EXPECT_EQ(over_unix->body, "hello");
  if (!forkd::test::ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
  auto listener = Listener::tcp_v6();
  const auto port = listener.port();
  TinyHttpServer v6_server(std::move(listener));
  for (const std::string host : {"::1", "[::1]"}) {
    const auto over_v6 = forkd::test::http_get(host, port, "/", 5s, &error);
    ASSERT_TRUE(over_v6) << host << ": " << error;
    EXPECT_EQ(over_v6->body, "hello");
  }
}

TEST(HarnessHttp, GetFailsOnRefusalAndTimesOut) {
  auto closed = Listener::tcp_v4();
  const auto closed_port = closed.port();
  closed.close();
  std::string error;
  EXPECT_FALSE(forkd::test::http_get("127.0.0.1", closed_port, "/", 5s, &error));
  EXPECT_NE(error.find("refused"), std::string::npos) << error;

  auto listener = Listener::tcp_v4();
  const auto port = listener.port();
  TinyHttpServer server(std::move(listener));
  const auto started = Clock::now();
  EXPECT_FALSE(forkd::test::http_get("127.0.0.1", port, "/hang", 300ms, &error));
  const auto elapsed = Clock::now() - started;
  EXPECT_NE(error.find("timeout"), std::string::npos) << error;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 5s);
}

TEST(HarnessHttp, ConnectionKeepsAliveUntilTheServerCloses) {
  auto listener = Listener::tcp_v4();
  const auto port = listener.port();
  TinyHttpServer server(std::move(listener));
  HttpConnection connection("127.0.0.1", port);
  ASSERT_TRUE(connection.is_open()) << connection.error();
  for (int i = 0; i < 3; ++i) {
    const auto response = connection.get("/");
    ASSERT_TRUE(response) << connection.error();
    EXPECT_EQ(response->body, "hello");
  }
  const auto chunked = connection.get("/chunked");
  ASSERT_TRUE(chunked) << connection.error();
  EXPECT_EQ(chunked->body, "hello chunked world");
  const auto raw = connection.request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(raw) << connection.error();
  EXPECT_EQ(raw->header("x-test"), "conn-1");
  EXPECT_EQ(connection.completed(), 5u);
  EXPECT_EQ(server.connections(), 1u);

  const auto last = connection.get("/close");
  ASSERT_TRUE(last) << connection.error();
  EXPECT_EQ(last->body, "bye");
  EXPECT_FALSE(connection.is_open());
  EXPECT_FALSE(connection.get("/"));
  EXPECT_EQ(server.connections(), 1u);  // it did not reconnect behind our back
}

TEST(HarnessHttp, ConnectionReportsAnIdleCloseByTheServer) {
  auto listener = Listener::tcp_v4();
  const auto port = listener.port();
  TinyHttpServer server(std::move(listener));
  HttpConnection connection("127.0.0.1", port);
  ASSERT_TRUE(connection.get("/bye")) << connection.error();
  EXPECT_TRUE(connection.is_open());  // the response itself promised keep-alive
  EXPECT_TRUE(forkd::test::wait_until([&] { return connection.closed_by_peer(); }, 10s));
  EXPECT_FALSE(connection.get("/"));
  EXPECT_FALSE(connection.is_open());
  EXPECT_EQ(connection.last_failure_bytes(), 0u);
  EXPECT_FALSE(connection.error().empty());
}

// ---- LoadGenerator ----------------------------------------------------------------------------

TEST(HarnessLoad, CountsSuccessesWhileTheServerIsUp) {
  auto listener = Listener::tcp_v4();
  LoadOptions options;
  options.address = listener.address();
  options.tally_header = "x-test";
  TinyHttpServer server(std::move(listener));
  LoadGenerator load(options);
  load.start();
  EXPECT_TRUE(load.wait_for_ok(200, 20s));
  load.stop();
  EXPECT_EQ(load.failed(), 0u) << testing::PrintToString(load.failures());
  std::uint64_t tallied = 0;
  for (const auto& [value, count] : load.tally()) tallied += count;
  EXPECT_EQ(tallied, load.ok());
  EXPECT_GT(load.tally().size(), 2u);  // fresh clients: many connections
  const auto after_stop = load.ok();
  EXPECT_EQ(load.ok(), after_stop);  // the threads are joined
}

TEST(HarnessLoad, CountsFailuresWhenTheServerGoesAway) {
  auto listener = Listener::tcp_v4();
  LoadOptions options;
  options.address = listener.address();
  auto server = std::make_unique<TinyHttpServer>(std::move(listener));
  LoadGenerator load(options);
  load.start();
  ASSERT_TRUE(load.wait_for_ok(50, 20s));
  EXPECT_EQ(load.failed(), 0u);
  server.reset();  // listener closed, connections cut
  EXPECT_TRUE(forkd::test::wait_until([&] { return load.failed() >= 30; }, 20s));
  load.stop();
  const auto failures = load.failures();
  ASSERT_FALSE(failures.empty());
  EXPECT_LE(failures.size(), 20u);
  EXPECT_TRUE(std::any_of(failures.begin(), failures.end(), [](const std::string& reason) {
    return reason.find("refused") != std::string::npos;
  })) << testing::PrintToString(failures);
}

TEST(HarnessLoad, TimeoutsCountAsFailuresAndStopIsPrompt) {
  auto listener = Listener::tcp_v4();
  LoadOptions options;
  options.address = listener.address();
  options.path = "/hang";
  options.request_timeout = 200ms;
  options.keepalive_clients = 1;
  options.fresh_clients = 1;
  TinyHttpServer server(std::move(listener));
  LoadGenerator load(options);
  load.start();
  EXPECT_TRUE(forkd::test::wait_until([&] { return load.failed() >= 2; }, 20s));
  const auto started = Clock::now();
  load.stop();
  EXPECT_LT(Clock::now() - started, 2s);
  EXPECT_EQ(load.ok(), 0u);
  const auto failures = load.failures();
  ASSERT_FALSE(failures.empty());
  EXPECT_NE(failures.front().find("timeout"), std::string::npos) << failures.front();
}

TEST(HarnessLoad, NonSuccessStatusIsAFailure) {
  auto listener = Listener::tcp_v4();
  LoadOptions options;
  options.address = listener.address();
  options.path = "/missing";
  TinyHttpServer server(std::move(listener));
  LoadGenerator load(options);
  load.start();
  EXPECT_TRUE(forkd::test::wait_until([&] { return load.failed() >= 10; }, 20s));
  load.stop();
  EXPECT_EQ(load.ok(), 0u);
  EXPECT_NE(load.failures().front().find("status 404"), std::string::npos);
}

}  // namespace
