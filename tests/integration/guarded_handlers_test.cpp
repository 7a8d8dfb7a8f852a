// An exception in any handler of the master (signal, child exit, IPC, control) is logged with
// the event that caused it and the master goes on supervising. The exception is injected into
// the real master's guarded handler with FORKD_TEST_THROW (forkd(8)).
#include <signal.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

std::map<std::string, std::string> throw_in(const std::string& handler) {
  return {{"FORKD_TEST_THROW", handler}};
}

// The log line of the injected exception in `handler` (a regex), as guarded() writes it.
std::string injected(const std::string& handler_regex, const std::string& spec) {
  return handler_regex + ": exception injected by FORKD_TEST_THROW=" + spec +
         "; the master goes on";
}

pid_t worker_pid(Cluster& c, unsigned id) {
  const auto status = control_status(c.control_socket);
  if (!status) return -1;
  for (const auto& w : (*status)["workers"]) {
    if (w.value("id", 0U) == id && w.value("state", "") == "ready" && w["pid"].is_number())
      return w["pid"].get<pid_t>();
  }
  return -1;
}

// Slot `id`, whose worker `before` died, serves again with a new pid.
void expect_respawned(Cluster& c, unsigned id, pid_t before) {
  EXPECT_TRUE(wait_until(
      [&] {
        const pid_t now = worker_pid(c, id);
        return now > 0 && now != before;
      },
      30s))
      << "worker " << id << " was not respawned:\n"
      << c.forkd.log();
}

// After the exception: a killed worker is respawned, status answers, SIGTERM stops it with 0.
void expect_master_goes_on(Cluster& c) {
  const pid_t before = worker_pid(c, 0);
  ASSERT_GT(before, 0) << c.forkd.log();
  ASSERT_EQ(::kill(before, SIGKILL), 0);
  expect_respawned(c, 0, before);
  const auto status = forkctl(c, {"status"});
  EXPECT_EQ(status.exit_code(), 0) << status.out << status.err;
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  const auto exit_status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(exit_status) << "forkd did not stop:\n" << c.forkd.log();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << describe_status(*exit_status) << "\n"
      << c.forkd.log();
}

TEST(GuardedHandlersTest, AnExceptionInTheSighupHandlerIsLoggedAndTheNextReloadWorks) {
  Cluster c;
  c.start("workers: 2\n", {}, throw_in("SIGHUP"));
  const auto from = c.wait_all_ready(2);
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  ASSERT_TRUE(c.forkd.wait_for_log(injected("SIGHUP", "SIGHUP:1"), 20s, from)) << c.forkd.log();
  // That reload was lost with its handler; the next one is applied.
  ASSERT_TRUE(c.forkd.signal(SIGHUP));
  c.wait_generation_ready(2, 2);
  expect_master_goes_on(c);
}

// The exit is reaped already: a failure while closing the dead worker's channels must not keep
// the pool from learning of it (the slot would never be respawned).
TEST(GuardedHandlersTest, AnExceptionWhileClosingADeadWorkersOutputStillRespawnsIt) {
  Cluster c;
  c.start("workers: 2\n", {}, throw_in("output of worker"));
  const auto from = c.wait_all_ready(2);
  const pid_t victim = worker_pid(c, 1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(c.forkd.wait_for_log(
      injected("output of worker pid " + std::to_string(victim), "output of worker:1"), 20s, from))
      << c.forkd.log();
  expect_respawned(c, 1, victim);
  expect_master_goes_on(c);
}

TEST(GuardedHandlersTest, AnExceptionInTheSigttinHandlerIsLoggedAndTheNextOneScales) {
  Cluster c;
  c.start("workers: 1\n", {}, throw_in("SIGTTIN"));
  const auto from = c.wait_all_ready(1);
  ASSERT_TRUE(c.forkd.signal(SIGTTIN));
  ASSERT_TRUE(c.forkd.wait_for_log(injected("SIGTTIN", "SIGTTIN:1"), 20s, from)) << c.forkd.log();
  ASSERT_TRUE(c.forkd.signal(SIGTTIN));
  c.wait_all_ready(2);
  expect_master_goes_on(c);
}

// SIGCHLD is how the master learns of a child's exit: its handler throws, the pass after it
// still reaps the worker and respawns its slot.
TEST(GuardedHandlersTest, AnExceptionInTheChildExitHandlerIsLoggedAndTheWorkerRespawned) {
  Cluster c;
  c.start("workers: 2\n", {}, throw_in("SIGCHLD"));
  const auto from = c.wait_all_ready(2);
  const pid_t killed = worker_pid(c, 1);
  ASSERT_GT(killed, 0);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  ASSERT_TRUE(c.forkd.wait_for_log(injected("SIGCHLD", "SIGCHLD:1"), 20s, from)) << c.forkd.log();
  expect_respawned(c, 1, killed);
  expect_master_goes_on(c);
}

// The worker's first IPC message is its "ready"; the second, its echo of an operator's
// message, is the one whose handler throws.
TEST(GuardedHandlersTest, AnExceptionInAnIpcHandlerIsLoggedAndTheNextMessageIsRelayed) {
  Cluster c;
  c.start("workers: 1\n", {}, throw_in("IPC from worker:2"));
  const auto from = c.wait_all_ready(1);
  const auto sent = forkctl(c, {"send", "0", R"({"ping":1})"});
  ASSERT_EQ(sent.exit_code(), 0) << sent.out << sent.err;
  ASSERT_TRUE(
      c.forkd.wait_for_log(injected(R"(IPC from worker pid \d+)", "IPC from worker:2"), 20s, from))
      << c.forkd.log();
  const auto echoed = forkctl(c, {"send", "0", R"({"ping":2})", "--wait", "10s"});
  ASSERT_EQ(echoed.exit_code(), 0) << echoed.out << echoed.err;
  EXPECT_EQ(json::parse(echoed.out)["echo"], json({{"ping", 2}})) << echoed.out;
  expect_master_goes_on(c);
}

// The first request to reach the master throws in its handler: the client gets an error reply
// (not silence), the log names the handler, and the next request is served.
TEST(GuardedHandlersTest, AnExceptionInTheControlHandlerIsAnsweredLoggedAndSurvived) {
  Cluster c;
  c.start("workers: 1\n", {}, throw_in("control request"));
  std::string reply;
  ASSERT_TRUE(wait_until(
      [&] {
        reply = control_request(c.control_socket, "{\"cmd\":\"status\"}\n", 10s);
        return !reply.empty();
      },
      30s))
      << c.forkd.log();
  const auto answer = json::parse(reply);
  EXPECT_EQ(answer["ok"], false) << reply;
  EXPECT_EQ(answer["error"], "status: failed inside forkd (see its log)") << reply;
  ASSERT_TRUE(c.forkd.wait_for_log(injected("control request", "control request:1"), 20s))
      << c.forkd.log();
  c.wait_all_ready(1);
  expect_master_goes_on(c);
}

TEST(GuardedHandlersTest, ABadFaultSpecificationIsRefusedAtStart) {
  Cluster c;
  c.start("workers: 1\n", {}, throw_in("SIGHUP:0"));
  const auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << describe_status(*status);
  EXPECT_TRUE(c.forkd.wait_for_log("forkd: FORKD_TEST_THROW=SIGHUP:0: ", 1ms)) << c.forkd.log();
}

}  // namespace
