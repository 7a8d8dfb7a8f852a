#include "worker/http_server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/buffer.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "common/fd.hpp"
#include "worker/accept_policy.hpp"
#include "worker/report.hpp"
#include "worker/shared_accept.hpp"

namespace forkd::worker {

namespace {

using Protocol = asio::generic::stream_protocol;
using Socket = Protocol::socket;

// What connections need even after the server object is gone (a responder may outlive it).
struct Settings {
  HttpHandler handler;
  HttpServerOptions options;
};

// EAGAIN too: another worker took the connection this one was woken for.
bool is_transient_accept_error(const std::error_code& ec) {
  if (ec.category() != asio::error::get_system_category()) return false;
  return ec.value() == EAGAIN || forkd::worker::is_transient_accept_error(ec.value());
}

int socket_option(int fd, int level, int name, const std::string& what) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &len) != 0) {
    throw common::system_error_from_errno("getsockopt on " + what);
  }
  return value;
}

common::HttpResponse error_response(int status) {
  common::HttpResponse r;
  r.status = status;
  r.set_header("Content-Type", "text/plain; charset=utf-8");
  r.body = std::string(common::reason_phrase(status)) + "\n";
  return r;
}

}  // namespace

class Connection;

struct HttpServer::Core : std::enable_shared_from_this<HttpServer::Core> {
  struct Acceptor {
    Acceptor(asio::io_context& io, std::string listener_name, int domain)
        : acceptor(io), backoff(io), name(std::move(listener_name)), family(domain) {}
    asio::basic_socket_acceptor<Protocol> acceptor;
    asio::steady_timer backoff;
    std::string name;
    int family;
    bool failing = false;  // inside a streak of failed accepts: reported once
  };

  Core(asio::io_context& io_context, std::shared_ptr<const Settings> s)
      : io(io_context), settings(std::move(s)) {}

  void accept_next(Acceptor& a);
  void on_accept(Acceptor& a, std::error_code ec, Socket socket);
  void adopt(int family, Socket socket);
  void adopt_shared(std::size_t index, common::UniqueFd fd);
  void take_queued(Acceptor& a);
  void stop();
  void close_all();
  void counts_changed() const;

  asio::io_context& io;
  std::shared_ptr<const Settings> settings;
  // Reuseport sockets: each is this worker's alone and the kernel already picks which worker's
  // socket gets a connection, so they keep the plain accept loop.
  std::vector<std::unique_ptr<Acceptor>> acceptors;
  // Shared listeners, spread evenly over the workers; their fds stay out of the io_context's
  // epoll, which would wake this worker for every connection again.
  std::shared_ptr<SharedAccept> shared;
  std::vector<std::pair<int, int>> shared_kinds;  // family, protocol of each shared listener
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;
  std::uint64_t next_id = 0;  // also the number of connections accepted so far
  bool stopping = false;
};

// One client connection. Requests are handled one at a time in arrival order (pipelined ones
// wait in in_); nothing is read while a request is being handled or answered.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Socket socket, std::shared_ptr<const Settings> settings,
             std::weak_ptr<HttpServer::Core> core, std::uint64_t id)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        settings_(std::move(settings)),
        core_(std::move(core)),
        id_(id) {}

  void start() { enter_reading(settings_->options.idle_timeout); }

  void begin_drain() {
    closing_ = true;
    if (phase_ != Phase::reading) return;  // in flight: answered with Connection: close
    // Waiting between requests, or for the first one: the request may be on its way (a fresh
    // connection's first one surely is; a keep-alive client often sends its next one at once),
    // and not every client retries a request that meets a close (RFC 9112 9.3.1 allows it, but
    // counts on it). So wait a little: a request that comes is answered with Connection: close,
    // and the timer closes a connection that stays silent.
    const bool between_requests = seq_ > 0 && in_.empty();
    arm_timer(between_requests ? settings_->options.drain_idle_grace
                               : settings_->options.drain_read_timeout);
  }

  void close() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    ++timer_generation_;
    timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);
    if (auto core = core_.lock()) {
      core->connections.erase(id_);
      core->counts_changed();
    }
  }

 private:
  enum class Phase { reading, handling, writing, lingering, closed };

  void enter_reading(std::chrono::milliseconds timeout) {
    phase_ = Phase::reading;
    arm_timer(timeout);
    process();
  }

  void process() {
    common::HttpRequest request;
    const common::ParseResult result =
        common::parse_request(in_, settings_->options.limits, request);
    switch (result.status) {
      case common::ParseStatus::complete:
        in_.erase(0, result.consumed);
        dispatch(request);
        return;
      case common::ParseStatus::error:
        answer_error(result.error_status);
        return;
      case common::ParseStatus::incomplete:
        read_more();
        return;
    }
  }

  void read_more() {
    socket_.async_read_some(
        asio::buffer(chunk_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
          if (self->phase_ != Phase::reading) return;
          if (ec) {
            self->close();  // EOF or reset: a partial request is abandoned with the client
            return;
          }
          self->in_.append(self->chunk_.data(), n);
          self->process();
        });
  }

  void dispatch(const common::HttpRequest& request) {
    phase_ = Phase::handling;
    cancel_timer();  // handlers take as long as they take: /sleep, /compute
    keep_alive_ = request.keep_alive;
    head_ = request.method == "HEAD";
    version_minor_ = request.version_minor;
    const std::uint64_t seq = ++seq_;
    HttpResponder responder = [self = shared_from_this(), seq](common::HttpResponse response) {
      self->respond(seq, std::move(response));
    };
    try {
      settings_->handler(request, std::move(responder));
    } catch (const std::exception& e) {
      report("http: handler failed on " + request.method + " " + request.target + ": " + e.what());
      respond(seq, error_response(500));
    }
  }

  void answer_error(int status) {
    phase_ = Phase::handling;
    cancel_timer();
    keep_alive_ = false;
    head_ = false;
    version_minor_ = 1;
    in_.clear();
    respond(++seq_, error_response(status));
  }

  void respond(std::uint64_t seq, common::HttpResponse response) {
    if (phase_ != Phase::handling || seq != seq_) return;  // late, repeated or closed
    for (const common::HttpHeader& h : settings_->options.extra_headers) {
      if (!std::any_of(
              response.headers.begin(), response.headers.end(),
              [&](const common::HttpHeader& have) { return common::iequals(have.name, h.name); })) {
        response.headers.push_back(h);
      }
    }
    const bool keep = keep_alive_ && !closing_;
    out_ = common::serialize_response(response, head_, keep, version_minor_);
    phase_ = Phase::writing;
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this(), keep](std::error_code ec, std::size_t) {
                        if (self->phase_ != Phase::writing) return;
                        self->out_.clear();
                        if (ec) {
                          self->close();
                        } else if (keep) {
                          // The response promised keep-alive: when a drain began while it was
                          // written, the client may already be sending its next request, which
                          // then gets the Connection: close (closing now would lose it).
                          self->enter_reading(self->closing_
                                                  ? self->settings_->options.drain_idle_grace
                                                  : self->settings_->options.idle_timeout);
                        } else {
                          self->linger();
                        }
                      });
  }

  // Half-close, then read and drop whatever the client still sends until it closes too (or
  // the linger timeout): closing with unread bytes would reset the connection and could
  // destroy the response before the client reads it.
  void linger() {
    phase_ = Phase::lingering;
    in_.clear();
    std::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
    arm_timer(settings_->options.linger_timeout);
    discard();
  }

  void discard() {
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](std::error_code ec, std::size_t) {
                              if (self->phase_ != Phase::lingering) return;
                              if (ec) {
                                self->close();
                              } else {
                                self->discard();
                              }
                            });
  }

  void arm_timer(std::chrono::milliseconds timeout) {
    const std::uint64_t generation = ++timer_generation_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), generation](std::error_code ec) {
      // A timer that already fired cannot be cancelled: the generation tells stale ones.
      if (ec || generation != self->timer_generation_) return;
      if (self->phase_ == Phase::reading || self->phase_ == Phase::lingering) self->close();
    });
  }

  void cancel_timer() {
    ++timer_generation_;
    timer_.cancel();
  }

  Socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<const Settings> settings_;
  std::weak_ptr<HttpServer::Core> core_;
  std::uint64_t id_;
  Phase phase_ = Phase::reading;
  bool closing_ = false;
  bool keep_alive_ = true;
  bool head_ = false;
  unsigned version_minor_ = 1;
  std::uint64_t seq_ = 0;
  std::uint64_t timer_generation_ = 0;
  std::string in_;
  std::string out_;
  std::array<char, std::size_t{16} * 1024> chunk_{};
};

void HttpServer::Core::accept_next(Acceptor& a) {
  if (stopping) return;
  a.acceptor.async_accept([weak = weak_from_this(), &a](std::error_code ec, Socket socket) {
    // `a` lives as long as the core: touch it only when the core is still there.
    if (auto core = weak.lock()) core->on_accept(a, ec, std::move(socket));
  });
}

void HttpServer::Core::on_accept(Acceptor& a, std::error_code ec, Socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (!ec) {
    a.failing = false;
    adopt(a.family, std::move(socket));
    accept_next(a);
    return;
  }
  if (stopping) return;
  if (is_transient_accept_error(ec)) {
    accept_next(a);
    return;
  }
  // Out of fds (EMFILE/ENFILE) or memory (ENOBUFS/ENOMEM), or anything unexpected: the
  // pending connection stays queued and would wake us at once, so pause before retrying and
  // keep serving the connections we have meanwhile.
  if (!a.failing) {
    report("http: accept on " + a.name + " failed: " + ec.message() + "; retrying every " +
           std::to_string(settings->options.accept_backoff.count()) + " ms");
    a.failing = true;
  }
  a.backoff.expires_after(settings->options.accept_backoff);
  a.backoff.async_wait([weak = weak_from_this(), &a](std::error_code timer_ec) {
    if (timer_ec) return;
    if (auto core = weak.lock()) core->accept_next(a);
  });
}

void HttpServer::Core::adopt_shared(std::size_t index, common::UniqueFd fd) {
  const auto [family, protocol] = shared_kinds.at(index);
  Socket socket(io);
  std::error_code ec;
  socket.assign(Protocol(family, protocol), fd.get(), ec);
  if (ec) return;      // the fd closes with `fd`: that client sees a reset
  (void)fd.release();  // the socket owns it now
  adopt(family, std::move(socket));
}

void HttpServer::Core::adopt(int family, Socket socket) {
  if (family == AF_INET || family == AF_INET6) {
    // Responses are written whole: Nagle would only delay the last segment.
    const int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  const std::uint64_t id = next_id++;
  auto connection = std::make_shared<Connection>(std::move(socket), settings, weak_from_this(), id);
  connections.emplace(id, connection);
  counts_changed();
  connection->start();
  if (stopping) connection->begin_drain();
}

void HttpServer::Core::counts_changed() const {
  if (settings->options.on_connections)
    settings->options.on_connections(next_id, connections.size());
}

// Connections the kernel has already completed on a socket we are about to close are taken
// and answered during the drain. When we are the socket's last holder they would be reset
// otherwise: a reuseport socket is this worker's alone (unless net.ipv4.tcp_migrate_req moves
// them), and a shared one may be closing for good (a reload removed its listener). When others
// still hold it, what we take is merely not served by one of them. Bounded, so a busy shared
// queue cannot keep us here.
void HttpServer::Core::take_queued(Acceptor& a) {
  constexpr int kMaxTaken = 4096;  // the kernel's default cap on a listen backlog
  std::error_code ec;
  a.acceptor.non_blocking(true, ec);
  for (int taken = 0; !ec && taken < kMaxTaken; ++taken) {
    Socket socket(io);
    a.acceptor.accept(socket, ec);
    if (!ec) adopt(a.family, std::move(socket));
  }
}

void HttpServer::Core::stop() {
  if (stopping) return;
  stopping = true;
  if (shared) shared->stop();
  for (auto& a : acceptors) {
    if (a->acceptor.is_open()) take_queued(*a);
    std::error_code ignored;
    a->acceptor.close(ignored);
    a->backoff.cancel();
  }
  // begin_drain may close a connection, which erases it from the map: iterate over a copy.
  std::vector<std::shared_ptr<Connection>> live;
  live.reserve(connections.size());
  for (auto& [id, weak] : connections) {
    if (auto c = weak.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->begin_drain();
}

void HttpServer::Core::close_all() {
  stop();
  std::vector<std::shared_ptr<Connection>> live;
  for (auto& [id, weak] : connections) {
    if (auto c = weak.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->close();
  connections.clear();
}

HttpServer::HttpServer(asio::io_context& io, std::span<const Listener> listeners,
                       HttpHandler handler, HttpServerOptions options)
    : core_(std::make_shared<Core>(
          io, std::make_shared<const Settings>(Settings{std::move(handler), std::move(options)}))) {
  struct Checked {
    const Listener* listener;
    int domain;
    int protocol;
    bool reuseport;
  };
  std::vector<Checked> checked;
  for (const Listener& l : listeners) {
    const std::string what = "listener " + l.name + " (fd " + std::to_string(l.fd) + ")";
    if (socket_option(l.fd, SOL_SOCKET, SO_TYPE, what) != SOCK_STREAM) {
      throw std::runtime_error(what + " is not a stream socket");
    }
    if (socket_option(l.fd, SOL_SOCKET, SO_ACCEPTCONN, what) == 0) {
      throw std::runtime_error(what + " is not listening");
    }
    if (auto ec = common::set_nonblocking(l.fd, true)) throw std::system_error(ec, what);
    const int domain = socket_option(l.fd, SOL_SOCKET, SO_DOMAIN, what);
    const bool inet = domain == AF_INET || domain == AF_INET6;
    checked.push_back({&l, domain, socket_option(l.fd, SOL_SOCKET, SO_PROTOCOL, what),
                       inet && socket_option(l.fd, SOL_SOCKET, SO_REUSEPORT, what) != 0});
  }
  // Only now, with every listener checked, take them: the acceptors and SharedAccept own and
  // close them.
  const auto add_acceptor = [&](const Checked& c, int fd) {
    auto a = std::make_unique<Core::Acceptor>(io, c.listener->name, c.domain);
    std::error_code ec;
    a->acceptor.assign(Protocol(c.domain, c.protocol), fd, ec);
    if (ec) {
      common::UniqueFd orphan(fd);
      throw std::system_error(ec, "watch listener " + c.listener->name);
    }
    core_->acceptors.push_back(std::move(a));
  };
  std::vector<SharedAccept::Listener> shared_listeners;
  std::vector<const Checked*> shared_checked;
  for (const Checked& c : checked) {
    const Listener& l = *c.listener;
    if (!c.reuseport) {
      shared_listeners.push_back({common::UniqueFd(l.fd), l.name, c.domain});
      shared_checked.push_back(&c);
      continue;
    }
    add_acceptor(c, l.fd);
  }
  if (!shared_listeners.empty()) {
    // Copies for the plain path, kept only until the even-spread path has started: it needs a
    // thread, and a worker at its process limit (RLIMIT_NPROC, pids.max) still serves without.
    std::vector<common::UniqueFd> copies;
    for (const auto& l : shared_listeners) {
      copies.emplace_back(::fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 3));
      if (!copies.back()) throw common::system_error_from_errno("dup listener " + l.name);
    }
    const HttpServerOptions& o = core_->settings->options;
    std::weak_ptr<Core> weak = core_;
    try {
      core_->shared = SharedAccept::start(
          io, std::move(shared_listeners), {o.workers, o.accept_backoff, AcceptPolicy{}},
          [weak](std::size_t index, common::UniqueFd fd) {
            if (auto core = weak.lock()) core->adopt_shared(index, std::move(fd));
          },
          [weak] {
            auto core = weak.lock();
            return core ? core->connections.size() : std::size_t{0};
          });
      for (const Checked* c : shared_checked)
        core_->shared_kinds.emplace_back(c->domain, c->protocol);
    } catch (const std::system_error& e) {
      report(std::string("http: connections are taken as they come, not spread evenly: ") +
             e.what());
      for (std::size_t i = 0; i < copies.size(); ++i) {
        add_acceptor(*shared_checked[i], copies[i].release());
      }
    }
  }
  for (auto& a : core_->acceptors) core_->accept_next(*a);
}

void HttpServer::take_queued_from(common::UniqueFd listener) {
  const int fd = listener.get();
  int type = 0;
  int listening = 0;
  int family = 0;
  int protocol = 0;
  socklen_t len = sizeof(int);
  const bool usable = ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                      ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
                      ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) == 0 &&
                      ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
                      type == SOCK_STREAM && listening != 0 &&
                      (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
  if (!usable) {
    report("http: a lent listener is not a non-blocking listening stream socket; not used");
    return;
  }
  const auto take = [fd, family, protocol](Core& core) {
    constexpr int kMaxTaken = 4096;  // the kernel's default cap on a listen backlog
    for (int taken = 0; taken < kMaxTaken; ++taken) {
      common::UniqueFd connection(::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!connection) {
        if (is_transient_accept_error(errno)) continue;
        return;  // empty (EAGAIN), or failing: what is left waits for its own worker
      }
      Socket socket(core.io);
      std::error_code ec;
      socket.assign(Protocol(family, protocol), connection.get(), ec);
      if (ec) continue;
      (void)connection.release();
      core.adopt(family, std::move(socket));
    }
  };
  take(*core_);
  if (core_->stopping) return;
  auto later = std::make_shared<asio::steady_timer>(core_->io, std::chrono::milliseconds(100));
  later->async_wait(
      [later, weak = std::weak_ptr<Core>(core_), take,
       kept = std::make_shared<common::UniqueFd>(std::move(listener))](std::error_code ec) {
        auto core = weak.lock();
        if (ec || !core) return;
        take(*core);
      });
}

HttpServer::~HttpServer() {  // NOLINT(bugprone-exception-escape): as declared
  core_->close_all();
}

void HttpServer::stop() {
  core_->stop();
}

std::size_t HttpServer::connection_count() const noexcept {
  return core_->connections.size();
}

}  // namespace forkd::worker
