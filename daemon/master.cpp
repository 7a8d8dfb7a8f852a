#include "daemon/master.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/logger.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>
#include <variant>

#include "common/decimal.hpp"
#include "common/log.hpp"
#include "common/plural.hpp"
#include "common/sd_notify.hpp"
#include "common/units.hpp"
#include "daemon/notify_receiver.hpp"
#include "daemon/output_capture.hpp"
#include "daemon/process_group.hpp"
#include "daemon/request_migration.hpp"
#include "daemon/resource_limits.hpp"
#include "daemon/worker_channel.hpp"

namespace forkd::daemon {

namespace {

// The signal table, as nginx's: signal -> name -> meaning. Nothing else maps signals.
struct SignalMapping {
  int signo;
  MasterEvent event;
};
constexpr std::array kSignalTable = {
    SignalMapping{SIGTERM, MasterEvent::graceful_stop},
    SignalMapping{SIGINT, MasterEvent::graceful_stop},
    SignalMapping{SIGQUIT, MasterEvent::fast_stop},
    SignalMapping{SIGHUP, MasterEvent::reload},
    SignalMapping{SIGUSR1, MasterEvent::reopen_logs},
    SignalMapping{SIGUSR2, MasterEvent::upgrade},
    SignalMapping{SIGTTIN, MasterEvent::scale_up},
    SignalMapping{SIGTTOU, MasterEvent::scale_down},
    SignalMapping{SIGCHLD, MasterEvent::child_exited},
};

constexpr common::Duration kFastStopGrace = std::chrono::seconds(1);
constexpr common::Duration kMemoryCheckInterval = std::chrono::seconds(2);
constexpr int kPassRounds = 4;

// A descriptor the old master of a hot upgrade passed down by number in `variable`.
common::UniqueFd inherited_fd(std::string_view variable, std::string_view text) {
  const auto fd = common::parse_decimal<int>(text);
  if (!fd || *fd <= STDERR_FILENO || ::fcntl(*fd, F_GETFD) < 0) {
    throw std::runtime_error(std::string(variable) + "=" + std::string(text) +
                             ": not a descriptor the old master passed on");
  }
  common::UniqueFd owned(*fd);
  (void)common::set_cloexec(owned.get(), true);
  return owned;
}

}  // namespace

Master::Master(common::Config config, std::string config_path, LaunchInfo launch)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      limits_(read_resource_limits()),
      takeover_(plan_bind_takeover(config_)),
      started_at_(Clock::now()),
      wakeup_(io_),
      pool_(pool_settings(), target_for(config_, limits_), 1),
      log_(common::log::get("master")),
      watchdog_(io_),
      stop_delay_(io_),
      launch_(std::move(launch)) {
  // A testing aid, read once and kept from the workers and from a hot upgrade's new master.
  if (const char* spec = std::getenv("FORKD_TEST_THROW")) {
    fault_ = FaultInjection::parse(spec);
    log_->warn("FORKD_TEST_THROW: call {} of the handler \"{}\" will throw (a testing aid)",
               fault_->nth(), fault_->handler());
  }
  ::unsetenv("FORKD_TEST_THROW");
  // Orphans of our workers (their own children) are reparented to us and reaped, never left
  // as zombies: the job of tini/dumb-init when forkd is a container's PID 1.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log_->warn("cannot become a child subreaper: {}", std::strerror(errno));
  // SIGPIPE is ignored (a worker or client going away is an error code, not a death).
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, nullptr);
  signals_ = std::make_unique<common::SignalSource>(
      io_,
      std::initializer_list<int>{SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN,
                                 SIGTTOU, SIGCHLD},
      [this](const common::SignalInfo& signal) {
        const int signo = signal.signo;
        for (const auto& m : kSignalTable) {
          if (m.signo != signo) continue;
          if (signo != SIGCHLD) {
            log_->info("received {}", common::signal_name(signo));
            audit_.signal(signal);
          }
          guarded(common::signal_name(signo), [&] { handle(m.event); });
          return;
        }
      });
  devnull_ = common::UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull_) throw common::system_error_from_errno("open /dev/null");
  std::vector<PassedSocket> passed = take_passed_sockets();
  common::UniqueFd control_fd;
  common::UniqueFd metrics_fd;
  std::erase_if(passed, [&](PassedSocket& p) {
    if (p.name == kControlSocketName) {
      control_fd = std::move(p.fd);
    } else if (p.name == kMetricsSocketName) {
      metrics_fd = std::move(p.fd);
    } else {
      return false;
    }
    return true;
  });
  // A hot upgrade's new master learns its predecessor and the pipe to tell it "ready", and
  // shares its predecessor's pidfile lock, so no third forkd can slip in between.
  common::UniqueFd inherited_pidfile;
  if (const char* fd_text = std::getenv("FORKD_UPGRADE_FD")) {
    predecessor_ = inherited_fd("FORKD_UPGRADE_FD", fd_text);
    predecessor_pid_ = ::getppid();
    if (const char* pidfile_fd = std::getenv("FORKD_PIDFILE_FD")) {
      inherited_pidfile = inherited_fd("FORKD_PIDFILE_FD", pidfile_fd);
    }
  }
  ::unsetenv("FORKD_UPGRADE_FD");
  ::unsetenv("FORKD_PIDFILE_FD");
  if (!config_.pidfile.empty()) {
    pidfile_ = inherited_pidfile ? Pidfile::adopt(std::move(inherited_pidfile), config_.pidfile)
                                 : Pidfile::acquire(config_.pidfile);
  }
  listeners_.open_all(config_.listen, std::move(passed), predecessor_.valid());
  listeners_.ensure_worker_sockets(pool_.target());
  steering_ = std::make_unique<ReuseportSteering>(io_, log_,
                                                  [this] { guarded("reuseport steering", [] {}); });
  steering_->track(listeners_);
  for (const auto& l : listeners_.listeners()) {
    const int fd = l.config.reuseport ? l.per_worker.front().get() : l.shared.get();
    log_->info("listening on {} ({}{}{})", describe_socket(fd), l.config.name,
               l.adopted ? ", passed in with LISTEN_FDS" : "",
               l.config.reuseport ? ", reuseport" : "");
  }
  check_request_migration();
  open_control_socket(std::move(control_fd));
  open_metrics(std::move(metrics_fd));
  start_watchdog();
  if (predecessor_)
    log_->info("hot upgrade: taking over from the master with pid {}", predecessor_pid_);
}

Master::~Master() = default;

void log_error_and_go_on(spdlog::logger& log, std::string_view what, std::string_view error) {
  log.error("{}: {}; the master goes on", what, error);
}

void Master::log_limits() const {
  if (config_.workers == 0) log_->info("workers: {}", workers_from());
  if (config_.worker.max_memory_auto) log_->info("max_memory: {}", effective_max_memory().reason);
  if (config_.worker.app.empty() && !config_.listen.empty()) {
    log_->info("bind takeover {}; workers are ready when {}", takeover_.why,
               ready_description(effective_ready_mode(config_, takeover_)));
  }
}

unsigned Master::target_for(const common::Config& config, const ResourceLimits& limits) {
  return config.workers == 0 ? static_cast<unsigned>(auto_workers(limits).value) : config.workers;
}

Derived Master::effective_max_memory() const {
  if (config_.worker.max_memory_auto) return auto_max_memory(limits_, pool_.target());
  return {config_.worker.max_memory, {}};
}

PoolSettings Master::pool_settings() const {
  return PoolSettings::from(config_, effective_ready_mode(config_, takeover_));
}

int Master::run() {
  log_->info("forkd {} started (pid {}), {}, config {}", FORKD_VERSION, ::getpid(),
             common::count_of(pool_.target(), "worker"), config_.source);
  log_limits();
  guarded("start", [] {});
  // The backstop for handlers that are not guarded themselves (output capture, the control
  // and metrics servers' own I/O): an exception leaves run(), is logged, and the loop goes on.
  while (!finished_) {
    try {
      io_.run();
      break;
    } catch (const std::exception& e) {
      log_error_and_go_on(*log_, "event loop", e.what());
    }
  }
  return exit_code_;
}

void Master::handle(MasterEvent event) {
  switch (event) {
    case MasterEvent::graceful_stop:
      // A second SIGTERM during stop.delay skips the rest of it; one during the drain is fast.
      if (!pool_.stopping() && !stop_delaying_ && config_.stop.delay.count() > 0) {
        begin_stop_delay();
      } else {
        begin_stop(pool_.stopping());
      }
      break;
    case MasterEvent::fast_stop:
      begin_stop(true);
      break;
    case MasterEvent::reload:
      request_reload({}, false);
      break;
    case MasterEvent::upgrade:
      start_upgrade();
      break;
    case MasterEvent::reopen_logs:
      reopen_logs();
      break;
    case MasterEvent::scale_up:
    case MasterEvent::scale_down: {
      const long long step = event == MasterEvent::scale_up ? 1 : -1;
      if (const auto error = request_scale(pool_.target() + step); !error.empty()) {
        log_->warn("{}", error);
      }
      break;
    }
    case MasterEvent::child_exited:
      break;  // the pass reaps
  }
}

void Master::pass() {
  if (finished_) return;
  const TimePoint now = Clock::now();
  reap_children();
  check_leftovers();
  enforce_upgrade_deadline(now);
  check_memory(now);
  expire_reply_waiters(now);
  start_queued_reload();
  // What the actions report back (a spawn's pid, readiness at exec) can let the pool decide
  // more at once; a few rounds settle it (each round needs a new fact, so this ends).
  for (int round = 0; round < kPassRounds; ++round) {
    pool_.tick(now);
    // Before the actions: a worker told to drain is out of the steering set by then.
    steer_connections();
    if (!run_pool_actions()) break;
  }
  // Reuseport sockets of slots past the target close on our side first, so each lives on only
  // in its draining worker, which takes what is queued on it before closing it. The set a
  // reload keeps for its rollback lets go of them too: a rollback opens new ones.
  if (!pool_.stopping()) {
    listeners_.trim_worker_sockets(pool_.target());
    if (reload_) reload_->listeners.trim_worker_sockets(pool_.target());
  }
  settle_incoming_sockets();
  steer_connections();
  if (pool_.stopping() && pool_.process_count() == 0 && pool_.leftovers().empty() &&
      !upgrade_.pending()) {
    finish();
    return;
  }
  schedule_wakeup();
}

bool Master::run_pool_actions() {
  bool any = false;
  for (auto actions = pool_.take_actions(); !actions.empty(); actions = pool_.take_actions()) {
    any = true;
    for (auto& action : actions) {
      std::visit(
          [this](auto& a) {
            using A = std::decay_t<decltype(a)>;
            if constexpr (std::is_same_v<A, SpawnOrder>) {
              spawn_worker(a);
            } else if constexpr (std::is_same_v<A, SignalOrder>) {
              send_signal(a);
            } else if constexpr (std::is_same_v<A, PublishOrder>) {
              publish(std::move(a.event));
            } else if constexpr (std::is_same_v<A, LogOrder>) {
              const auto level = a.level == LogLevel::error  ? spdlog::level::err
                                 : a.level == LogLevel::warn ? spdlog::level::warn
                                                             : spdlog::level::info;
              log_->log(level, "{}", a.text);
            } else if constexpr (std::is_same_v<A, RolloutOutcome>) {
              auto done = rollout_done_.extract(a.id);
              if (!done.empty() && done.mapped()) done.mapped()(a.ok, a.error);
            } else if constexpr (std::is_same_v<A, AllReady>) {
              announce_ready();
            } else if constexpr (std::is_same_v<A, AllSlotsFailed>) {
              log_->error("every worker slot has failed; exiting (restart.exit_on_failed)");
              exit_code_ = 1;
              begin_stop(true);
            }
          },
          action);
    }
  }
  return any;
}

void Master::steer_connections() {
  const std::array<const ListenerSet*, 2> owners = {&listeners_,
                                                    reload_ ? &reload_->listeners : nullptr};
  steering_->update(owners, pool_, config_.worker.stall_after);
}

void Master::settle_incoming_sockets() {
  for (const auto& slot : pool_.slots()) {
    if (slot.incoming) continue;
    const auto holder = incoming_holders_.find(slot.id);
    if (listeners_.has_incoming(slot.id)) {
      if (holder != incoming_holders_.end() && slot.current.pid == holder->second) {
        listeners_.promote_incoming(slot.id);
      } else {
        listeners_.drop_incoming(slot.id);
      }
    }
    if (holder != incoming_holders_.end()) incoming_holders_.erase(holder);
  }
}

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

void Master::start_rollout(std::vector<unsigned> slots,
                           std::function<void(bool, const std::string&)> done) {
  const std::uint64_t id = next_rollout_id_++;
  rollout_done_.emplace(id, std::move(done));
  pool_.start_rollout(std::move(slots), id);
}

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

std::string Master::request_scale(long long wanted) {
  if (wanted < 1 || wanted > static_cast<long long>(common::kMaxWorkers)) {
    return "scale: " + std::to_string(wanted) + " workers is out of range (1.." +
           std::to_string(common::kMaxWorkers) + ")";
  }
  if (pool_.stopping()) return "forkd is stopping";
  pool_.scale_to(static_cast<unsigned>(wanted), Clock::now());
  return "";
}

void Master::reopen_logs() {
  if (common::log::reopen()) {
    log_->info("log files reopened");
  }
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

void Master::schedule_wakeup() {
  std::optional<TimePoint> next = pool_.next_wakeup();
  const auto consider = [&](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& w : reply_waiters_) consider(w.deadline);
  if (const auto due = upgrade_.next_wakeup()) consider(*due);
  if (next_memory_check_) consider(*next_memory_check_);
  wakeup_.cancel();
  if (!next) return;
  wakeup_.expires_at(*next);
  wakeup_.async_wait([this](std::error_code ec) {
    if (!ec) guarded("timer", [] {});
  });
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
