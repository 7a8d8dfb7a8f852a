// proc_stats: the /proc parsers on sample text, and the readers on this process, a zombie
// child and a pid that cannot exist.
#include "daemon/proc_stats.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "daemon/cpu_meter.hpp"

namespace {

using forkd::daemon::parse_smaps_rollup_pss;
using forkd::daemon::parse_statm_rss_pages;
using forkd::daemon::read_pss_bytes;
using forkd::daemon::read_rss_bytes;

constexpr const char* kSmapsRollup =
    "563555157000-7fff0bb94000 ---p 00000000 00:00 0                          [rollup]\n"
    "Rss:                1740 kB\n"
    "Pss:                 200 kB\n"
    "Pss_Dirty:           112 kB\n"
    "Pss_Anon:            112 kB\n"
    "Pss_File:             88 kB\n"
    "Pss_Shmem:             0 kB\n"
    "Shared_Clean:       1588 kB\n"
    "Swap:                  0 kB\n"
    "SwapPss:               0 kB\n";

TEST(ParseSmapsRollupPss, ReadsThePssLineInBytes) {
  EXPECT_EQ(parse_smaps_rollup_pss(kSmapsRollup), std::uint64_t{200} * 1024);
}

TEST(ParseSmapsRollupPss, IgnoresThePssBreakdownLines) {
  // Older kernels print no breakdown, newer ones may list it first: only "Pss:" counts.
  EXPECT_EQ(parse_smaps_rollup_pss("Pss_Anon: 5 kB\nPss_File:\t6 kB\nPss:\t7 kB\n"), 7 * 1024U);
  EXPECT_EQ(parse_smaps_rollup_pss("Pss_Anon: 5 kB\nSwapPss: 1 kB\n"), std::nullopt);
}

TEST(ParseSmapsRollupPss, HandlesALastLineWithoutNewline) {
  EXPECT_EQ(parse_smaps_rollup_pss("Rss: 9 kB\nPss: 3 kB"), 3 * 1024U);
}

TEST(ParseSmapsRollupPss, RefusesMalformedText) {
  for (const char* text :
       {"", "\n", "Rss: 1 kB\n", "Pss:\n", "Pss: kB\n", "Pss: 12\n", "Pss: -3 kB\n", "Pss: 12 MB\n",
        " Pss: 12 kB\n", "Pss: 99999999999999999999 kB\n", "Pss: 18014398509481984 kB\n"}) {
    EXPECT_EQ(parse_smaps_rollup_pss(text), std::nullopt) << text;
  }
}

TEST(ParseStatmRssPages, ReadsTheSecondField) {
  EXPECT_EQ(parse_statm_rss_pages("765 436 408 5 0 123 0\n"), 436U);
  EXPECT_EQ(parse_statm_rss_pages("0 0 0 0 0 0 0\n"), 0U);  // a zombie
  EXPECT_EQ(parse_statm_rss_pages("10 7"), 7U);
  EXPECT_EQ(parse_statm_rss_pages("10 7\n"), 7U);
}

TEST(ParseStatmRssPages, RefusesMalformedText) {
  for (const char* text : {"", "\n", "765", "765 ", "765\n436", "765 x 1", "765 -1 2", "765 43x 1",
                           "x 436 1", "765 99999999999999999999 1"}) {
    EXPECT_EQ(parse_statm_rss_pages(text), std::nullopt) << text;
  }
}

TEST(ReadProcStats, ReadsThisProcess) {
  // Touch some private memory so both readings are clearly above zero.
  std::vector<char> ballast(4 << 20, 'x');
  const auto pss = read_pss_bytes(::getpid());
  const auto rss = read_rss_bytes(::getpid());
  ASSERT_TRUE(pss.has_value());
  ASSERT_TRUE(rss.has_value());
  EXPECT_GE(*pss, ballast.size());
  EXPECT_GE(*rss, ballast.size());
  // Shared pages count in full in RSS and only in part in PSS (taken a moment apart).
  EXPECT_LE(*pss, *rss + (1U << 20));
  EXPECT_EQ(*pss % 1024, 0U);
  EXPECT_EQ(*rss % static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)), 0U);
}

TEST(ReadProcStats, AgreesWithTheKernelsOwnStatusLine) {
  // /proc/PID/status VmRSS is in kB, like statm's pages times the page size.
  std::ifstream status("/proc/self/status");
  std::string line;
  std::optional<std::uint64_t> vm_rss;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) vm_rss = std::stoull(line.substr(6)) * 1024;
  }
  ASSERT_TRUE(vm_rss.has_value());
  const auto rss = read_rss_bytes(::getpid());
  ASSERT_TRUE(rss.has_value());
  // Read a moment apart: allow a little drift.
  EXPECT_NEAR(static_cast<double>(*rss), static_cast<double>(*vm_rss), 4.0 * (1 << 20));
}

TEST(ReadProcStats, MissingProcessIsNullopt) {
  // Above the kernel's pid_max no process can exist.
  std::ifstream pid_max_file("/proc/sys/kernel/pid_max");
  long pid_max = 0;
  pid_max_file >> pid_max;
  ASSERT_GT(pid_max, 0);
  const auto missing = static_cast<pid_t>(pid_max + 1);
  EXPECT_EQ(read_pss_bytes(missing), std::nullopt);
  EXPECT_EQ(read_rss_bytes(missing), std::nullopt);
  EXPECT_EQ(read_pss_bytes(0), std::nullopt);
  EXPECT_EQ(read_rss_bytes(-1), std::nullopt);
}

TEST(ReadProcStats, ZombieHasNoPss) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Reaped by pid whatever the assertions below do.
  struct Reaper {
    explicit Reaper(pid_t reaped) : pid(reaped) {}
    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;
    Reaper(Reaper&&) = delete;
    Reaper& operator=(Reaper&&) = delete;
    ~Reaper() {
      int status = 0;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    pid_t pid;
  } reaper(child);
  siginfo_t info{};
  // WNOWAIT: wait until it has exited but leave it a zombie, as the master sees a worker
  // that died before the reaper ran.
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(read_pss_bytes(child), std::nullopt);
  const auto rss = read_rss_bytes(child);
  EXPECT_TRUE(!rss.has_value() || *rss == 0);
}

}  // namespace

namespace {

TEST(ProcStatCpu, UserPlusSystemTicksCountedAfterTheLastParenthesis) {
  // A command name with spaces and ")" in it must not shift the fields.
  const std::string stat =
      "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 75 0 0 20 0 1 0 100 0 0\n";
  EXPECT_EQ(forkd::daemon::parse_stat_cpu_ticks(stat), 325U);
  EXPECT_FALSE(forkd::daemon::parse_stat_cpu_ticks("4242 (x) S 1 2"));
  EXPECT_FALSE(forkd::daemon::parse_stat_cpu_ticks("no parenthesis"));
  EXPECT_FALSE(forkd::daemon::parse_stat_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 7 0"));
}

TEST(ProcStatState, TheLetterAfterTheLastParenthesisAndAStoppedChild) {
  EXPECT_EQ(forkd::daemon::parse_stat_state("4242 (my (odd) app) T 1 4242\n"), 'T');
  EXPECT_EQ(forkd::daemon::parse_stat_state("7 (x) t 1"), 't');
  EXPECT_FALSE(forkd::daemon::parse_stat_state("7 (x) "));
  EXPECT_FALSE(forkd::daemon::parse_stat_state("7 (x) ST 1"));
  EXPECT_FALSE(forkd::daemon::parse_stat_state("no parenthesis"));
  EXPECT_FALSE(forkd::daemon::process_stopped(::getpid()));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, WUNTRACED), child);
  EXPECT_TRUE(WIFSTOPPED(status));
  EXPECT_TRUE(forkd::daemon::process_stopped(child));
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(forkd::daemon::process_stopped(child));  // gone
}

TEST(ProcStatCpu, OurOwnCpuTimeAndCommandLineAreReadable) {
  EXPECT_TRUE(forkd::daemon::read_cpu_seconds(::getpid()));
  const auto line = forkd::daemon::read_command_line(::getpid());
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("unit_tests"), std::string::npos) << *line;
  EXPECT_FALSE(forkd::daemon::read_cpu_seconds(-1));
}

TEST(CpuMeter, PercentBetweenTwoReadingsAndSinceStartTheFirstTime) {
  using Clock = forkd::daemon::CpuMeter::Clock;
  forkd::daemon::CpuMeter meter;
  const Clock::time_point start{};
  // 0.5 s of CPU in the first 2 s of its life: 25 %.
  EXPECT_DOUBLE_EQ(meter.percent(7, 0.5, start + std::chrono::seconds(2), start), 25.0);
  // Then 1 s more in 1 s: 100 %.
  EXPECT_DOUBLE_EQ(meter.percent(7, 1.5, start + std::chrono::seconds(3), start), 100.0);
  // Asked again at once: nothing to divide by.
  EXPECT_DOUBLE_EQ(meter.percent(7, 1.5, start + std::chrono::seconds(3), start), 0.0);
  // A reused pid (less CPU than before) starts over instead of going negative.
  EXPECT_DOUBLE_EQ(meter.percent(7, 0.1, start + std::chrono::seconds(4), start), 0.0);
  meter.keep_only({});
  EXPECT_DOUBLE_EQ(meter.percent(7, 0.4, start + std::chrono::seconds(4), start), 10.0);
}

}  // namespace
