#include "worker/worker.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "common/ipc_protocol.hpp"

namespace forkd::worker {

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMaxListeners = 65535;

std::runtime_error env_error(std::string_view name, std::string_view value, std::string_view why) {
  std::string text = "invalid ";
  text += name;
  text += "=\"";
  text += value;
  text += "\": ";
  text += why;
  return std::runtime_error(text);
}

std::uint64_t parse_number(std::string_view name, const char* raw, std::uint64_t max) {
  const std::string_view value(raw);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec == std::errc::invalid_argument || end != value.data() + value.size()) {
    throw env_error(name, value, "not a non-negative decimal number");
  }
  if (ec == std::errc::result_out_of_range || n > max) {
    throw env_error(name, value, "out of range (at most " + std::to_string(max) + ")");
  }
  return n;
}

const char* require(const Context::EnvLookup& getenv, const char* name) {
  const char* value = getenv(name);
  if (value == nullptr) {
    throw std::runtime_error(std::string("not running under forkd: ") + name + " is not set");
  }
  return value;
}

std::vector<std::string> split_names(std::string_view names) {
  std::vector<std::string> out;
  for (;;) {
    const std::size_t colon = names.find(':');
    out.emplace_back(names.substr(0, colon));
    if (colon == std::string_view::npos) break;
    names.remove_prefix(colon + 1);
  }
  return out;
}

void check_open(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw std::runtime_error(what + " (fd " + std::to_string(fd) +
                             ") is not open: " + common::last_error().message());
  }
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error(what + " (fd " + std::to_string(fd) + ") is not a socket");
  }
}

}  // namespace

Context Context::parse(const EnvLookup& getenv, pid_t self) {
  Context ctx;
  constexpr auto kMaxInt = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
  ctx.id = static_cast<unsigned>(parse_number("FORKD_WORKER_ID", require(getenv, "FORKD_WORKER_ID"),
                                              std::numeric_limits<unsigned>::max()));
  ctx.ipc_fd =
      static_cast<int>(parse_number("FORKD_IPC_FD", require(getenv, "FORKD_IPC_FD"), kMaxInt));
  if (const char* v = getenv("FORKD_GENERATION")) {
    ctx.generation = static_cast<unsigned>(
        parse_number("FORKD_GENERATION", v, std::numeric_limits<unsigned>::max()));
  }
  if (const char* v = getenv("FORKD_WORKERS")) {
    ctx.workers = static_cast<unsigned>(
        parse_number("FORKD_WORKERS", v, std::numeric_limits<unsigned>::max()));
  }
  if (const char* v = getenv("FORKD_MASTER_PID")) {
    ctx.master_pid = static_cast<pid_t>(parse_number("FORKD_MASTER_PID", v, kMaxInt));
  }
  if (const char* v = getenv("FORKD_IPC_MAX_MESSAGE")) {
    ctx.max_message = static_cast<std::size_t>(
        parse_number("FORKD_IPC_MAX_MESSAGE", v, std::numeric_limits<std::size_t>::max()));
    if (ctx.max_message == 0) throw env_error("FORKD_IPC_MAX_MESSAGE", v, "must be positive");
  }
  if (const char* v = getenv("WATCHDOG_USEC")) {
    ctx.watchdog = std::chrono::microseconds(
        parse_number("WATCHDOG_USEC", v, std::numeric_limits<std::int64_t>::max() / 2));
  }
  if (const char* v = getenv("FORKD_SHUTDOWN_TIMEOUT_MS")) {
    ctx.shutdown_timeout = std::chrono::milliseconds(
        parse_number("FORKD_SHUTDOWN_TIMEOUT_MS", v, std::numeric_limits<std::int64_t>::max() / 2));
  }

  std::uint64_t count = 0;
  if (const char* v = getenv("LISTEN_FDS")) count = parse_number("LISTEN_FDS", v, kMaxListeners);
  if (count > 0) {
    // As sd_listen_fds(): the fds are only ours when LISTEN_PID names this very process.
    const char* pid_text = getenv("LISTEN_PID");
    if (pid_text == nullptr) throw std::runtime_error("LISTEN_FDS is set but LISTEN_PID is not");
    const auto pid = parse_number("LISTEN_PID", pid_text, kMaxInt);
    if (static_cast<pid_t>(pid) != self) {
      throw std::runtime_error("LISTEN_PID=" + std::to_string(pid) + " is not this process (" +
                               std::to_string(self) + "): the listeners were meant for another");
    }
    std::vector<std::string> names;
    if (const char* v = getenv("LISTEN_FDNAMES")) {
      names = split_names(v);
      if (names.size() != count) {
        throw env_error("LISTEN_FDNAMES", v,
                        "names " + std::to_string(names.size()) +
                            " listeners but LISTEN_FDS=" + std::to_string(count));
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      std::string name = i < names.size() ? names[i] : std::string();
      if (name.empty()) name = "listen" + std::to_string(i);
      ctx.listeners.push_back({static_cast<int>(3 + i), std::move(name)});
    }
  }

  const auto ipc = static_cast<std::uint64_t>(ctx.ipc_fd);
  if (ipc < 3 || (ipc >= 3 && ipc < 3 + count)) {
    throw env_error("FORKD_IPC_FD", std::to_string(ctx.ipc_fd),
                    "must be an fd above 2 and outside the listener range");
  }
  return ctx;
}

Context Context::from_environment() {
  Context ctx = parse([](const char* name) { return ::getenv(name); }, ::getpid());
  check_open(ctx.ipc_fd, "FORKD_IPC_FD");
  for (const Listener& l : ctx.listeners) check_open(l.fd, "listener " + l.name);
  return ctx;
}

Worker::Worker(Context context)
    : context_(std::move(context)),
      channel_(io_, common::UniqueFd(context_.ipc_fd), context_.max_message),
      heartbeat_timer_(io_),
      counts_timer_(io_) {
  if (auto ec = common::set_cloexec(context_.ipc_fd, true)) {
    throw std::system_error(ec, "FORKD_IPC_FD " + std::to_string(context_.ipc_fd));
  }
  for (const Listener& l : context_.listeners) {
    if (auto ec = common::set_cloexec(l.fd, true)) {
      throw std::system_error(ec, "listener " + l.name + " (fd " + std::to_string(l.fd) + ")");
    }
  }
  // SIGTERM is caught from here on, not only once run() starts: ready() may reach the master
  // before run(), and a SIGTERM sent right after it must stop us gracefully, not kill us.
  struct sigaction current {};
  ::sigaction(SIGTERM, nullptr, &current);
  const bool term_ignored = (current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_IGN;
  if (!term_ignored) {
    signals_.emplace(io_, std::initializer_list<int>{SIGTERM},
                     [this](const common::SignalInfo&) { begin_stop(StopReason::terminated); });
  }
}

Worker::~Worker() = default;

void Worker::ready() {
  if (ready_sent_) return;
  ready_sent_ = true;
  channel_.post(common::ipc::encode(common::ipc::Ready{}));
}

void Worker::send(const nlohmann::json& message) {
  channel_.post(message);
}

void Worker::send_to(unsigned id, const nlohmann::json& data) {
  channel_.post(common::ipc::encode(common::ipc::Send{id, "", data}));
}

void Worker::broadcast(const nlohmann::json& data) {
  channel_.post(common::ipc::encode(common::ipc::Broadcast{data}));
}

void Worker::on_message(MessageHandler handler) {
  message_handler_ = std::move(handler);
}

void Worker::on_queued_connections(QueuedHandler handler) {
  queued_handler_ = std::move(handler);
}

void Worker::on_stop(StopHandler handler) {
  if (stopping_) {
    handler();
    return;
  }
  stop_handlers_.push_back(std::move(handler));
}

void Worker::stop() {
  begin_stop(StopReason::requested);
}

void Worker::begin_stop(StopReason reason) {
  if (stopping_) return;
  stopping_ = true;
  stop_reason_ = reason;
  heartbeat_timer_.cancel();
  counts_timer_.cancel();
  channel_.stop_reading();
  // The signal source is released later: this may run inside its own callback. Once it is
  // gone SIGTERM is unblocked again, so a second one ends the process at once.
  if (signals_) asio::post(io_, [this] { signals_.reset(); });
  // Indexing, not iterators: a hook may add another, which then runs too.
  for (std::size_t i = 0; i < stop_handlers_.size(); ++i) {  // NOLINT(modernize-loop-convert)
    StopHandler handler = stop_handlers_[i];
    handler();
  }
}

void Worker::count_connections(std::uint64_t accepted, std::uint64_t open) {
  accepted_ = accepted;
  open_ = open;
  if (counts_pending_ || stopping_) return;
  counts_pending_ = true;
  // Batched: a busy worker sends one line a second however many connections it takes.
  counts_timer_.expires_after(1s);
  counts_timer_.async_wait([this](std::error_code ec) {
    counts_pending_ = false;
    if (ec || stopping_) return;
    send_connection_counts();
  });
}

void Worker::send_connection_counts() {
  channel_.post(common::ipc::encode(common::ipc::Connections{accepted_, open_}));
}

void Worker::send_heartbeat() {
  channel_.post(common::ipc::encode(common::ipc::Heartbeat{}));
}

void Worker::schedule_heartbeat() {
  const auto interval = std::max<std::chrono::microseconds>(context_.watchdog / 2, 1ms);
  heartbeat_timer_.expires_after(interval);
  heartbeat_timer_.async_wait([this](std::error_code ec) {
    if (ec || stopping_) return;
    send_heartbeat();
    schedule_heartbeat();
  });
}

int Worker::run() {
  if (!stopping_) {
    channel_.start_reading(
        [this](const nlohmann::json& message) {
          if (stopping_) return;
          // Only a line that came with a descriptor is the master's lending; any other line,
          // whatever it says, is the application's.
          const auto kind = message.is_object() ? message.find("forkd") : message.end();
          if (kind != message.end() && kind->is_string() && *kind == "take_queued") {
            if (common::UniqueFd listener = channel_.take_passed()) {
              if (queued_handler_) queued_handler_(std::move(listener));
              return;
            }
          }
          if (message_handler_) message_handler_(message);
        },
        [this] { begin_stop(StopReason::master_gone); });
    if (context_.watchdog.count() > 0) {
      send_heartbeat();
      schedule_heartbeat();
    }
  }

  while (!stopping_) {
    if (io_.run_one() == 0) return 0;  // io_context stopped by the app, or nothing left at all
  }
  if (stop_reason_ == StopReason::master_gone) {
    // Nobody will SIGKILL us if the drain hangs: PDEATHSIG may not be set for exec'd programs
    // that reset it, so give up on our own.
    io_.run_until(std::chrono::steady_clock::now() + 1s);
    return io_.stopped() ? 0 : 1;
  }
  io_.run();
  return 0;
}

}  // namespace forkd::worker
