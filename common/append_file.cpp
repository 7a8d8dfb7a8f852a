#include "common/append_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace forkd::common {

namespace {

AppendFile failure(std::string why) {
  return AppendFile{UniqueFd(), std::move(why)};
}

// open(2) failed: say what the path is when that is the cause, else errno's text.
std::string open_failure(const std::string& path, int error) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) return path + " is a symbolic link (not followed)";
    if (!S_ISREG(st.st_mode)) return path + " is not a regular file";
  }
  return path + ": " + std::strerror(error);
}

}  // namespace

AppendFile open_for_append(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for writing must fail (ENXIO), not wait for a reader.
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                     0640));
  if (!fd) return failure(open_failure(path, errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return failure(path + ": fstat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return failure(path + " is not a regular file");
  const uid_t self = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != self) {
    return failure(path + " is owned by uid " + std::to_string(st.st_uid) +
                   ", neither root nor forkd's uid " + std::to_string(self));
  }
  if (auto error = set_nonblocking(fd.get(), false)) {
    return failure(path + ": clearing O_NONBLOCK: " + error.message());
  }
  return AppendFile{std::move(fd), ""};
}

}  // namespace forkd::common
