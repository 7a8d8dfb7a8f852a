// Helpers of the process library's tests: drive an io_context until something happens, and
// tell whether a child is really gone.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <functional>

namespace forkd::test {

using namespace std::chrono_literals;

// How long any single wait in these tests may take: a generous bound, not a target.
inline constexpr auto kPatience = 10s;

// Runs the loop until `done` holds or kPatience passes; never a fixed sleep.
inline bool run_until(asio::io_context& io, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  io.restart();
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.run_one_for(50ms);
    io.restart();
  }
  return true;
}

// Not our child any more (reaped: not even a zombie), and no process has that pid. WNOWAIT:
// looking must not reap it in the library's place.
inline bool pid_is_gone(pid_t pid) {
  siginfo_t info{};
  const bool not_a_child =
      ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) < 0 &&
      errno == ECHILD;
  return not_a_child && ::kill(pid, 0) < 0 && errno == ESRCH;
}

}  // namespace forkd::test
