// AcceptWaiter: waits for connections on shared listeners so that the kernel wakes one worker per
// connection (EPOLLEXCLUSIVE), and hands each wake to the io_context's thread, which accepts.
// It owns a private epoll fd, a thread that sleeps in epoll_wait on it, and the pipes between the
// two; it never accepts, and its thread never touches the io_context.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <system_error>
#include <thread>
#include <vector>

#include "common/fd.hpp"

namespace forkd::worker {

class AcceptWaiter {
 public:
  // Called on the io_context's thread when a listener has a connection queued (no error): the
  // waiter then sleeps no more until resume(), so meanwhile the kernel wakes the other workers.
  // With an error the waiter could not go on waiting (epoll failed) and calls no more.
  using ReadyHandler = std::function<void(std::error_code)>;

  // Watches the listeners (not owned; they must stay open until stop()). Throws
  // std::system_error.
  AcceptWaiter(asio::io_context& io, std::span<const int> listener_fds, ReadyHandler on_ready);
  AcceptWaiter(const AcceptWaiter&) = delete;
  AcceptWaiter& operator=(const AcceptWaiter&) = delete;
  AcceptWaiter(AcceptWaiter&&) = delete;
  AcceptWaiter& operator=(AcceptWaiter&&) = delete;
  ~AcceptWaiter();

  // After a wake: wait for the next connection. With `rotate` the listeners are removed and
  // added again first, which puts this worker at the tail of their wait queues, so the kernel
  // wakes the others first next time (nginx re-adds its listening events the same way).
  void resume(bool rotate);

  // Ends the thread and the wait; no handler runs afterwards. Idempotent.
  void stop() noexcept;

 private:
  void wait_for_wake();
  void run_thread() noexcept;

  common::UniqueFd epoll_;
  std::vector<int> listeners_;
  // Two eventfds (a worker holds no stray pipes): commands to the thread (continue, rotate,
  // quit; the thread reads them blocking), and wakes (or its failure) to the io thread.
  common::UniqueFd command_;
  asio::posix::stream_descriptor ready_;
  int ready_fd_ = -1;  // ready_'s fd, for the thread: it never touches the asio object
  ReadyHandler on_ready_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handlers check it: we may be gone
  std::atomic<int> thread_errno_{0};  // set by the thread before it writes its last byte
  std::thread thread_;
};

}  // namespace forkd::worker
