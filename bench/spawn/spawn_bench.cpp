// Process start cost through forkd's process library: spawn + wait of one program, one after
// another, for a fixed time. Prints "<runs> <seconds>". Built and run by bench/spawn/run.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "process/process.hpp"
#include "process/sync.hpp"

namespace {

using forkd::common::ExitStatus;
using forkd::process::ChildProcess;
using forkd::process::SpawnOptions;
using forkd::process::StdioSpec;
using Clock = std::chrono::steady_clock;

// Sequential spawn -> exit -> next spawn on one asio loop, as a Node program does it.
class AsyncLoop {
 public:
  AsyncLoop(asio::io_context& io, std::string program, SpawnOptions options, Clock::time_point end)
      : io_(io), program_(std::move(program)), options_(std::move(options)), end_(end) {}

  void next() {
    if (Clock::now() >= end_) return;
    child_.emplace(forkd::process::spawn(io_, program_, {}, options_));
    child_->async_wait([this](const ExitStatus& exit) {
      if (!exit.success()) std::abort();
      ++runs_;
      next();
    });
  }
  [[nodiscard]] long runs() const { return runs_; }

 private:
  asio::io_context& io_;
  std::string program_;
  SpawnOptions options_;
  Clock::time_point end_;
  std::optional<ChildProcess> child_;
  long runs_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: spawn_bench spawn-pipe|spawn-ignore|spawn-sync PROGRAM SECONDS\n");
    return 64;
  }
  const std::string_view mode = argv[1];
  const std::string program = argv[2];
  const auto duration = std::chrono::duration<double>(std::atof(argv[3]));
  // BENCH_BALLAST_MIB: memory this process holds, as a real parent would.
  const char* ballast_mib = std::getenv("BENCH_BALLAST_MIB");
  const std::vector<char> ballast(
      ballast_mib != nullptr ? static_cast<std::size_t>(std::atol(ballast_mib)) << 20 : 0, 1);
  asm volatile("" : : "r"(ballast.data()) : "memory");  // it must really be there
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(duration);
  long runs = 0;
  if (mode == "spawn-sync") {
    forkd::process::SpawnSyncOptions options;
    while (Clock::now() < end) {
      const auto result = forkd::process::spawn_sync(program, {}, options);
      if (!result.exit.success()) return 1;
      ++runs;
    }
  } else {
    SpawnOptions options;
    if (mode == "spawn-ignore") {
      options.stdio = {StdioSpec::ignore(), StdioSpec::ignore(), StdioSpec::ignore()};
    }
    asio::io_context io;
    AsyncLoop loop(io, program, options, end);
    loop.next();
    io.run();
    runs = loop.runs();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("%ld %.3f\n", runs, seconds);
  return 0;
}
