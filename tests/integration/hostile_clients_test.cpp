// Clients that hold the master's sockets without playing their part: control clients that
// queue waits and leave, metrics clients that connect and send nothing. Each attack is run for
// real; operators and probes must still be served, and what the clients held be let go.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;
using forkd::common::UniqueFd;

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return {};
  return fd;
}

UniqueFd connect_tcp(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return {};
  return fd;
}

// Best effort: the daemon may already have closed the connection (a refused client).
void send_quietly(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

// True once the peer has closed: whatever it sent first is read past, up to EOF (or a reset).
bool closed_by_peer(int fd) {
  for (;;) {
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
}

// 64 requests fill a client's pending limit, so the master stops reading it before its EOF.
// 300 such clients, one after the other, would hold every one of the 256 client places for the
// hour they wait, were a client that left not reaped at once whatever it left pending.
TEST(HostileClientsTest, ControlClientsLeavingWithSendWaitsPendingAreReapedAtOnce) {
  Cluster c;
  // A worker that reads its IPC channel but never answers: every wait would run its course.
  c.start("workers: 1\nworker:\n" + test_worker_command("") + "  ready: message\n");
  c.wait_all_ready(1);
  const pid_t master = c.forkd.pid();
  ASSERT_EQ(forkctl(c, {"status"}).exit_code(), 0);
  const std::size_t baseline = open_fds(master).size();

  std::string requests;
  for (int i = 0; i < 64; ++i) {
    requests += R"({"cmd":"send","worker":0,"data":{"n":)" + std::to_string(i) +
                R"(},"wait_ms":3600000})"
                "\n";
  }
  const std::string path = c.dir.file("forkd.sock");
  for (int i = 0; i < 300; ++i) {
    const UniqueFd client = connect_unix(path);
    ASSERT_TRUE(client) << "connect " << path << ": " << std::strerror(errno);
    send_quietly(client.get(), requests);
  }  // each closes as it goes out of scope

  RunResult status;
  const bool served = wait_until(
      [&] {
        status = forkctl(c, {"status"}, 10s);
        return status.exit_code() == 0;
      },
      10s, 100ms);
  EXPECT_TRUE(served) << "forkctl status: " << status.out << status.err;
  std::size_t fds = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        fds = open_fds(master).size();
        return fds <= baseline;
      },
      10s))
      << fds << " fds open, " << baseline << " before the clients came";
  // Their waits were dropped with them, each recorded in the audit trail.
  EXPECT_TRUE(c.forkd.wait_for_log(
      "audit: send worker=0 wait_ms=3600000 bytes=\\d+ by uid \\d+ pid \\d+: failed: abandoned",
      10s));
  EXPECT_TRUE(c.forkd.running());
}

// Liveness is not readiness, and an overloaded metrics port must not turn either into a lie:
// 200 clients that send half a request head and then nothing.
TEST(HostileClientsTest, SlowMetricsClientsNeitherFailTheProbesNorStayPastTheHeadDeadline) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start("workers: 1\nmetrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n");
  c.wait_all_ready(1);
  std::vector<UniqueFd> slow;
  slow.reserve(200);
  const auto attack_started = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    slow.push_back(connect_tcp(port));
    ASSERT_TRUE(slow.back()) << "connect 127.0.0.1:" << port << ": " << std::strerror(errno);
    send_quietly(slow.back().get(), "GET /metrics HTTP/1.1\r\nHost: x\r\n");
  }

  const auto probe_started = std::chrono::steady_clock::now();
  std::string error;
  const auto health = http_get("127.0.0.1", port, "/healthz", 5s, &error);
  ASSERT_TRUE(health) << error;
  EXPECT_EQ(health->status, 200) << health->body;
  EXPECT_LT(std::chrono::steady_clock::now() - probe_started, 1s);
  const auto ready = http_get("127.0.0.1", port, "/readyz", 5s, &error);
  ASSERT_TRUE(ready) << error;
  EXPECT_EQ(ready->status, 200) << ready->body;
  std::size_t open_now = 0;
  for (const auto& fd : slow) {
    if (!closed_by_peer(fd.get())) ++open_now;
  }
  EXPECT_EQ(open_now, 200U) << "the slow clients were held, not refused";

  std::size_t still_open = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        still_open = 0;
        for (const auto& fd : slow) {
          if (!closed_by_peer(fd.get())) ++still_open;
        }
        return still_open == 0;
      },
      20s, 50ms))
      << still_open << " slow clients still open";
  // Closed by the head deadline (5 s), not before.
  EXPECT_GE(std::chrono::steady_clock::now() - attack_started, 4s);
}

// /readyz tells a load balancer to stop sending as soon as a stop begins; /healthz still says
// the master lives, so a liveness probe does not kill an instance that is draining.
TEST(HostileClientsTest, WhileStoppingReadyzIs503AndHealthzStays200) {
  const std::uint16_t port = free_tcp_port();
  Cluster c;
  c.start("workers: 1\nworker:\n" + test_worker_command("--ignore-term") +
          "  ready: message\n  shutdown_timeout: 60s\nmetrics:\n  listen: 127.0.0.1:" +
          std::to_string(port) + "\n");
  c.wait_all_ready(1);
  const auto before = http_get("127.0.0.1", port, "/readyz", 5s);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 200);
  ASSERT_TRUE(c.forkd.signal(SIGTERM));
  ASSERT_TRUE(c.forkd.wait_for_log("graceful stop", 10s)) << c.forkd.log();
  const auto ready = http_get("127.0.0.1", port, "/readyz", 5s);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503) << ready->body;
  const auto health = http_get("127.0.0.1", port, "/healthz", 5s);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << health->body;
}

}  // namespace
