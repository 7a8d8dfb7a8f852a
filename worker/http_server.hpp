// HttpServer: a minimal HTTP/1.1 server on a worker's io_context, accepting on every inherited
// listener (TCP or Unix stream), with keep-alive, pipelining and a graceful drain. It owns its
// acceptors and connections only; routing belongs to the handler, parsing to common/http.
#pragma once

#include <asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/http.hpp"
#include "worker/worker.hpp"

namespace forkd::worker {

// Answers one request. Call it exactly once, now or later (e.g. from a timer); later calls
// are ignored. Dropping it unanswered closes the connection.
using HttpResponder = std::function<void(common::HttpResponse)>;
using HttpHandler = std::function<void(const common::HttpRequest&, HttpResponder)>;

struct HttpServerOptions {
  common::HttpLimits limits;
  // Added to every response, those the server writes itself (400, 413, ...) included.
  std::vector<common::HttpHeader> extra_headers;
  // A connection waiting for (the rest of) a request is closed after this long.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
  // While draining, a connection with a partly received request, or a fresh one that has not
  // sent its first request yet, gets this long to finish it.
  std::chrono::milliseconds drain_read_timeout = std::chrono::seconds(2);
  // A keep-alive connection idle when the drain begins may have its next request on the way
  // (load generators and proxies send it at once): it is answered if it comes this soon.
  std::chrono::milliseconds drain_idle_grace = std::chrono::milliseconds(250);
  // After a closing response: how long unread client bytes are drained before the close, so
  // the kernel does not answer them with a reset that destroys the response in flight.
  std::chrono::milliseconds linger_timeout = std::chrono::seconds(1);
  // accept() failing for lack of fds or memory is retried after this pause, not in a spin.
  std::chrono::milliseconds accept_backoff = std::chrono::milliseconds(100);
  // Workers sharing the listeners (Context::workers): with 2 or more, a worker holding clearly
  // more than its share of a TCP listener's connections lets the others accept first.
  unsigned workers = 0;
  // Told the connections accepted so far and those open now, after every accept and close
  // (Worker::count_connections reports them to the master).
  std::function<void(std::uint64_t accepted, std::uint64_t open)> on_connections;
};

class HttpServer {
 public:
  // Starts accepting on every listener. Takes ownership of the listeners' fds (one server per
  // listener) and sets them non-blocking: stop() closes them, so this process no longer holds
  // the socket and a listener the master has dropped refuses connections at once instead of
  // queueing them behind a draining worker. Throws std::system_error, or std::runtime_error
  // for a listener that is not a listening stream socket (then no fd has been taken).
  HttpServer(asio::io_context& io, std::span<const Listener> listeners, HttpHandler handler,
             HttpServerOptions options = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  HttpServer(HttpServer&&) = delete;
  HttpServer& operator=(HttpServer&&) = delete;
  // Closes acceptors and every connection at once (no drain).
  ~HttpServer();  // NOLINT(bugprone-exception-escape): asio's destructors do not throw

  // Graceful drain: accepts what is already queued on the listeners, closes the acceptors,
  // closes idle connections now, lets requests in flight (and those queued) finish, answered
  // with Connection: close, and then closes their connections. Once drained the server holds
  // no pending operation, so the loop can run out of work.
  void stop();

  // Takes the connections queued on another worker's listening socket (one the master lent,
  // Worker::on_queued_connections): those there now, and again a moment later for the ones whose
  // handshake was still under way; then closes it. A socket that is not a listening stream
  // socket in non-blocking mode (an accept could block the loop) is closed untouched.
  void take_queued_from(common::UniqueFd listener);

  [[nodiscard]] std::size_t connection_count() const noexcept;

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace forkd::worker
