// IPC bench between a master and a worker process over forkd's real channel classes: the
// master's end (daemon::WorkerChannel) and the worker's end (worker::Channel) on a socketpair,
// each process with its own io_context, exactly as forkd wires them. Prints "<messages> <s>".
// Usage: ipc_bench pingpong SECONDS | ipc_bench oneway COUNT
#include <sys/wait.h>
#include <unistd.h>

#include <sys/socket.h>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "daemon/worker_channel.hpp"
#include "worker/channel.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// forkd's defaults: ipc.max_message 1MiB, the master queues up to 4x that per worker.
constexpr std::size_t kMaxMessage = std::size_t{1024} * 1024;
constexpr std::size_t kMasterQueue = 4 * kMaxMessage;
// The worker sends in batches and yields to its loop in between, as a real worker would;
// past this many unsent bytes it waits for the socket to drain instead of growing.
constexpr long kBatch = 1024;
constexpr std::size_t kWorkerBacklog = std::size_t{4} * 1024 * 1024;

// The worker side: echo every message (pingpong), or on {"go": N} send N messages {"n": i}.
class Worker {
 public:
  explicit Worker(forkd::common::UniqueFd fd) : channel_(io_, std::move(fd), kMaxMessage) {}

  int run() {
    channel_.start_reading([this](const nlohmann::json& message) { on_message(message); },
                           [this] { channel_.stop_reading(); });
    io_.run();
    return 0;
  }

 private:
  void on_message(const nlohmann::json& message) {
    if (message.is_object() && message.contains("go")) {
      to_send_ = message["go"].get<long>();
      send_batch();
      return;
    }
    channel_.post(message);
  }

  void send_batch() {
    if (channel_.queued_bytes() < kWorkerBacklog) {
      for (long i = 0; i < kBatch && sent_ < to_send_; ++i) channel_.post({{"n", sent_++}});
    }
    if (sent_ < to_send_) asio::post(io_, [this] { send_batch(); });
  }

  asio::io_context io_;
  forkd::worker::Channel channel_;
  long to_send_ = 0;
  long sent_ = 0;
};

struct Outcome {
  long messages = 0;
  double seconds = 0;
  bool ok = true;
};

Outcome run_master_pingpong(forkd::common::UniqueFd fd, double seconds) {
  asio::io_context io;
  Outcome outcome;
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::shared_ptr<forkd::daemon::WorkerChannel> channel;
  const auto finish = [&] {
    outcome.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    channel->close();
  };
  channel = forkd::daemon::WorkerChannel::open(
      io, std::move(fd), kMaxMessage, kMasterQueue,
      {.message =
           [&](nlohmann::json message) {
             const auto n = message.find("n");
             if (n == message.end() || n->get<long>() != outcome.messages) {
               outcome.ok = false;
               finish();
               return;
             }
             ++outcome.messages;
             if (Clock::now() >= deadline) {
               finish();
               return;
             }
             if (!channel->send({{"n", outcome.messages}})) outcome.ok = false;
           },
       .protocol_error = [&](const std::string&) { outcome.ok = false; },
       .closed = [&] { outcome.ok = false; }});
  if (!channel->send({{"n", 0}})) outcome.ok = false;
  io.run();
  return outcome;
}

Outcome run_master_oneway(forkd::common::UniqueFd fd, long count) {
  asio::io_context io;
  Outcome outcome;
  const auto start = Clock::now();
  std::shared_ptr<forkd::daemon::WorkerChannel> channel;
  channel = forkd::daemon::WorkerChannel::open(
      io, std::move(fd), kMaxMessage, kMasterQueue,
      {.message =
           [&](nlohmann::json message) {
             const auto n = message.find("n");
             if (n == message.end() || n->get<long>() != outcome.messages) outcome.ok = false;
             if (++outcome.messages == count) {
               outcome.seconds = std::chrono::duration<double>(Clock::now() - start).count();
               channel->close();
             }
           },
       .protocol_error = [&](const std::string&) { outcome.ok = false; },
       .closed = [&] { outcome.ok = false; }});
  if (!channel->send({{"go", count}})) outcome.ok = false;
  io.run();
  return outcome;
}

int usage() {
  (void)std::fputs("usage: ipc_bench pingpong SECONDS | ipc_bench oneway COUNT\n", stderr);
  return 64;
}

int run(int argc, char** argv) {
  if (argc != 3) return usage();
  const std::string_view mode = argv[1];
  if (mode != "pingpong" && mode != "oneway") return usage();
  const double amount = std::strtod(argv[2], nullptr);
  if (amount <= 0) return usage();
  // A peer gone mid-write must show up as an error code, not kill the process.
  (void)std::signal(SIGPIPE, SIG_IGN);

  auto [master_end, worker_end] = forkd::common::make_socketpair(SOCK_STREAM);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    master_end.reset();
    int code = 1;
    try {
      Worker worker(std::move(worker_end));
      code = worker.run();
    } catch (const std::exception& e) {
      (void)std::fprintf(stderr, "ipc_bench worker: %s\n", e.what());
    }
    (void)std::fflush(stderr);
    ::_exit(code);
  }
  worker_end.reset();
  Outcome outcome = mode == "pingpong"
                        ? run_master_pingpong(std::move(master_end), amount)
                        : run_master_oneway(std::move(master_end), static_cast<long>(amount));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!outcome.ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    (void)std::fprintf(stderr, "ipc_bench %s: run failed after %ld messages\n", argv[1],
                       outcome.messages);
    return 1;
  }
  std::printf("%ld %.6f\n", outcome.messages, outcome.seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    (void)std::fprintf(stderr, "ipc_bench: %s\n", e.what());
    return 1;
  }
}
