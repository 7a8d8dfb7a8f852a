#include "process/exit_watch.hpp"

#include <asio/post.hpp>
#include <utility>

namespace forkd::process {

using common::ExitStatus;

namespace {
constexpr std::chrono::milliseconds kMaxPollDelay{50};
}  // namespace

std::shared_ptr<ExitWatcher> ExitWatcher::start(asio::io_context& io, PidHandle handle,
                                                Record record) {
  auto watcher = std::make_shared<ExitWatcher>(Key{}, io, std::move(handle), std::move(record));
  watcher->arm();
  return watcher;
}

ExitWatcher::ExitWatcher([[maybe_unused]] Key key, asio::io_context& io, PidHandle handle,
                         Record record)
    : io_(io), handle_(std::move(handle)), record_(std::move(record)), poll_timer_(io) {
  if (handle_.pidfd() >= 0) pidfd_stream_.emplace(io, handle_.pidfd());
}

ExitWatcher::~ExitWatcher() {
  // The descriptor is handle_'s to close; asio must only forget it.
  if (pidfd_stream_) {
    [[maybe_unused]] const int fd = pidfd_stream_->release();
  }
}

void ExitWatcher::add_handler(Handler handler) {
  if (handle_.reaped()) {
    asio::post(io_, [handler = std::move(handler), exit = *handle_.exit()] { handler(exit); });
    return;
  }
  handlers_.push_back(std::move(handler));
}

std::optional<ExitStatus> ExitWatcher::reap_within(std::chrono::milliseconds limit) noexcept {
  auto exit = handle_.reap_within(limit);
  if (exit) {
    *record_ = exit;
    stop_waiting();
  }
  return exit;
}

// Checking before every wait matters: the pidfd is edge-triggered in asio's reactor, so an
// exit that became readable while no wait was queued would otherwise never be seen.
void ExitWatcher::arm() {
  if (finish_if_reaped()) return;
  if (pidfd_stream_) {
    pidfd_stream_->async_wait(asio::posix::stream_descriptor::wait_read,
                              [self = shared_from_this()](const std::error_code& ec) {
                                if (!ec) self->arm();
                              });
    return;
  }
  poll_timer_.expires_after(poll_delay_);
  poll_delay_ = std::min(poll_delay_ * 2, kMaxPollDelay);
  poll_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (!ec) self->arm();
  });
}

bool ExitWatcher::finish_if_reaped() {
  const auto exit = handle_.try_reap();
  if (!exit) return false;
  *record_ = exit;
  // Handlers may destroy whoever registered them: work on our own copy.
  auto handlers = std::exchange(handlers_, {});
  for (auto& handler : handlers) handler(*exit);
  return true;
}

void ExitWatcher::stop_waiting() noexcept {
  std::error_code ignored;
  if (pidfd_stream_) pidfd_stream_->cancel(ignored);
  try {
    poll_timer_.cancel();
  } catch (const std::system_error&) {
    // Only a broken reactor fails here; the pending wait then simply completes later.
  }
}

}  // namespace forkd::process
