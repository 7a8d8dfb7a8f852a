// The master's decisions about its workers, in one pure place: slots, the target count,
// scaling, replacements and rolling restarts, the restart policy and every deadline. Given an
// event and the time, it updates its lanes (daemon/slot.hpp) and queues actions for the master
// to carry out. It makes no system call, reads no clock and knows no io_context: the unit tests
// drive it with a fake clock and no fork. The master never decides; the pool never acts.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/config.hpp"
#include "common/exit_status.hpp"
#include "daemon/backoff.hpp"
#include "daemon/slot.hpp"

namespace forkd::daemon {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// Why a worker was (or is being) stopped or replaced.
enum class StopReason {
  none,
  shutdown,
  scale_down,
  restart,
  ready_timeout,
  heartbeat,
  memory,
  lifetime,
  stuck_ipc
};

// What of the configuration the pool decides with.
struct PoolSettings {
  common::RestartConfig restart;
  Duration ready_timeout = std::chrono::seconds(30);
  Duration heartbeat_timeout{0};
  Duration shutdown_timeout = std::chrono::seconds(30);
  Duration max_lifetime{0};
  bool ready_on_start = false;  // `ready: started`: exec is all the readiness there is
  common::BatchSize batch;

  // `ready`: the readiness the workers really give (`auto` made concrete: effective_ready_mode).
  [[nodiscard]] static PoolSettings from(const common::Config& config, common::ReadyMode ready);
};

// One process's place in a slot: its current process (or the vacancy: backoff, failed), an
// incoming replacement, or a retiring process draining after its successor became ready.
struct Lane {
  SlotState state = SlotState::backoff;
  pid_t pid = -1;  // -1 while in backoff or failed, and between a spawn order and its result
  std::uint64_t serial = 0;  // start order across all slots
  unsigned generation = 0;
  TimePoint started_at;
  std::optional<TimePoint> ready_at;
  TimePoint ready_deadline;
  TimePoint last_heartbeat;
  std::optional<TimePoint> stop_deadline;
  std::optional<TimePoint> recycle_at;  // max_lifetime, with jitter
  std::optional<TimePoint> retry_at;    // backoff: when to spawn again (none: at once)
  bool asked_to_stop = false;           // its exit is expected
  bool killed = false;                  // SIGKILL sent: no deadline applies any more
  bool group_killed = false;            // ... to its whole process group (its grace ran out)
  StopReason stop_reason = StopReason::none;
  std::string spawn_error;  // the child could not exec or enter its app
};

struct Slot {
  Slot(unsigned slot_id, const common::RestartConfig& restart) : id(slot_id), backoff(restart) {}
  unsigned id;
  Backoff backoff;
  Lane current;
  std::optional<Lane> incoming;
  StopReason replacing_for = StopReason::none;
  unsigned restarts = 0;
  std::map<std::string, std::uint64_t> restarts_by_reason;  // metrics: signal, exit, timeout, ...
  std::optional<common::ExitStatus> last_exit;
  TimePoint last_exit_at;
};

struct RetiringProcess {
  unsigned slot = 0;
  Lane lane;
};

// The processes a worker left in its process group when it exited (a child it started that
// outlives it, still holding the listeners). They get the worker's graceful-then-kill timing:
// SIGTERM when it exits, SIGKILL when its grace runs out. The group's id is the worker's pid.
struct LeftoverGroup {
  unsigned slot = 0;
  TimePoint kill_at;                    // SIGKILL to the group then
  std::optional<TimePoint> give_up_at;  // set with SIGKILL: if still there then, stop waiting
};

// The actions the master carries out, in order.
struct SpawnOrder {
  unsigned slot;
  bool incoming;  // a replacement next to the running process
  unsigned generation;
};
enum class SignalTarget {
  worker,        // the worker process alone
  worker_group,  // the worker and every process of its group: kill(-pid)
  leftovers,     // the group of a worker that has exited; gone (ESRCH): leftovers_gone(pid)
};
struct SignalOrder {
  pid_t pid = 0;  // the worker's pid, which is also the id of its process group
  int signo = 0;
  SignalTarget target = SignalTarget::worker;
};
struct PublishOrder {
  nlohmann::json event;  // `forkctl events`; the master adds "at"
};
enum class LogLevel { info, warn, error };
struct LogOrder {
  LogLevel level;
  std::string text;
};
struct RolloutOutcome {
  std::uint64_t id;
  bool ok;
  std::string error;
};
struct AllReady {
  unsigned workers;
};
struct AllSlotsFailed {};  // restart.exit_on_failed: the master exits 1
using PoolAction = std::variant<SpawnOrder, SignalOrder, PublishOrder, LogOrder, RolloutOutcome,
                                AllReady, AllSlotsFailed>;

class WorkerPool {
 public:
  WorkerPool(PoolSettings settings, unsigned target, unsigned generation);

  // The pass the master runs after every event: deadlines, the worker count, lifetime recycling,
  // promotion of ready replacements, the rollout's next batch, and readiness.
  void tick(TimePoint now);

  // Answers to a SpawnOrder. `error`: the child started but could not exec or enter its app.
  void spawned(unsigned slot, bool incoming, pid_t pid, const std::string& error, TimePoint now);
  void spawn_failed(unsigned slot, bool incoming, const std::string& why, TimePoint now);

  void ready(pid_t pid, TimePoint now);
  void heartbeat(pid_t pid, TimePoint now);
  // False: not a worker of this pool. `group_left`: other processes of its process group are
  // still there; they are stopped as the worker was (LeftoverGroup).
  bool exited(pid_t pid, const common::ExitStatus& status, TimePoint now, bool group_left = false);
  // The last process of the group a worker left behind is gone.
  void leftovers_gone(pid_t pgid);

  // A new process for `slot` next to the running one, which drains once it is ready. False
  // when nothing was started (stopping, a replacement already coming, or nothing running: then
  // the slot is simply started afresh).
  bool replace(unsigned slot, StopReason reason, TimePoint now);
  // Replaces `slots` `batch` at a time; RolloutOutcome{id} tells how it ended.
  void start_rollout(std::vector<unsigned> slots, std::uint64_t id);
  [[nodiscard]] bool rollout_active() const noexcept { return rollout_.has_value(); }

  void scale_to(unsigned count, TimePoint now);
  // Graceful (grace = shutdown_timeout) or fast; a second stop only shortens the grace.
  void stop(bool fast, Duration grace, TimePoint now);
  // A reload applied or rolled back: new settings, count and generation for what starts next.
  void reconfigure(PoolSettings settings, unsigned target, unsigned generation);

  [[nodiscard]] std::optional<TimePoint> next_wakeup() const;
  [[nodiscard]] std::vector<PoolAction> take_actions();

  [[nodiscard]] unsigned target() const noexcept { return target_; }
  [[nodiscard]] unsigned generation() const noexcept { return generation_; }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] bool fast_stop() const noexcept { return fast_; }
  [[nodiscard]] const PoolSettings& settings() const noexcept { return settings_; }
  [[nodiscard]] const std::vector<Slot>& slots() const noexcept { return slots_; }
  [[nodiscard]] const std::map<pid_t, RetiringProcess>& retiring() const noexcept {
    return retiring_;
  }
  // The lane a live pid runs in, and its slot.
  [[nodiscard]] const Lane* find(pid_t pid, unsigned* slot = nullptr) const;
  // The pid serving slot `id` now, if any.
  [[nodiscard]] std::optional<pid_t> serving(unsigned id) const;
  [[nodiscard]] std::size_t process_count() const noexcept { return where_.size(); }
  // Groups of exited workers that still have processes, by group id.
  [[nodiscard]] const std::map<pid_t, LeftoverGroup>& leftovers() const noexcept {
    return leftovers_;
  }
  [[nodiscard]] unsigned ready_count() const;
  // Each process once, with its slot.
  template <typename F>
  void for_each_process(F&& visit) const;

 private:
  enum class Role { current, incoming, retiring };
  struct Where {
    unsigned slot;
    Role role;
  };

  Lane* lane_of(pid_t pid, Where* where = nullptr) { return lane_in(*this, pid, where); }
  // One lookup for the const and the mutable pool.
  template <typename Self>
  static auto lane_in(Self& self, pid_t pid, Where* where) -> decltype(&self.slots_[0].current);
  // The table's transition plus what its action means for this lane.
  void apply(Slot& slot, Lane& lane, SlotEvent event, TimePoint now, Duration grace = {});
  void judge_exit(Slot& slot, Lane& lane, TimePoint now);
  void schedule_respawn(Slot& slot, const RestartDecision& decision, TimePoint now,
                        const char* why);
  void enforce_deadlines(TimePoint now);
  void enforce_deadline(Slot* slot, Lane& lane, TimePoint now);
  void judge_worker_exit(pid_t pid, Where where, Lane& lane, const common::ExitStatus& status,
                         TimePoint now);
  void stop_leftovers(unsigned slot, pid_t pgid, const Lane& lane, TimePoint now);
  void enforce_leftover_deadlines(TimePoint now);
  void maintain_count(TimePoint now);
  void recycle_overaged(TimePoint now);
  void promote_replacements(TimePoint now);
  void advance_rollout(TimePoint now);
  void fail_rollout(const std::string& why, TimePoint now);
  void announce_readiness();
  void stop_lane(Slot* slot, Lane& lane, StopReason reason, Duration grace, TimePoint now);
  [[nodiscard]] bool proven(const Lane& lane, TimePoint now) const;
  [[nodiscard]] bool slot_busy(unsigned id) const;
  void log(LogLevel level, std::string text);
  void publish(nlohmann::json event);

  PoolSettings settings_;
  unsigned target_;
  unsigned generation_;
  std::uint64_t next_serial_ = 0;
  std::vector<Slot> slots_;  // ids 0..size-1; past the target they drain away
  std::map<pid_t, RetiringProcess> retiring_;
  std::map<pid_t, Where> where_;  // every live pid
  std::map<pid_t, LeftoverGroup> leftovers_;
  struct Rollout {
    std::vector<unsigned> pending;
    std::vector<unsigned> active;
    unsigned batch = 1;
    std::uint64_t serial_floor = 0;  // processes from this serial on are replacements
    std::uint64_t id = 0;
  };
  std::optional<Rollout> rollout_;
  bool stopping_ = false;
  bool fast_ = false;
  bool all_ready_announced_ = false;
  std::vector<PoolAction> actions_;
};

template <typename Self>
auto WorkerPool::lane_in(Self& self, pid_t pid, Where* where) -> decltype(&self.slots_[0].current) {
  const auto it = self.where_.find(pid);
  if (it == self.where_.end()) return nullptr;
  if (where != nullptr) *where = it->second;
  switch (it->second.role) {
    case Role::current:
      return &self.slots_.at(it->second.slot).current;
    case Role::incoming:
      return &*self.slots_.at(it->second.slot).incoming;
    case Role::retiring:
      return &self.retiring_.at(pid).lane;
  }
  return nullptr;
}

template <typename F>
void WorkerPool::for_each_process(F&& visit) const {
  for (const auto& slot : slots_) {
    if (slot.current.pid > 0) visit(slot, slot.current);
    if (slot.incoming && slot.incoming->pid > 0) visit(slot, *slot.incoming);
  }
  // A slot is dropped only once no process of it is left, retiring ones included.
  for (const auto& [pid, r] : retiring_) visit(slots_.at(r.slot), r.lane);
}

}  // namespace forkd::daemon
