// A worker's NOTIFY_SOCKET on the master's side: datagrams from the worker are handed over in
// order, others refused, the receiver holds no buffer between them, and its name is random and
// retried when someone else holds it.
#include "daemon/notify_receiver.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/fd.hpp"
#include "common/sd_notify.hpp"
#include "common/unix_socket.hpp"

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
      io, unique_name, [&](pid_t, const NotifyReceiver::Fields& f) { got.push_back(f); },
      [&](pid_t, pid_t sender) { refused.push_back(sender); });
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

// An abstract name is anybody's to bind: names are random, and a taken one costs a retry.
TEST(NotifyReceiverTest, RandomNamesAreFreshAndLongEnoughToBeUnguessable) {
  const std::string a = forkd::daemon::random_notify_name();
  const std::string b = forkd::daemon::random_notify_name();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), std::string("forkd-").size() + 32) << a;  // 128 bits in hex
  EXPECT_EQ(a.rfind("forkd-", 0), 0U) << a;
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef", 6), std::string::npos) << a;
}

TEST(NotifyReceiverTest, ANameSomeoneElseBoundIsRetriedWithAFreshOne) {
  asio::io_context io;
  const std::string taken = unique_name();
  const forkd::common::UniqueFd squatter(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(squatter);
  const forkd::common::UnixAddress address("@" + taken);
  ASSERT_EQ(::bind(squatter.get(), address.get(), address.size()), 0);

  const std::string fresh = unique_name();
  std::vector<std::string> names = {taken, fresh};
  std::size_t asked = 0;
  std::vector<NotifyReceiver::Fields> got;
  auto receiver = NotifyReceiver::open(
      io, [&] { return names.at(asked++); },
      [&](pid_t, const NotifyReceiver::Fields& f) { got.push_back(f); }, {});
  EXPECT_EQ(asked, 2U);
  EXPECT_EQ(receiver->address(), "@" + fresh);
  receiver->set_worker_pid(::getpid());
  ASSERT_EQ(notify_to(receiver->address(), "READY=1"), 1);
  ASSERT_TRUE(run_until(io, [&] { return got.size() == 1; }));
  receiver->close();
}

TEST(NotifyReceiverTest, GivesUpNamingTheAddressWhenEveryNameIsTaken) {
  asio::io_context io;
  const std::string taken = unique_name();
  const forkd::common::UniqueFd squatter(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const forkd::common::UnixAddress address("@" + taken);
  ASSERT_EQ(::bind(squatter.get(), address.get(), address.size()), 0);
  int asked = 0;
  try {
    (void)NotifyReceiver::open(
        io,
        [&] {
          ++asked;
          return std::string(taken);
        },
        [](pid_t, const NotifyReceiver::Fields&) {}, {});
    FAIL() << "bound a name that is taken";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use);
    EXPECT_NE(std::string(e.what()).find("@" + taken), std::string::npos) << e.what();
  }
  EXPECT_EQ(asked, NotifyReceiver::kBindAttempts);
}

}  // namespace
