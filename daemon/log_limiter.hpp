// How many log lines one source (a worker, a notify socket, a control client's uid) may cause:
// a token bucket that holds `burst` lines and refills at `per_second`. What it refuses is
// counted, and the count is handed back once (at most once per kSummaryEvery, with a line that
// passes, or by take_suppressed() when the source ends) for a "N lines suppressed" line.
// Pure: no clock, no logger; the caller feeds the time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace forkd::daemon {

struct LogRate {
  std::uint32_t burst = 10;      // lines at once, from a full bucket
  std::uint32_t per_second = 1;  // lines per second once it is empty
};

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // Summaries of a source that keeps flooding: one per this interval, not one per line passed.
  static constexpr std::chrono::seconds kSummaryEvery{1};

  struct Admission {
    bool log = false;              // write this line
    std::uint64_t suppressed = 0;  // write "N lines suppressed" before it (when log and N > 0)
  };

  // Starts full. A zero rate is taken as 1.
  explicit LogLimiter(LogRate rate) noexcept;

  // One line that costs `cost` tokens (at least 1, at most `burst`: a line always fits a full
  // bucket).
  [[nodiscard]] Admission admit(TimePoint now, std::uint32_t cost = 1) noexcept;
  // The count not yet reported, now reset: what a source that ends says last.
  [[nodiscard]] std::uint64_t take_suppressed() noexcept;
  // Full again and nothing to report: forgetting this limiter changes nothing.
  [[nodiscard]] bool idle(TimePoint now) const noexcept;

 private:
  using Credit = std::chrono::nanoseconds;  // one token = token_ of credit: exact, no rounding
  [[nodiscard]] Credit credit_at(TimePoint now) const noexcept;

  Credit token_;
  Credit capacity_;
  Credit credit_;
  std::optional<TimePoint> last_;  // when credit_ was computed
  std::optional<TimePoint> last_summary_;
  std::uint64_t suppressed_ = 0;
};

}  // namespace forkd::daemon
