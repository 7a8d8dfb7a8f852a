#include "worker/port_load.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace forkd::worker {

std::optional<std::size_t> established_on_port(int family, std::uint16_t port) noexcept {
  common::UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return std::nullopt;
  struct Request {
    nlmsghdr header;
    inet_diag_req_v2 body;
  };
  Request request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.body.sdiag_family = static_cast<std::uint8_t>(family);
  request.body.sdiag_protocol = IPPROTO_TCP;
  request.body.idiag_states = 1U << TCP_ESTABLISHED;
  // The kernel skips sockets of other local ports itself: no filter program needed.
  request.body.id.idiag_sport = htons(port);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &request, sizeof(request), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) != static_cast<ssize_t>(sizeof(request))) {
    return std::nullopt;
  }
  std::size_t count = 0;
  alignas(nlmsghdr) std::array<char, 32768> buffer{};
  for (;;) {
    const ssize_t n = ::recv(nl.get(), buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    const auto size = static_cast<std::size_t>(n);
    std::size_t offset = 0;
    while (offset + sizeof(nlmsghdr) <= size) {
      nlmsghdr h{};
      std::memcpy(&h, buffer.data() + offset, sizeof(h));
      if (h.nlmsg_len < sizeof(h) || offset + h.nlmsg_len > size) return std::nullopt;
      if (h.nlmsg_type == NLMSG_DONE) return count;
      if (h.nlmsg_type == NLMSG_ERROR) return std::nullopt;
      if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) ++count;
      offset += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
}

}  // namespace forkd::worker
