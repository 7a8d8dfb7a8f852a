#include "daemon/worker_channel.hpp"

#include <array>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/write.hpp>

#include "common/fd_passing.hpp"

namespace forkd::daemon {

std::shared_ptr<WorkerChannel> WorkerChannel::open(asio::io_context& io, common::UniqueFd fd,
                                                   std::size_t max_message, std::size_t max_queue,
                                                   Callbacks callbacks) {
  auto channel = std::make_shared<WorkerChannel>(io, std::move(fd), max_message, max_queue,
                                                 std::move(callbacks));
  channel->read_next();
  return channel;
}

WorkerChannel::WorkerChannel(asio::io_context& io, common::UniqueFd fd, std::size_t max_message,
                             std::size_t max_queue, Callbacks callbacks)
    : socket_(io), decoder_(max_message), queue_(max_queue), callbacks_(std::move(callbacks)) {
  socket_.assign(asio::local::stream_protocol(), fd.release());
  socket_.non_blocking(true);
}

bool WorkerChannel::send(const nlohmann::json& message) {
  if (closed_ || !queue_.push(common::to_json_line(message))) return false;
  write_next();
  return true;
}

void WorkerChannel::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  socket_.close(ignored);
  queue_.clear();
}

bool WorkerChannel::send_with_fd(const nlohmann::json& message, int fd) {
  if (closed_ || queue_.bytes() != 0) return false;
  const std::string line = common::to_json_line(message);
  const ssize_t n = common::send_with_fd(socket_.native_handle(), line, fd);
  if (n <= 0) return false;
  if (static_cast<std::size_t>(n) < line.size()) {
    // The descriptor went with the first byte; the rest of its line follows as any line does.
    (void)queue_.push(std::string_view(line).substr(static_cast<std::size_t>(n)));
    write_next();
  }
  return true;
}

void WorkerChannel::fail() {
  close();
  if (callbacks_.closed) callbacks_.closed();
}

// Waits for readability instead of reading into a buffer of the channel's: a pending read
// would need its buffer for as long as the worker stays silent, that is, for ever.
void WorkerChannel::read_next() {
  socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](std::error_code ec) {
    if (self->closed_) return;
    if (ec) {
      self->fail();
      return;
    }
    self->read_available();
  });
}

void WorkerChannel::read_available() {
  // Not zeroed: read_some() fills what is used, and 64 KiB of zeros per wake-up would be waste.
  std::array<char, kReadChunk> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  std::error_code ec;
  const std::size_t n = socket_.read_some(asio::buffer(buffer), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    read_next();  // woken for nothing
    return;
  }
  if (ec) {  // EOF included
    fail();
    return;
  }
  decoder_.feed(
      std::string_view(buffer.data(), n),
      [this](common::LineDecoder::Event event, std::string_view line) { on_line(event, line); });
  if (!closed_) read_next();
}

void WorkerChannel::on_line(common::LineDecoder::Event event, std::string_view line) const {
  if (closed_) return;
  if (event == common::LineDecoder::Event::oversized) {
    callbacks_.protocol_error("message over ipc.max_message dropped");
    return;
  }
  auto parsed = common::parse_json_line(line);
  switch (parsed.status) {
    case common::ParsedLine::Status::value:
      callbacks_.message(std::move(parsed.value));
      break;
    case common::ParsedLine::Status::too_deep:
      callbacks_.protocol_error("message nested too deep dropped");
      break;
    case common::ParsedLine::Status::malformed:
      callbacks_.protocol_error("malformed JSON line dropped");
      break;
    case common::ParsedLine::Status::blank:
      break;
  }
}

void WorkerChannel::write_next() {
  if (closed_ || !queue_.start_batch()) return;
  asio::async_write(socket_, asio::buffer(queue_.batch()),
                    [self = shared_from_this()](std::error_code ec, std::size_t) {
                      self->queue_.batch_written();
                      if (self->closed_) return;
                      if (ec) {
                        self->fail();
                        return;
                      }
                      self->write_next();
                    });
}

}  // namespace forkd::daemon
