// The typed forkd configuration (SPEC "Configuration"), its YAML loader and printer.
// Pure: loading reads one file and validates it; nothing here binds, forks or logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/worker_identity.hpp"

namespace forkd::common {

using Duration = std::chrono::milliseconds;

enum class AddressKind { tcp4, tcp6, unix_path };

// One `listen` entry. `host` is the literal address ("127.0.0.1", "::1", "0.0.0.0", "::"),
// without brackets; for unix sockets `path` holds the filesystem path.
struct ListenConfig {
  std::string address;  // as written by the user, e.g. "127.0.0.1:8080", "[::1]:80", "unix:/x"
  AddressKind kind = AddressKind::tcp4;
  std::string host;
  std::uint16_t port = 0;
  std::string path;
  std::string name;  // "" until defaulted: the loader fills listenN by position
  int backlog = 1024;
  bool reuseport = false;
  std::optional<unsigned> mode;  // unix sockets only, e.g. 0660
  bool operator==(const ListenConfig&) const = default;
};

enum class ReadyMode { automatic, message, notify, listening, started };
// worker.inherit_bind: the bind takeover library for unchanged programs (SPEC "Unchanged
// programs"); `automatic` = on for dynamically linked exec programs.
enum class InheritBind { automatic, on, off };
enum class OutputMode { log, inherit, null };

struct WorkerConfig {
  std::string app = "http-hello";    // built-in app; empty when command/shell is used
  std::vector<std::string> command;  // exec'd without a shell
  std::string shell;                 // through /bin/sh -c
  std::string cwd;
  std::map<std::string, std::string> env;
  std::string user;
  std::string group;
  // user/group resolved when the file was loaded (resolve_worker_ids), never again per spawn:
  // what the workers are switched to. Unset: they keep the master's identity.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::vector<gid_t> groups;
  std::map<std::string, std::string> account_env;  // HOME, USER, LOGNAME, SHELL of `uid`
  ReadyMode ready = ReadyMode::automatic;
  InheritBind inherit_bind = InheritBind::automatic;
  Duration ready_timeout = std::chrono::seconds(30);
  // reuseport: a worker whose socket holds connections it does not take for this long gets no
  // new ones until it takes them again; 0 = off.
  Duration stall_after{200};
  Duration heartbeat_timeout{0};
  Duration shutdown_timeout = std::chrono::seconds(30);
  std::uint64_t max_memory = 0;  // 0 = off
  bool max_memory_auto = false;  // a share of the memory limit per worker (the daemon derives it)
  Duration max_lifetime{0};
  bool cpu_affinity = false;
  std::uint64_t rlimit_nofile = 0;
  OutputMode stdout_mode = OutputMode::log;
  OutputMode stderr_mode = OutputMode::log;
  bool operator==(const WorkerConfig&) const = default;
};

struct RestartConfig {
  Duration delay{100};
  Duration max_delay = std::chrono::seconds(30);
  Duration min_uptime = std::chrono::seconds(1);
  unsigned burst = 20;  // runtime exits per second in one slot before a respawn waits `delay`
  unsigned max_failures = 0;
  bool exit_on_failed = false;
  bool operator==(const RestartConfig&) const = default;
};

// `reload.batch`: either a count of workers or a percentage of the worker count.
struct BatchSize {
  unsigned value = 1;
  bool percent = false;
  bool operator==(const BatchSize&) const = default;
};

struct ReloadConfig {
  BatchSize batch;
  bool operator==(const ReloadConfig&) const = default;
};

struct ControlConfig {
  std::string socket;  // "" = the default for the running uid (see default_control_socket)
  unsigned mode = 0600;
  std::string group;
  bool operator==(const ControlConfig&) const = default;
};

struct IpcConfig {
  std::uint64_t max_message = std::uint64_t{1024} * 1024;
  bool operator==(const IpcConfig&) const = default;
};

enum class LogLevel { trace, debug, info, warn, error };
enum class LogFormat { text, json, journal };

struct LogConfig {
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
  bool format_set = false;  // false ("auto" in YAML): journal when JOURNAL_STREAM is set, else text
  std::string file;
  unsigned worker_lines = 1000;  // captured lines kept per slot for `forkctl logs` (1 MiB cap)
  std::string audit;  // "" = the main log; else a file of its own. Written whatever the level.
  bool operator==(const LogConfig&) const = default;
};

struct MetricsConfig {
  std::string listen;
  bool operator==(const MetricsConfig&) const = default;
};

struct StopConfig {
  // On SIGTERM: /readyz answers 503 at once and workers serve on this long before the drain,
  // so a load balancer takes the instance out before anything is refused. 0 = drain at once.
  Duration delay{0};
  bool operator==(const StopConfig&) const = default;
};

// The most workers forkd runs: the bound of `workers`, `reload.batch`, scale (signals and
// forkctl) and of the worker ids a control request may name (slots are 0..kMaxWorkers-1).
inline constexpr unsigned kMaxWorkers = 4096;

struct Config {
  std::string source;    // the file it came from, or "<embedded default>"
  unsigned workers = 0;  // 0 = auto (resolved by the daemon: usable CPUs)
  std::vector<ListenConfig> listen;
  WorkerConfig worker;
  RestartConfig restart;
  ReloadConfig reload;
  ControlConfig control;
  IpcConfig ipc;
  LogConfig log;
  std::string pidfile;
  MetricsConfig metrics;
  StopConfig stop;
  bool operator==(const Config&) const = default;
};

// One problem found in a config file; `line`/`column` are 1-based, 0 when unknown.
struct ConfigIssue {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  // "FILE:LINE:COL: MESSAGE" (or "FILE: MESSAGE" without a position).
  [[nodiscard]] std::string to_string() const;
};

// Thrown by the loaders; carries every problem found, not only the first.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  [[nodiscard]] const std::vector<ConfigIssue>& issues() const noexcept { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

// What the loader checks against that lives outside the file: the built-in apps this build
// has (worker.app must name one of them) and the identity of the master that will switch the
// workers to worker.user/group.
struct LoadOptions {
  std::vector<std::string> builtin_apps{"http-hello"};
  std::optional<ProcessIdentity> master;  // unset: this process's effective uid and gid
};

// Loads and validates a YAML file. Throws ConfigError naming file:line:col for each problem
// (also for an unreadable file: the path and errno text).
[[nodiscard]] Config load_config_file(const std::string& path, const LoadOptions& options = {});
// Same for text already in memory; `source` names it in messages.
[[nodiscard]] Config load_config_string(const std::string& yaml, const std::string& source,
                                        const LoadOptions& options = {});
// The embedded default: listen 127.0.0.1:8080, workers auto, app http-hello.
[[nodiscard]] Config default_config();
// The effective configuration as YAML, every key present (SPEC --print-config). Round-trips:
// load_config_string(to_yaml(c), s) == c apart from `source`.
[[nodiscard]] std::string to_yaml(const Config& config);

// When a changed key takes effect in a running master.
enum class KeyEffect {
  on_reload,                 // the next reload (SIGHUP, forkctl reload) applies it
  after_restart_or_upgrade,  // the master itself holds it: a restart or hot upgrade applies it
  after_restart,             // only a master started anew applies it
};

// One key of the file, as the table that loads and prints the configuration lists it.
struct ConfigKey {
  std::string path;      // "workers", "worker.ready", "listen.backlog" (a key of a listen entry)
  bool section = false;  // a mapping of keys of its own: "worker", "restart", ...
  KeyEffect effect = KeyEffect::on_reload;
};
// Every key, in the order to_yaml prints them: a section is followed by its keys.
[[nodiscard]] const std::vector<ConfigKey>& config_keys();
// One key of `config` as to_yaml prints it, alone and unindented ("ready: auto\n"; a key printed
// over several lines, such as worker.env, with its lines): what the reload diff compares. ""
// for a section, a key of a listen entry, or a key to_yaml leaves out.
[[nodiscard]] std::string print_config_key(const Config& config, const ConfigKey& key);
// The key a dotted path printed by to_yaml belongs to ("worker.env.PATH" is "worker.env"),
// nullptr if none.
[[nodiscard]] const ConfigKey* find_config_key(std::string_view path);

// One listen address as written in `listen` or `metrics.listen`: "host:port" (IPv4 literal,
// "*" = 0.0.0.0, "localhost" = 127.0.0.1), "[v6]:port" or "unix:PATH". Fills address, kind,
// host (canonical literal), port and path; leaves name/backlog/reuseport/mode at defaults.
// `error` receives the reason on failure.
[[nodiscard]] std::optional<ListenConfig> try_parse_listen_address(std::string_view text,
                                                                   std::string& error);
// Same, throwing std::invalid_argument.
[[nodiscard]] ListenConfig parse_listen_address(std::string_view text);

// The spellings used in the YAML file (and in status output): "auto", "inherit", "warn", ...
[[nodiscard]] std::string_view config_name(AddressKind kind) noexcept;
[[nodiscard]] std::string_view config_name(ReadyMode mode) noexcept;
[[nodiscard]] std::string_view config_name(InheritBind mode) noexcept;
[[nodiscard]] std::string_view config_name(OutputMode mode) noexcept;
[[nodiscard]] std::string_view config_name(LogLevel level) noexcept;
[[nodiscard]] std::string_view config_name(LogFormat format) noexcept;
// For `--log-level LEVEL`: trace | debug | info | warn | error, nullopt otherwise.
[[nodiscard]] std::optional<LogLevel> parse_log_level(std::string_view text) noexcept;

}  // namespace forkd::common
