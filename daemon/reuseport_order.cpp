#include "daemon/reuseport_order.hpp"

#include <algorithm>
#include <charconv>
#include <set>

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

std::string encode_orders(const ReuseportOrders& orders) {
  std::string text;
  for (const auto& group : orders) {
    if (!text.empty()) text += ';';
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (i > 0) text += ',';
      text += std::to_string(group[i]);
    }
  }
  return text;
}

std::optional<ReuseportOrders> parse_orders(std::string_view text) {
  ReuseportOrders orders;
  if (text.empty()) return orders;
  std::set<ReuseportOrder::Key> seen;
  auto& first = orders.emplace_back();
  std::vector<ReuseportOrder::Key>* keys = &first;
  for (;;) {
    ReuseportOrder::Key key = 0;
    const auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), key);
    if (ec != std::errc{} || next == text.data()) return std::nullopt;
    if (!seen.insert(key).second || seen.size() > kMaxInheritedSockets) return std::nullopt;
    keys->push_back(key);
    text.remove_prefix(static_cast<std::size_t>(next - text.data()));
    if (text.empty()) return orders;
    const char separator = text.front();
    text.remove_prefix(1);
    if (separator == ';') {
      keys = &orders.emplace_back();
    } else if (separator != ',') {
      return std::nullopt;
    }
  }
}

}  // namespace forkd::daemon
