// The master's mirror of one SO_REUSEPORT group's socket array in the kernel: the index a
// steering program returns is a socket's position there. Pure bookkeeping, no system calls.
// It is only right if it hears of every socket that starts or stops listening, in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::daemon {

// net/core/sock_reuseport.c (Linux >= 5.14): listen() appends a socket to socks[0..num_socks);
// when it stops listening (its last reference is closed) the last listening socket is moved
// into its place. With net.ipv4.tcp_migrate_req a closed socket goes to a separate section at
// the far end of the array until its queue is gone; the listening indices change the same way.
class ReuseportOrder {
 public:
  using Key = std::uint64_t;  // the socket's inode number

  void listen(Key key);
  // False when `key` was not listening.
  bool leave(Key key);
  [[nodiscard]] std::optional<std::size_t> index_of(Key key) const;
  [[nodiscard]] std::size_t size() const noexcept { return socks_.size(); }
  [[nodiscard]] const std::vector<Key>& sockets() const noexcept { return socks_; }

 private:
  std::vector<Key> socks_;
};

// A hot upgrade tells the new master each group's order, as the inode numbers of the sockets it
// passes, so that the new master steers them at once: "1234,1240;2001,2002" (groups split by
// ';', positions by ',').
using ReuseportOrders = std::vector<std::vector<ReuseportOrder::Key>>;
[[nodiscard]] std::string encode_orders(const ReuseportOrders& orders);
// nullopt for anything malformed: an empty group, a number that is not one, a socket named twice,
// or more than kMaxInheritedSockets in all. The new master then leaves its groups to the kernel.
inline constexpr std::size_t kMaxInheritedSockets = 65536;
[[nodiscard]] std::optional<ReuseportOrders> parse_orders(std::string_view text);

}  // namespace forkd::daemon
