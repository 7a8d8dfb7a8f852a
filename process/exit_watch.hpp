// ExitWatcher: reaps one child from an asio loop as soon as it exits, by watching its pidfd
// (falling back to polling waitid(P_PID, WNOHANG) on a backing-off timer where there is no
// pidfd). Installs no SIGCHLD handler and never waits on any other pid.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "process/pid_handle.hpp"

namespace forkd::process {

// Owned by its own pending wait (and by whoever holds a shared_ptr), so an armed watcher
// outlives the object that started it: a disowned child is still reaped when it exits.
// Destroyed while the child runs (the io_context was torn down), its PidHandle's policy
// applies: SIGKILL and a bounded wait unless disowned.
class ExitWatcher : public std::enable_shared_from_this<ExitWatcher> {
 public:
  using Handler = std::function<void(const common::ExitStatus&)>;
  // The exit status, also readable by the ChildProcess after the watcher is gone.
  using Record = std::shared_ptr<std::optional<common::ExitStatus>>;

  // Starts watching; `record` is filled in once the child has been reaped, before any handler.
  [[nodiscard]] static std::shared_ptr<ExitWatcher> start(asio::io_context& io, PidHandle handle,
                                                          Record record);

  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;
  ExitWatcher(ExitWatcher&&) = delete;
  ExitWatcher& operator=(ExitWatcher&&) = delete;
  ~ExitWatcher();

  [[nodiscard]] PidHandle& handle() noexcept { return handle_; }
  // Runs `handler` in the loop after the reap (posted if that already happened).
  void add_handler(Handler handler);
  void clear_handlers() noexcept { handlers_.clear(); }
  // Reaps synchronously (after a SIGKILL, say), waiting at most `limit`; when that succeeds
  // the pending wait is cancelled and the record filled in.
  std::optional<common::ExitStatus> reap_within(std::chrono::milliseconds limit) noexcept;

 private:
  struct Key {};

 public:
  ExitWatcher(Key key, asio::io_context& io, PidHandle handle, Record record);

 private:
  void arm();
  bool finish_if_reaped();
  void stop_waiting() noexcept;

  asio::io_context& io_;
  PidHandle handle_;
  Record record_;
  std::optional<asio::posix::stream_descriptor> pidfd_stream_;  // shares handle_'s pidfd
  asio::steady_timer poll_timer_;
  std::chrono::milliseconds poll_delay_{1};
  std::vector<Handler> handlers_;
};

}  // namespace forkd::process
