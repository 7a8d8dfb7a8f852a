// Supervising programs that are not built on our library: Node.js over its own IPC channel,
// Python through LISTEN_FDS and NOTIFY_SOCKET, systemd-notify, and their captured output.
#include <signal.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

TEST(ExecWorkerTest, NodeWorkerServesOnFd3AndAnswersLikeChildProcessFork) {
  const std::string node = find_tool("node").value_or("");
  ASSERT_FALSE(node.empty()) << "node is installed by scripts/install-deps";
  Cluster c;
  c.start("workers: 2\nworker:\n  command: [" + node + ", " + fixture("node_worker.js") +
          "]\n  ready: message\n");
  c.wait_all_ready(2);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("node worker"), std::string::npos);
  auto reply = forkctl(c, {"send", "1", R"({"hello":"node"})", "--wait", "10s"});
  ASSERT_EQ(reply.exit_code(), 0) << reply.err;
  const json j = json::parse(reply.out);
  EXPECT_EQ(j["received"], json({{"hello", "node"}}));
  EXPECT_EQ(j["worker"], 1);
  // Its console.log went to forkd's log, tagged with the worker.
  EXPECT_TRUE(
      c.forkd.wait_for_log("worker 0 \\(pid \\d+\\) stdout: node worker 0 listening on fd 3", 10s));
  // Graceful stop reaches Node's SIGTERM handler.
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(ExecWorkerTest, PythonWorkerUsesListenFdsAndNotifySocket) {
  Cluster c;
  c.start("workers: 2\nworker:\n  command: [/usr/bin/python3, " + fixture("notify_worker.py") +
          "]\n  ready: notify\n  heartbeat_timeout: 2s\n");
  c.wait_all_ready(2);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("python worker"), std::string::npos);
  auto s = forkctl(c, {"--json", "status"});
  ASSERT_EQ(s.exit_code(), 0);
  const json status = json::parse(s.out);
  EXPECT_EQ(status["workers"][0]["status"], "serving on fd 3");
  // The command each worker really runs, read from /proc, as `pm2 ls` shows it.
  EXPECT_EQ(status["workers"][0]["command"], "/usr/bin/python3 " + fixture("notify_worker.py"));
  EXPECT_TRUE(c.forkd.wait_for_log("stdout: python worker 1 ready", 10s));
}

TEST(ExecWorkerTest, PythonWorkerThatStopsItsWatchdogIsReplaced) {
  Cluster c;
  c.start("workers: 1\nworker:\n  command: [/usr/bin/python3, " + fixture("notify_worker.py") +
          ", --watchdog-for, '1']\n  ready: notify\n  heartbeat_timeout: 1s\n");
  auto from = c.wait_all_ready(1);
  const pid_t first = c.forkd.children().at(0);
  auto killed = c.forkd.wait_for_log(
      "worker 0 \\(pid " + std::to_string(first) + "\\): no heartbeat", 20s, from);
  ASSERT_TRUE(killed);
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 ready \\(pid", 20s, killed->end_offset));
}

TEST(ExecWorkerTest, SystemdNotifyFromAWorkerShellCountsAsReady) {
  const std::string notify = find_tool("systemd-notify").value_or("");
  ASSERT_FALSE(notify.empty()) << "systemd-notify comes with Debian's systemd package";
  Cluster c;
  c.start("workers: 1\nworker:\n  shell: '" + notify + " --ready --status=shell-ready; exec " +
          test_worker_bin() + " --serve --never-ready'\n  ready: notify\n  ready_timeout: 20s\n");
  c.wait_all_ready(1);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ExecWorkerTest, MissingCommandIsAConfigError) {
  TempDir dir;
  const auto path = dir.write_file(
      "c.yaml", "listen: [127.0.0.1:18080]\nworker:\n  command: [/nonexistent/app, --x]\n");
  auto r = run_command({forkd_bin(), "-c", path, "--check-config"}, 10s);
  EXPECT_EQ(r.exit_code(), 78);
  EXPECT_NE(r.err.find("/nonexistent/app"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ":3:"), std::string::npos) << r.err;
}

TEST(ExecWorkerTest, CommandThatDisappearsLaterIsAClearSpawnError) {
  Cluster c;
  const std::string app =
      c.dir.write_file("app.sh", "#!/bin/sh\nexec " + test_worker_bin() + " --serve\n");
  ::chmod(app.c_str(), 0755);
  c.start("workers: 1\nrestart: {delay: 50ms}\nworker:\n  command: [" + app +
          "]\n  ready: message\n");
  auto from = c.wait_all_ready(1);
  ::unlink(app.c_str());
  ::kill(c.forkd.children().at(0), SIGKILL);
  ASSERT_TRUE(c.forkd.wait_for_log(
      "worker 0: cannot start: \"" + app + "\": No such file or directory", 20s, from));
  EXPECT_TRUE(c.forkd.running());
}

TEST(ExecWorkerTest, WorkerOutputIsLoggedLineByLineWithItsId) {
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  shell: 'echo out-line; echo err-line >&2; head -c 40000 /dev/zero | "
      "tr \"\\\\0\" x; echo; exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  c.wait_all_ready(1);
  EXPECT_TRUE(c.forkd.wait_for_log("worker 0 \\(pid \\d+\\) stdout: out-line$", 10s));
  EXPECT_TRUE(
      c.forkd.wait_for_log("\\[warning\\] worker: worker 0 \\(pid \\d+\\) stderr: err-line$", 10s));
  // A 40000-byte line is split into bounded pieces, never buffered whole.
  EXPECT_TRUE(c.forkd.wait_for_log("stdout: x{16384}$", 10s));
  EXPECT_TRUE(c.forkd.wait_for_log("stdout: x{7232}$", 10s));
}

TEST(ExecWorkerTest, WorkerGetsTheDocumentedEnvironment) {
  Cluster c;
  c.start("workers: 1\nworker:\n  shell: 'env | sort; exec " + test_worker_bin() +
          " --serve'\n  ready: message\n  env: {GREETING: hi}\n  heartbeat_timeout: 10s\n");
  c.wait_all_ready(1);
  for (const std::string& var : std::vector<std::string>{
           "FORKD_WORKER_ID=0", "NODE_APP_INSTANCE=0", "FORKD_GENERATION=1", "FORKD_WORKERS=1",
           "FORKD_SHUTDOWN_TIMEOUT_MS=30000", "FORKD_IPC_MAX_MESSAGE=1048576",
           "FORKD_MASTER_PID=" + std::to_string(c.forkd.pid()), "LISTEN_FDS=1",
           "LISTEN_FDNAMES=listen0", "FORKD_IPC_FD=4", "NODE_CHANNEL_FD=4",
           "NODE_CHANNEL_SERIALIZATION_MODE=json", "GREETING=hi", "WATCHDOG_USEC=10000000",
           "NOTIFY_SOCKET=@forkd-"}) {
    EXPECT_TRUE(c.forkd.wait_for_log("stdout: " + var, 10s)) << var;
  }
}

}  // namespace

namespace {

// `forkctl logs`: the last lines each worker wrote, oldest first, tagged with slot, pid and
// stream, kept across a respawn of the slot.
TEST(ExecWorkerTest, ForkctlLogsShowsTheLastCapturedLinesOfEachWorker) {
  Cluster c;
  c.start(
      "workers: 2\nworker:\n  shell: 'for i in 1 2 3 4 5; do echo \"line $i of $FORKD_WORKER_ID\"; "
      "done; echo \"oops $FORKD_WORKER_ID\" >&2; exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  c.wait_all_ready(2);
  const auto pid_of = [&](unsigned id) {
    const auto s = json::parse(forkctl(c, {"--json", "status"}).out);
    for (const auto& w : s["workers"])
      if (w["id"] == id) return w["pid"].get<pid_t>();
    return pid_t{0};
  };
  const pid_t one = pid_of(1);
  RunResult r;
  ASSERT_TRUE(wait_until(
      [&] {
        r = forkctl(c, {"logs", "-n", "3", "1"});
        return r.out.find("oops 1") != std::string::npos;
      },
      10s))
      << r.out << r.err;
  const std::string p = std::to_string(one);
  EXPECT_EQ(r.out, "[1 pid " + p + " stdout] line 4 of 1\n[1 pid " + p +
                       " stdout] line 5 of 1\n[1 pid " + p + " stderr] oops 1\n");
  // Every worker, in the order written; --json gives the fields.
  const auto all = forkctl(c, {"logs", "-n", "100"});
  EXPECT_NE(all.out.find("stdout] line 1 of 0"), std::string::npos) << all.out;
  const auto as_json = json::parse(forkctl(c, {"--json", "logs", "-n", "1", "0"}).out);
  ASSERT_EQ(as_json["lines"].size(), 1U) << as_json.dump();
  EXPECT_EQ(as_json["lines"][0]["stream"], "stderr");
  EXPECT_EQ(as_json["lines"][0]["text"], "oops 0");
  // The slot's lines outlive its process: the respawned worker's lines follow the old ones.
  ASSERT_EQ(::kill(one, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return pid_of(1) != one && pid_of(1) > 0; }, 30s));
  ASSERT_TRUE(wait_until(
      [&] {
        r = forkctl(c, {"logs", "-n", "12", "1"});
        return std::count(r.out.begin(), r.out.end(), '\n') == 12;
      },
      10s))
      << r.out;
  EXPECT_EQ(r.out.rfind("[1 pid " + p + " stdout] line 1 of 1\n", 0), 0U) << r.out;
  EXPECT_EQ(forkctl(c, {"logs", "7"}).exit_code(), 1);
}

}  // namespace

namespace {

// `forkctl logs -f`: the history, then each new line as it is written, none twice, none lost
// between the two.
TEST(ExecWorkerTest, ForkctlLogsFollowPrintsNewLinesWithoutGapOrRepeat) {
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  shell: 'i=0; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; "
      "done'\n  ready: started\n");
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.wait_for_log("stdout: tick 3$", 10s)) << c.forkd.log();
  ForkdProcess follower;
  ForkdOptions options;
  options.binary = forkctl_bin();
  options.use_config_flag = false;
  options.extra_args = {"-s", c.dir.file("forkd.sock"), "logs", "-f", "-n", "2", "0"};
  follower.start(c.dir, options);
  const auto later = follower.wait_for_stdout("\\] tick (\\d+)$", 10s);
  ASSERT_TRUE(later) << follower.log();
  const int first = std::stoi((*later)[1]);
  ASSERT_TRUE(follower.wait_for_stdout("\\] tick " + std::to_string(first + 20) + "$", 20s))
      << follower.stdout_text() << follower.log();
  std::istringstream lines(follower.stdout_text());
  std::string line;
  int expected = first;
  while (std::getline(lines, line) && expected <= first + 20) {
    EXPECT_NE(line.find("[0 pid "), std::string::npos) << line;
    EXPECT_TRUE(line.ends_with("stdout] tick " + std::to_string(expected))) << line;
    ++expected;
  }
  EXPECT_GT(expected, first + 20);
}

}  // namespace

namespace {

TEST(ExecWorkerTest, LogWorkerLinesBoundsWhatForkctlLogsKeeps) {
  Cluster c;
  c.start(
      "workers: 1\nlog: {worker_lines: 2}\nworker:\n  shell: 'for i in 1 2 3 4 5; do echo "
      "\"line $i\"; done; exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.wait_for_log("stdout: line 5$", 10s));
  const auto r = forkctl(c, {"logs", "-n", "100"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.out.find("] line 4\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("] line 5\n"), std::string::npos) << r.out;
}

}  // namespace

namespace {

// A full ring (1 MiB of long lines) asked for whole: the newest lines that fit in one reply the
// control socket can carry, said to be truncated, rather than a reply the server must drop.
TEST(ExecWorkerTest, ForkctlLogsOfAFullRingFitsOneReply) {
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  shell: 'python3 -c \"for i in range(1000): "
      "print(str(i).rjust(6, chr(48)) + chr(120) * 1100)\"; exec " +
      test_worker_bin() + " --serve'\n  ready: message\n");
  c.wait_all_ready(1);
  json reply;
  ASSERT_TRUE(wait_until(
      [&] {
        const auto r = forkctl(c, {"--json", "logs", "-n", "1", "0"});
        reply = json::parse(r.out, nullptr, false);
        return reply.is_object() && !reply["lines"].empty() &&
               reply["lines"][0]["text"].get<std::string>().starts_with("000999");
      },
      20s))
      << reply.dump().substr(0, 300);
  const auto all = forkctl(c, {"--json", "logs", "-n", "100000"});
  ASSERT_EQ(all.exit_code(), 0) << all.err;
  const auto whole = json::parse(all.out);
  EXPECT_TRUE(whole["truncated"].get<bool>());
  ASSERT_GT(whole["lines"].size(), 100U);
  EXPECT_LT(all.out.size(), std::size_t{1} << 20);
  EXPECT_TRUE(whole["lines"].back()["text"].get<std::string>().starts_with("000999"));
}

}  // namespace

namespace {

// A worker's command line is its own to write (setproctitle): status escapes it before forkctl
// prints it to a terminal.
TEST(ExecWorkerTest, StatusEscapesTheCommandLineAWorkerWrote) {
  Cluster c;
  c.start(
      "workers: 1\nworker:\n  command: [python3, -c, 'import time; time.sleep(600)', "
      "\"red \\e[31m\"]\n  ready: started\n");
  c.wait_all_ready(1);
  // `ready: started` is ready at fork: wait until the worker's own command line is in place.
  std::string command;
  ASSERT_TRUE(wait_until(
      [&] {
        const auto s = json::parse(forkctl(c, {"--json", "status"}).out);
        const auto& value = s["workers"][0]["command"];
        command = value.is_string() ? value.get<std::string>() : "";
        return command.find("time.sleep(600)") != std::string::npos;
      },
      10s))
      << command;
  EXPECT_EQ(command.find('\x1b'), std::string::npos) << command;
  EXPECT_NE(command.find("red \\x1b[31m"), std::string::npos) << command;
}

}  // namespace
