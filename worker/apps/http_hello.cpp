#include "worker/apps/http_hello.hpp"

#include <unistd.h>

#include <algorithm>
#include <asio/steady_timer.hpp>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>

namespace forkd::worker::apps {

namespace {

__extension__ using Uint128 = unsigned __int128;

constexpr std::uint64_t kMaxSleepMs = 60000;

std::optional<std::uint64_t> parse_decimal(const std::string& text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

std::string to_decimal(Uint128 value) {
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  } while (value != 0);
  std::reverse(digits.begin(), digits.end());
  return digits;
}

common::HttpResponse text(int status, std::string body) {
  common::HttpResponse r;
  r.status = status;
  r.set_header("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}

class HelloHandler {
 public:
  HelloHandler(asio::io_context& io, unsigned worker_id, pid_t pid)
      : io_(&io), worker_id_(worker_id), pid_(pid) {}

  void operator()(const common::HttpRequest& request, const HttpResponder& respond) const {
    if (request.method != "GET" && request.method != "HEAD") {
      common::HttpResponse r = text(405, "method not allowed\n");
      r.set_header("Allow", "GET, HEAD");
      respond(std::move(r));
    } else if (request.path == "/") {
      respond(text(200, "hello from worker " + std::to_string(worker_id_) + " (pid " +
                            std::to_string(pid_) + ")\n"));
    } else if (request.path == "/compute") {
      compute(request, respond);
    } else if (request.path == "/sleep") {
      sleep(request, respond);
    } else if (request.path == "/healthz") {
      respond(text(200, "ok"));
    } else {
      respond(text(404, "not found\n"));
    }
  }

 private:
  void compute(const common::HttpRequest& request, const HttpResponder& respond) const {
    const auto raw = common::query_param(request.query, "n");
    const auto n = raw ? parse_decimal(*raw) : std::nullopt;
    if (!n) {
      respond(text(400, "bad request: /compute needs n=0..18446744073709551615\n"));
      return;
    }
    common::HttpResponse r;
    r.set_header("Content-Type", "application/json");
    r.body = "{\"n\":" + std::to_string(*n) + ",\"sum\":" + sum_below(*n) +
             ",\"worker\":" + std::to_string(worker_id_) + ",\"pid\":" + std::to_string(pid_) +
             "}\n";
    respond(std::move(r));
  }

  void sleep(const common::HttpRequest& request, const HttpResponder& respond) const {
    const auto raw = common::query_param(request.query, "ms");
    const auto ms = raw ? parse_decimal(*raw) : std::nullopt;
    if (!ms || *ms > kMaxSleepMs) {
      respond(text(400, "bad request: /sleep needs ms=0..60000\n"));
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(*io_, std::chrono::milliseconds(*ms));
    timer->async_wait([timer, respond, ms = *ms](std::error_code ec) {
      // Cancelled only when the loop is torn down; the responder then closes the connection.
      if (ec) return;
      respond(text(200, "slept " + std::to_string(ms) + " ms\n"));
    });
  }

  asio::io_context* io_;
  unsigned worker_id_;
  pid_t pid_;
};

}  // namespace

std::string sum_below(std::uint64_t n) {
  Uint128 sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    // An empty asm that "modifies" i: the compiler can no longer see an arithmetic series and
    // replace the loop with n*(n-1)/2, so a large n really keeps the worker busy.
    asm volatile("" : "+r"(i));
    sum += i;
  }
  return to_decimal(sum);
}

HttpHandler make_hello_handler(asio::io_context& io, unsigned worker_id, pid_t pid) {
  return HelloHandler(io, worker_id, pid);
}

HttpServerOptions hello_server_options(unsigned worker_id, pid_t pid, unsigned workers) {
  HttpServerOptions options;
  options.workers = workers;
  options.extra_headers = {{"X-Worker-Id", std::to_string(worker_id)},
                           {"X-Worker-Pid", std::to_string(pid)}};
  return options;
}

nlohmann::json echo_reply(const nlohmann::json& message, unsigned worker_id, pid_t pid) {
  return {{"echo", message}, {"worker", worker_id}, {"pid", pid}};
}

HelloServer::HelloServer(Worker& worker)
    : server_(worker.io(), worker.context().listeners,
              make_hello_handler(worker.io(), worker.context().id, ::getpid()), [&worker] {
                HttpServerOptions options =
                    hello_server_options(worker.context().id, ::getpid(), worker.context().workers);
                options.on_connections = [&worker](std::uint64_t accepted, std::uint64_t open) {
                  worker.count_connections(accepted, open);
                };
                return options;
              }()) {
  worker.on_stop([this] { server_.stop(); });
  worker.on_queued_connections(
      [this](common::UniqueFd listener) { server_.take_queued_from(std::move(listener)); });
}

void echo_messages(Worker& worker) {
  worker.on_message(
      [&worker, id = worker.context().id, pid = ::getpid()](const nlohmann::json& message) {
        worker.send(echo_reply(message, id, pid));
      });
}

int http_hello_main() {
  Worker worker(Context::from_environment());
  HelloServer server(worker);
  echo_messages(worker);
  worker.ready();
  return worker.run();
}

}  // namespace forkd::worker::apps
