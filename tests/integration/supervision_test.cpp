// The master's core promise: N workers on shared listeners, each replaced in its slot when it
// dies, crash loops backed off, and nothing left behind when the master goes.
#include <signal.h>
#include <sys/resource.h>

#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

std::set<pid_t> pids_answering(Cluster& c, std::size_t want, std::chrono::milliseconds timeout) {
  std::set<pid_t> seen;
  (void)wait_until(
      [&] {
        if (auto r = c.get("/"); r && r->status == 200)
          seen.insert(std::stoi(r->header("x-worker-pid")));
        return seen.size() >= want;
      },
      timeout, 0ms);
  return seen;
}

TEST(SupervisionTest, NWorkersWithDistinctPidsAnswer) {
  Cluster c;
  c.start("workers: 3\n");
  c.wait_all_ready(3);
  const auto children = c.forkd.children();
  ASSERT_EQ(children.size(), 3U);
  const auto seen = pids_answering(c, 3, 30s);
  EXPECT_EQ(seen, std::set<pid_t>(children.begin(), children.end()));
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello from worker " + r->header("x-worker-id") + " (pid " +
                         r->header("x-worker-pid") + ")\n");
}

TEST(SupervisionTest, KilledWorkerIsReplacedInItsSlot) {
  Cluster c;
  c.start("workers: 2\n");
  const auto ready = c.wait_all_ready(2);
  auto victim = c.get("/");
  ASSERT_TRUE(victim);
  const pid_t pid = std::stoi(victim->header("x-worker-pid"));
  const std::string slot = victim->header("x-worker-id");
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto exited = c.forkd.wait_for_log("worker " + slot + R"( \(pid )" + std::to_string(pid) +
                                         R"(\) killed by signal 9 \(SIGKILL\))",
                                     10s, ready);
  ASSERT_TRUE(exited);
  auto started =
      c.forkd.wait_for_log("worker " + slot + " started \\(pid (\\d+)", 10s, exited->end_offset);
  ASSERT_TRUE(started);
  const pid_t replacement = std::stoi((*started)[1]);
  EXPECT_NE(replacement, pid);
  ASSERT_TRUE(c.forkd.wait_for_log(
      "worker " + slot + " ready \\(pid " + std::to_string(replacement), 10s, started->end_offset));
  EXPECT_FALSE(process_alive(pid));
  EXPECT_FALSE(is_zombie(pid)) << "the master must reap its workers";
  const auto children = c.forkd.children();
  EXPECT_EQ(children.size(), 2U);
  // The replacement serves under the same slot id.
  bool replacement_answered = wait_until(
      [&] {
        auto r = c.get("/");
        return r && r->header("x-worker-pid") == std::to_string(replacement) &&
               r->header("x-worker-id") == slot;
      },
      30s, 0ms);
  EXPECT_TRUE(replacement_answered);
}

TEST(SupervisionTest, CrashingSlotBacksOffWhileOthersServe) {
  Cluster c;
  // Slot 0 dies at once on every start; slot 1 serves.
  c.start(
      "workers: 2\nrestart:\n  delay: 100ms\n  max_delay: 800ms\n  min_uptime: 1s\nworker:\n"
      "  shell: 'if [ \"$FORKD_WORKER_ID\" = 0 ]; then exit 3; fi; exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  std::vector<long> delays;
  std::size_t from = 0;
  for (int i = 0; i < 5; ++i) {
    auto m = c.forkd.wait_for_log("respawning worker 0 in (\\d+)ms", 20s, from);
    ASSERT_TRUE(m) << "respawn " << i;
    delays.push_back(std::stol((*m)[1]));
    from = m->end_offset;
  }
  EXPECT_EQ(delays, (std::vector<long>{100, 200, 400, 800, 800}));
  EXPECT_NE(c.forkd.log().find("worker 0 (pid"), std::string::npos);
  EXPECT_NE(c.forkd.log().find("exited with code 3"), std::string::npos);
  // Slot 1 answers the whole time.
  for (int i = 0; i < 5; ++i) {
    auto r = c.get("/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("x-worker-id"), "1");
  }
  // No fork storm: while slot 0 waits out 800 ms delays the master is nearly idle. The bound
  // is generous (a tight respawn loop would use a whole CPU).
  const long before = cpu_ticks(c.forkd.pid());
  auto more = c.forkd.wait_for_log("respawning worker 0 in 800ms", 20s, from);
  ASSERT_TRUE(more);
  more = c.forkd.wait_for_log("respawning worker 0 in 800ms", 20s, more->end_offset);
  ASSERT_TRUE(more);
  const long used = cpu_ticks(c.forkd.pid()) - before;
  EXPECT_LT(used, sysconf(_SC_CLK_TCK) / 2)
      << "master used " << used << " ticks in ~1.6 s of backoff";
}

TEST(SupervisionTest, SlotFailsAfterMaxFailuresAndExitOnFailedStopsTheMaster) {
  Cluster c;
  c.start(
      "workers: 1\nrestart:\n  delay: 10ms\n  max_failures: 3\n  exit_on_failed: true\nworker:\n" +
      test_worker_command("--crash-after-ms, 0"));
  auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_NE(c.forkd.log().find("failed 3 times in a row"), std::string::npos) << c.forkd.log();
  EXPECT_EQ(c.forkd.count_log("exited with code 3"), 3U);
}

TEST(SupervisionTest, NeverReadyWorkerIsKilledAfterReadyTimeout) {
  Cluster c;
  c.start("workers: 1\nrestart: {delay: 10ms}\nworker:\n" + test_worker_command("--never-ready") +
          "  ready: message\n  ready_timeout: 300ms\n");
  auto first = c.forkd.wait_for_log("worker 0 started \\(pid (\\d+)", 10s);
  ASSERT_TRUE(first);
  auto killed = c.forkd.wait_for_log(
      "worker 0 \\(pid " + (*first)[1] + "\\): not ready within ready_timeout", 10s);
  ASSERT_TRUE(killed);
  ASSERT_TRUE(c.forkd.wait_for_log("respawning worker 0", 10s, killed->end_offset));
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 started \\(pid (\\d+)", 10s, killed->end_offset));
}

TEST(SupervisionTest, MasterSigkillLeavesNoWorkerBehind) {
  Cluster c;
  c.start("workers: 3\n");
  c.wait_all_ready(3);
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 3U);
  ASSERT_TRUE(c.forkd.signal(SIGKILL));
  ASSERT_TRUE(c.forkd.wait_exit(10s));
  for (pid_t w : workers) {
    EXPECT_TRUE(wait_until([&] { return !process_alive(w); }, 5s))
        << "worker " << w << " outlived its master";
  }
}

TEST(SupervisionTest, WorkerIgnoresTerminalSigintAndStopsOnSigterm) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 1U);
  std::ifstream status("/proc/" + std::to_string(workers[0]) + "/status");
  std::string line;
  unsigned long long ignored = 0;
  while (std::getline(status, line)) {
    if (line.rfind("SigIgn:", 0) == 0) ignored = std::stoull(line.substr(7), nullptr, 16);
  }
  EXPECT_TRUE(ignored & (1ULL << (SIGINT - 1))) << "SIGINT must be ignored by workers";
  EXPECT_FALSE(ignored & (1ULL << (SIGTERM - 1)));
}

TEST(SupervisionTest, ExecWorkerHoldsExactlyItsFds) {
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  shell: 'exec sleep 600'\n  ready: started\n  stdout: null\n  stderr: "
      "null\n");
  c.wait_all_ready(1);
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 1U);
  std::vector<std::string> fds;
  ASSERT_TRUE(wait_until(
      [&] {
        fds = open_fds(workers[0]);
        // sh has exec'd sleep once /proc shows sleep's comm, and sleep has started once it
        // sleeps: until then the dynamic loader may hold a library open (seen: libc.so.6).
        std::ifstream comm("/proc/" + std::to_string(workers[0]) + "/comm");
        std::string name;
        comm >> name;
        return name == "sleep" && process_state(workers[0]) == 'S';
      },
      10s));
  ASSERT_EQ(fds.size(), 5U) << ::testing::PrintToString(fds);
  EXPECT_EQ(fds[0], "0 -> /dev/null");
  EXPECT_EQ(fds[3], "3 -> " + fd_link_target(c.listener.fd()));
  EXPECT_NE(fds[4].find("socket:["), std::string::npos);  // the IPC socket
}

TEST(SupervisionTest, BuiltInWorkerHoldsNoStrayFds) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 1U);
  const auto fds = open_fds(workers[0]);
  const std::string listener = fd_link_target(c.listener.fd());
  ASSERT_GE(fds.size(), 5U);
  EXPECT_EQ(fds[3], "3 -> " + listener);
  const auto target = [](const std::string& entry) { return entry.substr(entry.find("->")); };
  for (std::size_t i = 5; i < fds.size(); ++i) {
    // Beyond fd 4 only the worker's own loop objects (epoll, signalfd, eventfd, timerfd) and
    // its own duplicates of the listener and IPC socket it was given.
    const bool own = fds[i].find("anon_inode:") != std::string::npos ||
                     target(fds[i]) == target(fds[3]) || target(fds[i]) == target(fds[4]);
    EXPECT_TRUE(own) << fds[i];
  }
  // And none of the master's own fds: its log, its /dev/null, its IPC ends.
  const auto master_fds = open_fds(c.forkd.pid());
  EXPECT_GT(master_fds.size(), fds.size() - 2) << "sanity";
}

TEST(SupervisionTest, SigttinAndSigttouScaleByOne) {
  Cluster c;
  c.start("workers: 1\n");
  auto from = c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.signal(SIGTTIN));
  from = c.wait_all_ready(2);
  EXPECT_EQ(c.forkd.children().size(), 2U);
  ASSERT_TRUE(c.forkd.signal(SIGTTOU));
  ASSERT_TRUE(
      c.forkd.wait_for_log("worker 1 \\(pid \\d+\\) stopped: exited with code 0", 20s, from));
  EXPECT_TRUE(wait_until([&] { return c.forkd.children().size() == 1; }, 10s));
}

TEST(SupervisionTest, ServesOnUnixAndIpv6Listeners) {
  TempDir dir;
  const std::string sock = dir.file("http.sock");
  std::string listen = "  - unix:" + sock + "\n";
  std::optional<Listener> v6;
  if (ipv6_loopback_available()) {
    v6 = Listener::tcp_v6();
    listen += "  - \"" + v6->address() + "\"\n";
  }
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml =
      "workers: 2\nlisten:\n" + listen + "control: {socket: " + dir.file("forkd.sock") + "}\n";
  if (v6) options.listen_fds = {v6->fd()};
  forkd.start(dir, options);
  std::string why;
  ASSERT_TRUE(wait_workers_ready(forkd, dir.file("forkd.sock"), 2, std::nullopt, 30s, &why)) << why;
  auto r = http_get("unix:" + sock, 0, "/", 10s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  if (v6) {
    auto r6 = http_get(*v6, "/healthz", 10s);
    ASSERT_TRUE(r6);
    EXPECT_EQ(r6->status, 200);
  }
  // A clean stop removes the socket file it created.
  ASSERT_TRUE(forkd.signal(SIGTERM));
  ASSERT_TRUE(forkd.wait_exit(30s));
  EXPECT_NE(::access(sock.c_str(), F_OK), 0);
}

TEST(SupervisionTest, ReuseportGivesEachWorkerItsOwnSocket) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 2U);
  const auto a = open_fds(workers[0]);
  const auto b = open_fds(workers[1]);
  ASSERT_GE(a.size(), 4U);
  ASSERT_GE(b.size(), 4U);
  EXPECT_NE(a[3].substr(a[3].find("->")), b[3].substr(b[3].find("->")));
  auto r = http_get("127.0.0.1", c.port, "/", 10s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
