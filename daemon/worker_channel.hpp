// The master's end of one worker's IPC socket: NDJSON in, NDJSON out.
// Reads are size-capped before parsing and the outgoing queue is bounded, so a worker that
// floods or never reads costs the master a fixed amount of memory and never blocks it; and
// memory is held only while data flows, so an idle worker costs the master no buffer at all.
#pragma once

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fd.hpp"
#include "common/json_lines.hpp"
#include "common/ndjson.hpp"

namespace forkd::daemon {

class WorkerChannel : public std::enable_shared_from_this<WorkerChannel> {
 public:
  struct Callbacks {
    std::function<void(nlohmann::json)> message;
    std::function<void(const std::string& problem)> protocol_error;  // logged by the owner
    std::function<void()> closed;                                    // EOF or error
  };

  // Handlers keep the channel alive through shared_from_this(); close() stops callbacks.
  static std::shared_ptr<WorkerChannel> open(asio::io_context& io, common::UniqueFd fd,
                                             std::size_t max_message, std::size_t max_queue,
                                             Callbacks callbacks);
  WorkerChannel(asio::io_context& io, common::UniqueFd fd, std::size_t max_message,
                std::size_t max_queue, Callbacks callbacks);

  // Queues one message; false when the queue is over its bound (the message is dropped).
  [[nodiscard]] bool send(const nlohmann::json& message);
  // Sends one message with a copy of `fd` attached (SCM_RIGHTS), now or not at all: false when
  // lines are still queued or in flight (the descriptor must arrive with this line, not with an
  // older one), or when the socket takes nothing now. What a partial write leaves is queued.
  [[nodiscard]] bool send_with_fd(const nlohmann::json& message, int fd);
  void close();
  [[nodiscard]] std::size_t queued_bytes() const noexcept { return queue_.bytes(); }
  // Bytes its buffers reserve (an unfinished incoming line, outgoing lines): a few empty
  // std::strings' worth once the traffic stopped.
  [[nodiscard]] std::size_t buffer_capacity() const noexcept {
    return decoder_.capacity() + queue_.capacity();
  }

  // The most one wake-up reads, into a buffer on the stack: the loop stays fair to the others.
  static constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

 private:
  void read_next();
  void read_available();
  void on_line(common::LineDecoder::Event event, std::string_view line) const;
  void write_next();
  void fail();

  asio::local::stream_protocol::socket socket_;
  common::LineDecoder decoder_;
  common::LineQueue queue_;
  Callbacks callbacks_;
  bool closed_ = false;
};

}  // namespace forkd::daemon
