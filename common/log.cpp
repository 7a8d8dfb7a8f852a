#include "common/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/fd.hpp"
#include "common/json_lines.hpp"
#include "common/safe_open.hpp"

namespace forkd::common::log {

namespace {

// What the output capture puts before a worker's line: "worker 0 (pid 4242) stdout: ".
struct CapturedTag {
  unsigned worker = 0;
  long pid = 0;
  std::string_view stream;
};

std::optional<CapturedTag> captured_line_tag(std::string_view text) {
  const auto number = [&](auto& value) {
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end == text.data()) return false;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    return true;
  };
  const auto literal = [&](std::string_view word) {
    if (!text.starts_with(word)) return false;
    text.remove_prefix(word.size());
    return true;
  };
  CapturedTag tag;
  if (!literal("worker ") || !number(tag.worker) || !literal(" (pid ") || !number(tag.pid) ||
      !literal(") ")) {
    return std::nullopt;
  }
  for (const std::string_view stream : {"stdout", "stderr"}) {
    if (text.starts_with(stream) && text.substr(stream.size()).starts_with(": ")) {
      tag.stream = stream;
      return tag;
    }
  }
  return std::nullopt;
}

// syslog(3) priorities, the "<N>" prefix journald reads from a stream.
int journal_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::info:
      return 6;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    default:
      return 2;
  }
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

class ForkdSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  ForkdSink() = default;
  // The audit file's sink: opened with the checks of open_log_file, and when it cannot be
  // written its records go to `fallback` (the main log), so none is lost.
  explicit ForkdSink(std::shared_ptr<ForkdSink> fallback) : fallback_(std::move(fallback)) {}

  void configure(const LogConfig& config) { configure(config, config.file); }
  // log.format, written to `path` ("" = stderr).
  void configure(const LogConfig& config, const std::string& path) {
    format_ = config.format;
    if (!config.format_set) {
      const char* stream = std::getenv("JOURNAL_STREAM");
      format_ = (stream != nullptr && *stream != '\0') ? LogFormat::journal : LogFormat::text;
    }
    path_ = path;
    reopen_file();
  }

  bool reopen_file() {
    file_.reset();
    failed_said_ = false;
    if (path_.empty()) return true;
    std::string why;
    UniqueFd fd = open_log_file(path_, why);
    if (!fd) {
      say_fallback(std::string("cannot open ") + (fallback_ ? "audit" : "log") + " file " + path_ +
                   ": " + why);
      return false;
    }
    file_ = std::move(fd);
    return true;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (file_) {
      if (write_all(file_.get(), render(msg))) return;
      say_fallback(std::string(fallback_ ? "cannot write audit file " : "cannot write log file ") +
                   path_ + ": " + std::strerror(errno));
      file_.reset();
    }
    if (fallback_) {
      fallback_->log(msg);
      return;
    }
    (void)write_all(STDERR_FILENO, render(msg));
  }
  void flush_() override {}

 private:
  [[nodiscard]] std::string render(const spdlog::details::log_msg& msg) const {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const std::string_view component(msg.logger_name.data(), msg.logger_name.size());
    const auto level = spdlog::level::to_string_view(msg.level);
    switch (format_) {
      case LogFormat::json: {
        nlohmann::json j = {{"time", format_time(msg.time)},
                            {"level", std::string_view(level.data(), level.size())},
                            {"component", component},
                            {"pid", ::getpid()},
                            {"msg", text}};
        if (component == "worker") {
          if (const auto tag = captured_line_tag(text)) {
            j["worker"] = tag->worker;
            j["worker_pid"] = tag->pid;
            j["stream"] = tag->stream;
          }
        }
        return common::to_json_line(j);
      }
      case LogFormat::journal:
        return fmt::format("<{}>{}: {}\n", journal_priority(msg.level), component, text);
      case LogFormat::text:
      default:
        return fmt::format("{} [{}] {}: {}\n", format_time(msg.time),
                           std::string_view(level.data(), level.size()), component, text);
    }
  }

  // Said once per failure, straight to stderr: the log itself is what failed.
  void say_fallback(const std::string& why) {
    if (failed_said_) return;
    failed_said_ = true;
    (void)write_all(STDERR_FILENO, "forkd: " + why +
                                       (fallback_ ? "; audit records go to the main log instead\n"
                                                  : "; logging to stderr instead\n"));
  }

  std::shared_ptr<ForkdSink> fallback_;  // set for the audit sink only
  LogFormat format_ = LogFormat::text;
  std::string path_;
  UniqueFd file_;
  bool failed_said_ = false;
};

// The one sink every logger shares; set up by configure() before the master forks.
std::shared_ptr<ForkdSink>& shared_sink() {
  static auto sink = std::make_shared<ForkdSink>();
  return sink;
}

// log.audit's own file; used only while log.audit names one.
std::shared_ptr<ForkdSink>& audit_file_sink() {
  static auto sink = std::make_shared<ForkdSink>(shared_sink());
  return sink;
}

bool& audit_has_own_file() {
  static bool own = false;
  return own;
}

spdlog::level::level_enum& current_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

constexpr const char* kAuditComponent = "audit";

std::shared_ptr<spdlog::sinks::sink> audit_destination() {
  if (audit_has_own_file()) return audit_file_sink();
  return shared_sink();
}

}  // namespace

UniqueFd open_log_file(const std::string& path, std::string& error) {
  // O_NONBLOCK while opening: a FIFO planted at the path must not hang the master.
  UniqueFd fd = open_trusted(
      path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640, error);
  struct stat st {};
  if (!fd) {
    // A FIFO nobody reads fails with ENXIO: say what it is rather than "No such device".
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
      error = "is " + file_kind(st.st_mode) + ", not a regular file; refusing it";
    }
    return fd;
  }
  if (::fstat(fd.get(), &st) != 0) {
    error = std::strerror(errno);
    return {};
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
    error = "is " + file_kind(st.st_mode) + ", not a regular file; refusing it";
    return {};
  }
  if (const std::string owner = foreign_owner(st); S_ISREG(st.st_mode) && !owner.empty()) {
    error = "is " + owner +
            ", not by root or forkd's user; refusing to write to it "
            "(logrotate: create it as root, e.g. `create 0640 root adm`)";
    return {};
  }
  if (const auto failed = set_nonblocking(fd.get(), false)) {
    error = failed.message();
    return {};
  }
  return fd;
}

std::string format_time(std::chrono::system_clock::time_point tp) {
  const auto since = tp.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs);
  const std::time_t t = secs.count();
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(buf, n) + fmt::format(".{:03}Z", millis.count());
}

spdlog::level::level_enum to_spdlog(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace:
      return spdlog::level::trace;
    case LogLevel::debug:
      return spdlog::level::debug;
    case LogLevel::info:
      return spdlog::level::info;
    case LogLevel::warn:
      return spdlog::level::warn;
    case LogLevel::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

void configure(const LogConfig& config) {
  shared_sink()->configure(config);
  audit_has_own_file() = !config.audit.empty();
  audit_file_sink()->configure(config, config.audit);  // "": a file it had is closed
  current_level() = to_spdlog(config.level);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) {
    if (l->name() != kAuditComponent) l->set_level(current_level());
  });
  if (auto audit_logger = spdlog::get(kAuditComponent)) {
    audit_logger->sinks().assign(1, audit_destination());
  }
}

bool reopen() {
  bool ok = shared_sink()->reopen_file();
  if (audit_has_own_file()) ok = audit_file_sink()->reopen_file() && ok;
  return ok;
}

std::shared_ptr<spdlog::logger> audit() {
  if (auto existing = spdlog::get(kAuditComponent)) return existing;
  auto logger = std::make_shared<spdlog::logger>(kAuditComponent, audit_destination());
  logger->set_level(spdlog::level::trace);  // never filtered by log.level
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  return logger;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  if (component == kAuditComponent) return audit();
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = std::make_shared<spdlog::logger>(component, shared_sink());
  logger->set_level(current_level());
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace forkd::common::log
