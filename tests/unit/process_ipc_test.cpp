#include "process/ipc.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fd.hpp"

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::common::make_socketpair;
using forkd::common::UniqueFd;
using forkd::process::IpcChannel;
using namespace std::chrono_literals;
using forkd::test::run_until;

void write_all(int fd, const std::string& bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

std::string read_some(int fd) {
  std::string buffer(4096, '\0');
  const ssize_t n = ::read(fd, buffer.data(), buffer.size());
  buffer.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return buffer;
}

TEST(ProcessIpcTest, DeliversEachLineAsJsonAndSkipsNodeInternals) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours));
  std::vector<nlohmann::json> got;
  std::vector<std::string> errors;
  channel.on_error([&](const std::string& what) { errors.push_back(what); });
  channel.on_message([&](const nlohmann::json& m) { got.push_back(m); });
  write_all(theirs.get(), "{\"a\":1}\n{\"cmd\":\"NODE_HANDLE_ACK\"}\nnot json\n\"ready\"\n[1,");
  write_all(theirs.get(), "2]\n");
  ASSERT_TRUE(run_until(io, [&] { return got.size() == 3; }));
  EXPECT_EQ(got[0], (nlohmann::json{{"a", 1}}));
  EXPECT_EQ(got[1], "ready");
  EXPECT_EQ(got[2], nlohmann::json::array({1, 2}));
  EXPECT_EQ(errors, std::vector<std::string>{"ipc: dropped a line that is not JSON"});
}

TEST(ProcessIpcTest, SendWritesOneLinePerMessage) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours));
  EXPECT_TRUE(channel.send({{"x", "y"}}));
  EXPECT_TRUE(channel.send(42));
  std::string received;
  ASSERT_TRUE(run_until(io, [&] {
    if (channel.queued_bytes() == 0) received = read_some(theirs.get());
    return !received.empty();
  }));
  EXPECT_EQ(received, "{\"x\":\"y\"}\n42\n");
}

TEST(ProcessIpcTest, RefusesOversizedMessagesBothWays) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours), 16);
  EXPECT_FALSE(channel.send(std::string(32, 'x')));
  std::vector<nlohmann::json> got;
  std::vector<std::string> errors;
  channel.on_error([&](const std::string& what) { errors.push_back(what); });
  channel.on_message([&](const nlohmann::json& m) { got.push_back(m); });
  write_all(theirs.get(), "\"" + std::string(40, 'y') + "\"\n\"fits\"\n");
  ASSERT_TRUE(run_until(io, [&] { return !got.empty(); }));
  EXPECT_EQ(got, std::vector<nlohmann::json>{"fits"});
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0], "ipc: dropped a message longer than 16 bytes");
}

TEST(ProcessIpcTest, SendQueueIsBoundedWhenThePeerDoesNotRead) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours), 1024);
  const std::string payload(1000, 'p');
  int accepted = 0;
  for (int i = 0; i < 10000 && channel.send(payload); ++i) {
    ++accepted;
    io.poll();
  }
  EXPECT_LT(accepted, 10000);
  EXPECT_LE(channel.queued_bytes(), 1024 * IpcChannel::kQueueFactor);
}

TEST(ProcessIpcTest, PeerCloseIsADisconnect) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours));
  int disconnects = 0;
  channel.on_disconnect([&] { ++disconnects; });
  theirs.reset();
  ASSERT_TRUE(run_until(io, [&] { return disconnects == 1; }));
  EXPECT_FALSE(channel.connected());
  EXPECT_FALSE(channel.send("late"));
  io.restart();
  io.poll();
  EXPECT_EQ(disconnects, 1);
}

TEST(ProcessIpcTest, DisconnectFlushesWhatIsQueuedThenCloses) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  IpcChannel channel(io, std::move(ours));
  bool disconnected = false;
  channel.on_disconnect([&] { disconnected = true; });
  EXPECT_TRUE(channel.send("last words"));
  channel.disconnect();
  EXPECT_FALSE(channel.connected());
  ASSERT_TRUE(run_until(io, [&] { return disconnected; }));
  EXPECT_EQ(read_some(theirs.get()), "\"last words\"\n");
  EXPECT_EQ(read_some(theirs.get()), "");  // then EOF
}

TEST(ProcessIpcTest, HandlerMayDestroyTheChannel) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  auto channel = std::make_unique<IpcChannel>(io, std::move(ours));
  int seen = 0;
  channel->on_message([&](const nlohmann::json&) {
    ++seen;
    channel.reset();
  });
  write_all(theirs.get(), "1\n2\n3\n");
  ASSERT_TRUE(run_until(io, [&] { return seen > 0; }));
  io.restart();
  io.poll();
  EXPECT_EQ(seen, 1);
}

}  // namespace
