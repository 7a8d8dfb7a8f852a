// A worker's NOTIFY_SOCKET on the master's side: datagrams from the worker are handed over in
// order, others refused, and the receiver holds no buffer between them.
#include "daemon/notify_receiver.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "common/sd_notify.hpp"

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::common::notify_to;
using forkd::daemon::NotifyReceiver;
using forkd::test::run_until;

std::string unique_name() {
  static int counter = 0;
  return "forkd-receiver-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

TEST(NotifyReceiverTest, HandsOverTheWorkersDatagramsInOrderAndHoldsNoBuffer) {
  // Datagrams are read into a buffer on the stack, not into one the receiver keeps.
  EXPECT_LT(sizeof(NotifyReceiver), 1024U);

  asio::io_context io;
  std::vector<NotifyReceiver::Fields> got;
  std::vector<pid_t> refused;
  auto receiver = NotifyReceiver::open(
      io, unique_name(), [&](pid_t, const NotifyReceiver::Fields& f) { got.push_back(f); },
      [&](pid_t sender) { refused.push_back(sender); });
  // Before the worker's pid is known nothing counts.
  ASSERT_EQ(notify_to(receiver->address(), "READY=1"), 1);
  ASSERT_TRUE(run_until(io, [&] { return refused.size() == 1; }));
  EXPECT_EQ(refused[0], ::getpid());

  receiver->set_worker_pid(::getpid());  // this process plays the worker
  // Bursts of 8: a datagram socket queues only net.unix.max_dgram_qlen (often 10) of them, and
  // the sender blocks beyond.
  constexpr int kBurst = 100;
  for (int i = 0; i < kBurst; ++i) {
    ASSERT_EQ(notify_to(receiver->address(), "STATUS=" + std::to_string(i) + "\nWATCHDOG=1"), 1);
    if (i % 8 == 7 || i == kBurst - 1) {
      ASSERT_TRUE(run_until(io, [&] { return got.size() == static_cast<std::size_t>(i) + 1; }));
    }
  }
  EXPECT_EQ(got.front(), (NotifyReceiver::Fields{{"STATUS", "0"}, {"WATCHDOG", "1"}}));
  EXPECT_EQ(got.back(), (NotifyReceiver::Fields{{"STATUS", "99"}, {"WATCHDOG", "1"}}));
  EXPECT_EQ(refused.size(), 1U);
  receiver->close();
}

}  // namespace
