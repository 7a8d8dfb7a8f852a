// The metrics the master exposes (SPEC "metrics.listen"): a plain snapshot the master fills
// and its rendering in the Prometheus text exposition format 0.0.4. Pure: no I/O, no clock,
// no reading of /proc here; the master gathers the numbers, metrics_server serves the text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::daemon {

struct MetricsSnapshot {
  // Keys: starting ready stopping backoff failed. All five are rendered, 0 when absent;
  // any other key is rendered after them.
  std::map<std::string, unsigned> workers_by_state;
  // reason: signal | exit | timeout | memory | lifetime.
  struct WorkerRestarts {
    unsigned worker = 0;
    std::string reason;
    std::uint64_t count = 0;
  };
  std::vector<WorkerRestarts> restarts;
  // reuseport: each process's steering state (in, not ready, draining, stalled).
  struct WorkerSteering {
    unsigned worker = 0;
    std::string state;
  };
  std::vector<WorkerSteering> steering;
  // Connections its processes accepted (the exited ones' included) and hold open now, as they
  // report them; slots that never did are left out.
  struct WorkerConnections {
    unsigned worker = 0;
    std::uint64_t accepted = 0;
    std::optional<std::uint64_t> open;
  };
  std::vector<WorkerConnections> connections;
  std::uint64_t reloads_ok = 0, reloads_failed = 0;
  // A reading that is nullopt (process gone, /proc unreadable) is left out of the output.
  struct WorkerMemory {
    unsigned worker = 0;
    pid_t pid = 0;
    std::optional<std::uint64_t> pss_bytes, rss_bytes;
  };
  std::vector<WorkerMemory> memory;
  std::uint64_t ipc_to_worker = 0, ipc_from_worker = 0;
  double master_uptime_seconds = 0;
  unsigned generation = 0;
  unsigned target_workers = 0;
  // What the cgroups grant (left out when unlimited) and the max_memory in force (0 = off).
  std::optional<double> cpu_quota;
  std::optional<std::uint64_t> memory_limit_bytes;
  std::uint64_t worker_max_memory_bytes = 0;
};

// The Content-Type of render_prometheus()'s output.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Every family with its # HELP and # TYPE lines, once, samples grouped under them and sorted
// by worker id. Entries that name the same series twice (one slot listed twice while a
// rolling restart replaces its process) are summed, so no series appears twice.
[[nodiscard]] std::string render_prometheus(const MetricsSnapshot& snapshot);

// A label value escaped for the text format: backslash, double quote and newline.
[[nodiscard]] std::string escape_label_value(std::string_view value);

}  // namespace forkd::daemon
