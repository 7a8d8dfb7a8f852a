#include "daemon/master.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
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
#include "common/units.hpp"
#include "daemon/resource_limits.hpp"

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
  std::optional<ReuseportOrders> inherited_orders;
  if (const char* orders = std::getenv("FORKD_UPGRADE_REUSEPORT_ORDER"); orders && predecessor_) {
    inherited_orders = parse_orders(orders);
    if (!inherited_orders) {
      log_->warn(
          "hot upgrade: the previous master's reuseport order is malformed; those "
          "sockets are not steered");
    }
  }
  ::unsetenv("FORKD_UPGRADE_FD");
  ::unsetenv("FORKD_PIDFILE_FD");
  ::unsetenv("FORKD_UPGRADE_REUSEPORT_ORDER");
  if (!config_.pidfile.empty()) {
    pidfile_ = inherited_pidfile ? Pidfile::adopt(std::move(inherited_pidfile), config_.pidfile)
                                 : Pidfile::acquire(config_.pidfile);
  }
  listeners_.open_all(config_.listen, std::move(passed), predecessor_.valid());
  listeners_.ensure_worker_sockets(pool_.target());
  steering_ = std::make_unique<ReuseportSteering>(io_, log_,
                                                  [this] { guarded("reuseport steering", [] {}); });
  steering_->lend_queued_with([this](pid_t helper, int fd) { return lend_queued(helper, fd); },
                              [this](pid_t pid) { return process_stopped(pid, owner(pid)); });
  if (inherited_orders) steering_->inherit_orders(std::move(*inherited_orders));
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

void Master::start_rollout(std::vector<unsigned> slots,
                           std::function<void(bool, const std::string&)> done) {
  const std::uint64_t id = next_rollout_id_++;
  rollout_done_.emplace(id, std::move(done));
  pool_.start_rollout(std::move(slots), id);
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

}  // namespace forkd::daemon
