// http-hello, the built-in demo app (SPEC "Built-in app http-hello"): its routes, its IPC echo
// and its main. The pieces are public so that test programs serve exactly the same app; it
// uses only the worker library's public API, like any program would.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "worker/http_server.hpp"
#include "worker/worker.hpp"

namespace forkd::worker::apps {

// The routes: GET / | /compute?n=N | /sleep?ms=M | /healthz, 404 otherwise, 405 for methods
// other than GET and HEAD. /sleep answers from a timer on `io`, leaving the loop free.
[[nodiscard]] HttpHandler make_hello_handler(asio::io_context& io, unsigned worker_id, pid_t pid);

// X-Worker-Id and X-Worker-Pid on every response, the server's own 400s included.
[[nodiscard]] HttpServerOptions hello_server_options(unsigned worker_id, pid_t pid,
                                                     unsigned workers = 0);

// {"echo": message, "worker": worker_id, "pid": pid}
[[nodiscard]] nlohmann::json echo_reply(const nlohmann::json& message, unsigned worker_id,
                                        pid_t pid);

// The sum 0 + 1 + ... + (n-1) in decimal, computed by a real loop (one iteration per term, on
// purpose: /compute is the CPU-bound job that keeps a worker busy). The sum is accumulated in
// 128 bits, so every n up to 2^64-1 gives the exact result; nothing is capped.
[[nodiscard]] std::string sum_below(std::uint64_t n);

// Serves http-hello on every listener of `worker` and drains when the worker stops.
class HelloServer {
 public:
  explicit HelloServer(Worker& worker);
  HelloServer(const HelloServer&) = delete;
  HelloServer& operator=(const HelloServer&) = delete;
  HelloServer(HelloServer&&) = delete;
  HelloServer& operator=(HelloServer&&) = delete;
  ~HelloServer() = default;

 private:
  HttpServer server_;
};

// Answers every application message the worker receives with echo_reply.
void echo_messages(Worker& worker);

// The app's entry: worker from the environment, serve, echo, ready, run.
int http_hello_main();

}  // namespace forkd::worker::apps
