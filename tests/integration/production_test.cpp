// Production concerns: forkd as a container's PID 1, privilege drop, an unprivileged master,
// journald and JSON logs.
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

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
  std::string why;
  ASSERT_TRUE(wait_workers_ready(unshare, dir.file("forkd.sock"), 1, std::nullopt, 30s, &why))
      << why;
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
  ASSERT_TRUE(c.forkd.wait_for_log("^<6>master: 1 worker ready$", 20s)) << c.forkd.log();
}

TEST(ProductionTest, JsonLogLinesAreJsonObjects) {
  Cluster c;
  c.start(
      "workers: 1\nlog:\n  format: json\nworker:\n  shell: 'echo \"hello from $FORKD_WORKER_ID\"; "
      "exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  c.wait_all_ready(1);
  // A captured line carries the worker, its pid and the stream as fields of their own.
  ASSERT_TRUE(c.forkd.wait_for_log("hello from 0", 10s)) << c.forkd.log();
  bool captured = false;
  std::istringstream lines(c.forkd.log());
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg") &&
                j.contains("component") && j.contains("pid"))
        << line;
    EXPECT_EQ(j["pid"], c.forkd.pid()) << line;
    if (j["msg"].get<std::string>().ends_with("stdout: hello from 0")) {
      captured = true;
      EXPECT_EQ(j["worker"], 0) << line;
      EXPECT_EQ(j["worker_pid"], c.forkd.children().at(0)) << line;
      EXPECT_EQ(j["stream"], "stdout") << line;
    }
    ++parsed;
  }
  EXPECT_GE(parsed, 3);
  EXPECT_TRUE(captured) << c.forkd.log();
}

TEST(ProductionTest, UnwritableLogFileFallsBackToStderrOnce) {
  Cluster c;
  c.start("workers: 1\nlog:\n  file: /dev/full\n");
  c.wait_all_ready(1);
  EXPECT_EQ(
      c.forkd.count_log(
          "cannot write log file /dev/full: No space left on device; logging to stderr instead"),
      1U)
      << c.forkd.log();
  ASSERT_EQ(forkctl(c, {"scale", "+1"}).exit_code(), 0);
  c.wait_all_ready(2);
}

// forkd started as an unprivileged user through setpriv (and prlimit: both keep our pid, so
// LISTEN_PID holds), on a uid of its own so that no other process counts against its limits.
struct UnprivilegedForkd {
  TempDir dir;
  Listener listener = Listener::tcp_v4();
  ForkdProcess forkd;
  uid_t uid = spare_uid();
  std::string socket_path;

  // The control socket, in a directory the uid owns (forkctl refuses one others can write).
  const std::string& socket() {
    if (socket_path.empty()) socket_path = socket_dir_for(dir, uid) + "/forkd.sock";
    return socket_path;
  }

  // `prefix` runs first (e.g. prlimit), then setpriv with `setpriv_flags`, then forkd.
  void start(const std::string& body, const std::vector<std::string>& setpriv_flags,
             std::vector<std::string> prefix = {}) {
    std::filesystem::permissions(dir.path(), std::filesystem::perms::all);
    const std::string config =
        dir.write_file("forkd.yaml", "listen: [" + listener.address() +
                                         "]\ncontrol: {socket: " + socket() + "}\n" + body);
    std::vector<std::string> argv = std::move(prefix);
    for (auto& arg : setpriv_as(uid)) argv.push_back(std::move(arg));
    argv.insert(argv.end(), setpriv_flags.begin(), setpriv_flags.end());
    argv.insert(argv.end(), {"--", forkd_bin(), "-c", config});
    ForkdOptions options;
    options.binary = argv.front();
    options.extra_args.assign(argv.begin() + 1, argv.end());
    options.use_config_flag = false;
    options.listen_fds = {listener.fd()};
    forkd.start(dir, options);
  }
};

// The user's unit grants the master CAP_NET_BIND_SERVICE as an ambient capability; a worker,
// in-process app or exec'd program, must not get it (nor anything else) from the master.
TEST(ProductionTest, WorkersKeepNoneOfAnUnprivilegedMastersCapabilities) {
  if (::geteuid() != 0) GTEST_SKIP() << "starting forkd as another user needs root";
  UnprivilegedForkd u;
  u.start("workers: 2\n", {"--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"});
  std::string why;
  ASSERT_TRUE(wait_workers_ready(u.forkd, u.socket(), 2, std::nullopt, 30s, &why)) << why;
  EXPECT_EQ(proc_status_line(u.forkd.pid(), "CapAmb"), "CapAmb:\t0000000000000400");
  const auto workers = u.forkd.children();
  ASSERT_EQ(workers.size(), 2U);
  // Real, effective, saved and filesystem uid.
  std::string uids = "Uid:";
  for (int i = 0; i < 4; ++i) uids.append("\t").append(std::to_string(u.uid));
  for (pid_t w : workers) {
    EXPECT_EQ(proc_status_line(w, "Uid"), uids);
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
      EXPECT_EQ(proc_status_line(w, set), std::string(set) + ":\t0000000000000000")
          << "worker " << w;
    }
  }
  auto r = http_get(u.listener, "/", 10s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// fork() failing with EAGAIN (the user's process limit) is a failed start: reported with its
// cause, backed off like a crash while the other workers serve, and healed once the limit rises.
TEST(ProductionTest, ForkFailingWithEagainBacksOffAndRecovers) {
  if (::geteuid() != 0) GTEST_SKIP() << "starting forkd as another user needs root";
  const auto prlimit = find_tool("prlimit");
  ASSERT_TRUE(prlimit) << "prlimit (util-linux) is missing";
  UnprivilegedForkd u;
  // Room for the master and two workers: the third worker's fork() fails with EAGAIN.
  u.start("workers: 3\nrestart:\n  delay: 50ms\n  max_delay: 400ms\n", {},
          {*prlimit, "--nproc=3:4096", "--"});
  const std::string cannot_start =
      R"(worker \d+: cannot start: fork: Resource temporarily unavailable \(process limit reached)";
  const auto first = u.forkd.wait_for_log(cannot_start, 20s);
  ASSERT_TRUE(first) << u.forkd.log();
  // Backed off: the delays grow up to max_delay instead of retrying at once.
  const auto capped =
      u.forkd.wait_for_log(R"(respawning worker \d+ in 400ms)", 20s, first->end_offset);
  ASSERT_TRUE(capped) << u.forkd.log();
  EXPECT_TRUE(u.forkd.wait_for_log(R"(respawning worker \d+ in 100ms)", 1ms, first->end_offset));
  // Attempts 50, 100, 200, 400 ms apart: a busy loop would log thousands.
  EXPECT_LT(u.forkd.count_log(cannot_start), 20U) << u.forkd.log();
  EXPECT_TRUE(u.forkd.wait_for_log("worker \\d+ ready", 1ms)) << "the others serve meanwhile";
  auto r = http_get(u.listener, "/", 10s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  // Raising a soft limit up to the hard one needs no privilege, only the same user.
  auto raise = setpriv_as(u.uid);
  raise.insert(raise.end(), {*prlimit, "--pid", std::to_string(u.forkd.pid()), "--nproc=4096"});
  const auto raised = run_command(raise, 10s);
  ASSERT_EQ(raised.exit_code(), 0) << raised.err;
  std::string why;
  EXPECT_TRUE(wait_workers_ready(u.forkd, u.socket(), 3, std::nullopt, 30s, &why)) << why;
}

// Failed forks count towards restart.max_failures like crashes: the slot is given up, not retried
// in a loop.
TEST(ProductionTest, ForkFailuresCountTowardsMaxFailures) {
  if (::geteuid() != 0) GTEST_SKIP() << "starting forkd as another user needs root";
  const auto prlimit = find_tool("prlimit");
  ASSERT_TRUE(prlimit) << "prlimit (util-linux) is missing";
  UnprivilegedForkd u;
  u.start("workers: 3\nrestart:\n  delay: 20ms\n  max_failures: 3\n", {},
          {*prlimit, "--nproc=3:4096", "--"});
  const auto failed = u.forkd.wait_for_log(
      R"(worker (\d+) failed 3 times in a row \(restart.max_failures\); slot marked failed)", 20s);
  ASSERT_TRUE(failed) << u.forkd.log();
  // A round trip through the master's loop: a retry loop would have logged more by then.
  const auto status = forkctl_as(u.uid, {"-s", u.socket(), "status"}, 10s);
  EXPECT_EQ(status.exit_code(), 0) << status.err;
  EXPECT_NE(status.out.find("failed"), std::string::npos) << status.out;
  // Which slots fail depends on how many threads the master has (a sanitizer's count too).
  EXPECT_EQ(u.forkd.count_log("worker " + (*failed)[1] +
                              ": cannot start: fork: Resource temporarily unavailable"),
            3U)
      << u.forkd.log();
}

}  // namespace
