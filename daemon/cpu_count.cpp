#include "daemon/cpu_count.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace forkd::daemon {

namespace {

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::optional<unsigned> cpus_from_cpu_max(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto quota_text = line.substr(0, space);
  if (quota_text == "max") return std::nullopt;
  const auto quota = parse_u64(quota_text);
  const auto period = parse_u64(line.substr(space + 1));
  if (!quota || !period || *period == 0 || *quota == 0) return std::nullopt;
  const auto cpus = (*quota + *period - 1) / *period;
  return static_cast<unsigned>(std::max<std::uint64_t>(cpus, 1));
}

std::optional<std::string_view> cgroup_v2_path(std::string_view proc_self_cgroup) {
  std::string_view text = proc_self_cgroup;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const auto line = text.substr(0, nl);
    if (line.starts_with("0::")) return line.substr(3);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

unsigned usable_cpus() {
  unsigned cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    cpus = static_cast<unsigned>(std::max(CPU_COUNT(&set), 1));
  }
  const auto self = read_file("/proc/self/cgroup");
  if (!self) return cpus;
  const auto path = cgroup_v2_path(*self);
  if (!path) return cpus;
  // Walk from our cgroup up to the root: the tightest quota on the way applies.
  std::string dir(*path);
  for (;;) {
    if (const auto max = read_file("/sys/fs/cgroup" + dir + "/cpu.max")) {
      if (const auto quota = cpus_from_cpu_max(*max)) cpus = std::min(cpus, *quota);
    }
    if (dir.empty() || dir == "/") break;
    const auto slash = dir.rfind('/');
    dir = slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
  }
  return cpus;
}

}  // namespace forkd::daemon
