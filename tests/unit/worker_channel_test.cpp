// The master's end of a worker's IPC socket: messages both ways within their caps, and no
// buffer held once a burst has been delivered and the worker went quiet.
#include "daemon/worker_channel.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.hpp"

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::common::make_socketpair;
using forkd::common::UniqueFd;
using forkd::daemon::WorkerChannel;
using forkd::test::run_until;

// What an empty std::string reserves (its inline buffer): what a released buffer comes back to.
const std::size_t kEmpty = std::string().capacity();

struct Received {
  std::vector<nlohmann::json> messages;
  std::vector<std::string> problems;
  bool closed = false;
};

std::shared_ptr<WorkerChannel> open_channel(asio::io_context& io, UniqueFd fd, Received& got,
                                            std::size_t max_message) {
  return WorkerChannel::open(
      io, std::move(fd), max_message, 4 * max_message,
      {.message = [&got](nlohmann::json m) { got.messages.push_back(std::move(m)); },
       .protocol_error = [&got](const std::string& p) { got.problems.push_back(p); },
       .closed = [&got] { got.closed = true; }});
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    ASSERT_GT(n, 0);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

TEST(WorkerChannelTest, DeliversMessagesDropsWhatBreaksTheCapsAndSaysWhenTheWorkerLeaves) {
  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  Received got;
  auto channel = open_channel(io, std::move(ours), got, 64);
  write_all(theirs.get(), "{\"a\":1}\n" + std::string(100, 'x') + "\nnot json\n[1,");
  write_all(theirs.get(), "2]\n");
  ASSERT_TRUE(run_until(io, [&] { return got.messages.size() == 2 && got.problems.size() == 2; }));
  EXPECT_EQ(got.messages[0], (nlohmann::json{{"a", 1}}));
  EXPECT_EQ(got.messages[1], nlohmann::json::array({1, 2}));
  EXPECT_EQ(got.problems, (std::vector<std::string>{"message over ipc.max_message dropped",
                                                    "malformed JSON line dropped"}));
  EXPECT_FALSE(got.closed);
  theirs.reset();
  ASSERT_TRUE(run_until(io, [&] { return got.closed; }));
}

TEST(WorkerChannelTest, HoldsNoBufferOnceABurstIsDeliveredAndTheWorkerIsQuiet) {
  // No read buffer inside the channel: it reads into one on the stack when data is there.
  EXPECT_LT(sizeof(WorkerChannel), 1024U);

  asio::io_context io;
  auto [ours, theirs] = make_socketpair(SOCK_STREAM);
  Received got;
  auto channel = open_channel(io, std::move(ours), got, std::size_t{1} << 20);

  // In: small messages and one of 300 KB, written in pieces that split lines, so that the
  // channel has to keep unfinished lines between reads.
  std::string burst;
  constexpr int kSmall = 2000;
  for (int i = 0; i < kSmall; ++i) burst += nlohmann::json{{"n", i}}.dump() + "\n";
  burst += nlohmann::json{{"big", std::string(300000, 'b')}}.dump() + "\n";
  std::thread worker([fd = theirs.get(), &burst] {
    for (std::size_t at = 0; at < burst.size(); at += 7001) {
      write_all(fd, std::string_view(burst).substr(at, 7001));
    }
  });
  const bool delivered = run_until(io, [&] { return got.messages.size() == kSmall + 1; });
  worker.join();
  ASSERT_TRUE(delivered);
  EXPECT_EQ(got.messages.back()["big"].get_ref<const std::string&>().size(), 300000U);
  EXPECT_LE(channel->buffer_capacity(), 3 * kEmpty);

  // Out: a burst the worker reads all of; once written, the queue gives its memory back.
  std::size_t sent = 0;
  for (int i = 0; i < 1000; ++i) {
    const nlohmann::json message = {{"reply", i}, {"pad", std::string(100, 'p')}};
    ASSERT_TRUE(channel->send(message));
    sent += message.dump().size() + 1;
  }
  std::size_t received = 0;
  std::thread reader([fd = theirs.get(), sent, &received] {
    std::vector<char> buffer(65536);
    while (received < sent) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n <= 0) return;
      received += static_cast<std::size_t>(n);
    }
  });
  const bool drained = run_until(io, [&] { return channel->queued_bytes() == 0; });
  reader.join();
  ASSERT_TRUE(drained);
  EXPECT_EQ(received, sent);
  EXPECT_LE(channel->buffer_capacity(), 3 * kEmpty);
  channel->close();
}

}  // namespace
