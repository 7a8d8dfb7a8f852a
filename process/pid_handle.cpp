#include "process/pid_handle.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace forkd::process {

using common::ExitStatus;
using common::last_error;

namespace {

constexpr auto kPidfdIdType = static_cast<idtype_t>(3);  // P_PIDFD, not in every libc header

void sleep_for(std::chrono::milliseconds delay) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(delay.count() / 1000);
  ts.tv_nsec = static_cast<long>((delay.count() % 1000) * 1'000'000);
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

}  // namespace

PidHandle::PidHandle(pid_t pid, Wait wait) noexcept : pid_(pid) {
  if (wait == Wait::pidfd) {
    // The pid cannot be recycled before we reap it, so opening after fork() is race-free.
    const long fd = ::syscall(SYS_pidfd_open, pid, 0U);
    if (fd >= 0) pidfd_.reset(static_cast<int>(fd));
  }
}

PidHandle::PidHandle(PidHandle&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      waitid_pidfd_(other.waitid_pidfd_),
      disowned_(other.disowned_),
      exit_(std::exchange(other.exit_, std::nullopt)) {}

PidHandle& PidHandle::operator=(PidHandle&& other) noexcept {
  if (this != &other) {
    release_child();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    waitid_pidfd_ = other.waitid_pidfd_;
    disowned_ = other.disowned_;
    exit_ = std::exchange(other.exit_, std::nullopt);
  }
  return *this;
}

PidHandle::~PidHandle() {
  release_child();
}

void PidHandle::release_child() noexcept {
  if (pid_ <= 0 || exit_) return;
  if (disowned_) {
    try_reap();
    return;
  }
  [[maybe_unused]] const auto ec = send_signal(SIGKILL);
  reap_within(kReapOnDestroyLimit);
}

std::optional<ExitStatus> PidHandle::try_reap() noexcept {
  if (exit_ || pid_ <= 0) return exit_;
  for (;;) {
    siginfo_t info{};
    info.si_pid = 0;  // WNOHANG leaves it untouched when no child has changed state
    const bool by_pidfd = pidfd_ && waitid_pidfd_;
    const int rc =
        by_pidfd ? ::waitid(kPidfdIdType, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG)
                 : ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG);
    if (rc == 0) {
      if (info.si_pid == 0) return std::nullopt;
      exit_ = ExitStatus::from_siginfo(info);
      return exit_;
    }
    if (errno == EINTR) continue;
    if (errno == EINVAL && by_pidfd) {
      waitid_pidfd_ = false;
      continue;
    }
    // ECHILD: someone else reaped it (a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN).
    exit_ = ExitStatus{};
    return exit_;
  }
}

std::optional<ExitStatus> PidHandle::reap_within(std::chrono::milliseconds limit) noexcept {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + limit;
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    if (try_reap()) return exit_;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (pidfd_) {
      pollfd pfd{pidfd_.get(), POLLIN, 0};
      // EINTR or not, the loop re-checks and recomputes what is left.
      ::poll(&pfd, 1, static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 1)));
    } else {
      sleep_for(std::min(delay, left));
      delay = std::min(delay * 2, std::chrono::milliseconds(20));
    }
  }
}

std::error_code PidHandle::send_signal(int signo) noexcept {
  if (pid_ <= 0 || exit_) return std::make_error_code(std::errc::no_such_process);
  if (pidfd_) {
    if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signo, nullptr, 0U) == 0) return {};
    if (errno != ENOSYS) return last_error();
  }
  // Safe by pid too: until we reap it, the pid cannot be given to another process.
  if (::kill(pid_, signo) == 0) return {};
  return last_error();
}

}  // namespace forkd::process
