// The mirror of a reuseport group's socket order, alone and against the kernel's own: a
// program that returns one mirror index must send a connection to that very socket.
#include "daemon/reuseport_order.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "common/fd.hpp"
#include "daemon/steering_program.hpp"

namespace {

using forkd::common::UniqueFd;
using forkd::daemon::build_steering_program;
using forkd::daemon::ReuseportOrder;

TEST(ReuseportOrderTest, AppendsOnListenAndMovesTheLastIntoALeaversPlace) {
  ReuseportOrder order;
  for (ReuseportOrder::Key k : {10U, 11U, 12U, 13U, 14U}) order.listen(k);
  EXPECT_EQ(order.sockets(), (std::vector<ReuseportOrder::Key>{10, 11, 12, 13, 14}));
  EXPECT_TRUE(order.leave(11));
  EXPECT_EQ(order.sockets(), (std::vector<ReuseportOrder::Key>{10, 14, 12, 13}));
  EXPECT_TRUE(order.leave(12));
  EXPECT_EQ(order.sockets(), (std::vector<ReuseportOrder::Key>{10, 14, 13}));
  EXPECT_TRUE(order.leave(13));  // the last one just goes
  EXPECT_EQ(order.sockets(), (std::vector<ReuseportOrder::Key>{10, 14}));
  EXPECT_FALSE(order.leave(99));
  order.listen(15);
  order.listen(15);  // once
  EXPECT_EQ(order.index_of(15), 2U);
  EXPECT_EQ(order.index_of(11), std::nullopt);
  EXPECT_EQ(order.size(), 3U);
}

struct Group {
  std::vector<UniqueFd> sockets;
  std::uint16_t port = 0;
};

UniqueFd reuseport_socket(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const int one = 1;
  EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

ReuseportOrder::Key key_of(int fd) {
  struct stat st {};
  ::fstat(fd, &st);
  return st.st_ino;
}

// Which of `group`'s sockets a new connection lands on (-1: none or several).
int landed_on(const std::vector<UniqueFd>& group, std::uint16_t port) {
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return -1;
  int found = -1;
  for (std::size_t i = 0; i < group.size(); ++i) {
    if (!group[i]) continue;
    // The handshake is complete when connect() returns: the connection is queued already.
    UniqueFd accepted(::accept4(group[i].get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (accepted) found = found == -1 ? static_cast<int>(i) : -2;
  }
  return found;
}

TEST(ReuseportOrderTest, MatchesTheKernelsOrderAsSocketsLeave) {
  std::vector<UniqueFd> group;
  group.push_back(reuseport_socket(0));
  const std::uint16_t port = port_of(group[0].get());
  for (int i = 0; i < 5; ++i) group.push_back(reuseport_socket(port));
  ReuseportOrder order;
  for (const auto& fd : group) order.listen(key_of(fd.get()));

  const auto check_every_index = [&] {
    for (std::size_t index = 0; index < order.size(); ++index) {
      const std::vector<std::uint32_t> only{static_cast<std::uint32_t>(index)};
      auto program = build_steering_program(only);
      sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
      const int any = [&] {
        for (const auto& fd : group)
          if (fd) return fd.get();
        return -1;
      }();
      ASSERT_EQ(::setsockopt(any, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(fprog)), 0);
      const int got = landed_on(group, port);
      ASSERT_GE(got, 0) << "index " << index;
      EXPECT_EQ(key_of(group[static_cast<std::size_t>(got)].get()), order.sockets()[index])
          << "index " << index;
    }
  };
  check_every_index();
  for (std::size_t leaving : {1U, 2U, 5U}) {
    ASSERT_TRUE(order.leave(key_of(group[leaving].get())));
    group[leaving].reset();
    check_every_index();
  }
  group.push_back(reuseport_socket(port));
  order.listen(key_of(group.back().get()));
  check_every_index();
}

}  // namespace

namespace {

using forkd::daemon::encode_orders;
using forkd::daemon::parse_orders;
using forkd::daemon::ReuseportOrders;

TEST(ReuseportOrderTest, AHotUpgradeHandsTheOrdersOverAsText) {
  const ReuseportOrders orders{{1234, 1240, 17}, {2001}};
  EXPECT_EQ(encode_orders(orders), "1234,1240,17;2001");
  EXPECT_EQ(parse_orders(encode_orders(orders)), orders);
  EXPECT_EQ(parse_orders(""), ReuseportOrders{});
}

TEST(ReuseportOrderTest, AMalformedOrderIsNoneAtAll) {
  for (const char* bad : {"1,", ",1", "1;", ";1", "1;;2", "1,,2", "1 2", "x", "-1", "1,1", "1;1",
                          "18446744073709551616", "1,2;3,a"}) {
    EXPECT_FALSE(parse_orders(bad).has_value()) << bad;
  }
  std::string many;
  for (std::size_t i = 0; i <= forkd::daemon::kMaxInheritedSockets; ++i) {
    many += (i == 0 ? "" : ",") + std::to_string(i + 1);
  }
  EXPECT_FALSE(parse_orders(many).has_value());
}

}  // namespace
