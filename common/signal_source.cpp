#include "common/signal_source.hpp"

#include <sys/signalfd.h>

#include <array>
#include <asio/read.hpp>
#include <cerrno>

namespace forkd::common {

namespace {

UniqueFd open_signalfd(const sigset_t& mask) {
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) throw system_error_from_errno("sigprocmask");
  UniqueFd fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) throw system_error_from_errno("signalfd");
  return fd;
}

SignalInfo describe(const signalfd_siginfo& info) {
  const int code = info.ssi_code;
  SignalInfo signal;
  signal.signo = static_cast<int>(info.ssi_signo);
  signal.from_process = code == SI_USER || code == SI_TKILL || code == SI_QUEUE;
  signal.sender_pid = static_cast<pid_t>(info.ssi_pid);
  signal.sender_uid = static_cast<uid_t>(info.ssi_uid);
  return signal;
}

}  // namespace

SignalSource::SignalSource(asio::io_context& io, std::initializer_list<int> signals,
                           Handler handler)
    : stream_(io), handler_(std::move(handler)) {
  ::sigemptyset(&mask_);
  for (int signo : signals) ::sigaddset(&mask_, signo);
  stream_.assign(open_signalfd(mask_).release());
  read_next();
}

SignalSource::~SignalSource() {
  std::error_code ignored;
  stream_.close(ignored);
  ::sigprocmask(SIG_UNBLOCK, &mask_, nullptr);
}

void SignalSource::read_next() {
  stream_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec) return;  // cancelled: the source is being destroyed
    // Drain every pending signal; each read returns whole siginfo records.
    std::array<signalfd_siginfo, 16> infos{};
    for (;;) {
      const ssize_t n = ::read(stream_.native_handle(), infos.data(), sizeof(infos));
      if (n <= 0) break;
      const auto count = static_cast<std::size_t>(n) / sizeof(signalfd_siginfo);
      for (std::size_t i = 0; i < count; ++i) handler_(describe(infos[i]));
    }
    read_next();
  });
}

}  // namespace forkd::common
