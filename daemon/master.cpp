#include "daemon/master.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
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

#include "common/decimal.hpp"
#include "common/log.hpp"
#include "common/sd_notify.hpp"
#include "common/spawner.hpp"
#include "daemon/cpu_count.hpp"
#include "daemon/notify_receiver.hpp"
#include "daemon/output_capture.hpp"
#include "daemon/request_migration.hpp"
#include "daemon/worker_channel.hpp"
#include "worker/apps/registry.hpp"

namespace forkd::daemon {

using common::find_program;
using common::spawn_process;
using common::SpawnResult;
using common::SpawnSpec;

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
using common::kMaxWorkers;

std::string format_duration(Clock::duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms < 10000) return std::to_string(ms) + "ms";
  return std::to_string(ms / 1000) + "s";
}

// The in-process entry of a built-in app worker, after the child's set-up.
void enter_builtin_app(const void* app) noexcept {
  worker::run_builtin_app(*static_cast<const worker::AppEntry*>(app));
}

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

// Variables the master must not pass on: they describe the master's own relation to systemd
// or its own parent, and each worker gets its own values.
bool inherited_variable_allowed(std::string_view name) {
  constexpr std::array<std::string_view, 7> kOwnPrefixes = {
      "LISTEN_",       "NOTIFY_SOCKET",  "WATCHDOG_",    "FORKD_",
      "NODE_CHANNEL_", "JOURNAL_STREAM", "INVOCATION_ID"};
  return std::none_of(kOwnPrefixes.begin(), kOwnPrefixes.end(),
                      [&](std::string_view p) { return name.starts_with(p); });
}

}  // namespace

const char* to_string(SlotState state) noexcept {
  switch (state) {
    case SlotState::starting:
      return "starting";
    case SlotState::ready:
      return "ready";
    case SlotState::stopping:
      return "stopping";
    case SlotState::backoff:
      return "backoff";
    case SlotState::failed:
      return "failed";
  }
  return "unknown";
}

Master::Master(common::Config config, std::string config_path, LaunchInfo launch)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      target_(config_.workers == 0 ? usable_cpus() : config_.workers),
      started_at_(Clock::now()),
      wakeup_(io_),
      log_(common::log::get("master")),
      audit_(common::log::get("audit")),
      watchdog_(io_),
      launch_(std::move(launch)) {
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
      [this](int signo) { on_signal(signo); });
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
  listeners_.ensure_worker_sockets(target_);
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

int Master::run() {
  log_->info("forkd {} started (pid {}), {} workers, config {}", FORKD_VERSION, ::getpid(), target_,
             config_.source);
  tick();
  io_.run();
  return exit_code_;
}

void Master::on_signal(int signo) {
  for (const auto& m : kSignalTable) {
    if (m.signo != signo) continue;
    if (signo != SIGCHLD) log_->info("received {}", common::signal_name(signo));
    handle(m.event);
    return;
  }
}

void Master::handle(MasterEvent event) {
  switch (event) {
    case MasterEvent::graceful_stop:
      begin_stop(stopping_);
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
      scale_to(std::min(target_ + 1, kMaxWorkers));
      break;
    case MasterEvent::scale_down:
      scale_to(target_ > 1 ? target_ - 1 : 1);
      break;
    case MasterEvent::child_exited:
      break;  // tick() reaps
  }
  tick();
}

void Master::tick() {
  const TimePoint now = Clock::now();
  reap_children();
  enforce_deadlines(now);
  expire_reply_waiters(now);
  maintain_worker_count(now);
  recycle_overgrown(now);
  promote_replacements(now);
  advance_rollout(now);
  start_queued_reload();
  announce_readiness();
  const bool upgrade_pending = upgrade_ && !upgrade_->handed_over;
  if (stopping_ && processes_.empty() && !upgrade_pending) {
    finish();
    return;
  }
  schedule_wakeup();
}

void Master::reap_children() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;  // 0: none left to reap now; -1/ECHILD: no children at all
    on_child_exit(pid, status);
  }
}

WorkerProcess* Master::find_process(pid_t pid) {
  auto it = processes_.find(pid);
  return it == processes_.end() ? nullptr : &it->second;
}

void Master::on_child_exit(pid_t pid, int wait_status) {
  if (upgrade_ && upgrade_->pid == pid) {
    on_upgrade_exit(wait_status);
    return;
  }
  auto it = processes_.find(pid);
  if (it == processes_.end()) {
    log_->debug("reaped process {} ({}), not a worker", pid,
                common::ExitStatus::from_wait_status(wait_status).describe());
    return;
  }
  WorkerProcess process = std::move(it->second);
  processes_.erase(it);
  if (process.channel) process.channel->close();
  if (process.notify) process.notify->close();
  for (auto& output : process.outputs) output->close();

  const auto now = Clock::now();
  const auto uptime = now - process.started_at;
  const common::ExitStatus status = common::ExitStatus::from_wait_status(wait_status);
  auto slot_it = std::find_if(slots_.begin(), slots_.end(),
                              [&](const Slot& s) { return s.id == process.slot; });
  if (slot_it == slots_.end()) {
    log_->info("worker {} (pid {}) {} after {}", process.slot, pid, status.describe(),
               format_duration(uptime));
    return;
  }
  Slot& slot = *slot_it;
  slot.last_exit = ExitRecord{status, std::chrono::system_clock::now()};
  nlohmann::json event = {
      {"event", "worker_exited"},
      {"worker", slot.id},
      {"pid", pid},
      {"generation", process.generation},
      {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count()}};
  if (status.code) event["code"] = *status.code;
  if (status.signal) event["signal"] = *status.signal;
  publish(std::move(event));
  const bool was_current = slot.current == pid;
  if (was_current) slot.current.reset();
  const bool was_incoming = slot.incoming == pid;
  if (was_incoming) slot.incoming.reset();
  const bool expected = stopping_ || process.stop_reason == StopReason::shutdown ||
                        process.stop_reason == StopReason::scale_down ||
                        process.stop_reason == StopReason::restart;
  if (expected) {
    log_->info("worker {} (pid {}) stopped: {} after {}", slot.id, pid, status.describe(),
               format_duration(uptime));
    return;
  }
  if (was_incoming) {
    // A replacement that never became ready: its predecessor keeps serving.
    const std::string why =
        "replacement for worker " + std::to_string(slot.id) + " (pid " + std::to_string(pid) +
        ") " + (process.spawn_error.empty() ? status.describe() : process.spawn_error) +
        " before it was ready";
    log_->error("{}", why);
    if (rollout_) fail_rollout(why);
    if (slot.current) return;
  } else if (!was_current) {
    return;
  }

  const std::string reason = process.stop_reason == StopReason::heartbeat ||
                                     process.stop_reason == StopReason::ready_timeout
                                 ? "timeout"
                                 : (status.signal ? "signal" : "exit");
  ++slot.restarts_by_reason[reason];
  const bool failed_start =
      !process.spawn_error.empty() || process.stop_reason == StopReason::ready_timeout;
  RestartDecision decision =
      failed_start
          ? slot.backoff.on_failed_start()
          : slot.backoff.on_unexpected_exit(std::chrono::duration_cast<common::Duration>(uptime));
  if (process.stop_reason == StopReason::heartbeat) {
    log_->error("worker {} (pid {}) {} after missing heartbeats", slot.id, pid, status.describe());
  } else if (!process.spawn_error.empty()) {
    log_->error("worker {} (pid {}) could not start: {}", slot.id, pid, process.spawn_error);
  } else {
    log_->warn("worker {} (pid {}) {} after {}", slot.id, pid, status.describe(),
               format_duration(uptime));
  }
  schedule_restart(slot, decision, now);
}

// After a crash or a failed start: respawn after the backoff delay, or give the slot up once
// restart.max_failures is reached (never an immediate retry: that would be a fork storm).
void Master::schedule_restart(Slot& slot, const RestartDecision& decision, TimePoint now) {
  if (decision.kind == RestartDecision::Kind::give_up) {
    slot.failed = true;
    log_->error("worker {} failed {} times in a row (restart.max_failures); slot marked failed",
                slot.id, decision.failures);
    publish({{"event", "worker_failed"}, {"worker", slot.id}, {"failures", decision.failures}});
    const bool all_failed =
        std::all_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.failed; });
    if (all_failed && config_.restart.exit_on_failed) {
      log_->error("every worker slot has failed; exiting (restart.exit_on_failed)");
      exit_code_ = 1;
      begin_stop(true);
    }
    return;
  }
  ++slot.restarts;
  slot.respawn_at = now + decision.delay;
  if (decision.delay.count() > 0) {
    log_->info("respawning worker {} in {} (crash {} in a row)", slot.id,
               format_duration(decision.delay), decision.failures);
  } else {
    log_->info("respawning worker {}", slot.id);
  }
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

void Master::enforce_deadlines(TimePoint now) {
  if (upgrade_ && !upgrade_->handed_over && now >= upgrade_->deadline) {
    if (!upgrade_->stop_sent) {
      log_->error(
          "hot upgrade: new master (pid {}) not ready in time; stopping it, this master keeps "
          "serving",
          upgrade_->pid);
      ::kill(upgrade_->pid, SIGQUIT);
      upgrade_->stop_sent = true;
      upgrade_->deadline = now + std::chrono::seconds(5);
    } else {
      ::kill(upgrade_->pid, SIGKILL);
      upgrade_->deadline = now + std::chrono::hours(1);
    }
  }
  for (auto& [pid, process] : processes_) {
    if (process.killed) continue;
    if (process.state == SlotState::starting && now >= process.ready_deadline) {
      process.stop_reason = StopReason::ready_timeout;
      kill_process(process, "not ready within ready_timeout");
    } else if (process.state == SlotState::stopping && process.stop_deadline &&
               now >= *process.stop_deadline) {
      kill_process(process, "still running after its shutdown grace period");
    } else if (process.state == SlotState::ready && config_.worker.heartbeat_timeout.count() > 0 &&
               now - process.last_heartbeat >= config_.worker.heartbeat_timeout) {
      process.stop_reason = StopReason::heartbeat;
      kill_process(process, "no heartbeat within heartbeat_timeout");
    }
  }
}

void Master::kill_process(WorkerProcess& process, const char* why) {
  log_->warn("worker {} (pid {}): {}; sending SIGKILL", process.slot, process.pid, why);
  ::kill(process.pid, SIGKILL);
  process.killed = true;
}

void Master::maintain_worker_count(TimePoint now) {
  if (stopping_) return;
  while (slots_.size() < target_)
    slots_.emplace_back(static_cast<unsigned>(slots_.size()), config_.restart);
  // Slots past the target drain away; a slot is dropped once its last process is gone. Their
  // reuseport sockets close first on our side, so that each lives on only in its draining
  // worker, which takes what is queued on it before closing it (worker/http_server.cpp). The
  // set a reload keeps for its rollback lets go of them too: a rollback opens new ones.
  listeners_.trim_worker_sockets(target_);
  if (reload_) reload_->listeners.trim_worker_sockets(target_);
  for (auto& slot : slots_) {
    if (slot.id < target_) continue;
    for (const auto& pid : {slot.current, slot.incoming}) {
      if (!pid) continue;
      if (auto* p = find_process(*pid); p != nullptr && p->state != SlotState::stopping) {
        stop_process(*p, StopReason::scale_down, config_.worker.shutdown_timeout);
      }
    }
  }
  while (slots_.size() > target_) {
    const Slot& last = slots_.back();
    const bool busy = std::any_of(processes_.begin(), processes_.end(),
                                  [&](const auto& entry) { return entry.second.slot == last.id; });
    if (busy) break;
    slots_.pop_back();
  }
  for (auto& slot : slots_) {
    if (slot.id >= target_ || slot.current || slot.incoming || slot.failed) continue;
    if (slot.respawn_at && now < *slot.respawn_at) continue;
    spawn_worker(slot, now);
  }
}

bool Master::exec_mode() const noexcept {
  return config_.worker.app.empty();
}

std::map<std::string, std::string> Master::worker_environment(const Slot& slot) const {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const auto name = entry.substr(0, eq);
    if (!inherited_variable_allowed(name)) continue;
    env.emplace(std::string(name), std::string(entry.substr(eq + 1)));
  }
  for (const auto& [k, v] : config_.worker.env) env[k] = v;
  const std::size_t listener_count = listeners_.listeners().size();
  const std::string ipc_fd = std::to_string(3 + listener_count);
  env["FORKD_WORKER_ID"] = std::to_string(slot.id);
  env["FORKD_GENERATION"] = std::to_string(generation_);
  env["FORKD_MASTER_PID"] = std::to_string(::getpid());
  env["FORKD_IPC_FD"] = ipc_fd;
  env["FORKD_IPC_MAX_MESSAGE"] = std::to_string(config_.ipc.max_message);
  env["FORKD_SHUTDOWN_TIMEOUT_MS"] = std::to_string(config_.worker.shutdown_timeout.count());
  env["NODE_CHANNEL_FD"] = ipc_fd;
  env["NODE_CHANNEL_SERIALIZATION_MODE"] = "json";
  env["LISTEN_FDS"] = std::to_string(listener_count);
  env["LISTEN_FDNAMES"] = listeners_.fdnames();
  if (config_.worker.heartbeat_timeout.count() > 0) {
    env["WATCHDOG_USEC"] = std::to_string(config_.worker.heartbeat_timeout.count() * 1000);
  }
  return env;
}

void Master::spawn_worker(Slot& slot, TimePoint now, bool as_replacement) {
  if (!as_replacement) slot.respawn_at.reset();
  try {
    listeners_.ensure_worker_sockets(std::max(target_, slot.id + 1));
  } catch (const ListenError& e) {
    log_->error("worker {}: {}", slot.id, e.what());
    if (as_replacement && rollout_) fail_rollout(e.what());
    if (!as_replacement) schedule_restart(slot, slot.backoff.on_failed_start(), now);
    return;
  }
  const auto& wc = config_.worker;
  SpawnSpec spec;
  if (exec_mode()) {
    if (!wc.shell.empty()) {
      spec.program = "/bin/sh";
      spec.argv = {"/bin/sh", "-c", wc.shell};
    } else {
      int error = 0;
      std::string program = wc.command.front();
      if (program.find('/') != std::string::npos && !wc.cwd.empty() && program.front() != '/') {
        program = wc.cwd + "/" + program;
      }
      const auto found = find_program(program, error);
      spec.program = found.value_or(program);
      spec.argv = wc.command;
    }
  } else {
    const worker::AppEntry* app = worker::find_builtin_app(wc.app);
    spec.entry = &enter_builtin_app;
    spec.entry_arg = app;
    if (app == nullptr) {
      log_->error("worker {}: unknown built-in app \"{}\"", slot.id, wc.app);
      slot.failed = true;
      return;
    }
  }
  spec.env = worker_environment(slot);
  spec.listen_pid = true;
  spec.drop_capabilities = true;
  spec.cwd = wc.cwd;
  spec.rlimit_nofile = wc.rlimit_nofile;
  if (wc.cpu_affinity) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) > 0) {
      const int count = CPU_COUNT(&allowed);
      int wanted = static_cast<int>(slot.id % static_cast<unsigned>(count));
      for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (wanted-- == 0) {
          spec.cpu = static_cast<int>(cpu);
          break;
        }
      }
    }
  }
  if (!wc.user.empty()) {
    if (const passwd* pw = ::getpwnam(wc.user.c_str()); pw != nullptr) {
      spec.uid = pw->pw_uid;
      spec.gid = pw->pw_gid;
      int count = 64;
      std::vector<gid_t> groups(static_cast<std::size_t>(count));
      if (::getgrouplist(wc.user.c_str(), pw->pw_gid, groups.data(), &count) < 0) {
        groups.resize(static_cast<std::size_t>(count));
        ::getgrouplist(wc.user.c_str(), pw->pw_gid, groups.data(), &count);
      }
      groups.resize(static_cast<std::size_t>(count));
      spec.groups = std::move(groups);
    }
  }
  if (!wc.group.empty()) {
    if (const group* gr = ::getgrnam(wc.group.c_str()); gr != nullptr) spec.gid = gr->gr_gid;
  }

  // fds: 0 /dev/null, 1-2 per stdout/stderr mode, listeners from 3, then the IPC socket.
  common::FdPair ipc;
  std::array<common::FdPair, 2> output_pipes;
  try {
    ipc = common::make_socketpair(SOCK_STREAM);
    const std::array<common::OutputMode, 2> modes = {wc.stdout_mode, wc.stderr_mode};
    for (std::size_t i = 0; i < 2; ++i) {
      if (modes[i] == common::OutputMode::log) output_pipes[i] = common::make_pipe();
    }
  } catch (const std::system_error& e) {
    log_->error("worker {}: cannot create its channels: {}", slot.id, e.what());
    if (as_replacement) {
      if (rollout_) fail_rollout(std::string("cannot start a replacement worker: ") + e.what());
      return;
    }
    schedule_restart(slot, slot.backoff.on_failed_start(), now);
    return;
  }
  spec.fds.push_back(devnull_.get());
  const std::array<common::OutputMode, 2> modes = {wc.stdout_mode, wc.stderr_mode};
  for (std::size_t i = 0; i < 2; ++i) {
    switch (modes[i]) {
      case common::OutputMode::log:
        spec.fds.push_back(output_pipes[i].second.get());
        break;
      case common::OutputMode::null:
        spec.fds.push_back(devnull_.get());
        break;
      case common::OutputMode::inherit:
        spec.fds.push_back(-1);
        break;
    }
  }
  for (int fd : listeners_.fds_for(slot.id)) spec.fds.push_back(fd);
  spec.fds.push_back(ipc.second.get());
  // A NOTIFY_SOCKET of its own: READY=1, WATCHDOG=1, STATUS=, STOPPING=1 (sd_notify).
  std::shared_ptr<NotifyReceiver> notify;
  try {
    notify = NotifyReceiver::open(
        io_, "forkd-" + std::to_string(::getpid()) + "-" + std::to_string(next_serial_),
        [this](pid_t worker, const NotifyReceiver::Fields& fields) {
          on_worker_notify(worker, fields);
        },
        [this, id = slot.id](pid_t sender) {
          log_->warn("worker {}: notify message from pid {} ignored: not this worker", id, sender);
        });
    spec.env["NOTIFY_SOCKET"] = notify->address();
  } catch (const std::system_error& e) {
    log_->warn("worker {}: no NOTIFY_SOCKET: {}", slot.id, e.what());
  }

  const SpawnResult result = spawn_process(spec);
  if (result.pid < 0) {
    if (notify) notify->close();
    if (as_replacement) {
      log_->error("worker {}: cannot start a replacement: {}", slot.id, result.describe(spec));
      if (rollout_) fail_rollout("cannot start a replacement worker: " + result.describe(spec));
      return;
    }
    log_->error("worker {}: cannot start: {}", slot.id, result.describe(spec));
    schedule_restart(slot, slot.backoff.on_failed_start(), now);
    return;
  }
  WorkerProcess process;
  process.pid = result.pid;
  if (spec.uid) process.owner = ProcOwner{*spec.uid, spec.gid.value_or(::getgid())};
  process.serial = next_serial_++;
  process.slot = slot.id;
  process.generation = generation_;
  process.started_at = now;
  process.started_wall = std::chrono::system_clock::now();
  process.ready_deadline = now + wc.ready_timeout;
  process.last_heartbeat = now;
  if (wc.max_lifetime.count() > 0) {
    // Up to 10% jitter so workers started together are not all recycled together.
    const auto lifetime = wc.max_lifetime.count();
    const auto jitter = static_cast<long>(static_cast<unsigned long>(result.pid) * 2654435761UL %
                                          static_cast<unsigned long>(lifetime / 10 + 1));
    process.recycle_at = now + common::Duration(lifetime - jitter);
  }
  if (result.failure) process.spawn_error = result.describe(spec);
  if (notify) {
    notify->set_worker_pid(result.pid);
    process.notify = std::move(notify);
  }
  const pid_t pid = result.pid;
  process.channel = WorkerChannel::open(
      io_, std::move(ipc.first), config_.ipc.max_message, 4 * config_.ipc.max_message,
      {.message = [this, pid](nlohmann::json m) { on_worker_message(pid, std::move(m)); },
       .protocol_error =
           [this, pid, id = slot.id](const std::string& problem) {
             log_->warn("worker {} (pid {}) IPC: {}", id, pid, problem);
           },
       .closed = {}});
  const std::array<const char*, 2> stream_names = {"stdout", "stderr"};
  for (std::size_t i = 0; i < 2; ++i) {
    if (!output_pipes[i].first) continue;
    process.outputs.push_back(OutputCapture::open(
        io_, std::move(output_pipes[i].first),
        fmt::format("worker {} (pid {}) {}", slot.id, pid, stream_names[i]), i == 1));
  }
  if (as_replacement) {
    slot.incoming = pid;
  } else {
    slot.current = pid;
  }
  auto [it, inserted] = processes_.emplace(pid, std::move(process));
  if (!it->second.spawn_error.empty()) return;  // it exits 127 at once; the reaper reports it
  log_->info("worker {} started (pid {}, generation {}){}", slot.id, pid, generation_,
             as_replacement ? " to replace the running one" : "");
  publish({{"event", "worker_started"},
           {"worker", slot.id},
           {"pid", pid},
           {"generation", generation_}});
  if (readiness_is_started()) mark_ready(it->second);
}

void Master::on_worker_message(pid_t pid, nlohmann::json message) {
  WorkerProcess* process = find_process(pid);
  if (process == nullptr) return;
  ++ipc_from_worker_;
  const bool plain_ready = message.is_string() && message.get_ref<const std::string&>() == "ready";
  const bool envelope =
      message.is_object() && message.contains("forkd") && message["forkd"].is_string();
  if (plain_ready || (envelope && message["forkd"] == "ready")) {
    mark_ready(*process);
    tick();
    return;
  }
  if (!envelope) {
    // An application message: first to an operator waiting on this worker, then to `events`.
    auto waiter = std::find_if(reply_waiters_.begin(), reply_waiters_.end(),
                               [&](const ReplyWaiter& w) { return w.pid == pid; });
    if (waiter != reply_waiters_.end()) {
      Respond respond = std::move(waiter->respond);
      reply_waiters_.erase(waiter);
      respond({{"ok", true}, {"worker", process->slot}, {"pid", pid}, {"reply", message}});
    }
    publish({{"event", "message"},
             {"worker", process->slot},
             {"pid", pid},
             {"data", std::move(message)}});
    return;
  }
  const auto& kind = message["forkd"].get_ref<const std::string&>();
  if (kind == "heartbeat") {
    process->last_heartbeat = Clock::now();
  } else if (kind == "send") {
    const auto& to = message.contains("to") ? message["to"] : nlohmann::json();
    Slot* target = to.is_number_unsigned() && to.get<std::uint64_t>() <= 4096
                       ? find_slot(to.get<unsigned>())
                       : nullptr;
    WorkerProcess* peer =
        target != nullptr && target->current ? find_process(*target->current) : nullptr;
    if (peer == nullptr) {
      log_->warn("worker {} (pid {}) sent a message to worker {}, which is not running",
                 process->slot, pid, to.dump());
      return;
    }
    (void)deliver(*peer, message.contains("data") ? message["data"] : nlohmann::json());
  } else if (kind == "broadcast") {
    const nlohmann::json data = message.contains("data") ? message["data"] : nlohmann::json();
    const unsigned from = process->slot;
    for (auto& slot : slots_) {
      if (slot.id == from || !slot.current) continue;
      if (auto* peer = find_process(*slot.current)) (void)deliver(*peer, data);
    }
  } else {
    log_->warn("worker {} (pid {}) sent unknown forkd message \"{}\"", process->slot, pid, kind);
  }
}

void Master::on_worker_notify(pid_t pid,
                              const std::vector<std::pair<std::string, std::string>>& fields) {
  WorkerProcess* process = find_process(pid);
  if (process == nullptr) return;
  bool became_ready = false;
  for (const auto& [key, value] : fields) {
    if (key == "READY" && value == "1") {
      if (config_.worker.ready == common::ReadyMode::notify) {
        mark_ready(*process);
        became_ready = true;
      }
    } else if (key == "WATCHDOG" && value == "1") {
      process->last_heartbeat = Clock::now();
    } else if (key == "STATUS") {
      process->status_text = value;
      log_->debug("worker {} (pid {}) status: {}", process->slot, pid, value);
    } else if (key == "STOPPING" && value == "1") {
      log_->info("worker {} (pid {}) says it is stopping", process->slot, pid);
    }
  }
  if (became_ready) tick();
}

bool Master::deliver(WorkerProcess& process, const nlohmann::json& data) {
  if (!process.channel) return false;
  if (process.channel->send(data)) {
    ++ipc_to_worker_;
    return true;
  }
  // It does not read its IPC socket: the queue is full. Replace it rather than buffer more.
  log_->error("worker {} (pid {}) does not read its IPC channel ({} bytes queued); message dropped",
              process.slot, process.pid, process.channel->queued_bytes());
  if (Slot* slot = find_slot(process.slot); slot != nullptr && slot->current == process.pid) {
    (void)replace_slot(*slot, StopReason::stuck_ipc, Clock::now());
  }
  return false;
}

Slot* Master::find_slot(unsigned id) {
  auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.id == id; });
  return it == slots_.end() ? nullptr : &*it;
}

const Slot* Master::find_slot(unsigned id) const {
  auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.id == id; });
  return it == slots_.end() ? nullptr : &*it;
}

void Master::mark_ready(WorkerProcess& process) {
  if (process.state != SlotState::starting) return;
  process.state = SlotState::ready;
  process.last_heartbeat = Clock::now();
  log_->info("worker {} ready (pid {}) in {}", process.slot, process.pid,
             format_duration(Clock::now() - process.started_at));
  publish({{"event", "worker_ready"},
           {"worker", process.slot},
           {"pid", process.pid},
           {"generation", process.generation}});
}

bool Master::replacement_proven(const WorkerProcess& process, TimePoint now) const {
  if (process.state != SlotState::ready) return false;
  // "started" readiness says only that exec worked: a replacement must also outlive
  // min_uptime before the worker it replaces is stopped.
  return !readiness_is_started() || now - process.started_at >= config_.restart.min_uptime;
}

bool Master::readiness_is_started() const noexcept {
  const auto mode = config_.worker.ready;
  return mode == common::ReadyMode::started ||
         (mode == common::ReadyMode::automatic && exec_mode());
}

void Master::promote_replacements(TimePoint now) {
  for (auto& slot : slots_) {
    if (!slot.incoming) continue;
    WorkerProcess* incoming = find_process(*slot.incoming);
    if (incoming == nullptr || !replacement_proven(*incoming, now)) continue;
    // The replacement serves now: only then is its predecessor told to drain.
    const auto previous = slot.current;
    slot.current = slot.incoming;
    slot.incoming.reset();
    if (slot.replacing_for == StopReason::memory || slot.replacing_for == StopReason::lifetime) {
      ++slot.restarts_by_reason[slot.replacing_for == StopReason::memory ? "memory" : "lifetime"];
    }
    ++slot.restarts;
    if (!previous) continue;
    if (auto* old = find_process(*previous); old != nullptr) {
      stop_process(*old, StopReason::restart, config_.worker.shutdown_timeout);
    }
  }
}

void Master::announce_readiness() {
  if (all_ready_announced_ || stopping_) return;
  unsigned ready = 0;
  for (const auto& slot : slots_) {
    if (slot.id >= target_ || !slot.current) continue;
    if (const auto* p = find_process(*slot.current); p != nullptr && p->state == SlotState::ready)
      ++ready;
  }
  if (ready < target_) return;
  all_ready_announced_ = true;
  log_->info("all {} workers ready", target_);
  if (service_ready_sent_) {
    notify_service_manager("STATUS=" + status_line());
  } else {
    // After a hot upgrade, the old master names us the main process when it hands over.
    service_ready_sent_ = true;
    notify_service_manager("READY=1\nSTATUS=" + status_line());
  }
  tell_predecessor_ready();
}

void Master::stop_process(WorkerProcess& process, StopReason reason, common::Duration grace) {
  const auto deadline = Clock::now() + grace;
  if (process.state == SlotState::stopping) {
    if (process.stop_deadline && deadline < *process.stop_deadline)
      process.stop_deadline = deadline;
    return;
  }
  process.state = SlotState::stopping;
  process.stop_reason = reason;
  process.stop_deadline = deadline;
  if (::kill(process.pid, SIGTERM) != 0) {
    log_->warn("worker {} (pid {}): SIGTERM failed: {}", process.slot, process.pid,
               std::strerror(errno));
  }
}

void Master::begin_stop(bool fast) {
  if (stopping_ && fast_stop_) return;
  const bool already = stopping_;
  stopping_ = true;
  fast_stop_ = fast;
  const common::Duration grace = fast ? kFastStopGrace : config_.worker.shutdown_timeout;
  log_->info("{} stop{}: {} workers to stop", fast ? "fast" : "graceful",
             already ? " (escalated)" : "", processes_.size());
  publish({{"event", "stopping"}, {"fast", fast}});
  notify_service_manager("STOPPING=1\nSTATUS=stopping");
  for (auto& [pid, process] : processes_) {
    if (process.stop_reason == StopReason::none) process.stop_reason = StopReason::shutdown;
    if (process.state == SlotState::stopping) {
      stop_process(process, process.stop_reason, grace);
    } else {
      stop_process(process, StopReason::shutdown, grace);
    }
  }
}

void Master::scale_to(unsigned count) {
  if (stopping_ || count == target_) return;
  log_->info("scaling from {} to {} workers", target_, count);
  publish({{"event", "scale"}, {"from", target_}, {"to", count}});
  target_ = count;
  all_ready_announced_ = false;
  for (auto& slot : slots_) {
    if (slot.id < target_) continue;
    slot.respawn_at.reset();
    slot.failed = false;
  }
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
  unsigned ready = 0;
  for (const auto& [pid, p] : processes_) {
    if (p.state == SlotState::ready) ++ready;
  }
  return std::to_string(ready) + "/" + std::to_string(target_) + " workers ready, generation " +
         std::to_string(generation_);
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
  std::optional<TimePoint> next;
  const auto consider = [&](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& slot : slots_) {
    if (slot.respawn_at && !slot.current && !slot.failed) consider(*slot.respawn_at);
  }
  for (const auto& w : reply_waiters_) consider(w.deadline);
  if (upgrade_ && !upgrade_->handed_over) consider(upgrade_->deadline);
  if (next_memory_check_) consider(*next_memory_check_);
  for (const auto& [pid, p] : processes_) {
    if (p.killed) continue;
    if (p.recycle_at && p.state == SlotState::ready) consider(*p.recycle_at);
    if (p.state == SlotState::ready && readiness_is_started()) {
      if (const Slot* slot = find_slot(p.slot); slot != nullptr && slot->incoming == pid) {
        consider(p.started_at + config_.restart.min_uptime);
      }
    }
    if (p.state == SlotState::starting) consider(p.ready_deadline);
    if (p.state == SlotState::stopping && p.stop_deadline) consider(*p.stop_deadline);
    if (p.state == SlotState::ready && config_.worker.heartbeat_timeout.count() > 0) {
      consider(p.last_heartbeat + config_.worker.heartbeat_timeout);
    }
  }
  wakeup_.cancel();
  if (!next) return;
  wakeup_.expires_at(*next);
  wakeup_.async_wait([this](std::error_code ec) {
    if (!ec) tick();
  });
}

void Master::finish() {
  if (finished_) return;
  finished_ = true;
  wakeup_.cancel();
  watchdog_.cancel();
  for (auto& w : reply_waiters_) w.respond({{"ok", false}, {"error", "forkd is stopping"}});
  reply_waiters_.clear();
  if (rollout_) fail_rollout("forkd is stopping");
  for (auto& respond : queued_reload_replies_)
    respond({{"ok", false}, {"error", "forkd is stopping"}});
  queued_reload_replies_.clear();
  // After a hand-over the sockets and their files belong to the new master.
  const bool handed_over = upgrade_ && upgrade_->handed_over;
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
