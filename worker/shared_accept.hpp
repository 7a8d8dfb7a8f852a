// SharedAccept: the accept path of a worker's shared (not reuseport) listeners. It waits through
// an AcceptWaiter (the kernel wakes one worker per connection), takes a bounded batch with
// accept4, goes to the back of the wait queue, and yields while this worker holds clearly more
// than its share. It owns the listeners' fds and its timers; what it accepts belongs to the caller.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "common/fd.hpp"
#include "worker/accept_policy.hpp"
#include "worker/accept_waiter.hpp"

namespace forkd::worker {

class SharedAccept : public std::enable_shared_from_this<SharedAccept> {
 public:
  struct Listener {
    common::UniqueFd fd;  // listening, non-blocking
    std::string name;
    int family = 0;
  };
  struct Options {
    unsigned workers = 0;  // sharing the listeners; the share rule needs 2 or more
    std::chrono::milliseconds accept_backoff{100};
    AcceptPolicy policy;
  };
  // A connection taken on listeners[index]: non-blocking and close-on-exec.
  using Adopt = std::function<void(std::size_t index, common::UniqueFd connection)>;
  // This worker's open connections.
  using OpenCount = std::function<std::size_t()>;

  // Starts waiting. Throws std::system_error (then the listeners are closed).
  [[nodiscard]] static std::shared_ptr<SharedAccept> start(asio::io_context& io,
                                                           std::vector<Listener> listeners,
                                                           Options options, Adopt adopt,
                                                           OpenCount open_count);

  SharedAccept(asio::io_context& io, std::vector<Listener> listeners, Options options, Adopt adopt,
               OpenCount open_count);

  // Takes what is already queued (bounded), stops waiting and closes the listeners. Idempotent.
  void stop();

 private:
  enum class Share { normal, yielding, draining };

  void start_waiter();
  void on_ready(std::error_code ec);
  void resume_after(std::chrono::milliseconds pause, bool restart_waiter = false);
  // Takes up to `batch` connections from one listener; false after a failure that calls for the
  // backoff pause.
  bool accept_batch(std::size_t index, std::size_t batch, std::size_t& accepted);
  // Whether one more connection would leave this worker over its share; when true, total_ has
  // just been asked.
  bool over_share();
  // Connections the other workers hold: the total minus ours and those still queued.
  std::size_t others_held();

  asio::io_context& io_;
  std::vector<Listener> listeners_;
  std::vector<bool> failing_;  // per listener, inside a streak of failed accepts: reported once
  Options options_;
  Adopt adopt_;
  OpenCount open_count_;
  std::unique_ptr<AcceptWaiter> waiter_;
  asio::steady_timer pause_;
  RotationClock rotation_;
  // The share rule is on when the only listener is TCP and the workers are known.
  std::uint16_t share_port_ = 0;
  std::size_t total_ = 0;  // established on share_port_, as last asked
  std::chrono::steady_clock::time_point total_asked_;
  // Over share, yielding: we pause and the kernel wakes the others meanwhile, for as long as
  // AcceptPolicy::yield_now says so; when it does not, the others are stalled or starved of CPU:
  // draining, we accept until the queue is empty.
  Share share_ = Share::normal;
  std::size_t others_at_yield_ = 0;
  bool stopped_ = false;
};

}  // namespace forkd::worker
