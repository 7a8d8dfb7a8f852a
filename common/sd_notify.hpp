// The sd_notify protocol without libsystemd, as systemd's self-contained example does it:
// sending one datagram to $NOTIFY_SOCKET (a path or an '@' abstract name), parsing the datagrams
// a master receives on the per-worker sockets it hands out, and reading WATCHDOG_USEC.
// It never changes the environment, keeps no socket open and never logs: callers decide.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace forkd::common {

// The most systemd reads of one notification (PIPE_BUF); a receiver's buffer size.
inline constexpr std::size_t kNotifyMessageMax = 4096;

// Sends `state` ("READY=1", "STATUS=...", several lines joined by '\n') to $NOTIFY_SOCKET.
// Returns 0 when NOTIFY_SOCKET is unset or empty (not under systemd), 1 when sent, -errno on
// failure: -EINVAL for an empty state, -EAFNOSUPPORT for an address that is neither an absolute
// path nor '@'-abstract, -E2BIG for one too long for sockaddr_un.
[[nodiscard]] int notify(std::string_view state) noexcept;
// The same with the socket address given ("/run/x.sock" or "@name"); "" returns 0.
[[nodiscard]] int notify_to(const std::string& socket, std::string_view state) noexcept;

// One datagram's KEY=VALUE lines in order. Lines that are empty, lack '=', hold a NUL byte or
// have a key that is not an environment-style name ([A-Za-z_][A-Za-z0-9_]*) are skipped.
// Pure: untrusted input from workers, never asserted on.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> parse_notify_message(
    std::string_view datagram);

// sd_watchdog_enabled(): the interval in WATCHDOG_USEC when it is a positive number and
// WATCHDOG_PID is unset or names this process; nullopt otherwise. Ping at half of it.
[[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval();
// The same rule on explicit values (null = unset), for tests and for the master's own use.
[[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval_from(
    const char* watchdog_usec, const char* watchdog_pid, pid_t self) noexcept;

// "RELOADING=1\nMONOTONIC_USEC=N": the message that opens a reload (systemd >= 253 wants the
// timestamp with it; older ones ignore it). READY=1 closes the reload, failed or not.
[[nodiscard]] std::string reloading_message(
    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

}  // namespace forkd::common
