// One worker's NOTIFY_SOCKET: a datagram socket at an abstract address only this master hands
// out, read with SO_PASSCRED so that a datagram counts only when it comes from that worker or a
// process it started (systemd-notify run from a worker's shell). Others are dropped and said.
// Abstract sockets have no permissions, so the name is random: nobody can bind it first. Each
// datagram is read into a buffer on the stack: an idle receiver holds no buffer.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.hpp"
#include "common/sd_notify.hpp"

namespace forkd::daemon {

class NotifyReceiver : public std::enable_shared_from_this<NotifyReceiver> {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;
  using Handler = std::function<void(pid_t worker, const Fields&)>;
  // `worker` is 0 until set_worker_pid().
  using Rejected = std::function<void(pid_t worker, pid_t sender)>;
  using NameSource = std::function<std::string()>;

  // Names tried before giving up when each one is taken already.
  static constexpr int kBindAttempts = 8;

  // Binds "@<name>" (abstract), a fresh name from `next_name` after each one that is in use
  // (EADDRINUSE), so a squatted name costs a retry, never the worker's readiness. Throws
  // std::system_error naming the last address tried.
  static std::shared_ptr<NotifyReceiver> open(asio::io_context& io, const NameSource& next_name,
                                              Handler handler, Rejected rejected);
  NotifyReceiver(asio::io_context& io, common::UniqueFd bound, std::string address, Handler handler,
                 Rejected rejected);

  // What the worker gets as NOTIFY_SOCKET ("@forkd-...").
  [[nodiscard]] const std::string& address() const noexcept { return address_; }
  // Known only once forked; until then nothing is accepted.
  void set_worker_pid(pid_t pid) noexcept { worker_pid_ = pid; }
  void close();

 private:
  void read_next();
  void drain();  // called with a reference held by the handler: callbacks may drop the owner's
  [[nodiscard]] bool from_worker(pid_t sender) const;

  asio::posix::stream_descriptor socket_;
  std::string address_;
  Handler handler_;
  Rejected rejected_;
  pid_t worker_pid_ = 0;
  bool closed_ = false;
};

// "forkd-" and 128 random bits in hex, from getrandom(2): a name no other user can predict
// and bind first. Throws std::system_error when the kernel gives no random bytes.
[[nodiscard]] std::string random_notify_name();

// True when `ancestor` is `pid` or one of its ancestors (read from /proc).
[[nodiscard]] bool is_same_or_descendant(pid_t pid, pid_t ancestor);

}  // namespace forkd::daemon
