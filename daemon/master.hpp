// The master: one io_context on the main thread, every event through handle(MasterEvent),
// and tick() — reap, enforce deadlines, keep the worker count, announce readiness — after each.
// It owns the listeners, the slots and their worker processes; the workers own nothing of it.
#pragma once

#include <sys/types.h>

#include <array>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/exit_status.hpp"
#include "common/fd.hpp"
#include "common/signal_source.hpp"
#include "daemon/audit_trail.hpp"
#include "daemon/bind_takeover.hpp"
#include "daemon/control_server.hpp"
#include "daemon/cpu_meter.hpp"
#include "daemon/fault_injection.hpp"
#include "daemon/limited_log.hpp"
#include "daemon/listeners.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/output_ring.hpp"
#include "daemon/pidfile.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/resource_limits.hpp"
#include "daemon/reuseport_steering.hpp"
#include "daemon/upgrade_handoff.hpp"
#include "daemon/worker_pool.hpp"

namespace spdlog {
class logger;
}

namespace forkd::daemon {

class WorkerChannel;
class OutputCapture;
class NotifyReceiver;

// What the master reacts to. Signals and control commands map to these (one path per intent).
enum class MasterEvent {
  graceful_stop,
  fast_stop,
  reload,
  reopen_logs,
  upgrade,
  scale_up,
  scale_down,
  child_exited,
};

// What one worker process, or others through its sockets, can make the master log: each source
// limited on its own (daemon/limited_log.hpp), so a flood costs a counter, not the log.
struct WorkerLogs {
  // Per line, plus one per KiB: the limit bounds bytes as well as lines.
  static constexpr LogRate kOutputRate{.burst = 1000, .per_second = 100};
  static constexpr LogRate kMessageRate{.burst = 10, .per_second = 1};

  WorkerLogs(const std::shared_ptr<spdlog::logger>& master_log, unsigned slot, pid_t pid);
  // The "N lines suppressed" still owed, once the worker is gone.
  void flush();

  LimitedLog output;  // its stdout and stderr
  LimitedLog ipc;     // what it sends on its IPC channel and its NOTIFY_SOCKET
  LimitedLog notify;  // datagrams other processes send to its NOTIFY_SOCKET
};

// The I/O side of one worker process: what the master reads from it and writes to it. Its
// lifecycle (state, deadlines, restarts) is the pool's.
struct WorkerIo {
  std::shared_ptr<WorkerChannel> channel;
  std::vector<std::shared_ptr<OutputCapture>> outputs;
  std::shared_ptr<NotifyReceiver> notify;  // its NOTIFY_SOCKET
  std::string status_text;                 // the last STATUS= it sent
  // What it last said of its connections ({"forkd":"connections"}); nullopt until it does.
  std::optional<std::uint64_t> accepted, open_connections;
  std::optional<ProcOwner> owner;    // worker.user/group, when it runs as another user
  std::shared_ptr<WorkerLogs> logs;  // shared with its output captures
};

// An operator waiting (`send --wait`) for the next message a worker sends.
struct ReplyWaiter {
  pid_t pid;
  TimePoint deadline;
  std::uint64_t client;  // the control connection; its closing drops the wait
  Respond respond;
};

// What a reload in progress replaced, to restore if its workers never get ready.
struct ReloadInProgress {
  common::Config config;
  BindTakeover takeover;
  ListenerSet listeners;
  unsigned generation;
  unsigned target;
  std::vector<Respond> replies;
  std::vector<std::string> changes;
};

struct ReloadRecord {
  bool ok = false;
  std::string error;
  std::chrono::system_clock::time_point at;
};

// How this master was started: what a hot upgrade runs again.
struct LaunchInfo {
  std::string executable;  // resolved when forkd started, so a replaced file is what runs next
  std::vector<std::string> argv;
};

// Logs an exception that reached a handler; the master does not stop for it (Unicorn's master
// loop does the same).
void log_error_and_go_on(spdlog::logger& log, std::string_view what, std::string_view error);

inline constexpr const char* kControlSocketName = "forkd-control";
inline constexpr const char* kMetricsSocketName = "forkd-metrics";

class Master {
 public:
  // Binds the listeners (or adopts passed ones). Throws ListenError and std::system_error.
  Master(common::Config config, std::string config_path, LaunchInfo launch = {});
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;
  Master(Master&&) = delete;
  Master& operator=(Master&&) = delete;
  ~Master();

  // Runs until stopped; returns the process exit code.
  int run();
  void handle(MasterEvent event);

 private:
  // Every handler (signal, timer, IPC, notify, control, upgrade pipe) runs through here: an
  // exception is logged with what caused it and the master goes on; then the pass runs, so no
  // decision waits for an unrelated event. False when the handler threw.
  template <typename Handler>
  bool guarded(std::string_view what, Handler&& handler) noexcept;
  // Reap, let the pool decide, carry out its actions, arm the one timer.
  void pass();
  // True when the pool had anything to do.
  bool run_pool_actions();
  void reap_children();
  void on_child_exit(pid_t pid, int wait_status);
  void send_signal(const SignalOrder& order);
  // Tells the pool which groups its workers left behind have emptied since the last pass.
  void check_leftovers();
  void check_memory(TimePoint now);
  void enforce_upgrade_deadline(TimePoint now);
  // A hot upgrade that did not take: logged, in last_reload and the failed-reload counter.
  void fail_upgrade(const std::string& why);
  void schedule_wakeup();
  void finish();

  void spawn_worker(const SpawnOrder& order);
  // A replacement that took over its slot hands its own reuseport sockets to the slot; one
  // that never did closes them (our copy: the process keeps its own until it exits).
  void settle_incoming_sockets();
  // The steering programs follow the pool's states (daemon/reuseport_steering.hpp).
  // A stalled worker's queue to `helper` (ReuseportSteering::Lend).
  [[nodiscard]] bool lend_queued(pid_t helper, int listener_fd);
  void steer_connections();
  void announce_ready();
  void check_request_migration();
  void on_worker_message(pid_t pid, nlohmann::json line);
  void relay_application_message(pid_t pid, unsigned from, nlohmann::json message);
  void on_worker_notify(pid_t pid, const std::vector<std::pair<std::string, std::string>>& fields);
  // The limited log of what a worker's messages cause; null once the worker is gone.
  [[nodiscard]] LimitedLog* worker_log(pid_t pid);
  void begin_stop(bool fast);
  void begin_stop_delay();
  // SIGTTIN/SIGTTOU and `forkctl scale`: one bound check; the error, or "" once applied.
  [[nodiscard]] std::string request_scale(long long wanted);
  void reopen_logs();
  // The service manager's side (sd_notify): READY, RELOADING, STOPPING, STATUS, WATCHDOG.
  void notify_service_manager(const std::string& state);
  [[nodiscard]] std::string status_line() const;
  void start_watchdog();
  void start_rollout(std::vector<unsigned> slots,
                     std::function<void(bool, const std::string&)> done);
  [[nodiscard]] PoolSettings pool_settings() const;

  // The operator's side (master_control.cpp).
  void open_control_socket(common::UniqueFd adopted);
  void open_metrics(common::UniqueFd adopted);
  [[nodiscard]] MetricsSnapshot metrics_snapshot() const;
  [[nodiscard]] bool any_worker_ready() const;
  // Hot upgrade (master_upgrade.cpp).
  void start_upgrade();
  void read_upgrade_pipe();
  void hand_over();
  void on_upgrade_exit(int wait_status);
  void carry_out(UpgradeHandoff::Decision decision);
  void tell_predecessor_ready();
  void on_control_request(const nlohmann::json& request, const ControlCaller& caller,
                          Respond respond);
  void run_command(const nlohmann::json& request, const ControlCaller& caller, Respond& respond,
                   void (Master::*command)(const nlohmann::json&, const ControlCaller&, Respond&));
  // A control client that had sent requests is gone: what waits to answer it is dropped.
  void on_control_client_closed(std::uint64_t client);
  void cmd_status(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_restart(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_scale(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_stop(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_send(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_broadcast(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_reload(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  // Reload (master_reload.cpp). `respond` may be empty (SIGHUP).
  void request_reload(Respond respond, bool dry_run);
  void dry_run_reload(const Respond& respond);
  void start_reload();
  void start_queued_reload();
  void commit_reload();
  void roll_back_reload(const std::string& why);
  void finish_reload(bool ok, const std::string& error, std::vector<Respond>& replies,
                     const std::vector<std::string>& changes);
  void cmd_reopen_logs(const nlohmann::json& request, const ControlCaller& caller,
                       Respond& respond);
  void cmd_version(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void cmd_logs(const nlohmann::json& request, const ControlCaller& caller, Respond& respond);
  void publish(nlohmann::json event);
  // False when the worker does not read its channel; it is then replaced.
  [[nodiscard]] bool deliver(pid_t pid, const nlohmann::json& data);
  void expire_reply_waiters(TimePoint now);
  [[nodiscard]] nlohmann::json status_json() const;
  // Where the worker count comes from, for status: "auto: 2 = cgroup CPU quota (...)".
  [[nodiscard]] std::string workers_from() const;
  [[nodiscard]] nlohmann::json limits_json() const;
  // For status: a worker's command line (escaped), or "app NAME" for a built-in app, whose
  // command line is `own`, the master's; "" when gone.
  [[nodiscard]] std::string command_of(pid_t pid, const std::optional<std::string>& own) const;
  void keep_output(unsigned slot, pid_t pid, bool is_stderr, std::string_view line);
  [[nodiscard]] std::optional<ProcOwner> owner(pid_t pid) const;

  [[nodiscard]] std::map<std::string, std::string> worker_environment(unsigned slot,
                                                                      unsigned generation) const;
  [[nodiscard]] bool exec_mode() const noexcept;
  // `workers` with auto resolved against `limits`.
  [[nodiscard]] static unsigned target_for(const common::Config& config,
                                           const ResourceLimits& limits);
  // worker.max_memory with auto resolved for the current worker count; 0 = off.
  [[nodiscard]] Derived effective_max_memory() const;
  // Says where `workers: auto` and `max_memory: auto` came from (at start and after a reload).
  void log_limits() const;

  common::Config config_;
  std::string config_path_;
  // CPUs and memory granted by the affinity mask and the cgroups: read at start and on reload.
  ResourceLimits limits_;
  BindTakeover takeover_;                      // decided with config_, kept with it
  std::set<std::string> unserved_binds_said_;  // FORKD_UNSERVED_BIND, once per address
  // CPU% between two status requests; status_json is const, the meter is its memo.
  mutable CpuMeter cpu_meter_;
  // The last lines each slot wrote (`forkctl logs`), across respawns of the slot.
  std::map<unsigned, OutputRing> output_rings_;
  std::uint64_t output_seq_ = 0;
  TimePoint started_at_;
  asio::io_context io_;
  asio::steady_timer wakeup_;
  std::unique_ptr<common::SignalSource> signals_;
  ListenerSet listeners_;
  common::UniqueFd devnull_;
  WorkerPool pool_;
  std::map<pid_t, WorkerIo> workers_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<ReuseportSteering> steering_;
  std::map<unsigned, pid_t> incoming_holders_;  // slot -> the replacement given its sockets
  AuditTrail audit_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;
  asio::steady_timer watchdog_;
  // stop.delay: armed by the first SIGTERM; /readyz is 503 while it runs, then the drain.
  asio::steady_timer stop_delay_;
  bool stop_delaying_ = false;
  LaunchInfo launch_;
  UpgradeHandoff upgrade_;
  std::unique_ptr<asio::posix::stream_descriptor> upgrade_pipe_;
  std::array<char, 64> upgrade_buffer_{};
  std::optional<Pidfile> pidfile_;
  common::UniqueFd predecessor_;  // a hot upgrade's old master waits on this for "ready"
  pid_t predecessor_pid_ = 0;
  std::map<std::uint64_t, std::function<void(bool, const std::string&)>> rollout_done_;
  std::uint64_t next_rollout_id_ = 1;
  std::vector<ReplyWaiter> reply_waiters_;
  std::optional<ReloadRecord> last_reload_;
  std::optional<ReloadInProgress> reload_;
  std::vector<Respond> queued_reload_replies_;
  bool reload_queued_ = false;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  std::uint64_t ipc_to_worker_ = 0;
  std::uint64_t ipc_from_worker_ = 0;
  // Per slot: the connections its exited processes had accepted, so that the metric counts on.
  std::map<unsigned, std::uint64_t> accepted_by_exited_;
  std::optional<TimePoint> next_memory_check_;
  bool migration_checked_ = false;
  bool finished_ = false;
  bool service_ready_sent_ = false;
  int exit_code_ = 0;
  std::optional<FaultInjection> fault_;  // FORKD_TEST_THROW, a testing aid (forkd(8))
};

template <typename Handler>
bool Master::guarded(std::string_view what, Handler&& handler) noexcept {
  bool returned = false;
  try {
    if (fault_) fault_->on_call(what);
    handler();
    returned = true;
  } catch (const std::exception& e) {
    log_error_and_go_on(*log_, what, e.what());
  } catch (...) {
    log_error_and_go_on(*log_, what, "unknown exception");
  }
  try {
    pass();
  } catch (const std::exception& e) {
    log_error_and_go_on(*log_, "the master's pass", e.what());
    try {
      schedule_wakeup();
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing more can be done from here
    }
  }
  return returned;
}

}  // namespace forkd::daemon
