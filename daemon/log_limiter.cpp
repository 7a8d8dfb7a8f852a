#include "daemon/log_limiter.hpp"

#include <algorithm>
#include <utility>

namespace forkd::daemon {

LogLimiter::LogLimiter(LogRate rate) noexcept
    : token_(Credit{std::chrono::seconds{1}} / std::max<std::uint32_t>(rate.per_second, 1)),
      capacity_(token_ * std::max<std::uint32_t>(rate.burst, 1)),
      credit_(capacity_) {}

LogLimiter::Credit LogLimiter::credit_at(TimePoint now) const noexcept {
  if (!last_ || now <= *last_) return credit_;
  const Credit earned = std::chrono::duration_cast<Credit>(now - *last_);
  // Compared before adding: a source quiet for years must not overflow.
  return earned >= capacity_ - credit_ ? capacity_ : credit_ + earned;
}

LogLimiter::Admission LogLimiter::admit(TimePoint now, std::uint32_t cost) noexcept {
  credit_ = credit_at(now);
  if (!last_ || now > *last_) last_ = now;
  const Credit price = std::clamp(token_ * std::max<std::uint32_t>(cost, 1), token_, capacity_);
  if (credit_ < price) {
    ++suppressed_;
    return {};
  }
  credit_ -= price;
  Admission admission{.log = true};
  if (suppressed_ > 0 && (!last_summary_ || now - *last_summary_ >= kSummaryEvery)) {
    admission.suppressed = take_suppressed();
    last_summary_ = now;
  }
  return admission;
}

std::uint64_t LogLimiter::take_suppressed() noexcept {
  return std::exchange(suppressed_, 0);
}

bool LogLimiter::idle(TimePoint now) const noexcept {
  return suppressed_ == 0 && credit_at(now) == capacity_;
}

}  // namespace forkd::daemon
