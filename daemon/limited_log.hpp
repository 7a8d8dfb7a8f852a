// The log lines one source may cause (a worker's output or IPC, datagrams on its NOTIFY_SOCKET,
// refused control clients), through a LogLimiter: what passes is logged, what does not is
// counted and said in one "N lines suppressed" line, with a later line that passes or by
// flush() when the source ends. What is logged is never blocked on: a flood costs a counter.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "daemon/log_limiter.hpp"

namespace forkd::daemon {

class LimitedLog {
 public:
  // `source` names it in the summary line, e.g. "worker 0 (pid 4242) output".
  LimitedLog(std::shared_ptr<spdlog::logger> logger, std::string source, LogRate rate);

  template <typename... Args>
  void log(spdlog::level::level_enum level, spdlog::format_string_t<Args...> format,
           Args&&... args) {
    if (admit(level)) logger_->log(level, format, std::forward<Args>(args)...);
  }
  // Whether a line of `level` that counts as `cost` lines (a long one: the limit bounds bytes
  // too) may be written now, to logger(); when it may, the count owed is said first. For a
  // caller that builds its line only once it knows it is wanted.
  [[nodiscard]] bool admit(spdlog::level::level_enum level, std::uint32_t cost = 1);
  [[nodiscard]] spdlog::logger& logger() const noexcept { return *logger_; }
  // Says what was suppressed and not said yet: the last line of a source that ends.
  void flush();
  [[nodiscard]] bool idle(LogLimiter::TimePoint now) const noexcept { return limiter_.idle(now); }

 private:
  void say_suppressed(std::uint64_t count);

  std::shared_ptr<spdlog::logger> logger_;
  std::string source_;
  LogRate rate_;
  LogLimiter limiter_;
};

// One LimitedLog per key (a uid), "<prefix><key>" in its summary. At most kMaxSources are kept:
// idle ones are forgotten to make room, and keys beyond that share one log named "<prefix>others".
class LimitedLogs {
 public:
  static constexpr std::size_t kMaxSources = 64;

  LimitedLogs(std::shared_ptr<spdlog::logger> logger, std::string prefix, LogRate rate);
  [[nodiscard]] LimitedLog& of(std::uint64_t key);

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::string prefix_;
  LogRate rate_;
  std::map<std::uint64_t, LimitedLog> sources_;
  LimitedLog others_;
};

}  // namespace forkd::daemon
