#include "daemon/cpu_meter.hpp"

#include <algorithm>

namespace forkd::daemon {

double CpuMeter::percent(pid_t pid, double cpu_seconds, Clock::time_point now,
                         Clock::time_point started) {
  const auto it = last_.try_emplace(pid, Sample{0, started}).first;
  const Sample before = it->second;
  it->second = Sample{cpu_seconds, now};
  const double wall = std::chrono::duration<double>(now - before.at).count();
  // Two requests in the same instant, or a pid reused by a new process: nothing to divide by.
  if (wall <= 0 || cpu_seconds < before.cpu_seconds) return 0;
  return std::max(0.0, (cpu_seconds - before.cpu_seconds) / wall * 100);
}

void CpuMeter::keep_only(const std::set<pid_t>& live) {
  std::erase_if(last_, [&](const auto& entry) { return !live.contains(entry.first); });
}

}  // namespace forkd::daemon
