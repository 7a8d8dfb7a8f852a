// Stopping: SIGTERM drains in-flight requests within shutdown_timeout and exits 0 with no
// process of the tree left; a second SIGTERM or SIGQUIT makes it fast.
#include <signal.h>

#include <future>
#include <thread>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

// Sends a slow request on its own connection and makes sure the single worker has read it: a
// second request on another connection, answered by the same worker, comes after it in the
// worker's event loop.
struct InFlight {
  std::future<std::optional<HttpResponse>> response;
};

InFlight start_slow_request(Cluster& c, int ms) {
  auto conn = std::make_shared<HttpConnection>(c.listener);
  EXPECT_TRUE(conn->is_open());
  InFlight f;
  f.response = std::async(std::launch::async,
                          [conn, ms] { return conn->get("/sleep?ms=" + std::to_string(ms)); });
  auto probe = c.get("/healthz");
  EXPECT_TRUE(probe && probe->status == 200);
  return f;
}

TEST(ShutdownTest, SigtermFinishesInFlightRequestsAndExitsZero) {
  Cluster c;
  c.start("workers: 1\nworker:\n  shutdown_timeout: 20s\n");
  c.wait_all_ready(1);
  const auto workers = c.forkd.children();
  auto slow = start_slow_request(c, 1500);
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  auto response = slow.response.get();
  ASSERT_TRUE(response) << "the in-flight request was lost";
  EXPECT_EQ(response->status, 200);
  auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  for (pid_t w : workers) EXPECT_FALSE(process_alive(w));
  EXPECT_NE(c.forkd.log().find("stopped (exit code 0)"), std::string::npos);
}

TEST(ShutdownTest, SecondSigtermMakesTheStopFast) {
  Cluster c;
  c.start("workers: 1\nworker:\n  shutdown_timeout: 60s\n");
  c.wait_all_ready(1);
  auto slow = start_slow_request(c, 60000);
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  ASSERT_TRUE(c.forkd.wait_for_log("graceful stop", 10s));
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  auto status = c.forkd.wait_exit(20s);
  ASSERT_TRUE(status) << "a second SIGTERM must not wait out the 60 s grace";
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  (void)slow.response.wait_for(10s);
}

TEST(ShutdownTest, SigquitIsAFastStop) {
  Cluster c;
  c.start("workers: 2\nworker:\n" + test_worker_command("--serve, --ignore-term") +
          "  ready: message\n  shutdown_timeout: 60s\n");
  c.wait_all_ready(2);
  const auto workers = c.forkd.children();
  ASSERT_TRUE(c.forkd.signal(SIGQUIT));
  auto status = c.forkd.wait_exit(20s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  for (pid_t w : workers) EXPECT_FALSE(process_alive(w));
  EXPECT_NE(c.forkd.log().find("sending SIGKILL"), std::string::npos);
}

TEST(ShutdownTest, WorkerIgnoringSigtermIsKilledAfterShutdownTimeout) {
  Cluster c;
  c.start("workers: 1\nworker:\n" + test_worker_command("--serve, --ignore-term") +
          "  ready: message\n  shutdown_timeout: 500ms\n");
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  auto status = c.forkd.wait_exit(20s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_NE(c.forkd.log().find("still running after its shutdown grace period"), std::string::npos);
}

TEST(ShutdownTest, SigintFromTheTerminalStopsGracefully) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  ASSERT_TRUE(c.forkd.signal(SIGINT));
  auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

}  // namespace
