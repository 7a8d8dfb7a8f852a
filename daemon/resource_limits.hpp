// What this process may use, as a container or a systemd unit limits it: CPUs (the affinity mask
// and the cgroup CPU quota, v1 or v2) and memory (the cgroup memory limit, and the host's). Read
// at start and on every reload; `workers: auto` and `max_memory: auto` are derived from it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace forkd::daemon {

struct CpuQuota {
  double cpus = 0;    // quota / period: 1.5 for "150000 100000"
  std::string where;  // "cgroup v2 cpu.max in /sys/fs/cgroup/kubepods/pod1"
};

struct MemoryLimit {
  std::uint64_t bytes = 0;
  std::string where;  // "cgroup v1 memory.limit_in_bytes in /sys/fs/cgroup/memory/x"
};

struct ResourceLimits {
  unsigned affinity_cpus = 1;
  std::optional<CpuQuota> cpu_quota;        // the tightest on the way up; none = unlimited
  std::optional<MemoryLimit> memory_limit;  // same
  std::uint64_t host_memory = 0;            // MemTotal; 0 when /proc/meminfo is unreadable
};

// One value with the sentence that says where it came from, for status and the log.
struct Derived {
  std::uint64_t value = 0;
  std::string reason;
};

// Reads /proc/self/{mountinfo,cgroup}, the cgroup files they lead to, /proc/meminfo and the
// affinity mask. `root` prefixes every path (tests build a fake tree); "" = the real one.
// Never throws: what cannot be read limits nothing.
[[nodiscard]] ResourceLimits read_resource_limits(const std::string& root = "");

// `workers: auto`: min(affinity CPUs, quota) rounded down as Puma's `:auto` does (a quota of 1.5
// CPUs runs 1 worker: a second would be throttled), never below 1.
[[nodiscard]] Derived auto_workers(const ResourceLimits& limits);

// `max_memory: auto`: 90 % of the memory limit (the cgroup's, or the host's when there is none)
// divided by the worker count; the other 10 % is headroom for the master, a replacement worker
// starting while the old one drains, and page cache.
[[nodiscard]] Derived auto_max_memory(const ResourceLimits& limits, unsigned workers);

// Parsers of the kernel's files; nullopt = no limit (or unreadable).
[[nodiscard]] std::optional<double> cpus_from_cpu_max(std::string_view text);
[[nodiscard]] std::optional<double> cpus_from_cfs(std::string_view quota_us,
                                                  std::string_view period_us);
[[nodiscard]] std::optional<std::uint64_t> bytes_from_memory_max(std::string_view text);
[[nodiscard]] std::optional<std::uint64_t> bytes_from_limit_in_bytes(std::string_view text);
[[nodiscard]] std::optional<std::uint64_t> mem_total_bytes(std::string_view proc_meminfo);

// 1.5 GiB, 512 MiB, 900 KiB: approximate, for people.
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

}  // namespace forkd::daemon
