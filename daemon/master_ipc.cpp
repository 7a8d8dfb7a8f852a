// What workers send the master (IPC lines and sd_notify datagrams) and what the master
// delivers to them. A worker that does not read its channel is replaced, never buffered for.
#include <spdlog/logger.h>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <variant>

#include "common/ipc_protocol.hpp"
#include "common/text_escape.hpp"
#include "daemon/master.hpp"
#include "daemon/worker_channel.hpp"

namespace forkd::daemon {

namespace ipc = common::ipc;

namespace {

// What a log line quotes of a worker's own text (a message kind, a STATUS=).
constexpr std::size_t kShownMax = 256;

}  // namespace

// Where the lines a worker's messages cause go, each worker limited on its own.
LimitedLog* Master::worker_log(pid_t pid) {
  const auto it = workers_.find(pid);
  return it == workers_.end() || !it->second.logs ? nullptr : &it->second.logs->ipc;
}

void Master::on_worker_message(pid_t pid, nlohmann::json line) {
  unsigned from = 0;
  if (pool_.find(pid, &from) == nullptr) return;
  ++ipc_from_worker_;
  ipc::Message decoded = ipc::decode(std::move(line));
  std::visit(
      [&](auto& message) {
        using M = std::decay_t<decltype(message)>;
        if constexpr (std::is_same_v<M, ipc::Ready>) {
          pool_.ready(pid, Clock::now());
        } else if constexpr (std::is_same_v<M, ipc::Heartbeat>) {
          pool_.heartbeat(pid, Clock::now());
        } else if constexpr (std::is_same_v<M, ipc::Connections>) {
          if (auto it = workers_.find(pid); it != workers_.end()) {
            // A count only grows: a smaller one would make the slot's counter go back.
            if (message.accepted) {
              it->second.accepted = std::max(it->second.accepted.value_or(0), *message.accepted);
            }
            if (message.open) it->second.open_connections = message.open;
          }
        } else if constexpr (std::is_same_v<M, ipc::Application>) {
          relay_application_message(pid, from, std::move(message.value));
        } else if constexpr (std::is_same_v<M, ipc::Send>) {
          const auto peer = message.to ? pool_.serving(*message.to) : std::nullopt;
          if (!peer) {
            if (LimitedLog* log = worker_log(pid)) {
              log->log(spdlog::level::warn,
                       "worker {} (pid {}) sent a message to worker {}, which is not running", from,
                       pid, common::escape_text_within(message.to_shown, kShownMax));
            }
            return;
          }
          (void)deliver(*peer, message.data);
        } else if constexpr (std::is_same_v<M, ipc::Broadcast>) {
          for (const auto& slot : pool_.slots()) {
            if (slot.id != from && slot.current.pid > 0) {
              (void)deliver(slot.current.pid, message.data);
            }
          }
        } else if constexpr (std::is_same_v<M, ipc::Unknown>) {
          if (LimitedLog* log = worker_log(pid)) {
            log->log(spdlog::level::warn, "worker {} (pid {}) sent unknown forkd message \"{}\"",
                     from, pid, common::escape_text_within(message.kind, kShownMax));
          }
        }
      },
      decoded);
}

// An application message: first to an operator waiting on this worker, then to `events`.
void Master::relay_application_message(pid_t pid, unsigned from, nlohmann::json message) {
  // Seen in the log at debug even when no `forkctl events` is listening (limited per worker).
  if (LimitedLog* log = worker_log(pid); log != nullptr && log_->should_log(spdlog::level::debug)) {
    log->log(
        spdlog::level::debug, "worker {} (pid {}) message: {}", from, pid,
        common::escape_text_within(
            message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kShownMax));
  }
  auto waiter = std::find_if(reply_waiters_.begin(), reply_waiters_.end(),
                             [&](const ReplyWaiter& w) { return w.pid == pid; });
  if (waiter != reply_waiters_.end()) {
    Respond respond = std::move(waiter->respond);
    reply_waiters_.erase(waiter);
    respond({{"ok", true}, {"worker", from}, {"pid", pid}, {"reply", message}});
  }
  publish({{"event", "message"}, {"worker", from}, {"pid", pid}, {"data", std::move(message)}});
}

void Master::on_worker_notify(pid_t pid,
                              const std::vector<std::pair<std::string, std::string>>& fields) {
  unsigned slot = 0;
  if (pool_.find(pid, &slot) == nullptr) return;
  for (const auto& [key, value] : fields) {
    const auto ready_mode = effective_ready_mode(config_, takeover_);
    if (key == "READY" && value == "1") {
      // `auto` with the takeover takes a program's own word too, whichever comes first (an
      // IPC "ready" always counts).
      const bool automatic = config_.worker.ready == common::ReadyMode::automatic;
      if (ready_mode == common::ReadyMode::notify || automatic) pool_.ready(pid, Clock::now());
    } else if (key == "FORKD_LISTENING") {
      // The takeover library saw the program listen() on an inherited listener.
      if (ready_mode == common::ReadyMode::listening) pool_.ready(pid, Clock::now());
    } else if (key == "FORKD_UNSERVED_BIND") {
      const std::string address = common::escape_text_within(value, kShownMax);
      // Bounded: a worker that makes up addresses cannot grow the master.
      constexpr std::size_t kMaxSaid = 16;
      if (unserved_binds_said_.size() < kMaxSaid && unserved_binds_said_.insert(address).second) {
        const std::string port = address.substr(address.rfind(':') + 1);
        log_->warn(
            "worker {} (pid {}): port {} is not a forkd listener: every worker will bind it (it "
            "binds {}; add it to listen, or use a port forkd serves)",
            slot, pid, port, address);
      }
    } else if (key == "WATCHDOG" && value == "1") {
      pool_.heartbeat(pid, Clock::now());
    } else if (key == "STATUS") {
      if (auto it = workers_.find(pid); it != workers_.end()) it->second.status_text = value;
      if (LimitedLog* log = worker_log(pid)) {
        log->log(spdlog::level::debug, "worker {} (pid {}) status: {}", slot, pid,
                 common::escape_text_within(value, kShownMax));
      }
    } else if (key == "STOPPING" && value == "1") {
      if (LimitedLog* log = worker_log(pid)) {
        log->log(spdlog::level::info, "worker {} (pid {}) says it is stopping", slot, pid);
      }
    }
  }
}

bool Master::deliver(pid_t pid, const nlohmann::json& data) {
  const auto it = workers_.find(pid);
  if (it == workers_.end() || !it->second.channel) return false;
  WorkerChannel& channel = *it->second.channel;
  if (channel.send(data)) {
    ++ipc_to_worker_;
    return true;
  }
  // It does not read its IPC socket: the queue is full. Replace it rather than buffer more;
  // the pass after this handler starts the replacement.
  // Said once, when its replacement is decided: a peer flooding it must not flood the log.
  unsigned slot = 0;
  (void)pool_.find(pid, &slot);
  const bool replacing =
      pool_.serving(slot) == pid && pool_.replace(slot, StopReason::stuck_ipc, Clock::now());
  log_->log(replacing ? spdlog::level::err : spdlog::level::debug,
            "worker {} (pid {}) does not read its IPC channel ({} bytes queued); message dropped",
            slot, pid, channel.queued_bytes());
  return false;
}

}  // namespace forkd::daemon
