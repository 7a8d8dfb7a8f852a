#include "daemon/cpu_count.hpp"

#include <gtest/gtest.h>

namespace {

using forkd::daemon::cgroup_v2_path;
using forkd::daemon::cpus_from_cpu_max;

TEST(CpuCountTest, CpuMaxQuotaRoundsUp) {
  EXPECT_EQ(cpus_from_cpu_max("200000 100000\n"), 2U);
  EXPECT_EQ(cpus_from_cpu_max("150000 100000"), 2U);
  EXPECT_EQ(cpus_from_cpu_max("50000 100000"), 1U);
  EXPECT_EQ(cpus_from_cpu_max("6400000 100000"), 64U);
}

TEST(CpuCountTest, UnlimitedOrMalformedQuotaGivesNoCap) {
  EXPECT_FALSE(cpus_from_cpu_max("max 100000\n"));
  EXPECT_FALSE(cpus_from_cpu_max(""));
  EXPECT_FALSE(cpus_from_cpu_max("abc 100000"));
  EXPECT_FALSE(cpus_from_cpu_max("100000 0"));
  EXPECT_FALSE(cpus_from_cpu_max("100000"));
}

TEST(CpuCountTest, FindsTheUnifiedHierarchyLine) {
  EXPECT_EQ(cgroup_v2_path("0::/system.slice/forkd.service\n"), "/system.slice/forkd.service");
  EXPECT_EQ(cgroup_v2_path("12:cpu,cpuacct:/x\n0::/kubepods/pod1\n"), "/kubepods/pod1");
  EXPECT_FALSE(cgroup_v2_path("12:cpu,cpuacct:/x\n"));
}

TEST(CpuCountTest, UsableCpusIsAtLeastOneAndAtMostTheAffinityMask) {
  const unsigned cpus = forkd::daemon::usable_cpus();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_GE(cpus, 1U);
  EXPECT_LE(cpus, static_cast<unsigned>(CPU_COUNT(&set)));
}

}  // namespace
