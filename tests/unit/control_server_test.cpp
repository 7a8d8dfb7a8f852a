// ControlServer over real Unix sockets: an io_context runs on a background thread, the test
// thread plays the clients with blocking sockets and waits on replies with deadlines.
#include "daemon/control_server.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/control_paths.hpp"
#include "common/fd.hpp"
#include "tests/unit/temp_dir.hpp"
#include "tests/unit/wait_until.hpp"

namespace {

using forkd::common::UniqueFd;
using forkd::daemon::ControlCaller;
using forkd::daemon::ControlServer;
using forkd::daemon::ControlServerOptions;
using forkd::daemon::PeerCredentials;
using forkd::daemon::Respond;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kPatience = 5s;

using forkd::test::TempDir;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds patience = kPatience) {
  return forkd::test::wait_until(done, patience);
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// A blocking test client: whole-line writes, line reads with a deadline.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un address = address_of(path);
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      throw forkd::common::system_error_from_errno("connect " + path);
    }
  }

  void send(const std::string& bytes) const {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0) throw forkd::common::system_error_from_errno("send");
      done += static_cast<std::size_t>(n);
    }
  }
  void send_line(const std::string& line) const { send(line + "\n"); }

  // nullopt on EOF or when nothing arrives in time.
  std::optional<std::string> read_line(std::chrono::milliseconds patience = kPatience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  Json read_json() {
    const auto line = read_line();
    if (!line) return Json{{"missing", true}};
    return Json::parse(*line);
  }

  // True once the server closed the connection (buffered lines are skipped).
  bool closed_by_server(std::chrono::milliseconds patience = kPatience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (!eof_ && std::chrono::steady_clock::now() < deadline) {
      buffer_.clear();
      (void)read_line(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
    }
    return eof_;
  }

 private:
  UniqueFd fd_;
  std::string buffer_;
  bool eof_ = false;
};

// The server under test, on its own loop thread. Calls into it go through on_loop().
class ServerFixture : public ::testing::Test {
 protected:
  void TearDown() override { stop(); }

  [[nodiscard]] ControlServerOptions options() const {
    ControlServerOptions options;
    options.path = dir_.file("control.sock");
    return options;
  }

  void start(ControlServerOptions options) {
    path_ = options.path;
    options.client_closed = [this](std::uint64_t client) { closed_clients_.push_back(client); };
    server_ = std::make_unique<ControlServer>(
        io_, std::move(options),
        [this](const Json& request, const ControlCaller& caller, Respond respond) {
          last_client_ = caller.client;
          handle(request, caller.peer, std::move(respond));
        });
    thread_ = std::thread([this] { io_.run(); });
  }

  void stop() {
    if (!thread_.joinable()) return;
    on_loop([this] {
      server_.reset();
      parked_.clear();
      return 0;
    });
    guard_.reset();
    thread_.join();
  }

  template <typename Fn>
  auto on_loop(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  std::size_t clients() {
    return on_loop([this] { return server_->client_count(); });
  }
  std::size_t subscribers() {
    return on_loop([this] { return server_->subscriber_count(); });
  }
  void publish(const Json& event) {
    on_loop([&] {
      server_->publish_event(event);
      return 0;
    });
  }
  std::size_t parked() {
    return on_loop([this] { return parked_.size(); });
  }
  int handled() {
    return on_loop([this] { return handled_; });
  }
  std::vector<std::uint64_t> closed_clients() {
    return on_loop([this] { return closed_clients_; });
  }
  void answer_parked(std::size_t index, const Json& reply) {
    on_loop([&] {
      parked_.at(index)(reply);
      return 0;
    });
  }

  // The fake master: a few commands that exercise every way a handler may answer.
  void handle(const Json& request, const PeerCredentials& peer, Respond respond) {
    ++handled_;
    last_peer_ = peer;
    const std::string cmd = request.at("cmd").get<std::string>();
    if (cmd == "echo") {
      respond(Json{{"ok", true}, {"echo", request}});
    } else if (cmd == "later") {
      parked_.push_back(std::move(respond));
    } else if (cmd == "twice") {
      respond(Json{{"ok", true}, {"n", 1}});
      respond(Json{{"ok", true}, {"n", 2}});
    } else if (cmd == "throw") {
      throw std::runtime_error("handler exploded");
    } else {
      respond(Json{{"ok", false}, {"error", "unknown command: " + cmd}});
    }
  }

  TempDir dir_;
  std::string path_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(io_);
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
  std::vector<Respond> parked_;                // loop thread only
  int handled_ = 0;                            // loop thread only
  PeerCredentials last_peer_{};                // loop thread only
  std::uint64_t last_client_ = 0;              // loop thread only
  std::vector<std::uint64_t> closed_clients_;  // loop thread only: what client_closed said
};

TEST_F(ServerFixture, RequestGetsTheHandlersReplyWithPeerCredentials) {
  start(options());
  Client client(path_);
  client.send_line(R"({"cmd":"echo","x":1})");
  const Json reply = client.read_json();
  EXPECT_EQ(reply["ok"], true);
  EXPECT_EQ(reply["echo"]["x"], 1);
  const PeerCredentials peer = on_loop([this] { return last_peer_; });
  EXPECT_EQ(peer.uid, ::geteuid());
  EXPECT_EQ(peer.pid, ::getpid());
  // Several requests in one write, and a request split over two writes.
  client.send(R"({"cmd":"echo","n":1})"
              "\n"
              R"({"cmd":"echo","n":2})"
              "\n"
              R"({"cmd":"ec)");
  client.send(R"(ho","n":3})"
              "\n");
  EXPECT_EQ(client.read_json()["echo"]["n"], 1);
  EXPECT_EQ(client.read_json()["echo"]["n"], 2);
  EXPECT_EQ(client.read_json()["echo"]["n"], 3);
}

TEST_F(ServerFixture, MalformedRequestsGetErrorsAndTheConnectionStaysUsable) {
  start(options());
  Client client(path_);
  for (const char* bad : {"{not json", "[1,2]", "42", R"({"x":1})", R"({"cmd":7})"}) {
    client.send_line(bad);
    const Json reply = client.read_json();
    EXPECT_EQ(reply["ok"], false) << bad;
    ASSERT_TRUE(reply["error"].is_string()) << bad;
    EXPECT_NE(reply["error"].get<std::string>().find("malformed request"), std::string::npos)
        << reply.dump();
  }
  client.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(client.read_json()["ok"], true);
  EXPECT_EQ(on_loop([this] { return handled_; }), 1);
}

TEST_F(ServerFixture, OversizedLineGetsAnErrorThenTheConnectionCloses) {
  auto opts = options();
  opts.max_message = 1024;
  start(opts);
  Client client(path_);
  client.send_line(R"({"cmd":"echo","pad":")" + std::string(900, 'a') + "\"}");
  EXPECT_EQ(client.read_json()["ok"], true);  // under the cap: served
  client.send_line(R"({"cmd":"echo","pad":")" + std::string(2000, 'a') + "\"}");
  const Json reply = client.read_json();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_NE(reply.value("error", "").find("too large"), std::string::npos) << reply.dump();
  EXPECT_TRUE(client.closed_by_server());
  // The server itself goes on.
  Client next(path_);
  next.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(next.read_json()["ok"], true);
}

TEST_F(ServerFixture, RepliesComeInRequestOrderEvenWhenTheFirstIsLate) {
  start(options());
  Client client(path_);
  client.send_line(R"({"cmd":"later"})");
  client.send_line(R"({"cmd":"echo","n":2})");
  ASSERT_TRUE(wait_until([&] { return on_loop([this] { return handled_; }) == 2; }));
  EXPECT_EQ(client.read_line(50ms), std::nullopt);  // the echo waits behind "later"
  answer_parked(0, Json{{"ok", true}, {"n", 1}});
  EXPECT_EQ(client.read_json()["n"], 1);
  EXPECT_EQ(client.read_json()["echo"]["n"], 2);
}

TEST_F(ServerFixture, RespondingTwiceOrAfterTheClientLeftIsHarmless) {
  start(options());
  {
    Client client(path_);
    client.send_line(R"({"cmd":"twice"})");
    client.send_line(R"({"cmd":"echo","n":3})");
    EXPECT_EQ(client.read_json()["n"], 1);
    EXPECT_EQ(client.read_json()["echo"]["n"], 3);

    client.send_line(R"({"cmd":"later"})");
    ASSERT_TRUE(wait_until([&] { return parked() == 1; }));
  }
  ASSERT_TRUE(wait_until([&] { return clients() == 0; }));
  answer_parked(0, Json{{"ok", true}});
  Client next(path_);
  next.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(next.read_json()["ok"], true);
}

TEST_F(ServerFixture, AHandlerThatThrowsCostsOnlyThatRequest) {
  start(options());
  Client client(path_);
  client.send_line(R"({"cmd":"throw"})");
  const Json reply = client.read_json();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_NE(reply.value("error", "").find("handler exploded"), std::string::npos);
  client.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(client.read_json()["ok"], true);
}

TEST_F(ServerFixture, EventSubscribersReceivePublishedEvents) {
  start(options());
  Client first(path_);
  Client second(path_);
  Client bystander(path_);
  first.send_line(R"({"cmd":"events"})");
  second.send_line(R"({"cmd":"events"})");
  EXPECT_EQ(first.read_json(), Json({{"ok", true}}));
  EXPECT_EQ(second.read_json(), Json({{"ok", true}}));
  EXPECT_EQ(subscribers(), 2u);
  const Json event{{"event", "worker_ready"}, {"worker", 1}, {"pid", 4242}};
  publish(event);
  EXPECT_EQ(first.read_json(), event);
  EXPECT_EQ(second.read_json(), event);
  // Not subscribed: the next line it sees is its own reply, not the event.
  bystander.send_line(R"({"cmd":"echo","n":9})");
  EXPECT_EQ(bystander.read_json()["echo"]["n"], 9);
  EXPECT_EQ(on_loop([this] { return handled_; }), 1);  // `events` never reached the handler
}

TEST_F(ServerFixture, ASubscriberThatDoesNotReadIsDroppedAndOthersContinue) {
  auto opts = options();
  opts.max_outbound = std::size_t{64} * 1024;
  start(opts);
  Client stalled(path_);
  Client reader(path_);
  stalled.send_line(R"({"cmd":"events"})");
  reader.send_line(R"({"cmd":"events"})");
  ASSERT_EQ(stalled.read_json()["ok"], true);
  ASSERT_EQ(reader.read_json()["ok"], true);

  const Json event{{"event", "message"}, {"data", std::string(1000, 'x')}};
  // Small batches the reader keeps up with; the stalled one's socket buffer fills and then
  // its queue passes max_outbound (at most 8 MB in all).
  for (int batch = 0; batch < 400 && subscribers() == 2; ++batch) {
    on_loop([&] {
      for (int i = 0; i < 20; ++i) server_->publish_event(event);
      return 0;
    });
    for (int i = 0; i < 20; ++i) ASSERT_EQ(reader.read_json(), event) << "batch " << batch;
  }
  ASSERT_TRUE(wait_until([&] { return subscribers() == 1; }));
  EXPECT_TRUE(stalled.closed_by_server());
  const Json last{{"event", "reload"}, {"ok", true}};
  publish(last);
  EXPECT_EQ(reader.read_json(), last);
}

TEST_F(ServerFixture, StalledClientsTogetherAreBoundedByTheTotal) {
  auto opts = options();
  opts.max_outbound = 8 << 20;  // never reached here: only the total cuts them off
  opts.max_outbound_total = std::size_t{256} * 1024;
  start(opts);
  std::vector<std::unique_ptr<Client>> stalled;
  for (int i = 0; i < 4; ++i) {
    stalled.push_back(std::make_unique<Client>(path_));
    stalled.back()->send_line(R"({"cmd":"events"})");
    ASSERT_EQ(stalled.back()->read_json()["ok"], true);
  }
  Client reader(path_);
  reader.send_line(R"({"cmd":"events"})");
  ASSERT_EQ(reader.read_json()["ok"], true);

  const Json event{{"event", "message"}, {"data", std::string(1000, 'x')}};
  // At most 3 MB in all: each stalled client alone stays far below its own 8 MiB.
  for (int batch = 0; batch < 150 && subscribers() > 1; ++batch) {
    on_loop([&] {
      for (int i = 0; i < 20; ++i) server_->publish_event(event);
      return 0;
    });
    for (int i = 0; i < 20; ++i) ASSERT_EQ(reader.read_json(), event) << "batch " << batch;
  }
  ASSERT_TRUE(wait_until([&] { return subscribers() == 1; }));
  for (auto& client : stalled) EXPECT_TRUE(client->closed_by_server());
}

TEST_F(ServerFixture, IdleClientsAreClosedButSubscribersAndPendingRequestsStay) {
  auto opts = options();
  opts.idle_timeout = 150ms;
  start(opts);
  Client subscriber(path_);
  subscriber.send_line(R"({"cmd":"events"})");
  ASSERT_EQ(subscriber.read_json()["ok"], true);
  Client waiting(path_);
  waiting.send_line(R"({"cmd":"later"})");
  Client silent(path_);
  silent.send(R"({"cmd":"echo")");  // a partial request is no activity forever

  EXPECT_TRUE(silent.closed_by_server());
  ASSERT_TRUE(wait_until([&] { return clients() == 2; }));
  ASSERT_TRUE(wait_until([&] { return parked() == 1; }));
  // Several idle periods later the other two are still served.
  EXPECT_EQ(waiting.read_line(500ms), std::nullopt);
  answer_parked(0, Json{{"ok", true}, {"late", true}});
  EXPECT_EQ(waiting.read_json()["late"], true);
  publish(Json{{"event", "ping"}});
  EXPECT_EQ(subscriber.read_json()["event"], "ping");
  // With its request answered, the waiting client is idle again and goes.
  EXPECT_TRUE(waiting.closed_by_server());
}

TEST_F(ServerFixture, ClientThatHalfClosesStillGetsItsReply) {
  start(options());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un address = address_of(path_);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  const std::string request = R"({"cmd":"echo","n":5})";  // no newline, as printf | socat
  ASSERT_EQ(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  ::shutdown(fd.get(), SHUT_WR);
  std::string received;
  char chunk[4096];
  for (;;) {
    pollfd pfd{fd.get(), POLLIN, 0};
    ASSERT_GT(::poll(&pfd, 1, 5000), 0);
    const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n <= 0) break;
    received.append(chunk, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(Json::parse(received)["echo"]["n"], 5);
}

// The 64 requests fill the pending limit, so reading stops before the EOF: the hangup must be
// seen another way, at once, and the owner told, so it can drop the work it holds for it.
TEST_F(ServerFixture, AClientThatLeavesWithItsPendingLimitFullIsReapedAndReported) {
  start(options());
  {
    Client client(path_);
    std::string requests;
    for (int i = 0; i < 64; ++i)
      requests += R"({"cmd":"later"})"
                  "\n";
    client.send(requests);
    ASSERT_TRUE(wait_until([&] { return parked() == 64; }));
  }
  EXPECT_TRUE(wait_until([&] { return clients() == 0; }, 2s)) << clients() << " clients left";
  ASSERT_TRUE(wait_until([&] { return closed_clients().size() == 1; }, 2s));
  EXPECT_EQ(closed_clients().front(), on_loop([this] { return last_client_; }));
  answer_parked(0, Json{{"ok", true}});  // replies for a client that left are dropped
  Client next(path_);
  next.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(next.read_json()["ok"], true);
}

// Reading resumes once a reply frees a place, and what arrived while it was paused is read at
// once, not held back until more bytes come.
TEST_F(ServerFixture, ReadingResumesAfterThePendingLimitWithWhatArrivedMeanwhile) {
  start(options());
  Client client(path_);
  std::string requests;
  for (int i = 0; i < 64; ++i)
    requests += R"({"cmd":"later"})"
                "\n";
  client.send(requests);
  ASSERT_TRUE(wait_until([&] { return parked() == 64; }));
  client.send_line(R"({"cmd":"echo","n":65})");
  EXPECT_FALSE(wait_until([&] { return handled() == 65; }, 200ms)) << "read while paused";
  answer_parked(0, Json{{"ok", true}, {"n", 1}});
  EXPECT_TRUE(wait_until([&] { return handled() == 65; }, 2s)) << handled();
  EXPECT_EQ(client.read_json()["n"], 1);
  for (std::size_t i = 1; i < 64; ++i) answer_parked(i, Json{{"ok", true}});
  for (int i = 1; i < 64; ++i) (void)client.read_json();
  EXPECT_EQ(client.read_json()["echo"]["n"], 65);
  EXPECT_TRUE(closed_clients().empty());
}

// shutdown(SHUT_WR) keeps the client waiting for its replies; closing for good later is seen.
TEST_F(ServerFixture, AHalfClosedClientThatThenLeavesIsReaped) {
  start(options());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un address = address_of(path_);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  const std::string request = R"({"cmd":"later"})"
                              "\n";
  ASSERT_EQ(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  ::shutdown(fd.get(), SHUT_WR);
  ASSERT_TRUE(wait_until([&] { return parked() == 1; }));
  EXPECT_EQ(clients(), 1U);
  fd.reset();
  EXPECT_TRUE(wait_until([&] { return clients() == 0; }, 2s));
  EXPECT_TRUE(wait_until([&] { return closed_clients().size() == 1; }, 2s));
}

TEST_F(ServerFixture, TooManyClientsAreTurnedAway) {
  auto opts = options();
  opts.max_clients = 1;
  start(opts);
  Client first(path_);
  ASSERT_TRUE(wait_until([&] { return clients() == 1; }));
  Client second(path_);
  const Json reply = second.read_json();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_NE(reply.value("error", "").find("too many"), std::string::npos);
  first.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(first.read_json()["ok"], true);
}

TEST_F(ServerFixture, CloseDropsClientsAndRemoveSocketFileUnlinks) {
  start(options());
  Client client(path_);
  ASSERT_TRUE(wait_until([&] { return clients() == 1; }));
  on_loop([this] {
    server_->close();
    return 0;
  });
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_EQ(clients(), 0u);
  EXPECT_TRUE(std::filesystem::exists(path_));  // close() never unlinks
  on_loop([this] {
    server_->remove_socket_file();
    return 0;
  });
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ServerFixture, ModeIsAppliedToTheSocketFile) {
  auto opts = options();
  opts.mode = 0660;
  start(opts);
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST_F(ServerFixture, AStaleSocketFileIsReplaced) {
  const std::string path = options().path;
  {
    // Bound and closed without unlinking: what a killed daemon leaves behind.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un address = address_of(path);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  }
  ASSERT_TRUE(std::filesystem::is_socket(path));
  start(options());
  Client client(path_);
  client.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(client.read_json()["ok"], true);
}

TEST_F(ServerFixture, ALiveSocketIsNotStolen) {
  start(options());
  asio::io_context other;
  try {
    ControlServer second(other, options(),
                         [](const Json&, const ControlCaller&, const Respond&) {});
    FAIL() << "a second server bound a live socket";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("in use by a running forkd"), std::string::npos)
        << error.what();
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos) << error.what();
  }
  Client client(path_);  // the first one is untouched
  client.send_line(R"({"cmd":"echo"})");
  EXPECT_EQ(client.read_json()["ok"], true);
}

void expect_refused(const ControlServerOptions& options, const std::string& why) {
  asio::io_context io;
  try {
    ControlServer server(io, options, [](const Json&, const ControlCaller&, const Respond&) {});
    ADD_FAILURE() << "accepted " << why;
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find(options.path), std::string::npos) << error.what();
  }
}

TEST(ControlServerPath, RefusesSymlinksRegularFilesAndDirectories) {
  TempDir dir;
  ControlServerOptions options;

  options.path = dir.file("link.sock");
  const std::string target = dir.file("target");
  std::filesystem::create_symlink(target, options.path);
  expect_refused(options, "a symlink");
  EXPECT_TRUE(std::filesystem::is_symlink(options.path));
  EXPECT_FALSE(std::filesystem::exists(target));  // never followed

  options.path = dir.file("plain.sock");
  std::ofstream(options.path) << "precious";
  expect_refused(options, "a regular file");
  std::ifstream kept(options.path);
  std::string content;
  kept >> content;
  EXPECT_EQ(content, "precious");

  options.path = dir.file("dir.sock");
  std::filesystem::create_directory(options.path);
  expect_refused(options, "a directory");
  EXPECT_TRUE(std::filesystem::is_directory(options.path));
}

TEST(ControlServerPath, ReportsAMissingDirectoryAndAnUnknownGroup) {
  TempDir dir;
  ControlServerOptions options;
  options.path = dir.file("missing/control.sock");
  expect_refused(options, "a path in a missing directory");
  options.path = dir.file("control.sock");
  options.group = "no-such-group-forkd-test";
  asio::io_context io;
  EXPECT_THROW(ControlServer(io, options, [](const Json&, const ControlCaller&, const Respond&) {}),
               std::runtime_error);
  EXPECT_FALSE(std::filesystem::exists(options.path));
}

TEST(ControlServerPeers, AuthorisationRule) {
  const uid_t daemon = 1000;
  const PeerCredentials root{1, 0, 0};
  const PeerCredentials same{2, 1000, 1000};
  const PeerCredentials other{3, 1001, 1001};
  const PeerCredentials other_primary_ops{4, 1001, 50};
  EXPECT_TRUE(forkd::daemon::peer_allowed(root, daemon, std::nullopt, {}));
  EXPECT_TRUE(forkd::daemon::peer_allowed(same, daemon, std::nullopt, {}));
  EXPECT_FALSE(forkd::daemon::peer_allowed(other, daemon, std::nullopt, {50}));
  EXPECT_FALSE(forkd::daemon::peer_allowed(other, daemon, gid_t{50}, {}));
  EXPECT_FALSE(forkd::daemon::peer_allowed(other, daemon, gid_t{50}, {10, 20}));
  EXPECT_TRUE(forkd::daemon::peer_allowed(other, daemon, gid_t{50}, {10, 50}));
  EXPECT_TRUE(forkd::daemon::peer_allowed(other_primary_ops, daemon, gid_t{50}, {}));
  EXPECT_EQ(forkd::daemon::describe_peer(PeerCredentials{4242, 1000, 1000}), "uid 1000 pid 4242");
}

TEST(ControlServerPeers, OwnSupplementaryGroupsAreRead) {
  const PeerCredentials self{::getpid(), ::getuid(), ::getgid()};
  std::vector<gid_t> expected(static_cast<std::size_t>(::getgroups(0, nullptr)));
  expected.resize(
      static_cast<std::size_t>(::getgroups(static_cast<int>(expected.size()), expected.data())));
  const auto groups = forkd::daemon::peer_supplementary_groups(self);
  for (const gid_t gid : expected) {
    EXPECT_NE(std::find(groups.begin(), groups.end(), gid), groups.end()) << gid;
  }
  EXPECT_EQ(forkd::daemon::resolve_group("4321"), gid_t{4321});
  EXPECT_THROW((void)forkd::daemon::resolve_group("no-such-group-forkd-test"), std::runtime_error);
}

// Connects as another user from a forked child (root only) and returns the reply line.
// The child uses only async-signal-safe calls: the test process has a loop thread.
class ChildAsOtherUser {
 public:
  ChildAsOtherUser(const std::string& path, uid_t uid, gid_t gid, gid_t supplementary) {
    auto pipe = forkd::common::make_pipe();
    const sockaddr_un address = address_of(path);
    const char request[] = "{\"cmd\":\"echo\"}\n";
    // Forked only once the pipe exists, so not in the initializer list.
    pid_ = ::fork();  // NOLINT(cppcoreguidelines-prefer-member-initializer)
    if (pid_ == 0) {
      ::alarm(10);  // bounded, even if the parent is gone
      char buffer[512];
      const gid_t groups[] = {supplementary};
      if (::setgroups(1, groups) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        ::_exit(3);
      }
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (fd < 0 ||
          ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        ::_exit(4);
      }
      (void)::send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
      ssize_t n = 0;
      while ((n = ::read(fd, buffer, sizeof buffer)) > 0) {
        (void)::write(pipe.second.get(), buffer, static_cast<std::size_t>(n));
        if (std::memchr(buffer, '\n', static_cast<std::size_t>(n)) != nullptr) break;
      }
      ::_exit(0);
    }
    pipe.second.reset();
    read_end_ = std::move(pipe.first);
  }
  ChildAsOtherUser(const ChildAsOtherUser&) = delete;
  ChildAsOtherUser& operator=(const ChildAsOtherUser&) = delete;
  ChildAsOtherUser(ChildAsOtherUser&&) = delete;
  ChildAsOtherUser& operator=(ChildAsOtherUser&&) = delete;
  ~ChildAsOtherUser() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  std::string reply() {
    std::string out;
    char chunk[512];
    for (;;) {
      pollfd pfd{read_end_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 5000) <= 0) break;
      const ssize_t n = ::read(read_end_.get(), chunk, sizeof chunk);
      if (n <= 0) break;
      out.append(chunk, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd read_end_;
};

TEST_F(ServerFixture, OtherUsersAreRefusedUnlessInTheControlGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  auto opts = options();
  opts.mode = 0666;  // the file mode lets anyone connect: SO_PEERCRED must still refuse
  opts.group = "54321";
  start(opts);
  {
    ChildAsOtherUser stranger(path_, 65534, 65534, 65534);
    const std::string line = stranger.reply();
    ASSERT_FALSE(line.empty());
    const Json reply = Json::parse(line);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"],
              "permission denied: uid 65534 is not allowed to use this control socket");
  }
  {
    ChildAsOtherUser member(path_, 65534, 65534, 54321);
    const std::string line = member.reply();
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(Json::parse(line)["ok"], true) << line;
  }
  EXPECT_EQ(on_loop([this] { return handled_; }), 1);
}

TEST(ControlPaths, DefaultSocketFollowsTheUid) {
  using forkd::common::default_control_socket_for;
  EXPECT_EQ(default_control_socket_for(0, "/run/user/0"), "/run/forkd/forkd.sock");
  EXPECT_EQ(default_control_socket_for(1000, "/run/user/1000"), "/run/user/1000/forkd.sock");
  EXPECT_EQ(default_control_socket_for(1000, "/run/user/1000/"), "/run/user/1000/forkd.sock");
  EXPECT_EQ(default_control_socket_for(1000, ""), "/tmp/forkd-1000/forkd.sock");
  EXPECT_EQ(default_control_socket_for(1000, nullptr), "/tmp/forkd-1000/forkd.sock");
}

TEST(ControlPaths, PrivateDirectoryIsCreatedOrVerified) {
  TempDir dir;
  const std::string fresh = dir.file("fresh");
  forkd::common::ensure_private_dir(fresh);
  struct stat st {};
  ASSERT_EQ(::lstat(fresh.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  forkd::common::ensure_private_dir(fresh);  // as it should be: accepted

  const std::string loose = dir.file("loose");
  ASSERT_EQ(::mkdir(loose.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(loose.c_str(), 0777), 0);
  EXPECT_THROW(forkd::common::ensure_private_dir(loose), std::runtime_error);

  const std::string link = dir.file("link");
  std::filesystem::create_directory_symlink(fresh, link);
  EXPECT_THROW(forkd::common::ensure_private_dir(link), std::runtime_error);

  const std::string file = dir.file("file");
  std::ofstream(file) << "x";
  EXPECT_THROW(forkd::common::ensure_private_dir(file), std::runtime_error);

  if (::geteuid() == 0) {
    const std::string foreign = dir.file("foreign");
    ASSERT_EQ(::mkdir(foreign.c_str(), 0700), 0);
    ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
    EXPECT_THROW(forkd::common::ensure_private_dir(foreign), std::runtime_error);
  }
}

TEST(ControlPaths, PrepareCreatesTheParentDirectory) {
  TempDir dir;
  const std::string socket = dir.file("run/forkd.sock");
  forkd::common::prepare_control_socket_dir(socket);
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("run").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  forkd::common::prepare_control_socket_dir(socket);  // already there: fine
  EXPECT_THROW(forkd::common::prepare_control_socket_dir(dir.file("a/b/forkd.sock")),
               std::system_error);
}

}  // namespace
