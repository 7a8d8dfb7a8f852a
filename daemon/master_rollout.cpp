// Replacing running workers without a gap: one slot (restart ID, memory or lifetime recycle,
// a worker that stopped reading its IPC) or many in batches (restart all, reload). The new
// worker starts next to the old one; only once it is ready is the old one told to drain.
#include <spdlog/logger.h>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "daemon/master.hpp"
#include "daemon/proc_stats.hpp"

namespace forkd::daemon {

namespace {

constexpr common::Duration kMemoryCheckInterval = std::chrono::seconds(2);

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

}  // namespace

bool Master::replace_slot(Slot& slot, StopReason reason, TimePoint now) {
  if (stopping_ || slot.incoming) return false;
  if (!slot.current) {
    // Nothing serves in this slot (backoff or failed): start afresh with the current config.
    slot.respawn_at.reset();
    slot.failed = false;
    return false;
  }
  if (const auto* p = find_process(*slot.current)) {
    log_->info("worker {} (pid {}) {}; starting its replacement", slot.id, p->pid,
               describe(reason));
  }
  slot.replacing_for = reason;
  spawn_worker(slot, now, true);
  return slot.incoming.has_value();
}

void Master::start_rollout(std::vector<unsigned> slots,
                           std::function<void(bool, const std::string&)> done) {
  const auto& batch = config_.reload.batch;
  unsigned size = batch.percent ? (target_ * batch.value + 99) / 100 : batch.value;
  size = std::max(1U, size);
  rollout_ = Rollout{std::move(slots), {}, size, next_serial_, std::move(done)};
  log_->info("rolling restart of {} workers, {} at a time", rollout_->pending.size(), size);
}

void Master::advance_rollout(TimePoint now) {
  if (!rollout_ || stopping_) return;
  const std::uint64_t floor = rollout_->serial_floor;
  const auto replaced = [&](unsigned id) {
    Slot* slot = find_slot(id);
    if (slot == nullptr || id >= target_) return true;
    if (slot->incoming) return false;
    if (!slot->current) return true;  // respawns with the new configuration anyway
    const auto* p = find_process(*slot->current);
    return p == nullptr || (p->serial >= floor && p->state == SlotState::ready);
  };
  std::erase_if(rollout_->active, replaced);
  while (rollout_->active.size() < rollout_->batch && !rollout_->pending.empty()) {
    const unsigned id = rollout_->pending.front();
    rollout_->pending.erase(rollout_->pending.begin());
    Slot* slot = find_slot(id);
    if (slot == nullptr || id >= target_ || slot->incoming || !slot->current) continue;
    if (const auto* p = find_process(*slot->current); p == nullptr || p->serial >= floor) continue;
    const bool started = replace_slot(*slot, StopReason::restart, now);
    if (!rollout_) return;  // the replacement failed at once and ended the rollout
    if (started) rollout_->active.push_back(id);
  }
  if (rollout_->active.empty() && rollout_->pending.empty()) {
    auto done = std::move(rollout_->done);
    rollout_.reset();
    log_->info("rolling restart complete: every worker replaced (generation {})", generation_);
    if (done) done(true, "");
  }
}

void Master::fail_rollout(const std::string& why) {
  if (!rollout_) return;
  Rollout failed = std::move(*rollout_);
  rollout_.reset();
  // Replacements still starting are withdrawn: the workers they were to replace serve on.
  for (unsigned id : failed.active) {
    Slot* slot = find_slot(id);
    if (slot == nullptr || !slot->incoming) continue;
    if (auto* p = find_process(*slot->incoming)) {
      stop_process(*p, StopReason::restart, config_.worker.shutdown_timeout);
    }
  }
  log_->error("rolling restart stopped: {}", why);
  if (failed.done) failed.done(false, why);
}

void Master::recycle_overgrown(TimePoint now) {
  if (stopping_) return;
  const auto max_memory = config_.worker.max_memory;
  const bool check_memory = max_memory > 0 && (!next_memory_check_ || now >= *next_memory_check_);
  if (max_memory > 0 && check_memory) next_memory_check_ = now + kMemoryCheckInterval;
  if (max_memory == 0) next_memory_check_.reset();
  for (auto& slot : slots_) {
    if (!slot.current || slot.incoming || slot.id >= target_) continue;
    WorkerProcess* p = find_process(*slot.current);
    if (p == nullptr || p->state != SlotState::ready) continue;
    if (p->recycle_at && now >= *p->recycle_at) {
      p->recycle_at.reset();
      (void)replace_slot(slot, StopReason::lifetime, now);
      continue;
    }
    if (!check_memory) continue;
    const auto pss = read_pss_bytes(p->pid, p->owner);
    if (pss && *pss > max_memory) {
      log_->warn("worker {} (pid {}) uses {} bytes PSS, over max_memory {}", slot.id, p->pid, *pss,
                 max_memory);
      (void)replace_slot(slot, StopReason::memory, now);
    }
  }
}

}  // namespace forkd::daemon
