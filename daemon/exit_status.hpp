// A reaped child's wait status in the words of log lines and status replies. Pure.
#pragma once

#include <optional>
#include <string>

namespace forkd::daemon {

struct ExitStatus {
  std::optional<int> code;    // exited normally with this code
  std::optional<int> signal;  // or was killed by this signal
  bool core_dumped = false;

  [[nodiscard]] static ExitStatus from_wait_status(int status) noexcept;
  // "exited with code 3", "killed by signal 9 (SIGKILL)", "... (core dumped)"
  [[nodiscard]] std::string describe() const;
  [[nodiscard]] bool clean() const noexcept { return code && *code == 0; }
};

// "SIGKILL" for 9, "signal 64" when it has no name.
[[nodiscard]] std::string signal_name(int signo);

}  // namespace forkd::daemon
