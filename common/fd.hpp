// UniqueFd: sole owner of one file descriptor, closed on destruction.
// Also the close-on-exec pipe and socketpair factories every module uses.
#pragma once

#include <system_error>
#include <utility>

namespace forkd::common {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  // Gives up ownership without closing.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

struct FdPair {
  UniqueFd first;
  UniqueFd second;
};

// pipe2(O_CLOEXEC [| extra]): first = read end, second = write end. Throws std::system_error.
[[nodiscard]] FdPair make_pipe(int extra_flags = 0);
// socketpair(AF_UNIX, type | SOCK_CLOEXEC [| extra]). Throws std::system_error.
[[nodiscard]] FdPair make_socketpair(int type, int extra_flags = 0);

// Sets or clears O_NONBLOCK / FD_CLOEXEC; returns the error instead of throwing.
[[nodiscard]] std::error_code set_nonblocking(int fd, bool on) noexcept;
[[nodiscard]] std::error_code set_cloexec(int fd, bool on) noexcept;

// errno as an error_code, and "what: strerror" text for log lines and exceptions.
[[nodiscard]] std::error_code last_error() noexcept;
[[nodiscard]] std::system_error system_error_from_errno(const std::string& what);

}  // namespace forkd::common
