// AcceptPolicy: the pure decisions of the shared-listener accept path: how many connections one
// wake may take, when this worker goes to the back of the listeners' wait queues, and when it
// holds so many more than its share that it lets the others accept first. No syscalls.
#pragma once

#include <chrono>
#include <cstddef>

namespace forkd::worker {

// accept(2) errors that concern one failed connection only: retrying at once is right. Both accept
// paths (shared listeners and reuseport acceptors) judge errors by it.
[[nodiscard]] bool is_transient_accept_error(int error) noexcept;

struct AcceptPolicy {
  // Connections taken per wake at most: a worker woken in a burst leaves the rest queued for the
  // workers the kernel wakes meanwhile, instead of draining the queue alone.
  std::size_t batch = 1;
  // Accepts between two rotations to the tail of the wait queues.
  std::size_t rotate_every = 1;
  // A worker is over its share with more open connections than share_factor × its fair share
  // (total / workers) + share_slack; the slack keeps small numbers from counting. Tight enough
  // that 50 connections over 2 workers end no worse than 27/23.
  double share_factor = 1.0;
  std::size_t share_slack = 2;
  // Below this many connections in all, nobody holds too much: a light load of short
  // connections would otherwise pause a worker now and then for nothing.
  std::size_t share_min_total = 16;
  // Over its share, a worker waits this long before waiting for connections again, so that the
  // kernel wakes the others; then it accepts whatever they left queued (they may be stalled).
  // Long enough for a busy machine to schedule the others (2 ms was not, under a build).
  std::chrono::milliseconds yield_for{10};
  // The total is asked from the kernel at most this often.
  std::chrono::milliseconds total_refresh{5};

  // `own` of `total` open connections over `workers` workers (total counts own).
  [[nodiscard]] bool holds_too_much(std::size_t own, std::size_t total,
                                    std::size_t workers) const noexcept;
  // Whether any total could make `own` too much (the least total possible is the likeliest): the
  // kernel is asked for the total only then. Asking walks the kernel's whole TCP table, about a
  // millisecond on a large machine, which a light load would otherwise pay on every connection.
  [[nodiscard]] bool could_hold_too_much(std::size_t own, std::size_t workers) const noexcept;

  // Over its share: yield, unless we come straight back from a yield during which the others
  // took no connection (they are stalled or starved of CPU): then this worker accepts what is
  // queued itself. `others` counts the connections the others hold.
  [[nodiscard]] static bool yield_now(std::size_t others, std::size_t others_at_last_yield,
                                      bool back_from_yield) noexcept;
};

// Counts accepts and says when the next rotation is due.
class RotationClock {
 public:
  explicit RotationClock(std::size_t every) noexcept : every_(every == 0 ? 1 : every) {}
  // After a wake that accepted `accepted` connections: true when the worker should rotate now.
  [[nodiscard]] bool rotate_after(std::size_t accepted) noexcept;

 private:
  std::size_t every_;
  std::size_t since_rotation_ = 0;
};

}  // namespace forkd::worker
