// The master: one io_context on the main thread, every event through handle(MasterEvent),
// and tick() — reap, enforce deadlines, keep the worker count, announce readiness — after each.
// It owns the listeners, the slots and their worker processes; the workers own nothing of it.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/fd.hpp"
#include "common/signal_source.hpp"
#include "daemon/backoff.hpp"
#include "daemon/exit_status.hpp"
#include "daemon/listeners.hpp"

namespace spdlog {
class logger;
}

namespace forkd::daemon {

class WorkerChannel;
class OutputCapture;

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
enum class StopReason { none, shutdown, scale_down, restart, ready_timeout, heartbeat };

struct WorkerProcess {
  pid_t pid = -1;
  unsigned slot = 0;
  unsigned generation = 1;
  SlotState state = SlotState::starting;  // starting, ready or stopping
  TimePoint started_at;
  std::chrono::system_clock::time_point started_wall;
  TimePoint ready_deadline;
  TimePoint last_heartbeat;
  std::optional<TimePoint> stop_deadline;
  bool killed = false;  // SIGKILL sent
  StopReason stop_reason = StopReason::none;
  std::string spawn_error;  // set when the child could not exec/enter its app
  std::shared_ptr<WorkerChannel> channel;
  std::vector<std::shared_ptr<OutputCapture>> outputs;
};

struct ExitRecord {
  ExitStatus status;
  std::chrono::system_clock::time_point at;
};

struct Slot {
  explicit Slot(unsigned slot_id, const common::RestartConfig& restart)
      : id(slot_id), backoff(restart) {}
  unsigned id;
  Backoff backoff;
  std::optional<pid_t> current;  // the process serving this slot
  unsigned restarts = 0;
  std::optional<ExitRecord> last_exit;
  std::optional<TimePoint> respawn_at;  // in backoff until then
  bool failed = false;
};

class Master {
 public:
  // Binds the listeners (or adopts passed ones). Throws ListenError and std::system_error.
  Master(common::Config config, std::string config_path);
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;
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
  void schedule_wakeup();
  void finish();

  void spawn_worker(Slot& slot, TimePoint now);
  void mark_ready(WorkerProcess& process);
  void stop_process(WorkerProcess& process, StopReason reason, common::Duration grace);
  void kill_process(WorkerProcess& process, const char* why);
  void on_worker_message(pid_t pid, nlohmann::json message);
  void begin_stop(bool fast);
  void scale_to(unsigned count);
  void reopen_logs();

  [[nodiscard]] WorkerProcess* find_process(pid_t pid);
  [[nodiscard]] std::map<std::string, std::string> worker_environment(const Slot& slot) const;
  [[nodiscard]] bool exec_mode() const noexcept;

  common::Config config_;
  std::string config_path_;
  unsigned target_ = 1;
  unsigned generation_ = 1;
  TimePoint started_at_;
  asio::io_context io_;
  asio::steady_timer wakeup_;
  std::unique_ptr<common::SignalSource> signals_;
  ListenerSet listeners_;
  common::UniqueFd devnull_;
  std::vector<Slot> slots_;
  std::map<pid_t, WorkerProcess> processes_;
  std::shared_ptr<spdlog::logger> log_;
  bool stopping_ = false;
  bool fast_stop_ = false;
  bool all_ready_announced_ = false;
  bool finished_ = false;
  int exit_code_ = 0;
};

}  // namespace forkd::daemon
