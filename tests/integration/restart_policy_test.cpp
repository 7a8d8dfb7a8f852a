// The restart policy and the master's pass, end to end: a ready worker that dies comes back at
// once however often it is killed; a worker that never gets ready backs off and counts toward
// restart.max_failures whatever its uptime; a replacement decided inside an IPC handler
// completes without any other event. Synchronised on status and /proc, not on time.
#include <signal.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "tests/integration/test_support.hpp"

namespace forkd::test {
namespace {

// `forkctl --json status`, or null while the control socket does not answer yet.
nlohmann::json status(Cluster& c) {
  const auto r = forkctl(c, {"--json", "status"});
  if (r.exit_code() != 0) return nullptr;
  return nlohmann::json::parse(r.out, nullptr, false);
}

// The pid serving slot `id` once it is ready, or nullopt.
std::optional<pid_t> ready_pid(Cluster& c, unsigned id) {
  const auto s = status(c);
  if (!s.is_object()) return std::nullopt;
  for (const auto& w : s["workers"]) {
    if (w["id"] == id && w["state"] == "ready" && w["pid"].is_number())
      return w["pid"].get<pid_t>();
  }
  return std::nullopt;
}

std::string slot_state(Cluster& c, unsigned id) {
  const auto s = status(c);
  if (!s.is_object()) return "";
  for (const auto& w : s["workers"]) {
    if (w["id"] == id) return w["state"].get<std::string>();
  }
  return "";
}

TEST(RestartPolicyTest, ReadyWorkerKilledOverAndOverIsBackAtOnceWhileTheOtherServes) {
  Cluster c;
  // Defaults otherwise: min_uptime 1s, delay 100ms. Each kill lands well within min_uptime of
  // the worker's start, as a request that crashes its worker would.
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  pid_t previous = -1;
  for (int kill = 0; kill < 10; ++kill) {
    std::optional<pid_t> pid;
    ASSERT_TRUE(wait_until(
        [&] {
          pid = ready_pid(c, 0);
          return pid && *pid != previous;
        },
        20s))
        << "slot 0 not back after kill " << kill;
    ASSERT_EQ(::kill(*pid, SIGKILL), 0);
    previous = *pid;
    const auto r = c.get("/");
    ASSERT_TRUE(r) << "the other worker stopped serving at kill " << kill;
    EXPECT_EQ(r->status, 200);
  }
  ASSERT_TRUE(wait_until([&] { return ready_pid(c, 0) && *ready_pid(c, 0) != previous; }, 20s));
  // Never a backoff delay for a worker that had been ready.
  EXPECT_EQ(c.forkd.log().find("respawning worker 0 in "), std::string::npos) << c.forkd.log();
}

TEST(RestartPolicyTest, NeverReadyExitAfterMinUptimeBacksOffAndReachesMaxFailures) {
  Cluster c;
  c.start(
      "workers: 1\nrestart:\n  delay: 100ms\n  max_delay: 5s\n  min_uptime: 200ms\n"
      "  max_failures: 3\nworker:\n" +
      test_worker_command("--never-ready, --crash-after-ms, 500") + "  ready: message\n");
  ASSERT_TRUE(wait_until([&] { return slot_state(c, 0) == "failed"; }, 30s)) << c.forkd.log();
  const std::string log = c.forkd.log();
  EXPECT_NE(log.find("respawning worker 0 in 100ms"), std::string::npos) << log;
  EXPECT_NE(log.find("respawning worker 0 in 200ms"), std::string::npos) << log;
  EXPECT_NE(log.find("failed 3 times in a row"), std::string::npos) << log;
  // A failed slot runs nothing: no pid, no uptime (not "0s"), its last exit kept.
  const auto s = status(c);
  ASSERT_EQ(s["workers"].size(), 1U) << s.dump();
  EXPECT_TRUE(s["workers"][0]["pid"].is_null()) << s.dump();
  EXPECT_TRUE(s["workers"][0]["uptime_s"].is_null()) << s.dump();
  EXPECT_EQ(s["workers"][0]["last_exit"]["code"], 3) << s.dump();
  // Three failed starts are two restarts (the first start was not one), and status says both.
  EXPECT_EQ(s["workers"][0]["restarts"], 2) << s.dump();
  EXPECT_EQ(s["workers"][0]["failed_starts"], 3) << s.dump();
  const auto table = forkctl(c, {"status"});
  EXPECT_NE(table.out.find("failed (3 failed starts)"), std::string::npos) << table.out;
}

TEST(RestartPolicyTest, ReplacementDecidedInAnIpcHandlerCompletesWithoutAnotherEvent) {
  Cluster c;
  // Slot 0 floods slot 1 with relayed messages; slot 1 never reads its IPC socket, so its
  // queue overflows inside the master's IPC handler and the master replaces it. Nothing else
  // happens afterwards: no signal, no control request, no timer of the old process.
  const std::string go = c.dir.file("go");
  const std::string sender =
      "import os, time\n"
      "while not os.path.exists('" +
      go +
      "'):\n"
      "    time.sleep(0.01)\n"
      "fd = int(os.environ['FORKD_IPC_FD'])\n"
      "line = ('{\"forkd\":\"send\",\"to\":1,\"data\":\"' + 'x' * 1000 + '\"}\\n').encode()\n"
      "for _ in range(2000):\n"
      "    os.write(fd, line)\n"
      "time.sleep(600)\n";
  const std::string script = c.dir.write_file("sender.py", sender);
  c.start(
      "workers: 2\nrestart:\n  min_uptime: 100ms\nipc:\n  max_message: 4KiB\nworker:\n"
      "  shell: 'if [ \"$FORKD_WORKER_ID\" = 0 ]; then exec python3 " +
      script + "; else exec sleep 600; fi'\n  ready: started\n");
  c.wait_all_ready(2);
  const auto stuck = ready_pid(c, 1);
  ASSERT_TRUE(stuck);
  c.dir.write_file("go", "");
  // Observed through /proc only: the stuck worker is replaced and then gone.
  ASSERT_TRUE(wait_until([&] { return ::kill(*stuck, 0) != 0; }, 20s))
      << "the stuck worker is still running; log:\n"
      << c.forkd.log();
  const std::string log = c.forkd.log();
  EXPECT_NE(log.find("does not read its IPC channel"), std::string::npos);
  // Said when the replacement is decided, not once per dropped message of the flood (a
  // replacement that stops reading too may be said once more).
  std::size_t said = 0;
  for (auto at = log.find("message dropped"); at != std::string::npos;
       at = log.find("message dropped", at + 1)) {
    ++said;
  }
  EXPECT_LT(said, 10U) << "one error line per dropped message";
  const auto replacement = ready_pid(c, 1);
  ASSERT_TRUE(replacement);
  EXPECT_NE(*replacement, *stuck);
}

}  // namespace
}  // namespace forkd::test
