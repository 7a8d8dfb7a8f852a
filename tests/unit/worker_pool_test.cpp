// The worker pool driven by a fake clock and fake pids: no fork, no sockets, no sleeps.
#include "daemon/worker_pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>

namespace {

using namespace forkd::daemon;  // NOLINT(google-build-using-namespace): the module under test
using std::chrono::milliseconds;
using std::chrono::seconds;

PoolSettings settings() {
  PoolSettings s;
  s.restart.delay = milliseconds(100);
  s.restart.max_delay = seconds(30);
  s.restart.min_uptime = seconds(1);
  s.restart.burst = 20;
  s.ready_timeout = seconds(30);
  s.shutdown_timeout = seconds(30);
  return s;
}

forkd::common::ExitStatus exit_code(int code) {
  forkd::common::ExitStatus status;
  status.code = code;
  return status;
}

forkd::common::ExitStatus killed_by(int signo) {
  forkd::common::ExitStatus status;
  status.signal = signo;
  return status;
}

// Carries out the pool's orders as the master would, recording them.
struct Driver {
  explicit Driver(PoolSettings s = settings(), unsigned workers = 1)
      : pool(std::move(s), workers, 1) {}

  TimePoint now{seconds(1000)};
  WorkerPool pool;
  pid_t next_pid = 100;
  std::vector<SpawnOrder> spawns;
  std::vector<SignalOrder> signals;
  std::vector<nlohmann::json> events;
  std::vector<std::string> logs;
  std::vector<RolloutOutcome> outcomes;
  unsigned all_ready = 0;
  bool all_failed = false;
  bool fail_next_spawn = false;

  bool run() {
    bool any = false;
    for (auto actions = pool.take_actions(); !actions.empty(); actions = pool.take_actions()) {
      any = true;
      for (auto& action : actions) {
        if (auto* spawn = std::get_if<SpawnOrder>(&action)) {
          spawns.push_back(*spawn);
          if (fail_next_spawn) {
            fail_next_spawn = false;
            pool.spawn_failed(spawn->slot, spawn->incoming, "fork: no", now);
          } else {
            pool.spawned(spawn->slot, spawn->incoming, next_pid++, "", now);
          }
        } else if (auto* signal = std::get_if<SignalOrder>(&action)) {
          signals.push_back(*signal);
        } else if (auto* publish = std::get_if<PublishOrder>(&action)) {
          events.push_back(publish->event);
        } else if (auto* log = std::get_if<LogOrder>(&action)) {
          logs.push_back(log->text);
        } else if (auto* outcome = std::get_if<RolloutOutcome>(&action)) {
          outcomes.push_back(*outcome);
        } else if (std::holds_alternative<AllReady>(action)) {
          ++all_ready;
        } else if (std::holds_alternative<AllSlotsFailed>(action)) {
          all_failed = true;
        }
      }
    }
    return any;
  }
  // The master's pass after every event: rounds until nothing more follows.
  void pass() {
    for (int round = 0; round < 4; ++round) {
      pool.tick(now);
      if (!run()) break;
    }
  }
  void advance(Clock::duration d) {
    now += d;
    pass();
  }
  // Advances to the pool's next wake-up, as the master's one timer does.
  void wake() {
    const auto next = pool.next_wakeup();
    ASSERT_TRUE(next.has_value());
    now = std::max(now, *next);
    pass();
  }
  pid_t serving(unsigned slot) const { return pool.serving(slot).value_or(-1); }
  void ready(pid_t pid) {
    pool.ready(pid, now);
    pass();
  }
  void exit(pid_t pid, const forkd::common::ExitStatus& status, bool group_left = false) {
    ASSERT_TRUE(pool.exited(pid, status, now, group_left));
    pass();
  }
  SlotState state(unsigned slot) const { return pool.slots().at(slot).current.state; }
  bool signalled(pid_t pid, int signo) const {
    return std::any_of(signals.begin(), signals.end(),
                       [&](const SignalOrder& s) { return s.pid == pid && s.signo == signo; });
  }
  bool signalled(pid_t pid, int signo, SignalTarget target) const {
    return std::any_of(signals.begin(), signals.end(), [&](const SignalOrder& s) {
      return s.pid == pid && s.signo == signo && s.target == target;
    });
  }
};

TEST(WorkerPool, StartsTheTargetAndAnnouncesReadinessOnce) {
  Driver d(settings(), 3);
  d.pass();
  ASSERT_EQ(d.spawns.size(), 3U);
  for (unsigned i = 0; i < 3; ++i) EXPECT_EQ(d.state(i), SlotState::starting);
  d.ready(d.serving(0));
  d.ready(d.serving(1));
  EXPECT_EQ(d.all_ready, 0U);
  d.ready(d.serving(2));
  EXPECT_EQ(d.all_ready, 1U);
  d.pass();
  EXPECT_EQ(d.all_ready, 1U);
}

TEST(WorkerPool, FailedStartsBackOffGrowingThenTheSlotFails) {
  auto s = settings();
  s.restart.max_failures = 4;
  Driver d(s);
  d.pass();
  std::vector<Clock::duration> delays;
  for (int i = 0; i < 3; ++i) {
    const TimePoint exited_at = d.now;
    d.exit(d.serving(0), exit_code(1));
    EXPECT_EQ(d.state(0), SlotState::backoff);
    EXPECT_EQ(d.serving(0), -1);
    const auto spawned = d.spawns.size();
    d.wake();
    EXPECT_EQ(d.spawns.size(), spawned + 1);
    delays.push_back(d.now - exited_at);
  }
  EXPECT_EQ(delays, (std::vector<Clock::duration>{milliseconds(100), milliseconds(200),
                                                  milliseconds(400)}));
  d.exit(d.serving(0), exit_code(1));
  EXPECT_EQ(d.state(0), SlotState::failed);
  EXPECT_FALSE(d.pool.next_wakeup().has_value());
  EXPECT_EQ(d.events.back()["event"], "worker_failed");
}

TEST(WorkerPool, NeverReadyExitIsAFailedStartWhateverItsUptime) {
  auto s = settings();
  s.restart.max_failures = 2;
  Driver d(s);
  d.pass();
  d.advance(seconds(5));  // far past min_uptime, never ready
  d.exit(d.serving(0), exit_code(1));
  ASSERT_EQ(d.state(0), SlotState::backoff);
  EXPECT_EQ(*d.pool.next_wakeup() - d.now, milliseconds(100));
  d.wake();
  d.advance(seconds(5));
  d.exit(d.serving(0), exit_code(1));
  EXPECT_EQ(d.state(0), SlotState::failed);  // max_failures counts it
}

TEST(WorkerPool, ReadyWorkerThatDiesIsRespawnedAtOnceEveryTime) {
  Driver d;
  d.pass();
  for (int i = 0; i < 10; ++i) {
    d.ready(d.serving(0));
    d.advance(milliseconds(400));  // killed soon after it came back: a poison request
    const auto spawned = d.spawns.size();
    d.exit(d.serving(0), killed_by(SIGKILL));
    EXPECT_EQ(d.spawns.size(), spawned + 1) << "kill " << i;
    EXPECT_EQ(d.state(0), SlotState::starting);
  }
}

TEST(WorkerPool, BurstOfRuntimeExitsIsBrakedWithoutGrowing) {
  auto s = settings();
  s.restart.burst = 2;
  Driver d(s);
  d.pass();
  for (int i = 0; i < 2; ++i) {
    d.ready(d.serving(0));
    d.exit(d.serving(0), exit_code(1));
    EXPECT_EQ(d.state(0), SlotState::starting);
  }
  for (int i = 0; i < 3; ++i) {
    d.ready(d.serving(0));
    d.exit(d.serving(0), exit_code(1));
    EXPECT_EQ(d.state(0), SlotState::backoff);
    EXPECT_EQ(*d.pool.next_wakeup() - d.now, milliseconds(100));  // never grows
    d.wake();
  }
}

TEST(WorkerPool, ReadyTimeoutKillsAndCountsAsAFailedStart) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  EXPECT_EQ(*d.pool.next_wakeup(), d.now + seconds(30));
  d.wake();
  EXPECT_TRUE(d.signalled(pid, SIGKILL));
  EXPECT_EQ(d.state(0), SlotState::stopping);
  d.exit(pid, killed_by(SIGKILL));
  EXPECT_EQ(d.state(0), SlotState::backoff);
  EXPECT_EQ(d.pool.slots()[0].restarts_by_reason.at("timeout"), 1U);
}

TEST(WorkerPool, HeartbeatOverdueKillsAReadyWorker) {
  auto s = settings();
  s.heartbeat_timeout = seconds(2);
  Driver d(s);
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.advance(seconds(1));
  d.pool.heartbeat(pid, d.now);
  d.advance(milliseconds(1500));
  EXPECT_FALSE(d.signalled(pid, SIGKILL));
  d.wake();
  EXPECT_TRUE(d.signalled(pid, SIGKILL));
  d.exit(pid, killed_by(SIGKILL));
  EXPECT_EQ(d.state(0), SlotState::starting);  // it had been ready: back at once
}

TEST(WorkerPool, SpawnFailureBacksOff) {
  Driver d;
  d.fail_next_spawn = true;
  d.pass();
  EXPECT_EQ(d.state(0), SlotState::backoff);
  d.wake();
  EXPECT_EQ(d.state(0), SlotState::starting);
}

TEST(WorkerPool, RolloutReplacesBatchByBatchAndStopsOldOnlyWhenNewIsReady) {
  Driver d(settings(), 2);
  d.pass();
  const pid_t old0 = d.serving(0);
  const pid_t old1 = d.serving(1);
  d.ready(old0);
  d.ready(old1);
  d.pool.start_rollout({0, 1}, 7);
  d.pass();
  ASSERT_TRUE(d.pool.slots()[0].incoming.has_value());
  EXPECT_FALSE(d.pool.slots()[1].incoming.has_value());  // batch 1
  const pid_t new0 = d.pool.slots()[0].incoming->pid;
  EXPECT_FALSE(d.signalled(old0, SIGTERM));
  d.ready(new0);
  EXPECT_EQ(d.serving(0), new0);
  EXPECT_TRUE(d.signalled(old0, SIGTERM));
  ASSERT_TRUE(d.pool.slots()[1].incoming.has_value());
  d.ready(d.pool.slots()[1].incoming->pid);
  EXPECT_TRUE(d.signalled(old1, SIGTERM));
  ASSERT_EQ(d.outcomes.size(), 1U);
  EXPECT_TRUE(d.outcomes[0].ok);
  EXPECT_EQ(d.outcomes[0].id, 7U);
  d.exit(old0, exit_code(0));
  d.exit(old1, exit_code(0));
  EXPECT_EQ(d.pool.process_count(), 2U);
}

TEST(WorkerPool, RolloutAbortsWhenAReplacementDiesAndKeepsTheOld) {
  auto s = settings();
  s.batch.value = 2;
  Driver d(s, 2);
  d.pass();
  const pid_t old0 = d.serving(0);
  const pid_t old1 = d.serving(1);
  d.ready(old0);
  d.ready(old1);
  d.pool.start_rollout({0, 1}, 1);
  d.pass();
  const pid_t new0 = d.pool.slots()[0].incoming->pid;
  const pid_t new1 = d.pool.slots()[1].incoming->pid;
  d.exit(new0, exit_code(1));
  ASSERT_EQ(d.outcomes.size(), 1U);
  EXPECT_FALSE(d.outcomes[0].ok);
  EXPECT_TRUE(d.signalled(new1, SIGTERM));  // withdrawn
  EXPECT_FALSE(d.signalled(old0, SIGTERM));
  EXPECT_FALSE(d.signalled(old1, SIGTERM));
  EXPECT_EQ(d.serving(0), old0);
  EXPECT_EQ(d.serving(1), old1);
  d.exit(new1, exit_code(0));
  EXPECT_EQ(d.pool.process_count(), 2U);
  EXPECT_EQ(d.state(0), SlotState::ready);
}

TEST(WorkerPool, ScaleDownDuringARolloutStillCompletes) {
  Driver d(settings(), 3);
  d.pass();
  for (unsigned i = 0; i < 3; ++i) d.ready(d.serving(i));
  d.pool.start_rollout({0, 1, 2}, 1);
  d.pass();
  d.pool.scale_to(1, d.now);
  d.pass();
  EXPECT_TRUE(d.signalled(d.serving(1), SIGTERM));
  EXPECT_TRUE(d.signalled(d.serving(2), SIGTERM));
  d.ready(d.pool.slots()[0].incoming->pid);
  ASSERT_EQ(d.outcomes.size(), 1U);
  EXPECT_TRUE(d.outcomes[0].ok);
}

TEST(WorkerPool, ScaleUpStartsAndScaleDownDrainsAndDropsTheSlot) {
  Driver d(settings(), 1);
  d.pass();
  d.pool.scale_to(2, d.now);
  d.pass();
  ASSERT_EQ(d.pool.slots().size(), 2U);
  const pid_t second = d.serving(1);
  d.pool.scale_to(1, d.now);
  d.pass();
  EXPECT_TRUE(d.signalled(second, SIGTERM));
  EXPECT_EQ(d.pool.slots().size(), 2U);  // until its process is gone
  d.exit(second, exit_code(0));
  EXPECT_EQ(d.pool.slots().size(), 1U);
}

TEST(WorkerPool, StopDuringARolloutFailsItAndStopsEveryone) {
  Driver d(settings(), 2);
  d.pass();
  d.ready(d.serving(0));
  d.ready(d.serving(1));
  d.pool.start_rollout({0, 1}, 3);
  d.pass();
  const pid_t incoming = d.pool.slots()[0].incoming->pid;
  d.pool.stop(false, seconds(30), d.now);
  (void)d.run();
  ASSERT_EQ(d.outcomes.size(), 1U);
  EXPECT_FALSE(d.outcomes[0].ok);
  EXPECT_EQ(d.outcomes[0].error, "forkd is stopping");
  EXPECT_TRUE(d.signalled(incoming, SIGTERM));
  EXPECT_TRUE(d.signalled(d.serving(0), SIGTERM));
  EXPECT_TRUE(d.signalled(d.serving(1), SIGTERM));
  const auto spawned = d.spawns.size();
  d.exit(d.serving(0), exit_code(0));
  EXPECT_EQ(d.spawns.size(), spawned);  // nothing respawns while stopping
}

TEST(WorkerPool, SecondStopShortensTheGraceAndThenKills) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.pool.stop(false, seconds(30), d.now);
  (void)d.run();
  d.pool.stop(true, seconds(1), d.now);
  (void)d.run();
  EXPECT_EQ(*d.pool.next_wakeup(), d.now + seconds(1));
  d.wake();
  EXPECT_TRUE(d.signalled(pid, SIGKILL));
}

TEST(WorkerPool, MemoryReplacementStartsANewOneBeforeStoppingTheOld) {
  Driver d;
  d.pass();
  const pid_t old = d.serving(0);
  d.ready(old);
  EXPECT_TRUE(d.pool.replace(0, StopReason::memory, d.now));
  d.pass();
  EXPECT_FALSE(d.signalled(old, SIGTERM));
  d.ready(d.pool.slots()[0].incoming->pid);
  EXPECT_TRUE(d.signalled(old, SIGTERM));
  EXPECT_EQ(d.pool.slots()[0].restarts_by_reason.at("memory"), 1U);
}

TEST(WorkerPool, ReplacementDecidedOutsideTheTickIsStartedByTheNextPass) {
  Driver d;
  d.pass();
  d.ready(d.serving(0));
  const auto spawned = d.spawns.size();
  (void)d.pool.replace(0, StopReason::stuck_ipc, d.now);  // as from an IPC handler
  (void)d.run();                                          // the master's pass runs its actions
  EXPECT_EQ(d.spawns.size(), spawned + 1);
}

TEST(WorkerPool, MaxLifetimeRecyclesWithJitterWithinTenPercent) {
  auto s = settings();
  s.max_lifetime = seconds(100);
  Driver d(s);
  d.pass();
  const pid_t old = d.serving(0);
  d.ready(old);
  const auto next = *d.pool.next_wakeup();
  EXPECT_GE(next - d.now, seconds(90));
  EXPECT_LE(next - d.now, seconds(100));
  d.wake();
  ASSERT_TRUE(d.pool.slots()[0].incoming.has_value());
  d.ready(d.pool.slots()[0].incoming->pid);
  EXPECT_TRUE(d.signalled(old, SIGTERM));
}

TEST(WorkerPool, StartedReadinessNeedsMinUptimeBeforeItCountsOrPromotes) {
  auto s = settings();
  s.ready_on_start = true;
  Driver d(s);
  d.pass();
  EXPECT_EQ(d.state(0), SlotState::ready);
  EXPECT_EQ(d.all_ready, 1U);  // in the same pass as the spawn
  d.advance(milliseconds(500));
  d.exit(d.serving(0), exit_code(1));  // before min_uptime: exec proves nothing
  EXPECT_EQ(d.state(0), SlotState::backoff);
  d.wake();
  const pid_t old = d.serving(0);
  d.advance(seconds(2));
  EXPECT_TRUE(d.pool.replace(0, StopReason::restart, d.now));
  d.pass();
  EXPECT_FALSE(d.signalled(old, SIGTERM));
  d.wake();  // min_uptime of the replacement
  EXPECT_TRUE(d.signalled(old, SIGTERM));
}

TEST(WorkerPool, EverySlotFailedWithExitOnFailedAsksTheMasterToExit) {
  auto s = settings();
  s.restart.max_failures = 1;
  s.restart.exit_on_failed = true;
  Driver d(s, 2);
  d.pass();
  d.exit(d.serving(0), exit_code(1));
  EXPECT_FALSE(d.all_failed);
  d.exit(d.serving(1), exit_code(1));
  EXPECT_TRUE(d.all_failed);
}

TEST(WorkerPool, FailedSlotIsRevivedByARollout) {
  auto s = settings();
  s.restart.max_failures = 1;
  Driver d(s);
  d.pass();
  d.exit(d.serving(0), exit_code(1));
  ASSERT_EQ(d.state(0), SlotState::failed);
  d.pool.start_rollout({0}, 1);
  d.pass();
  EXPECT_EQ(d.state(0), SlotState::starting);
}

TEST(WorkerPool, UnknownPidIsNotAWorker) {
  Driver d;
  d.pass();
  EXPECT_FALSE(d.pool.exited(4242, exit_code(0), d.now));
}

// ---- what a worker leaves behind in its process group ---------------------------------------

TEST(WorkerPool, WhatAWorkerLeftGetsSigtermThenSigkillAfterShutdownTimeout) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.exit(pid, exit_code(0), true);
  EXPECT_TRUE(d.signalled(pid, SIGTERM, SignalTarget::leftovers));
  ASSERT_EQ(d.pool.leftovers().count(pid), 1U);
  EXPECT_EQ(d.state(0), SlotState::starting);  // the slot respawns meanwhile, as after any exit
  EXPECT_EQ(d.pool.leftovers().at(pid).kill_at, d.now + seconds(30));
  d.advance(seconds(29));
  EXPECT_FALSE(d.signalled(pid, SIGKILL));
  d.advance(seconds(1));
  EXPECT_TRUE(d.signalled(pid, SIGKILL, SignalTarget::leftovers));
  d.pool.leftovers_gone(pid);
  EXPECT_TRUE(d.pool.leftovers().empty());
}

TEST(WorkerPool, AWorkerThatLeftNothingLeavesNothingToWaitFor) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.exit(pid, exit_code(0));
  EXPECT_TRUE(d.pool.leftovers().empty());
  EXPECT_FALSE(d.signalled(pid, SIGTERM));
}

TEST(WorkerPool, WorkerSignalsGoToTheWorkerAloneUntilItsGraceRunsOut) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.pool.stop(false, seconds(30), d.now);
  (void)d.run();
  EXPECT_TRUE(d.signalled(pid, SIGTERM, SignalTarget::worker));
  d.advance(seconds(30));
  EXPECT_TRUE(d.signalled(pid, SIGKILL, SignalTarget::worker_group));
}

TEST(WorkerPool, HeartbeatKillLeavesTheGroupToTheLeftoverRule) {
  auto s = settings();
  s.heartbeat_timeout = seconds(2);
  Driver d(s);
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.wake();
  EXPECT_TRUE(d.signalled(pid, SIGKILL, SignalTarget::worker));
  d.exit(pid, killed_by(SIGKILL), true);
  EXPECT_TRUE(d.signalled(pid, SIGTERM, SignalTarget::leftovers));
  EXPECT_EQ(d.pool.leftovers().at(pid).kill_at, d.now + seconds(30));
}

TEST(WorkerPool, LeftoversOfAStoppedWorkerShareItsDeadline) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  const TimePoint stop_at = d.now;
  d.pool.stop(false, seconds(30), d.now);
  (void)d.run();
  d.advance(seconds(10));
  d.exit(pid, exit_code(0), true);
  EXPECT_TRUE(d.signalled(pid, SIGTERM, SignalTarget::leftovers));
  EXPECT_EQ(d.pool.leftovers().at(pid).kill_at, stop_at + seconds(30));
  EXPECT_EQ(*d.pool.next_wakeup(), stop_at + seconds(30));
  d.wake();
  EXPECT_TRUE(d.signalled(pid, SIGKILL, SignalTarget::leftovers));
}

TEST(WorkerPool, AFastStopShortensTheLeftoversGrace) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.exit(pid, exit_code(0), true);
  d.pool.stop(true, seconds(1), d.now);
  (void)d.run();
  EXPECT_EQ(d.pool.leftovers().at(pid).kill_at, d.now + seconds(1));
}

TEST(WorkerPool, AGroupKilledWithItsWorkerIsWaitedForBriefly) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.pool.stop(false, seconds(5), d.now);
  (void)d.run();
  d.advance(seconds(5));
  ASSERT_TRUE(d.signalled(pid, SIGKILL, SignalTarget::worker_group));
  const auto signals = d.signals.size();
  d.exit(pid, killed_by(SIGKILL), true);
  EXPECT_EQ(d.signals.size(), signals);  // no SIGTERM after the SIGKILL
  ASSERT_EQ(d.pool.leftovers().count(pid), 1U);
  d.wake();  // one that survives SIGKILL (escaped, unkillable) is not waited for forever
  EXPECT_TRUE(d.pool.leftovers().empty());
  EXPECT_NE(d.logs.back().find("no longer waiting"), std::string::npos) << d.logs.back();
  EXPECT_FALSE(d.pool.next_wakeup().has_value());
}

TEST(WorkerPool, ANewWorkerWithTheLeftGroupsNumberEndsTheWait) {
  Driver d;
  d.pass();
  const pid_t pid = d.serving(0);
  d.ready(pid);
  d.next_pid = pid;  // the number is free again: the group it named is empty
  d.exit(pid, exit_code(0), true);
  EXPECT_EQ(d.serving(0), pid);
  EXPECT_TRUE(d.pool.leftovers().empty());
}

}  // namespace
