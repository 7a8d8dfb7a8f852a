// Per-process memory readings from /proc: PSS (smaps_rollup) for max_memory and metrics, RSS
// (statm) for status. The master samples every worker with these, so they are cheap: one
// open/read into a stack buffer, no iostreams, no allocation. They never throw and never log;
// a process that is gone or unreadable is nullopt.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace forkd::daemon {

// The user a worker runs as, when the master dropped it to another one.
struct ProcOwner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// The "Pss:" line of /proc/PID/smaps_rollup text, in bytes (the kernel writes kB = KiB).
// nullopt when the line is missing or malformed.
[[nodiscard]] std::optional<std::uint64_t> parse_smaps_rollup_pss(std::string_view text) noexcept;
// The second field of /proc/PID/statm text: resident pages. nullopt when malformed.
[[nodiscard]] std::optional<std::uint64_t> parse_statm_rss_pages(std::string_view text) noexcept;

// Proportional set size of `pid`: pages shared after fork count 1/N to each sharer, so the sum
// over workers is the memory they really use. Needs Linux >= 4.14 and ptrace-read access
// (the parent, or root); nullopt otherwise, or when the process is gone or a zombie.
// A root master reads as `owner` (setfsuid/setfsgid for the one open): under systemd's
// ProtectProc=invisible and without CAP_SYS_PTRACE (forkd-root.service) root sees only the
// processes whose uid matches its filesystem uid.
[[nodiscard]] std::optional<std::uint64_t> read_pss_bytes(
    pid_t pid, std::optional<ProcOwner> owner = std::nullopt) noexcept;
// utime + stime of /proc/PID/stat text, in clock ticks. The command name (field 2) may hold
// spaces and parentheses, so fields are counted after its last ')'. nullopt when malformed.
[[nodiscard]] std::optional<std::uint64_t> parse_stat_cpu_ticks(std::string_view text) noexcept;
// The state letter of /proc/PID/stat text (R, S, D, T for stopped, t for traced, ...): field
// 3, after the command name's last ')'. nullopt when malformed.
[[nodiscard]] std::optional<char> parse_stat_state(std::string_view text) noexcept;
// Whether `pid` is stopped (SIGSTOP, or held by a debugger); false when it runs or is gone.
[[nodiscard]] bool process_stopped(pid_t pid,
                                   std::optional<ProcOwner> owner = std::nullopt) noexcept;
// CPU time `pid` has used, user + system, in seconds; nullopt when the process is gone.
[[nodiscard]] std::optional<double> read_cpu_seconds(
    pid_t pid, std::optional<ProcOwner> owner = std::nullopt) noexcept;

// The command line of `pid`, arguments joined by spaces (the first 4 KiB); nullopt when the
// process is gone or a zombie.
[[nodiscard]] std::optional<std::string> read_command_line(
    pid_t pid, std::optional<ProcOwner> owner = std::nullopt);

// Resident set size of `pid` in bytes; nullopt when the process is gone.
[[nodiscard]] std::optional<std::uint64_t> read_rss_bytes(
    pid_t pid, std::optional<ProcOwner> owner = std::nullopt) noexcept;

}  // namespace forkd::daemon
