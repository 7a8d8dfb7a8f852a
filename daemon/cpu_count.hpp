// `workers: auto`: how many CPUs this process may really use — the affinity mask, capped by
// the cgroup v2 CPU quota (cpu.max) of its cgroup and every ancestor, as a container sees it.
#pragma once

#include <optional>
#include <string_view>

namespace forkd::daemon {

// CPUs granted by one cpu.max line ("max 100000" -> none, "150000 100000" -> 2: rounded up).
[[nodiscard]] std::optional<unsigned> cpus_from_cpu_max(std::string_view line);
// The cgroup v2 path of this process from /proc/self/cgroup text ("0::/a/b" -> "/a/b").
[[nodiscard]] std::optional<std::string_view> cgroup_v2_path(std::string_view proc_self_cgroup);
// min(affinity CPUs, quota of the nearest limiting cgroup), at least 1.
[[nodiscard]] unsigned usable_cpus();

}  // namespace forkd::daemon
