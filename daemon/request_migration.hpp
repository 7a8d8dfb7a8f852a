// net.ipv4.tcp_migrate_req (Linux 5.14+): when a reuseport listener closes, the connections
// queued on it move to another socket of its group instead of being reset. forkd closes a
// slot's own socket when the slot retires (scale-down, a reload to fewer workers).
#pragma once

#include <string>

namespace forkd::daemon {

inline constexpr const char* kMigrateReqSysctl = "/proc/sys/net/ipv4/tcp_migrate_req";

struct RequestMigration {
  enum class State { already_on, switched_on, off };
  State state = State::off;
  std::string detail;  // why it is off: "read-only file system", "not supported by this kernel"
};

// Reads the switch and turns it on when it is off and writable (root in this network
// namespace). Never throws.
[[nodiscard]] RequestMigration enable_request_migration(
    const std::string& path = kMigrateReqSysctl);

}  // namespace forkd::daemon
