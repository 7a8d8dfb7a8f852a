// forkctl's command line: argv -> the request line it sends, the socket it talks to and how it
// waits. Pure (apart from reading a config file for control.socket), so it is unit-tested;
// it never connects anywhere and never prints.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;       // the daemon refused or failed the command
inline constexpr int kExitUnreachable = 2;  // the control socket could not be reached
inline constexpr int kExitUsage = 64;       // bad command line (sysexits EX_USAGE)

// A bad command line; what() is the one-line reason, without the "forkctl: " prefix.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Command {
  status,
  reload,
  restart,
  scale,
  stop,
  send,
  broadcast,
  events,
  reopen_logs,
  version,
  logs
};

struct Invocation {
  std::string socket;  // -s/--socket; "" = not given
  std::string config;  // -c/--config; "" = not given
  bool json = false;
  bool help = false;                         // -h/--help or `help`: print the usage and exit 0
  std::optional<Command> help_for;           // `help CMD` or `CMD --help`: that command's usage
  bool show_version = false;                 // --version: print forkctl's version and exit 0
  std::chrono::milliseconds timeout{30000};  // 0 = no limit
  std::chrono::milliseconds wait{0};         // send --wait; 0 = not waiting
  bool follow = false;                       // logs -f
  Command command = Command::status;
  nlohmann::json request;  // the request object, sent as one line
};

// args excludes argv[0]. Options may appear before or after the command; "--" ends them.
// Throws UsageError.
[[nodiscard]] Invocation parse_args(const std::vector<std::string>& args);

// "250ms", "30s", "5m", "24h"; a bare number is seconds. Throws UsageError.
[[nodiscard]] std::chrono::milliseconds parse_duration(std::string_view text);

// How long to wait for the reply: --timeout, extended by send --wait; 0 = no limit.
[[nodiscard]] std::chrono::milliseconds reply_timeout(const Invocation& invocation);

// control.socket from a forkd configuration file, "" when the file does not set it.
// Throws std::runtime_error naming the file when it cannot be read or parsed.
[[nodiscard]] std::string socket_from_config(const std::string& config_path);

// -s, else control.socket of -c FILE, else common::default_control_socket().
[[nodiscard]] std::string resolve_socket_path(const Invocation& invocation);

[[nodiscard]] std::string usage_text();
// `forkctl help CMD`: its synopsis and what it does.
[[nodiscard]] std::string command_help(Command command);
[[nodiscard]] std::string_view command_name(Command command);

}  // namespace forkd::ctl
