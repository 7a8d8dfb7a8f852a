// Stopping: stop.delay (probes say 503 while workers still serve), the drain the pool carries
// out, and the master's own end once nothing runs.
#include <spdlog/logger.h>
#include <nlohmann/json.hpp>

#include "common/plural.hpp"
#include "common/units.hpp"
#include "daemon/master.hpp"

namespace forkd::daemon {

namespace {

// SIGQUIT: workers get this long after SIGTERM, then SIGKILL.
constexpr common::Duration kFastStopGrace = std::chrono::seconds(1);

}  // namespace

void Master::begin_stop_delay() {
  stop_delaying_ = true;
  log_->info(
      "stop requested: /readyz answers 503 and workers serve for {} more (stop.delay) "
      "before the drain; another SIGTERM drains at once",
      common::format_duration(config_.stop.delay));
  publish({{"event", "stop_delay"}, {"delay_ms", config_.stop.delay.count()}});
  notify_service_manager("STATUS=stopping: waiting stop.delay before the drain");
  stop_delay_.expires_after(config_.stop.delay);
  stop_delay_.async_wait([this](std::error_code error) {
    if (error || !stop_delaying_) return;
    guarded("stop.delay", [&] { begin_stop(false); });
  });
}

void Master::begin_stop(bool fast) {
  if (stop_delaying_) {
    stop_delaying_ = false;
    stop_delay_.cancel();
  }
  if (pool_.stopping() && pool_.fast_stop()) return;
  const bool already = pool_.stopping();
  log_->info("{} stop{}: {} to stop", fast ? "fast" : "graceful", already ? " (escalated)" : "",
             common::count_of(pool_.process_count(), "worker"));
  publish({{"event", "stopping"}, {"fast", fast}});
  notify_service_manager("STOPPING=1\nSTATUS=stopping");
  pool_.stop(fast, fast ? kFastStopGrace : config_.worker.shutdown_timeout, Clock::now());
}

void Master::finish() {
  if (finished_) return;
  finished_ = true;
  wakeup_.cancel();
  if (steering_) steering_->close();
  watchdog_.cancel();
  stop_delay_.cancel();
  for (auto& w : reply_waiters_) w.respond({{"ok", false}, {"error", "forkd is stopping"}});
  reply_waiters_.clear();
  for (auto& respond : queued_reload_replies_)
    respond({{"ok", false}, {"error", "forkd is stopping"}});
  queued_reload_replies_.clear();
  // After a hand-over the sockets and their files belong to the new master.
  const bool handed_over = upgrade_.handed_over();
  if (!handed_over) listeners_.remove_socket_files();
  if (control_) {
    if (!handed_over) control_->remove_socket_file();
    control_->close();
  }
  if (metrics_) metrics_->close();
  if (pidfile_) (void)pidfile_->remove();  // not ours any more after a hand-over: left alone
  log_->info("stopped (exit code {})", exit_code_);
  io_.stop();
}

}  // namespace forkd::daemon
