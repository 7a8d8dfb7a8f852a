// reuseport connection steering: a worker that stops taking connections (SIGSTOP here, as a GC
// pause or a debugger would) is left out of the new connections after worker.stall_after, and
// taken back in once it has taken what was queued on its socket.
#include <signal.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

std::string steering_of(const ReuseportCluster& c, pid_t pid) {
  const json status = c.status();
  if (!status.is_object()) return "";
  for (const auto& w : status["workers"]) {
    if (w["pid"] == pid) return w["steering"].is_string() ? w["steering"].get<std::string>() : "";
  }
  return "";
}

// The accept-queue length of each listening socket on the port (ss's Recv-Q), or nullopt.
std::optional<std::vector<unsigned>> listen_queues(std::uint16_t port) {
  const auto ss = find_tool("ss");
  if (!ss) return std::nullopt;
  const auto r = run_command({*ss, "-ltnH", "sport = :" + std::to_string(port)}, 10s);
  if (r.exit_code() != 0) return std::nullopt;
  std::vector<unsigned> queues;
  std::istringstream lines(r.out);
  std::string state;
  unsigned recv_q = 0;
  std::string rest;
  while (lines >> state >> recv_q && std::getline(lines, rest)) queues.push_back(recv_q);
  return queues;
}

// A steady load of fresh connections puts some on the stopped worker's queue (each client thread
// is then held there until SIGCONT). Once the master has seen the stall, every new connection
// goes to the other worker: without steering, about half of them would wait on the stopped one.
// `from`: the log offset after which the master's lines count.
void expect_stopped_worker_left_out_and_taken_back(ReuseportCluster& c, std::size_t from) {
  const pid_t stopped = c.worker_pid(1);
  ASSERT_GT(stopped, 0) << c.status().dump();
  const std::string stopped_pid = std::to_string(stopped);

  LoadGenerator load(c.fresh_connections(4, 60s));
  load.start();
  ASSERT_TRUE(load.wait_for_ok(50, 20s));

  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  const auto stalled = c.forkd.wait_for_log(
      R"(worker 1 \(pid )" + stopped_pid +
          R"(\) stalled: \d+ connections queued for 200ms, no new connections until it takes them again)",
      20s, from);
  const bool seen = stalled.has_value();
  std::size_t answered_by_other = 0;
  std::vector<std::string> misses;
  if (seen) {
    EXPECT_EQ(steering_of(c, stopped), "stalled");
    for (int i = 0; i < 20; ++i) {
      std::string error;
      const auto r = http_get("127.0.0.1", c.port, "/", 2s, &error);
      if (r && r->status == 200 && r->header("x-worker-pid") != stopped_pid) {
        ++answered_by_other;
      } else {
        misses.push_back(r ? r->header("x-worker-pid") : error);
      }
    }
  }
  ASSERT_EQ(::kill(stopped, SIGCONT), 0);
  ASSERT_TRUE(seen) << c.forkd.log();
  EXPECT_EQ(answered_by_other, 20U) << ::testing::PrintToString(misses);

  ASSERT_TRUE(c.forkd.wait_for_log(
      R"(worker 1 \(pid )" + stopped_pid +
          R"(\) (took its queued connections|runs again, its queue empty): it gets new connections again)",
      20s, stalled->end_offset))
      << c.forkd.log();
  EXPECT_TRUE(wait_until([&] { return steering_of(c, stopped) == "in"; }, 10s));
  // It answers fresh connections again: what was queued on it was at most one per client thread.
  const auto before = load.tally()[stopped_pid];
  EXPECT_TRUE(wait_until([&] { return load.tally()[stopped_pid] >= before + 30; }, 20s))
      << ::testing::PrintToString(load.tally());
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
}

TEST(SteeringTest, StoppedWorkerGetsNoNewConnectionsUntilItTakesThemAgain) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  expect_stopped_worker_left_out_and_taken_back(c, 0);
}

// The old master hands its groups' order over with the sockets: the new master steers them from
// its first moment, where it used to leave them to the kernel's hash for the rest of its life.
TEST(SteeringTest, AHotUpgradesNewMasterSteersTheSocketsItTakesOver) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  const auto handed = c.forkd.hot_upgrade();
  ASSERT_TRUE(handed) << c.forkd.log();
  const pid_t successor = std::stoi((*handed)[1]);
  EXPECT_TRUE(
      c.forkd.wait_for_log("reuseport " + c.address() +
                               ": steering the 2 sockets passed in, in the previous master's order",
                           10s));
  ASSERT_TRUE(c.forkd.wait_exit(30s));  // the old master has drained and gone
  std::string why;
  ASSERT_TRUE(wait_workers_ready(c.forkd, c.dir.file("forkd.sock"), 2, std::nullopt, 30s, &why))
      << why;
  for (const pid_t p : child_pids(successor)) c.forkd.track(p);
  for (const pid_t p : child_pids(successor)) {
    EXPECT_TRUE(wait_until([&] { return steering_of(c, p) == "in"; }, 10s)) << p;
  }
  EXPECT_EQ(c.forkd.count_log("not steered"), 0U) << c.forkd.log();
  expect_stopped_worker_left_out_and_taken_back(c, handed->end_offset);
  ::kill(successor, SIGTERM);
  EXPECT_TRUE(wait_until([&] { return !process_alive(successor); }, 30s));
}

// The stretch of issue #15: what was queued on the stopped worker's socket before the master saw
// the stall is handed to the other worker, which serves it while the stopped one still sleeps.
// Without that, those clients wait for SIGCONT (here: until their 3 s timeout fails them).
TEST(SteeringTest, AStoppedWorkersQueuedConnectionsAreServedByAnother) {
  ReuseportCluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2));
  const pid_t stopped = c.worker_pid(1);
  const pid_t other = c.worker_pid(0);
  ASSERT_GT(stopped, 0) << c.status().dump();
  ASSERT_GT(other, 0) << c.status().dump();

  LoadGenerator load(c.fresh_connections(4, 3s));
  load.start();
  ASSERT_TRUE(load.wait_for_ok(50, 20s));

  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  const auto seen = c.forkd.wait_for_log(
      R"(worker 1 \(pid )" + std::to_string(stopped) + R"(\) stalled: \d+ connections queued)",
      20s);
  bool emptied = false;
  std::vector<unsigned> last;
  std::uint64_t ok_after = 0;
  if (seen) {
    // Every socket's queue empties while the worker is still stopped, and the clients that were
    // queued behind it go on: each of the 4 gets answers again.
    emptied = wait_until(
        [&] {
          last = listen_queues(c.port).value_or(std::vector<unsigned>{99});
          return std::all_of(last.begin(), last.end(), [](unsigned q) { return q == 0; });
        },
        10s);
    const auto before = load.ok();
    ok_after = load.wait_for_ok(before + 100, 10s) ? load.ok() - before : 0;
  }
  const std::uint64_t failed_while_stopped = load.failed();
  // Its queue was emptied for it, not by it: it stays out until it runs again.
  const std::string state_while_stopped = steering_of(c, stopped);
  // (The other worker may be seen stalled and back too on a slow machine: one against four
  // clients.)
  const std::size_t back_while_stopped = c.forkd.count_log(
      R"(worker 1 \(pid )" + std::to_string(stopped) + R"(\) .*gets new connections again)");
  ASSERT_EQ(::kill(stopped, SIGCONT), 0);
  EXPECT_EQ(state_while_stopped, "stalled");
  EXPECT_EQ(back_while_stopped, 0U) << c.forkd.log();
  EXPECT_TRUE(c.forkd.wait_for_log(
      R"(worker 1 \(pid )" + std::to_string(stopped) +
          R"(\) (took its queued connections|runs again, its queue empty): it gets new connections again)",
      20s));
  ASSERT_TRUE(seen) << c.forkd.log();
  EXPECT_GE(c.forkd.count_log(R"(worker 1 \(pid )" + std::to_string(stopped) +
                              R"(\): its queued connections go to worker 0 \(pid )" +
                              std::to_string(other) + R"(\) meanwhile)"),
            1U)
      << c.forkd.log();
  EXPECT_TRUE(emptied) << ::testing::PrintToString(last);
  EXPECT_GE(ok_after, 100U);
  EXPECT_EQ(failed_while_stopped, 0U) << ::testing::PrintToString(load.failures());
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << ::testing::PrintToString(load.failures());
}

}  // namespace
