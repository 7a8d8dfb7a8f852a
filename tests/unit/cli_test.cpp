#include "daemon/cli.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::parse_command_line;

TEST(DaemonCliTest, ParsesEveryOption) {
  auto o = parse_command_line({"-c", "x.yaml", "-t", "--log-level", "debug"});
  ASSERT_TRUE(o.options);
  EXPECT_EQ(o.options->config, "x.yaml");
  EXPECT_TRUE(o.options->check_config);
  EXPECT_EQ(o.options->log_level, "debug");
  auto p = parse_command_line({"--config=y.yaml", "--print-config"});
  ASSERT_TRUE(p.options);
  EXPECT_EQ(p.options->config, "y.yaml");
  EXPECT_TRUE(p.options->print_config);
}

TEST(DaemonCliTest, NoArgumentsMeansDefaults) {
  auto o = parse_command_line({});
  ASSERT_TRUE(o.options);
  EXPECT_FALSE(o.options->config);
  EXPECT_FALSE(o.options->check_config);
}

TEST(DaemonCliTest, UsageErrorsAre64) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--bogus"}, {"-c"}, {"--log-level", "loud"}, {"extra"}}) {
    auto o = parse_command_line(args);
    EXPECT_FALSE(o.options);
    EXPECT_EQ(o.exit_code, 64) << args.front();
    EXPECT_FALSE(o.err.empty());
  }
}

TEST(DaemonCliTest, HelpAndVersionExitZeroWithText) {
  auto h = parse_command_line({"--help"});
  EXPECT_FALSE(h.options);
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("--config"), std::string::npos);
  auto v = parse_command_line({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out, std::string("forkd ") + FORKD_VERSION + "\n");
}

}  // namespace
