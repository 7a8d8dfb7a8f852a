// Steers each reuseport group's new connections to the sockets of workers that take them:
// ready, not draining, not stalled. It holds its own reference to every reuseport socket the
// master ever handed out until no process holds it any more, so that a socket leaves its group
// only when we close it, in an order the mirror (daemon/reuseport_order.hpp) knows. It decides
// nothing about the workers: their states come from the pool, it only watches the queues.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "daemon/listeners.hpp"
#include "daemon/reuseport_order.hpp"
#include "daemon/steering_state.hpp"
#include "daemon/worker_pool.hpp"

namespace spdlog {
class logger;
}

namespace forkd::daemon {

// The current length of a listening TCP socket's accept queue (TCP_INFO tcpi_unacked).
[[nodiscard]] std::optional<std::uint32_t> accept_queue_length(int fd);

class ReuseportSteering {
 public:
  // `changed`: a socket stalled or recovered; the master runs its pass, which calls update().
  ReuseportSteering(asio::io_context& io, std::shared_ptr<spdlog::logger> log,
                    std::function<void()> changed);
  ReuseportSteering(const ReuseportSteering&) = delete;
  ReuseportSteering& operator=(const ReuseportSteering&) = delete;
  ReuseportSteering(ReuseportSteering&&) = delete;
  ReuseportSteering& operator=(ReuseportSteering&&) = delete;
  // NOLINTNEXTLINE(bugprone-exception-escape): timer cancel and close do not throw here
  ~ReuseportSteering();

  // Takes note of the sockets `set` opened since the last call: called right after each call
  // that opens reuseport sockets, so that they are known in the order they started listening.
  // Sockets passed in (adopted) are steered only when the previous master told us their group's
  // order (inherit_orders) and we hold every socket of it; otherwise the group is not steered
  // (its program is detached) and the kernel's hash applies.
  void track(const ListenerSet& set);
  // A hot upgrade's new master, before the first track(): the groups' orders its predecessor
  // handed over.
  void inherit_orders(ReuseportOrders orders);
  // A hot upgrade's old master: the order of every steered group all of whose sockets are among
  // `passed` (what it passes to the new master).
  [[nodiscard]] ReuseportOrders orders_to_hand_over(std::span<const int> passed) const;
  // The sockets a worker got.
  void handed(pid_t pid, std::span<const int> fds);
  // After each pass: closes what no listener set and no live process holds, attaches each
  // group's program anew when its set of sockets changed, and watches ready workers' queues.
  void update(std::span<const ListenerSet* const> owners, const WorkerPool& pool,
              Duration stall_after);
  // Hands a stalled worker's listening socket to a worker that takes connections, so that what
  // is queued on it is served now rather than when the stalled one resumes; false when that
  // worker cannot take it (not a built-in worker).
  // `stopped`: whether a process is stopped (SIGSTOP, a debugger). Once its queue has been lent,
  // a socket stays out while a holder is stopped: its queue is empty then for the helper's
  // sake, not its own. Connections that reach it meanwhile are lent again.
  using Lend = std::function<bool(pid_t helper, int listener_fd)>;
  using Stopped = std::function<bool(pid_t)>;
  void lend_queued_with(Lend lend, Stopped stopped);
  // A worker's steering state; none when it has no steered reuseport socket.
  [[nodiscard]] std::optional<SteeringState> state_of(const Lane& lane) const;
  // Drops everything and steers no more: the master is done, or has handed over.
  void close();
  // Another master may have attached its own programs to our groups (a hot upgrade's new master
  // that failed): the next update() attaches ours again.
  void reattach();

 private:
  struct Socket;
  struct Group {
    ReuseportOrder order;
    bool steered = true;
    std::vector<std::uint64_t> adopted;  // passed in, until settle() decides on them
    bool settled = false;
    std::optional<std::vector<std::uint32_t>> attached;
  };

  void track_socket(const std::string& group, int fd, bool steered);
  void close_socket(std::uint64_t key);
  void settle(const std::string& name, Group& group);
  void lend_queue(Socket& stalled, const WorkerPool& pool);
  void steer(const std::string& name, Group& group, const WorkerPool& pool);
  void watch(const std::shared_ptr<Socket>& socket);
  void unwatch(Socket& socket);
  // One-shot readability of a socket's queue through our own epoll instance: asio would set
  // O_NONBLOCK on the socket's open file description, which the workers share with us.
  void arm_readable(Socket& socket);
  void wait_events();
  void on_readable(const std::shared_ptr<Socket>& socket);
  void arm_stall_timer(const std::shared_ptr<Socket>& socket, std::uint32_t queued, Duration after);
  void arm_recovery_check(const std::shared_ptr<Socket>& socket);
  [[nodiscard]] std::string describe(const Socket& socket) const;

  asio::io_context& io_;
  std::shared_ptr<spdlog::logger> log_;
  std::function<void()> changed_;
  std::unique_ptr<asio::posix::stream_descriptor> epoll_;  // our epoll instance
  bool epoll_waiting_ = false;
  std::map<std::uint64_t, std::shared_ptr<Socket>> sockets_;  // by inode
  std::map<std::string, Group> groups_;                       // by listen address
  const WorkerPool* pool_ = nullptr;                          // the last update's, for logs
  ReuseportOrders inherited_;
  Lend lend_;
  Stopped stopped_;
  bool closed_ = false;
  Duration stall_after_{0};
};

}  // namespace forkd::daemon
