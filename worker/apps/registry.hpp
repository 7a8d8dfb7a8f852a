// The built-in apps, by name, and the one entry the master calls in a forked child to run
// one. Knows nothing of the master: it gets a process whose fds and environment are already
// those of a worker, and it never returns into the caller.
#pragma once

#include <span>
#include <string_view>

namespace forkd::worker {

struct AppEntry {
  std::string_view name;
  int (*main)();
};

[[nodiscard]] std::span<const AppEntry> builtin_apps() noexcept;
// nullptr when there is no built-in app of that name.
[[nodiscard]] const AppEntry* find_builtin_app(std::string_view name) noexcept;

// Runs app.main() and ends the process with its result through _exit(). An exception out of
// main is printed on stderr and exits 1. Stdio buffers inherited from the parent are dropped
// first (they hold the parent's output, not ours) and our own are flushed before _exit.
[[noreturn]] void run_builtin_app(const AppEntry& app) noexcept;

}  // namespace forkd::worker
