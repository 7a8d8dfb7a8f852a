// forkd under a service manager: the exact sd_notify sequence a fake NOTIFY_SOCKET receiver
// records for start, reload, failed reload, watchdog and stop; socket activation.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

// A datagram socket standing in for systemd's notification socket.
class NotifyReceiver {
 public:
  explicit NotifyReceiver(const std::string& path) : path_(path) {
    fd_ = forkd::common::UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  // The next message that is not a watchdog ping (counted separately).
  std::optional<std::string> next(std::chrono::milliseconds timeout = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char buf[4096];
      const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n <= 0) continue;
      std::string message(buf, static_cast<std::size_t>(n));
      if (message == "WATCHDOG=1") {
        ++watchdog_pings;
        continue;
      }
      return message;
    }
  }
  int watchdog_pings = 0;

 private:
  std::string path_;
  forkd::common::UniqueFd fd_;
};

TEST(ServiceManagerTest, NotifySequenceForStartReloadFailedReloadWatchdogAndStop) {
  Cluster c;
  NotifyReceiver receiver(c.dir.file("notify.sock"));
  ForkdOptions options;
  options.config_yaml = "listen:\n  - " + c.listener.address() +
                        "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\nworkers: 2\n";
  options.listen_fds = {c.listener.fd()};
  options.env = {{"NOTIFY_SOCKET", c.dir.file("notify.sock")}, {"WATCHDOG_USEC", "300000"}};
  c.forkd.start(c.dir, options);
  EXPECT_EQ(receiver.next(), "READY=1\nSTATUS=2/2 workers ready, generation 1");

  ASSERT_EQ(forkctl(c, {"reload"}, 60s).exit_code(), 0);
  auto reloading = receiver.next();
  ASSERT_TRUE(reloading);
  EXPECT_EQ(reloading->rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0U) << *reloading;
  // Every slot serving again (mid-rollout), then the reload's outcome.
  EXPECT_EQ(receiver.next(), "STATUS=2/2 workers ready, generation 2");
  EXPECT_EQ(receiver.next(), "READY=1\nSTATUS=2/2 workers ready, generation 2");

  (void)c.dir.write_file("forkd.yaml", "workers: 0\n");
  ASSERT_EQ(forkctl(c, {"reload"}, 60s).exit_code(), 1);
  reloading = receiver.next();
  ASSERT_TRUE(reloading);
  EXPECT_EQ(reloading->rfind("RELOADING=1", 0), 0U) << *reloading;
  EXPECT_EQ(receiver.next(), "READY=1\nSTATUS=2/2 workers ready, generation 2");

  // Pinged at half of WATCHDOG_USEC from the master's loop.
  ASSERT_TRUE(wait_until(
      [&] {
        (void)receiver.next(50ms);
        return receiver.watchdog_pings >= 3;
      },
      20s));

  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  EXPECT_EQ(receiver.next(), "STOPPING=1\nSTATUS=stopping");
  ASSERT_TRUE(c.forkd.wait_exit(30s));
}

TEST(ServiceManagerTest, HotUpgradeTellsTheServiceManagerTheNewMainPid) {
  Cluster c;
  NotifyReceiver receiver(c.dir.file("notify.sock"));
  ForkdOptions options;
  options.config_yaml = "listen:\n  - " + c.listener.address() +
                        "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\nworkers: 1\n";
  options.listen_fds = {c.listener.fd()};
  options.env = {{"NOTIFY_SOCKET", c.dir.file("notify.sock")}};
  c.forkd.start(c.dir, options);
  ASSERT_TRUE(receiver.next());
  const auto handed = c.forkd.hot_upgrade();
  ASSERT_TRUE(handed) << c.forkd.log();
  // The new master's READY=1 (systemd drops it under NotifyAccess=main: not yet the main
  // process), then the old master names it the main process.
  EXPECT_EQ(receiver.next(), "READY=1\nSTATUS=1/1 workers ready, generation 1");
  EXPECT_EQ(receiver.next(),
            "MAINPID=" + (*handed)[1] + "\nSTATUS=handed over to pid " + (*handed)[1]);
}

TEST(ServiceManagerTest, ServesOnTheSocketSystemdSocketActivatePasses) {
  const std::string activate = "/usr/bin/systemd-socket-activate";
  ASSERT_EQ(::access(activate.c_str(), X_OK), 0)
      << "systemd-socket-activate comes with Debian's systemd package";
  const std::uint16_t port = free_tcp_port();
  TempDir dir;
  const std::string config = dir.write_file(
      "forkd.yaml", "workers: 2\nlisten:\n  - address: 127.0.0.1:" + std::to_string(port) +
                        "\n    name: web\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n");
  ForkdProcess forkd;
  ForkdOptions options;
  options.binary = activate;
  options.use_config_flag = false;
  options.extra_args = {
      "-l", "127.0.0.1:" + std::to_string(port), "--fdname=web", forkd_bin(), "-c", config};
  forkd.start(dir, options);
  // systemd-socket-activate binds, then execs forkd (same pid) when the first connection comes.
  ASSERT_TRUE(forkd.wait_for_log("Listening on 127.0.0.1:" + std::to_string(port), 20s))
      << forkd.log();
  auto r = http_get("127.0.0.1", port, "/", 30s);
  ASSERT_TRUE(r) << forkd.log();
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(forkd.wait_for_log(
      "listening on 127.0.0.1:" + std::to_string(port) + " \\(web, passed in with LISTEN_FDS\\)",
      10s));
}

TEST(ServiceManagerTest, PassedSocketMatchingNoEntryIsAnError) {
  TempDir dir;
  Listener stray = Listener::tcp_v4();
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml =
      "workers: 1\nlisten: [127.0.0.1:1]\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n";
  options.listen_fds = {stray.fd()};
  forkd.start(dir, options);
  auto status = forkd.wait_exit(20s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_NE(forkd.log().find("passed socket " + stray.address() + " matches no listen entry"),
            std::string::npos)
      << forkd.log();
}

}  // namespace

namespace {

using namespace forkd::test;

TEST(PidfileTest, SecondInstanceIsRefusedAndTheFileFollowsAHotUpgrade) {
  Cluster c;
  const std::string pidfile = c.dir.file("forkd.pid");
  c.start("workers: 1\npidfile: " + pidfile + "\n");
  auto from = c.wait_all_ready(1);
  EXPECT_EQ(read_text(pidfile), std::to_string(c.forkd.pid()) + "\n");
  // A second forkd on the same pidfile (another port, another control socket) is refused.
  TempDir other;
  const auto config =
      other.write_file("c.yaml", "workers: 1\nlisten: [127.0.0.1:1]\npidfile: " + pidfile +
                                     "\ncontrol: {socket: " + other.file("s.sock") + "}\n");
  auto second = run_command({forkd_bin(), "-c", config}, 20s);
  EXPECT_EQ(second.exit_code(), 1);
  EXPECT_NE(second.err.find("already running (pid " + std::to_string(c.forkd.pid()) + ")"),
            std::string::npos)
      << second.err;
  // After a hot upgrade the file names the new master, and the lock went with it.
  const auto handed = c.forkd.hot_upgrade(from);
  ASSERT_TRUE(handed) << c.forkd.log();
  const pid_t successor = std::stoi((*handed)[1]);
  ASSERT_TRUE(c.forkd.wait_exit(30s));
  EXPECT_EQ(read_text(pidfile), std::to_string(successor) + "\n");
  auto third = run_command({forkd_bin(), "-c", config}, 20s);
  EXPECT_EQ(third.exit_code(), 1);
  EXPECT_NE(third.err.find("already running (pid " + std::to_string(successor) + ")"),
            std::string::npos)
      << third.err;
  ::kill(successor, SIGTERM);
  EXPECT_TRUE(wait_until([&] { return !process_alive(successor); }, 30s));
  EXPECT_FALSE(std::filesystem::exists(pidfile)) << "a clean stop removes the pidfile";
}

TEST(PidfileTest, StalePidfileOfADeadMasterIsTakenOver) {
  Cluster c;
  const std::string pidfile = c.dir.write_file("forkd.pid", "999999\n");
  c.start("workers: 1\npidfile: " + pidfile + "\n");
  c.wait_all_ready(1);
  EXPECT_EQ(read_text(pidfile), std::to_string(c.forkd.pid()) + "\n");
}

}  // namespace
