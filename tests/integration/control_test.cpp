// The operator's control plane end to end: forkctl against a real forkd, worker messages
// relayed by the master, the control socket's defences, health checks that kill and replace.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/integration/test_support.hpp"
#include "tests/sanitizer_build.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

std::string relay_worker_config(unsigned workers, const std::string& extra_flags = "") {
  return "workers: " + std::to_string(workers) + "\nworker:\n  command: [python3, " +
         fixture("ipc_worker.py") + (extra_flags.empty() ? "" : ", " + extra_flags) +
         "]\n  ready: message\n";
}

json status(Cluster& c) {
  auto r = forkctl(c, {"--json", "status"});
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  return json::parse(r.out);
}

TEST(ControlTest, StatusListsEveryWorkerWithItsPidAndState) {
  Cluster c;
  c.start("workers: 3\n");
  c.wait_all_ready(3);
  const json s = status(c);
  ASSERT_EQ(s["workers"].size(), 3U) << s.dump();
  std::set<pid_t> pids;
  for (const auto& w : s["workers"]) {
    EXPECT_EQ(w["state"], "ready");
    EXPECT_EQ(w["generation"], 1);
    EXPECT_TRUE(w["last_exit"].is_null());
    EXPECT_GT(w["rss_bytes"].get<long>(), 0);
    pids.insert(w["pid"].get<pid_t>());
  }
  const auto children = c.forkd.children();
  EXPECT_EQ(pids, std::set<pid_t>(children.begin(), children.end()));
  EXPECT_EQ(s["master"]["pid"], c.forkd.pid());
  EXPECT_EQ(s["master"]["workers_ready"], 3);
  EXPECT_GT(s["master"]["rss_bytes"].get<long>(), 0);
  EXPECT_TRUE(s["master"]["cpu_percent"].is_number()) << s.dump();
  EXPECT_EQ(s["master"]["listeners"],
            json::array({{{"name", "listen0"}, {"address", c.listener.address()}}}));
  for (const auto& w : s["workers"]) {
    EXPECT_EQ(w["command"], "app http-hello");
    EXPECT_TRUE(w["cpu_percent"].is_number()) << w.dump();
  }
  EXPECT_TRUE(s["master"]["last_reload"].is_null());
  EXPECT_EQ(s["master"]["config"], c.forkd.config_path());
  // The table a person reads names every pid and state.
  auto table = forkctl(c, {"status"});
  ASSERT_EQ(table.exit_code(), 0);
  EXPECT_NE(table.out.find("STATE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(": 3/3 workers ready, generation 1"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("listening on " + c.listener.address() + " (listen0)"),
            std::string::npos)
      << table.out;
  for (pid_t p : pids) EXPECT_NE(table.out.find(std::to_string(p)), std::string::npos) << table.out;
}

TEST(ControlTest, SendReachesOnlyTheIntendedWorkerAndWaitPrintsItsReply) {
  Cluster c;
  c.start("workers: 3\n");
  c.wait_all_ready(3);
  EventStream events;
  events.start(c);
  ASSERT_TRUE(wait_until([&] { return status(c)["workers"].size() == 3; }, 10s));
  auto r = forkctl(c, {"send", "1", R"({"n":1})", "--wait", "5s"});
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  const json reply = json::parse(r.out);
  EXPECT_EQ(reply["echo"], json({{"n", 1}}));
  EXPECT_EQ(reply["worker"], 1);
  auto m = events.wait_for(R"("event":"message")");
  ASSERT_TRUE(m) << events.process.stdout_text();
  EXPECT_NE(m->line.find(R"("worker":1)"), std::string::npos) << m->line;
  // Without --wait it only delivers; the echo still shows in events.
  auto plain = forkctl(c, {"send", "2", R"("ping")"});
  EXPECT_EQ(plain.exit_code(), 0) << plain.err;
  auto second = events.wait_for(R"("echo":"ping")", m->end_offset);
  ASSERT_TRUE(second);
  EXPECT_NE(second->line.find(R"("worker":2)"), std::string::npos) << second->line;
  EXPECT_EQ(events.process.stdout_text().find(R"("echo":"ping","pid":)"),
            events.process.stdout_text().rfind(R"("echo":"ping","pid":)"));
  // A worker that does not exist is refused.
  auto missing = forkctl(c, {"send", "7", "1"});
  EXPECT_EQ(missing.exit_code(), 1);
}

TEST(ControlTest, OperatorBroadcastReachesEveryWorker) {
  Cluster c;
  c.start("workers: 3\nlog: {level: debug}\n");
  c.wait_all_ready(3);
  EventStream events;
  events.start(c);
  ASSERT_TRUE(wait_until([&] { return status(c)["workers"].size() == 3; }, 10s));
  auto r = forkctl(c, {"broadcast", R"({"b":2})"});
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out, "delivered to 3 workers\n");
  std::set<int> answered;
  std::size_t from = 0;
  for (int i = 0; i < 3; ++i) {
    auto m = events.wait_for(R"("echo":\{"b":2\})", from);
    ASSERT_TRUE(m) << events.process.stdout_text();
    answered.insert(json::parse(m->line)["worker"].get<int>());
    from = m->end_offset;
  }
  EXPECT_EQ(answered, (std::set<int>{0, 1, 2}));
  const auto sent = forkctl(c, {"send", "1", R"({"c":3})"});
  EXPECT_EQ(sent.out.rfind("delivered to worker 1 (pid ", 0), 0U) << sent.out;
  // The workers' answers are in the log at debug level, with no subscriber needed.
  EXPECT_TRUE(c.forkd.wait_for_log(
      R"(\[debug\] master: worker 1 \(pid \d+\) message: \{"echo":\{"c":3\})", 10s))
      << c.forkd.log();
}

TEST(ControlTest, WorkerBroadcastReachesItsSiblingsAndSendReachesOne) {
  Cluster c;
  c.start(relay_worker_config(3));
  c.wait_all_ready(3);
  EventStream events;
  events.start(c);
  ASSERT_TRUE(wait_until([&] { return status(c)["workers"].size() == 3; }, 10s));
  ASSERT_EQ(forkctl(c, {"send", "0", R"({"broadcast":{"x":1}})"}).exit_code(), 0);
  std::set<int> got;
  std::size_t from = 0;
  for (int i = 0; i < 2; ++i) {
    auto m = events.wait_for(R"("got":\{"x":1\})", from);
    ASSERT_TRUE(m) << events.process.stdout_text();
    got.insert(json::parse(m->line)["data"]["worker"].get<int>());
    from = m->end_offset;
  }
  EXPECT_EQ(got, (std::set<int>{1, 2}));
  // Worker 0 asks the master to deliver to worker 2 only.
  ASSERT_EQ(forkctl(c, {"send", "0", R"({"send_to":2,"data":"for two"})"}).exit_code(), 0);
  auto m = events.wait_for(R"("got":"for two")", from);
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->line)["data"]["worker"], 2);
}

TEST(ControlTest, MalformedAndOversizedIpcMessagesAreDroppedAndTheMasterServesOn) {
  Cluster c;
  c.start(relay_worker_config(1, "--garbage") + "ipc:\n  max_message: 1KiB\n");
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.wait_for_log("IPC: malformed JSON line dropped", 10s));
  ASSERT_TRUE(c.forkd.wait_for_log("IPC: message over ipc.max_message dropped", 10s));
  auto r = forkctl(c, {"send", "0", R"("still here")", "--wait", "5s"});
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_NE(r.out.find("still here"), std::string::npos);
  EXPECT_TRUE(c.forkd.running());
}

TEST(ControlTest, MalformedAndOversizedControlRequestsGetErrors) {
  Cluster c;
  c.start("workers: 1\nipc:\n  max_message: 1KiB\n");
  c.wait_all_ready(1);
  const std::string sock = c.dir.file("forkd.sock");
  const json bad = json::parse(control_request(sock, "{nope\n"));
  EXPECT_EQ(bad["ok"], false);
  const json unknown = json::parse(control_request(sock, R"({"cmd":"fly"})"
                                                         "\n"));
  EXPECT_EQ(unknown["ok"], false);
  EXPECT_NE(unknown["error"].get<std::string>().find("fly"), std::string::npos);
  const json wrong_type =
      json::parse(control_request(sock, R"({"cmd":"send","worker":"zero","data":1})"
                                        "\n"));
  EXPECT_EQ(wrong_type["ok"], false);
  const std::string huge = R"({"cmd":"status","pad":")" + std::string(4096, 'x') + "\"}\n";
  const std::string reply = control_request(sock, huge);
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(json::parse(reply)["ok"], false);
  EXPECT_EQ(status(c)["workers"].size(), 1U);
}

TEST(ControlTest, UnauthorisedUidIsRefusedAndLogged) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run forkctl as nobody";
  Cluster c;
  ::chmod(c.dir.path().c_str(), 0755);
  c.start("workers: 1\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\n  mode: \"0666\"\n");
  c.wait_all_ready(1);
  auto r = run_command({forkctl_bin(), "-s", c.dir.file("forkd.sock"), "status"}, 20s, {},
                       Credentials{65534, 65534});
  EXPECT_EQ(r.exit_code(), 1) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("permission denied"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(c.forkd.wait_for_log("uid 65534", 10s));
}

TEST(ControlTest, ForkctlSaysWhenTheDaemonIsNotRunning) {
  TempDir dir;
  auto r = run_command({forkctl_bin(), "-s", dir.file("none.sock"), "status"}, 10s);
  EXPECT_EQ(r.exit_code(), 2);
  EXPECT_NE(r.err.find(dir.file("none.sock")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST(ControlTest, ScaleUpAndDown) {
  Cluster c;
  c.start("workers: 1\n");
  c.wait_all_ready(1);
  auto up = forkctl(c, {"scale", "+2"});
  ASSERT_EQ(up.exit_code(), 0) << up.err;
  c.wait_all_ready(3);
  EXPECT_EQ(status(c)["workers"].size(), 3U);
  ASSERT_EQ(forkctl(c, {"scale", "-1"}).exit_code(), 0);
  EXPECT_TRUE(wait_until([&] { return c.forkd.children().size() == 2; }, 20s));
  ASSERT_EQ(forkctl(c, {"scale", "1"}).exit_code(), 0);
  EXPECT_TRUE(wait_until([&] { return c.forkd.children().size() == 1; }, 20s));
  EXPECT_EQ(forkctl(c, {"scale", "0"}).exit_code(), 1);
  EXPECT_EQ(forkctl(c, {"scale", "-5"}).exit_code(), 1);
}

TEST(ControlTest, RestartAllUnderLoadLosesNoRequest) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto before = c.forkd.children();
  LoadOptions options;
  options.address = c.listener.address();
  LoadGenerator load(options);
  load.start();
  ASSERT_TRUE(load.wait_for_ok(50, 20s));
  auto r = forkctl(c, {"restart", "all"}, 60s);
  EXPECT_EQ(r.exit_code(), 0) << r.out << r.err;
  const auto ok_at_restart = load.ok();
  ASSERT_TRUE(load.wait_for_ok(ok_at_restart + 50, 20s));
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
  const auto after = c.forkd.children();
  ASSERT_EQ(after.size(), 2U);
  for (pid_t p : after) EXPECT_EQ(std::count(before.begin(), before.end(), p), 0);
}

TEST(ControlTest, HungWorkerIsKilledAfterHeartbeatTimeoutAndReplaced) {
  Cluster c;
  c.start("workers: 1\nworker:\n  heartbeat_timeout: 1s\n");
  auto from = c.wait_all_ready(1);
  const pid_t hung = c.forkd.children().at(0);
  // An endless computation: the worker's loop cannot send heartbeats any more.
  // Ends when the worker is killed (the connection resets); joined when the test ends.
  std::jthread hang([port = c.listener.port()] {
    (void)http_get("127.0.0.1", port, "/compute?n=1000000000000000", 30s);
  });
  auto killed =
      c.forkd.wait_for_log("worker 0 \\(pid " + std::to_string(hung) +
                               "\\): no heartbeat within heartbeat_timeout; sending SIGKILL",
                           20s, from);
  ASSERT_TRUE(killed);
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 ready \\(pid", 20s, killed->end_offset));
  EXPECT_FALSE(process_alive(hung));
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ControlTest, MemoryHogIsRecycledWithItsReplacementReadyFirst) {
  Cluster c;
  c.start(relay_worker_config(1) + "  max_memory: 64MiB\n");
  auto from = c.wait_all_ready(1);
  EventStream events;
  events.start(c);
  ASSERT_TRUE(wait_until([&] { return status(c)["workers"].size() == 1; }, 10s));
  const pid_t hog = c.forkd.children().at(0);
  ASSERT_EQ(forkctl(c, {"send", "0", R"({"alloc_mib":100})", "--wait", "10s"}).exit_code(), 0);
  ASSERT_TRUE(c.forkd.wait_for_log("over max_memory", 20s, from));
  auto ready = events.wait_for(R"("event":"worker_ready")");
  ASSERT_TRUE(ready);
  EXPECT_NE(json::parse(ready->line)["pid"], hog);
  auto exited = events.wait_for(R"("event":"worker_exited".*"pid":)" + std::to_string(hog),
                                ready->end_offset);
  EXPECT_TRUE(exited) << "the hog must be stopped after its replacement is ready:\n"
                      << events.process.stdout_text();
}

TEST(ControlTest, MaxLifetimeRecyclesGracefully) {
  Cluster c;
  c.start("workers: 1\nworker:\n  max_lifetime: 1s\n");
  auto from = c.wait_all_ready(1);
  auto m = c.forkd.wait_for_log("reached worker.max_lifetime; starting its replacement", 20s, from);
  ASSERT_TRUE(m);
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 \\(pid \\d+\\) stopped: exited with code 0", 20s,
                                   m->end_offset));
}

TEST(ControlTest, MetricsParseAsPrometheusTextAndProbesAnswer) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start("workers: 2\nmetrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n");
  c.wait_all_ready(2);
  auto health = http_get("127.0.0.1", port, "/healthz", 10s);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http_get("127.0.0.1", port, "/readyz", 10s);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto metrics = http_get("127.0.0.1", port, "/metrics", 10s);
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("forkd_workers{state=\"ready\"} 2"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("forkd_master_uptime_seconds"), std::string::npos);
  const auto path = c.dir.write_file("metrics.txt", metrics->body);
  auto parsed = run_command(
      {"/usr/bin/python3", "-c",
       "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n"
       "names = {f.name for f in p(open(sys.argv[1]).read())}\nprint(sorted(names))\n"
       "assert 'forkd_workers' in names and 'forkd_worker_restarts' in names, names\n",
       path},
      30s);
  EXPECT_EQ(parsed.exit_code(), 0) << parsed.out << parsed.err;
}

// Each worker's connection counts reach status, the table and the metrics; a slot's counter goes
// on counting past a worker that dies.
TEST(ControlTest, StatusAndMetricsCountEachWorkersConnections) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start("workers: 2\nmetrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n");
  c.wait_all_ready(2);
  constexpr int kRequests = 30;
  std::map<pid_t, int> answered;  // the workers' pids as the responses name them
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.get("/");  // a connection each
    ASSERT_TRUE(r && r->status == 200);
    ++answered[std::stoi(r->headers["x-worker-pid"])];
  }
  json s;
  const auto counted = [&] {
    s = status(c);
    for (const auto& w : s["workers"]) {
      const auto seen = answered.find(w["pid"].get<pid_t>());
      const int expected = seen == answered.end() ? 0 : seen->second;
      if (expected == 0 && w["accepted"].is_null()) continue;  // never told: nothing to tell
      if (!w["accepted"].is_number() || w["accepted"] != expected || w["connections"] != 0) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(wait_until(counted, 10s)) << s.dump();
  auto table = forkctl(c, {"status"});
  EXPECT_NE(table.out.find("ACCEPTED"), std::string::npos) << table.out;

  // Worker 0 dies; its replacement starts from 0 but the slot's counter does not go back.
  const json w0 = s["workers"][0];
  const int before = w0["accepted"].is_number() ? w0["accepted"].get<int>() : 0;
  ASSERT_EQ(::kill(w0["pid"].get<pid_t>(), SIGKILL), 0);
  ASSERT_TRUE(wait_until(
      [&] {
        const json now = status(c);
        return now["workers"][0]["pid"] != w0["pid"] && now["workers"][0]["state"] == "ready";
      },
      20s));
  auto metrics = http_get("127.0.0.1", port, "/metrics", 10s);
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_NE(metrics->body.find("forkd_worker_accepted_connections_total{worker=\"0\"} " +
                               std::to_string(before)),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("# TYPE forkd_worker_open_connections gauge"), std::string::npos);
}

// Out of descriptors, accept() on the control socket fails: the master retries every 100 ms
// rather than spinning, its workers serve on, and the socket answers again once fds are free.
TEST(ControlTest, AcceptFailingForLackOfFdsIsRetriedWithoutSpinning) {
  if (kSanitizerBuild) {
    GTEST_SKIP()
        << "fd exhaustion is not testable under the sanitizers (tests/sanitizer_build.hpp)";
  }
  Cluster c;
  c.start("workers: 1\n");
  const auto ready = c.wait_all_ready(1);
  const pid_t master = c.forkd.pid();
  int highest = 0;
  for (const auto& fd : open_fds(master)) highest = std::max(highest, std::stoi(fd));
  // Room for the free numbers below the highest one and two more: 32 clients exhaust it.
  // Only the soft limit moves: raising it back needs no privilege.
  rlimit saved{};
  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, nullptr, &saved), 0) << std::strerror(errno);
  const rlimit tight{static_cast<rlim_t>(highest + 3), saved.rlim_max};
  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, &tight, nullptr), 0) << std::strerror(errno);

  std::vector<forkd::common::UniqueFd> clients;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = c.dir.file("forkd.sock");
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  for (int i = 0; i < 32; ++i) {
    forkd::common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0)
        << std::strerror(errno);
    clients.push_back(std::move(fd));
  }
  const std::string failed = "control socket .*: accept failed: Too many open files";
  const auto first = c.forkd.wait_for_log(failed, 20s, ready);
  ASSERT_TRUE(first) << c.forkd.log();
  const long before = cpu_ticks(master);
  auto later = c.forkd.wait_for_log(failed, 20s, first->end_offset);
  ASSERT_TRUE(later);
  later = c.forkd.wait_for_log(failed, 20s, later->end_offset);
  ASSERT_TRUE(later);
  // Two retries 100 ms apart each (by the log's own clock), and little CPU meanwhile: a loop
  // retrying at once would log thousands of lines and burn the whole interval.
  const auto ms_of_day = [](const std::string& line) {  // "2026-11-29T15:56:51.138Z ..."
    return ((std::stol(line.substr(11, 2)) * 60 + std::stol(line.substr(14, 2))) * 60 +
            std::stol(line.substr(17, 2))) *
               1000 +
           std::stol(line.substr(20, 3));
  };
  const long apart = (ms_of_day(later->line) - ms_of_day(first->line) + 86400000) % 86400000;
  EXPECT_GE(apart, 190) << first->line << later->line;
  EXPECT_LT(cpu_ticks(master) - before, ::sysconf(_SC_CLK_TCK) / 10);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  clients.clear();
  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, &saved, nullptr), 0);
  const auto status = forkctl(c, {"status"});
  EXPECT_EQ(status.exit_code(), 0) << status.out << status.err;
}

}  // namespace
