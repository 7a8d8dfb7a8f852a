// How a child process ended, in the words of log lines, status replies and error messages:
// the one wording shared by the master (which reaps with waitpid(-1)) and the process library
// (which reaps one pid at a time with waitid). Pure: decodes statuses, never waits or signals.
#pragma once

#include <signal.h>

#include <optional>
#include <string>

namespace forkd::common {

struct ExitStatus {
  std::optional<int> code;  // exited normally with this code
  // Or was killed by this signal. Neither: the status is unknown (the process library sees
  // that when someone else reaped its child).
  std::optional<int> signal;
  bool core_dumped = false;

  // From waitpid()'s status word.
  [[nodiscard]] static ExitStatus from_wait_status(int status) noexcept;
  // From waitid()'s siginfo (CLD_EXITED, CLD_KILLED, CLD_DUMPED).
  [[nodiscard]] static ExitStatus from_siginfo(const siginfo_t& info) noexcept;

  // "exited with code 3", "killed by signal 9 (SIGKILL)",
  // "killed by signal 11 (SIGSEGV), core dumped", "exit status unknown"
  [[nodiscard]] std::string describe() const;
  // Exited with code 0.
  [[nodiscard]] bool success() const noexcept { return code && *code == 0; }
};

// "SIGKILL" for 9, "signal 64" when it has no name.
[[nodiscard]] std::string signal_name(int signo);

}  // namespace forkd::common
