// What a reload keeps, binds and reports: one decision, read by the reply and by the listener
// set alike.
#include "daemon/reload_plan.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::common::Config;
using forkd::common::load_config_string;
using forkd::daemon::plan_reload;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "test.yaml");
}

TEST(ReloadPlan, KeptListenersPointAtTheSocketTheyKeep) {
  const Config current = load("listen: [127.0.0.1:8080, 127.0.0.1:8081, unix:/tmp/a.sock]\n");
  const Config next = load(
      "listen:\n  - unix:/tmp/a.sock\n  - 127.0.0.1:9090\n  - address: 127.0.0.1:8080\n"
      "    backlog: 16\n");
  const auto plan = plan_reload(current, next, 2, 2);
  ASSERT_EQ(plan.kept_from.size(), 3U);
  EXPECT_EQ(plan.kept_from[0], std::optional<std::size_t>(2));
  EXPECT_EQ(plan.kept_from[1], std::nullopt);
  EXPECT_EQ(plan.kept_from[2], std::optional<std::size_t>(0));  // backlog may change in place
  EXPECT_EQ(plan.listeners_added, (std::vector<std::string>{"127.0.0.1:9090"}));
  EXPECT_EQ(plan.listeners_removed, (std::vector<std::string>{"127.0.0.1:8081"}));
  EXPECT_EQ(plan.listeners_kept.size(), 2U);
}

TEST(ReloadPlan, ReuseportChangeIsANewSocket) {
  const Config current = load("listen: [127.0.0.1:8080]\n");
  const Config next = load("listen:\n  - address: 127.0.0.1:8080\n    reuseport: true\n");
  const auto plan = plan_reload(current, next, 1, 1);
  ASSERT_EQ(plan.kept_from.size(), 1U);
  EXPECT_EQ(plan.kept_from[0], std::nullopt);
}

}  // namespace
