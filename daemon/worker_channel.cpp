#include "daemon/worker_channel.hpp"

#include <asio/buffer.hpp>
#include <asio/write.hpp>

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

void WorkerChannel::fail() {
  close();
  if (callbacks_.closed) callbacks_.closed();
}

void WorkerChannel::read_next() {
  socket_.async_read_some(
      asio::buffer(buffer_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
        if (self->closed_) return;
        if (ec) {
          self->fail();
          return;
        }
        self->decoder_.feed(std::string_view(self->buffer_.data(), n),
                            [&](common::LineDecoder::Event event, std::string_view line) {
                              self->on_line(event, line);
                            });
        if (!self->closed_) self->read_next();
      });
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
