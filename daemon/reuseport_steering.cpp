#include "daemon/reuseport_steering.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <spdlog/logger.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/fd.hpp"
#include "common/units.hpp"
#include "daemon/limited_log.hpp"
#include "daemon/steering_program.hpp"

namespace forkd::daemon {

namespace {

std::optional<std::uint64_t> inode_of(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(st.st_ino);
}

// How often a queue is read while it is not empty: a few times per stall_after.
// Lends of a stalled socket's queue that found no taker, tried before giving up for this stall.
constexpr unsigned kLendAttempts = 5;

Duration sample_interval(Duration stall_after) {
  return std::max(stall_after / 4, Duration{10});
}

}  // namespace

std::optional<std::uint32_t> accept_queue_length(int fd) {
  tcp_info info{};
  socklen_t length = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return std::nullopt;
  // For a listening socket the kernel reports sk_ack_backlog (the accept queue) here.
  return info.tcpi_unacked;
}

struct ReuseportSteering::Socket {
  // A worker that stops and resumes accepting over and over must not flood the log with its
  // "stalled" and "gets new connections again" lines: each socket has its own limit.
  static constexpr LogRate kStallLogRate{.burst = 10, .per_second = 1};

  Socket(asio::io_context& io, common::UniqueFd own, const std::shared_ptr<spdlog::logger>& log,
         const std::string& group_name)
      : fd(std::move(own)),
        timer(io),
        stall_log(log, "reuseport " + group_name + " stall lines", kStallLogRate) {}
  std::uint64_t key = 0;
  std::string group;
  common::UniqueFd fd;  // our own reference: the socket leaves its group when we close it
  asio::steady_timer timer;
  std::set<pid_t> holders;  // the processes it was handed to
  bool watched = false;     // a ready worker holds it and stall_after is on
  bool registered = false;  // in our epoll instance
  bool armed = false;       // its one-shot readability is armed
  bool timing = false;      // the stall timer or the recovery check is armed
  bool stalled = false;
  bool lend_due = false;       // stalled since the last update: its queue goes to another worker
  bool lent = false;           // its queue was lent during this stall
  unsigned lend_attempts = 0;  // during this stall
  std::uint32_t queued_at_arm = 0;  // at the start of the window; 0: no window
  Duration window{0};               // how long the queue has not been empty
  LimitedLog stall_log;
};

ReuseportSteering::ReuseportSteering(asio::io_context& io, std::shared_ptr<spdlog::logger> log,
                                     std::function<void()> changed)
    : io_(io), log_(std::move(log)), changed_(std::move(changed)) {}

ReuseportSteering::~ReuseportSteering() {  // NOLINT(bugprone-exception-escape): as declared
  close();
}

void ReuseportSteering::close() {
  closed_ = true;
  for (auto& [key, socket] : sockets_) {
    socket->timer.cancel();
    socket->watched = false;
  }
  sockets_.clear();
  groups_.clear();
  if (epoll_) {
    std::error_code ignored;
    epoll_->close(ignored);
    epoll_.reset();
  }
}

void ReuseportSteering::track(const ListenerSet& set) {
  if (closed_) return;
  for (const auto& l : set.listeners()) {
    if (!l.config.reuseport) continue;
    for (const auto* sockets : {&l.per_worker, &l.per_incoming}) {
      for (const auto& fd : *sockets) {
        if (fd) track_socket(l.config.address, fd.get(), !l.adopted);
      }
    }
  }
  for (auto& [name, group] : groups_) settle(name, group);
}

void ReuseportSteering::reattach() {
  for (auto& [name, group] : groups_) {
    if (group.steered) group.attached.reset();
  }
}

void ReuseportSteering::lend_queued_with(Lend lend, Stopped stopped) {
  lend_ = std::move(lend);
  stopped_ = std::move(stopped);
}

void ReuseportSteering::lend_queue(Socket& stalled, const WorkerPool& pool) {
  if (!lend_) return;
  ++stalled.lend_attempts;
  const auto group = groups_.find(stalled.group);
  if (group == groups_.end() || !group->second.steered) return;
  for (const auto& [key, other] : sockets_) {
    if (other.get() == &stalled || other->group != stalled.group || other->stalled) continue;
    for (const pid_t pid : other->holders) {
      const Lane* lane = pool.find(pid);
      if (lane == nullptr || steering_state(*lane, false) != SteeringState::in) continue;
      if (!lend_(pid, stalled.fd.get())) continue;
      stalled.lent = true;
      stalled.stall_log.log(spdlog::level::info, "{}: its queued connections go to {} meanwhile",
                            describe(stalled), describe(*other));
      return;
    }
  }
}

void ReuseportSteering::inherit_orders(ReuseportOrders orders) {
  inherited_ = std::move(orders);
}

// The sockets passed in are steered when the previous master named exactly them as one group,
// in its order: they have been listening since before we started, so whatever we opened since
// comes after them in the kernel's array.
void ReuseportSteering::settle(const std::string& name, Group& group) {
  if (group.settled) return;
  group.settled = true;
  if (group.adopted.empty()) return;
  const std::set<std::uint64_t> adopted(group.adopted.begin(), group.adopted.end());
  const auto inherited = std::find_if(inherited_.begin(), inherited_.end(), [&](const auto& keys) {
    return std::set<std::uint64_t>(keys.begin(), keys.end()) == adopted;
  });
  if (inherited == inherited_.end()) {
    group.steered = false;
    return;
  }
  ReuseportOrder order;
  for (const auto key : *inherited) order.listen(key);
  for (const auto key : group.order.sockets()) order.listen(key);
  group.order = std::move(order);
  log_->info("reuseport {}: steering the {} sockets passed in, in the previous master's order",
             name, inherited->size());
}

ReuseportOrders ReuseportSteering::orders_to_hand_over(std::span<const int> passed) const {
  std::set<std::uint64_t> keys;
  for (const int fd : passed) {
    if (const auto key = inode_of(fd)) keys.insert(*key);
  }
  ReuseportOrders orders;
  for (const auto& [name, group] : groups_) {
    const auto& order = group.order.sockets();
    if (!group.steered || order.empty()) continue;
    if (std::all_of(order.begin(), order.end(), [&](auto key) { return keys.contains(key); })) {
      orders.push_back(order);
    }
  }
  return orders;
}

void ReuseportSteering::track_socket(const std::string& group, int fd, bool steered) {
  const auto key = inode_of(fd);
  if (!key || sockets_.contains(*key)) return;
  common::UniqueFd own(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!own) {
    log_->warn("reuseport {}: cannot keep a reference to a socket: {}", group,
               std::strerror(errno));
    return;
  }
  auto socket = std::make_shared<Socket>(io_, std::move(own), log_, group);
  socket->key = *key;
  socket->group = group;
  sockets_.emplace(*key, std::move(socket));
  Group& g = groups_[group];
  g.order.listen(*key);
  if (!steered) {
    // Passed in: settled by track() once the whole set has been seen.
    g.adopted.push_back(*key);
    if (g.settled) g.steered = false;  // a group we steer already cannot take in strangers
  }
}

void ReuseportSteering::handed(pid_t pid, std::span<const int> fds) {
  for (const int fd : fds) {
    if (fd < 0) continue;
    const auto key = inode_of(fd);
    if (!key) continue;
    if (const auto it = sockets_.find(*key); it != sockets_.end()) it->second->holders.insert(pid);
  }
}

void ReuseportSteering::close_socket(std::uint64_t key) {
  const auto it = sockets_.find(key);
  if (it == sockets_.end()) return;
  Socket& socket = *it->second;
  unwatch(socket);
  if (socket.registered && epoll_) {
    ::epoll_ctl(epoll_->native_handle(), EPOLL_CTL_DEL, socket.fd.get(), nullptr);
  }
  // Our reference is the last one: the kernel moves the group's last socket into its place now.
  const auto group = groups_.find(socket.group);
  if (group != groups_.end()) {
    group->second.order.leave(key);
    if (group->second.order.size() == 0) groups_.erase(group);
  }
  sockets_.erase(it);
}

void ReuseportSteering::update(std::span<const ListenerSet* const> owners, const WorkerPool& pool,
                               Duration stall_after) {
  if (closed_) return;
  pool_ = &pool;
  stall_after_ = stall_after;
  std::set<std::uint64_t> owned;
  for (const ListenerSet* set : owners) {
    if (set == nullptr) continue;
    for (const auto& [address, fd] : set->reuseport_sockets()) {
      if (const auto key = inode_of(fd)) owned.insert(*key);
    }
  }
  // A process holds its copy until it exits, and what it left in its process group after it.
  const auto alive = [&pool](pid_t pid) {
    return pool.find(pid) != nullptr || pool.leftovers().contains(pid);
  };
  std::vector<std::uint64_t> gone;
  for (auto& [key, socket] : sockets_) {
    std::erase_if(socket->holders, [&](pid_t pid) { return !alive(pid); });
    if (socket->holders.empty() && !owned.contains(key)) gone.push_back(key);
  }
  for (const auto key : gone) close_socket(key);
  for (auto& [name, group] : groups_) steer(name, group, pool);
  // After the programs: no new connection reaches a stalled socket once its queue is lent.
  for (auto& [key, socket] : sockets_) {
    if (!std::exchange(socket->lend_due, false) || !socket->stalled) continue;
    lend_queue(*socket, pool);
  }
  for (auto& [key, socket] : sockets_) {
    const auto group = groups_.find(socket->group);
    bool ready_holder = false;
    for (const pid_t pid : socket->holders) {
      const Lane* lane = pool.find(pid);
      if (lane == nullptr) continue;
      const SteeringState state = steering_state(*lane, false);
      ready_holder = ready_holder || state == SteeringState::in;
    }
    const bool watch_it =
        stall_after.count() > 0 && ready_holder && group != groups_.end() && group->second.steered;
    if (watch_it) {
      watch(socket);
    } else {
      unwatch(*socket);
    }
  }
}

void ReuseportSteering::steer(const std::string& name, Group& group, const WorkerPool& pool) {
  const auto& order = group.order.sockets();
  if (order.empty()) return;
  const int any = sockets_.at(order.front())->fd.get();
  if (!group.steered) {
    if (group.attached) return;
    // A previous master's program indexes an order we do not know: the kernel's hash is safer.
    if (::setsockopt(any, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, nullptr, 0) != 0 &&
        errno != ENOENT) {
      log_->warn("reuseport {}: cannot detach the steering program: {}", name,
                 std::strerror(errno));
    }
    log_->info("reuseport {}: sockets passed in by the previous master are not steered", name);
    group.attached = std::vector<std::uint32_t>{};
    return;
  }
  std::vector<std::uint32_t> in;
  std::vector<std::uint32_t> stalled;
  std::vector<std::uint32_t> starting;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Socket& socket = *sockets_.at(order[i]);
    bool is_in = false;
    bool is_stalled = false;
    bool is_starting = false;
    for (const pid_t pid : socket.holders) {
      const Lane* lane = pool.find(pid);
      if (lane == nullptr) continue;
      switch (steering_state(*lane, socket.stalled)) {
        case SteeringState::in:
          is_in = true;
          break;
        case SteeringState::not_ready:
          is_starting = true;
          break;
        case SteeringState::stalled:
          is_stalled = true;
          break;
        case SteeringState::draining:
          break;
      }
    }
    if (is_in) in.push_back(static_cast<std::uint32_t>(i));
    if (is_stalled) stalled.push_back(static_cast<std::uint32_t>(i));
    if (is_starting) starting.push_back(static_cast<std::uint32_t>(i));
  }
  // No worker takes connections: rather queue them where a ready worker will take them later
  // (a stalled one), else where a starting one will once it is ready (at start-up), than on a
  // draining or orphaned socket; with none of those either, the kernel's hash.
  const std::vector<std::uint32_t>& chosen = !in.empty()        ? in
                                             : !stalled.empty() ? stalled
                                                                : starting;
  if (group.attached == chosen) return;
  auto program = build_steering_program(chosen);
  sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  if (::setsockopt(any, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(fprog)) != 0) {
    log_->warn(
        "reuseport {}: cannot attach the steering program: {}; the kernel's hash spreads "
        "connections over every socket",
        name, std::strerror(errno));
    group.steered = false;
    group.attached.reset();
    return;
  }
  group.attached = chosen;
  log_->debug("reuseport {}: new connections go to {} of {} sockets", name, chosen.size(),
              order.size());
}

std::optional<SteeringState> ReuseportSteering::state_of(const Lane& lane) const {
  if (lane.pid <= 0) return std::nullopt;
  for (const auto& [key, socket] : sockets_) {
    if (!socket->holders.contains(lane.pid)) continue;
    const auto group = groups_.find(socket->group);
    if (group == groups_.end() || !group->second.steered) continue;
    return steering_state(lane, socket->stalled);
  }
  return std::nullopt;
}

void ReuseportSteering::watch(const std::shared_ptr<Socket>& socket) {
  socket->watched = true;
  if (socket->timing) return;
  if (socket->stalled) {
    arm_recovery_check(socket);
    return;
  }
  if (!socket->armed) arm_readable(*socket);
}

void ReuseportSteering::unwatch(Socket& socket) {
  if (!socket.watched && !socket.timing && !socket.stalled) return;
  socket.watched = false;
  socket.stalled = false;  // it matters only while a ready worker holds the socket
  socket.lent = false;
  socket.lend_attempts = 0;
  socket.timing = false;
  socket.queued_at_arm = 0;
  socket.window = Duration{0};
  socket.timer.cancel();
  if (socket.armed && epoll_) {
    epoll_event event{};
    event.data.u64 = socket.key;  // registered, without events: nothing until armed again
    ::epoll_ctl(epoll_->native_handle(), EPOLL_CTL_MOD, socket.fd.get(), &event);
    socket.armed = false;
  }
}

void ReuseportSteering::arm_readable(Socket& socket) {
  if (!epoll_) {
    common::UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!fd) {
      log_->warn("reuseport: no epoll instance for stall detection: {}", std::strerror(errno));
      return;
    }
    epoll_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd.release());
  }
  epoll_event event{};
  // Level-triggered, one shot: reported at once if connections are queued already, then not
  // again until armed anew.
  event.events = EPOLLIN | EPOLLONESHOT;
  event.data.u64 = socket.key;
  const int op = socket.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (::epoll_ctl(epoll_->native_handle(), op, socket.fd.get(), &event) != 0) {
    log_->warn("reuseport {}: cannot watch a socket's queue: {}", socket.group,
               std::strerror(errno));
    return;
  }
  socket.registered = true;
  socket.armed = true;
  wait_events();
}

void ReuseportSteering::wait_events() {
  if (epoll_waiting_ || !epoll_) return;
  epoll_waiting_ = true;
  epoll_->async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code error) {
    if (error == asio::error::operation_aborted) return;
    epoll_waiting_ = false;
    if (error || !epoll_) return;
    std::array<epoll_event, 32> events{};
    std::vector<std::shared_ptr<Socket>> readable;
    for (;;) {
      const int n =
          ::epoll_wait(epoll_->native_handle(), events.data(), static_cast<int>(events.size()), 0);
      for (int i = 0; i < n; ++i) {
        const auto it = sockets_.find(events[static_cast<std::size_t>(i)].data.u64);
        if (it != sockets_.end()) readable.push_back(it->second);
      }
      if (n < static_cast<int>(events.size())) break;
    }
    wait_events();
    for (const auto& socket : readable) {
      socket->armed = false;
      on_readable(socket);
    }
  });
}

void ReuseportSteering::on_readable(const std::shared_ptr<Socket>& socket) {
  if (!socket->watched || socket->stalled || socket->timing) return;
  // The next look comes one sample interval later, whatever the queue holds now: a stall is
  // noticed within stall_after and one interval of its start, and while traffic flows we wake
  // at most 4 times per stall_after per socket (never without traffic). Arming readability
  // again at once would wake us once per connection.
  const auto queued = accept_queue_length(socket->fd.get()).value_or(0);
  arm_stall_timer(socket, queued, sample_interval(stall_after_));
}

// The stall rule. A worker that runs its accept loop empties its queue, and a queue that is
// empty at any look means it does. So a worker is stalled when its queue, looked at every
// stall_after/4 for stall_after, is never empty and at the end is at least as long as at the
// start: it took nothing, or less than kept arriving, and is at least stall_after behind; new
// connections are better off elsewhere until its queue is empty. A queue that shrank without
// emptying starts a new window from its new length.
void ReuseportSteering::arm_stall_timer(const std::shared_ptr<Socket>& socket, std::uint32_t queued,
                                        Duration after) {
  socket->timing = true;
  if (queued == 0 || socket->queued_at_arm == 0) {
    socket->queued_at_arm = queued;
    socket->window = Duration{0};
  }
  socket->timer.expires_after(after);
  socket->timer.async_wait(
      [this, after, weak = std::weak_ptr<Socket>(socket)](std::error_code error) {
        const auto s = weak.lock();
        if (error || !s || !s->timing) return;
        s->timing = false;
        if (!s->watched) return;
        const auto queued_now = accept_queue_length(s->fd.get()).value_or(0);
        if (queued_now == 0) {
          s->queued_at_arm = 0;
          arm_readable(*s);
          return;
        }
        const Duration step = sample_interval(stall_after_);
        if (s->queued_at_arm == 0) {
          arm_stall_timer(s, queued_now, step);  // a window starts now
          return;
        }
        s->window += after;
        if (s->window < stall_after_) {
          arm_stall_timer(s, queued_now, step);
          return;
        }
        if (queued_now < s->queued_at_arm) {
          s->queued_at_arm = queued_now;
          s->window = Duration{0};
          arm_stall_timer(s, queued_now, step);
          return;
        }
        s->stalled = true;
        s->lend_due = true;
        s->queued_at_arm = 0;
        s->stall_log.log(spdlog::level::warn,
                         "{} stalled: {} connections queued for {}, no new connections until it "
                         "takes them again",
                         describe(*s), queued_now, common::format_duration(stall_after_));
        changed_();
      });
}

void ReuseportSteering::arm_recovery_check(const std::shared_ptr<Socket>& socket) {
  socket->timing = true;
  socket->timer.expires_after(sample_interval(stall_after_));
  socket->timer.async_wait([this, weak = std::weak_ptr<Socket>(socket)](std::error_code error) {
    const auto s = weak.lock();
    if (error || !s || !s->timing) return;
    s->timing = false;
    if (!s->watched || !s->stalled) return;
    const bool queued = accept_queue_length(s->fd.get()).value_or(0) > 0;
    const bool held_stopped =
        s->lent && stopped_ &&
        std::any_of(s->holders.begin(), s->holders.end(), [&](pid_t pid) { return stopped_(pid); });
    // Arrived after a lend, or a lend that could not be made (a few times: an exec'd worker's
    // helper never takes one): tried again at the next update.
    if (queued && lend_ && (s->lent || s->lend_attempts < kLendAttempts)) {
      s->lend_due = true;
      changed_();
    }
    if (queued || held_stopped) {
      arm_recovery_check(s);
      return;
    }
    s->stalled = false;
    s->lend_attempts = 0;
    if (std::exchange(s->lent, false)) {
      s->stall_log.log(spdlog::level::info,
                       "{} runs again, its queue empty: it gets new connections again",
                       describe(*s));
    } else {
      s->stall_log.log(spdlog::level::info,
                       "{} took its queued connections: it gets new connections again",
                       describe(*s));
    }
    changed_();
  });
}

std::string ReuseportSteering::describe(const Socket& socket) const {
  if (pool_ != nullptr) {
    for (const pid_t pid : socket.holders) {
      unsigned slot = 0;
      const Lane* lane = pool_->find(pid, &slot);
      if (lane != nullptr && lane->state == SlotState::ready) {
        return "worker " + std::to_string(slot) + " (pid " + std::to_string(pid) + ")";
      }
    }
  }
  return "the worker on a socket of " + socket.group;
}

}  // namespace forkd::daemon
