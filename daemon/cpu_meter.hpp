// CPU% of the master and each worker for `forkctl status`, measured between two status requests
// (the first one: since the process started), so that nothing samples /proc while nobody asks:
// an idle master stays asleep.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <set>

namespace forkd::daemon {

class CpuMeter {
 public:
  using Clock = std::chrono::steady_clock;

  // Percent of one CPU that `pid` used since it was last measured, or since `started` the first
  // time, given the CPU seconds it has used in all (/proc/PID/stat).
  double percent(pid_t pid, double cpu_seconds, Clock::time_point now, Clock::time_point started);
  // Drops what is kept for processes that are gone.
  void keep_only(const std::set<pid_t>& live);

 private:
  struct Sample {
    double cpu_seconds = 0;
    Clock::time_point at;
  };
  std::map<pid_t, Sample> last_;
};

}  // namespace forkd::daemon
