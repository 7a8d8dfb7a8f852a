// worker.command as the running daemon finds it: through the PATH the worker gets, the same
// way for --check-config and for every spawn.
#include <filesystem>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

TEST(WorkerProgramTest, ABareCommandFoundThroughWorkerEnvPathIsCheckedAndRun) {
  Cluster c;
  const std::string bin = c.dir.file("only-here");
  std::filesystem::create_directory(bin);
  // A name no PATH of the test's has: only worker.env.PATH leads to it.
  std::filesystem::create_symlink(test_worker_bin(), bin + "/forkd-env-path-worker");
  const std::string body =
      "workers: 2\nworker:\n  command: [forkd-env-path-worker, --serve]\n  ready: message\n"
      "  env: {PATH: \"/nonexistent:" +
      bin + "\"}\n";
  const std::string path =
      c.dir.write_file("check.yaml", "listen: [" + c.listener.address() + "]\n" + body);
  const auto check = run_command({forkd_bin(), "-c", path, "--check-config"}, 10s);
  EXPECT_EQ(check.exit_code(), 0) << check.err;
  c.start(body);
  c.wait_all_ready(2);
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
