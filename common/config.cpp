#include "common/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <optional>
#include <sstream>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "common/fd.hpp"
#include "common/safe_open.hpp"
#include "common/units.hpp"
#include "common/unix_socket.hpp"
#include "common/worker_identity.hpp"
#include "common/worker_program.hpp"

namespace forkd::common {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kEmbeddedSource = "<embedded default>";
constexpr std::size_t kMaxFileSize = std::size_t{16} << 20;
// Far beyond any sensible timeout, yet small enough that deadline arithmetic in nanoseconds
// (steady_clock) cannot overflow.
constexpr Duration kMaxDuration = std::chrono::hours(24 * 365 * 100);
constexpr std::size_t kMaxListenNameLength = 255;  // systemd's limit for FileDescriptorName
constexpr std::int64_t kMaxRestartFailures = 1'000'000;
constexpr std::int64_t kMaxRestartBurst = 1'000'000;

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};
constexpr std::array<EnumName<ReadyMode>, 5> kReadyModes{{{"auto", ReadyMode::automatic},
                                                          {"message", ReadyMode::message},
                                                          {"notify", ReadyMode::notify},
                                                          {"listening", ReadyMode::listening},
                                                          {"started", ReadyMode::started}}};
constexpr std::array<EnumName<InheritBind>, 3> kInheritBinds{
    {{"auto", InheritBind::automatic}, {"on", InheritBind::on}, {"off", InheritBind::off}}};
constexpr std::array<EnumName<OutputMode>, 3> kOutputModes{
    {{"log", OutputMode::log}, {"inherit", OutputMode::inherit}, {"null", OutputMode::null}}};
constexpr std::array<EnumName<LogLevel>, 5> kLogLevels{{{"trace", LogLevel::trace},
                                                        {"debug", LogLevel::debug},
                                                        {"info", LogLevel::info},
                                                        {"warn", LogLevel::warn},
                                                        {"error", LogLevel::error}}};
constexpr std::array<EnumName<LogFormat>, 3> kLogFormats{
    {{"text", LogFormat::text}, {"json", LogFormat::json}, {"journal", LogFormat::journal}}};
// log.format "auto" is the unset state (format_set = false), so to_yaml can print it.
constexpr std::string_view kAutoFormat = "auto";

template <typename E, std::size_t N>
std::string_view name_in(const std::array<EnumName<E>, N>& table, E value) noexcept {
  for (const auto& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

std::string join_path(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

std::string join_names(std::span<const std::string_view> names, std::string_view last_sep) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += (i + 1 == names.size()) ? last_sep : std::string_view(", ");
    out += names[i];
  }
  return out;
}

// Optimal string alignment distance: a swapped pair of letters ("wrokers") is one edit.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The candidate a typo most likely meant: within a couple of edits (more for long words), or
// a shortened/extended form ("heartbeat" for "heartbeat_timeout").
std::optional<std::string_view> closest(std::string_view word,
                                        std::span<const std::string_view> candidates) {
  const std::string lower = lowercase(word);
  std::optional<std::string_view> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (std::string_view candidate : candidates) {
    const std::size_t distance = edit_distance(lower, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  const std::size_t allowed = lower.size() <= 3 ? 1 : (lower.size() >= 10 ? 3 : 2);
  if (best && best_distance <= allowed) return best;
  if (lower.size() >= 4) {
    for (std::string_view candidate : candidates) {
      if (candidate.starts_with(lower) || std::string_view(lower).starts_with(candidate)) {
        return candidate;
      }
    }
  }
  return std::nullopt;
}

std::optional<std::int64_t> parse_integer(std::string_view text) {
  std::size_t pos = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) pos = 1;
  if (pos == text.size()) return std::nullopt;
  std::int64_t value = 0;
  for (; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

std::optional<bool> parse_bool(std::string_view text) {
  // YAML 1.1 spellings too, as yaml-cpp and most operators' muscle memory accept them.
  static constexpr std::array<std::string_view, 3> kTrue{"true", "yes", "on"};
  static constexpr std::array<std::string_view, 3> kFalse{"false", "no", "off"};
  const std::string lower = lowercase(text);
  std::string upper = lower;
  for (char& c : upper) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  const std::string title =
      upper.substr(0, 1) + lower.substr(std::min<std::size_t>(1, lower.size()));
  if (text != lower && text != upper && text != title) return std::nullopt;
  if (std::find(kTrue.begin(), kTrue.end(), lower) != kTrue.end()) return true;
  if (std::find(kFalse.begin(), kFalse.end(), lower) != kFalse.end()) return false;
  return std::nullopt;
}

// "0660", "660" or "0o660": the octal digits of a permission mode.
std::optional<unsigned> parse_octal(std::string_view text) {
  if (text.starts_with("0o") || text.starts_with("0O")) text.remove_prefix(2);
  if (text.empty() || text.size() > 8) return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    value = value * 8 + static_cast<unsigned>(c - '0');
  }
  return value;
}

std::string format_mode(unsigned mode) {
  return fmt::format("{:04o}", mode);
}

bool name_char_ok(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

// control.group only has to exist; worker.user/group are resolved by resolve_worker_ids.
bool group_exists(const std::string& name) {
  std::string error;
  return lookup_group(name, error).has_value();
}

// A value and where to point at it: the value's own position, or its key's when the value
// is empty (yaml-cpp places an empty value at the next token, often on another line).
struct Field {
  YAML::Node value;
  YAML::Mark mark;
  YAML::Mark key_mark;
};
using Fields = std::map<std::string, Field, std::less<>>;

bool has_position(const YAML::Mark& mark) {
  return mark.line >= 0 && mark.column >= 0;
}

const Field* find(const Fields& fields, std::string_view key) {
  const auto it = fields.find(key);
  return it == fields.end() ? nullptr : &it->second;
}

// ---- printing: what to_yaml writes for a value --------------------------------------------

bool is_yaml_keyword(std::string_view text) {
  static constexpr std::array<std::string_view, 9> kKeywords{"true", "false", "yes", "no",  "on",
                                                             "off",  "y",     "n",   "null"};
  const std::string lower = lowercase(text);
  return std::find(kKeywords.begin(), kKeywords.end(), lower) != kKeywords.end();
}

// Plain when unmistakably a string to every YAML reader, double-quoted otherwise.
std::string yaml_string(std::string_view text) {
  bool plain = !text.empty() && !is_yaml_keyword(text) && text.back() != ':';
  if (plain) {
    const char first = text.front();
    plain = (first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z') || first == '/' ||
            first == '_';
  }
  for (std::size_t i = 0; plain && i < text.size(); ++i) {
    const char c = text[i];
    plain = name_char_ok(c) || c == '/' || c == '@' || c == '+' || c == ':';
  }
  if (plain) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string yaml_bool(bool value) {
  return value ? "true" : "false";
}

class YamlWriter {
 public:
  void section(int indent, std::string_view key) {
    out_ += std::string(static_cast<std::size_t>(indent), ' ') + std::string(key) + ":\n";
  }
  void line(int indent, std::string_view key, std::string_view value) {
    out_ += std::string(static_cast<std::size_t>(indent), ' ') + std::string(key) + ": " +
            std::string(value) + "\n";
  }
  [[nodiscard]] std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Loader;

// One row of the key table: a key, how it is read, how it is printed and when a change to it
// takes effect. T is what the row reads into: the Config, or one `listen` entry.
template <typename T>
struct KeyRow {
  std::string_view section;  // "" = the top level
  std::string_view name;
  KeyEffect effect = KeyEffect::on_reload;
  // Reads the value into `target`; false when it reported a problem. `path` is the dotted key
  // messages name ("worker.ready", "listen[1].backlog").
  bool (*load)(Loader& loader, const Field& field, const std::string& path, T& target) = nullptr;
  // The value as to_yaml prints it after "name: ".
  std::string (*value)(const T& target) = nullptr;
  // Instead of `value`: for a key printed over several lines, or left out (app when command is
  // set, an unset listen mode).
  void (*print)(YamlWriter& out, int indent, std::string_view name, const T& target) = nullptr;
};
using ConfigRow = KeyRow<Config>;
using ListenRow = KeyRow<ListenConfig>;

// A section read through the table: its fields, and the keys whose values were refused.
struct SectionFields {
  Fields fields;
  std::vector<std::string_view> failed;
  [[nodiscard]] bool ok(std::string_view key) const {
    return std::find(failed.begin(), failed.end(), key) == failed.end();
  }
};

class Loader {
 public:
  Loader(const std::string& text, std::string source, const LoadOptions& options)
      : text_(text), source_(std::move(source)), options_(options) {}

  Config load();

  // What the rows of the key table read with; each reports its own problem and returns
  // nullopt (or false) then.
  void report(const YAML::Mark& mark, std::string_view path, const std::string& message);
  [[nodiscard]] std::string describe(const Field& field) const;
  [[nodiscard]] std::string null_spelling(const YAML::Node& node) const;
  bool expect_map(const Field& field, std::string_view path);
  bool expect_scalar(const Field& field, std::string_view path, std::string_view expected);
  std::optional<std::string> read_string(const Field& field, std::string_view path);
  std::optional<bool> read_bool(const Field& field, std::string_view path);
  std::optional<std::int64_t> read_integer(const Field& field, std::string_view path,
                                           std::int64_t low, std::int64_t high,
                                           std::string_view range);
  std::optional<Duration> read_duration(const Field& field, std::string_view path);
  // `also` names a word the key accepts besides a size ("auto"), for the error message.
  std::optional<std::uint64_t> read_size(const Field& field, std::string_view path,
                                         std::string_view also = {});
  std::optional<unsigned> read_mode(const Field& field, std::string_view path);
  template <typename E, std::size_t N>
  std::optional<E> read_enum(const Field& field, std::string_view path,
                             const std::array<EnumName<E>, N>& table);
  [[nodiscard]] const LoadOptions& options() const { return options_; }

  // The keys with a structure of their own, which their rows hand over to.
  bool load_workers(const Field& field, Config& config);
  bool load_listen(const Field& field, Config& config);
  bool load_app(const Field& field, WorkerConfig& worker);
  bool load_command(const Field& field, WorkerConfig& worker);
  bool load_env(const Field& field, WorkerConfig& worker);
  // A mapping of keys: its rows of the table, in order. nullopt when the section is empty
  // or not a mapping (that is reported).
  std::optional<SectionFields> load_section(const Field& field, std::string_view section,
                                            Config& config);
  // What spans several keys of a section, once its keys are read.
  void check_worker(const Fields& fields, WorkerConfig& worker);
  void check_restart(const SectionFields& section, const RestartConfig& restart);

 private:
  Fields read_map(const Field& field, std::string_view path,
                  std::optional<std::span<const std::string_view>> known);
  std::optional<ListenConfig> load_listen_entry(const Field& field, const std::string& path,
                                                YAML::Mark& name_mark, bool& named);
  void check_command(const Field& field, const WorkerConfig& worker);

  const std::string& text_;
  std::string source_;
  const LoadOptions& options_;
  std::vector<ConfigIssue> issues_;
};

void print_section(YamlWriter& out, int indent, std::string_view name, const Config& config);
void print_listen(YamlWriter& out, int indent, std::string_view name, const Config& config);
void print_env(YamlWriter& out, int indent, std::string_view name, const Config& config);

// Keeps a value that was read; false when there was none (its reader reported why).
template <typename V, typename Target>
bool store(const std::optional<V>& value, Target& target) {
  if (value) target = static_cast<Target>(*value);
  return value.has_value();
}

// A positive duration: a timeout of 0 would fire at once.
std::optional<Duration> read_positive_duration(Loader& l, const Field& f, const std::string& p) {
  auto value = l.read_duration(f, p);
  if (value && *value <= Duration::zero()) {
    l.report(f.mark, p, "must be more than 0");
    return std::nullopt;
  }
  return value;
}

// `stdout: null` is the YAML null, not an empty value: read the spelling.
bool load_output(Loader& l, const Field& f, const std::string& p, OutputMode& target) {
  if (f.value.IsNull() && !l.null_spelling(f.value).empty()) {
    target = OutputMode::null;
    return true;
  }
  return store(l.read_enum(f, p, kOutputModes), target);
}

constexpr KeyEffect kOnReload = KeyEffect::on_reload;
// The running master itself holds these; a hot upgrade (SIGUSR2) or a restart applies them.
constexpr KeyEffect kRestartOrUpgrade = KeyEffect::after_restart_or_upgrade;
constexpr KeyEffect kRestart = KeyEffect::after_restart;

// Every key of the file, in SPEC order, which is also the order to_yaml prints. A section
// (worker, restart, ...) is followed by its own keys. Adding a key means a row here, a line in
// etc/forkd.yaml and a paragraph in forkd.yaml(5); tests/unit/config_keys_test.cpp checks both.
// Columns: section, name, effect, load, value (printed), print (instead of value).
constexpr auto kConfigRows =
    std::to_array<ConfigRow>(
        {
            {"", "workers", kOnReload,
             [](Loader& l, const Field& f, const std::string&, Config& c) {
               return l.load_workers(f, c);
             },
             [](const Config& c) {
               return c.workers == 0 ? std::string("auto") : std::to_string(c.workers);
             }},
            {"", "listen", kOnReload,
             [](Loader& l, const Field& f, const std::string&, Config& c) {
               return l.load_listen(f, c);
             },
             nullptr, print_listen},

            {"", "worker", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto section = l.load_section(f, p, c);
               if (section) l.check_worker(section->fields, c.worker);
               return section.has_value();
             },
             nullptr, print_section},
            {"worker", "app", kOnReload,
             [](Loader& l, const Field& f, const std::string&, Config& c) {
               return l.load_app(f, c.worker);
             },
             nullptr,
             [](YamlWriter& out, int indent, std::string_view name, const Config& c) {
               if (c.worker.command.empty() && c.worker.shell.empty())
                 out.line(indent, name, yaml_string(c.worker.app));
             }},
            {"worker", "command", kOnReload,
             [](Loader& l, const Field& f, const std::string&, Config& c) {
               return l.load_command(f, c.worker);
             },
             nullptr,
             [](YamlWriter& out, int indent, std::string_view name, const Config& c) {
               if (c.worker.command.empty()) return;
               std::string argv = "[";
               for (std::size_t i = 0; i < c.worker.command.size(); ++i) {
                 if (i > 0) argv += ", ";
                 argv += yaml_string(c.worker.command[i]);
               }
               out.line(indent, name, argv + "]");
             }},
            {"worker", "shell", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto shell = l.read_string(f, p);
               if (!shell) return false;
               if (shell->empty()) {
                 l.report(f.mark, p, "must not be empty");
                 return false;
               }
               c.worker.shell = *shell;
               c.worker.app.clear();
               return true;
             },
             nullptr,
             [](YamlWriter& out, int indent, std::string_view name, const Config& c) {
               if (c.worker.command.empty() && !c.worker.shell.empty())
                 out.line(indent, name, yaml_string(c.worker.shell));
             }},
            {"worker", "cwd", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto cwd = l.read_string(f, p);
               if (!cwd) return false;
               c.worker.cwd = *cwd;
               struct stat info {};
               if (cwd->empty()) return true;  // "" = the master's working directory
               if (::stat(cwd->c_str(), &info) != 0) {
                 l.report(f.mark, p, quote(*cwd) + ": " + errno_text(errno));
                 return false;
               }
               if (!S_ISDIR(info.st_mode)) {
                 l.report(f.mark, p, quote(*cwd) + ": " + errno_text(ENOTDIR));
                 return false;
               }
               return true;
             },
             [](const Config& c) { return yaml_string(c.worker.cwd); }},
            {"worker", "env", kOnReload,
             [](Loader& l, const Field& f, const std::string&, Config& c) {
               return l.load_env(f, c.worker);
             },
             nullptr, print_env},
            // Resolved to ids by check_worker once both are read.
            {"worker", "user", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_string(f, p), c.worker.user);
             },
             [](const Config& c) { return yaml_string(c.worker.user); }},
            {"worker", "group", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_string(f, p), c.worker.group);
             },
             [](const Config& c) { return yaml_string(c.worker.group); }},
            {"worker", "ready", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_enum(f, p, kReadyModes), c.worker.ready);
             },
             [](const Config& c) { return std::string(config_name(c.worker.ready)); }},
            {"worker", "inherit_bind", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_enum(f, p, kInheritBinds), c.worker.inherit_bind);
             },
             [](const Config& c) { return std::string(config_name(c.worker.inherit_bind)); }},
            {"worker", "ready_timeout", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(read_positive_duration(l, f, p), c.worker.ready_timeout);
             },
             [](const Config& c) { return format_duration(c.worker.ready_timeout); }},
            {"worker", "stall_after", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto value = l.read_duration(f, p);
               if (!value) return false;
               if (*value != Duration::zero() && *value < 10ms) {
                 l.report(f.mark, p,
                          f.value.Scalar() + " is too short (0 = off, or at least 10ms)");
                 return false;
               }
               c.worker.stall_after = *value;
               return true;
             },
             [](const Config& c) { return format_duration(c.worker.stall_after); }},
            {"worker", "heartbeat_timeout", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto value = l.read_duration(f, p);
               if (!value) return false;
               if (*value != Duration::zero() && *value < 100ms) {
                 l.report(f.mark, p,
                          f.value.Scalar() + " is too short (0 = off, or at least 100ms)");
                 return false;
               }
               c.worker.heartbeat_timeout = *value;
               return true;
             },
             [](const Config& c) { return format_duration(c.worker.heartbeat_timeout); }},
            {"worker", "shutdown_timeout", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(read_positive_duration(l, f, p), c.worker.shutdown_timeout);
             },
             [](const Config& c) { return format_duration(c.worker.shutdown_timeout); }},
            {"worker", "max_memory", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               if (f.value.IsScalar() && f.value.Scalar() == "auto") {
                 c.worker.max_memory_auto = true;
                 return true;
               }
               auto value = l.read_size(f, p, "auto");
               if (!value) return false;
               if (*value != 0 && *value < (std::uint64_t{1} << 20)) {
                 l.report(f.mark, p,
                          f.value.Scalar() + " is too small (0 = no limit, or at least 1MiB)");
                 return false;
               }
               c.worker.max_memory = *value;
               return true;
             },
             [](const Config& c) {
               return c.worker.max_memory_auto ? std::string("auto")
                                               : format_size(c.worker.max_memory);
             }},
            {"worker", "max_lifetime", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto value = l.read_duration(f, p);
               if (!value) return false;
               if (*value != Duration::zero() && *value < 1s) {
                 l.report(f.mark, p,
                          f.value.Scalar() + " is too short (0 = no limit, or at least 1s)");
                 return false;
               }
               c.worker.max_lifetime = *value;
               return true;
             },
             [](const Config& c) { return format_duration(c.worker.max_lifetime); }},
            {"worker", "cpu_affinity", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_bool(f, p), c.worker.cpu_affinity);
             },
             [](const Config& c) { return yaml_bool(c.worker.cpu_affinity); }},
            {"worker", "rlimit_nofile", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               constexpr std::string_view kRange = "0 = inherit, or 16..1048576";
               auto value = l.read_integer(f, p, 0, 1'048'576, kRange);
               if (!value) return false;
               if (*value != 0 && *value < 16) {
                 l.report(f.mark, p,
                          f.value.Scalar() + " is out of range (" + std::string(kRange) + ")");
                 return false;
               }
               c.worker.rlimit_nofile = static_cast<std::uint64_t>(*value);
               return true;
             },
             [](const Config& c) { return std::to_string(c.worker.rlimit_nofile); }},
            {"worker", "stdout", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return load_output(l, f, p, c.worker.stdout_mode);
             },
             [](const Config& c) { return std::string(config_name(c.worker.stdout_mode)); }},
            {"worker", "stderr", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return load_output(l, f, p, c.worker.stderr_mode);
             },
             [](const Config& c) { return std::string(config_name(c.worker.stderr_mode)); }},

            {"", "restart", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto section = l.load_section(f, p, c);
               if (section) l.check_restart(*section, c.restart);
               return section.has_value();
             },
             nullptr, print_section},
            {"restart", "delay", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_duration(f, p), c.restart.delay);
             },
             [](const Config& c) { return format_duration(c.restart.delay); }},
            {"restart", "max_delay", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_duration(f, p), c.restart.max_delay);
             },
             [](const Config& c) { return format_duration(c.restart.max_delay); }},
            {"restart", "min_uptime", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_duration(f, p), c.restart.min_uptime);
             },
             [](const Config& c) { return format_duration(c.restart.min_uptime); }},
            {"restart", "burst", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(
                   l.read_integer(f, p, 0, kMaxRestartBurst, "0 = no brake, or up to 1000000"),
                   c.restart.burst);
             },
             [](const Config& c) { return std::to_string(c.restart.burst); }},
            {"restart", "max_failures", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_integer(f, p, 0, kMaxRestartFailures,
                                           "0 = never give up, or up to 1000000"),
                            c.restart.max_failures);
             },
             [](const Config& c) { return std::to_string(c.restart.max_failures); }},
            {"restart", "exit_on_failed", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_bool(f, p), c.restart.exit_on_failed);
             },
             [](const Config& c) { return yaml_bool(c.restart.exit_on_failed); }},

            {"", "reload", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return l.load_section(f, p, c).has_value();
             },
             nullptr, print_section},
            {"reload", "batch", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               const std::string expected = "a number of workers (1.." +
                                            std::to_string(kMaxWorkers) +
                                            ") or a percentage like 25%";
               if (!l.expect_scalar(f, p, expected)) return false;
               std::string_view text = f.value.Scalar();
               const bool percent = text.ends_with('%');
               if (percent) text.remove_suffix(1);
               const auto value = parse_integer(text);
               if (!value) {
                 l.report(f.mark, p, "expected " + expected + ", got " + l.describe(f));
                 return false;
               }
               const std::int64_t high = percent ? 100 : std::int64_t{kMaxWorkers};
               if (*value < 1 || *value > high) {
                 l.report(
                     f.mark, p,
                     f.value.Scalar() + " is out of range (" +
                         (percent ? std::string("1%..100%") : "1.." + std::to_string(kMaxWorkers)) +
                         ")");
                 return false;
               }
               c.reload.batch = BatchSize{static_cast<unsigned>(*value), percent};
               return true;
             },
             [](const Config& c) {
               const BatchSize& batch = c.reload.batch;
               return batch.percent ? "\"" + std::to_string(batch.value) + "%\""
                                    : std::to_string(batch.value);
             }},

            {"", "control", kRestartOrUpgrade,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return l.load_section(f, p, c).has_value();
             },
             nullptr, print_section},
            {"control", "socket", kRestartOrUpgrade,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto socket = l.read_string(f, p);
               if (!socket) return false;
               if (socket->size() > kUnixPathMax) {
                 l.report(f.mark, p,
                          "path is too long for a unix socket (" + std::to_string(socket->size()) +
                              " bytes, at most " + std::to_string(kUnixPathMax) + ")");
                 return false;
               }
               c.control.socket = *socket;
               return true;
             },
             [](const Config& c) { return yaml_string(c.control.socket); }},
            {"control", "mode", kRestartOrUpgrade,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_mode(f, p), c.control.mode);
             },
             [](const Config& c) { return "\"" + format_mode(c.control.mode) + "\""; }},
            {"control", "group", kRestartOrUpgrade,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto group = l.read_string(f, p);
               if (!group) return false;
               c.control.group = *group;
               if (!group->empty() && !group_exists(*group)) {
                 l.report(f.mark, p, "no such group " + quote(*group));
                 return false;
               }
               return true;
             },
             [](const Config& c) { return yaml_string(c.control.group); }},

            {"", "ipc", kOnReload,
             [](Loader& l, const Field& f, const std::string& p,
                Config& c) { return l.load_section(f, p, c).has_value(); },
             nullptr, print_section},
            {"ipc", "max_message", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto value = l.read_size(f, p);
               if (!value) return false;
               if (*value < (std::uint64_t{1} << 10) || *value > (std::uint64_t{1} << 30)) {
                 l.report(f.mark, p, f.value.Scalar() + " is out of range (1KiB..1GiB)");
                 return false;
               }
               c.ipc.max_message = *value;
               return true;
             },
             [](const Config& c) { return format_size(c.ipc.max_message); }},

            {"", "log", kOnReload,
             [](Loader& l, const Field& f, const std::string& p,
                Config& c) { return l.load_section(f, p, c).has_value(); },
             nullptr, print_section},
            {"log", "level", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_enum(f, p, kLogLevels), c.log.level);
             },
             [](const Config& c) { return std::string(config_name(c.log.level)); }},
            {"log", "format", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               if (f.value.IsScalar() && f.value.Scalar() == kAutoFormat) {
                 c.log.format = LogFormat::text;
                 c.log.format_set = false;
                 return true;
               }
               auto value = l.read_enum(f, p, kLogFormats);
               if (!value) return false;
               c.log.format = *value;
               c.log.format_set = true;
               return true;
             },
             [](const Config& c) {
               return std::string(c.log.format_set ? config_name(c.log.format) : kAutoFormat);
             }},
            {"log", "file", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_string(f, p), c.log.file);
             },
             [](const Config& c) { return yaml_string(c.log.file); }},
            {"log", "worker_lines", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_integer(f, p, 0, 100'000, "0 = keep none, or up to 100000"),
                            c.log.worker_lines);
             },
             [](const Config& c) { return std::to_string(c.log.worker_lines); }},
            {"log", "audit", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_string(f, p), c.log.audit);
             },
             [](const Config& c) { return yaml_string(c.log.audit); }},

            {"", "pidfile", kRestart,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_string(f, p), c.pidfile);
             },
             [](const Config& c) { return yaml_string(c.pidfile); }},

            {"", "metrics", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return l.load_section(f, p, c).has_value();
             },
             nullptr, print_section},
            {"metrics", "listen", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               auto listen = l.read_string(f, p);
               if (!listen) return false;
               if (!listen->empty()) {
                 std::string error;
                 auto parsed = try_parse_listen_address(*listen, error);
                 if (!parsed) {
                   l.report(f.mark, p, error);
                   return false;
                 }
                 if (parsed->kind == AddressKind::unix_path) {
                   l.report(f.mark, p, "expected host:port (TCP only), got " + quote(*listen));
                   return false;
                 }
               }
               c.metrics.listen = *listen;
               return true;
             },
             [](const Config& c) { return yaml_string(c.metrics.listen); }},

            {"", "stop", kOnReload,
             [](Loader& l, const Field& f, const std::string& p,
                Config& c) { return l.load_section(f, p, c).has_value(); },
             nullptr, print_section},
            {"stop", "delay", kOnReload,
             [](Loader& l, const Field& f, const std::string& p, Config& c) {
               return store(l.read_duration(f, p), c.stop.delay);
             },
             [](const Config& c) { return format_duration(c.stop.delay); }},
        });

// The keys of each `listen` entry given as a mapping. `address` comes first: it is required,
// and what the others accept depends on it (reuseport is for TCP, mode for unix sockets).
constexpr auto kListenRows = std::to_array<ListenRow>({
    {"listen", "address", kOnReload,
     [](Loader& l, const Field& f, const std::string& p, ListenConfig& listen) {
       if (!l.expect_scalar(f, p, "an address like 127.0.0.1:8080")) return false;
       std::string error;
       auto parsed = try_parse_listen_address(f.value.Scalar(), error);
       if (!parsed) {
         l.report(f.mark, p, error);
         return false;
       }
       listen = *std::move(parsed);
       return true;
     },
     [](const ListenConfig& listen) { return yaml_string(listen.address); }},
    {"listen", "name", kOnReload,
     [](Loader& l, const Field& f, const std::string& p, ListenConfig& listen) {
       auto name = l.read_string(f, p);
       if (!name) return false;
       listen.name = *name;
       if (name->empty()) {
         l.report(f.mark, p, "must not be empty");
         return false;
       }
       if (!std::all_of(name->begin(), name->end(), name_char_ok)) {
         // LISTEN_FDNAMES is colon-separated, so names are kept to a safe alphabet.
         l.report(f.mark, p, quote(*name) + " may only contain letters, digits, '_', '.' and '-'");
         return false;
       }
       if (name->size() > kMaxListenNameLength) {
         l.report(f.mark, p,
                  "is too long (at most " + std::to_string(kMaxListenNameLength) + " characters)");
         return false;
       }
       return true;
     },
     [](const ListenConfig& listen) { return yaml_string(listen.name); }},
    {"listen", "backlog", kOnReload,
     [](Loader& l, const Field& f, const std::string& p, ListenConfig& listen) {
       return store(l.read_integer(f, p, 1, 65535, "1..65535"), listen.backlog);
     },
     [](const ListenConfig& listen) { return std::to_string(listen.backlog); }},
    {"listen", "reuseport", kOnReload,
     [](Loader& l, const Field& f, const std::string& p, ListenConfig& listen) {
       auto value = l.read_bool(f, p);
       if (!value) return false;
       listen.reuseport = *value;
       if (*value && listen.kind == AddressKind::unix_path) {
         l.report(f.mark, p, "applies to TCP listeners only, not unix sockets");
         return false;
       }
       return true;
     },
     [](const ListenConfig& listen) { return yaml_bool(listen.reuseport); }},
    {"listen", "mode", kOnReload,
     [](Loader& l, const Field& f, const std::string& p, ListenConfig& listen) {
       auto value = l.read_mode(f, p);
       if (!value) return false;
       listen.mode = *value;
       if (listen.kind != AddressKind::unix_path) {
         l.report(f.mark, p, "applies to unix sockets only, not TCP listeners");
         return false;
       }
       return true;
     },
     nullptr,
     [](YamlWriter& out, int indent, std::string_view name, const ListenConfig& listen) {
       if (listen.mode) out.line(indent, name, "\"" + format_mode(*listen.mode) + "\"");
     }},
});

// A top-level key that is a mapping of keys of its own rows (worker, restart, ...).
bool is_section(std::string_view name) {
  return std::any_of(kConfigRows.begin(), kConfigRows.end(),
                     [&](const ConfigRow& row) { return row.section == name; });
}

// The keys read_map accepts in a section ("" = the top level, "listen" = a listen entry).
std::span<const std::string_view> key_names(std::string_view section) {
  static const auto names = [] {
    std::map<std::string_view, std::vector<std::string_view>, std::less<>> out;
    for (const ConfigRow& row : kConfigRows) out[row.section].push_back(row.name);
    for (const ListenRow& row : kListenRows) out[row.section].push_back(row.name);
    return out;
  }();
  const auto it = names.find(section);
  if (it == names.end()) return {};
  return it->second;
}

template <typename T>
void print_row(YamlWriter& out, int indent, std::string_view name, const KeyRow<T>& row,
               const T& target) {
  if (row.print != nullptr) {
    row.print(out, indent, name, target);
  } else {
    out.line(indent, name, row.value(target));
  }
}

void print_section(YamlWriter& out, int indent, std::string_view name, const Config& config) {
  out.section(indent, name);
  for (const ConfigRow& row : kConfigRows) {
    if (row.section == name) print_row(out, indent + 2, row.name, row, config);
  }
}

void print_listen(YamlWriter& out, int indent, std::string_view name, const Config& config) {
  out.section(indent, name);
  for (const ListenConfig& listen : config.listen) {
    // The first key opens the entry: "  - address: ...", the others line up under it.
    for (const ListenRow& row : kListenRows) {
      if (&row == &kListenRows.front()) {
        print_row(out, indent + 2, "- " + std::string(row.name), row, listen);
      } else {
        print_row(out, indent + 4, row.name, row, listen);
      }
    }
  }
}

void print_env(YamlWriter& out, int indent, std::string_view name, const Config& config) {
  if (config.worker.env.empty()) {
    out.line(indent, name, "{}");
    return;
  }
  out.section(indent, name);
  for (const auto& [variable, value] : config.worker.env) {
    out.line(indent + 2, yaml_string(variable), yaml_string(value));
  }
}

void Loader::report(const YAML::Mark& mark, std::string_view path, const std::string& message) {
  ConfigIssue issue;
  issue.file = source_;
  if (has_position(mark)) {
    issue.line = mark.line + 1;
    issue.column = mark.column + 1;
  }
  issue.message = path.empty() ? message : std::string(path) + ": " + message;
  issues_.push_back(std::move(issue));
}

// yaml-cpp turns `null`, `~` and an empty value alike into a Null node; the source text
// tells them apart, which matters for `stdout: null` and env values.
std::string Loader::null_spelling(const YAML::Node& node) const {
  const YAML::Mark mark = node.Mark();
  if (mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= text_.size()) return "";
  const std::string_view rest = std::string_view(text_).substr(static_cast<std::size_t>(mark.pos));
  if (rest.starts_with("~")) return "~";
  for (std::string_view word : {"null", "Null", "NULL"}) {
    if (rest.starts_with(word) &&
        (rest.size() == word.size() || !name_char_ok(rest[word.size()]))) {
      return std::string(word);
    }
  }
  return "";
}

std::string Loader::describe(const Field& field) const {
  switch (field.value.Type()) {
    case YAML::NodeType::Scalar:
      return quote(field.value.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null: {
      const std::string spelling = null_spelling(field.value);
      return spelling.empty() ? "nothing" : spelling;
    }
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

Fields Loader::read_map(const Field& field, std::string_view path,
                        std::optional<std::span<const std::string_view>> known) {
  Fields fields;
  for (const auto& pair : field.value) {
    const YAML::Node& key = pair.first;
    const YAML::Node& value = pair.second;
    if (!key.IsScalar()) {
      report(key.Mark(), path, "keys must be plain strings, got " + describe({key, {}, {}}));
      continue;
    }
    const std::string& name = key.Scalar();
    Field entry{value, value.IsNull() || !has_position(value.Mark()) ? key.Mark() : value.Mark(),
                key.Mark()};
    if (const Field* first = find(fields, name)) {
      std::string where;
      if (has_position(first->key_mark)) {
        where = " (first set at line " + std::to_string(first->key_mark.line + 1) + ")";
      }
      report(key.Mark(), path, "duplicate key " + quote(name) + where);
      continue;
    }
    if (known && std::find(known->begin(), known->end(), name) == known->end()) {
      std::string message = "unknown key " + quote(name);
      if (auto suggestion = closest(name, *known)) {
        message += " (did you mean " + quote(*suggestion) + "?)";
      } else {
        std::optional<std::string> elsewhere;
        for (const ConfigRow& row : kConfigRows) {
          if (row.section.empty() || row.section == path || row.name != name) continue;
          elsewhere = join_path(row.section, name);
          break;
        }
        if (elsewhere) {
          message += " (did you mean " + quote(*elsewhere) + "?)";
        } else {
          message += " (valid keys: " + join_names(*known, ", ") + ")";
        }
      }
      report(key.Mark(), path, message);
      continue;
    }
    fields.emplace(name, std::move(entry));
  }
  return fields;
}

bool Loader::expect_map(const Field& field, std::string_view path) {
  if (field.value.IsMap()) return true;
  report(field.mark, path, "expected a mapping of keys, got " + describe(field));
  return false;
}

bool Loader::expect_scalar(const Field& field, std::string_view path, std::string_view expected) {
  if (field.value.IsScalar()) return true;
  report(field.mark, path, "expected " + std::string(expected) + ", got " + describe(field));
  return false;
}

std::optional<std::string> Loader::read_string(const Field& field, std::string_view path) {
  if (field.value.IsNull()) return std::string();
  if (!expect_scalar(field, path, "a string")) return std::nullopt;
  return field.value.Scalar();
}

std::optional<bool> Loader::read_bool(const Field& field, std::string_view path) {
  if (!expect_scalar(field, path, "true or false")) return std::nullopt;
  auto value = parse_bool(field.value.Scalar());
  if (!value) report(field.mark, path, "expected true or false, got " + describe(field));
  return value;
}

std::optional<std::int64_t> Loader::read_integer(const Field& field, std::string_view path,
                                                 std::int64_t low, std::int64_t high,
                                                 std::string_view range) {
  const std::string expected = "an integer (" + std::string(range) + ")";
  if (!expect_scalar(field, path, expected)) return std::nullopt;
  const auto value = parse_integer(field.value.Scalar());
  if (!value) {
    report(field.mark, path, "expected " + expected + ", got " + describe(field));
    return std::nullopt;
  }
  if (*value < low || *value > high) {
    report(field.mark, path,
           field.value.Scalar() + " is out of range (" + std::string(range) + ")");
    return std::nullopt;
  }
  return value;
}

std::optional<Duration> Loader::read_duration(const Field& field, std::string_view path) {
  if (!expect_scalar(field, path, "a duration like 250ms, 30s, 5m or 24h")) return std::nullopt;
  std::string error;
  auto value = try_parse_duration(field.value.Scalar(), error);
  if (!value) {
    report(field.mark, path, error);
    return std::nullopt;
  }
  if (*value > kMaxDuration) {
    report(field.mark, path,
           field.value.Scalar() + " is too long (at most " + format_duration(kMaxDuration) + ")");
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint64_t> Loader::read_size(const Field& field, std::string_view path,
                                               std::string_view also) {
  const std::string expected = "a size like 64KiB, 512MiB or 1GiB" +
                               (also.empty() ? std::string() : ", or " + std::string(also));
  if (!expect_scalar(field, path, expected)) return std::nullopt;
  std::string error;
  auto value = try_parse_size(field.value.Scalar(), error);
  if (!value)
    report(field.mark, path, error + (also.empty() ? "" : " (or " + std::string(also) + ")"));
  return value;
}

std::optional<unsigned> Loader::read_mode(const Field& field, std::string_view path) {
  if (!expect_scalar(field, path, "an octal mode like \"0660\"")) return std::nullopt;
  const auto value = parse_octal(field.value.Scalar());
  if (!value) {
    report(field.mark, path, "expected an octal mode like \"0660\", got " + describe(field));
    return std::nullopt;
  }
  if (*value > 0777) {
    report(field.mark, path, describe(field) + " is out of range (at most 0777)");
    return std::nullopt;
  }
  return value;
}

template <typename E, std::size_t N>
std::optional<E> Loader::read_enum(const Field& field, std::string_view path,
                                   const std::array<EnumName<E>, N>& table) {
  std::array<std::string_view, N> names{};
  for (std::size_t i = 0; i < N; ++i) names[i] = table[i].name;
  const std::string valid = join_names(names, " or ");
  if (!expect_scalar(field, path, "one of " + valid)) return std::nullopt;
  const std::string& text = field.value.Scalar();
  for (const auto& entry : table) {
    if (entry.name == text) return entry.value;
  }
  std::string message = describe(field) + " is not one of " + valid;
  if (auto suggestion = closest(text, names)) {
    message += " (did you mean " + quote(*suggestion) + "?)";
  }
  report(field.mark, path, message);
  return std::nullopt;
}

namespace {

// Counts documents without building them; only the start of a second one matters.
class DocumentCounter final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2) second_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/,
                       YAML::anchor_t /*anchor*/, YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}
  [[nodiscard]] std::optional<YAML::Mark> second() const { return second_; }

 private:
  int documents_ = 0;
  std::optional<YAML::Mark> second_;
};

// What a document may expand to once aliases are followed: a few hundred kilobytes of aliases
// can stand for gigabytes of values (and of error messages quoting them). Written out, a config
// never needs more than the largest file we read, nor more nodes than 4096 listeners and a
// large env ever take.
constexpr std::size_t kMaxExpandedNodes = 200'000;

// The first node past the limits, walking the tree as the loader will (every alias again), and
// stopping there: the walk itself must not take the time the expansion would.
std::optional<std::string> expansion_problem(const YAML::Node& root, YAML::Mark& where) {
  std::size_t nodes = 0;
  std::size_t bytes = 0;
  std::vector<YAML::Node> pending{root};
  while (!pending.empty()) {
    const YAML::Node node = std::move(pending.back());
    pending.pop_back();
    if (++nodes > kMaxExpandedNodes) {
      where = node.Mark();
      return "the document expands to more than " + std::to_string(kMaxExpandedNodes) +
             " values once its aliases (*name) are followed; write the values out instead";
    }
    if (node.IsScalar()) {
      bytes += node.Scalar().size();
      if (bytes > kMaxFileSize) {
        where = node.Mark();
        return "the document expands to more than " + format_size(kMaxFileSize) +
               " of text once its aliases (*name) are followed; write the values out instead";
      }
    } else if (node.IsSequence()) {
      for (const YAML::Node& item : node) pending.push_back(item);
    } else if (node.IsMap()) {
      for (const auto& item : node) {
        pending.push_back(item.first);
        pending.push_back(item.second);
      }
    }
  }
  return std::nullopt;
}

std::optional<YAML::Mark> second_document(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  // At most two steps, whatever the input: the parser may never reach its end (see load()).
  for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
  }
  return counter.second();
}

}  // namespace

Config Loader::load() {
  Config config = default_config();
  config.source = source_;

  std::vector<YAML::Node> documents;
  try {
    // Never YAML::LoadAll: on input such as "," it reports empty documents forever without
    // consuming anything. Two parser steps tell whether there is a second document.
    std::optional<YAML::Mark> second = second_document(text_);
    documents.push_back(YAML::Load(text_));
    if (second) report(*second, "", "only one YAML document is allowed, found a second one");
  } catch (const YAML::Exception& error) {
    report(error.mark, "", error.msg);
    throw ConfigError(std::move(issues_));
  }
  if (documents.empty() || documents[0].IsNull()) {
    // An editor or cp truncates before it writes: a reload in that gap must not replace the
    // production config with the defaults.
    if (issues_.empty()) {
      report(YAML::Mark::null_mark(), "",
             "the file is empty or holds only comments; a config must set at least one key "
             "(run forkd without -c for the embedded default)");
    }
    throw ConfigError(std::move(issues_));
  }
  YAML::Mark where = YAML::Mark::null_mark();
  if (const auto problem = expansion_problem(documents[0], where)) {
    report(where, "", *problem);
    throw ConfigError(std::move(issues_));
  }
  const Field root{documents[0], documents[0].Mark(), documents[0].Mark()};
  if (!root.value.IsMap()) {
    report(root.mark, "",
           "the top level must be a mapping of keys like \"workers: auto\", got " + describe(root));
    throw ConfigError(std::move(issues_));
  }

  const Fields fields = read_map(root, "", key_names(""));
  for (const ConfigRow& row : kConfigRows) {
    if (!row.section.empty()) continue;
    if (const Field* f = find(fields, row.name)) row.load(*this, *f, std::string(row.name), config);
  }

  if (!issues_.empty()) {
    // Sections are checked in SPEC order; the operator reads the file top to bottom.
    std::stable_sort(issues_.begin(), issues_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    throw ConfigError(std::move(issues_));
  }
  return config;
}

std::optional<SectionFields> Loader::load_section(const Field& field, std::string_view section,
                                                  Config& config) {
  if (field.value.IsNull()) return std::nullopt;
  if (!expect_map(field, section)) return std::nullopt;
  SectionFields out{read_map(field, section, key_names(section)), {}};
  for (const ConfigRow& row : kConfigRows) {
    if (row.section != section) continue;
    const Field* f = find(out.fields, row.name);
    if (f != nullptr && !row.load(*this, *f, join_path(section, row.name), config)) {
      out.failed.push_back(row.name);
    }
  }
  return out;
}

bool Loader::load_workers(const Field& field, Config& config) {
  constexpr std::string_view kPath = "workers";
  const std::string expected = "an integer (1.." + std::to_string(kMaxWorkers) + ") or auto";
  if (!expect_scalar(field, kPath, expected)) return false;
  const std::string& text = field.value.Scalar();
  if (text == "auto") {
    config.workers = 0;
    return true;
  }
  const auto value = parse_integer(text);
  if (!value) {
    report(field.mark, kPath, "expected " + expected + ", got " + describe(field));
    return false;
  }
  if (*value < 1 || *value > kMaxWorkers) {
    report(field.mark, kPath,
           text + " is out of range (1.." + std::to_string(kMaxWorkers) + " or auto)");
    return false;
  }
  config.workers = static_cast<unsigned>(*value);
  return true;
}

bool Loader::load_listen(const Field& field, Config& config) {
  std::vector<Field> items;
  std::vector<std::string> paths;
  if (field.value.IsSequence()) {
    std::size_t index = 0;
    for (const auto& element : field.value) {
      const YAML::Mark mark = has_position(element.Mark()) ? element.Mark() : field.mark;
      // A sequence's iterator yields a Node that is also an (unused) key-value pair.
      items.push_back(Field{static_cast<const YAML::Node&>(element), mark, mark});
      paths.push_back("listen[" + std::to_string(index++) + "]");
    }
  } else if (field.value.IsScalar() || field.value.IsMap()) {
    items.push_back(field);
    paths.emplace_back("listen");
  }
  if (items.empty()) {
    report(field.mark, "listen", "needs at least one address, like 127.0.0.1:8080");
    return false;
  }

  struct Entry {
    ListenConfig listen;
    YAML::Mark mark;
    YAML::Mark name_mark;
    bool named = false;
    std::string path;
  };
  std::vector<Entry> entries;
  bool complete = true;
  for (std::size_t i = 0; i < items.size(); ++i) {
    Entry entry;
    entry.mark = items[i].mark;
    entry.path = paths[i];
    auto listen = load_listen_entry(items[i], paths[i], entry.name_mark, entry.named);
    if (!listen) {
      complete = false;
      continue;
    }
    entry.listen = std::move(*listen);
    // LISTEN_FDNAMES convention: unnamed sockets are named by their position.
    if (!entry.named) entry.listen.name = "listen" + std::to_string(i);
    entries.push_back(std::move(entry));
  }

  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    for (std::size_t j = 0; j < i; ++j) {
      const Entry& earlier = entries[j];
      if (earlier.listen.name == entry.listen.name) {
        report(entry.named ? entry.name_mark : entry.mark, entry.path,
               "name " + quote(entry.listen.name) + " is already used by " + earlier.path);
        break;
      }
    }
    for (std::size_t j = 0; j < i; ++j) {
      const ListenConfig& a = entries[j].listen;
      const ListenConfig& b = entry.listen;
      if (a.kind == b.kind && a.host == b.host && a.port == b.port && a.path == b.path) {
        report(entry.mark, entry.path,
               "address " + quote(b.address) + " is already listed as " + entries[j].path);
        break;
      }
    }
  }
  if (!complete) return false;
  config.listen.clear();
  for (Entry& entry : entries) config.listen.push_back(std::move(entry.listen));
  return true;
}

std::optional<ListenConfig> Loader::load_listen_entry(const Field& field, const std::string& path,
                                                      YAML::Mark& name_mark, bool& named) {
  std::string error;
  if (field.value.IsScalar()) {
    auto listen = try_parse_listen_address(field.value.Scalar(), error);
    if (!listen) report(field.mark, path, error);
    return listen;
  }
  if (!field.value.IsMap()) {
    report(field.mark, path,
           "expected an address like 127.0.0.1:8080 or a mapping with address:, got " +
               describe(field));
    return std::nullopt;
  }
  const std::size_t issues_before = issues_.size();
  const Fields fields = read_map(field, path, key_names("listen"));
  const ListenRow& address = kListenRows.front();
  if (find(fields, address.name) == nullptr) {
    // A misspelt "adress" was already reported with its suggestion; once is enough.
    if (issues_.size() == issues_before) {
      report(field.mark, path, "missing required key " + quote(address.name));
    }
    return std::nullopt;
  }
  ListenConfig listen;
  bool ok = true;
  for (const ListenRow& row : kListenRows) {
    const Field* f = find(fields, row.name);
    if (f == nullptr) continue;
    if (!row.load(*this, *f, join_path(path, row.name), listen)) {
      if (&row == &address) return std::nullopt;  // nothing else can be checked without it
      ok = false;
    }
  }
  if (const Field* f = find(fields, "name")) {
    name_mark = f->mark;
    named = true;
  }
  if (!ok) return std::nullopt;
  return listen;
}

bool Loader::load_app(const Field& field, WorkerConfig& worker) {
  auto app = read_string(field, "worker.app");
  if (!app) return false;
  const auto& apps = options_.builtin_apps;
  if (std::find(apps.begin(), apps.end(), *app) == apps.end()) {
    std::vector<std::string_view> names(apps.begin(), apps.end());
    std::string message = "unknown built-in app " + quote(*app);
    if (auto suggestion = closest(*app, names)) {
      message += " (did you mean " + quote(*suggestion) + "?)";
    }
    message += "; built-in apps: " + join_names(names, ", ");
    report(field.mark, "worker.app", message);
    return false;
  }
  worker.app = *app;
  return true;
}

bool Loader::load_command(const Field& field, WorkerConfig& worker) {
  if (!field.value.IsSequence() || field.value.size() == 0) {
    std::string message =
        "expected a non-empty list like [/usr/bin/node, server.js], got " + describe(field);
    if (field.value.IsScalar()) message += " (use worker.shell for a command line)";
    report(field.mark, "worker.command", message);
    return false;
  }
  std::vector<std::string> argv;
  std::size_t index = 0;
  for (const auto& element : field.value) {
    const std::string element_path = "worker.command[" + std::to_string(index++) + "]";
    const YAML::Mark mark = has_position(element.Mark()) ? element.Mark() : field.mark;
    if (!element.IsScalar()) {
      report(
          mark, element_path,
          "expected a string, got " + describe({static_cast<const YAML::Node&>(element), {}, {}}));
      continue;
    }
    argv.push_back(element.Scalar());
  }
  if (argv.size() != field.value.size()) return false;
  worker.command = std::move(argv);
  worker.app.clear();
  return true;
}

void Loader::check_worker(const Fields& fields, WorkerConfig& worker) {
  // The program to run: exactly one of app, command, shell.
  std::vector<std::pair<std::string_view, const Field*>> programs;
  for (std::string_view key : {"app", "command", "shell"}) {
    if (const Field* f = find(fields, key)) programs.emplace_back(key, f);
  }
  if (programs.size() > 1) {
    const auto last = std::max_element(programs.begin(), programs.end(), [](auto& a, auto& b) {
      return a.second->key_mark.pos < b.second->key_mark.pos;
    });
    std::vector<std::string_view> names;
    names.reserve(programs.size());
    for (const auto& program : programs) names.push_back(program.first);
    report(last->second->key_mark, "worker",
           "set only one of app, command and shell (found " + join_names(names, " and ") + ")");
  }
  // Once env is read: its PATH is where a bare program name is looked up.
  const Field* command = find(fields, "command");
  if (command != nullptr && !worker.command.empty()) check_command(*command, worker);

  if (!worker.user.empty() || !worker.group.empty()) {
    // Resolved here, once per load, so that no spawn asks the user database again.
    const ResolvedWorkerIds ids = resolve_worker_ids(
        worker.user, worker.group, options_.master.value_or(ProcessIdentity::of_this_process()));
    // An error names a key that was set: neither field can be missing then.
    const Field* user_field = find(fields, "user");
    const Field* group_field = find(fields, "group");
    if (!ids.user_error.empty() && user_field != nullptr) {
      report(user_field->mark, "worker.user", ids.user_error);
    }
    if (!ids.group_error.empty() && group_field != nullptr) {
      report(group_field->mark, "worker.group", ids.group_error);
    }
    worker.uid = ids.uid;
    worker.gid = ids.gid;
    worker.groups = ids.groups;
    worker.account_env = ids.account_env;
  }
}

bool Loader::load_env(const Field& field, WorkerConfig& worker) {
  if (field.value.IsNull()) return true;
  if (!expect_map(field, "worker.env")) return false;
  const Fields fields = read_map(field, "worker.env", std::nullopt);
  bool ok = true;
  for (const auto& [name, entry] : fields) {
    const std::string path = "worker.env." + name;
    if (name.empty() || name.find('=') != std::string::npos) {
      report(entry.key_mark, "worker.env",
             "variable name " + quote(name) + " must be non-empty and contain no '='");
      ok = false;
      continue;
    }
    if (entry.value.IsNull()) {
      // Any scalar is stored as written, so `X: null` is the text "null" and `X:` is "".
      worker.env[name] = null_spelling(entry.value);
    } else if (expect_scalar(entry, path, "a string")) {
      worker.env[name] = entry.value.Scalar();
    } else {
      ok = false;
    }
  }
  return ok;
}

void Loader::check_command(const Field& field, const WorkerConfig& worker) {
  // The same resolution as every spawn's: what passes here is what is exec'd.
  const WorkerProgram program = resolve_worker_program(worker);
  if (program.found()) return;
  const YAML::Mark mark = has_position(field.value[0].Mark()) ? field.value[0].Mark() : field.mark;
  report(mark, "worker.command", program.problem);
}

void Loader::check_restart(const SectionFields& section, const RestartConfig& restart) {
  const Field* delay = find(section.fields, "delay");
  const Field* max_delay = find(section.fields, "max_delay");
  if (!section.ok("delay") || !section.ok("max_delay") || restart.max_delay >= restart.delay) {
    return;
  }
  if (max_delay != nullptr) {
    report(max_delay->mark, "restart.max_delay",
           format_duration(restart.max_delay) + " is less than restart.delay (" +
               format_duration(restart.delay) + ")");
  } else if (delay != nullptr) {
    report(delay->mark, "restart.delay",
           format_duration(restart.delay) + " is more than restart.max_delay (" +
               format_duration(restart.max_delay) + "); raise max_delay too");
  }
}

}  // namespace

std::string ConfigIssue::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out + ": " + message;
}

namespace {
std::string join_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const ConfigIssue& issue : issues) {
    if (!out.empty()) out += '\n';
    out += issue.to_string();
  }
  return out.empty() ? std::string("invalid configuration") : out;
}
}  // namespace

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(join_issues(issues)), issues_(std::move(issues)) {}

Config load_config_string(const std::string& yaml, const std::string& source,
                          const LoadOptions& options) {
  Loader loader(yaml, source, options);
  return loader.load();
}

Config load_config_file(const std::string& path, const LoadOptions& options) {
  const auto fail = [&](const std::string& message) {
    return ConfigError({ConfigIssue{path, 0, 0, message}});
  };
  // O_NONBLOCK: a FIFO at the path must not hang the master (start-up or SIGHUP).
  std::string why;
  UniqueFd fd = open_trusted(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0, why);
  if (!fd) throw fail("cannot read config file: " + why);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw fail("cannot read config file: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) {
    throw fail("the config file must be a regular file, this is " + file_kind(st.st_mode));
  }
  std::string text;
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail("cannot read config file: " + errno_text(errno));
    }
    if (n == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(n));
    if (text.size() > kMaxFileSize) {
      throw fail("config file is larger than " + format_size(kMaxFileSize));
    }
  }
  return load_config_string(text, path, options);
}

Config default_config() {
  Config config;
  config.source = std::string(kEmbeddedSource);
  ListenConfig listen;
  listen.address = "127.0.0.1:8080";
  listen.kind = AddressKind::tcp4;
  listen.host = "127.0.0.1";
  listen.port = 8080;
  listen.name = "listen0";
  config.listen.push_back(std::move(listen));
  return config;
}

std::string to_yaml(const Config& config) {
  YamlWriter out;
  for (const ConfigRow& row : kConfigRows) {
    if (row.section.empty()) print_row(out, 0, row.name, row, config);
  }
  return out.take();
}

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = [] {
    std::vector<ConfigKey> out;
    for (const ConfigRow& row : kConfigRows) {
      const bool top = row.section.empty();
      out.push_back(
          ConfigKey{join_path(row.section, row.name), top && is_section(row.name), row.effect});
      for (const ListenRow& entry : kListenRows) {
        if (top && entry.section == row.name) {
          out.push_back(ConfigKey{join_path(entry.section, entry.name), false, entry.effect});
        }
      }
    }
    return out;
  }();
  return keys;
}

std::string print_config_key(const Config& config, const ConfigKey& key) {
  if (key.section) return {};
  for (const ConfigRow& row : kConfigRows) {
    if (join_path(row.section, row.name) != key.path) continue;
    YamlWriter out;
    print_row(out, 0, row.name, row, config);
    return out.take();
  }
  return {};  // a listen entry's key: listeners are compared socket by socket
}

const ConfigKey* find_config_key(std::string_view path) {
  const ConfigKey* best = nullptr;
  for (const ConfigKey& key : config_keys()) {
    if (key.section && path != key.path) continue;  // a section's paths are its own keys'
    const bool within =
        path == key.path || (path.starts_with(key.path) && path.size() > key.path.size() &&
                             path[key.path.size()] == '.');
    if (within && (best == nullptr || key.path.size() > best->path.size())) best = &key;
  }
  return best;
}

std::optional<ListenConfig> try_parse_listen_address(std::string_view text, std::string& error) {
  ListenConfig listen;
  listen.address = std::string(text);
  const std::string got = quote(text);
  if (text.starts_with("unix:")) {
    const std::string_view path = text.substr(5);
    if (path.empty()) {
      error = "unix: needs a socket path, like unix:/run/app.sock";
      return std::nullopt;
    }
    if (path.size() > kUnixPathMax) {
      error = "unix socket path " + quote(path) + " is too long (" + std::to_string(path.size()) +
              " bytes, at most " + std::to_string(kUnixPathMax) + ")";
      return std::nullopt;
    }
    listen.kind = AddressKind::unix_path;
    listen.path = std::string(path);
    return listen;
  }

  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "expected [IPv6]:port like [::1]:8080, got " + got;
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr address{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &address) != 1) {
      error = quote(host) + " is not an IPv6 address, in " + got;
      return std::nullopt;
    }
    std::array<char, INET6_ADDRSTRLEN> canonical{};
    ::inet_ntop(AF_INET6, &address, canonical.data(), canonical.size());
    listen.kind = AddressKind::tcp6;
    listen.host = canonical.data();
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "expected host:port, [IPv6]:port or unix:/path, got " + got;
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "an IPv6 address needs brackets, like [::1]:8080, got " + got;
      return std::nullopt;
    }
    if (host.empty()) {
      error = "missing host in " + got + " (write *:" + std::string(port) +
              " for every interface, or 127.0.0.1:" + std::string(port) + ")";
      return std::nullopt;
    }
    std::string literal(host);
    if (host == "*") literal = "0.0.0.0";
    if (host == "localhost") literal = "127.0.0.1";
    in_addr address{};
    if (::inet_pton(AF_INET, literal.c_str(), &address) != 1) {
      error =
          "the host must be an IP address (or * or localhost), got " + quote(host) + " in " + got;
      return std::nullopt;
    }
    std::array<char, INET_ADDRSTRLEN> canonical{};
    ::inet_ntop(AF_INET, &address, canonical.data(), canonical.size());
    listen.kind = AddressKind::tcp4;
    listen.host = canonical.data();
  }
  const auto number = parse_integer(port);
  if (port.empty() || !number || port[0] == '-') {
    error = "expected a port number after the colon, got " + got;
    return std::nullopt;
  }
  if (*number < 1 || *number > 65535) {
    error = "port " + std::string(port) + " is out of range (1..65535) in " + got;
    return std::nullopt;
  }
  listen.port = static_cast<std::uint16_t>(*number);
  return listen;
}

ListenConfig parse_listen_address(std::string_view text) {
  std::string error;
  auto listen = try_parse_listen_address(text, error);
  if (!listen) throw std::invalid_argument(error);
  return *std::move(listen);
}

std::string_view config_name(AddressKind kind) noexcept {
  switch (kind) {
    case AddressKind::tcp4:
      return "tcp4";
    case AddressKind::tcp6:
      return "tcp6";
    case AddressKind::unix_path:
      return "unix";
  }
  return "?";
}

std::string_view config_name(ReadyMode mode) noexcept {
  return name_in(kReadyModes, mode);
}
std::string_view config_name(InheritBind mode) noexcept {
  return name_in(kInheritBinds, mode);
}
std::string_view config_name(OutputMode mode) noexcept {
  return name_in(kOutputModes, mode);
}
std::string_view config_name(LogLevel level) noexcept {
  return name_in(kLogLevels, level);
}
std::string_view config_name(LogFormat format) noexcept {
  return name_in(kLogFormats, format);
}

std::optional<LogLevel> parse_log_level(std::string_view text) noexcept {
  for (const auto& entry : kLogLevels) {
    if (entry.name == text) return entry.value;
  }
  return std::nullopt;
}

}  // namespace forkd::common
