#include "worker/accept_policy.hpp"

#include <algorithm>
#include <cerrno>

namespace forkd::worker {

bool is_transient_accept_error(int error) noexcept {
  switch (error) {
    case ECONNABORTED:
    case EINTR:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

bool AcceptPolicy::holds_too_much(std::size_t own, std::size_t total,
                                  std::size_t workers) const noexcept {
  if (workers < 2 || total < own) return false;  // alone, or counts that do not add up
  if (total < share_min_total) return false;
  const double fair = static_cast<double>(total) / static_cast<double>(workers);
  return static_cast<double>(own) > share_factor * fair + static_cast<double>(share_slack);
}

bool AcceptPolicy::could_hold_too_much(std::size_t own, std::size_t workers) const noexcept {
  return holds_too_much(own, std::max(own, share_min_total), workers);
}

bool AcceptPolicy::yield_now(std::size_t others, std::size_t others_at_last_yield,
                             bool back_from_yield) noexcept {
  return !back_from_yield || others > others_at_last_yield;
}

bool RotationClock::rotate_after(std::size_t accepted) noexcept {
  since_rotation_ += accepted;
  if (since_rotation_ < every_) return false;
  since_rotation_ = 0;
  return true;
}

}  // namespace forkd::worker
