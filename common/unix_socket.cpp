#include "common/unix_socket.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace forkd::common {

UnixAddress::UnixAddress(std::string_view name) {
  std::error_code error;
  *this = from(name, error);
  if (error == std::errc::filename_too_long) {
    throw UnixAddressError("unix socket path \"" + std::string(name) + "\" is too long (" +
                           std::to_string(name.size()) + " bytes, at most " +
                           std::to_string(kUnixPathMax) + ")");
  }
  if (error) throw UnixAddressError("unix socket path \"" + std::string(name) + "\" is empty");
}

UnixAddress UnixAddress::from(std::string_view name, std::error_code& error) noexcept {
  UnixAddress out;
  error.clear();
  if (name.empty() || name == "@") {
    error = std::make_error_code(std::errc::invalid_argument);
    return out;
  }
  if (name.size() > kUnixPathMax) {
    error = std::make_error_code(std::errc::filename_too_long);
    return out;
  }
  out.address_.sun_family = AF_UNIX;
  std::memcpy(out.address_.sun_path, name.data(), name.size());
  out.abstract_ = name.front() == '@';
  // An abstract name starts with a NUL byte and is counted by the length, NULs and all; a
  // path is NUL-terminated (the zeroed buffer already holds the NUL) and counted with it.
  if (out.abstract_) out.address_.sun_path[0] = '\0';
  out.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                       (out.abstract_ ? 0 : 1));
  return out;
}

const sockaddr* UnixAddress::get() const noexcept {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API.
  return reinterpret_cast<const sockaddr*>(&address_);
}

UniqueFd connect_unix(const UnixAddress& address, int type, std::error_code& error) noexcept {
  error.clear();
  if (address.size() == 0) {
    error = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = last_error();
    return {};
  }
  int rc = 0;
  do {
    rc = ::connect(fd.get(), address.get(), address.size());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    error = last_error();
    return {};
  }
  return fd;
}

SocketFileState probe_socket_file(const std::string& path, std::error_code& error) noexcept {
  error.clear();
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return SocketFileState::absent;
    error = last_error();
    return SocketFileState::stat_failed;
  }
  if (!S_ISSOCK(st.st_mode)) return SocketFileState::not_a_socket;
  const UnixAddress address = UnixAddress::from(path, error);
  if (error) return SocketFileState::probe_failed;
  // Non-blocking: a blocking connect to a live server whose backlog is full would wait for
  // an accept that may never come. Unix sockets answer EAGAIN then, never EINPROGRESS, but
  // either means a server is there.
  const UniqueFd probe = connect_unix(address, SOCK_STREAM | SOCK_NONBLOCK, error);
  if (probe) return SocketFileState::live;
  if (error == std::errc::resource_unavailable_try_again ||
      error == std::errc::operation_in_progress) {
    error.clear();
    return SocketFileState::live;
  }
  if (error == std::errc::connection_refused) {
    error.clear();
    return SocketFileState::stale;
  }
  if (error == std::errc::no_such_file_or_directory) {
    error.clear();
    return SocketFileState::absent;
  }
  return SocketFileState::probe_failed;
}

}  // namespace forkd::common
