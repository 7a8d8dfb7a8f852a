// SignalSource: the given signals, blocked for the whole process and read from a signalfd
// that an asio io_context watches. No handlers run: each signal arrives as a plain callback
// in the loop, so the code it triggers needs no async-signal-safety.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <functional>
#include <initializer_list>

#include "common/fd.hpp"

namespace forkd::common {

// One signal as the signalfd reports it, with who sent it (for the audit trail).
struct SignalInfo {
  int signo = 0;
  bool from_process = false;  // kill(2), tgkill(2), sigqueue(3); else the kernel (a tty's ^C)
  pid_t sender_pid = 0;       // meaningful when from_process
  uid_t sender_uid = 0;       // the sender's real uid, when from_process
};

class SignalSource {
 public:
  using Handler = std::function<void(const SignalInfo& signal)>;

  // Blocks `signals` with sigprocmask and starts reading them. Throws std::system_error.
  SignalSource(asio::io_context& io, std::initializer_list<int> signals, Handler handler);
  SignalSource(const SignalSource&) = delete;
  SignalSource& operator=(const SignalSource&) = delete;
  SignalSource(SignalSource&&) = delete;
  SignalSource& operator=(SignalSource&&) = delete;
  ~SignalSource();

  // The set it blocked (what a forked child must unblock before exec or app entry).
  [[nodiscard]] const sigset_t& mask() const noexcept { return mask_; }

 private:
  void read_next();

  sigset_t mask_{};
  asio::posix::stream_descriptor stream_;
  Handler handler_;
};

}  // namespace forkd::common
