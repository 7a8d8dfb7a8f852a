#include "common/sd_notify.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/decimal.hpp"
#include "common/fd.hpp"
#include "common/unix_socket.hpp"

namespace forkd::common {
namespace {

int notify_to_address(std::string_view socket, std::string_view state) noexcept {
  if (socket.empty()) return 0;
  if (state.empty()) return -EINVAL;
  if (socket.front() != '/' && socket.front() != '@') return -EAFNOSUPPORT;
  if (socket.size() < 2) return -EINVAL;
  std::error_code error;
  const UnixAddress address = UnixAddress::from(socket, error);
  if (error == std::errc::filename_too_long) return -E2BIG;
  if (error) return -error.value();
  const UniqueFd fd = connect_unix(address, SOCK_DGRAM, error);
  if (!fd) return -error.value();
  const ssize_t sent = ::send(fd.get(), state.data(), state.size(), MSG_NOSIGNAL);
  if (sent < 0) return -errno;
  // A datagram goes whole or not at all; anything else is a broken socket.
  if (static_cast<std::size_t>(sent) != state.size()) return -EPROTO;
  return 1;
}

bool is_name_start(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool is_name_char(char c) noexcept {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

bool is_valid_key(std::string_view key) noexcept {
  return !key.empty() && is_name_start(key.front()) && std::ranges::all_of(key, is_name_char);
}

}  // namespace

int notify(std::string_view state) noexcept {
  // Read once; forkd never calls setenv after start-up, so the pointer stays valid.
  const char* socket = std::getenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  if (socket == nullptr) return 0;
  return notify_to_address(socket, state);
}

int notify_to(const std::string& socket, std::string_view state) noexcept {
  return notify_to_address(socket, state);
}

std::vector<std::pair<std::string, std::string>> parse_notify_message(std::string_view datagram) {
  std::vector<std::pair<std::string, std::string>> fields;
  while (!datagram.empty()) {
    const std::size_t newline = datagram.find('\n');
    const std::string_view line = datagram.substr(0, newline);
    datagram =
        newline == std::string_view::npos ? std::string_view{} : datagram.substr(newline + 1);
    if (line.find('\0') != std::string_view::npos) continue;
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, eq);
    if (!is_valid_key(key)) continue;
    fields.emplace_back(std::string(key), std::string(line.substr(eq + 1)));
  }
  return fields;
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  // NOLINTBEGIN(concurrency-mt-unsafe): read-only environment, see notify().
  return watchdog_interval_from(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"),
                                ::getpid());
  // NOLINTEND(concurrency-mt-unsafe)
}

std::optional<std::chrono::microseconds> watchdog_interval_from(const char* watchdog_usec,
                                                                const char* watchdog_pid,
                                                                pid_t self) noexcept {
  if (watchdog_usec == nullptr) return std::nullopt;
  const auto usec = parse_decimal<std::uint64_t>(watchdog_usec);
  if (!usec || *usec == 0) return std::nullopt;
  // chrono::microseconds is signed: refuse what it cannot hold rather than wrap.
  if (*usec > static_cast<std::uint64_t>(std::chrono::microseconds::max().count())) {
    return std::nullopt;
  }
  if (watchdog_pid != nullptr) {
    // Meant for another process (a parent that exported it and forked us): not ours to ping.
    const auto pid = parse_decimal<pid_t>(watchdog_pid);
    if (!pid || *pid != self) return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(*usec));
}

std::string reloading_message(std::chrono::steady_clock::time_point now) {
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch());
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec.count());
}

}  // namespace forkd::common
