#include "daemon/proc_stats.hpp"

#include <fcntl.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <limits>

#include "common/fd.hpp"

namespace forkd::daemon {
namespace {

// smaps_rollup is about 1 KiB (one header line and ~20 counters); statm is one short line.
constexpr std::size_t kProcFileMax = 4096;
constexpr std::uint64_t kBytesPerKiB = 1024;

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view skip_blanks(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size() && is_blank(text[i])) ++i;
  return text.substr(i);
}

// A decimal number at the start of `text`; `rest` receives what follows it.
std::optional<std::uint64_t> parse_number(std::string_view text, std::string_view& rest) noexcept {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{}) return std::nullopt;
  rest = text.substr(static_cast<std::size_t>(end - text.data()));
  return value;
}

// Filesystem identity switched to a worker's user for the scope (see read_pss_bytes); only a
// root master switches, and only away from root. The master is single-threaded, and the
// fsuid is per thread anyway.
class AsOwner {
 public:
  explicit AsOwner(const std::optional<ProcOwner>& owner) noexcept {
    if (!owner || owner->uid == 0 || ::geteuid() != 0) return;
    previous_gid_ = static_cast<gid_t>(::setfsgid(owner->gid));
    previous_uid_ = static_cast<uid_t>(::setfsuid(owner->uid));
    switched_ = true;
  }
  AsOwner(const AsOwner&) = delete;
  AsOwner& operator=(const AsOwner&) = delete;
  AsOwner(AsOwner&&) = delete;
  AsOwner& operator=(AsOwner&&) = delete;
  ~AsOwner() {
    if (!switched_) return;
    ::setfsuid(previous_uid_);
    ::setfsgid(previous_gid_);
  }

 private:
  bool switched_ = false;
  uid_t previous_uid_ = 0;
  gid_t previous_gid_ = 0;
};

// Reads /proc/PID/NAME whole into `buffer`; the view is empty on any failure. The kernel
// generates these files at read time, so a short read is not the end: read until EOF.
std::string_view read_proc_file(pid_t pid, const char* name, const std::optional<ProcOwner>& owner,
                                std::array<char, kProcFileMax>& buffer) noexcept {
  if (pid <= 0) return {};
  std::array<char, 64> path{};
  const int length =
      std::snprintf(path.data(), path.size(), "/proc/%d/%s", static_cast<int>(pid), name);
  if (length < 0 || static_cast<std::size_t>(length) >= path.size()) return {};
  const common::UniqueFd fd = [&] {
    const AsOwner as_owner(owner);
    return common::UniqueFd(::open(path.data(), O_RDONLY | O_CLOEXEC));
  }();
  if (!fd) return {};
  std::size_t used = 0;
  while (used < buffer.size()) {
    const ssize_t got = ::read(fd.get(), buffer.data() + used, buffer.size() - used);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      return {};
    }
    used += static_cast<std::size_t>(got);
  }
  return {buffer.data(), used};
}

}  // namespace

std::optional<std::uint64_t> parse_smaps_rollup_pss(std::string_view text) noexcept {
  constexpr std::string_view kKey = "Pss:";
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    // "Pss:" exactly: Pss_Anon:, Pss_File:, Pss_Dirty: and Pss_Shmem: are parts of it.
    if (!line.starts_with(kKey)) continue;
    std::string_view rest;
    const auto kib = parse_number(skip_blanks(line.substr(kKey.size())), rest);
    if (!kib) return std::nullopt;
    rest = skip_blanks(rest);
    if (!rest.starts_with("kB")) return std::nullopt;
    if (*kib > std::numeric_limits<std::uint64_t>::max() / kBytesPerKiB) return std::nullopt;
    return *kib * kBytesPerKiB;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_statm_rss_pages(std::string_view text) noexcept {
  std::string_view rest;
  if (!parse_number(skip_blanks(text), rest)) return std::nullopt;  // size
  if (rest.empty() || !is_blank(rest.front())) return std::nullopt;
  const auto resident = parse_number(skip_blanks(rest), rest);
  if (!resident || !(rest.empty() || is_blank(rest.front()) || rest.front() == '\n')) {
    return std::nullopt;
  }
  return resident;
}

std::optional<std::uint64_t> read_pss_bytes(pid_t pid, std::optional<ProcOwner> owner) noexcept {
  std::array<char, kProcFileMax> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  return parse_smaps_rollup_pss(read_proc_file(pid, "smaps_rollup", owner, buffer));
}

std::optional<std::uint64_t> read_rss_bytes(pid_t pid, std::optional<ProcOwner> owner) noexcept {
  std::array<char, kProcFileMax> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  const auto pages = parse_statm_rss_pages(read_proc_file(pid, "statm", owner, buffer));
  if (!pages) return std::nullopt;
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (page_size <= 0) return std::nullopt;
  return *pages * static_cast<std::uint64_t>(page_size);
}

std::optional<std::uint64_t> parse_stat_cpu_ticks(std::string_view text) noexcept {
  const std::size_t close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  // After ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime(14) stime(15): utime is the 12th field after the name.
  std::uint64_t ticks = 0;
  for (int field = 3; field <= 15; ++field) {
    rest = skip_blanks(rest);
    const std::size_t end = rest.find_first_of(" \t\n");
    const std::string_view word = rest.substr(0, end);
    if (word.empty()) return std::nullopt;
    if (field >= 14) {
      std::string_view after;
      const auto value = parse_number(word, after);
      if (!value || !after.empty()) return std::nullopt;
      ticks += *value;
    }
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  }
  return ticks;
}

std::optional<char> parse_stat_state(std::string_view text) noexcept {
  const std::size_t close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  const std::string_view rest = skip_blanks(text.substr(close + 1));
  if (rest.empty() || (rest.size() > 1 && rest[1] != ' ')) return std::nullopt;
  return rest.front();
}

bool process_stopped(pid_t pid, std::optional<ProcOwner> owner) noexcept {
  std::array<char, kProcFileMax> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  const auto state = parse_stat_state(read_proc_file(pid, "stat", owner, buffer));
  return state == 'T' || state == 't';
}

std::optional<double> read_cpu_seconds(pid_t pid, std::optional<ProcOwner> owner) noexcept {
  std::array<char, kProcFileMax> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  const auto ticks = parse_stat_cpu_ticks(read_proc_file(pid, "stat", owner, buffer));
  const long per_second = ::sysconf(_SC_CLK_TCK);
  if (!ticks || per_second <= 0) return std::nullopt;
  return static_cast<double>(*ticks) / static_cast<double>(per_second);
}

std::optional<std::string> read_command_line(pid_t pid, std::optional<ProcOwner> owner) {
  std::array<char, kProcFileMax> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  const std::string_view text = read_proc_file(pid, "cmdline", owner, buffer);
  if (text.empty()) return std::nullopt;
  std::string line(text);
  while (!line.empty() && line.back() == '\0') line.pop_back();
  std::replace(line.begin(), line.end(), '\0', ' ');
  return line;
}

}  // namespace forkd::daemon
