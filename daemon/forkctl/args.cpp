#include "daemon/forkctl/args.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#include "common/control_paths.hpp"

namespace forkd::ctl {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

// One entry per command: its name, the synopsis of its arguments, and what `forkctl help CMD`
// says about it. The global usage lists the first line of each.
struct CommandDoc {
  std::string_view name;
  Command command;
  std::string_view synopsis;  // after "forkctl [options] NAME"
  std::string_view summary;   // one line, for the global usage
  std::string_view detail;    // the rest of `forkctl help NAME`
};

constexpr std::array<CommandDoc, 11> kCommands{{
    {"status", Command::status, "", "table of master and workers",
     "The master (pid, generation, uptime, config, last reload, where the worker count came\n"
     "from, cgroup limits) and one row per worker: id, pid, state (starting, ready, stopping,\n"
     "backoff, failed), generation, uptime, restarts, last exit, RSS. With --json, one object\n"
     "with every field (forkd(8) lists them).\n"},
    {"reload", Command::reload, "[--dry-run]", "reload the configuration (as SIGHUP)",
     "Re-reads and validates the configuration file, then replaces the workers by a rolling\n"
     "restart, each new worker ready before an old one stops. Waits for the outcome: exit 0\n"
     "when applied; exit 1 when the file is invalid or the new workers did not get ready (the\n"
     "old ones keep serving). --dry-run validates and prints what would change, changing\n"
     "nothing.\n"},
    {"restart", Command::restart, "ID|all", "graceful replacement of one or all workers",
     "Starts a replacement for worker ID (or each worker, reload.batch at a time) and stops\n"
     "the old one once the replacement is ready.\n"},
    {"scale", Command::scale, "N|+N|-N|auto", "set, raise or lower the number of workers",
     "N sets the worker count (1..4096), +N and -N change it, auto sets it to the CPUs this\n"
     "process may use (the affinity mask capped by the cgroup CPU quota, read anew). Workers\n"
     "above the new count are stopped gracefully. The next reload applies the configuration's\n"
     "`workers` again.\n"},
    {"stop", Command::stop, "[--fast]", "stop forkd (graceful, or fast as SIGQUIT)",
     "Graceful: as SIGTERM (stop.delay first when set, then the drain within\n"
     "worker.shutdown_timeout). --fast: as SIGQUIT (SIGTERM to every worker, SIGKILL after\n"
     "1s).\n"},
    {"send", Command::send, "ID JSON [--wait DUR]", "deliver JSON to worker ID",
     "Delivers the JSON value to worker ID over its IPC channel (process.on('message') in\n"
     "Node). With --wait, prints the next message that worker sends back, as one JSON line.\n"},
    {"broadcast", Command::broadcast, "JSON", "deliver JSON to every worker", ""},
    {"events", Command::events, "", "stream lifecycle events and worker messages",
     "One JSON object per line (worker_started, worker_ready, worker_exited, reload,\n"
     "message, ...) until interrupted.\n"},
    {"logs", Command::logs, "[-n N] [-f] [ID]", "the last captured lines of the workers",
     "The last N lines (default 20) that the workers (or worker ID) wrote to a captured\n"
     "stdout or stderr (worker.stdout/stderr: log), oldest first, each as\n"
     "[ID pid PID stdout|stderr] line. forkd keeps 1000 lines and at most 1 MiB per worker\n"
     "slot, across respawns; lines its log left out under a flood are kept too. -f then\n"
     "prints each new line as it is written, until interrupted.\n"},
    {"reopen-logs", Command::reopen_logs, "", "reopen log files (as SIGUSR1)",
     "For logrotate: log.file and log.audit are reopened by path.\n"},
    {"version", Command::version, "", "versions of forkctl and of the running forkd", ""},
}};

const CommandDoc* find_command(std::string_view name) {
  const auto* found = std::find_if(kCommands.begin(), kCommands.end(),
                                   [&](const CommandDoc& doc) { return doc.name == name; });
  return found == kCommands.end() ? nullptr : found;
}

const CommandDoc& doc_of(Command command) {
  for (const auto& doc : kCommands) {
    if (doc.command == command) return doc;
  }
  return kCommands.front();
}

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "-1" or "-2.5" is a value (scale -1, send 0 -1), not an option.
bool looks_like_option(std::string_view arg) {
  if (arg.size() < 2 || arg.front() != '-') return false;
  return !(arg[1] >= '0' && arg[1] <= '9');
}

std::optional<std::int64_t> to_integer(std::string_view digits) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

int parse_worker_id(std::string_view command, std::string_view text) {
  const auto value = all_digits(text) ? to_integer(text) : std::nullopt;
  if (!value || *value > std::numeric_limits<int>::max()) {
    throw UsageError(std::string(command) + ": worker ID must be a non-negative integer, not '" +
                     std::string(text) + "'");
  }
  return static_cast<int>(*value);
}

Json parse_message(std::string_view command, const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& error) {
    std::string_view why = error.what();
    if (const auto bracket = why.find("] "); bracket != std::string_view::npos) {
      why.remove_prefix(bracket + 2);
    }
    constexpr std::size_t kShown = 60;
    const std::string shown = text.size() > kShown ? text.substr(0, kShown) + "..." : text;
    throw UsageError(std::string(command) + ": invalid JSON message '" + shown +
                     "': " + std::string(why));
  }
}

std::string join(const std::vector<std::string>& words, std::size_t from) {
  std::string joined;
  for (std::size_t i = from; i < words.size(); ++i) {
    if (i > from) joined.push_back(' ');
    joined += words[i];
  }
  return joined;
}

void expect_arguments(std::string_view command, const std::vector<std::string>& positional,
                      std::size_t wanted, std::string_view what) {
  const std::size_t given = positional.size() - 1;
  if (given < wanted) {
    throw UsageError(std::string(command) + ": missing " + std::string(what));
  }
  if (given > wanted) {
    throw UsageError(std::string(command) + ": unexpected argument '" + positional[wanted + 1] +
                     "'");
  }
}

struct CommandFlags {
  std::optional<std::int64_t> lines;  // logs -n
  bool follow = false;                // logs -f
  bool dry_run = false;
  bool fast = false;
  std::optional<milliseconds> wait;
};

void reject_flag(bool given, std::string_view flag, Command command, Command owner) {
  if (given && command != owner) {
    throw UsageError("option " + std::string(flag) + " is not valid for '" +
                     std::string(command_name(command)) + "'");
  }
}

Json build_request(Command command, const std::vector<std::string>& positional,
                   const CommandFlags& flags) {
  const std::string_view name = command_name(command);
  reject_flag(flags.dry_run, "--dry-run", command, Command::reload);
  reject_flag(flags.fast, "--fast", command, Command::stop);
  reject_flag(flags.wait.has_value(), "--wait", command, Command::send);
  reject_flag(flags.lines.has_value(), "-n", command, Command::logs);
  reject_flag(flags.follow, "-f", command, Command::logs);
  switch (command) {
    case Command::status:
    case Command::events:
    case Command::reopen_logs:
    case Command::version:
      expect_arguments(name, positional, 0, "");
      return Json{{"cmd", name}};
    case Command::reload:
      expect_arguments(name, positional, 0, "");
      return Json{{"cmd", "reload"}, {"dry_run", flags.dry_run}};
    case Command::stop:
      expect_arguments(name, positional, 0, "");
      return Json{{"cmd", "stop"}, {"fast", flags.fast}};
    case Command::restart: {
      expect_arguments(name, positional, 1, "worker ID or 'all'");
      const std::string& target = positional[1];
      if (target == "all") return Json{{"cmd", "restart"}, {"worker", "all"}};
      return Json{{"cmd", "restart"}, {"worker", parse_worker_id(name, target)}};
    }
    case Command::scale: {
      expect_arguments(name, positional, 1, "worker count (N, +N, -N or auto)");
      const std::string& value = positional[1];
      if (value == "auto") return Json{{"cmd", "scale"}, {"value", value}};
      const std::string_view digits =
          (!value.empty() && (value.front() == '+' || value.front() == '-'))
              ? std::string_view(value).substr(1)
              : std::string_view(value);
      const auto number = all_digits(digits) ? to_integer(digits) : std::nullopt;
      if (!number || *number > std::numeric_limits<int>::max()) {
        throw UsageError("scale: expected N, +N, -N (an integer) or auto, not '" + value + "'");
      }
      return Json{{"cmd", "scale"}, {"value", value}};
    }
    case Command::send: {
      if (positional.size() < 2) throw UsageError("send: missing worker ID");
      if (positional.size() < 3) throw UsageError("send: missing JSON message");
      Json request{{"cmd", "send"},
                   {"worker", parse_worker_id(name, positional[1])},
                   {"data", parse_message(name, join(positional, 2))}};
      if (flags.wait) request["wait_ms"] = flags.wait->count();
      return request;
    }
    case Command::logs: {
      if (positional.size() > 2) {
        throw UsageError("logs: unexpected argument '" + positional[2] + "'");
      }
      Json request{{"cmd", "logs"}};
      if (positional.size() == 2) request["worker"] = parse_worker_id(name, positional[1]);
      if (flags.lines) request["lines"] = *flags.lines;
      return request;
    }
    case Command::broadcast:
      if (positional.size() < 2) throw UsageError("broadcast: missing JSON message");
      return Json{{"cmd", "broadcast"}, {"data", parse_message(name, join(positional, 1))}};
  }
  throw UsageError("unknown command");
}

}  // namespace

std::string_view command_name(Command command) {
  return doc_of(command).name;
}

milliseconds parse_duration(std::string_view text) {
  const auto* const digits_end =
      std::find_if(text.begin(), text.end(), [](char c) { return c < '0' || c > '9'; });
  const std::string_view digits =
      text.substr(0, static_cast<std::size_t>(digits_end - text.begin()));
  const std::string_view unit = text.substr(digits.size());
  const auto value = to_integer(digits);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = std::int64_t{60} * 1000;
  } else if (unit == "h") {
    scale = std::int64_t{3600} * 1000;
  }
  constexpr std::int64_t kMaxMs = std::int64_t{1} << 40;  // ~35 years: plenty, no overflow
  if (digits.empty() || !value || scale == 0 || *value > kMaxMs / scale) {
    throw UsageError("invalid duration '" + std::string(text) +
                     "' (expected e.g. 250ms, 30s, 5m, 24h)");
  }
  return milliseconds(*value * scale);
}

milliseconds reply_timeout(const Invocation& invocation) {
  if (invocation.timeout.count() == 0) return milliseconds(0);
  return invocation.timeout + invocation.wait;
}

Invocation parse_args(const std::vector<std::string>& args) {
  Invocation invocation;
  std::vector<std::string> positional;
  CommandFlags flags;
  bool options_done = false;

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || !looks_like_option(arg)) {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    // --name=value or --name value (or -s value, -svalue).
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      if (const auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
      }
    } else if (arg.size() > 2) {
      name = arg.substr(0, 2);
      inline_value = arg.substr(2);
    }
    const auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw UsageError("option " + name + " needs a value");
      return args[++i];
    };
    const auto no_value = [&] {
      if (inline_value) throw UsageError("option " + name + " takes no value");
    };
    if (name == "-s" || name == "--socket") {
      invocation.socket = value();
      if (invocation.socket.empty()) throw UsageError("option " + name + " needs a path");
    } else if (name == "-c" || name == "--config") {
      invocation.config = value();
      if (invocation.config.empty()) throw UsageError("option " + name + " needs a file");
    } else if (name == "--timeout") {
      invocation.timeout = parse_duration(value());
    } else if (name == "--json") {
      no_value();
      invocation.json = true;
    } else if (name == "-h" || name == "--help") {
      no_value();
      invocation.help = true;
    } else if (name == "--version") {
      no_value();
      invocation.show_version = true;
    } else if (name == "-f" || name == "--follow") {
      no_value();
      flags.follow = true;
    } else if (name == "--dry-run") {
      no_value();
      flags.dry_run = true;
    } else if (name == "--fast") {
      no_value();
      flags.fast = true;
    } else if (name == "-n" || name == "--lines") {
      const std::string text = value();
      const auto count = all_digits(text) ? to_integer(text) : std::nullopt;
      if (!count || *count < 1 || *count > 100000) {
        throw UsageError("-n: expected a number of lines from 1 to 100000, not '" + text + "'");
      }
      flags.lines = *count;
    } else if (name == "--wait") {
      flags.wait = parse_duration(value());
      if (flags.wait->count() <= 0) throw UsageError("--wait needs a duration above zero");
    } else {
      throw UsageError("unknown option '" + arg + "'");
    }
  }

  // `forkctl help [CMD]` and `forkctl CMD --help`: the help of one command, or of all.
  const bool help_word = !positional.empty() && positional[0] == "help";
  if (help_word || invocation.help) {
    invocation.help = true;
    const std::size_t at = help_word ? 1 : 0;
    if (positional.size() > at + 1) {
      throw UsageError("help: unexpected argument '" + positional[at + 1] + "'");
    }
    if (positional.size() == at + 1) {
      const CommandDoc* doc = find_command(positional[at]);
      if (doc == nullptr) throw UsageError("unknown command '" + positional[at] + "'");
      invocation.help_for = doc->command;
    }
    return invocation;
  }
  if (invocation.show_version) return invocation;
  if (positional.empty()) throw UsageError("missing command");
  const CommandDoc* const found = find_command(positional[0]);
  if (found == nullptr) throw UsageError("unknown command '" + positional[0] + "'");
  invocation.command = found->command;
  invocation.request = build_request(invocation.command, positional, flags);
  if (flags.wait) invocation.wait = *flags.wait;
  invocation.follow = flags.follow;
  return invocation;
}

std::string socket_from_config(const std::string& config_path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(config_path);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error("cannot read config " + config_path);
  } catch (const YAML::Exception& error) {
    throw std::runtime_error("cannot parse config " + config_path + ": " + error.what());
  }
  try {
    if (!root.IsMap()) return {};
    const YAML::Node control = root["control"];
    if (!control || !control.IsMap()) return {};
    const YAML::Node socket = control["socket"];
    if (!socket || socket.IsNull()) return {};
    if (!socket.IsScalar()) {
      throw std::runtime_error("config " + config_path + ": control.socket must be a path");
    }
    return socket.as<std::string>();
  } catch (const YAML::Exception& error) {
    throw std::runtime_error("config " + config_path + ": " + error.what());
  }
}

std::string resolve_socket_path(const Invocation& invocation) {
  if (!invocation.socket.empty()) return invocation.socket;
  if (!invocation.config.empty()) {
    if (std::string path = socket_from_config(invocation.config); !path.empty()) return path;
  }
  return common::default_control_socket();
}

std::string usage_text() {
  std::string text =
      "usage: forkctl [-s SOCKET] [-c FILE] [--json] [--timeout DUR] COMMAND [ARGS]\n"
      "\n"
      "commands:\n";
  for (const auto& doc : kCommands) {
    std::string head = "  " + std::string(doc.name);
    if (!doc.synopsis.empty()) head += " " + std::string(doc.synopsis);
    head.resize(std::max<std::size_t>(head.size() + 2, 29), ' ');
    text += head + std::string(doc.summary) + "\n";
  }
  text += "  help [COMMAND]             this help, or one command's (also COMMAND --help)\n";
  text +=
      "\n"
      "options:\n"
      "  -s, --socket PATH  control socket (default: control.socket of the -c file, else\n"
      "                     " +
      common::default_control_socket() +
      ")\n"
      "  -c, --config FILE  take the socket path from this forkd configuration\n"
      "  --json             print the reply as JSON\n"
      "  --timeout DUR      how long to wait for a reply (default 30s; 0 = no limit)\n"
      "  -h, --help         show this help\n"
      "  --version          show forkctl's version\n"
      "\n"
      "exit status: 0 success, 1 refused or failed, 2 cannot reach forkd, 64 usage error\n";
  return text;
}

std::string command_help(Command command) {
  const CommandDoc& doc = doc_of(command);
  std::string text = "usage: forkctl [-s SOCKET] [-c FILE] [--json] " + std::string(doc.name);
  if (!doc.synopsis.empty()) text += " " + std::string(doc.synopsis);
  std::string summary(doc.summary);
  summary.front() = static_cast<char>(std::toupper(static_cast<unsigned char>(summary.front())));
  text += "\n\n" + summary + ".\n";
  if (!doc.detail.empty()) text += std::string(doc.detail);
  text += "\nforkctl --help lists every command and option.\n";
  return text;
}

}  // namespace forkd::ctl
