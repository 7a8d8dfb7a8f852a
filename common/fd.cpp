#include "common/fd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace forkd::common {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) {
    // close() may report EINTR but the fd is released either way on Linux: never retry.
    ::close(fd_);
  }
  fd_ = fd;
}

FdPair make_pipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) throw system_error_from_errno("pipe2");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

FdPair make_socketpair(int type, int extra_flags) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC | extra_flags, 0, fds) != 0) {
    throw system_error_from_errno("socketpair");
  }
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::error_code set_nonblocking(int fd, bool on) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return last_error();
  const int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0) return last_error();
  return {};
}

std::error_code set_cloexec(int fd, bool on) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return last_error();
  const int wanted = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (wanted != flags && ::fcntl(fd, F_SETFD, wanted) < 0) return last_error();
  return {};
}

std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

std::system_error system_error_from_errno(const std::string& what) {
  return {last_error(), what};
}

}  // namespace forkd::common
