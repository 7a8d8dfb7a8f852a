// The file a unix socket appears as once bound: its mode and group, set without a path lookup
// that a user who can write the socket's directory could redirect. chmod(path) after bind()
// follows a symlink planted in place of the socket, and root would then open up whatever file
// the link names (seen: a root-owned file made 0666).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <system_error>

#include "common/unix_socket.hpp"

namespace forkd::common {

// bind() with the socket file born with exactly `mode` (& 0777): the mode is put on the socket
// inode first and the umask is lifted for the call, so no chmod through the path is needed.
// Returns the errno of bind() or fchmod() (0 on success).
[[nodiscard]] int bind_unix_with_mode(int fd, const UnixAddress& address, mode_t mode) noexcept;

// Changes the mode (and group) of the socket file at `path`: opened with O_PATH|O_NOFOLLOW, so a
// symlink is never followed, checked to still be a socket, and changed through that descriptor.
// Throws std::system_error naming the path.
void set_socket_file_access(const std::string& path, mode_t mode, std::optional<gid_t> group);

}  // namespace forkd::common
