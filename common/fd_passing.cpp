#include "common/fd_passing.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace forkd::common {

namespace {

// Room for the descriptors one read takes at most; more are closed by the kernel (MSG_CTRUNC).
constexpr std::size_t kMaxFdsPerRead = 4;

msghdr message_of(iovec& data, std::span<char> control) noexcept {
  msghdr header{};
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  header.msg_control = control.data();
  header.msg_controllen = control.size();
  return header;
}

}  // namespace

ssize_t send_with_fd(int socket, std::string_view data, int fd) noexcept {
  iovec bytes{const_cast<char*>(data.data()), data.size()};  // NOLINT: sendmsg does not write
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msghdr header = message_of(bytes, control);
  cmsghdr* rights = CMSG_FIRSTHDR(&header);
  rights->cmsg_level = SOL_SOCKET;
  rights->cmsg_type = SCM_RIGHTS;
  rights->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(rights), &fd, sizeof(int));
  ssize_t n = -1;
  do {
    n = ::sendmsg(socket, &header, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t receive_with_fds(int socket, std::span<char> buffer, std::vector<UniqueFd>& fds,
                         std::size_t max_fds) noexcept {
  iovec bytes{buffer.data(), buffer.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)> control{};
  msghdr header = message_of(bytes, control);
  ssize_t n = -1;
  do {
    n = ::recvmsg(socket, &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));  // NOLINT: cmsg layout
      UniqueFd owned(fd);                                             // closed here unless kept
      if (fds.size() < max_fds) fds.push_back(std::move(owned));
    }
  }
  return n;
}

}  // namespace forkd::common
