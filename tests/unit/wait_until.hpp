// Polling for a condition another thread or process brings about, bounded by a deadline: the
// unit tests' way to synchronise on an event rather than on a fixed sleep.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace forkd::test {

// True as soon as `done` holds; false once `patience` has passed without it.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds patience,
                       std::chrono::milliseconds poll = std::chrono::milliseconds{2}) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

}  // namespace forkd::test
