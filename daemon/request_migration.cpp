#include "daemon/request_migration.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace forkd::daemon {

RequestMigration enable_request_migration(const std::string& path) {
  RequestMigration result;
  common::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  const int write_error = fd.valid() ? 0 : errno;
  if (!fd.valid()) fd = common::UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    result.detail = errno == ENOENT ? "this kernel does not have it (Linux 5.14 or later does)"
                                    : path + ": " + std::strerror(errno);
    return result;
  }
  char value = '0';
  if (::read(fd.get(), &value, 1) == 1 && value != '0') {
    result.state = RequestMigration::State::already_on;
    return result;
  }
  if (write_error == 0 && ::pwrite(fd.get(), "1\n", 2, 0) == 2) {
    result.state = RequestMigration::State::switched_on;
    return result;
  }
  const int error = write_error != 0 ? write_error : errno;
  result.detail = "it is 0 and cannot be set here (" + path + ": " + std::strerror(error) + ")";
  return result;
}

}  // namespace forkd::daemon
