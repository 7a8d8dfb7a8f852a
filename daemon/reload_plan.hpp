// What a reload would change: listeners added, removed or kept (kept ones keep their very
// socket), the worker count, every other key that differs, and which of those wait for a
// restart. Pure: it compares two configs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"

namespace forkd::daemon {

struct ReloadPlan {
  std::vector<std::string> listeners_added;  // addresses
  std::vector<std::string> listeners_removed;
  std::vector<std::string> listeners_kept;
  unsigned workers_from = 0;
  unsigned workers_to = 0;
  std::vector<std::string> changed_keys;  // "worker.env.A: 1 -> 2", dotted paths, listen excluded
  // Changes this reload cannot apply, as the key table says (control.*, pidfile): one line per
  // section, "control.* changes take effect after a restart or hot upgrade".
  std::vector<std::string> needs_restart;
  // For each entry of the next `listen`, the index of the current entry whose socket it keeps;
  // nullopt: a socket to bind. ListenerSet::rebuild follows this, so the listeners the plan
  // reports and the sockets a reload keeps are one decision.
  std::vector<std::optional<std::size_t>> kept_from;

  // One line per change, for logs, dry runs and the reload reply.
  [[nodiscard]] std::vector<std::string> describe() const;
};

// Two listen entries are the same socket when kind, address and reuseport match (backlog,
// name and mode can change on a kept socket).
[[nodiscard]] bool same_socket(const common::ListenConfig& a, const common::ListenConfig& b);

[[nodiscard]] ReloadPlan plan_reload(const common::Config& current, const common::Config& next,
                                     unsigned current_workers, unsigned next_workers);

}  // namespace forkd::daemon
