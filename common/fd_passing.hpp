// Descriptors passed over a Unix socket with the bytes they belong to (SCM_RIGHTS): the master
// lends a worker a listening socket with the IPC line that says what it is for.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "common/fd.hpp"

namespace forkd::common {

// sendmsg of `data` with a copy of `fd` attached to its first byte, non-blocking: the bytes
// sent (possibly fewer than data.size(); the descriptor went with the first), or -1 with errno.
[[nodiscard]] ssize_t send_with_fd(int socket, std::string_view data, int fd) noexcept;

// recvmsg into `buffer`, non-blocking, keeping up to `max_fds` passed descriptors in `fds`
// (close-on-exec; more in one read are closed): the bytes read, 0 at EOF, or -1 with errno.
[[nodiscard]] ssize_t receive_with_fds(int socket, std::span<char> buffer,
                                       std::vector<UniqueFd>& fds, std::size_t max_fds) noexcept;

}  // namespace forkd::common
