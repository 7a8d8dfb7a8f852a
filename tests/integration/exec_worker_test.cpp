// Supervising programs that are not built on our library: Node.js over its own IPC channel,
// Python through LISTEN_FDS and NOTIFY_SOCKET, systemd-notify, and their captured output.
#include <signal.h>

#include <nlohmann/json.hpp>

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
  for (const std::string& var :
       std::vector<std::string>{"FORKD_WORKER_ID=0", "NODE_APP_INSTANCE=0", "FORKD_GENERATION=1",
                                "FORKD_SHUTDOWN_TIMEOUT_MS=30000", "FORKD_IPC_MAX_MESSAGE=1048576",
                                "FORKD_MASTER_PID=" + std::to_string(c.forkd.pid()), "LISTEN_FDS=1",
                                "LISTEN_FDNAMES=listen0", "FORKD_IPC_FD=4", "NODE_CHANNEL_FD=4",
                                "NODE_CHANNEL_SERIALIZATION_MODE=json", "GREETING=hi",
                                "WATCHDOG_USEC=10000000", "NOTIFY_SOCKET=@forkd-"}) {
    EXPECT_TRUE(c.forkd.wait_for_log("stdout: " + var, 10s)) << var;
  }
}

}  // namespace
