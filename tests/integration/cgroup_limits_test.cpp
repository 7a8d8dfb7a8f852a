// `workers: auto` and `max_memory: auto` under real cgroup limits: forkd started in a child
// cgroup made for the test (v1 or v2, whichever the machine has writable), as a container
// runtime or systemd would start it. A reload reads the limits anew (a pod resized in place).
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

bool has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// A child cgroup of the test process's own, removed when the test ends. Declare it before the
// Cluster, so that forkd and its workers are gone (killed and reaped) when it is removed.
class TestCgroup {
 public:
  // A child in the v1 hierarchy carrying `controller`; nullopt with the reason when there is none
  // or it cannot be written.
  static std::optional<TestCgroup> v1(const std::string& controller, std::string& why_not) {
    for (const auto& line : split(read_text("/proc/self/mountinfo"), '\n')) {
      const auto dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      const auto before = split(line.substr(0, dash), ' ');
      const auto after = split(line.substr(dash + 3), ' ');
      if (before.size() < 5 || after.size() < 3 || after[0] != "cgroup") continue;
      if (!has(split(after[2], ','), controller)) continue;
      const auto own =
          own_path([&](const std::vector<std::string>& names) { return has(names, controller); });
      if (!own) break;
      return make(before[4], before[3], *own, "cgroup v1 " + controller, why_not);
    }
    why_not = "no cgroup v1 hierarchy carries the " + controller + " controller";
    return std::nullopt;
  }

  // A child in the v2 hierarchy with `controller` enabled for it.
  static std::optional<TestCgroup> v2(const std::string& controller, std::string& why_not) {
    for (const auto& line : split(read_text("/proc/self/mountinfo"), '\n')) {
      const auto dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      const auto before = split(line.substr(0, dash), ' ');
      const auto after = split(line.substr(dash + 3), ' ');
      if (before.size() < 5 || after.empty() || after[0] != "cgroup2") continue;
      const auto own = own_path([](const std::vector<std::string>& names) {
        return names.empty() || (names.size() == 1 && names[0].empty());
      });
      if (!own) break;
      const std::string parent = before[4] + (*own == "/" ? "" : *own);
      std::stringstream offered(read_text(parent + "/cgroup.controllers"));
      std::vector<std::string> names{std::istream_iterator<std::string>(offered), {}};
      if (!has(names, controller)) {
        why_not = "cgroup v2 at " + before[4] + " does not offer the " + controller +
                  " controller (it is bound to a v1 hierarchy, or not delegated)";
        return std::nullopt;
      }
      std::ofstream enable(parent + "/cgroup.subtree_control");
      enable << "+" << controller;
      enable.close();
      if (!enable) {
        why_not = "cannot enable " + controller + " in " + parent +
                  "/cgroup.subtree_control (a cgroup with processes of its own cannot)";
        return std::nullopt;
      }
      return make(before[4], before[3], *own, "cgroup v2", why_not);
    }
    why_not = "no cgroup v2 hierarchy is mounted";
    return std::nullopt;
  }

  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;
  TestCgroup(TestCgroup&& other) noexcept : path(std::exchange(other.path, {})) {}
  TestCgroup& operator=(TestCgroup&&) = delete;
  ~TestCgroup() {
    if (path.empty()) return;
    // The last reaped process may take the kernel a moment to leave the cgroup.
    (void)wait_until([&] { return ::rmdir(path.c_str()) == 0 || errno != EBUSY; }, 10s);
  }

  void write(const std::string& file, const std::string& value) const {
    std::ofstream out(path + "/" + file);
    out << value;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + value + " to " + path + "/" + file);
  }

  std::string path;

 private:
  explicit TestCgroup(std::string dir) : path(std::move(dir)) {}

  template <typename Matches>
  static std::optional<std::string> own_path(Matches matches) {
    for (const auto& line : split(read_text("/proc/self/cgroup"), '\n')) {
      const auto first = line.find(':');
      const auto second = line.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      if (matches(split(line.substr(first + 1, second - first - 1), ',')))
        return line.substr(second + 1);
    }
    return std::nullopt;
  }

  static std::optional<TestCgroup> make(const std::string& mount_point, const std::string& root,
                                        const std::string& own, const std::string& kind,
                                        std::string& why_not) {
    std::string below = own;
    if (root != "/" && own.rfind(root, 0) == 0) below = own.substr(root.size());
    if (below == "/") below.clear();
    const std::string dir = mount_point + below + "/forkd-test-" + std::to_string(::getpid()) +
                            "-" + std::to_string(next_id()++);
    if (::mkdir(dir.c_str(), 0755) != 0) {
      why_not = "cannot create a " + kind + " cgroup at " + dir + ": " + std::strerror(errno);
      return std::nullopt;
    }
    return TestCgroup(dir);
  }

  static int& next_id() {
    static int id = 0;
    return id;
  }
};

// {} until the control socket answers.
json status(Cluster& c) {
  auto r = forkctl(c, {"--json", "status"});
  return r.exit_code() == 0 ? json::parse(r.out) : json::object();
}

bool lists_pid(const json& s, pid_t pid) {
  if (!s.contains("workers")) return true;
  for (const auto& w : s["workers"])
    if (w["pid"] == pid) return true;
  return false;
}

unsigned affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(CPU_COUNT(&set));
}

bool all_ready(const json& s, unsigned n) {
  if (!s.contains("workers") || s["master"]["workers_target"] != n) return false;
  if (s["workers"].size() != n) return false;  // a replaced worker still stopping
  unsigned ready = 0;
  for (const auto& w : s["workers"]) ready += w["state"] == "ready" ? 1U : 0U;
  return ready == n;
}

// Starts forkd in `cgroup` and waits until `n` workers are ready; returns the last status.
json start_in(Cluster& c, const TestCgroup& cgroup, const std::string& body, unsigned n) {
  c.cgroup = cgroup.path;
  c.start(body);
  json s;
  EXPECT_TRUE(wait_until([&] { return all_ready(s = status(c), n); }, 30s))
      << "expected " << n << " ready workers: " << s.dump();
  return s;
}

void expect_workers_auto_follow_the_quota(const TestCgroup& cgroup, const std::string& where,
                                          const std::function<void(double)>& set_quota) {
  if (affinity_cpus() < 2) GTEST_SKIP() << "needs 2 CPUs to tell a 1.5 CPU quota from affinity";
  set_quota(1.5);
  Cluster c;
  json s = start_in(c, cgroup, "workers: auto\n", 1);
  EXPECT_EQ(s["master"]["workers_from"],
            "auto: 1 = cgroup CPU quota (1.5 CPUs, " + where + " in " + cgroup.path + ")");
  EXPECT_EQ(s["master"]["limits"]["cpu_quota"], 1.5);
  EXPECT_TRUE(c.forkd.wait_for_log("workers: auto: 1 = cgroup CPU quota", 10s));
  const auto table = forkctl(c, {"status"});
  EXPECT_NE(table.out.find("workers: 1 (auto: 1 = cgroup CPU quota (1.5 CPUs"), std::string::npos)
      << table.out;

  // The pod is given 2 CPUs: the next reload reads the quota anew and starts a second worker.
  set_quota(2);
  const auto reload = forkctl(c, {"reload"});
  EXPECT_EQ(reload.exit_code(), 0) << reload.out << reload.err;
  EXPECT_TRUE(wait_until([&] { return all_ready(s = status(c), 2); }, 30s)) << s.dump();

  // Scaled by hand, then back to what the quota allows, read anew again.
  ASSERT_EQ(forkctl(c, {"scale", "3"}).exit_code(), 0);
  EXPECT_TRUE(wait_until([&] { return all_ready(s = status(c), 3); }, 30s)) << s.dump();
  EXPECT_EQ(s["master"]["workers_from"], "scaled to 3 (forkctl scale or SIGTTIN/SIGTTOU)");
  set_quota(1);
  const auto automatic = forkctl(c, {"scale", "auto"});
  EXPECT_EQ(automatic.exit_code(), 0) << automatic.err;
  EXPECT_EQ(automatic.out, "scaling from 3 to 1 worker (auto: 1 = cgroup CPU quota (1 CPU, " +
                               where + " in " + cgroup.path + "))\n");
  EXPECT_TRUE(wait_until([&] { return all_ready(s = status(c), 1); }, 30s)) << s.dump();
}

TEST(CgroupLimits, WorkersAutoFollowsACgroupV1CpuQuotaAndAReloadReadsItAnew) {
  std::string why_not;
  auto cgroup = TestCgroup::v1("cpu", why_not);
  if (!cgroup) GTEST_SKIP() << why_not;
  expect_workers_auto_follow_the_quota(*cgroup, "cgroup v1 cpu.cfs_quota_us", [&](double cpus) {
    cgroup->write("cpu.cfs_period_us", "100000");
    cgroup->write("cpu.cfs_quota_us", std::to_string(static_cast<long>(cpus * 100000)));
  });
}

TEST(CgroupLimits, WorkersAutoFollowsACgroupV2CpuMax) {
  std::string why_not;
  auto cgroup = TestCgroup::v2("cpu", why_not);
  if (!cgroup) GTEST_SKIP() << why_not;
  expect_workers_auto_follow_the_quota(*cgroup, "cgroup v2 cpu.max", [&](double cpus) {
    cgroup->write("cpu.max", std::to_string(static_cast<long>(cpus * 100000)) + " 100000");
  });
}

TEST(CgroupLimits, MaxMemoryAutoRecyclesAWorkerOverItsShareOfTheMemoryLimit) {
  std::string why_v1;
  std::string why_v2;
  auto v1 = TestCgroup::v1("memory", why_v1);
  const bool is_v1 = v1.has_value();
  auto cgroup = is_v1 ? std::move(v1) : TestCgroup::v2("memory", why_v2);
  const std::string file = is_v1 ? "memory.limit_in_bytes" : "memory.max";
  const std::string where = is_v1 ? "cgroup v1 memory.limit_in_bytes" : "cgroup v2 memory.max";
  if (!cgroup) GTEST_SKIP() << why_v1 << "; " << why_v2;
  constexpr std::uint64_t kLimit = 256ULL << 20;
  cgroup->write(file, std::to_string(kLimit));
  Cluster c;
  json s = start_in(c, *cgroup,
                    "workers: 2\nworker:\n  command: [python3, " + fixture("ipc_worker.py") +
                        "]\n  ready: message\n  max_memory: auto\n",
                    2);
  constexpr std::uint64_t kShare = kLimit / 10 * 9 / 2;  // 115.2 MiB
  EXPECT_EQ(s["master"]["limits"]["memory_bytes"], kLimit);
  EXPECT_EQ(s["master"]["limits"]["memory_from"], where + " in " + cgroup->path);
  EXPECT_EQ(s["master"]["max_memory"]["bytes"], kShare);
  EXPECT_EQ(s["master"]["max_memory"]["from"],
            "auto: 115.2 MiB = 90% of the cgroup memory limit 256 MiB (" + where + " in " +
                cgroup->path + ") / 2 workers");

  // 150 MiB fits the cgroup but not one worker's share: that worker is replaced, gracefully.
  pid_t hog = 0;
  for (const auto& w : s["workers"])
    if (w["id"] == 0) hog = w["pid"].get<pid_t>();
  ASSERT_GT(hog, 0);
  ASSERT_EQ(forkctl(c, {"send", "0", R"({"alloc_mib":150})", "--wait", "10s"}).exit_code(), 0);
  ASSERT_TRUE(c.forkd.wait_for_log("worker 0 \\(pid " + std::to_string(hog) +
                                       "\\) uses \\d+ bytes PSS, over max_memory " +
                                       std::to_string(kShare),
                                   20s));
  EXPECT_TRUE(wait_until(
      [&] {
        s = status(c);
        return all_ready(s, 2) && !lists_pid(s, hog);
      },
      30s))
      << s.dump();
  EXPECT_FALSE(process_alive(hog));
}

}  // namespace
