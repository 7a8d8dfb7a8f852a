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
    : socket_(io), decoder_(max_message), max_queue_(max_queue), callbacks_(std::move(callbacks)) {
  socket_.assign(asio::local::stream_protocol(), fd.release());
  socket_.non_blocking(true);
}

bool WorkerChannel::send(const nlohmann::json& message) {
  if (closed_) return false;
  std::string line = message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  if (queued_bytes_ + line.size() > max_queue_) return false;
  queued_bytes_ += line.size();
  queue_.push_back(std::move(line));
  write_next();
  return true;
}

void WorkerChannel::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  socket_.close(ignored);
  queue_.clear();
  queued_bytes_ = 0;
}

void WorkerChannel::read_next() {
  socket_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](std::error_code ec,
                                                                             std::size_t n) {
    if (self->closed_) return;
    if (ec) {
      self->close();
      if (self->callbacks_.closed) self->callbacks_.closed();
      return;
    }
    self->decoder_.feed(std::string_view(self->buffer_.data(), n),
                        [&](common::LineDecoder::Event event, std::string_view line) {
                          if (self->closed_) return;
                          if (event == common::LineDecoder::Event::oversized) {
                            self->callbacks_.protocol_error("message over ipc.max_message dropped");
                            return;
                          }
                          if (line.empty()) return;
                          if (!common::nesting_within(line, common::kMaxJsonDepth)) {
                            self->callbacks_.protocol_error("message nested too deep dropped");
                            return;
                          }
                          auto parsed = nlohmann::json::parse(line, nullptr, false);
                          if (parsed.is_discarded()) {
                            self->callbacks_.protocol_error("malformed JSON line dropped");
                            return;
                          }
                          self->callbacks_.message(std::move(parsed));
                        });
    if (!self->closed_) self->read_next();
  });
}

void WorkerChannel::write_next() {
  if (writing_ || queue_.empty() || closed_) return;
  writing_ = true;
  asio::async_write(socket_, asio::buffer(queue_.front()),
                    [self = shared_from_this()](std::error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) {
                        self->close();
                        if (self->callbacks_.closed) self->callbacks_.closed();
                        return;
                      }
                      self->queued_bytes_ -= self->queue_.front().size();
                      self->queue_.pop_front();
                      self->write_next();
                    });
}

}  // namespace forkd::daemon
