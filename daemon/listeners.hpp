// The listening sockets the master creates (or adopts from systemd) before forking.
// Owns every listener fd; workers get duplicates at fd 3.. in config order. Unix socket files
// are unlinked only by the explicit remove_socket_files() shutdown step, never by a destructor.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/fd.hpp"

namespace forkd::daemon {

// Bind/adopt failures: one line naming the address and the cause (exit 1 at start-up).
class ListenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Listener {
  common::ListenConfig config;
  common::UniqueFd shared;                   // the socket every worker inherits (reuseport: none)
  std::vector<common::UniqueFd> per_worker;  // reuseport: one socket per slot, kept across respawns
  // reuseport: a replacement's own socket while it starts next to the slot's running worker
  // (so that nothing reaches it before it is ready); the slot's socket once it takes over.
  std::vector<common::UniqueFd> per_incoming;
  bool adopted = false;       // passed in by systemd (LISTEN_FDS)
  bool created_file = false;  // a unix socket file we created and must unlink
};

// Creates a listening socket for one entry: SO_REUSEADDR, IPV6_V6ONLY for v6, backlog, unix
// mode; a stale unix socket file (nobody accepting) is replaced, anything else at the path is
// refused. Throws ListenError.
[[nodiscard]] common::UniqueFd open_listener(const common::ListenConfig& config, bool reuseport);

// A socket handed to this process with LISTEN_FDS (systemd, or the previous master in a hot
// upgrade), with its LISTEN_FDNAMES entry.
struct PassedSocket {
  common::UniqueFd fd;
  std::string name;
};

// sd_listen_fds(): takes the sockets passed to this very process (LISTEN_PID) and clears
// LISTEN_* from the environment so they never leak to children.
[[nodiscard]] std::vector<PassedSocket> take_passed_sockets();

class ListenerSet {
 public:
  // Binds every entry, adopting matching `passed` sockets (by name, then by address; a
  // reuseport entry adopts every passed socket of its address, one per slot); a passed socket
  // that matches no entry is an error naming it. `own_files`: adopted unix socket files are
  // ours to remove at exit (they come from the master we replace).
  void open_all(const std::vector<common::ListenConfig>& configs, std::vector<PassedSocket> passed,
                bool own_files = false);
  // Makes sure slots 0..count-1 have their own socket on every reuseport listener.
  void ensure_worker_sockets(unsigned count);
  // Drops our reuseport sockets of slots >= count (retiring: a draining worker keeps its copy).
  void trim_worker_sockets(unsigned count);
  // A socket of its own on every reuseport listener for the replacement starting in `slot`.
  void open_incoming_sockets(unsigned slot);
  // The replacement took over its slot: its sockets become the slot's (the old ones close
  // here and live on in the retiring worker only). Or it never did: its sockets close.
  void promote_incoming(unsigned slot);
  void drop_incoming(unsigned slot);
  [[nodiscard]] bool has_incoming(unsigned slot) const;
  // The fds worker `slot` inherits at 3, 4, ... in config order, and their names; `incoming`:
  // the replacement's.
  [[nodiscard]] std::vector<int> fds_for(unsigned slot, bool incoming = false) const;
  // Every reuseport socket with its listener's address, slot sockets first, each listener's
  // in the order they were opened.
  [[nodiscard]] std::vector<std::pair<std::string, int>> reuseport_sockets() const;
  [[nodiscard]] std::string fdnames() const;
  // Every socket, shared and per-slot, with its name: what a hot upgrade hands over.
  [[nodiscard]] std::vector<std::pair<int, std::string>> all_sockets() const;
  [[nodiscard]] const std::vector<Listener>& listeners() const noexcept { return listeners_; }
  // Shutdown step: unlink the unix socket files this master created.
  void remove_socket_files() const;
  // Reload: a new set for `configs` in which each entry the plan keeps (kept_from[i], an index
  // into `current`) is the very same socket (a duplicate fd of it: no connection is refused, no
  // accept queue dropped) and only the others are bound. Throws ListenError; `current` is
  // untouched.
  [[nodiscard]] static ListenerSet rebuild(const std::vector<common::ListenConfig>& configs,
                                           const std::vector<std::optional<std::size_t>>& kept_from,
                                           const ListenerSet& current);
  // Unlinks the unix socket files this set created that `successor` does not use.
  void remove_socket_files_not_in(const ListenerSet& successor) const;

 private:
  std::vector<Listener> listeners_;
};

// "127.0.0.1:8080", "[::1]:80", "unix:/run/x.sock" for a bound socket (logs, matching).
[[nodiscard]] std::string describe_socket(int fd);

}  // namespace forkd::daemon
