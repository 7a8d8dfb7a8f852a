// fd_passing: a descriptor sent with its bytes over a real socketpair arrives with them, and a
// reader keeps no more descriptors than it was told to.
#include "common/fd_passing.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <string_view>
#include <vector>

namespace {

using forkd::common::receive_with_fds;
using forkd::common::send_with_fd;
using forkd::common::UniqueFd;

struct Pair {
  UniqueFd a, b;
  Pair() {
    std::array<int, 2> fds{};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()), 0);
    a = UniqueFd(fds[0]);
    b = UniqueFd(fds[1]);
  }
};

ino_t inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST(FdPassing, TheDescriptorArrivesWithItsLine) {
  Pair channel;
  Pair lent;  // any socket will do: what matters is that the same one arrives
  constexpr std::string_view kLine = "{\"forkd\":\"take_queued\"}\n";
  ASSERT_EQ(send_with_fd(channel.a.get(), kLine, lent.a.get()), static_cast<ssize_t>(kLine.size()));
  std::array<char, 64> buffer{};
  std::vector<UniqueFd> fds;
  const ssize_t n = receive_with_fds(channel.b.get(), buffer, fds, 4);
  ASSERT_EQ(n, static_cast<ssize_t>(kLine.size()));
  EXPECT_EQ(std::string_view(buffer.data(), kLine.size()), kLine);
  ASSERT_EQ(fds.size(), 1U);
  EXPECT_EQ(inode_of(fds[0].get()), inode_of(lent.a.get()));
  EXPECT_NE(fds[0].get(), lent.a.get());
}

TEST(FdPassing, DescriptorsBeyondTheBoundAreClosedNotKept) {
  Pair channel;
  Pair lent;
  std::vector<UniqueFd> fds;
  std::array<char, 64> buffer{};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(send_with_fd(channel.a.get(), "x", lent.a.get()), 1);
    // One read per send: a read stops after the bytes that carried descriptors.
    ASSERT_EQ(receive_with_fds(channel.b.get(), buffer, fds, 2), 1);
  }
  EXPECT_EQ(fds.size(), 2U);
  // Nothing queued: a non-blocking read says so.
  EXPECT_EQ(receive_with_fds(channel.b.get(), buffer, fds, 2), -1);
  channel.a.reset();
  EXPECT_EQ(receive_with_fds(channel.b.get(), buffer, fds, 2), 0);  // EOF
}

}  // namespace
