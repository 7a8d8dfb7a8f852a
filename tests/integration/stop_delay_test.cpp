// stop.delay: on SIGTERM /readyz turns 503 at once while the workers go on serving, so a load
// balancer (or Kubernetes' endpoint removal) stops sending before anything is refused; then the
// graceful drain. A second SIGTERM skips the rest of the delay.
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

std::string config_with_delay(std::uint16_t metrics_port, const std::string& delay,
                              unsigned workers = 1) {
  return "workers: " + std::to_string(workers) +
         "\nmetrics:\n  listen: 127.0.0.1:" + std::to_string(metrics_port) +
         "\nstop:\n  delay: " + delay + "\n";
}

int status_of(std::uint16_t port, const std::string& path) {
  const auto r = http_get("127.0.0.1", port, path, 5s);
  return r ? r->status : 0;
}

TEST(StopDelayTest, ReadyzTurns503AtOnceWhileWorkersServeAndASecondSigtermDrains) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  // Far longer than the test waits: it ends only through the second SIGTERM.
  c.start(config_with_delay(port, "10m"));
  c.wait_all_ready(1);
  ASSERT_EQ(status_of(port, "/readyz"), 200);

  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  ASSERT_TRUE(wait_until([&] { return status_of(port, "/readyz") == 503; }, 10s)) << c.forkd.log();
  // Still serving, still alive.
  for (int i = 0; i < 5; ++i) {
    const auto r = c.get("/");
    ASSERT_TRUE(r) << "request " << i << " was refused during stop.delay";
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(status_of(port, "/healthz"), 200);
  EXPECT_EQ(c.forkd.count_log("graceful stop"), 0U) << "the drain began before the delay ended";

  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  const auto exited = c.forkd.wait_exit(30s);
  ASSERT_TRUE(exited) << c.forkd.log();
  EXPECT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0) << describe_status(*exited);
  EXPECT_TRUE(c.forkd.wait_for_log("graceful stop", 1ms)) << c.forkd.log();
}

TEST(StopDelayTest, TheDrainFollowsTheDelayOnItsOwn) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start(config_with_delay(port, "300ms"));
  c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  const auto exited = c.forkd.wait_exit(30s);
  ASSERT_TRUE(exited) << c.forkd.log();
  EXPECT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0) << describe_status(*exited);
  const auto delay = c.forkd.wait_for_log("stop requested: /readyz answers 503", 1ms);
  ASSERT_TRUE(delay) << c.forkd.log();
  EXPECT_TRUE(c.forkd.wait_for_log("graceful stop", 1ms, delay->end_offset)) << c.forkd.log();
}

// A load balancer's view: it sends a stream of requests while /readyz says 200 and stops once it
// says 503 (Kubernetes removing the pod's endpoint). Nothing it sent may be lost, and the port
// may refuse connections only after /readyz said 503.
TEST(StopDelayTest, ARequestStreamLosesNothingAndIsRefusedOnlyAfterReadyzSaid503) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start(config_with_delay(port, "1500ms", 2));
  c.wait_all_ready(2);
  c.listener.close();  // forkd's sockets alone: the port refuses once they are closed
  ASSERT_EQ(status_of(port, "/readyz"), 200);

  int sent = 0;
  int answered = 0;
  bool signalled = false;
  bool saw_503 = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!saw_503 && std::chrono::steady_clock::now() < deadline) {
    const int ready = status_of(port, "/readyz");
    if (ready == 503) {
      saw_503 = true;
      EXPECT_EQ(status_of(port, "/healthz"), 200) << "liveness must hold until forkd exits";
      break;
    }
    ASSERT_EQ(ready, 200) << "readiness answered neither 200 nor 503";
    for (int i = 0; i < 5; ++i) {
      ++sent;
      const auto r = c.get("/", 10s);
      if (r && r->status == 200) ++answered;
    }
    if (!signalled && sent >= 20) signalled = c.forkd.signal(SIGTERM);
  }
  ASSERT_TRUE(saw_503) << c.forkd.log();
  EXPECT_EQ(answered, sent) << "requests lost before /readyz said 503";
  EXPECT_EQ(c.forkd.count_log("graceful stop"), 0U) << "the drain began before /readyz said 503";

  // The balancer has stopped sending; what a straggler sends still gets an answer until the
  // drain closes the listener, then the port refuses.
  bool refused = false;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    const auto r = c.get("/", 5s);
    refused = !r;
    if (r) {
      EXPECT_EQ(r->status, 200);
    }
  }
  EXPECT_TRUE(refused) << "the listener never closed";
  const auto exited = c.forkd.wait_exit(30s);
  ASSERT_TRUE(exited) << c.forkd.log();
  EXPECT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0) << describe_status(*exited);
}

}  // namespace
