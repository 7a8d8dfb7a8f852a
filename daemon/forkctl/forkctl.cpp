#include "daemon/forkctl/forkctl.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <optional>
#include <string_view>

#include "common/fd.hpp"
#include "daemon/forkctl/args.hpp"
#include "daemon/forkctl/client.hpp"
#include "daemon/forkctl/format.hpp"

namespace forkd::ctl {
namespace {

using std::chrono::milliseconds;

#ifndef FORKD_VERSION
#define FORKD_VERSION "unknown"
#endif
constexpr std::string_view kVersion = FORKD_VERSION;

// Returns false when the reader went away (EPIPE: `forkctl events | head -1`).
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void print_error(std::string_view message) {
  (void)write_all(STDERR_FILENO, "forkctl: " + std::string(message) + "\n");
}

int emit(const Rendered& rendered) {
  (void)write_all(STDOUT_FILENO, rendered.out);
  (void)write_all(STDERR_FILENO, rendered.err);
  return rendered.exit_code;
}

// A closed stdout or socket must surface as EPIPE, not kill us with a signal.
void ignore_sigpipe() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  sigemptyset(&action.sa_mask);
  (void)::sigaction(SIGPIPE, &action, nullptr);
}

std::string describe(milliseconds duration) {
  if (duration.count() % 1000 == 0) return std::to_string(duration.count() / 1000) + "s";
  return std::to_string(duration.count()) + "ms";
}

ControlClient::Deadline deadline_of(const Invocation& invocation) {
  const milliseconds timeout = reply_timeout(invocation);
  if (timeout.count() == 0) return std::nullopt;
  return std::chrono::steady_clock::now() + timeout;
}

// Sends the request and waits for its one reply line. nullopt after reporting why on stderr.
std::optional<std::string> exchange(ControlClient& client, const Invocation& invocation) {
  const std::string request =
      invocation.request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::error_code send_error = client.send_line(request);
  std::string line;
  switch (client.read_line(line, deadline_of(invocation))) {
    case ControlClient::ReadStatus::line:
      return line;
    case ControlClient::ReadStatus::timeout:
      print_error("no reply from forkd on " + client.path() + " within " +
                  describe(reply_timeout(invocation)));
      return std::nullopt;
    case ControlClient::ReadStatus::eof:
    case ControlClient::ReadStatus::interrupted:
      break;
  }
  if (send_error) {
    print_error("lost the connection to " + client.path() + ": " + send_error.message());
  } else {
    print_error("forkd closed the connection on " + client.path() + " without replying");
  }
  return std::nullopt;
}

// SIGINT/SIGTERM/SIGHUP end `events` cleanly (exit 0): read from a signalfd next to the socket,
// so no handler and no global flag are needed.
common::UniqueFd block_stop_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return {};
  return common::UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
}

int stream_events(ControlClient& client, const Invocation& invocation) {
  const common::UniqueFd stop = block_stop_signals();
  const auto reply = exchange(client, invocation);
  if (!reply) return kExitFailed;
  const Rendered subscribed = render_reply(invocation, *reply);
  if (subscribed.exit_code != kExitOk) return emit(subscribed);
  std::string line;
  for (;;) {
    switch (client.read_line(line, std::nullopt, stop.get())) {
      case ControlClient::ReadStatus::line:
        // One event per line, written whole, as it arrives: pipes see it at once.
        if (!write_all(STDOUT_FILENO, line + "\n")) return kExitOk;
        break;
      case ControlClient::ReadStatus::eof:
      case ControlClient::ReadStatus::interrupted:
      case ControlClient::ReadStatus::timeout:
        return kExitOk;
    }
  }
}

// `logs -f`: subscribe first, then read the history on a second connection, so that no line
// falls between the two; lines the history already showed (by seq) are skipped.
int follow_logs(ControlClient& subscription, const std::string& socket_path,
                const Invocation& invocation) {
  const common::UniqueFd stop = block_stop_signals();
  Invocation subscribe = invocation;
  subscribe.request = nlohmann::json{{"cmd", "events"}, {"topics", {"output"}}};
  const auto subscribed = exchange(subscription, subscribe);
  if (!subscribed) return kExitFailed;
  if (const Rendered refused = render_reply(subscribe, *subscribed); refused.exit_code != kExitOk)
    return emit(refused);

  ControlClient history(socket_path);
  const auto reply = exchange(history, invocation);
  if (!reply) return kExitFailed;
  const Rendered shown = render_reply(invocation, *reply);
  if (shown.exit_code != kExitOk) return emit(shown);
  std::uint64_t last_seq = 0;
  const auto past = nlohmann::json::parse(*reply, nullptr, false);
  if (past.is_object() && past.contains("lines") && past["lines"].is_array()) {
    for (const auto& line : past["lines"]) {
      last_seq = std::max<std::uint64_t>(last_seq, line.value("seq", std::uint64_t{0}));
      const std::string text = invocation.json ? line.dump() + "\n" : format_log_line(line);
      if (!write_all(STDOUT_FILENO, text)) return kExitOk;
    }
  }
  const auto& only = invocation.request.find("worker");
  std::string line;
  for (;;) {
    switch (subscription.read_line(line, std::nullopt, stop.get())) {
      case ControlClient::ReadStatus::line: {
        auto event = nlohmann::json::parse(line, nullptr, false);
        if (!event.is_object() || event.value("seq", std::uint64_t{0}) <= last_seq) break;
        if (only != invocation.request.end() && event.value("worker", -1) != *only) break;
        event.erase("event");
        const std::string text = invocation.json ? event.dump() + "\n" : format_log_line(event);
        if (!write_all(STDOUT_FILENO, text)) return kExitOk;
        break;
      }
      case ControlClient::ReadStatus::eof:
      case ControlClient::ReadStatus::interrupted:
      case ControlClient::ReadStatus::timeout:
        return kExitOk;
    }
  }
}

int show_version(const Invocation& invocation, const std::string& socket_path) {
  std::optional<std::string> reply;
  std::optional<std::string> unreachable;
  try {
    ControlClient client(socket_path);
    reply = exchange(client, invocation);
    if (!reply) {
      (void)emit(render_version(invocation, kVersion, std::nullopt));
      return kExitFailed;
    }
  } catch (const UnreachableError& error) {
    unreachable = error.what();
  }
  const int code = emit(render_version(invocation, kVersion, reply));
  if (unreachable) {
    print_error(*unreachable);
    return kExitUnreachable;
  }
  return code;
}

int run(const std::vector<std::string>& args) {
  Invocation invocation;
  try {
    invocation = parse_args(args);
  } catch (const UsageError& error) {
    print_error(std::string(error.what()) + "\nTry 'forkctl --help' for more information.");
    return kExitUsage;
  }
  if (invocation.help) {
    (void)write_all(STDOUT_FILENO,
                    invocation.help_for ? command_help(*invocation.help_for) : usage_text());
    return kExitOk;
  }
  if (invocation.show_version) {
    (void)write_all(STDOUT_FILENO, "forkctl " + std::string(kVersion) + "\n");
    return kExitOk;
  }
  ignore_sigpipe();

  std::string socket_path;
  try {
    socket_path = resolve_socket_path(invocation);
  } catch (const std::exception& error) {
    print_error(error.what());
    return kExitUnreachable;
  }
  if (invocation.command == Command::version) return show_version(invocation, socket_path);

  try {
    ControlClient client(socket_path);
    if (invocation.command == Command::events) return stream_events(client, invocation);
    if (invocation.command == Command::logs && invocation.follow) {
      return follow_logs(client, socket_path, invocation);
    }
    const auto reply = exchange(client, invocation);
    if (!reply) return kExitFailed;
    return emit(render_reply(invocation, *reply));
  } catch (const UnreachableError& error) {
    print_error(error.what());
    return kExitUnreachable;
  } catch (const ExchangeError& error) {
    print_error(error.what());
    return kExitFailed;
  }
}

}  // namespace

int run_forkctl(const std::vector<std::string>& args) {
  try {
    return run(args);
  } catch (const std::exception& error) {
    print_error(error.what());
    return kExitFailed;
  }
}

}  // namespace forkd::ctl
