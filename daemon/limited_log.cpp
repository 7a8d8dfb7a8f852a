#include "daemon/limited_log.hpp"

#include <iterator>
#include <string>

namespace forkd::daemon {

LimitedLog::LimitedLog(std::shared_ptr<spdlog::logger> logger, std::string source, LogRate rate)
    : logger_(std::move(logger)), source_(std::move(source)), rate_(rate), limiter_(rate) {}

bool LimitedLog::admit(spdlog::level::level_enum level, std::uint32_t cost) {
  if (!logger_->should_log(level)) return false;  // filtered out anyway: costs no token
  const LogLimiter::Admission admission = limiter_.admit(LogLimiter::Clock::now(), cost);
  if (admission.log && admission.suppressed > 0) say_suppressed(admission.suppressed);
  return admission.log;
}

void LimitedLog::flush() {
  if (const std::uint64_t count = limiter_.take_suppressed(); count > 0) say_suppressed(count);
}

void LimitedLog::say_suppressed(std::uint64_t count) {
  logger_->warn("{}: {} line{} suppressed (limit {} at once, then {}/s)", source_, count,
                count == 1 ? "" : "s", rate_.burst, rate_.per_second);
}

LimitedLogs::LimitedLogs(std::shared_ptr<spdlog::logger> logger, std::string prefix, LogRate rate)
    : logger_(std::move(logger)),
      prefix_(std::move(prefix)),
      rate_(rate),
      others_(logger_, prefix_ + "others", rate) {}

LimitedLog& LimitedLogs::of(std::uint64_t key) {
  if (const auto found = sources_.find(key); found != sources_.end()) return found->second;
  if (sources_.size() >= kMaxSources) {
    const auto now = LogLimiter::Clock::now();
    std::erase_if(sources_, [now](const auto& entry) { return entry.second.idle(now); });
    if (sources_.size() >= kMaxSources) return others_;
  }
  return sources_.try_emplace(key, logger_, prefix_ + std::to_string(key), rate_).first->second;
}

}  // namespace forkd::daemon
