// MetricsServer over real loopback TCP: an io_context runs on a background thread, the test
// thread plays HTTP clients with blocking sockets and waits on answers with deadlines.
#include "daemon/metrics_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/config.hpp"
#include "common/fd.hpp"
#include "daemon/metrics.hpp"
#include "tests/unit/wait_until.hpp"

namespace {

using forkd::common::parse_listen_address;
using forkd::common::UniqueFd;
using forkd::daemon::MetricsServer;
using forkd::daemon::MetricsServerOptions;
using forkd::daemon::MetricsSnapshot;
using forkd::daemon::render_prometheus;
using namespace std::chrono_literals;

constexpr auto kPatience = 5s;

std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

UniqueFd connect_to(const std::string& address) {
  const bool v6 = address.front() == '[';
  UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw forkd::common::system_error_from_errno("socket");
  int result = -1;
  if (v6) {
    sockaddr_in6 peer{};
    peer.sin6_family = AF_INET6;
    peer.sin6_port = htons(port_of(address));
    peer.sin6_addr = in6addr_loopback;
    result = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer);
  } else {
    sockaddr_in peer{};
    peer.sin_family = AF_INET;
    peer.sin_port = htons(port_of(address));
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    result = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer);
  }
  if (result != 0) throw forkd::common::system_error_from_errno("connect " + address);
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw forkd::common::system_error_from_errno("send");
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Everything the server sends until it closes; nullopt if it is still open at the deadline.
std::optional<std::string> read_to_eof(int fd, std::chrono::milliseconds patience = kPatience) {
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    std::array<char, 4096> buffer{};
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n == 0) return data;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) return data;
      throw forkd::common::system_error_from_errno("recv");
    }
    data.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

HttpReply parse_reply(const std::string& raw) {
  HttpReply reply;
  const std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || !raw.starts_with("HTTP/1.1 ")) {
    throw std::runtime_error("not an HTTP reply: " + raw);
  }
  reply.status = std::stoi(raw.substr(9, 3));
  std::size_t pos = raw.find("\r\n") + 2;
  while (pos < head_end) {
    const std::size_t end = raw.find("\r\n", pos);
    const std::string line = raw.substr(pos, end - pos);
    const std::size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    reply.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    pos = end + 2;
  }
  reply.body = raw.substr(head_end + 4);
  return reply;
}

// Port 0 (pick a free port) is for tests and hand-overs: the config parser refuses it.
forkd::common::ListenConfig any_port(const std::string& host) {
  forkd::common::ListenConfig config;
  const bool v6 = host.find(':') != std::string::npos;
  config.kind = v6 ? forkd::common::AddressKind::tcp6 : forkd::common::AddressKind::tcp4;
  config.host = host;
  config.port = 0;
  config.address = (v6 ? "[" + host + "]" : host) + ":0";
  return config;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void TearDown() override { stop(); }

  void start(MetricsServerOptions options = {}, const std::string& host = "127.0.0.1") {
    server_.emplace(
        io_, any_port(host),
        [this] {
          ++snapshots_;
          if (snapshot_fails_) throw std::runtime_error("snapshot exploded");
          return snapshot_;
        },
        [this] { return ready_.load(); }, options);
    thread_ = std::thread([this] { io_.run(); });
  }

  void stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  // Runs `fn` on the loop's thread and waits for it.
  template <typename Fn>
  auto on_loop(Fn fn) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    if (result.wait_for(kPatience) != std::future_status::ready) {
      throw std::runtime_error("the io_context did not run the task");
    }
    return result.get();
  }

  HttpReply request(const std::string& raw_request) {
    const UniqueFd client = connect_to(server_->bound_address());
    send_all(client.get(), raw_request);
    const auto raw = read_to_eof(client.get());
    if (!raw) throw std::runtime_error("the server did not close the connection");
    return parse_reply(*raw);
  }

  HttpReply get(const std::string& path, const std::string& method = "GET") {
    return request(method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::optional<MetricsServer> server_;
  std::thread thread_;
  MetricsSnapshot snapshot_ = [] {
    MetricsSnapshot s;
    s.workers_by_state = {{"ready", 2}};
    s.restarts = {{0, "signal", 3}};
    s.reloads_ok = 1;
    s.memory = {{0, 100, 4096, 8192}};
    s.master_uptime_seconds = 3.5;
    s.generation = 1;
    s.target_workers = 2;
    return s;
  }();
  std::atomic<bool> ready_{true};
  std::atomic<bool> snapshot_fails_{false};
  std::atomic<int> snapshots_{0};
};

TEST_F(MetricsServerTest, ReportsTheRealPortWhenAskedForPortZero) {
  start();
  const std::string address = server_->bound_address();
  ASSERT_TRUE(address.starts_with("127.0.0.1:")) << address;
  EXPECT_NE(port_of(address), 0);
  EXPECT_GE(server_->native_handle(), 0);
}

TEST_F(MetricsServerTest, ServesMetricsInThePrometheusTextFormat) {
  start();
  const auto reply = get("/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.headers.at("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(reply.headers.at("connection"), "close");
  EXPECT_EQ(reply.body, render_prometheus(snapshot_));
  EXPECT_EQ(reply.headers.at("content-length"), std::to_string(reply.body.size()));
  EXPECT_NE(reply.body.find("forkd_workers{state=\"ready\"} 2\n"), std::string::npos);
  EXPECT_EQ(snapshots_.load(), 1);
}

TEST_F(MetricsServerTest, IgnoresTheQueryStringAndAcceptsHttp10AndBareNewlines) {
  start();
  EXPECT_EQ(get("/metrics?name[]=forkd_workers").status, 200);
  EXPECT_EQ(request("GET /metrics HTTP/1.0\r\n\r\n").status, 200);
  EXPECT_EQ(request("GET /healthz HTTP/1.1\nHost: x\n\n").status, 200);
  EXPECT_EQ(request("\r\nGET /healthz HTTP/1.1\r\n\r\n").status, 200);
  EXPECT_EQ(request("GET http://localhost:9101/metrics HTTP/1.1\r\n\r\n").status, 200);
}

TEST_F(MetricsServerTest, ReadyzFollowsTheReadyCallbackAndHealthzOnlyTheLoop) {
  start();
  auto reply = get("/readyz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ready\n");
  ready_ = false;
  reply = get("/readyz");
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.body, "not ready: no ready worker, or forkd is stopping\n");
  // Liveness is not readiness: a master without a ready worker is alive.
  reply = get("/healthz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ok\n");
  ready_ = true;
  EXPECT_EQ(get("/readyz").status, 200);
}

TEST_F(MetricsServerTest, HeadSendsTheHeadersWithoutTheBody) {
  start();
  const auto full = get("/metrics");
  const auto head = get("/metrics", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty()) << head.body;
  EXPECT_EQ(head.headers.at("content-length"), std::to_string(full.body.size()));
  EXPECT_EQ(head.headers.at("content-type"), full.headers.at("content-type"));
  ready_ = false;
  const auto readiness = get("/readyz", "HEAD");
  EXPECT_EQ(readiness.status, 503);
  EXPECT_TRUE(readiness.body.empty());
}

TEST_F(MetricsServerTest, UnknownPathsAreNotFoundAndOtherMethodsNotAllowed) {
  start();
  EXPECT_EQ(get("/").status, 404);
  EXPECT_EQ(get("/metricsx").status, 404);
  EXPECT_EQ(get("/metrics/").status, 404);
  const auto post = get("/metrics", "POST");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers.at("allow"), "GET, HEAD");
  EXPECT_EQ(get("/healthz", "DELETE").status, 405);
}

TEST_F(MetricsServerTest, BadRequestsGet400) {
  start();
  for (const char* bad : {"HELLO\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                          "GET /metrics HTTP/1.1 extra\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n",
                          "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics FTP/1.1\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                          "GET /met\x01rics HTTP/1.1\r\n\r\n"}) {
    EXPECT_EQ(request(bad).status, 400) << bad;
  }
  EXPECT_EQ(request("GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(get("/metrics").status, 200) << "still serving";
}

TEST_F(MetricsServerTest, HeadersFollowTheSharedParsersRulesAndNoBodyIsWaitedFor) {
  start();
  for (const char* bad : {"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nA: b\x01\r\n\r\n"}) {
    EXPECT_EQ(request(bad).status, 400) << bad;
  }
  // The endpoint reads no body: a request announcing one is answered from its head alone.
  EXPECT_EQ(request("GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\n").status, 200);
  const auto chunked = request("POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(chunked.status, 405);
  EXPECT_EQ(chunked.headers.at("connection"), "close");
  EXPECT_EQ(chunked.headers.at("cache-control"), "no-store");
}

TEST_F(MetricsServerTest, RequestArrivingByteByByteIsServed) {
  start();
  // The blank line that ends the head is split across reads at every possible point.
  for (const std::string raw :
       {"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "GET /healthz HTTP/1.1\nHost: x\n\n"}) {
    const UniqueFd client = connect_to(server_->bound_address());
    for (const char c : raw) {
      send_all(client.get(), std::string_view(&c, 1));
      std::this_thread::sleep_for(1ms);  // lets the bytes arrive in separate reads
    }
    const auto reply = read_to_eof(client.get());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(parse_reply(*reply).status, 200) << raw;
  }
}

TEST_F(MetricsServerTest, OversizedHeadGets431) {
  start();
  const std::string huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(9000, 'a');
  const UniqueFd client = connect_to(server_->bound_address());
  send_all(client.get(), huge);  // never terminated: the cap, not the blank line, ends it
  const auto raw = read_to_eof(client.get());
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(parse_reply(*raw).status, 431);
  EXPECT_EQ(snapshots_.load(), 0);
  // A complete head just over the cap is refused the same way.
  EXPECT_EQ(request("GET /metrics HTTP/1.1\r\nX: " + std::string(8200, 'b') + "\r\n\r\n").status,
            431);
}

TEST_F(MetricsServerTest, SilentClientIsClosedAfterTheHeadTimeout) {
  MetricsServerOptions options;
  options.head_timeout = 200ms;
  start(options);
  const UniqueFd silent = connect_to(server_->bound_address());
  const auto connected = std::chrono::steady_clock::now();
  const auto raw = read_to_eof(silent.get());
  ASSERT_TRUE(raw.has_value()) << "still open after " << kPatience.count() << " s";
  EXPECT_TRUE(raw->empty()) << *raw;
  EXPECT_GE(std::chrono::steady_clock::now() - connected, 150ms);
  EXPECT_EQ(on_loop([this] { return server_->connection_count(); }), 0U);
  // A partial head is no better than silence.
  const UniqueFd slow = connect_to(server_->bound_address());
  send_all(slow.get(), "GET /metr");
  const auto partial = read_to_eof(slow.get());
  ASSERT_TRUE(partial.has_value());
  EXPECT_TRUE(partial->empty());
}

TEST_F(MetricsServerTest, DribblingClientIsClosedAtTheHeadDeadlineNotKeptAliveByEachByte) {
  MetricsServerOptions options;
  options.head_timeout = 300ms;
  start(options);
  const UniqueFd slow = connect_to(server_->bound_address());
  const auto connected = std::chrono::steady_clock::now();
  const std::string head = "GET /metrics HTTP/1.1\r\nX-Slow: ";
  bool closed = false;
  for (std::size_t i = 0; !closed && std::chrono::steady_clock::now() - connected < kPatience;
       ++i) {
    closed = ::send(slow.get(), &head[i % head.size()], 1, MSG_NOSIGNAL) < 0;
    pollfd p{slow.get(), POLLIN, 0};
    closed = closed || ::poll(&p, 1, 50) > 0;  // a byte every 50 ms until the server hangs up
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - connected, 2s);
}

TEST_F(MetricsServerTest, AtTheLimitANewConnectionClosesTheOldestAndIsServed) {
  MetricsServerOptions options;
  options.max_connections = 4;
  start(options);
  std::vector<UniqueFd> idle;
  idle.reserve(4);
  for (int i = 0; i < 4; ++i) idle.push_back(connect_to(server_->bound_address()));
  // The acceptor takes connections in order, so the four are admitted before the probe.
  ready_ = false;
  EXPECT_EQ(get("/healthz").status, 200) << "a probe is never refused for overload";
  const auto evicted = read_to_eof(idle.front().get());
  ASSERT_TRUE(evicted.has_value());
  EXPECT_TRUE(evicted->empty()) << *evicted;
  EXPECT_LE(on_loop([this] { return server_->connection_count(); }), 4U);
}

TEST_F(MetricsServerTest, ManySequentialScrapesLeaveNoConnectionBehind) {
  start();
  for (int i = 0; i < 200; ++i) ASSERT_EQ(get(i % 2 == 0 ? "/metrics" : "/healthz").status, 200);
  (void)forkd::test::wait_until(
      [&] { return on_loop([this] { return server_->connection_count(); }) == 0U; }, kPatience);
  EXPECT_EQ(on_loop([this] { return server_->connection_count(); }), 0U);
}

TEST_F(MetricsServerTest, FailingSnapshotGets500AndTheServerGoesOn) {
  start();
  snapshot_fails_ = true;
  EXPECT_EQ(get("/metrics").status, 500);
  snapshot_fails_ = false;
  EXPECT_EQ(get("/metrics").status, 200);
}

TEST_F(MetricsServerTest, CloseStopsAcceptingAndCallingBack) {
  start();
  const std::string address = server_->bound_address();
  const UniqueFd pending = connect_to(address);
  on_loop([this] {
    server_->close();
    server_->close();  // idempotent
    return 0;
  });
  EXPECT_EQ(server_->native_handle(), -1);
  const auto raw = read_to_eof(pending.get());
  ASSERT_TRUE(raw.has_value());
  EXPECT_TRUE(raw->empty());
  EXPECT_THROW((void)connect_to(address), std::system_error);
  EXPECT_EQ(snapshots_.load(), 0);
}

TEST_F(MetricsServerTest, BindErrorNamesTheAddressAndTheCause) {
  start();
  const std::string taken = server_->bound_address();
  asio::io_context other;
  try {
    MetricsServer second(
        other, parse_listen_address(taken), [] { return MetricsSnapshot{}; }, [] { return true; });
    FAIL() << "bound " << taken << " twice";
  } catch (const std::runtime_error& error) {
    EXPECT_EQ(std::string(error.what()),
              "cannot bind metrics address " + taken + ": Address already in use");
  }
}

TEST_F(MetricsServerTest, UnixAddressesAreRefused) {
  EXPECT_THROW(MetricsServer(
                   io_, parse_listen_address("unix:/tmp/forkd-metrics.sock"),
                   [] { return MetricsSnapshot{}; }, [] { return true; }),
               std::runtime_error);
}

TEST_F(MetricsServerTest, ServesOnIpv6Loopback) {
  try {
    start({}, "::1");
  } catch (const std::runtime_error& error) {
    GTEST_SKIP() << "no IPv6 loopback here: " << error.what();
  }
  const std::string address = server_->bound_address();
  ASSERT_TRUE(address.starts_with("[::1]:")) << address;
  EXPECT_EQ(get("/healthz").status, 200);
}

TEST_F(MetricsServerTest, AdoptsAListeningSocket) {
  UniqueFd listening(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listening.valid());
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&local), sizeof local), 0);
  ASSERT_EQ(::listen(listening.get(), 16), 0);
  socklen_t length = sizeof local;
  ASSERT_EQ(::getsockname(listening.get(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  const int fd = listening.get();
  server_.emplace(
      io_, std::move(listening), [this] { return snapshot_; }, [] { return true; });
  thread_ = std::thread([this] { io_.run(); });
  EXPECT_EQ(server_->native_handle(), fd);
  EXPECT_EQ(server_->bound_address(), "127.0.0.1:" + std::to_string(ntohs(local.sin_port)));
  EXPECT_EQ(get("/metrics").body, render_prometheus(snapshot_));
}

TEST_F(MetricsServerTest, RefusesToAdoptASocketThatIsNotListening) {
  UniqueFd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(unbound.valid());
  EXPECT_THROW(MetricsServer(
                   io_, std::move(unbound), [] { return MetricsSnapshot{}; }, [] { return true; }),
               std::runtime_error);
}

}  // namespace
