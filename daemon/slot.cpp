#include "daemon/slot.hpp"

#include <array>

namespace forkd::daemon {

namespace {

using S = SlotState;
using E = SlotEvent;
using A = SlotAction;

constexpr std::size_t kStates = 5;
constexpr std::size_t kEvents = 10;

constexpr Transition no = {S::starting, A::none, false};
constexpr Transition go(S next, A action) {
  return {next, action, true};
}

// Rows: states in SlotState order. Columns: events in SlotEvent order:
//   became_ready, exited, exited_as_asked, ready_overdue, heartbeat_overdue,
//   stop, kill_due, retry_due, give_up, revive
constexpr std::array<std::array<Transition, kEvents>, kStates> kTable = {{
    // starting: not ready yet
    {{go(S::ready, A::announce), go(S::backoff, A::judge_exit), go(S::backoff, A::release),
      go(S::stopping, A::kill), no, go(S::stopping, A::terminate), no, no, no, no}},
    // ready: serving
    {{no, go(S::backoff, A::judge_exit), go(S::backoff, A::release), no, go(S::stopping, A::kill),
      go(S::stopping, A::terminate), no, no, no, no}},
    // stopping: told to go (or killed for a deadline); only its exit or the kill deadline move it
    {{no, go(S::backoff, A::judge_exit), go(S::backoff, A::release), no, no,
      go(S::stopping, A::shorten_stop), go(S::stopping, A::kill), no, no, no}},
    // backoff: no process, a retry is due at some time
    {{no, no, no, no, no, no, no, go(S::starting, A::spawn), go(S::failed, A::none), no}},
    // failed: no process, given up until asked again
    {{no, no, no, no, no, no, no, no, no, go(S::backoff, A::none)}},
}};

}  // namespace

Transition transition(SlotState state, SlotEvent event) noexcept {
  return kTable.at(static_cast<std::size_t>(state)).at(static_cast<std::size_t>(event));
}

const char* to_string(SlotState state) noexcept {
  switch (state) {
    case S::starting:
      return "starting";
    case S::ready:
      return "ready";
    case S::stopping:
      return "stopping";
    case S::backoff:
      return "backoff";
    case S::failed:
      return "failed";
  }
  return "unknown";
}

const char* to_string(SlotEvent event) noexcept {
  switch (event) {
    case E::became_ready:
      return "became_ready";
    case E::exited:
      return "exited";
    case E::exited_as_asked:
      return "exited_as_asked";
    case E::ready_overdue:
      return "ready_overdue";
    case E::heartbeat_overdue:
      return "heartbeat_overdue";
    case E::stop:
      return "stop";
    case E::kill_due:
      return "kill_due";
    case E::retry_due:
      return "retry_due";
    case E::give_up:
      return "give_up";
    case E::revive:
      return "revive";
  }
  return "unknown";
}

}  // namespace forkd::daemon
