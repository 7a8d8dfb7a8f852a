// Connection steering on a shared listener (SPEC "Connection steering"): a burst of keep-alive
// connections opened at once, as a load balancer's pool or `wrk -c50` opens them, is spread over
// the workers instead of landing mostly on the one that happened to wake first.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

TEST(ConnectionSpreadTest, KeepAliveBurstIsSharedByBothWorkers) {
  Cluster c;
  c.start("workers: 2\nworker:\n  app: http-hello\n");
  ASSERT_GT(c.wait_all_ready(2), 0U);

  constexpr std::size_t kConnections = 40;
  // All connected before any request, so each worker's share is fixed by who accepted what.
  std::vector<std::unique_ptr<HttpConnection>> connections;
  for (std::size_t i = 0; i < kConnections; ++i) {
    connections.push_back(std::make_unique<HttpConnection>(c.listener));
    ASSERT_TRUE(connections.back()->is_open()) << connections.back()->error();
  }
  std::map<std::string, std::size_t> per_worker;
  for (auto& connection : connections) {
    auto r = connection->get("/");
    ASSERT_TRUE(r) << connection->error();
    ++per_worker[r->header("x-worker-id")];
  }
  ASSERT_EQ(per_worker.size(), 2U) << "one worker took all " << kConnections;
  // Generous, so that a loaded machine cannot make it flake: an even split is 20/20 and the share
  // rule stops a worker at 22. The accept loop before failed this in 11 of 40 runs (40/0, 37/3,
  // 34/6 ...); the new one in 1 of 130, with builds running beside.
  for (const auto& [worker, count] : per_worker) {
    EXPECT_GE(count, 8U) << "worker " << worker << " got " << count << " of " << kConnections;
  }
}

}  // namespace
