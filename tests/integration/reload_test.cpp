// Zero-downtime operations under a steady request stream: reloads (valid, invalid, listener
// changes, never-ready workers, SIGHUP storms), hot upgrades, log reopening.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

json status(Cluster& c) {
  auto r = forkctl(c, {"--json", "status"});
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  return r.exit_code() == 0 ? json::parse(r.out) : json::object();
}

std::set<pid_t> worker_pids(Cluster& c) {
  std::set<pid_t> pids;
  const json s = status(c);
  for (const auto& w : s["workers"]) {
    if (w["pid"].is_number()) pids.insert(w["pid"].get<pid_t>());
  }
  return pids;
}

struct Load {
  LoadGenerator generator;
  explicit Load(const std::string& address) : generator(options(address)) {
    generator.start();
    EXPECT_TRUE(generator.wait_for_ok(20, 20s));
  }
  static LoadOptions options(const std::string& address) {
    LoadOptions o;
    o.address = address;
    return o;
  }
  // Lets some more requests through after the operation, then stops and checks.
  void finish_without_failures() {
    EXPECT_TRUE(generator.wait_for_ok(generator.ok() + 20, 20s));
    generator.stop();
    EXPECT_EQ(generator.failed(), 0U) << ::testing::PrintToString(generator.failures());
  }
};

TEST(ReloadTest, TenReloadsWithChangingWorkerCountLoseNoRequest) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto first = worker_pids(c);
  Load load(c.listener.address());
  for (int i = 0; i < 10; ++i) {
    const int workers = 1 + (i % 3);
    c.rewrite_config("workers: " + std::to_string(workers) + "\n");
    auto r = forkctl(c, {"reload"}, 60s);
    ASSERT_EQ(r.exit_code(), 0) << "reload " << i << ": " << r.out << r.err;
  }
  load.finish_without_failures();
  const json s = status(c);
  EXPECT_EQ(s["master"]["generation"], 11);
  EXPECT_EQ(s["master"]["last_reload"]["ok"], true);
  ASSERT_TRUE(wait_until([&] { return worker_pids(c).size() == 1 + (9 % 3); }, 20s))
      << status(c).dump();
  for (pid_t p : worker_pids(c))
    EXPECT_EQ(first.count(p), 0U) << "pid " << p << " survived every reload";
  const json final_status = status(c);
  for (const auto& w : final_status["workers"]) EXPECT_EQ(w["generation"], 11);
}

TEST(ReloadTest, InvalidFileChangesNothingAndIsReported) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto before = worker_pids(c);
  Load load(c.listener.address());
  c.rewrite_config("workers: 0\n");
  auto r = forkctl(c, {"reload"}, 60s);
  EXPECT_EQ(r.exit_code(), 1);
  EXPECT_NE((r.out + r.err).find("forkd.yaml:5:10"), std::string::npos) << r.out << r.err;
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  ASSERT_TRUE(c.forkd.wait_for_log("reload: .*forkd.yaml:5:10: workers: 0 is out of range", 10s));
  load.finish_without_failures();
  EXPECT_EQ(worker_pids(c), before);
  const json s = status(c);
  EXPECT_EQ(s["master"]["generation"], 1);
  EXPECT_EQ(s["master"]["last_reload"]["ok"], false);
  EXPECT_NE(s["master"]["last_reload"]["error"].get<std::string>().find("out of range"),
            std::string::npos);
}

TEST(ReloadTest, DryRunPrintsTheChangesAndChangesNothing) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto before = worker_pids(c);
  c.rewrite_config("workers: 3\nworker:\n  env: {A: \"1\"}\n");
  auto r = forkctl(c, {"reload", "--dry-run"});
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_NE(r.out.find("workers: 2 -> 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker.env.A"), std::string::npos) << r.out;
  EXPECT_EQ(worker_pids(c), before);
  EXPECT_EQ(status(c)["master"]["generation"], 1);
}

TEST(ReloadTest, ListenerAddedAndRemovedWhileTheUnchangedOneNeverRefuses) {
  std::uint16_t old_port = 0;
  std::uint16_t new_port = 0;
  {
    Listener a = Listener::tcp_v4();
    Listener b = Listener::tcp_v4();
    old_port = a.port();
    new_port = b.port();
  }
  Cluster c;
  const auto config = [&](std::uint16_t second) {
    return "listen:\n  - " + c.listener.address() + "\n  - 127.0.0.1:" + std::to_string(second) +
           "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\nworkers: 2\n";
  };
  ForkdOptions options;
  options.config_yaml = config(old_port);
  options.listen_fds = {c.listener.fd()};
  c.forkd.start(c.dir, options);
  c.wait_all_ready(2);
  ASSERT_TRUE(http_get("127.0.0.1", old_port, "/", 10s));
  Load load(c.listener.address());
  (void)c.dir.write_file("forkd.yaml", config(new_port));
  auto r = forkctl(c, {"reload"}, 60s);
  ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  auto fresh = http_get("127.0.0.1", new_port, "/", 10s);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 200);
  std::string error;
  EXPECT_TRUE(wait_until([&] { return !http_get("127.0.0.1", old_port, "/", 2s, &error); }, 20s))
      << "the removed listener still answers";
  EXPECT_NE(error.find("refused"), std::string::npos) << error;
  load.finish_without_failures();
}

TEST(ReloadTest, NeverReadyNewWorkersFailTheReloadAndTheOldOnesServeOn) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto before = worker_pids(c);
  Load load(c.listener.address());
  c.rewrite_config("workers: 2\nworker:\n" + test_worker_command("--never-ready") +
                   "  ready: message\n  ready_timeout: 500ms\n");
  auto r = forkctl(c, {"reload"}, 60s);
  EXPECT_EQ(r.exit_code(), 1);
  EXPECT_NE((r.out + r.err).find("did not get ready"), std::string::npos) << r.out << r.err;
  load.finish_without_failures();
  EXPECT_EQ(worker_pids(c), before);
  const json s = status(c);
  EXPECT_EQ(s["master"]["generation"], 1);
  EXPECT_EQ(s["master"]["last_reload"]["ok"], false);
}

TEST(ReloadTest, CrashingNewWorkersFailTheReload) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto before = worker_pids(c);
  Load load(c.listener.address());
  c.rewrite_config("workers: 2\nworker:\n" + test_worker_command("--crash-after-ms, 0") +
                   "  ready: message\n");
  auto r = forkctl(c, {"reload"}, 60s);
  EXPECT_EQ(r.exit_code(), 1) << r.out;
  load.finish_without_failures();
  EXPECT_EQ(worker_pids(c), before);
}

TEST(ReloadTest, BurstOfFiftySighupsEndsInOneConsistentState) {
  Cluster c;
  c.start("workers: 2\n");
  auto from = c.wait_all_ready(2);
  const auto fds_before = open_fds(c.forkd.pid()).size();
  Load load(c.listener.address());
  c.rewrite_config("workers: 3\n");
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(c.forkd.signal(SIGHUP));
  // Coalesced: far fewer than 50 reloads run, and the last one completes.
  ASSERT_TRUE(wait_until(
      [&] {
        const json s = status(c);
        if (s["workers"].size() != 3) return false;
        for (const auto& w : s["workers"]) {
          if (w["state"] != "ready" || w["generation"] != s["master"]["generation"]) return false;
        }
        return c.forkd.count_log("reload complete", from) >= 1 &&
               c.forkd.log().rfind("reloading") < c.forkd.log().rfind("reload complete");
      },
      60s));
  load.finish_without_failures();
  EXPECT_LT(c.forkd.count_log("rolling restart of", from), 50U);
  for (pid_t child : c.forkd.children()) EXPECT_FALSE(is_zombie(child));
  ASSERT_TRUE(wait_until([&] { return c.forkd.children().size() == 3; }, 20s));
  // One worker more than before: its IPC socket, its NOTIFY_SOCKET and two output pipes.
  EXPECT_EQ(open_fds(c.forkd.pid()).size(), fds_before + 4)
      << ::testing::PrintToString(open_fds(c.forkd.pid()));
}

TEST(ReloadTest, ReuseportReloadLosesNoRequest) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  LoadOptions lo;
  lo.address = c.address();
  LoadGenerator load(lo);
  load.start();
  ASSERT_TRUE(load.wait_for_ok(20, 20s));
  for (int i = 0; i < 3; ++i) {
    auto r = c.forkctl({"reload"});
    ASSERT_EQ(r.exit_code(), 0) << r.out << r.err;
  }
  ASSERT_TRUE(load.wait_for_ok(load.ok() + 20, 20s));
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
}

// In reuseport mode a replacement gets a socket of its own, and the steering program sends it
// nothing before it is ready: a new version that serves but never says it is ready answers no
// request during its whole ready_timeout, while the old generation serves every one.
TEST(ReloadTest, ReuseportNeverReadyNewWorkersAnswerNoRequest) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  std::set<std::string> old_pids;
  const auto st = c.forkctl({"--json", "status"});
  ASSERT_EQ(st.exit_code(), 0) << st.err;
  const json status = json::parse(st.out);
  for (const auto& w : status["workers"]) {
    old_pids.insert(std::to_string(w["pid"].get<pid_t>()));
    EXPECT_EQ(w["steering"], "in") << st.out;
  }
  LoadOptions lo;
  lo.address = c.address();
  lo.keepalive_clients = 0;
  lo.fresh_clients = 4;
  LoadGenerator load(lo);
  load.start();
  ASSERT_TRUE(load.wait_for_ok(20, 20s));
  (void)c.dir.write_file(
      "forkd.yaml", "workers: 2\nlisten:\n  - address: " + c.address() +
                        "\n    reuseport: true\ncontrol: {socket: " + c.dir.file("forkd.sock") +
                        "}\nworker:\n" + test_worker_command("--serve, --never-ready") +
                        "  ready: message\n  ready_timeout: 3s\n");
  auto reload = std::async(std::launch::async, [&] { return c.forkctl({"reload"}); });
  ASSERT_TRUE(c.forkd.wait_for_log(R"(reloading )", 20s));
  // While the new worker runs (not ready), status says so.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto now = c.forkctl({"--json", "status"});
        if (now.exit_code() != 0) return false;
        const json now_status = json::parse(now.out);
        for (const auto& w : now_status["workers"]) {
          if (w["steering"] == "not ready") return true;
        }
        return false;
      },
      20s));
  const auto reloaded = reload.get();
  EXPECT_EQ(reloaded.exit_code(), 1) << reloaded.out << reloaded.err;
  EXPECT_NE((reloaded.out + reloaded.err).find("did not get ready"), std::string::npos)
      << reloaded.out << reloaded.err;
  ASSERT_TRUE(load.wait_for_ok(load.ok() + 20, 20s));
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
  std::uint64_t from_new = 0;
  for (const auto& [pid, count] : load.tally()) {
    if (old_pids.count(pid) == 0) from_new += count;
  }
  EXPECT_EQ(from_new, 0U) << ::testing::PrintToString(load.tally());
}

// A retiring slot's own reuseport socket closes with it: the connections the kernel had already
// completed on it are served, not reset, while a steady stream through the scale-down loses
// nothing. The slot's worker is stopped meanwhile, so that its queue is sure to hold some.
TEST(ReloadTest, ReuseportScaleDownServesWhatWasQueuedOnTheRetiringSocket) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  const pid_t retiring = c.worker_pid(1);
  ASSERT_GT(retiring, 0) << c.status().dump();

  LoadOptions lo;
  lo.address = c.address();
  lo.request_timeout = 30s;
  LoadGenerator load(lo);
  load.start();
  ASSERT_TRUE(load.wait_for_ok(20, 20s));

  ASSERT_EQ(::kill(retiring, SIGSTOP), 0);
  // connect() returns once the kernel has queued the connection on one of the two sockets:
  // with 24 of them, slot 1's queue holds some (all 24 on slot 0: odds of 1 in 2^24).
  std::vector<std::unique_ptr<HttpConnection>> queued;
  for (int i = 0; i < 24; ++i) {
    queued.push_back(std::make_unique<HttpConnection>("127.0.0.1", c.port, 30s));
    ASSERT_TRUE(queued.back()->is_open()) << queued.back()->error();
  }
  std::vector<std::future<std::optional<HttpResponse>>> answers;
  answers.reserve(queued.size());
  for (auto& connection : queued) {
    answers.push_back(
        std::async(std::launch::async, [&connection] { return connection->get("/"); }));
  }
  const auto scaled = c.forkctl({"scale", "1"});
  ASSERT_EQ(scaled.exit_code(), 0) << scaled.out << scaled.err;
  ASSERT_EQ(::kill(retiring, SIGCONT), 0);
  std::size_t served = 0;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const auto r = answers[i].get();
    EXPECT_TRUE(r && r->status == 200) << "queued connection " << i << ": " << queued[i]->error();
    if (r && r->status == 200) ++served;
  }
  EXPECT_EQ(served, answers.size());
  ASSERT_TRUE(c.forkd.wait_for_log(R"(worker 1 \(pid \d+\) stopped: exited with code 0)", 30s))
      << c.forkd.log();
  ASSERT_TRUE(load.wait_for_ok(load.ok() + 20, 20s));
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
}

// A reload to fewer workers in reuseport mode, where the kernel cannot move queued connections
// (tcp_migrate_req is 0 in a fresh network namespace and forkd, unprivileged, cannot change it):
// once a retiring worker has drained, nothing may still hold its socket, or the connections
// the kernel keeps queueing there while the rollout goes on are reset when it ends.
TEST(ReloadTest, ReuseportReloadToFewerWorkersLeavesNoOrphanSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "a network namespace and an unprivileged forkd need root";
  PrivateNetwork net;
  TempDir dir;
  std::filesystem::permissions(dir.path(), std::filesystem::perms::all);
  const std::uint16_t port = free_tcp_port();
  const uid_t uid = spare_uid();
  const std::string socket = socket_dir_for(dir, uid) + "/forkd.sock";
  const auto config = [&](unsigned workers) {
    // `started` readiness with a min_uptime: each replacement proves itself for 2 s, so the
    // rollout outlasts the retiring worker's drain by far.
    return "workers: " + std::to_string(workers) +
           "\nlisten:\n  - address: 127.0.0.1:" + std::to_string(port) +
           "\n    reuseport: true\ncontrol: {socket: " + socket +
           "}\nworker: {ready: started}\nrestart: {min_uptime: 2s}\n";
  };
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml = config(3);
  auto argv = setpriv_as(uid);
  argv.insert(argv.end(), {"--", forkd_bin(), "-c", dir.file("forkd.yaml")});
  options.binary = argv.front();
  options.extra_args.assign(argv.begin() + 1, argv.end());
  options.use_config_flag = false;
  forkd.start(dir, options);
  std::string why;
  const auto ready = wait_workers_ready(forkd, socket, 3, std::nullopt, 30s, &why);
  ASSERT_TRUE(ready) << why;
  ASSERT_TRUE(forkd.wait_for_log("tcp_migrate_req: it is 0 and cannot be set", 1ms));

  (void)dir.write_file("forkd.yaml", config(2));
  auto reload = std::async(std::launch::async, [&] {
    return forkctl_as(uid, {"-s", socket, "reload"}, 60s);
  });
  ASSERT_TRUE(
      forkd.wait_for_log(R"(worker 2 \(pid \d+\) stopped: exited with code 0)", 30s, *ready))
      << forkd.log();
  // The rollout of slots 0 and 1 is still proving its new workers: connect now.
  std::vector<std::unique_ptr<HttpConnection>> clients;
  clients.reserve(24);
  for (int i = 0; i < 24; ++i) {
    clients.push_back(std::make_unique<HttpConnection>("127.0.0.1", port, 30s));
  }
  std::vector<std::future<std::optional<HttpResponse>>> answers;
  answers.reserve(clients.size());
  for (auto& c : clients) {
    answers.push_back(std::async(std::launch::async, [&c] { return c->get("/"); }));
  }
  const auto reloaded = reload.get();
  EXPECT_EQ(reloaded.exit_code(), 0) << reloaded.out << reloaded.err;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const auto r = answers[i].get();
    EXPECT_TRUE(r && r->status == 200) << "connection " << i << ": " << clients[i]->error();
  }
}

TEST(ReloadTest, HotUpgradeLosesNoRequestAndChangesTheMaster) {
  Cluster c;
  c.start("workers: 2\n");
  auto from = c.wait_all_ready(2);
  Load load(c.listener.address());
  const auto handed = c.forkd.hot_upgrade(from);
  ASSERT_TRUE(handed) << c.forkd.log();
  const pid_t successor = std::stoi((*handed)[1]);
  auto old_status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(old_status);
  EXPECT_EQ(WEXITSTATUS(*old_status), 0);
  load.finish_without_failures();
  const json s = status(c);
  EXPECT_EQ(s["master"]["pid"], successor);
  for (pid_t p : child_pids(successor)) c.forkd.track(p);
  EXPECT_EQ(child_pids(successor).size(), 2U);
  // The control socket and the listener stay with the new master.
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ::kill(successor, SIGTERM);
  EXPECT_TRUE(wait_until([&] { return !process_alive(successor); }, 30s));
}

TEST(ReloadTest, FailedHotUpgradeLeavesTheOldMasterServing) {
  TempDir bin_dir;
  const std::string binary = bin_dir.file("forkd");
  std::filesystem::copy_file(forkd_bin(), binary);
  Cluster c;
  ForkdOptions options;
  options.binary = binary;
  options.config_yaml = "listen:\n  - " + c.listener.address() +
                        "\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\nworkers: 2\n";
  options.listen_fds = {c.listener.fd()};
  c.forkd.start(c.dir, options);
  auto from = c.wait_all_ready(2);
  const auto before = worker_pids(c);
  Load load(c.listener.address());
  // A new "version" that cannot start.
  std::filesystem::remove(binary);
  (void)bin_dir.write_file("forkd", "#!/bin/sh\necho broken build >&2\nexit 1\n");
  ::chmod(binary.c_str(), 0755);
  ASSERT_TRUE(c.forkd.signal(SIGUSR2));
  ASSERT_TRUE(c.forkd.wait_for_log(
      "hot upgrade failed: new master \\(pid \\d+\\) exited with code 1", 30s, from));
  load.finish_without_failures();
  EXPECT_TRUE(c.forkd.running());
  EXPECT_EQ(worker_pids(c), before);
  const auto s = status(c);
  EXPECT_EQ(s["master"]["pid"], c.forkd.pid());
  // Status says the operator's upgrade did not take, as it says of a failed reload.
  EXPECT_EQ(s["master"]["last_reload"]["ok"], false) << s.dump();
  EXPECT_NE(
      s["master"]["last_reload"]["error"].get<std::string>().find("hot upgrade: new master (pid "),
      std::string::npos)
      << s.dump();
}

TEST(ReloadTest, Sigusr1ReopensTheLogFile) {
  Cluster c;
  c.start("workers: 1\nlog:\n  file: " + c.dir.file("forkd.log") + "\n");
  ASSERT_TRUE(wait_until(
      [&] {
        return std::filesystem::exists(c.dir.file("forkd.log")) &&
               std::filesystem::file_size(c.dir.file("forkd.log")) > 0;
      },
      20s));
  std::filesystem::rename(c.dir.file("forkd.log"), c.dir.file("forkd.log.1"));
  ASSERT_TRUE(c.forkd.signal(SIGUSR1));
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(c.dir.file("forkd.log")); }, 20s));
  ASSERT_EQ(forkctl(c, {"scale", "+1"}).exit_code(), 0);
  ASSERT_TRUE(wait_until(
      [&] {
        std::ifstream in(c.dir.file("forkd.log"));
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return text.find("scaling from 1 to 2 workers") != std::string::npos;
      },
      20s));
}

}  // namespace
