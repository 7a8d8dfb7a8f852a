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

// The key table says which keys the running master holds; the reload warns about those.
TEST(ReloadPlan, ControlSocketAndPidfileChangesNeedARestart) {
  const Config current = load("workers: 2\n");
  const auto socket =
      plan_reload(current, load("workers: 2\ncontrol:\n  socket: /tmp/x.sock\n"), 2, 2);
  EXPECT_EQ(
      socket.needs_restart,
      (std::vector<std::string>{"control.* changes take effect after a restart or hot upgrade"}));
  const auto pidfile = plan_reload(current, load("workers: 2\npidfile: /tmp/forkd.pid\n"), 2, 2);
  EXPECT_EQ(pidfile.needs_restart,
            (std::vector<std::string>{"pidfile changes take effect after a restart"}));
  const auto both = plan_reload(
      current,
      load("workers: 2\npidfile: /tmp/forkd.pid\ncontrol:\n  mode: \"0660\"\n  socket: /tmp/y\n"),
      2, 2);
  EXPECT_EQ(both.needs_restart, (std::vector<std::string>{
                                    "control.* changes take effect after a restart or hot upgrade",
                                    "pidfile changes take effect after a restart"}));
}

TEST(ReloadPlan, KeysAReloadAppliesNeedNoRestart) {
  const Config current = load("workers: 2\n");
  const auto plan = plan_reload(
      current,
      load("workers: 3\nworker:\n  env: {A: b}\n  ready_timeout: 5s\nlog:\n  level: debug\n"
           "metrics:\n  listen: 127.0.0.1:9101\nlisten: [127.0.0.1:9090]\n"),
      2, 3);
  EXPECT_FALSE(plan.changed_keys.empty());
  EXPECT_TRUE(plan.needs_restart.empty());
}

}  // namespace
