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
#include <variant>

#include "common/log.hpp"
#include "daemon/accept_retry.hpp"
#include "worker/http_parser.hpp"

namespace forkd::daemon {
namespace {

using Tcp = asio::ip::tcp;

constexpr std::size_t kReadChunk = 2048;

struct HttpResponse {
  int status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  bool head_only = false;     // HEAD: headers (with the GET body's length) but no body
  bool allow_header = false;  // 405: say which methods are
};

std::string serialize(const HttpResponse& response) {
  std::string out;
  out.reserve(160 + (response.head_only ? 0 : response.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += worker::reason_phrase(response.status);
  out += "\r\nContent-Type: ";
  out += response.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(response.body.size());
  if (response.allow_header) out += "\r\nAllow: GET, HEAD";
  out += "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!response.head_only) out += response.body;
  return out;
}

HttpResponse plain(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

// RFC 9110 tchar: what a method name may be made of.
bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

struct RequestLine {
  std::string_view method;
  std::string_view path;  // without query or fragment
};

// Where the head ends: the offset after its blank line, nullopt while incomplete. Bare LF
// line ends are tolerated (RFC 9112 2.2). `from` is how much was already searched, so a head
// arriving byte by byte is scanned once, not once per byte.
std::optional<std::size_t> find_head_end(std::string_view data, std::size_t from) {
  // The terminator may have begun up to two bytes before the new data ("\n\r" + "\n").
  const std::size_t first = from >= 2 ? from - 2 : 0;
  for (std::size_t i = data.find('\n', first); i != std::string_view::npos;
       i = data.find('\n', i + 1)) {
    const std::size_t next = i + 1;
    if (next < data.size() && data[next] == '\n') return next + 1;
    if (next + 1 < data.size() && data[next] == '\r' && data[next + 1] == '\n') return next + 2;
  }
  return std::nullopt;
}

std::string_view strip_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Parses the request line and checks the header lines' shape; the headers themselves do not
// matter here (no body is read, the connection closes after one response).
std::variant<RequestLine, int> parse_head(std::string_view head) {
  std::size_t newline = head.find('\n');
  const std::string_view line = strip_cr(head.substr(0, newline));
  const std::size_t first_space = line.find(' ');
  if (first_space == std::string_view::npos) return 400;
  const std::size_t second_space = line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view version = line.substr(second_space + 1);
  if (method.empty() || target.empty()) return 400;
  for (const char c : method) {
    if (!is_token_char(c)) return 400;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return version.starts_with("HTTP/") && version.size() == 8 ? 505 : 400;
  }
  for (const char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return 400;
  }
  // absolute-form ("http://host/metrics"), as a proxy would send it: keep the path.
  for (const std::string_view scheme : {"http://", "https://"}) {
    if (target.starts_with(scheme)) {
      const std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  if (target.front() != '/' && target != "*") return 400;
  target = target.substr(0, target.find_first_of("?#"));

  while (newline != std::string_view::npos) {
    const std::size_t start = newline + 1;
    newline = head.find('\n', start);
    const std::string_view header = strip_cr(head.substr(start, newline - start));
    if (header.empty()) break;
    // obs-fold and lines without a name are refused, as RFC 9112 asks of a server.
    if (header.front() == ' ' || header.front() == '\t') return 400;
    const std::size_t colon = header.find(':');
    if (colon == 0 || colon == std::string_view::npos) return 400;
  }
  return RequestLine{method, target};
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
                     MetricsServer::HealthyFn healthy, MetricsServerOptions options)
      : snapshot_(std::move(snapshot)),
        healthy_(std::move(healthy)),
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
  [[nodiscard]] HttpResponse answer(std::string_view head);

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

  MetricsServer::SnapshotFn snapshot_;
  MetricsServer::HealthyFn healthy_;
  MetricsServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  // Handlers hold a weak_ptr to this: once the state is gone they do nothing.
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
  Tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::string bound_address_;
  std::map<std::uint64_t, std::shared_ptr<MetricsConnection>> connections_;
  std::uint64_t next_id_ = 0;
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
    arm_deadline();
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

  void arm_deadline() {
    deadline_.expires_after(server_.options().idle_timeout);
    deadline_.async_wait(guarded([](MetricsConnection& self, std::error_code error) {
      // A re-armed timer may still deliver the old expiry: trust only the clock.
      if (error || self.deadline_.expiry() > asio::steady_timer::clock_type::now()) return;
      self.server_.log().debug("metrics client idle for {} ms, closing",
                               self.server_.options().idle_timeout.count());
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
    std::size_t searched = head_.size();
    head_.append(data);
    // RFC 9112 2.2: ignore empty lines before the request line.
    const std::size_t start = std::min(head_.find_first_not_of("\r\n"), head_.size());
    head_.erase(0, start);
    searched = searched > start ? searched - start : 0;
    const std::size_t limit = server_.options().max_request_head;
    const auto end = find_head_end(head_, searched);
    if (end && *end <= limit) {
      respond(server_.answer(std::string_view(head_).substr(0, *end)));
    } else if (end || head_.size() > limit) {
      respond(plain(431, "request head too large\n"));
    } else {
      read_head();
    }
  }

  void respond(const HttpResponse& response) {
    head_.clear();
    head_.shrink_to_fit();
    response_ = serialize(response);
    arm_deadline();
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
  if (connections_.size() >= options_.max_connections) {
    log_->warn("metrics {}: {} connections already, refusing one", bound_address_,
               connections_.size());
    const std::string refusal = serialize(plain(503, "too many connections\n"));
    // Best effort, never blocking: the socket is closed right after.
    (void)::send(socket.native_handle(), refusal.data(), refusal.size(),
                 MSG_DONTWAIT | MSG_NOSIGNAL);
    return;
  }
  const std::uint64_t id = next_id_++;
  auto connection = std::make_shared<MetricsConnection>(*this, id, std::move(socket));
  connections_.emplace(id, connection);
  connection->start();
}

HttpResponse MetricsServerState::answer(std::string_view head) {
  const auto parsed = parse_head(head);
  if (const int* status = std::get_if<int>(&parsed)) {
    return plain(*status, std::string(worker::reason_phrase(*status)) + "\n");
  }
  const auto& request = std::get<RequestLine>(parsed);
  const bool known = request.path == "/metrics" || request.path == "/healthz";
  if (!known) return plain(404, "not found\n");
  const bool head_only = request.method == "HEAD";
  if (request.method != "GET" && !head_only) {
    auto response = plain(405, "method not allowed\n");
    response.allow_header = true;
    return response;
  }
  HttpResponse response;
  try {
    if (request.path == "/metrics") {
      response.content_type = kPrometheusContentType;
      response.body = render_prometheus(snapshot_());
    } else if (healthy_()) {
      response.body = "ok\n";
    } else {
      response = plain(503, "no ready worker\n");
    }
  } catch (const std::exception& failure) {
    log_->error("metrics {}: {} {}: {}", bound_address_, request.method, request.path,
                failure.what());
    response = plain(500, "internal error\n");
  }
  response.head_only = head_only;
  return response;
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
                             SnapshotFn snapshot, HealthyFn healthy, MetricsServerOptions options)
    : state_(std::make_unique<MetricsServerState>(io, std::move(snapshot), std::move(healthy),
                                                  options)) {
  state_->bind(address);
}

MetricsServer::MetricsServer(asio::io_context& io, common::UniqueFd listening, SnapshotFn snapshot,
                             HealthyFn healthy, MetricsServerOptions options)
    : state_(std::make_unique<MetricsServerState>(io, std::move(snapshot), std::move(healthy),
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
