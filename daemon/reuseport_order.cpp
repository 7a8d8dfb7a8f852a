#include "daemon/reuseport_order.hpp"

#include <algorithm>

namespace forkd::daemon {

void ReuseportOrder::listen(Key key) {
  if (!index_of(key)) socks_.push_back(key);
}

bool ReuseportOrder::leave(Key key) {
  const auto it = std::find(socks_.begin(), socks_.end(), key);
  if (it == socks_.end()) return false;
  // reuseport_detach_sock: socks[i] = socks[num_socks - 1]; num_socks--.
  *it = socks_.back();
  socks_.pop_back();
  return true;
}

std::optional<std::size_t> ReuseportOrder::index_of(Key key) const {
  const auto it = std::find(socks_.begin(), socks_.end(), key);
  if (it == socks_.end()) return std::nullopt;
  return static_cast<std::size_t>(it - socks_.begin());
}

}  // namespace forkd::daemon
