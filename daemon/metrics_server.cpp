#include "daemon/metrics_server.hpp"

#include <sys/socket.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <array>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/http.hpp"
#include "common/log.hpp"
#include "daemon/accept_retry.hpp"

namespace forkd::daemon {
namespace {

using Tcp = asio::ip::tcp;

constexpr std::size_t kReadChunk = 2048;

// What the metrics endpoint answers: the shared HTTP serialiser's response, and whether the
// request was HEAD (the headers, with the GET body's length, but no body).
struct Reply {
  common::HttpResponse response;
  bool head_only = false;
};

Reply plain(int status, std::string body) {
  Reply reply;
  reply.response.status = status;
  reply.response.body = std::move(body);
  reply.response.set_header("Content-Type", "text/plain; charset=utf-8");
  reply.response.set_header("Cache-Control", "no-store");
  return reply;
}

// One request per connection: every reply says Connection: close.
std::string serialize(const Reply& reply) {
  return common::serialize_response(reply.response, reply.head_only, /*keep_alive=*/false,
                                    /*version_minor=*/1);
}

// asio's timer cancel() reports failure only by exception, and only for an invalid timer;
// a close path must not throw, and the socket close next to it ends the connection anyway.
void cancel_quietly(asio::steady_timer& timer) noexcept {
  try {
    timer.cancel();
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): see above
  }
}

std::string format_endpoint(const Tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string text = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return text + ":" + std::to_string(endpoint.port());
}

std::string describe(const common::ListenConfig& address) {
  if (!address.address.empty()) return address.address;
  return (address.kind == common::AddressKind::tcp6 ? "[" + address.host + "]" : address.host) +
         ":" + std::to_string(address.port);
}

}  // namespace

class MetricsConnection;

class MetricsServerState {
 public:
  MetricsServerState(asio::io_context& io, MetricsServer::SnapshotFn snapshot,
                     MetricsServer::ReadyFn ready, MetricsServerOptions options)
      : snapshot_(std::move(snapshot)),
        ready_(std::move(ready)),
        options_(options),
        log_(common::log::get("metrics")),
        acceptor_(io),
        accept_retry_(io) {}
  MetricsServerState(const MetricsServerState&) = delete;
  MetricsServerState& operator=(const MetricsServerState&) = delete;
  MetricsServerState(MetricsServerState&&) = delete;
  MetricsServerState& operator=(MetricsServerState&&) = delete;
  ~MetricsServerState() { close(); }

  void bind(const common::ListenConfig& address);
  void adopt(common::UniqueFd listening);
  void close() noexcept;
  void forget(std::uint64_t id) noexcept { connections_.erase(id); }
  // The reply to the request at the start of `buffer`, or nullopt while its head is incomplete.
  [[nodiscard]] std::optional<Reply> answer(std::string_view buffer);

  [[nodiscard]] const std::string& bound_address() const { return bound_address_; }
  [[nodiscard]] int native_handle() { return acceptor_.is_open() ? acceptor_.native_handle() : -1; }
  [[nodiscard]] std::size_t connection_count() const { return connections_.size(); }
  [[nodiscard]] const MetricsServerOptions& options() const { return options_; }
  [[nodiscard]] spdlog::logger& log() { return *log_; }
  [[nodiscard]] std::weak_ptr<const bool> alive() const { return alive_; }

 private:
  void start_accepting();
  void accept_next();
  void on_accept(std::error_code error, Tcp::socket socket);
  void admit(Tcp::socket socket);
  void make_room();

  MetricsServer::SnapshotFn snapshot_;
  MetricsServer::ReadyFn ready_;
  MetricsServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  // Handlers hold a weak_ptr to this: once the state is gone they do nothing.
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
  Tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::string bound_address_;
  std::map<std::uint64_t, std::shared_ptr<MetricsConnection>> connections_;
  std::uint64_t next_id_ = 0;
  // Connections closed to make room since the last warning (said at most once a minute).
  std::uint64_t evicted_unsaid_ = 0;
  std::optional<std::chrono::steady_clock::time_point> last_eviction_warning_;
  bool closed_ = false;
};

// One client: read the head (bounded in size and time), answer, half-close, then drain what
// the client still sends until it closes, so the answer is not lost to a reset.
class MetricsConnection : public std::enable_shared_from_this<MetricsConnection> {
 public:
  MetricsConnection(MetricsServerState& server, std::uint64_t id, Tcp::socket socket)
      : server_(server),
        alive_(server.alive()),
        id_(id),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()) {}

  void start() {
    arm_deadline(server_.options().head_timeout);
    read_head();
  }

  // Idempotent; the server's map lets go of us, the handler in flight keeps us alive.
  void close() noexcept {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    cancel_quietly(deadline_);
    socket_.close(ignored);
    server_.forget(id_);
  }

 private:
  // Runs `body` as a handler: nothing when the server is gone, close on any exception.
  template <typename Body>
  auto guarded(Body body) {
    return [self = shared_from_this(), alive = alive_, body](auto&&... args) {
      if (alive.expired() || self->closed_) return;
      try {
        body(*self, std::forward<decltype(args)>(args)...);
      } catch (const std::exception& failure) {
        self->server_.log().error("metrics client: {}", failure.what());
        self->close();
      }
    };
  }

  // One deadline for the whole head and one for the whole response, never extended by a
  // byte that trickles in: a client that dribbles is closed as surely as a silent one.
  void arm_deadline(std::chrono::milliseconds timeout) {
    deadline_.expires_after(timeout);
    deadline_.async_wait(guarded([timeout](MetricsConnection& self, std::error_code error) {
      // A re-armed timer may still deliver the old expiry: trust only the clock.
      if (error || self.deadline_.expiry() > asio::steady_timer::clock_type::now()) return;
      self.server_.log().debug("metrics client not done after {} ms, closing", timeout.count());
      self.close();
    }));
  }

  void read_head() {
    socket_.async_read_some(
        asio::buffer(chunk_),
        guarded([](MetricsConnection& self, std::error_code error, std::size_t size) {
          if (error) {
            self.close();  // gone before a whole request: nobody to answer
            return;
          }
          self.on_head_data({self.chunk_.data(), size});
        }));
  }

  void on_head_data(std::string_view data) {
    head_.append(data);
    // The parser re-reads the head from its start, so call it only when a line has ended (or
    // the cap is passed): a head sent byte by byte is then parsed once per line, not per byte.
    if (data.find('\n') == std::string_view::npos &&
        head_.size() <= server_.options().max_request_head) {
      read_head();
      return;
    }
    if (auto reply = server_.answer(head_)) {
      respond(*reply);
    } else {
      read_head();
    }
  }

  void respond(const Reply& reply) {
    head_.clear();
    head_.shrink_to_fit();
    response_ = serialize(reply);
    arm_deadline(server_.options().response_timeout);
    asio::async_write(socket_, asio::buffer(response_),
                      guarded([](MetricsConnection& self, std::error_code error, std::size_t) {
                        if (error) {
                          self.close();
                          return;
                        }
                        self.response_.clear();
                        self.response_.shrink_to_fit();
                        std::error_code ignored;
                        self.socket_.shutdown(Tcp::socket::shutdown_send, ignored);
                        self.drain();
                      }));
  }

  void drain() {
    socket_.async_read_some(asio::buffer(chunk_), guarded([](MetricsConnection& self,
                                                             std::error_code error, std::size_t) {
                              if (error) {
                                self.close();  // EOF: the client has the answer and left
                                return;
                              }
                              self.drain();
                            }));
  }

  MetricsServerState& server_;
  std::weak_ptr<const bool> alive_;
  std::uint64_t id_;
  Tcp::socket socket_;
  asio::steady_timer deadline_;
  std::array<char, kReadChunk> chunk_{};
  std::string head_;
  std::string response_;
  bool closed_ = false;
};

void MetricsServerState::bind(const common::ListenConfig& address) {
  const std::string text = describe(address);
  if (address.kind == common::AddressKind::unix_path) {
    throw std::runtime_error("metrics address " + text + " must be TCP (host:port)");
  }
  std::error_code error;
  const auto ip = asio::ip::make_address(address.host, error);
  if (error) {
    throw std::runtime_error("invalid metrics address " + text + ": " + error.message());
  }
  const Tcp::endpoint endpoint(ip, address.port);
  if (acceptor_.open(endpoint.protocol(), error); error) {
    throw std::runtime_error("cannot create metrics socket for " + text + ": " + error.message());
  }
  if (auto cloexec_error = common::set_cloexec(acceptor_.native_handle(), true)) {
    throw std::runtime_error("cannot set FD_CLOEXEC on metrics socket " + text + ": " +
                             cloexec_error.message());
  }
  // A restarted master must not wait for the old one's TIME_WAIT connections.
  if (acceptor_.set_option(Tcp::acceptor::reuse_address(true), error); error) {
    throw std::runtime_error("cannot set SO_REUSEADDR on metrics socket " + text + ": " +
                             error.message());
  }
  if (acceptor_.bind(endpoint, error); error) {
    throw std::runtime_error("cannot bind metrics address " + text + ": " + error.message());
  }
  if (acceptor_.listen(asio::socket_base::max_listen_connections, error); error) {
    throw std::runtime_error("cannot listen on metrics address " + text + ": " + error.message());
  }
  start_accepting();
}

void MetricsServerState::adopt(common::UniqueFd listening) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(listening.get(), reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    throw std::runtime_error("cannot adopt metrics socket: " + common::last_error().message());
  }
  int listening_flag = 0;
  socklen_t flag_length = sizeof listening_flag;
  const bool accepts = ::getsockopt(listening.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening_flag,
                                    &flag_length) == 0 &&
                       listening_flag != 0;
  if ((storage.ss_family != AF_INET && storage.ss_family != AF_INET6) || !accepts) {
    throw std::runtime_error("cannot adopt metrics socket: not a listening TCP socket");
  }
  const Tcp protocol = storage.ss_family == AF_INET ? Tcp::v4() : Tcp::v6();
  std::error_code error;
  if (acceptor_.assign(protocol, listening.get(), error); error) {
    throw std::runtime_error("cannot adopt metrics socket: " + error.message());
  }
  (void)listening.release();  // the acceptor owns it now
  if (auto cloexec_error = common::set_cloexec(acceptor_.native_handle(), true)) {
    throw std::runtime_error("cannot set FD_CLOEXEC on the metrics socket: " +
                             cloexec_error.message());
  }
  start_accepting();
}

void MetricsServerState::start_accepting() {
  std::error_code error;
  const auto endpoint = acceptor_.local_endpoint(error);
  if (error) {
    throw std::runtime_error("cannot read the metrics socket's address: " + error.message());
  }
  bound_address_ = format_endpoint(endpoint);
  log_->info("metrics listening on http://{}/metrics", bound_address_);
  accept_next();
}

void MetricsServerState::accept_next() {
  if (closed_) return;
  acceptor_.async_accept(
      [this, alive = std::weak_ptr<const bool>(alive_)](std::error_code error, Tcp::socket socket) {
        if (alive.expired()) return;
        try {
          on_accept(error, std::move(socket));
        } catch (const std::exception& failure) {
          log_->error("metrics {}: accepting a client: {}", bound_address_, failure.what());
          accept_next();
        }
      });
}

void MetricsServerState::on_accept(std::error_code error, Tcp::socket socket) {
  if (closed_ || error == asio::error::operation_aborted) return;
  if (error) {
    log_->error("metrics {}: accept failed: {}", bound_address_, error.message());
    retry_accept_later(accept_retry_, alive_, [this] { accept_next(); });
    return;
  }
  admit(std::move(socket));
  accept_next();
}

void MetricsServerState::admit(Tcp::socket socket) {
  if (auto error = common::set_cloexec(socket.native_handle(), true)) {
    log_->warn("metrics {}: FD_CLOEXEC on a client: {}", bound_address_, error.message());
  }
  if (connections_.size() >= options_.max_connections) make_room();
  const std::uint64_t id = next_id_++;
  auto connection = std::make_shared<MetricsConnection>(*this, id, std::move(socket));
  connections_.emplace(id, connection);
  connection->start();
}

// The oldest connection goes: it has had the longest to send its request, and the new one may
// be a probe. Said at most once a minute, with the count, so a flood cannot flood the log.
void MetricsServerState::make_room() {
  if (connections_.empty()) return;
  const auto oldest = connections_.begin()->second;  // ids grow: the map's first is the oldest
  oldest->close();
  ++evicted_unsaid_;
  const auto now = std::chrono::steady_clock::now();
  if (last_eviction_warning_ && now - *last_eviction_warning_ < std::chrono::minutes(1)) return;
  last_eviction_warning_ = now;
  log_->warn("metrics {}: {} connections open (the limit), closed the oldest {} to make room",
             bound_address_, options_.max_connections, evicted_unsaid_);
  evicted_unsaid_ = 0;
}

std::optional<Reply> MetricsServerState::answer(std::string_view buffer) {
  common::HttpLimits limits;
  limits.max_head_bytes = options_.max_request_head;
  common::HttpRequest request;
  // Head only: no body is read, the connection closes after one response.
  const common::ParseResult parsed = common::parse_request_head(buffer, limits, request);
  if (parsed.status == common::ParseStatus::incomplete) return std::nullopt;
  if (parsed.status == common::ParseStatus::error) {
    return plain(parsed.error_status,
                 parsed.error_status == 431
                     ? "request head too large\n"
                     : std::string(common::reason_phrase(parsed.error_status)) + "\n");
  }
  const bool known =
      request.path == "/metrics" || request.path == "/healthz" || request.path == "/readyz";
  if (!known) return plain(404, "not found\n");
  const bool head_only = request.method == "HEAD";
  if (request.method != "GET" && !head_only) {
    auto reply = plain(405, "method not allowed\n");
    reply.response.set_header("Allow", "GET, HEAD");
    return reply;
  }
  Reply reply;
  try {
    if (request.path == "/metrics") {
      reply = plain(200, render_prometheus(snapshot_()));
      reply.response.set_header("Content-Type", std::string(kPrometheusContentType));
    } else if (request.path == "/healthz") {
      // Liveness: answering at all proves the master loop runs. Never 503: a liveness probe
      // that fails kills the instance, so it fails only when the master really is stuck.
      reply = plain(200, "ok\n");
    } else if (ready_()) {
      reply = plain(200, "ready\n");
    } else {
      reply = plain(503, "not ready: no ready worker, or forkd is stopping\n");
    }
  } catch (const std::exception& failure) {
    log_->error("metrics {}: {} {}: {}", bound_address_, request.method, request.path,
                failure.what());
    reply = plain(500, "internal error\n");
  }
  reply.head_only = head_only;
  return reply;
}

void MetricsServerState::close() noexcept {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  cancel_quietly(accept_retry_);
  acceptor_.close(ignored);
  // close() makes each connection forget itself: walk a detached copy.
  auto connections = std::exchange(connections_, {});
  for (auto& [id, connection] : connections) connection->close();
}

MetricsServer::MetricsServer(asio::io_context& io, const common::ListenConfig& address,
                             SnapshotFn snapshot, ReadyFn ready, MetricsServerOptions options)
    : state_(std::make_unique<MetricsServerState>(io, std::move(snapshot), std::move(ready),
                                                  options)) {
  state_->bind(address);
}

MetricsServer::MetricsServer(asio::io_context& io, common::UniqueFd listening, SnapshotFn snapshot,
                             ReadyFn ready, MetricsServerOptions options)
    : state_(std::make_unique<MetricsServerState>(io, std::move(snapshot), std::move(ready),
                                                  options)) {
  state_->adopt(std::move(listening));
}

MetricsServer::~MetricsServer() = default;

std::string MetricsServer::bound_address() const {
  return state_->bound_address();
}
int MetricsServer::native_handle() const {
  return state_->native_handle();
}
std::size_t MetricsServer::connection_count() const {
  return state_->connection_count();
}
void MetricsServer::close() {
  state_->close();
}

}  // namespace forkd::daemon
