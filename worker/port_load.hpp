// PortLoad: how many established connections this network namespace holds on a local TCP port,
// across every process (NETLINK_SOCK_DIAG, as ss(8) asks): the total the accept path compares
// its own share with. It owns nothing between calls and must not be asked per connection on a
// hot path without a cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace forkd::worker {

// Established TCP sockets whose local port is `port` (host order), for family AF_INET or
// AF_INET6; nullopt when the kernel does not answer (no sock_diag, a seccomp filter).
[[nodiscard]] std::optional<std::size_t> established_on_port(int family,
                                                             std::uint16_t port) noexcept;

}  // namespace forkd::worker
