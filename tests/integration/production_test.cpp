// Production concerns: forkd as a container's PID 1, privilege drop, journald and JSON logs.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

std::string proc_status_line(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return line;
  }
  return "";
}

TEST(ProductionTest, AsPid1ItReapsOrphanedGrandchildren) {
  if (::geteuid() != 0) GTEST_SKIP() << "unshare --pid needs root";
  TempDir dir;
  Listener listener = Listener::tcp_v4();
  ForkdProcess unshare;
  ForkdOptions options;
  options.binary = "/usr/bin/unshare";
  options.use_config_flag = false;
  const std::string config =
      dir.write_file("forkd.yaml", "workers: 1\nlisten: [" + listener.address() +
                                       "]\ncontrol: {socket: " + dir.file("forkd.sock") +
                                       "}\nworker:\n  shell: '(sleep 0.2 &); exec " +
                                       test_worker_bin() + " --serve'\n  ready: message\n");
  options.extra_args = {"--pid", "--fork", "--mount-proc", forkd_bin(),
                        "-c",    config,   "--log-level",  "debug"};
  listener.close();  // forkd binds it itself inside the namespace
  unshare.start(dir, options);
  ASSERT_TRUE(unshare.wait_for_log("forkd 0.1.0 started \\(pid 1\\)", 20s)) << unshare.log();
  ASSERT_TRUE(unshare.wait_for_log("all 1 workers ready", 20s));
  // The shell's background sleep was orphaned and reparented to PID 1, which reaped it.
  ASSERT_TRUE(
      unshare.wait_for_log("reaped process \\d+ \\(exited with code 0\\), not a worker", 20s))
      << unshare.log();
  const auto tree = descendant_pids(unshare.pid());
  for (pid_t p : tree) EXPECT_FALSE(is_zombie(p)) << "zombie " << p;
}

TEST(ProductionTest, WorkersRunAsTheConfiguredUserAndGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "dropping privileges needs root";
  Cluster c;
  c.start("workers: 2\nworker:\n  user: nobody\n  group: nogroup\n");
  c.wait_all_ready(2);
  for (pid_t w : c.forkd.children()) {
    EXPECT_EQ(proc_status_line(w, "Uid"), "Uid:\t65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status_line(w, "Gid"), "Gid:\t65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status_line(w, "Groups"), "Groups:\t65534 ");
    EXPECT_EQ(proc_status_line(w, "NoNewPrivs"), "NoNewPrivs:\t1");
  }
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ProductionTest, JournalStreamGivesPriorityPrefixes) {
  Cluster c;
  ForkdOptions options;
  options.config_yaml = "listen:\n  - " + c.listener.address() +
                        "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\nworkers: 1\n";
  options.listen_fds = {c.listener.fd()};
  options.env = {{"JOURNAL_STREAM", "8:12345"}};
  c.forkd.start(c.dir, options);
  ASSERT_TRUE(c.forkd.wait_for_log("^<6>master: all 1 workers ready$", 20s)) << c.forkd.log();
}

TEST(ProductionTest, JsonLogLinesAreJsonObjects) {
  Cluster c;
  c.start("workers: 1\nlog:\n  format: json\n");
  ASSERT_TRUE(c.forkd.wait_for_log("all 1 workers ready", 20s));
  std::istringstream lines(c.forkd.log());
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg") &&
                j.contains("component"))
        << line;
    ++parsed;
  }
  EXPECT_GE(parsed, 3);
}

TEST(ProductionTest, UnwritableLogFileFallsBackToStderrOnce) {
  Cluster c;
  c.start("workers: 1\nlog:\n  file: /dev/full\n");
  ASSERT_TRUE(c.forkd.wait_for_log("all 1 workers ready", 20s));
  EXPECT_EQ(
      c.forkd.count_log(
          "cannot write log file /dev/full: No space left on device; logging to stderr instead"),
      1U)
      << c.forkd.log();
  ASSERT_EQ(forkctl(c, {"scale", "+1"}).exit_code(), 0);
  EXPECT_TRUE(c.forkd.wait_for_log("all 2 workers ready", 20s));
}

}  // namespace
