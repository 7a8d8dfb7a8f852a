#include "common/socket_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/fd.hpp"

namespace forkd::common {

int bind_unix_with_mode(int fd, const UnixAddress& address, mode_t mode) noexcept {
  // Linux creates the file with the socket inode's mode less the umask.
  if (::fchmod(fd, mode & 0777) != 0) return errno;
  const mode_t old_mask = ::umask(0);
  const int rc = ::bind(fd, address.get(), address.size());
  const int error = rc == 0 ? 0 : errno;
  ::umask(old_mask);
  return error;
}

void set_socket_file_access(const std::string& path, mode_t mode, std::optional<gid_t> group) {
  UniqueFd file(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!file) throw system_error_from_errno("cannot open socket file " + path);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) throw system_error_from_errno("fstat " + path);
  if (!S_ISSOCK(st.st_mode)) {
    throw std::system_error(std::make_error_code(std::errc::not_a_stream),
                            path +
                                " is no longer a socket (replaced by someone?); "
                                "leaving its mode alone");
  }
  if (group && ::fchownat(file.get(), "", static_cast<uid_t>(-1), *group, AT_EMPTY_PATH) != 0) {
    throw system_error_from_errno("cannot set the group of " + path);
  }
  // fchmod() refuses an O_PATH descriptor; its /proc/self/fd link names the inode it holds
  // (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does too).
  const std::string by_fd = "/proc/self/fd/" + std::to_string(file.get());
  if (::chmod(by_fd.c_str(), mode & 0777) != 0) {
    throw system_error_from_errno("cannot set the mode of " + path);
  }
}

}  // namespace forkd::common
