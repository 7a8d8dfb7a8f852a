// CPUs and memory a process may use, read from every cgroup layout: v2, v1 and hybrid, mounted
// anywhere, seen from inside a container. The layouts are fake trees under a temp dir, written as
// the kernel writes the files.
#include "daemon/resource_limits.hpp"

#include <gtest/gtest.h>
#include <sched.h>

#include <filesystem>
#include <fstream>

#include "daemon/cgroup_paths.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::daemon::auto_max_memory;
using forkd::daemon::auto_workers;
using forkd::daemon::bytes_from_limit_in_bytes;
using forkd::daemon::bytes_from_memory_max;
using forkd::daemon::cgroup_dirs_for;
using forkd::daemon::cgroup_walk;
using forkd::daemon::CpuQuota;
using forkd::daemon::cpus_from_cfs;
using forkd::daemon::cpus_from_cpu_max;
using forkd::daemon::MemoryLimit;
using forkd::daemon::parse_cgroup_memberships;
using forkd::daemon::parse_cgroup_mounts;
using forkd::daemon::read_resource_limits;
using forkd::daemon::ResourceLimits;

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

// A fake root: write(path, text) creates parents.
struct FakeRoot {
  forkd::test::TempDir dir;
  void write(const std::string& path, const std::string& text) const {
    const std::filesystem::path full = dir.path() + path;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full) << text;
  }
  [[nodiscard]] ResourceLimits read() const { return read_resource_limits(dir.path()); }
};

// A hybrid host as systemd sets one up: v1 controllers, v2 without them under unified/.
constexpr const char* kHybridMountinfo =
    "30 22 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n";

TEST(CgroupParsers, CpuMaxAndCfsAreQuotaOverPeriod) {
  EXPECT_EQ(cpus_from_cpu_max("200000 100000\n"), 2.0);
  EXPECT_EQ(cpus_from_cpu_max("150000 100000"), 1.5);
  EXPECT_EQ(cpus_from_cpu_max("50000 100000"), 0.5);
  EXPECT_FALSE(cpus_from_cpu_max("max 100000\n"));
  EXPECT_FALSE(cpus_from_cpu_max(""));
  EXPECT_FALSE(cpus_from_cpu_max("abc 100000"));
  EXPECT_FALSE(cpus_from_cpu_max("100000 0"));
  EXPECT_FALSE(cpus_from_cpu_max("100000"));
  EXPECT_EQ(cpus_from_cfs("100000\n", "100000\n"), 1.0);
  EXPECT_EQ(cpus_from_cfs("250000\n", "100000\n"), 2.5);
  EXPECT_FALSE(cpus_from_cfs("-1\n", "100000\n"));
  EXPECT_FALSE(cpus_from_cfs("100000\n", "0\n"));
  EXPECT_FALSE(cpus_from_cfs("x\n", "100000\n"));
}

TEST(CgroupParsers, MemoryLimitsAndTheirUnlimitedSpellings) {
  EXPECT_EQ(bytes_from_memory_max("1073741824\n"), kGiB);
  EXPECT_FALSE(bytes_from_memory_max("max\n"));
  EXPECT_EQ(bytes_from_limit_in_bytes("536870912\n"), kGiB / 2);
  EXPECT_FALSE(bytes_from_limit_in_bytes("9223372036854771712\n"));  // v1's "no limit"
  EXPECT_FALSE(bytes_from_limit_in_bytes("garbage\n"));
  EXPECT_EQ(forkd::daemon::mem_total_bytes("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            16384U * 1024);
  EXPECT_FALSE(forkd::daemon::mem_total_bytes("MemFree: 1 kB\n"));
}

TEST(CgroupPaths, MountsOfEveryVersionWithTheirControllers) {
  const auto mounts = parse_cgroup_mounts(kHybridMountinfo);
  ASSERT_EQ(mounts.size(), 4U);
  EXPECT_EQ(mounts[0].version, 1);
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(mounts[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(mounts[2].controllers, std::vector<std::string>{});  // name=systemd: no controller
  EXPECT_EQ(mounts[3].version, 2);
  EXPECT_EQ(mounts[3].mount_point, "/sys/fs/cgroup/unified");
  // Octal escapes in mount points are decoded.
  const auto odd = parse_cgroup_mounts("1 0 0:1 / /mnt/c\\040g rw - cgroup2 none rw\n");
  ASSERT_EQ(odd.size(), 1U);
  EXPECT_EQ(odd[0].mount_point, "/mnt/c g");
}

TEST(CgroupPaths, MembershipsOfV1AndV2) {
  const auto members = parse_cgroup_memberships(
      "12:cpu,cpuacct:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n1:name=systemd:/x\n0::/a\n");
  ASSERT_EQ(members.size(), 4U);
  EXPECT_EQ(members[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(members[0].path, "/kubepods/pod1/c1");
  EXPECT_EQ(members[3].hierarchy, 0);
  EXPECT_TRUE(members[3].controllers.empty());
  EXPECT_EQ(members[3].path, "/a");
}

TEST(CgroupPaths, AContainerSeesOnlyItsPartOfTheHierarchy) {
  // Docker without a cgroup namespace: the mount's root is the container's cgroup.
  const auto mounts =
      parse_cgroup_mounts("31 30 0:28 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
  const auto inside =
      cgroup_dirs_for(mounts, parse_cgroup_memberships("3:cpu:/docker/abc\n"), "cpu");
  ASSERT_EQ(inside.size(), 1U);
  EXPECT_EQ(inside[0].dir, "/sys/fs/cgroup/cpu");
  const auto below =
      cgroup_dirs_for(mounts, parse_cgroup_memberships("3:cpu:/docker/abc/sub\n"), "cpu");
  EXPECT_EQ(below[0].dir, "/sys/fs/cgroup/cpu/sub");
  // A path outside the mounted part (cgroup namespace "/.."): the mount point is ours.
  const auto outside = cgroup_dirs_for(mounts, parse_cgroup_memberships("3:cpu:/../x\n"), "cpu");
  EXPECT_EQ(outside[0].dir, "/sys/fs/cgroup/cpu");
  // The walk goes up to the mount point, never above it.
  EXPECT_EQ(cgroup_walk(below[0]),
            (std::vector<std::string>{"/sys/fs/cgroup/cpu/sub", "/sys/fs/cgroup/cpu"}));
}

TEST(ResourceLimits, CgroupV2QuotaAnywhereItIsMounted) {
  FakeRoot root;
  root.write("/proc/self/mountinfo", "25 20 0:22 / /run/cg2 rw - cgroup2 cgroup2 rw\n");
  root.write("/proc/self/cgroup", "0::/kubepods/pod1/c1\n");
  root.write("/proc/meminfo", "MemTotal: 8388608 kB\n");
  root.write("/run/cg2/kubepods/pod1/c1/cpu.max", "max 100000\n");
  root.write("/run/cg2/kubepods/pod1/cpu.max", "250000 100000\n");  // the pod's limit: 2.5 CPUs
  root.write("/run/cg2/kubepods/cpu.max", "6400000 100000\n");
  root.write("/run/cg2/kubepods/pod1/c1/memory.max", "max\n");
  root.write("/run/cg2/kubepods/pod1/memory.max", "1073741824\n");
  const auto limits = root.read();
  ASSERT_TRUE(limits.cpu_quota);
  EXPECT_EQ(limits.cpu_quota->cpus, 2.5);
  EXPECT_EQ(limits.cpu_quota->where, "cgroup v2 cpu.max in /run/cg2/kubepods/pod1");
  ASSERT_TRUE(limits.memory_limit);
  EXPECT_EQ(limits.memory_limit->bytes, kGiB);
  EXPECT_EQ(limits.host_memory, 8 * kGiB);
}

TEST(ResourceLimits, CgroupV1QuotaWalkingUpTheHierarchy) {
  FakeRoot root;
  root.write("/proc/self/mountinfo", kHybridMountinfo);
  root.write("/proc/self/cgroup",
             "9:name=systemd:/x\n4:memory:/kube/pod2\n2:cpu,cpuacct:/kube/pod2/c\n0::/x\n");
  root.write("/sys/fs/cgroup/cpu,cpuacct/kube/pod2/c/cpu.cfs_quota_us", "-1\n");
  root.write("/sys/fs/cgroup/cpu,cpuacct/kube/pod2/c/cpu.cfs_period_us", "100000\n");
  root.write("/sys/fs/cgroup/cpu,cpuacct/kube/pod2/cpu.cfs_quota_us", "100000\n");
  root.write("/sys/fs/cgroup/cpu,cpuacct/kube/pod2/cpu.cfs_period_us", "100000\n");
  root.write("/sys/fs/cgroup/memory/kube/pod2/memory.limit_in_bytes", "536870912\n");
  root.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  const auto limits = root.read();
  ASSERT_TRUE(limits.cpu_quota);
  EXPECT_EQ(limits.cpu_quota->cpus, 1.0);
  EXPECT_EQ(limits.cpu_quota->where,
            "cgroup v1 cpu.cfs_quota_us in /sys/fs/cgroup/cpu,cpuacct/kube/pod2");
  ASSERT_TRUE(limits.memory_limit);
  EXPECT_EQ(limits.memory_limit->bytes, kGiB / 2);
}

TEST(ResourceLimits, NoCgroupsOrUnreadableFilesLimitNothing) {
  FakeRoot root;
  root.write("/proc/meminfo", "MemTotal: 1024 kB\n");
  const auto limits = root.read();
  EXPECT_FALSE(limits.cpu_quota);
  EXPECT_FALSE(limits.memory_limit);
  EXPECT_EQ(limits.host_memory, 1024U * 1024);
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(limits.affinity_cpus, static_cast<unsigned>(CPU_COUNT(&set)));
}

TEST(ResourceLimits, AutoWorkersRoundsTheQuotaDownAndNeverBelowOne) {
  ResourceLimits limits;
  limits.affinity_cpus = 64;
  EXPECT_EQ(auto_workers(limits).value, 64U);
  EXPECT_EQ(auto_workers(limits).reason, "auto: 64 = CPUs this process may run on");
  limits.cpu_quota = CpuQuota{2.5, "cgroup v2 cpu.max in /k/p"};
  EXPECT_EQ(auto_workers(limits).value, 2U);
  EXPECT_EQ(auto_workers(limits).reason,
            "auto: 2 = cgroup CPU quota (2.5 CPUs, cgroup v2 cpu.max in /k/p)");
  limits.cpu_quota->cpus = 0.5;
  EXPECT_EQ(auto_workers(limits).value, 1U);
  limits.cpu_quota->cpus = 1;
  EXPECT_EQ(auto_workers(limits).reason,
            "auto: 1 = cgroup CPU quota (1 CPU, cgroup v2 cpu.max in /k/p)");
  // A quota above the affinity mask does not raise the count.
  limits.affinity_cpus = 2;
  limits.cpu_quota->cpus = 8;
  EXPECT_EQ(auto_workers(limits).value, 2U);
  EXPECT_EQ(auto_workers(limits).reason,
            "auto: 2 = CPUs this process may run on (the cgroup CPU quota allows 8 CPUs)");
}

TEST(ResourceLimits, AutoMaxMemoryIsNinetyPercentOfTheLimitPerWorker) {
  ResourceLimits limits;
  limits.host_memory = 16 * kGiB;
  limits.memory_limit = MemoryLimit{kGiB, "cgroup v2 memory.max in /k/p"};
  const auto share = auto_max_memory(limits, 2);
  EXPECT_EQ(share.value, kGiB / 10 * 9 / 2);
  EXPECT_EQ(share.reason,
            "auto: 460.8 MiB = 90% of the cgroup memory limit 1 GiB (cgroup v2 memory.max in "
            "/k/p) / 2 workers");
  // No cgroup limit, or one above the host's memory: the host's memory is the limit.
  limits.memory_limit.reset();
  EXPECT_EQ(auto_max_memory(limits, 1).value, 16 * kGiB / 10 * 9);
  EXPECT_EQ(auto_max_memory(limits, 1).reason,
            "auto: 14.4 GiB = 90% of the host's memory 16 GiB (no cgroup memory limit) / 1 worker");
  limits.memory_limit = MemoryLimit{64 * kGiB, "x"};
  EXPECT_EQ(auto_max_memory(limits, 4).value, 16 * kGiB / 10 * 9 / 4);
}

}  // namespace
