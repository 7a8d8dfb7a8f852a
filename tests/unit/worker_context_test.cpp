// Context::parse (what a worker reads from its environment), the built-in app registry, and
// http-hello's sum.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>

#include "worker/apps/http_hello.hpp"
#include "worker/apps/registry.hpp"
#include "worker/worker.hpp"

namespace {

using forkd::worker::Context;
using Env = std::map<std::string, std::string>;

constexpr pid_t kSelf = 4242;

Env full_env() {
  return {{"FORKD_WORKER_ID", "2"},
          {"FORKD_GENERATION", "7"},
          {"FORKD_WORKERS", "4"},
          {"FORKD_MASTER_PID", "100"},
          {"LISTEN_FDS", "2"},
          {"LISTEN_PID", std::to_string(kSelf)},
          {"LISTEN_FDNAMES", "http:admin"},
          {"FORKD_IPC_FD", "5"},
          {"NODE_CHANNEL_FD", "5"},
          {"NODE_CHANNEL_SERIALIZATION_MODE", "json"},
          {"FORKD_IPC_MAX_MESSAGE", "65536"},
          {"WATCHDOG_USEC", "2000000"},
          {"FORKD_SHUTDOWN_TIMEOUT_MS", "30000"}};
}

Context parse(const Env& env, pid_t self = kSelf) {
  return Context::parse(
      [&env](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      },
      self);
}

std::string parse_error(const Env& env, pid_t self = kSelf) {
  try {
    static_cast<void>(parse(env, self));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "parse accepted the environment";
  return {};
}

TEST(WorkerContext, ReadsEverythingTheMasterGives) {
  const Context ctx = parse(full_env());
  EXPECT_EQ(ctx.id, 2U);
  EXPECT_EQ(ctx.generation, 7U);
  EXPECT_EQ(ctx.workers, 4U);
  EXPECT_EQ(ctx.master_pid, 100);
  ASSERT_EQ(ctx.listeners.size(), 2U);
  EXPECT_EQ(ctx.listeners[0].fd, 3);
  EXPECT_EQ(ctx.listeners[0].name, "http");
  EXPECT_EQ(ctx.listeners[1].fd, 4);
  EXPECT_EQ(ctx.listeners[1].name, "admin");
  EXPECT_EQ(ctx.ipc_fd, 5);
  EXPECT_EQ(ctx.max_message, 65536U);
  EXPECT_EQ(ctx.watchdog, std::chrono::seconds(2));
  EXPECT_EQ(ctx.shutdown_timeout, std::chrono::seconds(30));
}

TEST(WorkerContext, DefaultsTheOptionalParts) {
  const Context ctx = parse({{"FORKD_WORKER_ID", "0"}, {"FORKD_IPC_FD", "3"}});
  EXPECT_EQ(ctx.id, 0U);
  EXPECT_EQ(ctx.generation, 0U);
  EXPECT_TRUE(ctx.listeners.empty());
  EXPECT_EQ(ctx.ipc_fd, 3);
  EXPECT_EQ(ctx.max_message, 1024U * 1024U);
  EXPECT_EQ(ctx.watchdog.count(), 0);
}

TEST(WorkerContext, NamesUnnamedListenersByPosition) {
  Env env = full_env();
  env.erase("LISTEN_FDNAMES");
  Context ctx = parse(env);
  ASSERT_EQ(ctx.listeners.size(), 2U);
  EXPECT_EQ(ctx.listeners[0].name, "listen0");
  EXPECT_EQ(ctx.listeners[1].name, "listen1");
  env["LISTEN_FDNAMES"] = ":admin";
  ctx = parse(env);
  EXPECT_EQ(ctx.listeners[0].name, "listen0");
  EXPECT_EQ(ctx.listeners[1].name, "admin");
}

TEST(WorkerContext, SaysWhenNotRunUnderForkd) {
  EXPECT_NE(parse_error({}).find("not running under forkd"), std::string::npos);
  Env env = full_env();
  env.erase("FORKD_IPC_FD");
  EXPECT_NE(parse_error(env).find("FORKD_IPC_FD is not set"), std::string::npos);
}

TEST(WorkerContext, RefusesListenersMeantForAnotherProcess) {
  EXPECT_NE(parse_error(full_env(), kSelf + 1).find("LISTEN_PID"), std::string::npos);
  Env env = full_env();
  env.erase("LISTEN_PID");
  EXPECT_NE(parse_error(env).find("LISTEN_PID"), std::string::npos);
}

TEST(WorkerContext, RefusesMalformedValues) {
  const std::pair<const char*, const char*> bad[] = {
      {"FORKD_WORKER_ID", "x"},    {"FORKD_WORKER_ID", "-1"},
      {"FORKD_WORKER_ID", ""},     {"FORKD_WORKER_ID", "99999999999"},
      {"FORKD_GENERATION", "1.5"}, {"LISTEN_FDS", "two"},
      {"LISTEN_FDS", "3"},                                 // names say 2
      {"LISTEN_FDNAMES", "a:b:c"}, {"FORKD_IPC_FD", "4"},  // inside the listener range
      {"FORKD_IPC_FD", "2"},       {"FORKD_IPC_MAX_MESSAGE", "0"},
      {"WATCHDOG_USEC", "soon"},   {"FORKD_SHUTDOWN_TIMEOUT_MS", "30s"},
      {"FORKD_WORKERS", "two"},
  };
  for (const auto& [name, value] : bad) {
    Env env = full_env();
    env[name] = value;
    const std::string error = parse_error(env);
    EXPECT_NE(error.find(name), std::string::npos) << name << "=" << value << ": " << error;
  }
}

TEST(WorkerContext, FromEnvironmentFailsOutsideForkd) {
  // The test runner is not a forkd worker (and must not pretend to be one).
  if (::getenv("FORKD_WORKER_ID") != nullptr) GTEST_SKIP() << "running under forkd";
  EXPECT_THROW(static_cast<void>(Context::from_environment()), std::runtime_error);
}

TEST(BuiltinApps, ListsHttpHello) {
  const auto apps = forkd::worker::builtin_apps();
  ASSERT_EQ(apps.size(), 1U);
  EXPECT_EQ(apps[0].name, "http-hello");
  const forkd::worker::AppEntry* app = forkd::worker::find_builtin_app("http-hello");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->main, &forkd::worker::apps::http_hello_main);
  EXPECT_EQ(forkd::worker::find_builtin_app("http-goodbye"), nullptr);
  EXPECT_EQ(forkd::worker::find_builtin_app(""), nullptr);
}

TEST(HttpHello, SumsBelowN) {
  using forkd::worker::apps::sum_below;
  EXPECT_EQ(sum_below(0), "0");
  EXPECT_EQ(sum_below(1), "0");
  EXPECT_EQ(sum_below(10), "45");
  EXPECT_EQ(sum_below(100000), "4999950000");
}

TEST(HttpHello, EchoesWithWorkerAndPid) {
  const auto reply = forkd::worker::apps::echo_reply({{"a", 1}}, 3, 77);
  EXPECT_EQ(reply, nlohmann::json::parse(R"({"echo":{"a":1},"worker":3,"pid":77})"));
}

}  // namespace
