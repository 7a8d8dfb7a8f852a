// Unix socket addresses, connect and the stale-socket probe, on real sockets in a temp dir.
#include "common/unix_socket.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <fstream>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::common::connect_unix;
using forkd::common::kUnixPathMax;
using forkd::common::probe_socket_file;
using forkd::common::SocketFileState;
using forkd::common::UniqueFd;
using forkd::common::UnixAddress;
using forkd::common::UnixAddressError;
using forkd::test::TempDir;

constexpr auto kPathOffset = offsetof(sockaddr_un, sun_path);

const sockaddr_un& raw(const UnixAddress& address) {
  return *reinterpret_cast<const sockaddr_un*>(address.get());
}

UniqueFd listening(const UnixAddress& address, int backlog = 16) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::bind(fd.get(), address.get(), address.size()) != 0 ||
      ::listen(fd.get(), backlog) != 0) {
    throw forkd::common::system_error_from_errno("listening socket");
  }
  return fd;
}

std::string abstract_name(const std::string& tag) {
  return "@forkd-unix-socket-test-" + std::to_string(::getpid()) + "-" + tag;
}

TEST(UnixAddressTest, APathIsNulTerminatedAndCountedWithItsNul) {
  const UnixAddress address("/run/x.sock");
  EXPECT_FALSE(address.abstract());
  EXPECT_EQ(raw(address).sun_family, AF_UNIX);
  EXPECT_STREQ(raw(address).sun_path, "/run/x.sock");
  EXPECT_EQ(address.size(), kPathOffset + std::string("/run/x.sock").size() + 1);
}

TEST(UnixAddressTest, AnAbstractNameStartsWithNulAndIsCountedByLength) {
  const UnixAddress address("@name");
  EXPECT_TRUE(address.abstract());
  EXPECT_EQ(raw(address).sun_path[0], '\0');
  EXPECT_EQ(std::string(raw(address).sun_path + 1, 4), "name");
  EXPECT_EQ(address.size(), kPathOffset + 5);
}

TEST(UnixAddressTest, TheLongestNameFitsAndOneMoreIsRefusedNamingIt) {
  EXPECT_EQ(kUnixPathMax, sizeof(sockaddr_un::sun_path) - 1);
  const std::string longest = "/" + std::string(kUnixPathMax - 1, 'x');
  EXPECT_NO_THROW((void)UnixAddress(longest));
  EXPECT_NO_THROW((void)UnixAddress("@" + std::string(kUnixPathMax - 1, 'x')));
  const std::string too_long = longest + "y";
  try {
    (void)UnixAddress(too_long);
    FAIL() << "accepted a path of " << too_long.size() << " bytes";
  } catch (const UnixAddressError& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find('"' + too_long + '"'), std::string::npos) << text;
    EXPECT_NE(text.find("is too long (108 bytes, at most 107)"), std::string::npos) << text;
  }
  EXPECT_THROW((void)UnixAddress(""), UnixAddressError);
}

TEST(UnixAddressTest, TheNoexceptFormReportsErrno) {
  std::error_code error;
  EXPECT_EQ(UnixAddress::from("", error).size(), 0U);
  EXPECT_EQ(error, std::errc::invalid_argument);
  EXPECT_EQ(UnixAddress::from("@", error).size(), 0U);
  EXPECT_EQ(error, std::errc::invalid_argument);
  EXPECT_EQ(UnixAddress::from("/" + std::string(kUnixPathMax, 'x'), error).size(), 0U);
  EXPECT_EQ(error, std::errc::filename_too_long);
  EXPECT_GT(UnixAddress::from("/ok", error).size(), 0U);
  EXPECT_FALSE(error);
}

TEST(ConnectUnixTest, ConnectsToAPathAndToAnAbstractName) {
  const TempDir dir;
  const UnixAddress path(dir.file("s.sock"));
  const UniqueFd path_server = listening(path);
  std::error_code error;
  EXPECT_TRUE(connect_unix(path, SOCK_STREAM, error).valid()) << error.message();

  const UnixAddress abstract(abstract_name("connect"));
  const UniqueFd abstract_server = listening(abstract);
  EXPECT_TRUE(connect_unix(abstract, SOCK_STREAM, error).valid()) << error.message();
}

TEST(ConnectUnixTest, FailuresAreReturnedNotThrown) {
  const TempDir dir;
  std::error_code error;
  EXPECT_FALSE(connect_unix(UnixAddress(dir.file("missing.sock")), SOCK_STREAM, error).valid());
  EXPECT_EQ(error, std::errc::no_such_file_or_directory);
  EXPECT_FALSE(connect_unix(UnixAddress::from("", error), SOCK_STREAM, error).valid());
  EXPECT_EQ(error, std::errc::invalid_argument);
}

TEST(ProbeSocketFileTest, TellsAbsentStaleLiveAndNotASocketApart) {
  const TempDir dir;
  std::error_code error;
  const std::string path = dir.file("s.sock");
  EXPECT_EQ(probe_socket_file(path, error), SocketFileState::absent);

  {
    // Bound and closed without unlinking: what a killed process leaves behind.
    const UniqueFd server = listening(UnixAddress(path));
  }
  EXPECT_EQ(probe_socket_file(path, error), SocketFileState::stale);
  EXPECT_FALSE(error);
  ASSERT_EQ(::unlink(path.c_str()), 0);

  const UniqueFd server = listening(UnixAddress(path));
  EXPECT_EQ(probe_socket_file(path, error), SocketFileState::live);

  const std::string file = dir.file("file");
  std::ofstream(file) << "data";
  EXPECT_EQ(probe_socket_file(file, error), SocketFileState::not_a_socket);
  // A symlink to a live socket is not followed: it is refused, never replaced.
  const std::string link = dir.file("link");
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  EXPECT_EQ(probe_socket_file(link, error), SocketFileState::not_a_socket);
}

TEST(ProbeSocketFileTest, AServerWithAFullBacklogIsLiveAndTheProbeDoesNotWait) {
  const TempDir dir;
  const std::string path = dir.file("busy.sock");
  const UniqueFd server = listening(UnixAddress(path), 0);
  // Fill the accept queue: nobody accepts, so non-blocking connects end in EAGAIN. A blocking
  // probe would now wait for an accept that never comes (and hang this test).
  std::vector<UniqueFd> queued;
  std::error_code error;
  for (int i = 0; i < 1024; ++i) {
    UniqueFd client = connect_unix(UnixAddress(path), SOCK_STREAM | SOCK_NONBLOCK, error);
    if (!client) break;
    queued.push_back(std::move(client));
  }
  ASSERT_EQ(error, std::errc::resource_unavailable_try_again) << error.message();
  EXPECT_EQ(probe_socket_file(path, error), SocketFileState::live);
  EXPECT_FALSE(error);
}

TEST(ProbeSocketFileTest, ALstatFailureIsReported) {
  const TempDir dir;
  std::error_code error;
  // A path through a regular file: lstat fails with ENOTDIR, which is neither absent nor stale.
  const std::string file = dir.file("file");
  std::ofstream(file) << "data";
  EXPECT_EQ(probe_socket_file(file + "/s.sock", error), SocketFileState::stat_failed);
  EXPECT_EQ(error, std::errc::not_a_directory);
}

}  // namespace
