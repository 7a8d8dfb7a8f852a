#include "daemon/resource_limits.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "common/fd.hpp"
#include "daemon/cgroup_paths.hpp"

namespace forkd::daemon {

namespace {

// A kernel-made host has thousands of mounts; more than this is not a mountinfo we trust.
constexpr std::size_t kMaxProcFile = 4U << 20U;
// v1 writes "no limit" as the largest page-aligned counter (0x7FFFFFFFFFFFF000 with 4 KiB pages).
constexpr std::uint64_t kUnlimitedFrom = std::uint64_t{1} << 62U;

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  return text;
}

template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

std::optional<std::string> read_file(const std::string& path) {
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  std::array<char, 8192> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) return text;
    text.append(buffer.data(), static_cast<std::size_t>(n));
    if (text.size() > kMaxProcFile) return std::nullopt;
  }
}

unsigned affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(std::max(CPU_COUNT(&set), 1));
}

double amount(const CpuQuota& quota) {
  return quota.cpus;
}
std::uint64_t amount(const MemoryLimit& limit) {
  return limit.bytes;
}

// The tightest limit over every directory from ours up to the top of each hierarchy that has
// the controller: a parent's limit binds its children.
template <typename Limit, typename Reader>
std::optional<Limit> tightest(const std::string& root, const std::vector<CgroupDir>& dirs,
                              Reader read) {
  std::optional<Limit> best;
  for (const auto& dir : dirs) {
    for (const auto& level : cgroup_walk(dir)) {
      std::optional<Limit> found = read(root + level, dir.version);
      if (!found) continue;
      found->where += " in " + level;
      if (!best || amount(*found) < amount(*best)) best = std::move(found);
    }
  }
  return best;
}

std::optional<CpuQuota> read_cpu_quota(const std::string& dir, int version) {
  if (version == 2) {
    const auto text = read_file(dir + "/cpu.max");
    const auto cpus = text ? cpus_from_cpu_max(*text) : std::nullopt;
    if (!cpus) return std::nullopt;
    return CpuQuota{*cpus, "cgroup v2 cpu.max"};
  }
  const auto quota = read_file(dir + "/cpu.cfs_quota_us");
  const auto period = read_file(dir + "/cpu.cfs_period_us");
  const auto cpus = quota && period ? cpus_from_cfs(*quota, *period) : std::nullopt;
  if (!cpus) return std::nullopt;
  return CpuQuota{*cpus, "cgroup v1 cpu.cfs_quota_us"};
}

std::optional<MemoryLimit> read_memory_limit(const std::string& dir, int version) {
  if (version == 2) {
    const auto text = read_file(dir + "/memory.max");
    const auto bytes = text ? bytes_from_memory_max(*text) : std::nullopt;
    if (!bytes) return std::nullopt;
    return MemoryLimit{*bytes, "cgroup v2 memory.max"};
  }
  const auto text = read_file(dir + "/memory.limit_in_bytes");
  const auto bytes = text ? bytes_from_limit_in_bytes(*text) : std::nullopt;
  if (!bytes) return std::nullopt;
  return MemoryLimit{*bytes, "cgroup v1 memory.limit_in_bytes"};
}

std::string cpus_text(double cpus) {
  const bool whole = std::floor(cpus) == cpus;
  std::string text = whole ? fmt::format("{:.0f}", cpus) : fmt::format("{:.2f}", cpus);
  if (!whole) {
    while (text.back() == '0') text.pop_back();
  }
  return text + (cpus == 1 ? " CPU" : " CPUs");
}

}  // namespace

std::optional<double> cpus_from_cpu_max(std::string_view text) {
  text = trim(text);
  const auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  if (text.substr(0, space) == "max") return std::nullopt;
  const auto quota = parse_number<std::uint64_t>(text.substr(0, space));
  const auto period = parse_number<std::uint64_t>(text.substr(space + 1));
  if (!quota || !period || *quota == 0 || *period == 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> cpus_from_cfs(std::string_view quota_us, std::string_view period_us) {
  // -1 = no quota.
  const auto quota = parse_number<std::int64_t>(trim(quota_us));
  const auto period = parse_number<std::int64_t>(trim(period_us));
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<std::uint64_t> bytes_from_memory_max(std::string_view text) {
  text = trim(text);
  if (text == "max") return std::nullopt;
  const auto bytes = parse_number<std::uint64_t>(text);
  if (!bytes || *bytes == 0 || *bytes >= kUnlimitedFrom) return std::nullopt;
  return bytes;
}

std::optional<std::uint64_t> bytes_from_limit_in_bytes(std::string_view text) {
  const auto bytes = parse_number<std::uint64_t>(trim(text));
  if (!bytes || *bytes == 0 || *bytes >= kUnlimitedFrom) return std::nullopt;
  return bytes;
}

std::optional<std::uint64_t> mem_total_bytes(std::string_view proc_meminfo) {
  for (auto text = proc_meminfo; !text.empty();) {
    const auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.starts_with("MemTotal:")) continue;
    line.remove_prefix(9);
    line = trim(line);
    if (!line.ends_with(" kB")) return std::nullopt;
    line.remove_suffix(3);
    const auto kib = parse_number<std::uint64_t>(trim(line));
    if (!kib) return std::nullopt;
    return *kib * 1024;
  }
  return std::nullopt;
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 5> kUnits = {"B", "KiB", "MiB", "GiB", "TiB"};
  auto value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < kUnits.size()) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0 || std::floor(value) == value) return fmt::format("{:.0f} {}", value, kUnits[unit]);
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

ResourceLimits read_resource_limits(const std::string& root) {
  ResourceLimits limits;
  limits.affinity_cpus = affinity_cpus();
  if (const auto meminfo = read_file(root + "/proc/meminfo")) {
    limits.host_memory = mem_total_bytes(*meminfo).value_or(0);
  }
  const auto mountinfo = read_file(root + "/proc/self/mountinfo");
  const auto membership = read_file(root + "/proc/self/cgroup");
  if (!mountinfo || !membership) return limits;
  const auto mounts = parse_cgroup_mounts(*mountinfo);
  const auto members = parse_cgroup_memberships(*membership);

  limits.cpu_quota =
      tightest<CpuQuota>(root, cgroup_dirs_for(mounts, members, "cpu"), read_cpu_quota);
  limits.memory_limit =
      tightest<MemoryLimit>(root, cgroup_dirs_for(mounts, members, "memory"), read_memory_limit);
  return limits;
}

Derived auto_workers(const ResourceLimits& limits) {
  const unsigned affinity = std::max(limits.affinity_cpus, 1U);
  if (limits.cpu_quota && limits.cpu_quota->cpus < affinity) {
    const auto count =
        std::max<std::uint64_t>(static_cast<std::uint64_t>(std::floor(limits.cpu_quota->cpus)), 1);
    return {count, "auto: " + std::to_string(count) + " = cgroup CPU quota (" +
                       cpus_text(limits.cpu_quota->cpus) + ", " + limits.cpu_quota->where + ")"};
  }
  std::string reason = "auto: " + std::to_string(affinity) + " = CPUs this process may run on";
  if (limits.cpu_quota) {
    reason += " (the cgroup CPU quota allows " + cpus_text(limits.cpu_quota->cpus) + ")";
  }
  return {affinity, reason};
}

Derived auto_max_memory(const ResourceLimits& limits, unsigned workers) {
  workers = std::max(workers, 1U);
  std::uint64_t limit = limits.host_memory;
  std::string of =
      "the host's memory " + human_bytes(limits.host_memory) + " (no cgroup memory limit)";
  if (limits.memory_limit &&
      (limits.host_memory == 0 || limits.memory_limit->bytes < limits.host_memory)) {
    limit = limits.memory_limit->bytes;
    of = "the cgroup memory limit " + human_bytes(limit) + " (" + limits.memory_limit->where + ")";
  }
  if (limit == 0) return {0, "auto: off (neither a cgroup memory limit nor /proc/meminfo)"};
  const std::uint64_t share = limit / 10 * 9 / workers;
  return {share, "auto: " + human_bytes(share) + " = 90% of " + of + " / " +
                     std::to_string(workers) + (workers == 1 ? " worker" : " workers")};
}

}  // namespace forkd::daemon
