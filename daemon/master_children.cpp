// The master's children as processes: the signals the pool orders, reaping every exit (workers,
// their orphans, a hot upgrade's new master), and the memory check that recycles a worker.
#include <signal.h>
#include <sys/wait.h>

#include <spdlog/logger.h>
#include <cerrno>
#include <cstring>

#include "daemon/master.hpp"
#include "daemon/notify_receiver.hpp"
#include "daemon/output_capture.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/process_group.hpp"
#include "daemon/worker_channel.hpp"

namespace forkd::daemon {

namespace {

// PSS is read from /proc/PID/smaps_rollup: cheap, but not for every pass of the loop.
constexpr common::Duration kMemoryCheckInterval = std::chrono::seconds(2);

}  // namespace

void Master::send_signal(const SignalOrder& order) {
  const std::string name = common::signal_name(order.signo);
  switch (order.target) {
    case SignalTarget::worker:
      if (::kill(order.pid, order.signo) != 0) {
        log_->warn("worker pid {}: {} failed: {}", order.pid, name, std::strerror(errno));
      }
      break;
    case SignalTarget::worker_group:
      if (::kill(-order.pid, order.signo) != 0) {
        log_->warn("process group of worker pid {}: {} failed: {}", order.pid, name,
                   std::strerror(errno));
      }
      break;
    case SignalTarget::leftovers:
      if (signal_leftover_group(order.pid, order.signo) == 0) break;
      if (errno == ESRCH) {
        pool_.leftovers_gone(order.pid);
      } else {
        log_->warn("process group of worker pid {}: {} failed: {}", order.pid, name,
                   std::strerror(errno));
      }
      break;
  }
}

// Every exit is collected before any is handled: what a worker left behind is judged once its
// own children that died with it (reparented to us) are reaped too.
void Master::reap_children() {
  std::vector<std::pair<pid_t, int>> exits;
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;  // 0: none left to reap now; -1/ECHILD: no children at all
    exits.emplace_back(pid, status);
  }
  // Each exit on its own: one that fails must not lose the others already reaped.
  for (const auto& [pid, status] : exits) on_child_exit(pid, status);
}

void Master::check_leftovers() {
  std::vector<pid_t> gone;
  for (const auto& [pgid, group] : pool_.leftovers()) {
    if (!leftover_group_alive(pgid)) gone.push_back(pgid);
  }
  for (const pid_t pgid : gone) pool_.leftovers_gone(pgid);
}

void Master::on_child_exit(pid_t pid, int wait_status) {
  if (upgrade_.is_new_master(pid)) {
    on_upgrade_exit(wait_status);
    return;
  }
  // The worker's last output is logged before its exit. Each step is guarded on its own: the
  // pid is reaped already, so the pool must learn of the exit whatever failed before.
  guarded("output of worker pid " + std::to_string(pid), [&] {
    if (auto io = workers_.extract(pid); !io.empty()) {
      unsigned slot = 0;
      if (io.mapped().accepted && pool_.find(pid, &slot) != nullptr) {
        accepted_by_exited_[slot] += *io.mapped().accepted;
      }
      if (io.mapped().channel) io.mapped().channel->close();
      if (io.mapped().notify) io.mapped().notify->close();
      for (auto& output : io.mapped().outputs) output->close();
      if (io.mapped().logs) io.mapped().logs->flush();
    }
  });
  guarded("exit of pid " + std::to_string(pid), [&] {
    const common::ExitStatus status = common::ExitStatus::from_wait_status(wait_status);
    // Processes of a worker's group that outlive it are reparented to us (a subreaper); they are
    // reaped here like any orphan, and the pool stops them as it stopped the worker.
    const bool group_left = pool_.find(pid) != nullptr && leftover_group_alive(pid);
    if (!pool_.exited(pid, status, Clock::now(), group_left)) {
      log_->debug("reaped process {} ({}), not a worker", pid, status.describe());
    }
  });
}

void Master::check_memory(TimePoint now) {
  const auto max_memory = effective_max_memory().value;
  if (max_memory == 0 || pool_.stopping()) {
    next_memory_check_.reset();
    return;
  }
  if (next_memory_check_ && now < *next_memory_check_) return;
  next_memory_check_ = now + kMemoryCheckInterval;
  for (const auto& slot : pool_.slots()) {
    const Lane& lane = slot.current;
    if (slot.id >= pool_.target() || slot.incoming || lane.pid <= 0 ||
        lane.state != SlotState::ready) {
      continue;
    }
    const auto io = workers_.find(lane.pid);
    const auto pss =
        read_pss_bytes(lane.pid, io != workers_.end() ? io->second.owner : std::nullopt);
    if (pss && *pss > max_memory) {
      log_->warn("worker {} (pid {}) uses {} bytes PSS, over max_memory {}", slot.id, lane.pid,
                 *pss, max_memory);
      (void)pool_.replace(slot.id, StopReason::memory, now);
    }
  }
}

}  // namespace forkd::daemon
