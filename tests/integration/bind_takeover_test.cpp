// Unchanged programs (SPEC "Unchanged programs"): a Node or Python app written for one process
// binds and listens on its own port, and under forkd every worker serves it, through the bind
// takeover library; readiness is that listen(); a static program is left alone and said so.
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <atomic>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using json = nlohmann::json;

std::string example(const std::string& path) {
  return std::string(EXAMPLES_DIR) + "/" + path;
}

std::string worker_with(const std::string& command, const std::string& env) {
  return "worker:\n  command: [" + command + "]\n  env: {" + env + "}\n";
}

// The pid an app names in its body ("hello from pid 123 ...", "raw pid 123 ...").
pid_t pid_in(const std::string& body) {
  static const std::regex kPid("pid ([0-9]+)");
  std::smatch m;
  return std::regex_search(body, m, kPid) ? static_cast<pid_t>(std::stol(m[1].str())) : 0;
}

std::set<pid_t> worker_pids(Cluster& c) {
  std::set<pid_t> pids;
  if (const auto s = control_status(c.control_socket)) {
    for (const auto& w : (*s)["workers"]) {
      if (w["pid"].is_number()) pids.insert(w["pid"].get<pid_t>());
    }
  }
  return pids;
}

// Requests on fresh connections until every pid in `expected` has answered one (each worker
// serves), or the bound passes. Returns the pids that answered; `body` gets one answer.
std::set<pid_t> answering_pids(Cluster& c, const std::set<pid_t>& expected, std::string* body) {
  std::set<pid_t> seen;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (seen != expected && std::chrono::steady_clock::now() < deadline) {
    const auto r = c.get("/", 5s);
    if (!r) continue;
    EXPECT_EQ(r->status, 200) << r->body;
    seen.insert(pid_in(r->body));
    if (body != nullptr) *body = r->body;
  }
  return seen;
}

void expect_every_worker_serves(Cluster& c, const std::string& expected_in_body) {
  c.wait_all_ready(2);
  const auto pids = worker_pids(c);
  ASSERT_EQ(pids.size(), 2U);
  std::string body;
  EXPECT_EQ(answering_pids(c, pids, &body), pids) << c.forkd.log();
  EXPECT_NE(body.find(expected_in_body), std::string::npos) << body;
  const auto log = c.forkd.log();
  EXPECT_EQ(log.find("EADDRINUSE"), std::string::npos) << log;
  EXPECT_EQ(log.find("Address already in use"), std::string::npos) << log;
  EXPECT_EQ(worker_pids(c), pids) << "a worker was restarted\n" << log;
}

TEST(BindTakeover, AnUnchangedNodeAppListeningOnItsPortIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\n" +
          worker_with("node, " + example("node/server.js"), "PORT: \"" + port + "\""));
  // server.address() says what the app asked for ([::] dual-stack), not forkd's 127.0.0.1.
  expect_every_worker_serves(c, "\"address\":\"::\",\"family\":\"IPv6\",\"port\":" + port);
  EXPECT_TRUE(c.forkd.wait_for_log(
      "bind takeover on: .*node is dynamically linked; workers are ready when they call "
      "listen\\(\\) on a forkd listener",
      1s));
}

TEST(BindTakeover, AnExpressStyleListenWithAHostIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\n" + worker_with("node, " + example("node/server.js"),
                                       "PORT: \"" + port + "\", HOST: 127.0.0.1"));
  expect_every_worker_serves(c, "\"address\":\"127.0.0.1\",\"family\":\"IPv4\",\"port\":" + port);
}

TEST(BindTakeover, AnUnchangedPythonHttpServerIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\n" + worker_with("python3, " + example("python/server.py"),
                                       "PORT: \"" + port + "\", PYTHONUNBUFFERED: \"1\""));
  expect_every_worker_serves(c, "listening on ('0.0.0.0', " + port + ")");
}

TEST(BindTakeover, ARawSocketBindListenAndBlockingAcceptIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\n" +
          worker_with("python3, " + fixture("raw_bind_server.py"), "PORT: \"" + port + "\""));
  expect_every_worker_serves(c, "bound ('0.0.0.0', " + port + ")");
}

TEST(BindTakeover, AnUnchangedPhpBuiltInServerIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  (void)c.dir.write_file("index.php", "<?php echo 'php pid ' . getmypid() . \"\\n\";\n");
  c.start("workers: 2\nworker:\n  command: [php, -S, \"0.0.0.0:" + port + "\", -t, " +
          c.dir.path() + "]\n");
  expect_every_worker_serves(c, "php pid ");
}

TEST(BindTakeover, AnUnchangedRubyTcpServerIsServedByEveryWorker) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\n" +
          worker_with("ruby, " + fixture("tcp_server.rb"), "PORT: \"" + port + "\""));
  expect_every_worker_serves(c, "ruby pid ");
}

TEST(BindTakeover, TheGoExampleServesThroughListenFdsAndSaysReady) {
  Cluster c;
  const std::string server = c.dir.file("server");
  const std::string cache = c.dir.file("go");
  const auto go = find_tool("go");
  ASSERT_TRUE(go) << "go (golang-go) is missing: scripts/install-deps installs it";
  const auto built = run_command({*go, "build", "-o", server, example("go/main.go")}, 120s,
                                 {{"HOME", cache},
                                  {"GOCACHE", cache + "/cache"},
                                  {"GOPATH", cache + "/path"},
                                  {"GO111MODULE", "off"},
                                  {"GOFLAGS", ""}});
  ASSERT_EQ(built.exit_code(), 0) << built.out << built.err;
  c.start("workers: 2\nworker:\n  command: [" + server + "]\n  ready: notify\n");
  expect_every_worker_serves(c, "hello from pid ");
}

TEST(BindTakeover, AnAppListeningOnAUnixSocketItClearsFirstIsServedByEveryWorker) {
  TempDir dir;
  const std::string path = dir.file("app.sock");
  ForkdProcess forkd;
  ForkdOptions options;
  options.config_yaml = "workers: 2\nlisten: [\"unix:" + path +
                        "\"]\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n" +
                        worker_with("node, " + example("node/server.js"), "SOCKET: " + path);
  forkd.start(dir, options);
  std::string why;
  ASSERT_TRUE(wait_workers_ready(forkd, dir.file("forkd.sock"), 2, std::nullopt, 30s, &why))
      << why << "\n"
      << forkd.log();
  std::set<pid_t> expected;
  if (const auto s = control_status(dir.file("forkd.sock"))) {
    for (const auto& w : (*s)["workers"]) expected.insert(w["pid"].get<pid_t>());
  }
  std::set<pid_t> seen;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (seen != expected && std::chrono::steady_clock::now() < deadline) {
    // The socket file is forkd's still: the workers' unlink() of it was ignored.
    const auto r = http_get("unix:" + path, 0, "/", 5s);
    ASSERT_TRUE(r.has_value()) << forkd.log();
    seen.insert(pid_in(r->body));
  }
  EXPECT_EQ(seen, expected) << forkd.log();
}

TEST(BindTakeover, WithoutItTheSecondWorkerCannotBindThePort) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  c.start("workers: 2\nrestart: {delay: 5s}\n" +
          worker_with("node, " + example("node/server.js"), "PORT: \"" + port + "\"") +
          "  inherit_bind: off\n");
  EXPECT_TRUE(c.forkd.wait_for_log("bind takeover off: worker.inherit_bind is off", 10s));
  EXPECT_TRUE(c.forkd.wait_for_log("EADDRINUSE", 20s)) << c.forkd.log();
}

TEST(BindTakeover, AReloadToAVersionThatNeverListensIsRejectedAndAnswersNothing) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  const std::string good =
      "workers: 2\n" + worker_with("node, " + example("node/server.js"), "PORT: \"" + port + "\"");
  c.start(good);
  c.wait_all_ready(2);
  const auto old_pids = worker_pids(c);
  ASSERT_EQ(old_pids.size(), 2U);

  // Requests all through the reload, each noting who answered it.
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::multiset<pid_t> answered_by;
  std::size_t failed = 0;
  std::thread load([&] {
    while (!stop) {
      const auto r = c.get("/", 5s);
      const std::lock_guard lock(mutex);
      if (r && r->status == 200) {
        answered_by.insert(pid_in(r->body));
      } else {
        ++failed;
      }
    }
  });
  c.rewrite_config("workers: 2\nworker:\n  command: [node, " + fixture("never_listens.js") +
                   "]\n  ready_timeout: 3s\n");
  const auto r = forkctl(c, {"reload"}, 60s);
  stop = true;
  load.join();
  EXPECT_EQ(r.exit_code(), 1) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("did not get ready"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(failed, 0U);
  EXPECT_GT(answered_by.size(), 0U);
  for (const pid_t pid : answered_by) {
    EXPECT_EQ(old_pids.count(pid), 1U) << "pid " << pid << " answered: not of the old generation";
  }
  EXPECT_EQ(worker_pids(c), old_pids);
  // The survivors' own record: the dead replacements' exits are not theirs.
  const auto s = control_status(c.control_socket);
  ASSERT_TRUE(s.has_value());
  for (const auto& w : (*s)["workers"]) {
    EXPECT_TRUE(w["last_exit"].is_null()) << w.dump();
    EXPECT_EQ(w["restarts"], 0) << w.dump();
  }
}

TEST(BindTakeover, AStaticProgramIsLeftAloneSaidSoAndReadyWhenStarted) {
  Cluster c;
  c.start("workers: 1\nworker:\n  command: [" + std::string(STATIC_SLEEPER_BIN) + "]\n");
  c.wait_all_ready(1);
  EXPECT_TRUE(c.forkd.wait_for_log(
      "bind takeover off: .*static_sleeper is statically linked \\(it cannot load the takeover "
      "library; use LISTEN_FDS\\); workers are ready when exec succeeds",
      1s))
      << c.forkd.log();
}

TEST(BindTakeover, ForcingItOnForAStaticProgramIsAConfigurationError) {
  TempDir dir;
  const std::string config =
      dir.write_file("forkd.yaml", "listen: [127.0.0.1:1]\nworker:\n  command: [" +
                                       std::string(STATIC_SLEEPER_BIN) + "]\n  inherit_bind: on\n");
  auto r = run_command({forkd_bin(), "--check-config", "-c", config}, 30s);
  EXPECT_EQ(r.exit_code(), 78) << r.out << r.err;
  EXPECT_NE(r.err.find(config + ": worker.inherit_bind: on, but "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is statically linked"), std::string::npos) << r.err;

  const std::string listening = dir.write_file(
      "listening.yaml", "listen: [127.0.0.1:1]\nworker:\n  command: [" +
                            std::string(STATIC_SLEEPER_BIN) + "]\n  ready: listening\n");
  r = run_command({forkd_bin(), "--check-config", "-c", listening}, 30s);
  EXPECT_EQ(r.exit_code(), 78) << r.out << r.err;
  EXPECT_NE(r.err.find("worker.ready: listening needs the bind takeover, which is off"),
            std::string::npos)
      << r.err;
}

TEST(BindTakeover, APortNoListenerServesIsLeftToTheProgramAndWarnedAboutOnce) {
  Cluster c;
  const std::string port = std::to_string(c.listener.port());
  const std::uint16_t other = free_tcp_port();
  const std::string app = c.dir.write_file(
      "two_servers.js",
      "const http = require('http');\n"
      "const handler = (q, s) => s.end(`pid ${process.pid}`);\n"
      "http.createServer(handler).listen(" +
          port +
          ");\n"
          "const side = http.createServer(handler);\n"
          "side.listen(" +
          std::to_string(other) + ", '127.0.0.1', () => console.log('side up'));\n");
  c.start("workers: 1\n" + worker_with("node, " + app, ""));
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.wait_for_log("side up", 20s));
  EXPECT_TRUE(
      c.forkd.wait_for_log("worker 0 \\(pid [0-9]+\\): port " + std::to_string(other) +
                               " is not a forkd listener: every worker will bind it \\(it binds "
                               "127.0.0.1:" +
                               std::to_string(other),
                           5s))
      << c.forkd.log();
  // The program's own socket works as it would without forkd.
  const auto side = http_get("127.0.0.1", other, "/", 5s);
  ASSERT_TRUE(side.has_value());
  EXPECT_EQ(side->status, 200);
}

TEST(BindTakeover, AProgramThatSaysReadyItselfIsReadyUnderAuto) {
  // A worker built on forkd's library never calls listen() (it serves the inherited socket as
  // it is): its "ready" message counts under `auto` with the takeover on.
  Cluster c;
  c.start("workers: 1\nworker:\n" + test_worker_command("--serve"));
  c.wait_all_ready(1);
  const auto r = c.get("/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

}  // namespace
