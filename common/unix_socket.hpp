// Unix-domain socket addresses: the one place a sockaddr_un is built from a path or an
// '@abstract' name (with its length check), connected to, and probed for a live server.
// It never binds, listens, unlinks or logs: callers own their sockets and their wording.
// Every call here is bounded; the stale-socket probe never waits on a full backlog.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "common/fd.hpp"

namespace forkd::common {

// The longest path, or '@'-prefixed abstract name, a sockaddr_un holds with room for a NUL.
inline constexpr std::size_t kUnixPathMax = sizeof(sockaddr_un::sun_path) - 1;

// A name that cannot be a unix socket address; the message names it.
class UnixAddressError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class UnixAddress {
 public:
  // "/run/x.sock" (a path) or "@name" (Linux's abstract namespace). Throws UnixAddressError:
  // 'unix socket path "NAME" is too long (N bytes, at most 107)', or '... is empty'.
  explicit UnixAddress(std::string_view name);
  // The same without exceptions, for callers that report errno (sd_notify): EINVAL for "" or a
  // bare "@", ENAMETOOLONG past kUnixPathMax; on error the address is empty (size() == 0).
  [[nodiscard]] static UnixAddress from(std::string_view name, std::error_code& error) noexcept;

  [[nodiscard]] const sockaddr* get() const noexcept;
  [[nodiscard]] socklen_t size() const noexcept { return length_; }
  [[nodiscard]] bool abstract() const noexcept { return abstract_; }

 private:
  UnixAddress() noexcept = default;

  sockaddr_un address_{};
  socklen_t length_ = 0;
  bool abstract_ = false;
};

// socket(AF_UNIX, type | SOCK_CLOEXEC) connected to `address`; `type` is SOCK_STREAM or
// SOCK_DGRAM and may carry SOCK_NONBLOCK. A blocking connect is retried on EINTR. On failure
// returns an invalid fd and sets `error`.
[[nodiscard]] UniqueFd connect_unix(const UnixAddress& address, int type,
                                    std::error_code& error) noexcept;

// What is at a unix socket path before a server binds it.
enum class SocketFileState {
  absent,        // nothing there (or removed while we looked)
  stale,         // a socket file nobody listens on: left by a dead process, safe to unlink
  live,          // a server accepts on it, or its backlog is full: never take it over
  not_a_socket,  // a file, directory, symlink...: never replace it
  stat_failed,   // lstat failed with `error`
  probe_failed,  // the connect probe failed with `error` (neither refused nor accepted)
};

// lstat (a planted symlink is never followed), then for a socket a non-blocking connect:
// refused means stale, accepted or EAGAIN (backlog full) means live. Never unlinks and never
// blocks, so the master may call it at any time.
[[nodiscard]] SocketFileState probe_socket_file(const std::string& path,
                                                std::error_code& error) noexcept;

}  // namespace forkd::common
