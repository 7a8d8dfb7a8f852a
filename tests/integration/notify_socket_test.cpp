// A worker's NOTIFY_SOCKET against another local user: abstract sockets have no permissions, so
// the names must be unguessable (nobody binds them first) and datagrams from strangers are
// dropped with a bounded number of log lines. The attacker runs as a second uid.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <regex>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

const std::string kPython = "/usr/bin/python3";

// A `ready: notify` worker as systemd units write them: systemd-notify from the worker's shell.
std::string notify_worker_config(const std::string& systemd_notify, const std::string& timeout) {
  return "workers: 1\nrestart: {delay: 100ms, max_delay: 500ms}\nworker:\n  shell: '" +
         systemd_notify + " --ready; exec " + test_worker_bin() +
         " --serve --never-ready'\n  ready: notify\n  ready_timeout: " + timeout + "\n";
}

// The hostile user's script (tests/fixtures/hostile_user.py) in the background, as `uid`.
void start_hostile_user(ForkdProcess& process, TempDir& dir, uid_t uid,
                        std::vector<std::string> args) {
  ForkdOptions options;
  options.binary = kPython;
  options.use_config_flag = false;
  options.extra_args = {fixture("hostile_user.py")};
  options.extra_args.insert(options.extra_args.end(), args.begin(), args.end());
  options.as_user = Credentials{uid, uid};
  process.start(dir, options);
}

// NOTIFY_SOCKET of a running process ("" when unreadable).
std::string notify_socket_of(pid_t pid) {
  const std::string environ = read_text("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = std::string("NOTIFY_SOCKET=");
  for (std::size_t at = 0; at < environ.size();) {
    const std::size_t end = std::min(environ.find('\0', at), environ.size());
    const std::string entry = environ.substr(at, end - at);
    if (entry.rfind(key, 0) == 0) return entry.substr(key.size());
    at = end + 1;
  }
  return "";
}

TEST(NotifySocketTest, NamesAnotherUserBindsFirstDoNotKeepAWorkerFromGettingReady) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  const std::string systemd_notify = find_tool("systemd-notify").value_or("");
  ASSERT_FALSE(systemd_notify.empty()) << "systemd-notify comes with Debian's systemd package";
  // Abstract names are per network namespace: the squatter sees this forkd's only.
  const auto net = private_network_when_root();
  Cluster c;
  c.start(notify_worker_config(systemd_notify, "3s"));
  const std::size_t from = c.wait_all_ready(1);

  // The names the next workers would have had when they were "@forkd-<master pid>-<serial>".
  ForkdProcess squatter;
  start_hostile_user(squatter, c.dir, spare_uid(),
                     {"squat-notify", std::to_string(c.forkd.pid()), "256"});
  ASSERT_TRUE(squatter.wait_for_stdout("^squatting \\d+ names$", 20s)) << squatter.log();
  const pid_t first = c.forkd.children().at(0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);

  const auto ready = c.forkd.wait_for_log("worker 0 ready \\(pid (\\d+)\\)", 20s, from);
  ASSERT_TRUE(ready) << "the replacement never got ready; log:\n" << last_lines(c.forkd.log(), 20);
  const pid_t second = std::stoi((*ready)[1]);
  EXPECT_NE(second, first);
  // Its name is one nobody could have predicted: 128 random bits.
  // Read once the shell's exec is over: /proc/PID/environ is empty while the image changes.
  std::string name;
  EXPECT_TRUE(wait_until([&] { return !(name = notify_socket_of(second)).empty(); }, 10s));
  EXPECT_TRUE(std::regex_match(name, std::regex("@forkd-[0-9a-f]{32}"))) << name;
  EXPECT_EQ(c.forkd.count_log("no NOTIFY_SOCKET", from), 0U);
  EXPECT_EQ(forkctl(c, {"status"}).exit_code(), 0);
}

TEST(NotifySocketTest, ADatagramFloodFromAnotherUserIsDroppedWithFewLogLines) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  const std::string systemd_notify = find_tool("systemd-notify").value_or("");
  ASSERT_FALSE(systemd_notify.empty()) << "systemd-notify comes with Debian's systemd package";
  const auto net = private_network_when_root();
  Cluster c;
  c.start(notify_worker_config(systemd_notify, "30s"));
  const std::size_t from = c.wait_all_ready(1);

  // Anyone can read the names in /proc/net/unix and send to them, READY=1 included.
  constexpr int kDatagrams = 40000;
  ForkdProcess flooder;
  start_hostile_user(flooder, c.dir, spare_uid(), {"flood-notify", std::to_string(kDatagrams)});
  ASSERT_TRUE(flooder.wait_for_stdout("^flooding$", 20s)) << flooder.log();
  // A worker started during the flood still gets ready by its own READY=1.
  const pid_t first = c.forkd.children().at(0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 ready \\(pid", 30s, from))
      << last_lines(c.forkd.log(), 20);
  const auto sent = flooder.wait_for_stdout("^sent (\\d+)$", 150s);
  ASSERT_TRUE(sent) << flooder.stdout_text();
  EXPECT_GE(std::stoi((*sent)[1]), kDatagrams);
  EXPECT_EQ(forkctl(c, {"status"}).exit_code(), 0);

  // A burst of warnings and about one a second after, not one per datagram.
  const std::size_t warnings = c.forkd.count_log("notify message from pid \\d+ ignored");
  std::printf("[ figures  ] %d datagrams -> %zu warning lines while flooding\n", kDatagrams,
              warnings);
  EXPECT_GE(warnings, 1U);
  EXPECT_LE(warnings, 80U) << "one line per datagram is the flood the limit is for";
  // What was left out is said, at the latest when the worker goes.
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  ASSERT_TRUE(c.forkd.wait_exit(30s));
  EXPECT_GE(c.forkd.count_log("NOTIFY_SOCKET senders: \\d+ lines suppressed"), 1U)
      << last_lines(c.forkd.log(), 20);
  const std::string log = read_text(c.forkd.log_path());
  std::printf("[ figures  ] %zu summary lines, %zu log lines in all\n",
              c.forkd.count_log("lines suppressed"),
              static_cast<std::size_t>(std::count(log.begin(), log.end(), '\n')));
}

}  // namespace
