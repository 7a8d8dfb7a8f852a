#include "daemon/control_server.hpp"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <array>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/json_lines.hpp"
#include "common/ndjson.hpp"
#include "common/socket_file.hpp"
#include "common/unix_socket.hpp"
#include "daemon/accept_retry.hpp"
#include "daemon/limited_log.hpp"

namespace forkd::daemon {
namespace {

using Json = nlohmann::json;
using LocalSocket = asio::local::stream_protocol::socket;

constexpr int kListenBacklog = 128;
constexpr std::size_t kReadChunk = std::size_t{16} * 1024;
// Requests a client may have outstanding before we stop reading from it: pipelining is
// allowed, flooding the master with unanswered work is not. While reading is paused, a hangup
// is still watched for, so a client that leaves is reaped whatever it left pending.
constexpr std::size_t kMaxPendingRequests = 64;

// asio's cancel() reports failure by exception, but a timer's cancel cannot fail; this is
// for the paths that must not throw (closing, destructors).
void cancel_timer(asio::steady_timer& timer) noexcept {
  try {
    timer.cancel();
  } catch (const std::system_error&) {
  }
}

std::shared_ptr<spdlog::logger> logger() {
  auto named = spdlog::get("control");
  return named ? named : spdlog::default_logger();
}

Json error_reply(std::string message) {
  return Json{{"ok", false}, {"error", std::move(message)}};
}

std::string denial_line(const PeerCredentials& peer) {
  return common::to_json_line(error_reply("permission denied: uid " + std::to_string(peer.uid) +
                                          " is not allowed to use this control socket"));
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; operators need the rest.
std::string parse_error_text(const std::exception& error) {
  std::string_view text = error.what();
  if (const auto bracket = text.find("] ");
      !text.empty() && text.front() == '[' && bracket != std::string_view::npos) {
    text.remove_prefix(bracket + 2);
  }
  return std::string(text);
}

bool blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Clears the way for bind: a stale socket (nobody answers) is removed, a live one or anything
// that is not a socket is left alone and reported.
void remove_stale_socket(const std::string& path) {
  std::error_code error;
  switch (common::probe_socket_file(path, error)) {
    case common::SocketFileState::absent:
      return;
    case common::SocketFileState::stat_failed:
      throw std::system_error(error, "cannot inspect control socket path " + path);
    case common::SocketFileState::not_a_socket:
      throw std::runtime_error("control socket path " + path +
                               " exists and is not a socket (refusing to replace it)");
    case common::SocketFileState::live:
      throw std::runtime_error("control socket " + path + " is in use by a running forkd");
    case common::SocketFileState::probe_failed:
      throw std::system_error(error, "cannot probe existing control socket " + path);
    case common::SocketFileState::stale:
      break;
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw common::system_error_from_errno("cannot remove stale control socket " + path);
  }
  logger()->info("removed stale control socket {}", path);
}

struct BoundSocket {
  common::UniqueFd fd;
  dev_t device = 0;
  ino_t inode = 0;
};

BoundSocket create_listening_socket(const ControlServerOptions& options,
                                    std::optional<gid_t> group) {
  const std::string& path = options.path;
  const common::UnixAddress address(path);
  remove_stale_socket(path);

  BoundSocket bound;
  bound.fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!bound.fd) throw common::system_error_from_errno("socket for control socket " + path);
  // Born owner-only when a group is still to be set, so the master's own group never gets
  // what `mode` grants the configured one; then group and mode through an O_PATH descriptor,
  // never through a path lookup that a planted symlink could redirect.
  const auto mode = static_cast<mode_t>(options.mode & 0777);
  if (const int error =
          common::bind_unix_with_mode(bound.fd.get(), address, group ? (mode & 0700) : mode)) {
    throw std::system_error(error, std::generic_category(), "cannot bind control socket " + path);
  }
  if (group) common::set_socket_file_access(path, mode, group);
  if (::listen(bound.fd.get(), kListenBacklog) != 0) {
    throw common::system_error_from_errno("cannot listen on control socket " + path);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    bound.device = st.st_dev;
    bound.inode = st.st_ino;
  }
  return bound;
}

std::optional<PeerCredentials> read_peer_credentials(int fd) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return std::nullopt;
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

std::vector<gid_t> groups_from_proc(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    std::vector<gid_t> groups;
    unsigned long value = 0;
    while (fields >> value) groups.push_back(static_cast<gid_t>(value));
    return groups;
  }
  return {};
}

std::vector<gid_t> groups_of_user(uid_t uid, gid_t gid) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return {};
  }
  int count = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  while (::getgrouplist(found->pw_name, gid, groups.data(), &count) < 0) {
    if (count <= static_cast<int>(groups.size())) return {};
    groups.resize(static_cast<std::size_t>(count));
  }
  groups.resize(static_cast<std::size_t>(count));
  return groups;
}

}  // namespace

std::string describe_peer(const PeerCredentials& peer) {
  return "uid " + std::to_string(peer.uid) + " pid " + std::to_string(peer.pid);
}

bool peer_allowed(const PeerCredentials& peer, uid_t daemon_uid, std::optional<gid_t> group,
                  const std::vector<gid_t>& peer_groups) {
  if (peer.uid == 0 || peer.uid == daemon_uid) return true;
  if (!group) return false;
  return peer.gid == *group ||
         std::find(peer_groups.begin(), peer_groups.end(), *group) != peer_groups.end();
}

std::vector<gid_t> peer_supplementary_groups(const PeerCredentials& peer) {
  // The process's own list is the truth (it may have dropped or gained groups); the user
  // database is the fallback when /proc is not readable.
  if (peer.pid > 0) {
    if (auto groups = groups_from_proc(peer.pid); !groups.empty()) return groups;
  }
  return groups_of_user(peer.uid, peer.gid);
}

gid_t resolve_group(const std::string& group) {
  std::vector<char> buffer(16384);
  ::group entry{};
  ::group* found = nullptr;
  int rc = 0;
  while ((rc = ::getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found)) ==
             ERANGE &&
         buffer.size() < (std::size_t{1} << 22)) {
    buffer.resize(buffer.size() * 2);
  }
  if (rc == 0 && found != nullptr) return found->gr_gid;
  if (!group.empty() &&
      std::all_of(group.begin(), group.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return static_cast<gid_t>(std::stoul(group));
  }
  throw std::runtime_error("control.group \"" + group + "\": no such group");
}

class ControlConnection;

class ControlServerState {
 public:
  ControlServerState(asio::io_context& io, ControlServerOptions options, Handler handler,
                     common::UniqueFd listening, std::optional<gid_t> group, dev_t device,
                     ino_t inode);
  ControlServerState(const ControlServerState&) = delete;
  ControlServerState& operator=(const ControlServerState&) = delete;
  ControlServerState(ControlServerState&&) = delete;
  ControlServerState& operator=(ControlServerState&&) = delete;
  ~ControlServerState() { close(); }

  void publish_event(const Json& event, bool output);
  void close() noexcept;
  void remove_socket_file();
  [[nodiscard]] std::size_t client_count() const { return clients_.size(); }
  [[nodiscard]] std::size_t subscriber_count() const;
  [[nodiscard]] std::size_t output_subscriber_count() const;
  [[nodiscard]] std::size_t total_outbound() const;
  [[nodiscard]] const std::string& path() const { return options_.path; }
  [[nodiscard]] int native_handle() { return acceptor_.is_open() ? acceptor_.native_handle() : -1; }

  // Called by connections.
  [[nodiscard]] const ControlServerOptions& options() const { return options_; }
  void dispatch(const Json& request, const ControlCaller& caller, const Respond& respond);
  // Drops a closed client; `had_requests`: tell the owner (client_closed), after the fact.
  void forget(std::uint64_t id, bool had_requests) noexcept;

 private:
  void accept_next();
  void on_accept(std::error_code error, LocalSocket socket);
  void admit(LocalSocket socket);
  [[nodiscard]] bool authorised(const PeerCredentials& peer) const;

  ControlServerOptions options_;
  Handler handler_;
  std::optional<gid_t> group_;
  uid_t daemon_uid_;
  dev_t device_;
  ino_t inode_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::map<std::uint64_t, std::shared_ptr<ControlConnection>> clients_;
  std::uint64_t next_client_id_ = 0;
  bool closed_ = false;
  // Refused clients come as fast as a local user can connect: their lines are limited per uid.
  LimitedLogs refusals_{
      logger(), "refused control clients of uid ", {.burst = 10, .per_second = 1}};
  // Accept and retry handlers may run after this object is gone (cancelled operations are
  // still delivered); they hold a weak reference to this token and do nothing once it died.
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
};

// One client. Kept alive by the server's map and by its own pending asio operations; after
// shut_down() it never calls back into the server, which may already be gone.
class ControlConnection : public std::enable_shared_from_this<ControlConnection> {
 public:
  ControlConnection(ControlServerState& server, std::uint64_t id, LocalSocket socket,
                    PeerCredentials peer)
      : server_(server),
        id_(id),
        socket_(std::move(socket)),
        idle_timer_(socket_.get_executor()),
        peer_(peer),
        decoder_(server.options().max_message) {}

  void start() {
    arm_idle_timer();
    read_next();
  }

  // Answers with a refusal and closes once it is written.
  void refuse() {
    arm_idle_timer();
    close_when_drained_ = true;
    append_output(denial_line(peer_));
  }

  void deliver_event(const std::string& line, bool output) {
    if (closed_ || !(output ? output_subscriber_ : subscriber_)) return;
    const std::size_t before = outbound();
    if (slots_.empty()) {
      outbox_ += line;
    } else {
      // Behind a reply still awaited: keep the stream in order.
      slots_.push_back(ReplySlot{next_seq_++, line});
      held_bytes_ += line.size();
    }
    flush();
    (void)enforce_outbound_limit(before);
  }

  // The server is closing: drop everything without calling back.
  void shut_down() noexcept {
    closed_ = true;
    std::error_code ignored;
    socket_.close(ignored);
    cancel_timer(idle_timer_);
  }

  [[nodiscard]] bool subscriber() const { return subscriber_; }
  [[nodiscard]] bool output_subscriber() const { return output_subscriber_; }
  [[nodiscard]] bool streaming() const { return subscriber_ || output_subscriber_; }
  // Bytes owed to the client that the kernel has not taken yet.
  [[nodiscard]] std::size_t outbound() const { return outbox_.size() - outbox_sent_ + held_bytes_; }

 private:
  struct ReplySlot {
    std::uint64_t seq;
    std::optional<std::string> line;  // nullopt until the handler responds
  };

  void read_next() {
    if (closed_ || read_eof_ || close_when_drained_) return;
    if (slots_.size() >= kMaxPendingRequests) {
      read_paused_ = true;
      watch_for_hangup();
      return;
    }
    socket_.async_read_some(asio::buffer(read_buffer_),
                            [self = shared_from_this()](std::error_code error, std::size_t n) {
                              self->guarded([&] { self->on_read(error, n); });
                            });
  }

  void on_read(std::error_code error, std::size_t n) {
    if (closed_) return;
    if (error == asio::error::eof) {
      read_eof_ = true;
      if (peer_hung_up()) {
        // Gone for good, not a half-close (shutdown(SHUT_WR) awaiting replies): nobody is
        // left to read what we owe. Its requests were dispatched; their replies are dropped.
        close_connection();
        return;
      }
      // A last request without its newline (printf ... | socat) is still a request.
      if (decoder_.buffered() > 0) consume(std::string_view("\n"));
      finish_if_drained();
      // Half-closed, awaiting replies: nothing more is read, so a later close is watched for.
      watch_for_hangup();
      return;
    }
    if (error) {
      logger()->debug("control client {}: read failed: {}", describe_peer(peer_), error.message());
      close_connection();
      return;
    }
    arm_idle_timer();
    consume(std::string_view(read_buffer_.data(), n));
    read_next();
  }

  // POLLHUP on a Unix stream socket means both directions are shut: the peer closed (a
  // half-close, shutdown(SHUT_WR) to await replies, is only POLLRDHUP). POLLERR: it reset.
  [[nodiscard]] bool peer_hung_up() {
    pollfd entry{socket_.native_handle(), POLLOUT, 0};
    return ::poll(&entry, 1, 0) > 0 && (entry.revents & (POLLHUP | POLLERR)) != 0;
  }

  // Reading is paused (or over, after a half-close), so EOF cannot be read; a hangup is
  // watched for instead. The reactor
  // reports it edge-triggered, so a hangup that came before the watch is checked for first.
  // A wait for errors completes on hangup or error only, never on data: no spinning.
  void watch_for_hangup() {
    if (closed_ || watching_hangup_) return;
    if (peer_hung_up()) {
      logger()->debug("control client {} left with {} requests unanswered", describe_peer(peer_),
                      slots_.size());
      close_connection();
      return;
    }
    watching_hangup_ = true;
    socket_.async_wait(
        LocalSocket::wait_error,
        asio::bind_cancellation_slot(hangup_watch_.slot(),
                                     [self = shared_from_this()](std::error_code error) {
                                       if (error == asio::error::operation_aborted)
                                         return;  // stopped or closed
                                       self->guarded([&] {
                                         self->watching_hangup_ = false;
                                         if (self->closed_) return;
                                         if (error) {
                                           self->close_connection();
                                         } else if (self->read_paused_ || self->read_eof_) {
                                           self->watch_for_hangup();
                                         }
                                       });
                                     }));
  }

  // The watch ends when reading resumes: the read sees EOF itself, and a wait left in the
  // reactor's error queue would make asio skip trying the read at once.
  void stop_watching_hangup() {
    if (!watching_hangup_) return;
    watching_hangup_ = false;
    hangup_watch_.emit(asio::cancellation_type::terminal);
  }

  void consume(std::string_view bytes) {
    // Collected first: handling a line may close this connection, and the decoder must not
    // be inside feed() when that happens.
    std::vector<std::string> lines;
    bool oversized = false;
    decoder_.feed(bytes, [&](common::LineDecoder::Event event, std::string_view line) {
      if (oversized) return;
      if (event == common::LineDecoder::Event::oversized) {
        oversized = true;
      } else {
        lines.emplace_back(line);
      }
    });
    for (const auto& line : lines) {
      if (closed_) return;
      handle_line(line);
    }
    if (oversized && !closed_) {
      logger()->warn("control client {}: request over {} bytes, closing the connection",
                     describe_peer(peer_), server_.options().max_message);
      close_when_drained_ = true;
      subscriber_ = false;
      output_subscriber_ = false;
      reply_now(error_reply("request too large: a request line may hold at most " +
                            std::to_string(server_.options().max_message) + " bytes"));
    }
  }

  void handle_line(std::string_view line) {
    if (blank(line)) return;
    Json request;
    if (!common::nesting_within(line, common::kMaxJsonDepth)) {
      reply_now(error_reply("malformed request: nested deeper than " +
                            std::to_string(common::kMaxJsonDepth) + " levels"));
      return;
    }
    try {
      request = Json::parse(line);
    } catch (const Json::exception& error) {
      reply_now(error_reply("malformed request: " + parse_error_text(error)));
      return;
    }
    if (!request.is_object()) {
      reply_now(error_reply("malformed request: a request must be a JSON object"));
      return;
    }
    const auto cmd = request.find("cmd");
    if (cmd == request.end() || !cmd->is_string()) {
      reply_now(error_reply("malformed request: missing string member \"cmd\""));
      return;
    }
    if (cmd->get_ref<const std::string&>() == "events") {
      // "topics": ["output"] streams captured worker lines (`forkctl logs -f`) instead of the
      // lifecycle events and worker messages.
      const auto topics = request.find("topics");
      const bool output = topics != request.end() && *topics == Json::array({"output"});
      if (topics != request.end() && !output && *topics != Json::array({"events"})) {
        reply_now(error_reply("events: topics must be [\"events\"] or [\"output\"]"));
        return;
      }
      reply_now(Json{{"ok", true}});
      logger()->debug("control client {} subscribed to {}", describe_peer(peer_),
                      output ? "worker output" : "events");
      (output ? output_subscriber_ : subscriber_) = true;
      return;
    }
    const std::uint64_t seq = open_slot();
    std::weak_ptr<ControlConnection> weak = weak_from_this();
    dispatched_ = true;
    server_.dispatch(request, ControlCaller{peer_, id_}, [weak, seq](Json reply) {
      if (auto self = weak.lock()) {
        self->guarded([&] { self->complete(seq, reply); });
      }
    });
  }

  std::uint64_t open_slot() {
    slots_.push_back(ReplySlot{next_seq_, std::nullopt});
    return next_seq_++;
  }

  void reply_now(const Json& reply) { complete(open_slot(), reply); }

  void complete(std::uint64_t seq, const Json& reply) {
    if (closed_) return;
    const auto slot = std::find_if(slots_.begin(), slots_.end(),
                                   [seq](const ReplySlot& s) { return s.seq == seq; });
    if (slot == slots_.end() || slot->line) return;  // answered twice: the first one counts
    const std::size_t before = outbound();
    slot->line = common::to_json_line(reply);
    held_bytes_ += slot->line->size();
    while (!slots_.empty() && slots_.front().line) {
      held_bytes_ -= slots_.front().line->size();
      outbox_ += *slots_.front().line;
      slots_.pop_front();
    }
    flush();
    if (!enforce_outbound_limit(before)) return;
    if (slots_.empty()) arm_idle_timer();
    if (read_paused_ && slots_.size() < kMaxPendingRequests) {
      read_paused_ = false;
      stop_watching_hangup();
      read_next();
    }
  }

  void append_output(const std::string& line) {
    const std::size_t before = outbound();
    outbox_ += line;
    flush();
    (void)enforce_outbound_limit(before);
  }

  // A client that does not read costs at most max_outbound (plus the one line that crossed
  // it), and all of them together max_outbound_total; past that the client whose queue grew
  // is cut off. Output the kernel takes at once never counts, so a burst of events to a client
  // that keeps reading is fine; nor does a first reply, however long. Returns false once closed.
  bool enforce_outbound_limit(std::size_t before) {
    if (closed_) return false;
    const std::size_t unsent = outbound();
    if (before == 0) return true;
    const auto& options = server_.options();
    if (unsent <= options.max_outbound && server_.total_outbound() <= options.max_outbound_total) {
      return true;
    }
    logger()->warn("control client {}{} is not reading: {} bytes unsent, disconnecting",
                   streaming() ? "(events) " : "", describe_peer(peer_), unsent);
    close_connection();
    return false;
  }

  // Writes what the kernel takes now; the rest waits for writability. Direct non-blocking
  // sends (MSG_NOSIGNAL: a vanished client is an error code, never a SIGPIPE).
  void flush() {
    if (closed_ || awaiting_writable_) return;
    while (outbox_sent_ < outbox_.size()) {
      const ssize_t n = ::send(socket_.native_handle(), outbox_.data() + outbox_sent_,
                               outbox_.size() - outbox_sent_, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        outbox_sent_ += static_cast<std::size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        await_writable();
        return;
      }
      logger()->debug("control client {}: write failed: {}", describe_peer(peer_),
                      std::strerror(errno));
      close_connection();
      return;
    }
    outbox_.clear();
    outbox_sent_ = 0;
    finish_if_drained();
  }

  void await_writable() {
    awaiting_writable_ = true;
    socket_.async_wait(LocalSocket::wait_write, [self = shared_from_this()](std::error_code error) {
      self->guarded([&] {
        self->awaiting_writable_ = false;
        if (self->closed_) return;
        if (error) {
          self->close_connection();
          return;
        }
        self->flush();
      });
    });
  }

  // Closes once everything owed is written, when the client is done (EOF and not streaming
  // events) or must go (oversized request, refused).
  void finish_if_drained() {
    if (closed_) return;
    if (!close_when_drained_ && !(read_eof_ && !streaming())) return;
    if (!slots_.empty() || outbound() > 0) return;
    close_connection();
  }

  void arm_idle_timer() {
    if (closed_) return;
    idle_timer_.expires_after(server_.options().idle_timeout);
    idle_timer_.async_wait([self = shared_from_this()](std::error_code error) {
      self->guarded([&] { self->on_idle(error); });
    });
  }

  void on_idle(std::error_code error) {
    if (error || closed_) return;  // re-armed or closed
    if (streaming() || !slots_.empty()) {
      arm_idle_timer();
      return;
    }
    logger()->debug("control client {} idle for {} ms, closing", describe_peer(peer_),
                    server_.options().idle_timeout.count());
    close_connection();
  }

  void close_connection() noexcept {
    if (closed_) return;
    shut_down();
    server_.forget(id_, dispatched_);  // may drop the last owner but the running handler's
  }

  // No exception leaves an asio handler: a failure costs this client only.
  template <typename Fn>
  void guarded(Fn&& fn) noexcept {
    try {
      fn();
    } catch (const std::exception& error) {
      try {
        logger()->error("control client {}: {}", describe_peer(peer_), error.what());
      } catch (...) {
      }
      if (!closed_) close_connection();
    } catch (...) {
      if (!closed_) close_connection();
    }
  }

  ControlServerState& server_;
  std::uint64_t id_;
  LocalSocket socket_;
  asio::steady_timer idle_timer_;
  PeerCredentials peer_;
  asio::cancellation_signal hangup_watch_;
  common::LineDecoder decoder_;
  std::array<char, kReadChunk> read_buffer_{};
  std::deque<ReplySlot> slots_;
  std::uint64_t next_seq_ = 0;
  std::size_t held_bytes_ = 0;  // answered lines waiting behind an earlier unanswered one
  std::string outbox_;          // ordered output; its first outbox_sent_ bytes are written
  std::size_t outbox_sent_ = 0;
  bool awaiting_writable_ = false;
  bool subscriber_ = false;
  bool output_subscriber_ = false;
  bool read_eof_ = false;
  bool read_paused_ = false;
  bool watching_hangup_ = false;
  bool dispatched_ = false;  // sent a request to the handler: its closing is reported
  bool close_when_drained_ = false;
  bool closed_ = false;
};

ControlServerState::ControlServerState(asio::io_context& io, ControlServerOptions options,
                                       Handler handler, common::UniqueFd listening,
                                       std::optional<gid_t> group, dev_t device, ino_t inode)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      group_(group),
      daemon_uid_(::geteuid()),
      device_(device),
      inode_(inode),
      acceptor_(io),
      accept_retry_(io) {
  if (auto error = common::set_nonblocking(listening.get(), true)) {
    throw std::system_error(error, "control socket " + options_.path);
  }
  std::error_code error;
  acceptor_.assign(asio::local::stream_protocol(), listening.get(), error);
  if (error) throw std::system_error(error, "control socket " + options_.path);
  (void)listening.release();  // the acceptor owns it now
  accept_next();
  logger()->info("control socket listening on {} (mode {:04o}{}{})", options_.path, options_.mode,
                 group_ ? ", group " : "", options_.group);
}

std::size_t ControlServerState::subscriber_count() const {
  return static_cast<std::size_t>(
      std::count_if(clients_.begin(), clients_.end(),
                    [](const auto& entry) { return entry.second->subscriber(); }));
}

std::size_t ControlServerState::output_subscriber_count() const {
  return static_cast<std::size_t>(
      std::count_if(clients_.begin(), clients_.end(),
                    [](const auto& entry) { return entry.second->output_subscriber(); }));
}

std::size_t ControlServerState::total_outbound() const {
  std::size_t total = 0;
  for (const auto& entry : clients_) total += entry.second->outbound();
  return total;
}

void ControlServerState::accept_next() {
  if (closed_) return;
  acceptor_.async_accept([this, alive = std::weak_ptr<const bool>(alive_)](std::error_code error,
                                                                           LocalSocket socket) {
    if (alive.expired()) return;
    try {
      on_accept(error, std::move(socket));
    } catch (const std::exception& failure) {
      logger()->error("control socket {}: accepting a client: {}", options_.path, failure.what());
      accept_next();
    }
  });
}

void ControlServerState::on_accept(std::error_code error, LocalSocket socket) {
  if (closed_ || error == asio::error::operation_aborted) return;
  if (error) {
    logger()->error("control socket {}: accept failed: {}", options_.path, error.message());
    retry_accept_later(accept_retry_, alive_, [this] { accept_next(); });
    return;
  }
  admit(std::move(socket));
  accept_next();
}

void ControlServerState::admit(LocalSocket socket) {
  const int fd = socket.native_handle();
  if (auto error = common::set_cloexec(fd, true)) {
    logger()->warn("control socket {}: FD_CLOEXEC on a client: {}", options_.path, error.message());
  }
  const auto peer = read_peer_credentials(fd);
  if (!peer) {
    logger()->warn("control socket {}: SO_PEERCRED failed: {}, dropping the client", options_.path,
                   std::strerror(errno));
    return;
  }
  if (clients_.size() >= options_.max_clients) {
    refusals_.of(peer->uid).log(spdlog::level::warn,
                                "control socket {}: {} clients already, refusing {}", options_.path,
                                clients_.size(), describe_peer(*peer));
    const std::string line =
        common::to_json_line(error_reply("too many control clients, try again later"));
    // Best effort, never blocking: the socket is closed right after.
    (void)::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return;
  }
  const std::uint64_t id = next_client_id_++;
  auto connection = std::make_shared<ControlConnection>(*this, id, std::move(socket), *peer);
  clients_.emplace(id, connection);
  if (authorised(*peer)) {
    logger()->debug("control client {} connected", describe_peer(*peer));
    connection->start();
  } else {
    refusals_.of(peer->uid).log(spdlog::level::warn,
                                "refused control client {}: not allowed to use {}",
                                describe_peer(*peer), options_.path);
    connection->refuse();
  }
}

bool ControlServerState::authorised(const PeerCredentials& peer) const {
  if (peer_allowed(peer, daemon_uid_, group_, {})) return true;
  if (!group_) return false;
  return peer_allowed(peer, daemon_uid_, group_, peer_supplementary_groups(peer));
}

void ControlServerState::forget(std::uint64_t id, bool had_requests) noexcept {
  clients_.erase(id);
  if (!had_requests || !options_.client_closed || closed_) return;
  // Posted: the close may happen inside a reply the owner is sending, in the middle of its
  // own bookkeeping.
  try {
    asio::post(acceptor_.get_executor(), [this, id, alive = std::weak_ptr<const bool>(alive_)] {
      if (alive.expired() || closed_) return;
      try {
        options_.client_closed(id);
      } catch (const std::exception& error) {
        logger()->error("control socket {}: after a client closed: {}", options_.path,
                        error.what());
      }
    });
  } catch (const std::exception& error) {
    logger()->error("control socket {}: cannot report a closed client: {}", options_.path,
                    error.what());
  }
}

void ControlServerState::dispatch(const Json& request, const ControlCaller& caller,
                                  const Respond& respond) {
  const PeerCredentials& peer = caller.peer;
  if (const auto log = logger(); log->should_log(spdlog::level::debug)) {
    log->debug("control client {}: {}", describe_peer(peer),
               request.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
  try {
    handler_(request, caller, respond);
  } catch (const std::exception& error) {
    logger()->error("control command from {} failed: {}", describe_peer(peer), error.what());
    // Ignored when the handler had already answered.
    respond(error_reply(std::string("internal error: ") + error.what()));
  }
}

void ControlServerState::publish_event(const Json& event, bool output) {
  if (closed_) return;
  const std::string line = common::to_json_line(event);
  // A snapshot: delivering may disconnect a slow subscriber and erase it from the map.
  std::vector<std::shared_ptr<ControlConnection>> subscribers;
  for (const auto& [id, connection] : clients_) {
    if (output ? connection->output_subscriber() : connection->subscriber())
      subscribers.push_back(connection);
  }
  for (const auto& connection : subscribers) connection->deliver_event(line, output);
}

void ControlServerState::close() noexcept {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  cancel_timer(accept_retry_);
  for (auto& [id, connection] : clients_) connection->shut_down();
  clients_.clear();
}

void ControlServerState::remove_socket_file() {
  struct stat st {};
  if (::lstat(options_.path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode) || st.st_dev != device_ || st.st_ino != inode_) return;
  if (::unlink(options_.path.c_str()) != 0 && errno != ENOENT) {
    logger()->warn("cannot remove control socket {}: {}", options_.path, std::strerror(errno));
  }
}

namespace {

std::optional<gid_t> group_of(const ControlServerOptions& options) {
  if (options.group.empty()) return std::nullopt;
  return resolve_group(options.group);
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, ControlServerOptions options, Handler handler) {
  const auto group = group_of(options);
  BoundSocket bound = create_listening_socket(options, group);
  const std::string path = options.path;
  try {
    state_ =
        std::make_unique<ControlServerState>(io, std::move(options), std::move(handler),
                                             std::move(bound.fd), group, bound.device, bound.inode);
  } catch (...) {
    // We created the file, so a failed start must not leave it behind.
    ::unlink(path.c_str());
    throw;
  }
}

ControlServer::ControlServer(asio::io_context& io, ControlServerOptions options, Handler handler,
                             common::UniqueFd listening) {
  const auto group = group_of(options);
  struct stat st {};
  dev_t device = 0;
  ino_t inode = 0;
  if (::lstat(options.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    device = st.st_dev;
    inode = st.st_ino;
  }
  state_ = std::make_unique<ControlServerState>(io, std::move(options), std::move(handler),
                                                std::move(listening), group, device, inode);
}

ControlServer::~ControlServer() = default;

void ControlServer::publish_event(const nlohmann::json& event) {
  state_->publish_event(event, false);
}
void ControlServer::publish_output(const nlohmann::json& line) {
  state_->publish_event(line, true);
}
void ControlServer::close() {
  state_->close();
}
void ControlServer::remove_socket_file() {
  state_->remove_socket_file();
}
std::size_t ControlServer::client_count() const {
  return state_->client_count();
}
std::size_t ControlServer::subscriber_count() const {
  return state_->subscriber_count();
}
std::size_t ControlServer::output_subscriber_count() const {
  return state_->output_subscriber_count();
}
const std::string& ControlServer::path() const {
  return state_->path();
}
int ControlServer::native_handle() const {
  return state_->native_handle();
}

}  // namespace forkd::daemon
