// The master's mirror of one SO_REUSEPORT group's socket array in the kernel: the index a
// steering program returns is a socket's position there. Pure bookkeeping, no system calls.
// It is only right if it hears of every socket that starts or stops listening, in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
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

}  // namespace forkd::daemon
