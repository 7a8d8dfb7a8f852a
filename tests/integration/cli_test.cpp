// forkd's command line and configuration errors, run as a user would: exit codes 0/64/78/1 and
// one clear line naming the file, line and column, or the address.
#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace {

using namespace forkd::test;
using namespace std::chrono_literals;

TEST(CliTest, VersionAndHelpExitZero) {
  auto version = run_command({forkd_bin(), "--version"}, 10s);
  EXPECT_EQ(version.exit_code(), 0);
  EXPECT_NE(version.out.find("forkd "), std::string::npos);
  auto help = run_command({forkd_bin(), "--help"}, 10s);
  EXPECT_EQ(help.exit_code(), 0);
  EXPECT_NE(help.out.find("--check-config"), std::string::npos);
}

TEST(CliTest, BadCommandLineIsExit64) {
  auto r = run_command({forkd_bin(), "--no-such-flag"}, 10s);
  EXPECT_EQ(r.exit_code(), 64) << r.err;
  EXPECT_NE(r.err.find("--no-such-flag"), std::string::npos) << r.err;
  auto level = run_command({forkd_bin(), "--log-level", "loud", "--check-config"}, 10s);
  EXPECT_EQ(level.exit_code(), 64) << level.err;
}

TEST(CliTest, CheckConfigPrintsOkForAValidFile) {
  TempDir dir;
  const auto path = dir.write_file("ok.yaml", "workers: 2\nlisten: [127.0.0.1:18080]\n");
  auto r = run_command({forkd_bin(), "-c", path, "--check-config"}, 10s);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
}

TEST(CliTest, InvalidConfigIsExit78WithFileLineColumn) {
  TempDir dir;
  const auto path = dir.write_file("bad.yaml", "listen: [127.0.0.1:8080]\nworkers: 0\n");
  auto r = run_command({forkd_bin(), "-c", path, "-t"}, 10s);
  EXPECT_EQ(r.exit_code(), 78);
  EXPECT_NE(r.err.find(path + ":2:10"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // Starting with it (no --check-config) refuses the same way, before binding anything.
  auto start = run_command({forkd_bin(), "-c", path}, 10s);
  EXPECT_EQ(start.exit_code(), 78);
  EXPECT_NE(start.err.find(path + ":2:10"), std::string::npos) << start.err;
}

TEST(CliTest, PortOutOfRangeAndUnknownKeyAreConfigErrors) {
  TempDir dir;
  const auto path = dir.write_file("bad.yaml", "listen:\n  - 127.0.0.1:99999\nwrokers: 2\n");
  auto r = run_command({forkd_bin(), "-c", path, "--check-config"}, 10s);
  EXPECT_EQ(r.exit_code(), 78);
  EXPECT_NE(r.err.find(path + ":2:5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean \"workers\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ":3:1"), std::string::npos) << r.err;
}

TEST(CliTest, MissingConfigFileNamesThePath) {
  auto r = run_command({forkd_bin(), "-c", "/nonexistent/forkd.yaml", "--check-config"}, 10s);
  EXPECT_EQ(r.exit_code(), 78);
  EXPECT_NE(r.err.find("/nonexistent/forkd.yaml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST(CliTest, PrintConfigShowsTheEffectiveConfiguration) {
  TempDir dir;
  const auto path = dir.write_file("c.yaml", "workers: 3\nlisten: [127.0.0.1:18081]\n");
  auto r = run_command({forkd_bin(), "-c", path, "--print-config"}, 10s);
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_NE(r.out.find("workers: 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("127.0.0.1:18081"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shutdown_timeout: 30s"), std::string::npos) << r.out;
  // What it prints is itself a valid configuration.
  const auto again = dir.write_file("again.yaml", r.out);
  EXPECT_EQ(run_command({forkd_bin(), "-c", again, "-t"}, 10s).exit_code(), 0);
}

TEST(CliTest, AddressInUseIsExit1NamingTheAddress) {
  TempDir dir;
  Listener taken = Listener::tcp_v4();  // held by the test, not passed to forkd
  const auto path =
      dir.write_file("c.yaml", "workers: 1\nlisten: [" + taken.address() +
                                   "]\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n");
  auto r = run_command({forkd_bin(), "-c", path}, 20s);
  EXPECT_EQ(r.exit_code(), 1) << r.err;
  EXPECT_NE(r.err.find(taken.address()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Address already in use"), std::string::npos) << r.err;
}

TEST(CliTest, PermissionDeniedOrBadUnixPathIsExit1NamingThePath) {
  TempDir dir;
  const auto path =
      dir.write_file("c.yaml", "workers: 1\nlisten: [unix:" + dir.file("missing-dir/x.sock") +
                                   "]\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n");
  auto r = run_command({forkd_bin(), "-c", path}, 20s);
  EXPECT_EQ(r.exit_code(), 1) << r.err;
  EXPECT_NE(r.err.find(dir.file("missing-dir/x.sock")), std::string::npos) << r.err;
}

// FORKD_UPGRADE_FD is set only by an old master for its successor; a value that names no
// descriptor it could have passed (stdin included) must stop forkd, not be adopted.
TEST(CliTest, BadUpgradeDescriptorIsExit1NamingTheVariable) {
  TempDir dir;
  const auto path =
      dir.write_file("c.yaml", "workers: 1\nlisten: [unix:" + dir.file("app.sock") +
                                   "]\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n");
  for (const char* value : {"not-a-number", "0", "999"}) {
    auto r = run_command({forkd_bin(), "-c", path}, 20s, {{"FORKD_UPGRADE_FD", value}});
    EXPECT_EQ(r.exit_code(), 1) << value << ": " << r.err;
    EXPECT_NE(r.err.find(std::string("FORKD_UPGRADE_FD=") + value), std::string::npos) << r.err;
  }
}

}  // namespace
