// ControlServer: the operator's Unix socket. Owns the listening socket, its clients, the
// SO_PEERCRED check, newline-delimited JSON framing, in-order replies and `events` streams.
// It does not know what a command means or decides what mutates: every request but `events`
// goes to the Handler the master supplies, which also writes the audit trail.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.hpp"

namespace forkd::daemon {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Who sent a request: the peer's credentials and the connection it came on.
struct ControlCaller {
  PeerCredentials peer;
  std::uint64_t client = 0;  // one per connection, never reused by a server
};

// Told, from the loop and after the fact, that a client which had sent requests is gone (it
// closed, stopped reading, or was cut off), so work still meant to answer it can be dropped.
using ClientClosed = std::function<void(std::uint64_t client)>;

struct ControlServerOptions {
  std::string path;
  unsigned mode = 0600;
  std::string group;  // name or number; "" = only root and the daemon's own user
  std::size_t max_message = std::size_t{1} << 20;
  std::chrono::milliseconds idle_timeout{30000};
  std::size_t max_clients = 256;
  std::size_t max_outbound = std::size_t{1} << 20;         // unsent replies/events per client
  std::size_t max_outbound_total = std::size_t{16} << 20;  // ... and over all clients
  ClientClosed client_closed;                              // may be empty
};

// The handler runs on the io_context's thread, inside the read that completed the request.
// respond() must be called exactly once per request, now or later (e.g. reload waits for its
// outcome), on that same thread; calling it after the client left, or a second time, is
// harmless (ignored). A handler may call publish_event() or close(), but must not destroy
// the ControlServer from inside itself (post that to the loop instead).
using Respond = std::function<void(nlohmann::json reply)>;
using Handler = std::function<void(const nlohmann::json& request, const ControlCaller&, Respond)>;

// "uid 1000 pid 4242": how log lines name a control client.
[[nodiscard]] std::string describe_peer(const PeerCredentials& peer);

// The authorisation rule: root, the daemon's user, or (with a control group) a peer whose
// primary gid or one of whose supplementary groups is that group.
[[nodiscard]] bool peer_allowed(const PeerCredentials& peer, uid_t daemon_uid,
                                std::optional<gid_t> group, const std::vector<gid_t>& peer_groups);

// The peer process's supplementary groups (/proc/PID/status "Groups:", else getgrouplist of
// its user). Empty when neither can be read.
[[nodiscard]] std::vector<gid_t> peer_supplementary_groups(const PeerCredentials& peer);

// A group name or number -> gid. Throws std::runtime_error naming the group.
[[nodiscard]] gid_t resolve_group(const std::string& group);

class ControlServerState;

class ControlServer {
 public:
  // Creates the socket at options.path (replacing a stale socket, refusing a live one or
  // anything that is not a socket), applies mode and group, and starts accepting on `io`.
  // Throws std::system_error / std::runtime_error naming the path.
  ControlServer(asio::io_context& io, ControlServerOptions options, Handler handler);
  // Adopts an already bound and listening socket (a hot upgrade hands it over); the path is
  // only remembered for logs and remove_socket_file().
  ControlServer(asio::io_context& io, ControlServerOptions options, Handler handler,
                common::UniqueFd listening);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ControlServer(ControlServer&&) = delete;
  ControlServer& operator=(ControlServer&&) = delete;
  // Closes every socket; never unlinks (see remove_socket_file).
  ~ControlServer();

  // Writes `event` as one line to every `events` subscriber. A subscriber whose unsent
  // output would exceed max_outbound is disconnected.
  void publish_event(const nlohmann::json& event);
  // Writes one captured worker line to every `events` client subscribed to topic "output".
  void publish_output(const nlohmann::json& line);
  // Stops accepting and closes every client (pending replies are dropped). Idempotent.
  void close();
  // Unlinks the socket file when the path still names the socket this server bound (so a
  // successor that re-bound the path is left alone). An explicit shutdown step.
  void remove_socket_file();

  [[nodiscard]] std::size_t client_count() const;
  [[nodiscard]] std::size_t subscriber_count() const;
  [[nodiscard]] std::size_t output_subscriber_count() const;
  [[nodiscard]] const std::string& path() const;
  // The listening socket (-1 after close), e.g. to hand over in a hot upgrade.
  [[nodiscard]] int native_handle() const;

 private:
  std::unique_ptr<ControlServerState> state_;
};

}  // namespace forkd::daemon
