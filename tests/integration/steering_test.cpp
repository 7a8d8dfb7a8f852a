// reuseport connection steering: a worker that stops taking connections (SIGSTOP here, as a GC
// pause or a debugger would) is left out of the new connections after worker.stall_after, and
// taken back in once it has taken what was queued on its socket.
#include <signal.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

std::string steering_of(const ReuseportCluster& c, pid_t pid) {
  const auto st = c.forkctl({"--json", "status"});
  if (st.exit_code() != 0) return "";
  const json status = json::parse(st.out);
  for (const auto& w : status["workers"]) {
    if (w["pid"] == pid) return w["steering"].is_string() ? w["steering"].get<std::string>() : "";
  }
  return "";
}

// A steady load of fresh connections puts some on the stopped worker's queue (each client thread
// is then held there until SIGCONT). Once the master has seen the stall, every new connection
// goes to the other worker: without steering, about half of them would wait on the stopped one.
// `from`: the log offset after which the master's lines count.
void expect_stopped_worker_left_out_and_taken_back(ReuseportCluster& c, std::size_t from) {
  const auto st = c.forkctl({"--json", "status"});
  ASSERT_EQ(st.exit_code(), 0) << st.err;
  pid_t stopped = 0;
  const json status = json::parse(st.out);
  for (const auto& w : status["workers"]) {
    if (w["id"] == 1) stopped = w["pid"].get<pid_t>();
  }
  ASSERT_GT(stopped, 0) << st.out;
  const std::string stopped_pid = std::to_string(stopped);

  LoadOptions lo;
  lo.address = c.address();
  lo.keepalive_clients = 0;
  lo.fresh_clients = 4;
  lo.request_timeout = 60s;
  LoadGenerator load(lo);
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

  ASSERT_TRUE(
      c.forkd.wait_for_log(R"(worker 1 \(pid )" + stopped_pid +
                               R"(\) took its queued connections: it gets new connections again)",
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

}  // namespace
