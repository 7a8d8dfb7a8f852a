// Channel: the worker's end of the IPC socket to the master, newline-delimited JSON both ways.
// Incoming lines are size-capped before parsing; outgoing lines are queued and written
// asynchronously, so a master that does not read can never block the worker's loop.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "common/json_lines.hpp"
#include "common/ndjson.hpp"

namespace forkd::worker {

class Channel {
 public:
  using MessageHandler = std::function<void(const nlohmann::json&)>;
  using EofHandler = std::function<void()>;

  // Takes ownership of `fd` (an AF_UNIX stream socket). Throws std::system_error.
  Channel(asio::io_context& io, common::UniqueFd fd, std::size_t max_message);
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  Channel(Channel&&) = delete;
  Channel& operator=(Channel&&) = delete;
  ~Channel() = default;

  // Starts delivering each incoming JSON value to `on_message`; `on_eof` runs once when the
  // master closes its end (or the socket fails). Malformed and oversized lines are reported on
  // stderr and skipped.
  void start_reading(MessageHandler on_message, EofHandler on_eof);
  // Stops reading only: queued outgoing lines are still written.
  void stop_reading();
  // Queues one JSON value as a line. A value longer than max_message, or one that would push
  // the queue past its cap, is dropped with a line on stderr (the master would refuse it).
  void post(const nlohmann::json& message);

  [[nodiscard]] std::size_t queued_bytes() const noexcept { return queue_.bytes(); }
  // The oldest descriptor the master passed with a line and nobody took yet; an empty UniqueFd
  // when there is none. A line that comes with a descriptor is read after it is kept, so its
  // handler finds it here.
  [[nodiscard]] common::UniqueFd take_passed();

 private:
  void read_next();
  void on_line(common::LineDecoder::Event event, std::string_view line);
  void write_next();

  std::size_t max_message_;
  // Reading and writing use separate descriptors of the same socket (the reader is a dup), so
  // that stopping the reader cannot cancel a write still in flight.
  asio::local::stream_protocol::socket writer_;
  asio::local::stream_protocol::socket reader_;
  common::LineDecoder decoder_;
  std::array<char, std::size_t{64} * 1024> read_buffer_{};
  MessageHandler on_message_;
  EofHandler on_eof_;
  bool reading_ = false;
  bool broken_ = false;
  common::LineQueue queue_;
  bool dropped_reported_ = false;
  static constexpr std::size_t kMaxPassedAtOnce = 4;
  std::vector<common::UniqueFd> passed_;  // oldest first
};

}  // namespace forkd::worker
