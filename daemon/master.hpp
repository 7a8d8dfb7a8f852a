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
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/exit_status.hpp"
#include "common/fd.hpp"
#include "common/signal_source.hpp"
#include "daemon/backoff.hpp"
#include "daemon/control_server.hpp"
#include "daemon/listeners.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/pidfile.hpp"
#include "daemon/proc_stats.hpp"

namespace spdlog {
class logger;
}

namespace forkd::daemon {

class WorkerChannel;
class OutputCapture;
class NotifyReceiver;

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// What the master reacts to. Signals, control commands and timers all map to these.
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

// The state a slot shows in status (SPEC: starting, ready, stopping, backoff, failed).
enum class SlotState { starting, ready, stopping, backoff, failed };
[[nodiscard]] const char* to_string(SlotState state) noexcept;

// Why a worker was (or is being) replaced; also the metrics' restart reasons.
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

struct WorkerProcess {
  pid_t pid = -1;
  std::uint64_t serial = 0;  // start order, across all slots
  unsigned slot = 0;
  unsigned generation = 1;
  SlotState state = SlotState::starting;  // starting, ready or stopping
  TimePoint started_at;
  std::chrono::system_clock::time_point started_wall;
  TimePoint ready_deadline;
  TimePoint last_heartbeat;
  std::optional<TimePoint> stop_deadline;
  std::optional<TimePoint> recycle_at;  // max_lifetime (with jitter)
  bool killed = false;                  // SIGKILL sent
  StopReason stop_reason = StopReason::none;
  std::string spawn_error;  // set when the child could not exec/enter its app
  std::shared_ptr<WorkerChannel> channel;
  std::vector<std::shared_ptr<OutputCapture>> outputs;
  std::shared_ptr<NotifyReceiver> notify;  // its NOTIFY_SOCKET
  std::string status_text;                 // the last STATUS= it sent
  std::optional<ProcOwner> owner;          // worker.user/group, when it runs as another user
};

struct ExitRecord {
  common::ExitStatus status;
  std::chrono::system_clock::time_point at;
};

struct Slot {
  explicit Slot(unsigned slot_id, const common::RestartConfig& restart)
      : id(slot_id), backoff(restart) {}
  unsigned id;
  Backoff backoff;
  std::optional<pid_t> current;   // the process serving this slot
  std::optional<pid_t> incoming;  // its replacement, until that one is ready
  StopReason replacing_for = StopReason::none;
  unsigned restarts = 0;
  std::map<std::string, std::uint64_t> restarts_by_reason;  // metrics: signal, exit, timeout, ...
  std::optional<ExitRecord> last_exit;
  std::optional<TimePoint> respawn_at;  // in backoff until then
  bool failed = false;
};

// A rolling replacement of slots, `batch` at a time, each new worker ready before its
// predecessor is told to stop (restart all, reload). `done` learns the outcome once.
struct Rollout {
  std::vector<unsigned> pending;
  std::vector<unsigned> active;
  unsigned batch = 1;
  std::uint64_t serial_floor = 0;  // workers started from this serial on are replacements
  std::function<void(bool ok, const std::string& error)> done;
};

// An operator waiting (`send --wait`) for the next message a worker sends.
struct ReplyWaiter {
  pid_t pid;
  TimePoint deadline;
  Respond respond;
};

// What a reload in progress replaced, to restore if its workers never get ready.
struct ReloadInProgress {
  common::Config config;
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

// A hot upgrade in progress: the new master is our child until it says it is ready.
struct Upgrade {
  pid_t pid = -1;
  TimePoint deadline;
  bool stop_sent = false;
  bool handed_over = false;
};

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
  void on_signal(int signo);
  void tick();
  void reap_children();
  void on_child_exit(pid_t pid, int wait_status);
  void enforce_deadlines(TimePoint now);
  void maintain_worker_count(TimePoint now);
  void announce_readiness();
  void promote_replacements(TimePoint now);
  [[nodiscard]] bool replacement_proven(const WorkerProcess& process, TimePoint now) const;
  [[nodiscard]] bool readiness_is_started() const noexcept;
  void schedule_wakeup();
  void finish();

  // Starts a worker for `slot`: as its current process, or as the replacement of it.
  void spawn_worker(Slot& slot, TimePoint now, bool as_replacement = false);
  void check_request_migration();
  void schedule_restart(Slot& slot, const RestartDecision& decision, TimePoint now);
  void mark_ready(WorkerProcess& process);
  void stop_process(WorkerProcess& process, StopReason reason, common::Duration grace);
  void kill_process(WorkerProcess& process, const char* why);
  void on_worker_message(pid_t pid, nlohmann::json message);
  void on_worker_notify(pid_t pid, const std::vector<std::pair<std::string, std::string>>& fields);
  void begin_stop(bool fast);
  void scale_to(unsigned count);
  void reopen_logs();
  // The service manager's side (sd_notify): READY, RELOADING, STOPPING, STATUS, WATCHDOG.
  void notify_service_manager(const std::string& state);
  [[nodiscard]] std::string status_line() const;
  void start_watchdog();

  // Replacement and rollouts (master_rollout.cpp).
  bool replace_slot(Slot& slot, StopReason reason, TimePoint now);
  void start_rollout(std::vector<unsigned> slots,
                     std::function<void(bool, const std::string&)> done);
  void advance_rollout(TimePoint now);
  void fail_rollout(const std::string& why);
  void recycle_overgrown(TimePoint now);

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
  void tell_predecessor_ready();
  void on_control_request(const nlohmann::json& request, const PeerCredentials& peer,
                          Respond respond);
  void cmd_status(const nlohmann::json& request, Respond& respond);
  void cmd_restart(const nlohmann::json& request, Respond& respond);
  void cmd_scale(const nlohmann::json& request, Respond& respond);
  void cmd_stop(const nlohmann::json& request, Respond& respond);
  void cmd_send(const nlohmann::json& request, Respond& respond);
  void cmd_broadcast(const nlohmann::json& request, Respond& respond);
  void cmd_reload(const nlohmann::json& request, Respond& respond);
  // Reload (master_reload.cpp). `respond` may be empty (SIGHUP).
  void request_reload(Respond respond, bool dry_run);
  void dry_run_reload(const Respond& respond);
  void start_reload();
  void start_queued_reload();
  void commit_reload();
  void roll_back_reload(const std::string& why);
  void finish_reload(bool ok, const std::string& error, std::vector<Respond>& replies,
                     const std::vector<std::string>& changes);
  void cmd_reopen_logs(const nlohmann::json& request, Respond& respond);
  void cmd_version(const nlohmann::json& request, Respond& respond);
  void publish(nlohmann::json event);
  [[nodiscard]] bool deliver(WorkerProcess& process, const nlohmann::json& data);
  void expire_reply_waiters(TimePoint now);
  [[nodiscard]] nlohmann::json status_json() const;
  [[nodiscard]] Slot* find_slot(unsigned id);
  [[nodiscard]] const Slot* find_slot(unsigned id) const;

  [[nodiscard]] WorkerProcess* find_process(pid_t pid);
  [[nodiscard]] std::map<std::string, std::string> worker_environment(const Slot& slot) const;
  [[nodiscard]] bool exec_mode() const noexcept;

  common::Config config_;
  std::string config_path_;
  unsigned target_ = 1;
  unsigned generation_ = 1;
  std::uint64_t next_serial_ = 0;
  TimePoint started_at_;
  asio::io_context io_;
  asio::steady_timer wakeup_;
  std::unique_ptr<common::SignalSource> signals_;
  ListenerSet listeners_;
  common::UniqueFd devnull_;
  std::vector<Slot> slots_;
  std::map<pid_t, WorkerProcess> processes_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<spdlog::logger> audit_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;
  asio::steady_timer watchdog_;
  LaunchInfo launch_;
  std::optional<Upgrade> upgrade_;
  std::unique_ptr<asio::posix::stream_descriptor> upgrade_pipe_;
  std::array<char, 64> upgrade_buffer_{};
  std::optional<Pidfile> pidfile_;
  common::UniqueFd predecessor_;  // a hot upgrade's old master waits on this for "ready"
  pid_t predecessor_pid_ = 0;
  std::optional<Rollout> rollout_;
  std::vector<ReplyWaiter> reply_waiters_;
  std::optional<ReloadRecord> last_reload_;
  std::optional<ReloadInProgress> reload_;
  std::vector<Respond> queued_reload_replies_;
  bool reload_queued_ = false;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  std::uint64_t ipc_to_worker_ = 0;
  std::uint64_t ipc_from_worker_ = 0;
  std::optional<TimePoint> next_memory_check_;
  bool migration_checked_ = false;
  bool stopping_ = false;
  bool fast_stop_ = false;
  bool all_ready_announced_ = false;
  bool finished_ = false;
  bool service_ready_sent_ = false;
  int exit_code_ = 0;
};

}  // namespace forkd::daemon
