#include "daemon/metrics.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace forkd::daemon {
namespace {

// The states of SPEC "Worker states", in lifecycle order: always rendered, so a dashboard
// sees a 0 rather than a missing series.
constexpr std::array<std::string_view, 5> kWorkerStates = {"starting", "ready", "stopping",
                                                           "backoff", "failed"};

// Appends text exposition lines; each family's HELP/TYPE header is written once.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    append_help(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // `labels` are name/value pairs; values are escaped here, names are ours and plain.
  template <typename Value>
  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              Value value) {
    out_ += name;
    if (labels.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [label, label_value] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += label;
        out_ += "=\"";
        out_ += escape_label_value(label_value);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    append_value(value);
    out_ += '\n';
  }

  void reserve(std::size_t bytes) { out_.reserve(bytes); }
  [[nodiscard]] std::string take() { return std::move(out_); }

 private:
  // HELP text escapes only backslash and newline (quotes stay as they are).
  void append_help(std::string_view help) {
    for (const char c : help) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
  }

  void append_value(std::uint64_t value) {
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.begin(), digits.end(), value);
    out_.append(digits.data(), result.ptr);
  }

  void append_value(unsigned value) { append_value(std::uint64_t{value}); }

  // Shortest round-trip form ("12.5", "1e+21"): what Go's ParseFloat, and so Prometheus, reads.
  void append_value(double value) {
    if (std::isnan(value)) {
      out_ += "NaN";
    } else if (std::isinf(value)) {
      out_ += value > 0 ? "+Inf" : "-Inf";
    } else {
      std::array<char, 32> digits{};
      const auto result = std::to_chars(digits.begin(), digits.end(), value);
      out_.append(digits.data(), result.ptr);
    }
  }

  std::string out_;
};

std::string worker_label(unsigned worker) {
  return std::to_string(worker);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        escaped += "\\\\";
        break;
      case '"':
        escaped += "\\\"";
        break;
      case '\n':
        escaped += "\\n";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

std::string render_prometheus(const MetricsSnapshot& snapshot) {
  Exposition out;
  // ~60 bytes a sample; restarts and memory dominate with many workers.
  out.reserve(2048 + 64 * (snapshot.restarts.size() + 2 * snapshot.memory.size()));

  out.family("forkd_workers", "gauge", "Worker slots by state.");
  for (const std::string_view state : kWorkerStates) {
    const auto found = snapshot.workers_by_state.find(std::string(state));
    out.sample("forkd_workers", {{"state", state}},
               found == snapshot.workers_by_state.end() ? 0U : found->second);
  }
  for (const auto& [state, count] : snapshot.workers_by_state) {
    bool known = false;
    for (const std::string_view name : kWorkerStates) known = known || name == state;
    if (!known) out.sample("forkd_workers", {{"state", state}}, count);
  }

  out.family("forkd_workers_target", "gauge", "Number of worker slots the master maintains.");
  out.sample("forkd_workers_target", {}, snapshot.target_workers);

  std::map<std::pair<unsigned, std::string_view>, std::uint64_t> restarts;
  for (const auto& entry : snapshot.restarts) {
    restarts[{entry.worker, std::string_view(entry.reason)}] += entry.count;
  }
  out.family("forkd_worker_restarts_total", "counter",
             "Worker restarts by slot and reason (signal, exit, timeout, memory, lifetime).");
  for (const auto& [key, count] : restarts) {
    out.sample("forkd_worker_restarts_total",
               {{"worker", worker_label(key.first)}, {"reason", key.second}}, count);
  }

  if (!snapshot.steering.empty()) {
    std::map<std::pair<unsigned, std::string_view>, std::uint64_t> steering;
    for (const auto& entry : snapshot.steering) {
      ++steering[{entry.worker, std::string_view(entry.state)}];
    }
    out.family("forkd_worker_steering", "gauge",
               "reuseport: processes of each slot by steering state (in, not ready, draining, "
               "stalled); only the ones in get new connections.");
    for (const auto& [key, count] : steering) {
      out.sample("forkd_worker_steering",
                 {{"worker", worker_label(key.first)}, {"state", key.second}}, count);
    }
  }

  if (!snapshot.connections.empty()) {
    std::map<unsigned, std::uint64_t> accepted;
    std::map<unsigned, std::uint64_t> open;
    for (const auto& entry : snapshot.connections) {
      accepted[entry.worker] += entry.accepted;
      if (entry.open) open[entry.worker] += *entry.open;
    }
    out.family("forkd_worker_accepted_connections_total", "counter",
               "Connections each slot's workers accepted, as they report them (built-in and "
               "library workers).");
    for (const auto& [worker, count] : accepted) {
      out.sample("forkd_worker_accepted_connections_total", {{"worker", worker_label(worker)}},
                 count);
    }
    out.family("forkd_worker_open_connections", "gauge",
               "Connections each slot's workers hold open, as they report them.");
    for (const auto& [worker, count] : open) {
      out.sample("forkd_worker_open_connections", {{"worker", worker_label(worker)}}, count);
    }
  }

  out.family("forkd_reloads_total", "counter", "Configuration reloads by result.");
  out.sample("forkd_reloads_total", {{"result", "ok"}}, snapshot.reloads_ok);
  out.sample("forkd_reloads_total", {{"result", "failed"}}, snapshot.reloads_failed);

  std::map<unsigned, std::uint64_t> pss;
  std::map<unsigned, std::uint64_t> rss;
  for (const auto& entry : snapshot.memory) {
    if (entry.pss_bytes) pss[entry.worker] += *entry.pss_bytes;
    if (entry.rss_bytes) rss[entry.worker] += *entry.rss_bytes;
  }
  out.family("forkd_worker_memory_pss_bytes", "gauge",
             "Proportional set size of each worker: pages shared after fork count once overall.");
  for (const auto& [worker, bytes] : pss) {
    out.sample("forkd_worker_memory_pss_bytes", {{"worker", worker_label(worker)}}, bytes);
  }
  out.family("forkd_worker_memory_rss_bytes", "gauge",
             "Resident set size of each worker, shared pages included.");
  for (const auto& [worker, bytes] : rss) {
    out.sample("forkd_worker_memory_rss_bytes", {{"worker", worker_label(worker)}}, bytes);
  }

  out.family("forkd_ipc_messages_total", "counter", "IPC messages between master and workers.");
  out.sample("forkd_ipc_messages_total", {{"direction", "to_worker"}}, snapshot.ipc_to_worker);
  out.sample("forkd_ipc_messages_total", {{"direction", "from_worker"}}, snapshot.ipc_from_worker);

  out.family("forkd_master_uptime_seconds", "gauge", "Seconds since the master started.");
  out.sample("forkd_master_uptime_seconds", {}, snapshot.master_uptime_seconds);

  out.family("forkd_cpu_quota", "gauge",
             "CPUs the cgroup CPU quota grants (quota / period); absent when unlimited.");
  if (snapshot.cpu_quota) out.sample("forkd_cpu_quota", {}, *snapshot.cpu_quota);
  out.family("forkd_memory_limit_bytes", "gauge",
             "The cgroup memory limit of the master and its workers; absent when unlimited.");
  if (snapshot.memory_limit_bytes)
    out.sample("forkd_memory_limit_bytes", {}, *snapshot.memory_limit_bytes);
  out.family("forkd_worker_max_memory_bytes", "gauge",
             "PSS above which a worker is replaced (worker.max_memory, auto resolved); 0 = off.");
  out.sample("forkd_worker_max_memory_bytes", {}, snapshot.worker_max_memory_bytes);

  out.family("forkd_generation", "gauge",
             "Configuration generation, incremented by every applied reload.");
  out.sample("forkd_generation", {}, snapshot.generation);

  return out.take();
}

}  // namespace forkd::daemon
