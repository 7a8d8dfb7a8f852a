// The life of one worker lane as a table, like s6-supervise's actions[state][event]: a lane is
// the current process of a slot (or its vacancy), an incoming replacement, or a retiring process.
// transition() is the only place that says which state follows which; it decides nothing else.
#pragma once

#include <cstdint>

namespace forkd::daemon {

// What status shows (SPEC: starting, ready, stopping, backoff, failed). backoff and failed are
// a lane without a process: waiting for its retry, or given up after restart.max_failures.
enum class SlotState : std::uint8_t { starting, ready, stopping, backoff, failed };

enum class SlotEvent : std::uint8_t {
  became_ready,       // READY=1, {"forkd":"ready"}, or exec done with `ready: started`
  exited,             // reaped without having been asked to stop (or killed for a deadline)
  exited_as_asked,    // reaped after a stop the pool asked for
  ready_overdue,      // worker.ready_timeout passed while starting
  heartbeat_overdue,  // worker.heartbeat_timeout passed without a heartbeat
  stop,               // drain: scale down, shutdown, replaced by a ready successor
  kill_due,           // the stop's grace period ran out
  retry_due,          // the backoff delay is over (or a respawn at once)
  give_up,            // restart.max_failures failed starts in a row
  revive,             // a failed slot is asked for again (reload, restart ID, scale)
};

// What the pool must do on a transition, besides taking the next state.
enum class SlotAction : std::uint8_t {
  none,
  spawn,         // start a process in this lane
  terminate,     // SIGTERM, arm the kill deadline
  kill,          // SIGKILL now
  announce,      // publish worker_ready
  judge_exit,    // the process is gone: the restart policy sets when to retry
  release,       // the process is gone as asked: nothing follows
  shorten_stop,  // a second stop: the earlier of the two kill deadlines holds
};

struct Transition {
  SlotState next;
  SlotAction action;
  bool allowed;  // false: the event means nothing in this state and changes nothing
};

[[nodiscard]] Transition transition(SlotState state, SlotEvent event) noexcept;
[[nodiscard]] const char* to_string(SlotState state) noexcept;
[[nodiscard]] const char* to_string(SlotEvent event) noexcept;

}  // namespace forkd::daemon
