#include "process/sync.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <optional>
#include <utility>

#include "common/fd.hpp"
#include "process/launch.hpp"
#include "process/pipe_write.hpp"

namespace forkd::process {

using common::ExitStatus;
using common::last_error;
using common::set_nonblocking;
using common::UniqueFd;

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = std::size_t{64} * 1024;
constexpr std::chrono::milliseconds kMaxPollDelay{50};

void check_sync_stdio(const std::vector<StdioSpec>& stdio) {
  for (std::size_t i = 0; i < stdio.size(); ++i) {
    if (stdio[i].kind == StdioSpec::Kind::ipc) {
      throw std::invalid_argument("spawn_sync: an ipc channel needs an event loop");
    }
    if (stdio[i].kind == StdioSpec::Kind::pipe && i > 2) {
      throw std::invalid_argument("spawn_sync: pipes only at fds 0-2");
    }
  }
}

// One blocking run: feeds stdin, collects stdout and stderr, reaps the child.
class SyncRun {
 public:
  SyncRun(StartedChild started, const SpawnSyncOptions& options)
      : child_(std::move(started.handle)), options_(options) {
    for (std::size_t fd = 0; fd < 3 && fd < started.parent_ends.size(); ++fd) {
      ends_[fd] = std::move(started.parent_ends[fd]);
      if (ends_[fd] && set_nonblocking(ends_[fd].get(), true)) ends_[fd].reset();
    }
    if (options_.input.empty()) ends_[0].reset();
    if (options_.timeout.count() > 0) deadline_ = Clock::now() + options_.timeout;
  }

  void run() {
    while (!finished()) {
      std::array<pollfd, 4> fds{};
      nfds_t count = 0;
      if (ends_[0]) fds[count++] = {ends_[0].get(), POLLOUT, 0};
      for (std::size_t fd = 1; fd <= 2; ++fd) {
        if (ends_[fd]) fds[count++] = {ends_[fd].get(), POLLIN, 0};
      }
      if (!child_.reaped() && child_.pidfd() >= 0) fds[count++] = {child_.pidfd(), POLLIN, 0};
      const int rc = ::poll(fds.data(), count, wait_ms());
      if (rc < 0 && errno != EINTR) {
        error_ = last_error();  // cannot happen with valid fds; do not spin on it
        message_ = "spawnSync: poll: " + error_.message();
        [[maybe_unused]] const auto ec = child_.send_signal(SIGKILL);
        child_.reap_within(PidHandle::kReapOnDestroyLimit);
        break;
      }
      // Not only the ready ones: every call is non-blocking and cheap, and it keeps the loop
      // free of bookkeeping about which pollfd was whose.
      feed_stdin();
      for (std::size_t fd = 1; fd <= 2; ++fd) collect(fd);
      child_.try_reap();
      enforce_deadline();
    }
    for (std::size_t fd = 1; fd <= 2; ++fd) collect(fd);  // what it wrote just before exiting
  }

  SpawnSyncResult take_result(const std::string& file) {
    SpawnSyncResult result;
    result.pid = child_.pid();
    result.exit = child_.exit().value_or(ExitStatus{});
    result.stdout_data = std::move(output_[1]);
    result.stderr_data = std::move(output_[2]);
    result.error = error_;
    result.error_message = message_;
    if (timed_out_ && message_.empty()) {
      result.error_message = "spawnSync " + file + " timed out after " +
                             std::to_string(options_.timeout.count()) + " ms";
    }
    return result;
  }

  [[nodiscard]] bool timed_out() const noexcept { return timed_out_; }
  [[nodiscard]] int overflowed_fd() const noexcept { return overflowed_fd_; }
  [[nodiscard]] bool killed() const noexcept { return killed_; }

 private:
  // Reaped and both streams at EOF; after we killed it, the exit is enough (a grandchild may
  // hold the pipes open for ever).
  [[nodiscard]] bool finished() const noexcept {
    if (!child_.reaped()) return false;
    return (!ends_[1] && !ends_[2]) || timed_out_ || overflowed_fd_ != 0;
  }

  [[nodiscard]] int wait_ms() {
    std::optional<std::chrono::milliseconds> wait;
    if (!child_.reaped() && child_.pidfd() < 0) {
      wait = poll_delay_;  // no pidfd: look again soon
      poll_delay_ = std::min(poll_delay_ * 2, kMaxPollDelay);
    }
    if (deadline_ && !timed_out_) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now());
      wait = std::max(std::chrono::milliseconds(0), wait ? std::min(*wait, left) : left);
    }
    return wait ? static_cast<int>(wait->count()) : -1;
  }

  void feed_stdin() {
    while (ends_[0] && written_ < options_.input.size()) {
      const ssize_t n = write_without_sigpipe(ends_[0].get(), options_.input.data() + written_,
                                              options_.input.size() - written_);
      if (n > 0) {
        written_ += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;
      } else {
        break;  // EPIPE: it stopped reading
      }
    }
    ends_[0].reset();
  }

  void collect(std::size_t fd) {
    while (ends_[fd]) {
      const ssize_t n = ::read(ends_[fd].get(), chunk_.data(), chunk_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        ends_[fd].reset();
        return;
      }
      std::string& out = output_[fd];
      const auto size = static_cast<std::size_t>(n);
      if (out.size() + size <= options_.max_buffer) {
        out.append(chunk_.data(), size);
        continue;
      }
      out.append(chunk_.data(), options_.max_buffer - out.size());
      overflowed_fd_ = static_cast<int>(fd);
      error_ = std::make_error_code(std::errc::no_buffer_space);
      message_ = std::string(fd == 1 ? "stdout" : "stderr") + " maxBuffer exceeded (" +
                 std::to_string(options_.max_buffer) + " bytes)";
      kill_child();
      ends_[1].reset();
      ends_[2].reset();
    }
  }

  // Past the deadline the run ends even if the child has exited: then it is a grandchild that
  // holds the pipes, and waiting for it is what the timeout is meant to bound.
  void enforce_deadline() {
    if (!deadline_ || timed_out_ || Clock::now() < *deadline_) return;
    timed_out_ = true;
    if (!error_) error_ = std::make_error_code(std::errc::timed_out);
    if (!child_.reaped()) kill_child();
  }

  void kill_child() {
    if (!child_.send_signal(options_.kill_signal)) killed_ = true;
  }

  PidHandle child_;
  const SpawnSyncOptions& options_;
  std::array<UniqueFd, 3> ends_;
  std::array<std::string, 3> output_;
  std::vector<char> chunk_ = std::vector<char>(kReadChunk);
  std::size_t written_ = 0;
  std::optional<Clock::time_point> deadline_;
  std::chrono::milliseconds poll_delay_{1};
  bool timed_out_ = false;
  bool killed_ = false;
  int overflowed_fd_ = 0;
  std::error_code error_;
  std::string message_;
};

SpawnSyncOptions sync_options_for(const ExecOptions& options) {
  SpawnSyncOptions sync;
  static_cast<SpawnOptions&>(sync) = spawn_options_for(options);
  sync.input = options.input;
  sync.timeout = options.timeout;
  sync.kill_signal = options.kill_signal;
  sync.max_buffer = options.max_buffer;
  return sync;
}

std::string run_exec_sync(const std::string& command, const std::string& file,
                          const std::vector<std::string>& args, const ExecOptions& options) {
  const SpawnSyncOptions sync = sync_options_for(options);
  StartedChild started;
  try {
    started = start_child(file, args, sync);
  } catch (const SpawnError& e) {
    ExecError error;
    error.kind = ExecError::Kind::spawn_failed;
    error.message = e.what();
    error.command = command;
    error.error = e.code();
    throw ExecSyncError(std::move(error), -1, {}, {});
  }
  SyncRun run(std::move(started), sync);
  run.run();
  SpawnSyncResult result = run.take_result(file);
  ExecRun judged;
  judged.command = command;
  judged.exit = result.exit;
  judged.timed_out = run.timed_out();
  judged.timeout = options.timeout;
  judged.overflowed_fd = run.overflowed_fd();
  judged.max_buffer = options.max_buffer;
  judged.killed = run.killed();
  judged.stderr_data = result.stderr_data;
  if (auto error = judge_exec_run(judged)) {
    throw ExecSyncError(std::move(*error), result.pid, std::move(result.stdout_data),
                        std::move(result.stderr_data));
  }
  return std::move(result.stdout_data);
}

}  // namespace

SpawnSyncResult spawn_sync(const std::string& file, const std::vector<std::string>& args,
                           const SpawnSyncOptions& options) {
  check_sync_stdio(options.stdio);
  StartedChild started;
  try {
    started = start_child(file, args, options);
  } catch (const SpawnError& e) {
    SpawnSyncResult result;
    result.error = e.code();
    result.error_message = e.what();
    return result;
  }
  SyncRun run(std::move(started), options);
  run.run();
  return run.take_result(file);
}

ExecSyncError::ExecSyncError(ExecError detail, pid_t pid, std::string stdout_data,
                             std::string stderr_data)
    : std::runtime_error(detail.message),
      detail_(std::move(detail)),
      pid_(pid),
      stdout_(std::move(stdout_data)),
      stderr_(std::move(stderr_data)) {}

std::string exec_sync(const std::string& command, const ExecOptions& options) {
  return run_exec_sync(command, options.shell, {"-c", command}, options);
}

std::string exec_file_sync(const std::string& file, const std::vector<std::string>& args,
                           const ExecOptions& options) {
  return run_exec_sync(join_command(file, args), file, args, options);
}

}  // namespace forkd::process
