// The slot table, read as a table: every (state, event) pair that means something, and that
// nothing else does.
#include "daemon/slot.hpp"

#include <gtest/gtest.h>

#include <set>
#include <tuple>

namespace {

using forkd::daemon::SlotAction;
using forkd::daemon::SlotEvent;
using forkd::daemon::SlotState;
using forkd::daemon::transition;
using S = SlotState;
using E = SlotEvent;
using A = SlotAction;

struct Row {
  S from;
  E event;
  S to;
  A action;
};

const std::vector<Row> kExpected = {
    {S::starting, E::became_ready, S::ready, A::announce},
    {S::starting, E::exited, S::backoff, A::judge_exit},
    {S::starting, E::exited_as_asked, S::backoff, A::release},
    {S::starting, E::ready_overdue, S::stopping, A::kill},
    {S::starting, E::stop, S::stopping, A::terminate},
    {S::ready, E::exited, S::backoff, A::judge_exit},
    {S::ready, E::exited_as_asked, S::backoff, A::release},
    {S::ready, E::heartbeat_overdue, S::stopping, A::kill},
    {S::ready, E::stop, S::stopping, A::terminate},
    {S::stopping, E::exited, S::backoff, A::judge_exit},
    {S::stopping, E::exited_as_asked, S::backoff, A::release},
    {S::stopping, E::stop, S::stopping, A::shorten_stop},
    {S::stopping, E::kill_due, S::stopping, A::kill},
    {S::backoff, E::retry_due, S::starting, A::spawn},
    {S::backoff, E::give_up, S::failed, A::none},
    {S::failed, E::revive, S::backoff, A::none},
};

TEST(SlotTable, EveryTransitionThatMeansSomething) {
  for (const Row& row : kExpected) {
    const auto t = transition(row.from, row.event);
    SCOPED_TRACE(std::string(to_string(row.from)) + " x " + to_string(row.event));
    EXPECT_TRUE(t.allowed);
    EXPECT_EQ(t.next, row.to);
    EXPECT_EQ(t.action, row.action);
  }
}

TEST(SlotTable, EverythingElseIsIgnored) {
  std::set<std::pair<S, E>> listed;
  for (const Row& row : kExpected) listed.emplace(row.from, row.event);
  for (int s = 0; s <= static_cast<int>(S::failed); ++s) {
    for (int e = 0; e <= static_cast<int>(E::revive); ++e) {
      const auto state = static_cast<S>(s);
      const auto event = static_cast<E>(e);
      if (listed.count({state, event}) != 0) continue;
      SCOPED_TRACE(std::string(to_string(state)) + " x " + to_string(event));
      EXPECT_FALSE(transition(state, event).allowed);
    }
  }
}

TEST(SlotTable, NoProcessIsSpawnedOrSignalledOutsideItsStates) {
  // Only a vacant lane spawns; only a lane with a process is signalled.
  for (int s = 0; s <= static_cast<int>(S::failed); ++s) {
    for (int e = 0; e <= static_cast<int>(E::revive); ++e) {
      const auto state = static_cast<S>(s);
      const auto t = transition(state, static_cast<E>(e));
      if (!t.allowed) continue;
      const bool has_process = state == S::starting || state == S::ready || state == S::stopping;
      if (t.action == A::spawn) {
        EXPECT_FALSE(has_process);
      }
      if (t.action == A::terminate || t.action == A::kill) {
        EXPECT_TRUE(has_process);
      }
    }
  }
}

}  // namespace
