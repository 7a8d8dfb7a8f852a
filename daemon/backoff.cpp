#include "daemon/backoff.hpp"

#include <algorithm>

namespace forkd::daemon {

namespace {
constexpr auto kBurstWindow = std::chrono::seconds(1);
}

RestartDecision Backoff::on_failed_start() {
  ++failures_;
  if (config_.max_failures != 0 && failures_ >= config_.max_failures) {
    return {RestartDecision::Kind::give_up, Duration{0}, failures_, false};
  }
  // delay * 2^(failures-1), saturating at max_delay without overflowing.
  Duration delay = config_.delay;
  for (unsigned i = 1; i < failures_ && delay < config_.max_delay; ++i) delay *= 2;
  delay = std::min(delay, std::max(config_.max_delay, config_.delay));
  return {RestartDecision::Kind::respawn, delay, failures_, false};
}

RestartDecision Backoff::on_runtime_exit(PolicyClock::time_point now) {
  while (!recent_exits_.empty() && now - recent_exits_.front() >= kBurstWindow) {
    recent_exits_.pop_front();
  }
  recent_exits_.push_back(now);
  // Only the last burst+1 exits matter: the deque never grows past that.
  while (recent_exits_.size() > static_cast<std::size_t>(config_.burst) + 1) {
    recent_exits_.pop_front();
  }
  if (config_.burst != 0 && recent_exits_.size() > config_.burst) {
    return {RestartDecision::Kind::respawn, config_.delay, failures_, true};
  }
  return {RestartDecision::Kind::respawn, Duration{0}, failures_, false};
}

}  // namespace forkd::daemon
