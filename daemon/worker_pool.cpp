#include "daemon/worker_pool.hpp"

#include <signal.h>

#include <fmt/format.h>
#include <algorithm>

#include "common/plural.hpp"

namespace forkd::daemon {

namespace {

std::string format_duration(Clock::duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms < 10000) return std::to_string(ms) + "ms";
  return std::to_string(ms / 1000) + "s";
}

const char* describe(StopReason reason) {
  switch (reason) {
    case StopReason::memory:
      return "is over worker.max_memory";
    case StopReason::lifetime:
      return "reached worker.max_lifetime";
    case StopReason::stuck_ipc:
      return "does not read its IPC channel";
    default:
      return "is being restarted";
  }
}

std::int64_t milliseconds(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// How long a leftover group is waited for after SIGKILL: one that is still there then escaped
// (or cannot die), and a stop does not hang on it.
constexpr Duration kLeftoverKillWait = std::chrono::seconds(1);

}  // namespace

PoolSettings PoolSettings::from(const common::Config& config, common::ReadyMode ready) {
  PoolSettings s;
  s.restart = config.restart;
  s.ready_timeout = config.worker.ready_timeout;
  s.heartbeat_timeout = config.worker.heartbeat_timeout;
  s.shutdown_timeout = config.worker.shutdown_timeout;
  s.max_lifetime = config.worker.max_lifetime;
  s.ready_on_start = ready == common::ReadyMode::started;
  s.batch = config.reload.batch;
  return s;
}

WorkerPool::WorkerPool(PoolSettings settings, unsigned target, unsigned generation)
    : settings_(std::move(settings)), target_(target), generation_(generation) {}

std::vector<PoolAction> WorkerPool::take_actions() {
  std::vector<PoolAction> out;
  out.swap(actions_);
  return out;
}

void WorkerPool::log(LogLevel level, std::string text) {
  actions_.emplace_back(LogOrder{level, std::move(text)});
}

void WorkerPool::publish(nlohmann::json event) {
  actions_.emplace_back(PublishOrder{std::move(event)});
}

const Lane* WorkerPool::find(pid_t pid, unsigned* slot) const {
  Where where{};
  const Lane* lane = lane_in(*this, pid, &where);
  if (lane != nullptr && slot != nullptr) *slot = where.slot;
  return lane;
}

std::optional<pid_t> WorkerPool::serving(unsigned id) const {
  if (id >= slots_.size() || slots_[id].current.pid <= 0) return std::nullopt;
  return slots_[id].current.pid;
}

unsigned WorkerPool::ready_count() const {
  unsigned ready = 0;
  for_each_process([&](const Slot&, const Lane& lane) {
    if (lane.state == SlotState::ready) ++ready;
  });
  return ready;
}

void WorkerPool::apply(Slot& slot, Lane& lane, SlotEvent event, TimePoint now, Duration grace) {
  const Transition t = transition(lane.state, event);
  if (!t.allowed) return;
  lane.state = t.next;
  switch (t.action) {
    case SlotAction::none:
      break;
    case SlotAction::spawn:
      lane.retry_at.reset();
      lane.asked_to_stop = false;
      lane.killed = false;
      lane.group_killed = false;
      lane.stop_reason = StopReason::none;
      lane.spawn_error.clear();
      lane.ready_at.reset();
      lane.stop_deadline.reset();
      lane.recycle_at.reset();
      lane.pid = -1;
      actions_.emplace_back(SpawnOrder{slot.id, &lane != &slot.current, generation_});
      break;
    case SlotAction::terminate:
      lane.asked_to_stop = true;
      lane.stop_deadline = now + grace;
      actions_.emplace_back(SignalOrder{lane.pid, SIGTERM});
      break;
    case SlotAction::shorten_stop:
      if (lane.asked_to_stop && lane.stop_deadline && now + grace < *lane.stop_deadline) {
        lane.stop_deadline = now + grace;
      }
      break;
    case SlotAction::kill:
      // A stop whose grace ran out takes the whole group; a worker killed for a missed
      // deadline leaves its group to the leftover rule (SIGTERM first) when it is reaped.
      lane.group_killed = event == SlotEvent::kill_due;
      actions_.emplace_back(
          SignalOrder{lane.pid, SIGKILL,
                      lane.group_killed ? SignalTarget::worker_group : SignalTarget::worker});
      lane.killed = true;
      break;
    case SlotAction::announce:
      lane.ready_at = now;
      lane.last_heartbeat = now;
      log(LogLevel::info, fmt::format("worker {} ready (pid {}) in {}", slot.id, lane.pid,
                                      format_duration(now - lane.started_at)));
      publish({{"event", "worker_ready"},
               {"worker", slot.id},
               {"pid", lane.pid},
               {"generation", lane.generation}});
      break;
    case SlotAction::judge_exit:
      judge_exit(slot, lane, now);
      break;
    case SlotAction::release:
      lane.retry_at.reset();  // at once, if the slot is still wanted
      break;
  }
}

bool WorkerPool::proven(const Lane& lane, TimePoint now) const {
  if (lane.state != SlotState::ready || !lane.ready_at) return false;
  // `started` readiness says only that exec worked: up min_uptime is the proof.
  return !settings_.ready_on_start || now - lane.started_at >= settings_.restart.min_uptime;
}

// The current process of `slot` is gone without being asked: a runtime exit when it had been
// ready, else a failed start (whatever its uptime). Only failed starts grow the backoff.
void WorkerPool::judge_exit(Slot& slot, Lane& lane, TimePoint now) {
  const bool was_ready =
      lane.ready_at.has_value() &&
      (!settings_.ready_on_start || now - lane.started_at >= settings_.restart.min_uptime);
  if (was_ready && now - *lane.ready_at >= settings_.restart.min_uptime) slot.backoff.on_stable();
  if (was_ready) {
    schedule_respawn(slot, slot.backoff.on_runtime_exit(now), now, "");
    return;
  }
  const RestartDecision decision = slot.backoff.on_failed_start();
  if (decision.kind == RestartDecision::Kind::give_up) {
    apply(slot, lane, SlotEvent::give_up, now);
    log(LogLevel::error,
        fmt::format("worker {} failed {} times in a row (restart.max_failures); slot marked failed",
                    slot.id, decision.failures));
    publish({{"event", "worker_failed"}, {"worker", slot.id}, {"failures", decision.failures}});
    const bool all_failed = std::all_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
      return s.id >= target_ || s.current.state == SlotState::failed;
    });
    if (all_failed && settings_.restart.exit_on_failed) actions_.emplace_back(AllSlotsFailed{});
    return;
  }
  schedule_respawn(slot, decision, now, "failed start");
}

void WorkerPool::schedule_respawn(Slot& slot, const RestartDecision& decision, TimePoint now,
                                  const char* why) {
  ++slot.restarts;
  slot.current.retry_at = now + decision.delay;
  if (decision.delay.count() == 0) {
    log(LogLevel::info, fmt::format("respawning worker {}", slot.id));
  } else if (decision.braked) {
    log(LogLevel::warn,
        fmt::format("respawning worker {} in {} (more than restart.burst={} exits "
                    "of ready workers within 1s)",
                    slot.id, format_duration(decision.delay), settings_.restart.burst));
  } else {
    log(LogLevel::info, fmt::format("respawning worker {} in {} ({} {} in a row)", slot.id,
                                    format_duration(decision.delay), why, decision.failures));
  }
}

void WorkerPool::spawned(unsigned slot_id, bool incoming, pid_t pid, const std::string& error,
                         TimePoint now) {
  Slot& slot = slots_.at(slot_id);
  Lane& lane = incoming ? *slot.incoming : slot.current;
  lane.pid = pid;
  lane.serial = next_serial_++;
  lane.generation = generation_;
  lane.started_at = now;
  lane.ready_deadline = now + settings_.ready_timeout;
  lane.last_heartbeat = now;
  lane.spawn_error = error;
  // The pid names a new group: the one a worker left under that number is gone.
  leftovers_.erase(pid);
  if (settings_.max_lifetime.count() > 0) {
    // Up to 10% jitter so workers started together are not all recycled together.
    const auto lifetime = settings_.max_lifetime.count();
    const auto jitter = static_cast<long>(static_cast<unsigned long>(pid) * 2654435761UL %
                                          static_cast<unsigned long>(lifetime / 10 + 1));
    lane.recycle_at = now + Duration(lifetime - jitter);
  }
  where_[pid] = Where{slot_id, incoming ? Role::incoming : Role::current};
  if (!error.empty()) return;  // it exits 127 at once; its exit reports why
  log(LogLevel::info, fmt::format("worker {} started (pid {}, generation {}){}", slot_id, pid,
                                  generation_, incoming ? " to replace the running one" : ""));
  publish({{"event", "worker_started"},
           {"worker", slot_id},
           {"pid", pid},
           {"generation", generation_}});
  if (settings_.ready_on_start) apply(slot, lane, SlotEvent::became_ready, now);
}

void WorkerPool::spawn_failed(unsigned slot_id, bool incoming, const std::string& why,
                              TimePoint now) {
  Slot& slot = slots_.at(slot_id);
  if (incoming) {
    log(LogLevel::error, fmt::format("worker {}: cannot start a replacement: {}", slot_id, why));
    slot.incoming.reset();
    if (rollout_) fail_rollout("cannot start a replacement worker: " + why, now);
    return;
  }
  log(LogLevel::error, fmt::format("worker {}: cannot start: {}", slot_id, why));
  apply(slot, slot.current, SlotEvent::exited, now);
}

void WorkerPool::ready(pid_t pid, TimePoint now) {
  Where where{};
  Lane* lane = lane_of(pid, &where);
  if (lane != nullptr) apply(slots_.at(where.slot), *lane, SlotEvent::became_ready, now);
}

void WorkerPool::heartbeat(pid_t pid, TimePoint now) {
  if (Lane* lane = lane_of(pid); lane != nullptr) lane->last_heartbeat = now;
}

bool WorkerPool::exited(pid_t pid, const common::ExitStatus& status, TimePoint now,
                        bool group_left) {
  Where where{};
  Lane* lane = lane_of(pid, &where);
  if (lane == nullptr) return false;
  const Lane as_it_was = *lane;  // the lane moves on (a respawn, a retiring entry erased)
  judge_worker_exit(pid, where, *lane, status, now);
  if (group_left) stop_leftovers(where.slot, pid, as_it_was, now);
  return true;
}

void WorkerPool::judge_worker_exit(pid_t pid, Where where, Lane& lane,
                                   const common::ExitStatus& status, TimePoint now) {
  where_.erase(pid);
  Slot& slot = slots_.at(where.slot);
  const auto uptime = now - lane.started_at;
  nlohmann::json event = {{"event", "worker_exited"},
                          {"worker", slot.id},
                          {"pid", pid},
                          {"generation", lane.generation},
                          {"uptime_ms", milliseconds(uptime)}};
  if (status.code) event["code"] = *status.code;
  if (status.signal) event["signal"] = *status.signal;
  publish(std::move(event));
  const std::string what = lane.spawn_error.empty() ? status.describe() : lane.spawn_error;

  if (stopping_ || lane.asked_to_stop) {
    log(LogLevel::info, fmt::format("worker {} (pid {}) stopped: {} after {}", slot.id, pid,
                                    status.describe(), format_duration(uptime)));
    if (where.role == Role::current) {
      slot.last_exit = status;
      slot.last_exit_at = now;
    }
    apply(slot, lane, SlotEvent::exited_as_asked, now);
    lane.pid = -1;
    if (where.role == Role::retiring) retiring_.erase(pid);
    if (where.role == Role::incoming) slot.incoming.reset();
    return;
  }
  if (where.role == Role::incoming) {
    // A replacement that never became ready: its predecessor keeps serving.
    const std::string why = fmt::format("replacement for worker {} (pid {}) {} before it was ready",
                                        slot.id, pid, what);
    log(LogLevel::error, why);
    slot.incoming.reset();
    if (rollout_) fail_rollout(why, now);
    return;
  }
  if (where.role == Role::retiring) {  // killed for a deadline while draining: gone all the same
    log(LogLevel::info, fmt::format("worker {} (pid {}) stopped: {} after {}", slot.id, pid,
                                    status.describe(), format_duration(uptime)));
    retiring_.erase(pid);
    return;
  }
  slot.last_exit = status;
  slot.last_exit_at = now;
  const bool timed_out =
      lane.stop_reason == StopReason::heartbeat || lane.stop_reason == StopReason::ready_timeout;
  ++slot.restarts_by_reason[timed_out ? "timeout" : (status.signal ? "signal" : "exit")];
  if (lane.stop_reason == StopReason::heartbeat) {
    log(LogLevel::error, fmt::format("worker {} (pid {}) {} after missing heartbeats", slot.id, pid,
                                     status.describe()));
  } else if (!lane.spawn_error.empty()) {
    log(LogLevel::error,
        fmt::format("worker {} (pid {}) could not start: {}", slot.id, pid, lane.spawn_error));
  } else {
    log(LogLevel::warn, fmt::format("worker {} (pid {}) {} after {}", slot.id, pid,
                                    status.describe(), format_duration(uptime)));
  }
  apply(slot, lane, SlotEvent::exited, now);
  lane.pid = -1;
}

void WorkerPool::stop_leftovers(unsigned slot, pid_t pgid, const Lane& lane, TimePoint now) {
  if (lane.group_killed) {  // SIGKILL went to the whole group with the worker: only wait
    leftovers_.insert_or_assign(pgid, LeftoverGroup{slot, now, now + kLeftoverKillWait});
    return;
  }
  // A worker that was being stopped had one grace period for its whole group; what a worker
  // left when it exited on its own gets a grace period of its own.
  const TimePoint kill_at = lane.asked_to_stop && lane.stop_deadline
                                ? std::max(now, *lane.stop_deadline)
                                : now + settings_.shutdown_timeout;
  leftovers_.insert_or_assign(pgid, LeftoverGroup{slot, kill_at, std::nullopt});
  log(LogLevel::info,
      fmt::format("worker {} (pid {}) left processes behind in its process group; sending them "
                  "SIGTERM, SIGKILL in {}",
                  slot, pgid, format_duration(kill_at - now)));
  actions_.emplace_back(SignalOrder{pgid, SIGTERM, SignalTarget::leftovers});
}

void WorkerPool::leftovers_gone(pid_t pgid) {
  const auto it = leftovers_.find(pgid);
  if (it == leftovers_.end()) return;
  log(LogLevel::info,
      fmt::format("the processes worker {} (pid {}) left behind are gone", it->second.slot, pgid));
  leftovers_.erase(it);
}

bool WorkerPool::replace(unsigned slot_id, StopReason reason, TimePoint now) {
  if (stopping_ || slot_id >= slots_.size()) return false;
  Slot& slot = slots_[slot_id];
  if (slot.incoming) return false;
  if (slot.current.pid <= 0) {
    // Nothing serves in this slot (backoff or failed): start afresh with the current settings.
    apply(slot, slot.current, SlotEvent::revive, now);
    slot.current.retry_at.reset();
    return false;
  }
  log(LogLevel::info, fmt::format("worker {} (pid {}) {}; starting its replacement", slot.id,
                                  slot.current.pid, describe(reason)));
  slot.replacing_for = reason;
  slot.incoming.emplace();
  apply(slot, *slot.incoming, SlotEvent::retry_due, now);
  return true;
}

void WorkerPool::start_rollout(std::vector<unsigned> slots, std::uint64_t id) {
  const auto& batch = settings_.batch;
  unsigned size = batch.percent ? (target_ * batch.value + 99) / 100 : batch.value;
  size = std::max(1U, size);
  log(LogLevel::info, fmt::format("rolling restart of {}, {} at a time",
                                  common::count_of(slots.size(), "worker"), size));
  rollout_ = Rollout{std::move(slots), {}, size, next_serial_, id};
}

void WorkerPool::fail_rollout(const std::string& why, TimePoint now) {
  if (!rollout_) return;
  const Rollout failed = std::move(*rollout_);
  rollout_.reset();
  // Replacements still starting are withdrawn: the workers they were to replace serve on.
  for (unsigned id : failed.active) {
    if (id >= slots_.size() || !slots_[id].incoming) continue;
    Lane& lane = *slots_[id].incoming;
    if (lane.pid > 0) {
      stop_lane(&slots_[id], lane, StopReason::restart, settings_.shutdown_timeout, now);
    } else {
      slots_[id].incoming.reset();
    }
  }
  log(LogLevel::error, "rolling restart stopped: " + why);
  actions_.emplace_back(RolloutOutcome{failed.id, false, why});
}

void WorkerPool::scale_to(unsigned count, TimePoint now) {
  if (stopping_ || count == target_) return;
  log(LogLevel::info,
      fmt::format("scaling from {} to {}", target_, common::count_of(count, "worker")));
  publish({{"event", "scale"}, {"from", target_}, {"to", count}});
  target_ = count;
  all_ready_announced_ = false;
  // The operator asks for this many: slots that had given up are tried again.
  for (std::size_t i = 0; i < std::min<std::size_t>(target_, slots_.size()); ++i) {
    apply(slots_[i], slots_[i].current, SlotEvent::revive, now);
  }
}

void WorkerPool::stop(bool fast, Duration grace, TimePoint now) {
  if (stopping_ && fast_) return;
  stopping_ = true;
  fast_ = fast;
  if (rollout_) fail_rollout("forkd is stopping", now);
  const auto stop_all = [&](Slot* slot, Lane& lane) {
    if (lane.pid <= 0) return;
    if (lane.stop_reason == StopReason::none) lane.stop_reason = StopReason::shutdown;
    stop_lane(slot, lane, lane.stop_reason, grace, now);
  };
  for (auto& slot : slots_) {
    stop_all(&slot, slot.current);
    if (slot.incoming) stop_all(&slot, *slot.incoming);
  }
  for (auto& [pid, r] : retiring_) stop_all(&slots_.at(r.slot), r.lane);
  for (auto& [pgid, group] : leftovers_) {
    if (!group.give_up_at && now + grace < group.kill_at) group.kill_at = now + grace;
  }
}

void WorkerPool::stop_lane(Slot* slot, Lane& lane, StopReason reason, Duration grace,
                           TimePoint now) {
  if (lane.state != SlotState::stopping) lane.stop_reason = reason;
  apply(*slot, lane, SlotEvent::stop, now, grace);
}

void WorkerPool::reconfigure(PoolSettings settings, unsigned target, unsigned generation) {
  settings_ = std::move(settings);
  generation_ = generation;
  target_ = target;
  all_ready_announced_ = false;
  for (auto& slot : slots_) slot.backoff.reconfigure(settings_.restart);
}

void WorkerPool::tick(TimePoint now) {
  enforce_deadlines(now);
  if (!stopping_) {
    promote_replacements(now);
    advance_rollout(now);
    maintain_count(now);
    recycle_overaged(now);
    announce_readiness();
  }
}

void WorkerPool::enforce_deadlines(TimePoint now) {
  for (auto& slot : slots_) {
    enforce_deadline(&slot, slot.current, now);
    if (slot.incoming) enforce_deadline(&slot, *slot.incoming, now);
  }
  for (auto& [pid, r] : retiring_) enforce_deadline(&slots_.at(r.slot), r.lane, now);
  enforce_leftover_deadlines(now);
}

void WorkerPool::enforce_leftover_deadlines(TimePoint now) {
  for (auto it = leftovers_.begin(); it != leftovers_.end();) {
    const pid_t pgid = it->first;
    LeftoverGroup& group = it->second;
    if (group.give_up_at && now >= *group.give_up_at) {
      log(LogLevel::warn,
          fmt::format("processes worker {} (pid {}) left behind are still there {} after "
                      "SIGKILL; no longer waiting for them",
                      group.slot, pgid, format_duration(kLeftoverKillWait)));
      it = leftovers_.erase(it);
      continue;
    }
    if (!group.give_up_at && now >= group.kill_at) {
      log(LogLevel::warn,
          fmt::format("worker {} (pid {}): what it left behind is still running after its "
                      "shutdown grace period; sending SIGKILL to its process group",
                      group.slot, pgid));
      actions_.emplace_back(SignalOrder{pgid, SIGKILL, SignalTarget::leftovers});
      group.give_up_at = now + kLeftoverKillWait;
    }
    ++it;
  }
}

void WorkerPool::enforce_deadline(Slot* slot, Lane& lane, TimePoint now) {
  if (lane.pid <= 0 || lane.killed) return;
  const auto kill = [&](SlotEvent event, StopReason reason, const char* why) {
    if (reason != StopReason::none) lane.stop_reason = reason;
    log(LogLevel::warn,
        fmt::format("worker {} (pid {}): {}; sending SIGKILL", slot->id, lane.pid, why));
    apply(*slot, lane, event, now);
  };
  if (lane.state == SlotState::starting && now >= lane.ready_deadline) {
    kill(SlotEvent::ready_overdue, StopReason::ready_timeout, "not ready within ready_timeout");
  } else if (lane.state == SlotState::stopping && lane.stop_deadline &&
             now >= *lane.stop_deadline) {
    kill(SlotEvent::kill_due, StopReason::none, "still running after its shutdown grace period");
  } else if (lane.state == SlotState::ready && settings_.heartbeat_timeout.count() > 0 &&
             now - lane.last_heartbeat >= settings_.heartbeat_timeout) {
    kill(SlotEvent::heartbeat_overdue, StopReason::heartbeat,
         "no heartbeat within heartbeat_timeout");
  }
}

bool WorkerPool::slot_busy(unsigned id) const {
  const Slot& slot = slots_.at(id);
  if (slot.current.pid > 0 || slot.incoming) return true;
  return std::any_of(retiring_.begin(), retiring_.end(),
                     [&](const auto& entry) { return entry.second.slot == id; });
}

void WorkerPool::maintain_count(TimePoint now) {
  while (slots_.size() < target_) {
    slots_.emplace_back(static_cast<unsigned>(slots_.size()), settings_.restart);
  }
  // Slots past the target drain away and are dropped once their last process is gone.
  for (std::size_t i = target_; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    for (Lane* lane : {&slot.current, slot.incoming ? &*slot.incoming : nullptr}) {
      if (lane != nullptr && lane->pid > 0 && lane->state != SlotState::stopping) {
        stop_lane(&slot, *lane, StopReason::scale_down, settings_.shutdown_timeout, now);
      }
    }
    if (slot.incoming && slot.incoming->pid <= 0) slot.incoming.reset();
  }
  while (slots_.size() > target_ && !slot_busy(static_cast<unsigned>(slots_.size() - 1))) {
    slots_.pop_back();
  }
  for (std::size_t i = 0; i < std::min<std::size_t>(target_, slots_.size()); ++i) {
    Slot& slot = slots_[i];
    if (slot.current.state != SlotState::backoff) continue;
    if (slot.current.retry_at && now < *slot.current.retry_at) continue;
    apply(slot, slot.current, SlotEvent::retry_due, now);
  }
}

void WorkerPool::recycle_overaged(TimePoint now) {
  for (std::size_t i = 0; i < std::min<std::size_t>(target_, slots_.size()); ++i) {
    Slot& slot = slots_[i];
    Lane& lane = slot.current;
    if (slot.incoming || lane.pid <= 0 || lane.state != SlotState::ready) continue;
    if (lane.recycle_at && now >= *lane.recycle_at) {
      lane.recycle_at.reset();
      (void)replace(slot.id, StopReason::lifetime, now);
    }
  }
}

void WorkerPool::promote_replacements(TimePoint now) {
  for (auto& slot : slots_) {
    if (!slot.incoming || !proven(*slot.incoming, now)) continue;
    // The replacement serves now: only then is its predecessor told to drain.
    Lane previous = std::move(slot.current);
    slot.current = std::move(*slot.incoming);
    slot.incoming.reset();
    where_[slot.current.pid] = Where{slot.id, Role::current};
    if (slot.replacing_for == StopReason::memory || slot.replacing_for == StopReason::lifetime) {
      ++slot.restarts_by_reason[slot.replacing_for == StopReason::memory ? "memory" : "lifetime"];
    }
    ++slot.restarts;
    if (previous.pid <= 0) continue;
    const pid_t old = previous.pid;
    where_[old] = Where{slot.id, Role::retiring};
    auto [it, inserted] = retiring_.emplace(old, RetiringProcess{slot.id, std::move(previous)});
    stop_lane(&slot, it->second.lane, StopReason::restart, settings_.shutdown_timeout, now);
  }
}

void WorkerPool::advance_rollout(TimePoint now) {
  if (!rollout_) return;
  const std::uint64_t floor = rollout_->serial_floor;
  const auto replaced = [&](unsigned id) {
    if (id >= slots_.size() || id >= target_) return true;
    const Slot& slot = slots_[id];
    if (slot.incoming) return false;
    if (slot.current.pid <= 0) return true;  // respawns with the new settings anyway
    return slot.current.serial >= floor && slot.current.state == SlotState::ready;
  };
  std::erase_if(rollout_->active, replaced);
  while (rollout_ && rollout_->active.size() < rollout_->batch && !rollout_->pending.empty()) {
    const unsigned id = rollout_->pending.front();
    rollout_->pending.erase(rollout_->pending.begin());
    if (id >= slots_.size() || id >= target_) continue;
    Slot& slot = slots_[id];
    if (slot.current.state == SlotState::failed) {
      apply(slot, slot.current, SlotEvent::revive, now);  // tried again, as configured now
      continue;
    }
    if (slot.incoming || slot.current.pid <= 0 || slot.current.serial >= floor) continue;
    if (replace(id, StopReason::restart, now)) rollout_->active.push_back(id);
  }
  if (rollout_ && rollout_->active.empty() && rollout_->pending.empty()) {
    const std::uint64_t id = rollout_->id;
    rollout_.reset();
    log(LogLevel::info,
        fmt::format("rolling restart complete: every worker replaced (generation {})",
                    generation_));
    actions_.emplace_back(RolloutOutcome{id, true, ""});
  }
}

void WorkerPool::announce_readiness() {
  if (all_ready_announced_) return;
  unsigned ready = 0;
  for (std::size_t i = 0; i < std::min<std::size_t>(target_, slots_.size()); ++i) {
    if (slots_[i].current.pid > 0 && slots_[i].current.state == SlotState::ready) ++ready;
  }
  if (ready < target_) return;
  all_ready_announced_ = true;
  log(LogLevel::info,
      target_ == 1 ? std::string("1 worker ready") : fmt::format("all {} workers ready", target_));
  actions_.emplace_back(AllReady{target_});
}

std::optional<TimePoint> WorkerPool::next_wakeup() const {
  std::optional<TimePoint> next;
  const auto consider = [&](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  const auto deadlines = [&](const Slot& slot, const Lane& lane, bool incoming) {
    if (lane.pid <= 0) {
      if (!stopping_ && !incoming && lane.state == SlotState::backoff && slot.id < target_ &&
          lane.retry_at) {
        consider(*lane.retry_at);
      }
      return;
    }
    if (lane.killed) return;
    switch (lane.state) {
      case SlotState::starting:
        consider(lane.ready_deadline);
        break;
      case SlotState::stopping:
        if (lane.stop_deadline) consider(*lane.stop_deadline);
        break;
      case SlotState::ready:
        if (settings_.heartbeat_timeout.count() > 0) {
          consider(lane.last_heartbeat + settings_.heartbeat_timeout);
        }
        if (stopping_) break;
        if (!incoming && lane.recycle_at) consider(*lane.recycle_at);
        if (incoming && settings_.ready_on_start) {
          consider(lane.started_at + settings_.restart.min_uptime);
        }
        break;
      default:
        break;
    }
  };
  for (const auto& slot : slots_) {
    deadlines(slot, slot.current, false);
    if (slot.incoming) deadlines(slot, *slot.incoming, true);
  }
  for (const auto& [pid, r] : retiring_) deadlines(slots_.at(r.slot), r.lane, false);
  for (const auto& [pgid, group] : leftovers_) consider(group.give_up_at.value_or(group.kill_at));
  return next;
}

}  // namespace forkd::daemon
