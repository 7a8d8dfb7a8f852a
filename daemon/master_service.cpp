// What the master tells its service manager (sd_notify: READY, STATUS, WATCHDOG) and the
// kernel setting it checks once for reuseport listeners.
#include <spdlog/logger.h>
#include <algorithm>
#include <cstring>

#include "common/sd_notify.hpp"
#include "daemon/master.hpp"
#include "daemon/request_migration.hpp"

namespace forkd::daemon {

// Once per master, as soon as a TCP listener uses reuseport (daemon/request_migration.hpp).
void Master::check_request_migration() {
  if (migration_checked_) return;
  const bool wanted = std::any_of(config_.listen.begin(), config_.listen.end(), [](const auto& l) {
    return l.reuseport && l.kind != common::AddressKind::unix_path;
  });
  if (!wanted) return;
  migration_checked_ = true;
  const RequestMigration migration = enable_request_migration();
  switch (migration.state) {
    case RequestMigration::State::already_on:
      log_->debug("reuseport: net.ipv4.tcp_migrate_req is on");
      break;
    case RequestMigration::State::switched_on:
      log_->info(
          "reuseport: set net.ipv4.tcp_migrate_req=1, so that connections queued on a retiring "
          "worker's socket move to the other workers' sockets");
      break;
    case RequestMigration::State::off:
      log_->warn(
          "reuseport: net.ipv4.tcp_migrate_req: {}; a retiring worker serves what is queued on "
          "its socket, but a connection arriving in the instant it closes is reset (sysctl "
          "net.ipv4.tcp_migrate_req=1 avoids that)",
          migration.detail);
      break;
  }
}

void Master::announce_ready() {
  if (service_ready_sent_) {
    notify_service_manager("STATUS=" + status_line());
  } else {
    // After a hot upgrade, the old master names us the main process when it hands over.
    service_ready_sent_ = true;
    notify_service_manager("READY=1\nSTATUS=" + status_line());
  }
  tell_predecessor_ready();
}

void Master::notify_service_manager(const std::string& state) {
  const int rc = common::notify(state);
  if (rc < 0) log_->debug("sd_notify: {}", std::strerror(-rc));
}

std::string Master::status_line() const {
  return std::to_string(pool_.ready_count()) + "/" + std::to_string(pool_.target()) +
         " workers ready, generation " + std::to_string(pool_.generation());
}

void Master::start_watchdog() {
  const auto interval = common::watchdog_interval();
  if (!interval) return;
  // Pinged from the loop itself: if the loop stalls, the pings stop and systemd acts.
  watchdog_.expires_after(*interval / 2);
  watchdog_.async_wait([this](std::error_code ec) {
    if (ec || finished_) return;
    notify_service_manager("WATCHDOG=1");
    start_watchdog();
  });
}

}  // namespace forkd::daemon
