#include "process/ipc.hpp"

#include <array>
#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>
#include <string_view>
#include <utility>

#include "common/json_lines.hpp"
#include "common/ndjson.hpp"

namespace forkd::process {

using common::kMaxJsonDepth;
using common::LineDecoder;
using common::LineQueue;
using common::parse_json_line;
using common::ParsedLine;
using common::to_json_line;
using common::UniqueFd;

namespace {

// Node routes these to 'internalMessage' instead of 'message'.
bool is_node_internal(const nlohmann::json& message) {
  if (!message.is_object()) return false;
  const auto cmd = message.find("cmd");
  if (cmd == message.end() || !cmd->is_string()) return false;
  const auto& name = cmd->get_ref<const std::string&>();
  return name.size() > 5 && name.compare(0, 5, "NODE_") == 0;
}

}  // namespace

struct IpcChannel::State : std::enable_shared_from_this<State> {
  State(asio::io_context& io, UniqueFd fd, std::size_t max)
      : socket(io), decoder(max), max_message(max), queue(max * kQueueFactor) {
    // The socket type (not a plain descriptor) writes with MSG_NOSIGNAL: a child that went
    // away gives EPIPE, never SIGPIPE.
    socket.assign(asio::local::stream_protocol(), fd.get());
    [[maybe_unused]] const int released = fd.release();
  }

  void start_reading() {
    if (reading || closed || closing) return;
    reading = true;
    read_next();
  }

  void read_next() {
    socket.async_read_some(asio::buffer(buffer),
                           [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                             self->on_read(ec, n);
                           });
  }

  void on_read(const std::error_code& ec, std::size_t n) {
    if (closed || !reading) return;
    if (n > 0) {
      decoder.feed(
          std::string_view(buffer.data(), n),
          [this](LineDecoder::Event event, std::string_view line) { on_line(event, line); });
    }
    if (closed || !reading) return;
    if (ec) {
      close_now(true);
      return;
    }
    read_next();
  }

  void on_line(LineDecoder::Event event, std::string_view line) const {
    if (closed || !reading) return;
    if (event == LineDecoder::Event::oversized) {
      report("ipc: dropped a message longer than " + std::to_string(max_message) + " bytes");
      return;
    }
    auto parsed = parse_json_line(line);
    switch (parsed.status) {
      case ParsedLine::Status::value:
        if (is_node_internal(parsed.value)) return;
        // A copy: the handler may destroy the channel, and with it the stored handler.
        if (auto handler = on_message) handler(parsed.value);
        return;
      case ParsedLine::Status::too_deep:
        report("ipc: dropped a message nested deeper than " + std::to_string(kMaxJsonDepth) +
               " levels");
        return;
      case ParsedLine::Status::malformed:
        report("ipc: dropped a line that is not JSON");
        return;
      case ParsedLine::Status::blank:
        return;
    }
  }

  void report(const std::string& what) const {
    if (auto handler = on_error) handler(what);
  }

  bool send(const nlohmann::json& message) {
    if (closed || closing) return false;
    const std::string line = to_json_line(message);
    if (line.size() - 1 > max_message || !queue.push(line)) return false;
    write_next();
    return true;
  }

  void write_next() {
    if (!queue.start_batch()) return;
    asio::async_write(socket, asio::buffer(queue.batch()),
                      [self = shared_from_this()](const std::error_code& ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(const std::error_code& ec) {
    queue.batch_written();
    if (closed) return;
    if (ec) {
      close_now(true);
      return;
    }
    write_next();
    if (closing && !queue.writing()) close_now(true);
  }

  void disconnect() {
    if (closed || closing) return;
    closing = true;
    reading = false;
    if (!queue.writing()) close_now(true);
  }

  void close_now(bool notify) {
    if (closed) return;
    closed = true;
    reading = false;
    std::error_code ignored;
    socket.close(ignored);
    queue.clear();
    auto handler = std::exchange(on_disconnect, nullptr);
    // Handlers may hold whoever owns the channel: dropping them breaks that cycle.
    on_message = nullptr;
    on_error = nullptr;
    if (notify && handler) handler();
  }

  asio::local::stream_protocol::socket socket;
  LineDecoder decoder;
  std::size_t max_message;
  std::array<char, std::size_t{64} * 1024> buffer{};
  LineQueue queue;
  bool reading = false;
  bool closing = false;
  bool closed = false;
  MessageHandler on_message;
  DisconnectHandler on_disconnect;
  ErrorHandler on_error;
};

IpcChannel::IpcChannel(asio::io_context& io, UniqueFd socket, std::size_t max_message)
    : state_(std::make_shared<State>(io, std::move(socket), max_message)) {}

IpcChannel::~IpcChannel() {
  if (state_) state_->close_now(false);
}

void IpcChannel::on_message(MessageHandler handler) {
  state_->on_message = std::move(handler);
  state_->start_reading();
}

void IpcChannel::on_disconnect(DisconnectHandler handler) {
  if (state_->closed) return;
  state_->on_disconnect = std::move(handler);
  state_->start_reading();
}

void IpcChannel::on_error(ErrorHandler handler) {
  state_->on_error = std::move(handler);
}

bool IpcChannel::send(const nlohmann::json& message) {
  return state_->send(message);
}

void IpcChannel::disconnect() {
  state_->disconnect();
}

bool IpcChannel::connected() const noexcept {
  return state_ && !state_->closed && !state_->closing;
}

std::size_t IpcChannel::queued_bytes() const noexcept {
  return state_ ? state_->queue.bytes() : 0;
}

}  // namespace forkd::process
