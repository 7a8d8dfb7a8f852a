// Starting a worker, as the pool orders it: its program or built-in app, environment, ids,
// descriptors (listeners from fd 3, the IPC socket after them), output capture and
// NOTIFY_SOCKET. The answer goes back to the pool: the pid, or why there is none.
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/logger.h>
#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/spawner.hpp"
#include "common/worker_program.hpp"
#include "daemon/master.hpp"
#include "daemon/notify_receiver.hpp"
#include "daemon/output_capture.hpp"
#include "daemon/worker_channel.hpp"
#include "worker/apps/registry.hpp"

namespace forkd::daemon {

using common::spawn_process;
using common::SpawnResult;
using common::SpawnSpec;

namespace {

// The in-process entry of a built-in app worker, after the child's set-up.
void enter_builtin_app(const void* app) noexcept {
  worker::run_builtin_app(*static_cast<const worker::AppEntry*>(app));
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

WorkerLogs::WorkerLogs(const std::shared_ptr<spdlog::logger>& master_log, unsigned slot, pid_t pid)
    : output(common::log::get("worker"), fmt::format("worker {} (pid {}) output", slot, pid),
             kOutputRate),
      ipc(master_log, fmt::format("worker {} (pid {}) messages", slot, pid), kMessageRate),
      notify(master_log, fmt::format("worker {} (pid {}) NOTIFY_SOCKET senders", slot, pid),
             kMessageRate) {}

void WorkerLogs::flush() {
  output.flush();
  ipc.flush();
  notify.flush();
}

bool Master::exec_mode() const noexcept {
  return config_.worker.app.empty();
}

std::map<std::string, std::string> Master::worker_environment(unsigned slot,
                                                              unsigned generation) const {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const auto name = entry.substr(0, eq);
    if (!inherited_variable_allowed(name)) continue;
    env.emplace(std::string(name), std::string(entry.substr(eq + 1)));
  }
  // The user's own HOME and names, not the master's; worker.env still has the last word.
  for (const auto& [k, v] : config_.worker.account_env) env[k] = v;
  for (const auto& [k, v] : config_.worker.env) env[k] = v;
  const std::size_t listener_count = listeners_.listeners().size();
  const std::string ipc_fd = std::to_string(3 + listener_count);
  env["FORKD_WORKER_ID"] = std::to_string(slot);
  env["NODE_APP_INSTANCE"] = std::to_string(slot);  // PM2's name for it
  env["FORKD_GENERATION"] = std::to_string(generation);
  // The accept path's notion of a fair share (worker/accept_policy.hpp); a later scale is not
  // seen by workers already running.
  env["FORKD_WORKERS"] = std::to_string(pool_.target());
  env["FORKD_MASTER_PID"] = std::to_string(::getpid());
  env["FORKD_IPC_FD"] = ipc_fd;
  env["FORKD_IPC_MAX_MESSAGE"] = std::to_string(config_.ipc.max_message);
  env["FORKD_SHUTDOWN_TIMEOUT_MS"] = std::to_string(config_.worker.shutdown_timeout.count());
  env["NODE_CHANNEL_FD"] = ipc_fd;
  env["NODE_CHANNEL_SERIALIZATION_MODE"] = "json";
  env["LISTEN_FDS"] = std::to_string(listener_count);
  env["LISTEN_FDNAMES"] = listeners_.fdnames();
  if (takeover_.active) {
    // Appended to the user's own: their preloads come first, as SPEC says.
    auto& preload = env["LD_PRELOAD"];
    preload = preload.empty() ? takeover_.library : preload + ":" + takeover_.library;
  }
  if (config_.worker.heartbeat_timeout.count() > 0) {
    env["WATCHDOG_USEC"] = std::to_string(config_.worker.heartbeat_timeout.count() * 1000);
  }
  return env;
}

void Master::spawn_worker(const SpawnOrder& order) {
  const unsigned id = order.slot;
  const TimePoint now = Clock::now();
  try {
    listeners_.ensure_worker_sockets(std::max(pool_.target(), id + 1));
    // A replacement gets sockets of its own: none of the slot's connections reach it before it
    // is ready, and the steering program sends it none until then.
    if (order.incoming) listeners_.open_incoming_sockets(id);
    steering_->track(listeners_);
  } catch (const ListenError& e) {
    pool_.spawn_failed(id, order.incoming, e.what(), now);
    return;
  }
  const auto& wc = config_.worker;
  SpawnSpec spec;
  if (exec_mode()) {
    if (!wc.shell.empty()) {
      spec.program = "/bin/sh";
      spec.argv = {"/bin/sh", "-c", wc.shell};
    } else {
      // The resolution --check-config did: the worker's PATH, relative to worker.cwd.
      const common::WorkerProgram program = common::resolve_worker_program(wc);
      if (!program.found()) {
        pool_.spawn_failed(id, order.incoming, program.problem, now);
        return;
      }
      spec.program = program.path;
      spec.argv = wc.command;
    }
  } else {
    const worker::AppEntry* app = worker::find_builtin_app(wc.app);
    if (app == nullptr) {
      pool_.spawn_failed(id, order.incoming, "unknown built-in app \"" + wc.app + "\"", now);
      return;
    }
    spec.entry = &enter_builtin_app;
    spec.entry_arg = app;
  }
  spec.env = worker_environment(id, order.generation);
  spec.listen_pid = true;
  spec.drop_capabilities = true;
  // Whatever it starts can then be stopped with it (SPEC: trust boundaries). The group stays in
  // our session; the terminal's Ctrl-C now reaches the master alone.
  spec.own_process_group = true;
  spec.cwd = wc.cwd;
  spec.rlimit_nofile = wc.rlimit_nofile;
  if (wc.cpu_affinity) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) > 0) {
      const int count = CPU_COUNT(&allowed);
      int wanted = static_cast<int>(id % static_cast<unsigned>(count));
      for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (wanted-- == 0) {
          spec.cpu = static_cast<int>(cpu);
          break;
        }
      }
    }
  }
  // Resolved when the configuration was loaded: no lookup here that could fail and leave the
  // worker with the master's identity.
  spec.uid = wc.uid;
  spec.gid = wc.gid;
  spec.groups = wc.groups;

  // fds: 0 /dev/null, 1-2 per stdout/stderr mode, listeners from 3, then the IPC socket.
  common::FdPair ipc;
  std::array<common::FdPair, 2> output_pipes;
  const std::array<common::OutputMode, 2> modes = {wc.stdout_mode, wc.stderr_mode};
  try {
    ipc = common::make_socketpair(SOCK_STREAM);
    for (std::size_t i = 0; i < 2; ++i) {
      if (modes[i] == common::OutputMode::log) output_pipes[i] = common::make_pipe();
    }
  } catch (const std::system_error& e) {
    pool_.spawn_failed(id, order.incoming, std::string("cannot create its channels: ") + e.what(),
                       now);
    return;
  }
  spec.fds.push_back(devnull_.get());
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
  const std::vector<int> listener_fds = listeners_.fds_for(id, order.incoming);
  for (int fd : listener_fds) spec.fds.push_back(fd);
  spec.fds.push_back(ipc.second.get());
  // A NOTIFY_SOCKET of its own: READY=1, WATCHDOG=1, STATUS=, STOPPING=1 (sd_notify).
  std::shared_ptr<NotifyReceiver> notify;
  try {
    notify = NotifyReceiver::open(
        io_, random_notify_name,
        [this](pid_t worker, const NotifyReceiver::Fields& fields) {
          guarded("notify from worker pid " + std::to_string(worker),
                  [&] { on_worker_notify(worker, fields); });
        },
        [this, id](pid_t worker, pid_t sender) {
          if (const auto it = workers_.find(worker); it != workers_.end() && it->second.logs) {
            it->second.logs->notify.log(
                spdlog::level::warn,
                "worker {} (pid {}): notify message from pid {} ignored: not this worker", id,
                worker, sender);
          }
        });
    spec.env["NOTIFY_SOCKET"] = notify->address();
  } catch (const std::system_error& e) {
    // Without it a `ready: notify` worker could never be ready: a failed start, retried later.
    if (const auto mode = effective_ready_mode(config_, takeover_);
        mode == common::ReadyMode::notify || mode == common::ReadyMode::listening) {
      pool_.spawn_failed(id, order.incoming, std::string("no NOTIFY_SOCKET: ") + e.what(), now);
      return;
    }
    log_->warn("worker {}: no NOTIFY_SOCKET: {}", id, e.what());
  }

  const SpawnResult result = spawn_process(spec);
  if (result.pid < 0) {
    if (notify) notify->close();
    pool_.spawn_failed(id, order.incoming, result.describe(spec), now);
    return;
  }
  const pid_t pid = result.pid;
  WorkerIo io;
  io.logs = std::make_shared<WorkerLogs>(log_, id, pid);
  if (spec.uid) io.owner = ProcOwner{*spec.uid, spec.gid.value_or(::getgid())};
  if (notify) {
    notify->set_worker_pid(pid);
    io.notify = std::move(notify);
  }
  io.channel = WorkerChannel::open(
      io_, std::move(ipc.first), config_.ipc.max_message, 4 * config_.ipc.max_message,
      {.message =
           [this, pid](nlohmann::json m) {
             guarded("IPC from worker pid " + std::to_string(pid),
                     [&] { on_worker_message(pid, std::move(m)); });
           },
       .protocol_error =
           [logs = io.logs, pid, id](const std::string& problem) {
             logs->ipc.log(spdlog::level::warn, "worker {} (pid {}) IPC: {}", id, pid, problem);
           },
       .closed = {}});
  const std::array<const char*, 2> stream_names = {"stdout", "stderr"};
  for (std::size_t i = 0; i < 2; ++i) {
    if (!output_pipes[i].first) continue;
    io.outputs.push_back(
        OutputCapture::open(io_, std::move(output_pipes[i].first),
                            fmt::format("worker {} (pid {}) {}", id, pid, stream_names[i]), i == 1,
                            std::shared_ptr<LimitedLog>(io.logs, &io.logs->output),
                            [this, id, pid, is_stderr = i == 1](std::string_view line) {
                              keep_output(id, pid, is_stderr, line);
                            }));
  }
  workers_.insert_or_assign(pid, std::move(io));
  steering_->handed(pid, listener_fds);
  if (order.incoming) incoming_holders_[id] = pid;
  pool_.spawned(id, order.incoming, pid, result.failure ? result.describe(spec) : "", now);
}

void Master::keep_output(unsigned slot, pid_t pid, bool is_stderr, std::string_view line) {
  const bool following = control_ && control_->output_subscriber_count() > 0;
  if (config_.log.worker_lines == 0 && !following) return;
  CapturedLine captured{++output_seq_,    slot, pid, is_stderr, std::chrono::system_clock::now(),
                        std::string(line)};
  // `forkctl logs -f`: built only while someone follows.
  if (following) {
    nlohmann::json event = to_json(captured);
    event["event"] = "output";
    control_->publish_output(event);
  }
  if (config_.log.worker_lines == 0) return;
  output_rings_.try_emplace(slot, config_.log.worker_lines).first->second.push(std::move(captured));
}

}  // namespace forkd::daemon
