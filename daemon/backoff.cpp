#include "daemon/backoff.hpp"

#include <algorithm>

namespace forkd::daemon {

RestartDecision Backoff::on_unexpected_exit(Duration uptime) {
  if (uptime >= config_.min_uptime) {
    failures_ = 0;
    return {RestartDecision::Kind::respawn, Duration{0}, 0, false};
  }
  return record_crash();
}

RestartDecision Backoff::on_failed_start() {
  return record_crash();
}

RestartDecision Backoff::record_crash() {
  ++failures_;
  if (config_.max_failures != 0 && failures_ >= config_.max_failures) {
    return {RestartDecision::Kind::give_up, Duration{0}, failures_, true};
  }
  // delay * 2^(failures-1), saturating at max_delay without overflowing.
  Duration delay = config_.delay;
  for (unsigned i = 1; i < failures_ && delay < config_.max_delay; ++i) delay *= 2;
  delay = std::min(delay, std::max(config_.max_delay, config_.delay));
  return {RestartDecision::Kind::respawn, delay, failures_, true};
}

}  // namespace forkd::daemon
