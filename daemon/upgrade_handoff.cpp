#include "daemon/upgrade_handoff.hpp"

namespace forkd::daemon {

void UpgradeHandoff::started(pid_t pid, TimePoint ready_deadline) noexcept {
  pid_ = pid;
  deadline_ = ready_deadline;
  quit_sent_ = kill_sent_ = handed_over_ = false;
}

UpgradeHandoff::Decision UpgradeHandoff::ready_word() noexcept {
  if (!pending() || quit_sent_) return Decision::none;  // too late: it is being stopped
  handed_over_ = true;
  return Decision::hand_over;
}

UpgradeHandoff::Decision UpgradeHandoff::deadline_check(TimePoint now) noexcept {
  if (!pending() || kill_sent_ || now < deadline_) return Decision::none;
  if (!quit_sent_) {
    quit_sent_ = true;
    deadline_ = now + kQuitGrace;
    return Decision::quit_new;
  }
  kill_sent_ = true;
  return Decision::kill_new;
}

UpgradeHandoff::Decision UpgradeHandoff::exited(pid_t pid) noexcept {
  if (!is_new_master(pid)) return Decision::none;
  if (handed_over_) return Decision::exited_after;
  pid_.reset();
  return Decision::failed;
}

std::optional<UpgradeHandoff::TimePoint> UpgradeHandoff::next_wakeup() const noexcept {
  if (!pending() || kill_sent_) return std::nullopt;
  return deadline_;
}

}  // namespace forkd::daemon
