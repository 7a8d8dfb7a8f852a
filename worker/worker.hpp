// The worker library's public API: what a program calls to become a forkd worker (built-in
// apps use exactly this too). Context reads what the master hands over (SPEC "What a worker is
// given"); Worker owns the worker's io_context, its IPC channel, heartbeats and the stop hook.
// Nothing here knows about HTTP or about the master's internals.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/signal_source.hpp"
#include "worker/channel.hpp"

namespace forkd::worker {

struct Listener {
  int fd = -1;
  std::string name;  // from LISTEN_FDNAMES
};

struct Context {
  unsigned id = 0;                  // FORKD_WORKER_ID: slot 0..N-1, stable across respawns
  unsigned generation = 0;          // FORKD_GENERATION
  unsigned workers = 0;             // FORKD_WORKERS: the pool's size at spawn (0 = not given)
  pid_t master_pid = 0;             // FORKD_MASTER_PID (0 when not given)
  std::vector<Listener> listeners;  // fds 3 .. 3+LISTEN_FDS-1
  int ipc_fd = -1;                  // FORKD_IPC_FD
  std::size_t max_message = std::size_t{1024} * 1024;  // FORKD_IPC_MAX_MESSAGE
  std::chrono::microseconds watchdog{0};               // WATCHDOG_USEC, 0 = no heartbeats
  std::chrono::milliseconds shutdown_timeout{0};       // FORKD_SHUTDOWN_TIMEOUT_MS, 0 = not given

  // Reads the process environment and checks that the fds it names are open. Throws
  // std::runtime_error saying what is wrong: not run under forkd (FORKD_WORKER_ID or
  // FORKD_IPC_FD missing), a malformed value, or LISTEN_PID naming another process.
  [[nodiscard]] static Context from_environment();

  // The pure part of from_environment: `getenv` looks a variable up (nullptr = unset),
  // `self` is the pid LISTEN_PID must equal. Checks values, not fds.
  using EnvLookup = std::function<const char*(const char* name)>;
  [[nodiscard]] static Context parse(const EnvLookup& getenv, pid_t self);
};

class Worker {
 public:
  using MessageHandler = std::function<void(const nlohmann::json&)>;
  using StopHandler = std::function<void()>;

  // Takes ownership of context.ipc_fd; marks the IPC and listener fds close-on-exec so that
  // programs the worker spawns do not inherit them. From here on SIGTERM is blocked and read
  // through a signalfd (see run()), unless the program set it to SIG_IGN before: that choice
  // is respected and SIGTERM then does nothing. Throws std::system_error.
  explicit Worker(Context context);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  Worker(Worker&&) = delete;
  Worker& operator=(Worker&&) = delete;
  ~Worker();

  [[nodiscard]] asio::io_context& io() noexcept { return io_; }
  [[nodiscard]] const Context& context() const noexcept { return context_; }

  // Tells the master this worker serves now ({"forkd":"ready"}); later calls do nothing.
  void ready();
  // An application message to the master (any JSON value).
  void send(const nlohmann::json& message);
  // Asks the master to deliver `data` to worker `id`, or to every other worker.
  void send_to(unsigned id, const nlohmann::json& data);
  void broadcast(const nlohmann::json& data);

  // The connections this worker accepted since it started and holds open now, for the master's
  // status and metrics: sent as {"forkd":"connections"} at most once a second, and only after a
  // change, so an idle worker sends nothing. Nothing goes out once the worker is stopping.
  void count_connections(std::uint64_t accepted, std::uint64_t open);

  // Every message the master delivers (relayed from a worker or from the operator).
  void on_message(MessageHandler handler);
  // With reuseport, the master may lend this worker a stalled worker's listening socket, with
  // {"forkd":"take_queued"}: the handler takes what is queued on it (HttpServer::take_queued_from)
  // and closes it. Without a handler the socket is closed at once and its connections wait for
  // their own worker.
  using QueuedHandler = std::function<void(common::UniqueFd listener)>;
  void on_queued_connections(QueuedHandler handler);
  // Adds a hook run once when the worker starts stopping (SIGTERM, master gone, or stop()):
  // close acceptors, finish in-flight work, release what keeps the loop busy. Hooks run in the
  // order they were added.
  void on_stop(StopHandler handler);

  // Starts a graceful stop, as SIGTERM does.
  void stop();
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }

  // Runs the loop: SIGTERM starts a graceful stop, heartbeats go out every WATCHDOG_USEC/2
  // (the first at once), IPC messages are delivered. After a stop the worker's own timers
  // and IPC reads end, so the loop returns once the app's work has drained; a second SIGTERM
  // during the drain takes its default action and ends the process at once. When the stop
  // came from the master closing the IPC socket, the drain is given 1 s at most.
  // Returns the exit code: 0 after a drained stop, 1 when the 1 s limit cut the drain short.
  // Exceptions thrown by handlers propagate.
  int run();

 private:
  enum class StopReason { none, requested, terminated, master_gone };

  void begin_stop(StopReason reason);
  void send_heartbeat();
  void schedule_heartbeat();
  void send_connection_counts();

  Context context_;
  asio::io_context io_{1};
  Channel channel_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer counts_timer_;  // armed only while a change of the counts is unsent
  std::uint64_t accepted_ = 0;
  std::uint64_t open_ = 0;
  bool counts_pending_ = false;
  std::optional<common::SignalSource> signals_;
  MessageHandler message_handler_;
  QueuedHandler queued_handler_;
  std::vector<StopHandler> stop_handlers_;
  bool ready_sent_ = false;
  bool stopping_ = false;
  StopReason stop_reason_ = StopReason::none;
};

}  // namespace forkd::worker
