// Listener creation over real loopback and unix sockets (no fork).
#include "daemon/listeners.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/unix_socket.hpp"

#include "tests/unit/temp_dir.hpp"

namespace {

using forkd::common::AddressKind;
using forkd::common::ListenConfig;
using forkd::common::UniqueFd;
using forkd::daemon::ListenError;
using forkd::daemon::open_listener;
using forkd::test::TempDir;

ListenConfig unix_config(const std::string& path) {
  ListenConfig c;
  c.address = "unix:" + path;
  c.kind = AddressKind::unix_path;
  c.path = path;
  c.name = "listen0";
  return c;
}

ListenConfig tcp4(std::uint16_t port) {
  ListenConfig c;
  c.address = "127.0.0.1:" + std::to_string(port);
  c.host = "127.0.0.1";
  c.port = port;
  c.name = "listen0";
  return c;
}

TEST(ListenersTest, UnixSocketGetsItsModeAndStaleFileIsReplaced) {
  TempDir t;
  auto config = unix_config(t.file("s.sock"));
  config.mode = 0660;
  {
    auto fd = open_listener(config, false);
    struct stat st {};
    ASSERT_EQ(::stat(config.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660U);
  }
  // The first socket is closed but its file stays: stale, nobody accepts -> replaced.
  auto again = open_listener(config, false);
  EXPECT_TRUE(again.valid());
  // While that one is listening, a second bind is refused as in use.
  EXPECT_THROW((void)open_listener(config, false), ListenError);
}

TEST(ListenersTest, ALiveSocketWithAFullBacklogIsInUseWithoutWaiting) {
  TempDir t;
  auto config = unix_config(t.file("busy.sock"));
  config.backlog = 0;
  const auto server = open_listener(config, false);
  // Nobody accepts: fill the queue until connect says EAGAIN. The in-use probe must not wait
  // for an accept that never comes (the master is single-threaded).
  std::vector<UniqueFd> queued;
  std::error_code error;
  const forkd::common::UnixAddress address(config.path);
  for (int i = 0; i < 1024; ++i) {
    UniqueFd client = forkd::common::connect_unix(address, SOCK_STREAM | SOCK_NONBLOCK, error);
    if (!client) break;
    queued.push_back(std::move(client));
  }
  ASSERT_EQ(error, std::errc::resource_unavailable_try_again) << error.message();
  try {
    (void)open_listener(config, false);
    FAIL() << "expected ListenError";
  } catch (const ListenError& e) {
    EXPECT_NE(std::string(e.what()).find("Address already in use"), std::string::npos) << e.what();
  }
}

TEST(ListenersTest, RefusesToReplaceSomethingThatIsNotASocket) {
  TempDir t;
  const std::string path = t.file("file");
  std::ofstream(path) << "data";
  try {
    (void)open_listener(unix_config(path), false);
    FAIL() << "expected ListenError";
  } catch (const ListenError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(ListenersTest, AddressInUseNamesTheAddress) {
  auto first = open_listener(tcp4(0), false);
  const std::string bound = forkd::daemon::describe_socket(first.get());
  const auto port = static_cast<std::uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)));
  try {
    (void)open_listener(tcp4(port), false);
    FAIL() << "expected ListenError";
  } catch (const ListenError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("Address already in use"), std::string::npos) << e.what();
  }
}

TEST(ListenersTest, ReuseportSocketsShareAPort) {
  auto a = open_listener(tcp4(0), true);
  const std::string bound = forkd::daemon::describe_socket(a.get());
  const auto port = static_cast<std::uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)));
  auto b = open_listener(tcp4(port), true);
  EXPECT_TRUE(b.valid());
}

// A replacement's own reuseport socket: apart from the slot's while it starts, the slot's once
// it takes over, gone if it never does. A shared listener is the same socket for both.
TEST(ListenersTest, ReplacementGetsItsOwnReuseportSocketUntilItTakesOver) {
  auto probe = open_listener(tcp4(0), true);
  const std::string bound = forkd::daemon::describe_socket(probe.get());
  const auto port = static_cast<std::uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)));
  probe.reset();
  auto reuse = tcp4(port);
  reuse.reuseport = true;
  auto shared = tcp4(0);
  shared.name = "shared";
  forkd::daemon::ListenerSet set;
  set.open_all({reuse, shared}, {});
  set.ensure_worker_sockets(2);
  const auto slot = set.fds_for(1);
  EXPECT_FALSE(set.has_incoming(1));
  set.open_incoming_sockets(1);
  ASSERT_TRUE(set.has_incoming(1));
  const auto incoming = set.fds_for(1, true);
  ASSERT_EQ(incoming.size(), 2U);
  EXPECT_GE(incoming[0], 0);
  EXPECT_NE(incoming[0], slot[0]);
  EXPECT_EQ(incoming[1], slot[1]);  // the shared listener
  set.promote_incoming(1);
  EXPECT_FALSE(set.has_incoming(1));
  EXPECT_EQ(set.fds_for(1)[0], incoming[0]);
  set.open_incoming_sockets(0);
  set.drop_incoming(0);
  EXPECT_FALSE(set.has_incoming(0));
  EXPECT_EQ(set.reuseport_sockets().size(), 2U);
}

}  // namespace
