// IpcChannel: our end of a Node-compatible IPC channel (the `ipc` stdio entry; in the child
// NODE_CHANNEL_FD names it, with NODE_CHANNEL_SERIALIZATION_MODE=json): one JSON value per
// '\n'-terminated line each way. Incoming lines are size-capped before parsing and the send
// queue is capped, so a child that floods or never reads cannot grow our memory without bound.
#pragma once

#include <asio/io_context.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fd.hpp"
#include "process/options.hpp"

namespace forkd::process {

class IpcChannel {
 public:
  using MessageHandler = std::function<void(const nlohmann::json&)>;
  using DisconnectHandler = std::function<void()>;
  using ErrorHandler = std::function<void(const std::string&)>;
  // The send queue holds at most this many max_message's worth of bytes.
  static constexpr std::size_t kQueueFactor = 8;

  // Takes ownership of `socket`, an AF_UNIX stream socket. Throws std::system_error.
  IpcChannel(asio::io_context& io, common::UniqueFd socket,
             std::size_t max_message = kDefaultMaxBuffer);
  IpcChannel(IpcChannel&&) noexcept = default;
  IpcChannel& operator=(IpcChannel&&) noexcept = default;
  IpcChannel(const IpcChannel&) = delete;
  IpcChannel& operator=(const IpcChannel&) = delete;
  // Closes at once: queued messages are dropped and no handler runs any more.
  ~IpcChannel();

  // Reading starts with the first of these two calls; until then the kernel holds what the
  // child sends. Node's internal messages ({"cmd": "NODE_..."}) are not delivered, as in Node.
  void on_message(MessageHandler handler);
  // Runs once, when the child closes its end, the socket fails, or disconnect() completes.
  void on_disconnect(DisconnectHandler handler);
  // Malformed and oversized lines are skipped and described here; the library never logs.
  void on_error(ErrorHandler handler);

  // Queues one value as a line; false when refused: disconnected, longer than max_message,
  // or the queue is full (a child that does not read).
  bool send(const nlohmann::json& message);
  // Stops reading; what is queued is still written, then our end closes (the child sees EOF).
  void disconnect();
  [[nodiscard]] bool connected() const noexcept;
  [[nodiscard]] std::size_t queued_bytes() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;  // kept alive by pending reads and writes too
};

}  // namespace forkd::process
