// Logging set-up: one synchronous sink shared by every component's spdlog logger, writing
// text, JSON lines or journald-style "<N>" lines to stderr or to `log.file`. Synchronous and
// thread-free on purpose: the master forks, and fork() is only safe single-threaded.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/fd.hpp"

namespace forkd::common::log {

// (Re)configures the shared sink and the audit trail's. Opening log.file may fail: then the
// error is said once on stderr and logging goes to stderr; supervision never depends on the
// log. log.audit is opened with open_log_file's checks; when it cannot be, that is said once on
// stderr and the audit records go to the main log.
void configure(const LogConfig& config);
// Reopens log.file and log.audit (SIGUSR1, logrotate); false when either fell back.
bool reopen();
// Opens a log file for appending (log.file, log.audit): symbolic links only where nobody but
// root and us could have planted them, a regular file (or a device such as /dev/null) owned by
// root or us. On failure the fd is invalid and `error` says why, without the path.
[[nodiscard]] UniqueFd open_log_file(const std::string& path, std::string& error);
// The audit trail's logger: written whatever log.level says, to log.audit or the main log.
[[nodiscard]] std::shared_ptr<spdlog::logger> audit();
// The logger of one component ("master", "worker", "control", ...), created on first use.
[[nodiscard]] std::shared_ptr<spdlog::logger> get(const std::string& component);
[[nodiscard]] spdlog::level::level_enum to_spdlog(LogLevel level) noexcept;
// "2026-11-29T11:50:00.123Z": how log lines, events and status replies write a time.
[[nodiscard]] std::string format_time(std::chrono::system_clock::time_point tp);

}  // namespace forkd::common::log
