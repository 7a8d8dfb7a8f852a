#include "common/exit_status.hpp"

#include <string.h>
#include <sys/wait.h>

namespace forkd::common {

ExitStatus ExitStatus::from_wait_status(int status) noexcept {
  ExitStatus out;
  if (WIFEXITED(status)) out.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
    out.core_dumped = WCOREDUMP(status);
  }
  return out;
}

ExitStatus ExitStatus::from_siginfo(const siginfo_t& info) noexcept {
  ExitStatus out;
  switch (info.si_code) {
    case CLD_EXITED:
      out.code = info.si_status;
      break;
    case CLD_DUMPED:
      out.signal = info.si_status;
      out.core_dumped = true;
      break;
    case CLD_KILLED:
      out.signal = info.si_status;
      break;
    default:
      break;
  }
  return out;
}

std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  if (abbrev == nullptr) return "signal " + std::to_string(signo);
  return std::string("SIG") + abbrev;
}

std::string ExitStatus::describe() const {
  if (code) return "exited with code " + std::to_string(*code);
  if (signal) {
    return "killed by signal " + std::to_string(*signal) + " (" + signal_name(*signal) + ")" +
           (core_dumped ? ", core dumped" : "");
  }
  return "exit status unknown";
}

}  // namespace forkd::common
