#include "worker/accept_waiter.hpp"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <string>
#include <system_error>

namespace forkd::worker {

namespace {

// eventfd values; they add up, so quit and failed outweigh whatever else is pending.
constexpr std::uint64_t kContinue = 1;
constexpr std::uint64_t kRotate = 2;
constexpr std::uint64_t kQuit = std::uint64_t{1} << 32;
constexpr std::uint64_t kWake = 1;
constexpr std::uint64_t kFailed = std::uint64_t{1} << 32;
// epoll data of the command pipe; listeners carry their index.
constexpr std::uint64_t kCommandTag = ~std::uint64_t{0};

// Level-triggered and exclusive: a wake means "a connection is queued now", and of all the
// workers asleep on the listener only one is woken for it.
bool add_listener(int epoll_fd, int listener_fd, std::size_t index) noexcept {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.u64 = index;
  return ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener_fd, &ev) == 0;
}

void post(int fd, std::uint64_t value) noexcept {
  while (::write(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
  }
}

// Blocks until the io thread says what to do.
std::uint64_t take(int fd) noexcept {
  std::uint64_t value = 0;
  for (;;) {
    const ssize_t n = ::read(fd, &value, sizeof(value));
    if (n == static_cast<ssize_t>(sizeof(value))) return value;
    if (n < 0 && errno == EINTR) continue;
    return kQuit;
  }
}

common::UniqueFd make_eventfd(int flags) {
  common::UniqueFd fd(::eventfd(0, EFD_CLOEXEC | flags));
  if (!fd) throw common::system_error_from_errno("eventfd");
  return fd;
}

}  // namespace

AcceptWaiter::AcceptWaiter(asio::io_context& io, std::span<const int> listener_fds,
                           ReadyHandler on_ready)
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      listeners_(listener_fds.begin(), listener_fds.end()),
      command_(make_eventfd(0)),
      ready_(io),
      on_ready_(std::move(on_ready)) {
  if (!epoll_) throw common::system_error_from_errno("epoll_create1");
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    if (!add_listener(epoll_.get(), listeners_[i], i)) {
      throw common::system_error_from_errno("epoll_ctl add listener fd " +
                                            std::to_string(listeners_[i]));
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kCommandTag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, command_.get(), &ev) != 0) {
    throw common::system_error_from_errno("epoll_ctl add command pipe");
  }
  common::UniqueFd ready = make_eventfd(EFD_NONBLOCK);
  std::error_code ec;
  ready_.assign(ready.get(), ec);
  if (ec) throw std::system_error(ec, "watch the accept waiter's eventfd");
  ready_fd_ = ready.release();  // ready_ owns it now

  // Why a thread: an epoll fd nested in the io_context's own epoll does not make the wake
  // exclusive (the kernel counts a wake as taken only when a task sleeps in epoll_wait on that
  // very epoll fd), so every worker would still wake for every connection. The thread takes no
  // signal: SIGTERM and the rest stay with the worker's signalfd.
  sigset_t all;
  sigset_t previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    thread_ = std::thread([this] { run_thread(); });
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  wait_for_wake();
}

AcceptWaiter::~AcceptWaiter() {
  stop();
}

void AcceptWaiter::stop() noexcept {
  if (!thread_.joinable()) return;
  post(command_.get(), kQuit);
  thread_.join();
  alive_.reset();
  std::error_code ignored;
  ready_.close(ignored);
}

void AcceptWaiter::resume(bool rotate) {
  if (!thread_.joinable()) return;
  post(command_.get(), rotate ? kRotate : kContinue);
  wait_for_wake();
}

void AcceptWaiter::wait_for_wake() {
  ready_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [this, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
                      if (ec || alive.expired()) return;
                      std::uint64_t value = 0;
                      if (::read(ready_.native_handle(), &value, sizeof(value)) != sizeof(value)) {
                        wait_for_wake();  // spurious: nothing written yet
                        return;
                      }
                      if (value >= kFailed) {
                        on_ready_(std::error_code(thread_errno_.load(), std::system_category()));
                      } else {
                        on_ready_({});
                      }
                    });
}

// The thread's whole life: sleep until a listener has a connection, tell the io thread, and
// sleep no more until it answers, so that meanwhile the kernel wakes another worker.
void AcceptWaiter::run_thread() noexcept {
  const auto fail = [this](int error) {
    thread_errno_.store(error);
    post(ready_fd_, kFailed);
  };
  std::array<epoll_event, 8> events{};
  for (;;) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno);
      return;
    }
    bool listener_ready = false;
    for (int i = 0; i < n; ++i) {
      // Only quit can be pending here: continue and rotate come while the thread waits in take.
      if (events[static_cast<std::size_t>(i)].data.u64 == kCommandTag) return;
      listener_ready = true;
    }
    if (!listener_ready) continue;
    post(ready_fd_, kWake);
    const std::uint64_t command = take(command_.get());
    if (command >= kQuit) return;
    if ((command & kRotate) != 0) {
      for (std::size_t i = 0; i < listeners_.size(); ++i) {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listeners_[i], nullptr);
        if (!add_listener(epoll_.get(), listeners_[i], i)) {
          fail(errno);  // ENOMEM, ENOSPC (max_user_watches): the io side stops using us
          return;
        }
      }
    }
  }
}

}  // namespace forkd::worker
