// MetricsServer: the `metrics.listen` endpoint, a tiny HTTP/1.1 server on the master's
// io_context serving GET/HEAD /metrics (Prometheus text), /healthz (liveness: answered at all
// means the master loop runs) and /readyz (readiness). It owns the TCP acceptor and its
// connections, one request each (Connection: close), bounded in size, time and number. It never
// blocks the loop nor lets an exception out of a handler, and never answers a probe with an
// overload status; what the numbers are is the master's business (snapshot and ready callbacks).
#pragma once

#include <asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/fd.hpp"
#include "daemon/metrics.hpp"

namespace forkd::daemon {

struct MetricsServerOptions {
  // Time a client has from connecting to the end of its request head: one that sends nothing,
  // or dribbles, is closed after it.
  std::chrono::milliseconds head_timeout{std::chrono::seconds(5)};
  // Time a client has to take the whole response.
  std::chrono::milliseconds response_timeout{std::chrono::seconds(10)};
  // At this many connections, a new one closes the oldest: a probe sends its request at once,
  // so clients that hold connections open cannot make it fail. (Each costs the master an fd.)
  std::size_t max_connections = 256;
  // A request head (request line and headers) longer than this gets 431 and is closed.
  std::size_t max_request_head = std::size_t{8} * 1024;
};

class MetricsServerState;

class MetricsServer {
 public:
  using SnapshotFn = std::function<MetricsSnapshot()>;
  using ReadyFn = std::function<bool()>;

  // Binds `address` (TCP v4/v6; port 0 picks a free port, see bound_address) and starts
  // accepting on `io`. Throws std::runtime_error naming the address and the errno text, e.g.
  // "cannot bind metrics address 127.0.0.1:9101: Address already in use".
  MetricsServer(asio::io_context& io, const common::ListenConfig& address, SnapshotFn snapshot,
                ReadyFn ready, MetricsServerOptions options = {});
  // Adopts a bound and listening TCP socket (a hot upgrade hands it over). Throws
  // std::runtime_error when it is not one.
  MetricsServer(asio::io_context& io, common::UniqueFd listening, SnapshotFn snapshot,
                ReadyFn ready, MetricsServerOptions options = {});
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  MetricsServer(MetricsServer&&) = delete;
  MetricsServer& operator=(MetricsServer&&) = delete;
  ~MetricsServer();

  // "127.0.0.1:9101", "[::1]:9101": the address actually bound, with the real port.
  [[nodiscard]] std::string bound_address() const;
  // The listening socket (-1 after close), e.g. to hand over in a hot upgrade.
  [[nodiscard]] int native_handle() const;
  // Connections open now (being read, answered or drained).
  [[nodiscard]] std::size_t connection_count() const;
  // Stops accepting and closes every connection; the callbacks are not called afterwards.
  // Idempotent. Must run on the io_context's thread (or while it is not running).
  void close();

 private:
  std::unique_ptr<MetricsServerState> state_;
};

}  // namespace forkd::daemon
