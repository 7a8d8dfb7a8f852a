#include "process/exec.hpp"

#include <unistd.h>

#include <array>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/fd.hpp"
#include "process/pipe_write.hpp"
#include "process/process.hpp"

namespace forkd::process {

using common::ExitStatus;
using common::set_nonblocking;

namespace {

constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

// One exec()/exec_file() run. Owned by its pending handlers (reads, the timer, the exit wait),
// so it lives exactly as long as the run; its ChildProcess kills the child if it dies early.
class ExecOperation : public std::enable_shared_from_this<ExecOperation> {
 public:
  ExecOperation(asio::io_context& io, std::string command, const ExecOptions& options,
                ExecCallback callback)
      : io_(io),
        command_(std::move(command)),
        input_(options.input),
        timeout_(options.timeout),
        kill_signal_(options.kill_signal),
        max_buffer_(options.max_buffer),
        callback_(std::move(callback)),
        timer_(io) {}

  pid_t start(const std::string& file, const std::vector<std::string>& args,
              const SpawnOptions& spawn_options) {
    try {
      child_.emplace(spawn(io_, file, args, spawn_options));
    } catch (const std::system_error& e) {
      ExecError error;
      error.kind = ExecError::Kind::spawn_failed;
      error.message = e.what();
      error.command = command_;
      error.error = e.code();
      asio::post(io_, [self = shared_from_this(), error = std::move(error)] {
        self->callback_(error, {}, {});
      });
      return -1;
    }
    write_input();
    for (std::size_t fd = 1; fd <= 2; ++fd) {
      buffers_[fd].resize(kReadChunk);
      ++open_streams_;
      read(fd);
    }
    child_->async_wait(
        [self = shared_from_this()](const ExitStatus& exit) { self->on_exit(exit); });
    if (timeout_.count() > 0) {
      timer_.expires_after(timeout_);
      timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
        if (!ec) self->on_timeout();
      });
    }
    return child_->pid();
  }

 private:
  void write_input() {
    auto* in = child_->stdin_pipe();
    std::error_code ignored;
    if (input_.empty() || set_nonblocking(in->native_handle(), true)) {
      in->close(ignored);
      return;
    }
    while (input_written_ < input_.size()) {
      const ssize_t n = write_without_sigpipe(in->native_handle(), input_.data() + input_written_,
                                              input_.size() - input_written_);
      if (n > 0) {
        input_written_ += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        in->async_wait(asio::posix::stream_descriptor::wait_write,
                       [self = shared_from_this()](const std::error_code& ec) {
                         if (!ec && !self->done_) self->write_input();
                       });
        return;
      } else {
        break;  // EPIPE: the child does not read its stdin; that is its business
      }
    }
    in->close(ignored);
  }

  void read(std::size_t fd) {
    child_->stdio(fd)->async_read_some(
        asio::buffer(buffers_[fd]),
        [self = shared_from_this(), fd](const std::error_code& ec, std::size_t n) {
          self->on_read(fd, ec, n);
        });
  }

  void on_read(std::size_t fd, const std::error_code& ec, std::size_t n) {
    if (!done_ && overflowed_fd_ == 0 && n > 0) append(fd, buffers_[fd].data(), n);
    if (ec || done_ || overflowed_fd_ != 0) {
      --open_streams_;
      finish_if_done();
      return;
    }
    read(fd);
  }

  void append(std::size_t fd, const char* data, std::size_t n) {
    std::string& out = output_[fd];
    if (out.size() + n <= max_buffer_) {
      out.append(data, n);
      return;
    }
    out.append(data, max_buffer_ - out.size());
    overflowed_fd_ = static_cast<int>(fd);
    kill_child();
    close_streams();
  }

  // What the child wrote before it died is still in the pipe: take it without waiting.
  void drain_streams() {
    std::array<char, kReadChunk> chunk{};
    for (std::size_t fd = 1; fd <= 2 && overflowed_fd_ == 0; ++fd) {
      auto* stream = child_->stdio(fd);
      if (!stream->is_open() || set_nonblocking(stream->native_handle(), true)) continue;
      ssize_t n = 0;
      while (overflowed_fd_ == 0 &&
             (n = ::read(stream->native_handle(), chunk.data(), chunk.size())) > 0) {
        append(fd, chunk.data(), static_cast<std::size_t>(n));
      }
    }
  }

  void close_streams() {
    std::error_code ignored;
    for (std::size_t fd = 1; fd <= 2; ++fd) child_->stdio(fd)->close(ignored);
  }

  void kill_child() {
    if (!child_->kill(kill_signal_)) killed_ = true;
  }

  void on_timeout() {
    if (done_ || exit_) return;
    timed_out_ = true;
    kill_child();
  }

  void on_exit(const ExitStatus& exit) {
    exit_ = exit;
    timer_.cancel();
    finish_if_done();
  }

  // Done when the child is reaped and both streams reached EOF, as Node's 'close'. After a
  // timeout or an overflow we stop at the exit: a grandchild may hold the pipes for ever.
  void finish_if_done() {
    if (done_ || !exit_) return;
    if (open_streams_ > 0) {
      if (!timed_out_ && overflowed_fd_ == 0) return;
      drain_streams();
      close_streams();
    }
    done_ = true;
    timer_.cancel();
    ExecRun run;
    run.command = command_;
    run.exit = *exit_;
    run.timed_out = timed_out_;
    run.timeout = timeout_;
    run.overflowed_fd = overflowed_fd_;
    run.max_buffer = max_buffer_;
    run.killed = killed_;
    run.stderr_data = output_[2];
    const auto error = judge_exec_run(run);
    auto callback = std::exchange(callback_, nullptr);
    callback(error, std::move(output_[1]), std::move(output_[2]));
  }

  asio::io_context& io_;
  std::string command_;
  std::string input_;
  std::size_t input_written_ = 0;
  std::chrono::milliseconds timeout_;
  int kill_signal_;
  std::size_t max_buffer_;
  ExecCallback callback_;
  asio::steady_timer timer_;
  std::optional<ChildProcess> child_;
  std::array<std::vector<char>, 3> buffers_;
  std::array<std::string, 3> output_;
  int open_streams_ = 0;
  std::optional<ExitStatus> exit_;
  bool timed_out_ = false;
  bool killed_ = false;
  int overflowed_fd_ = 0;
  bool done_ = false;
};

}  // namespace

std::optional<ExecError> judge_exec_run(const ExecRun& run) {
  ExecError error;
  error.command = run.command;
  error.exit = run.exit;
  error.killed = run.killed;
  if (run.overflowed_fd != 0) {
    error.kind = ExecError::Kind::max_buffer;
    error.error = std::make_error_code(std::errc::no_buffer_space);
    error.message = std::string(run.overflowed_fd == 1 ? "stdout" : "stderr") +
                    " maxBuffer exceeded (" + std::to_string(run.max_buffer) +
                    " bytes): " + run.command;
    return error;
  }
  if (run.timed_out) {
    error.kind = ExecError::Kind::timed_out;
    error.error = std::make_error_code(std::errc::timed_out);
    error.message = "Command timed out after " + std::to_string(run.timeout.count()) +
                    " ms: " + run.command + " (" + run.exit.describe() + ")";
    return error;
  }
  if (run.exit.success()) return std::nullopt;
  error.kind = ExecError::Kind::exit_status;
  error.message = "Command failed: " + run.command + " (" + run.exit.describe() + ")";
  if (!run.stderr_data.empty()) error.message += "\n" + std::string(run.stderr_data);
  return error;
}

pid_t exec(asio::io_context& io, const std::string& command, const ExecOptions& options,
           ExecCallback callback) {
  auto operation = std::make_shared<ExecOperation>(io, command, options, std::move(callback));
  return operation->start(options.shell, {"-c", command}, spawn_options_for(options));
}

pid_t exec_file(asio::io_context& io, const std::string& file, const std::vector<std::string>& args,
                const ExecOptions& options, ExecCallback callback) {
  auto operation =
      std::make_shared<ExecOperation>(io, join_command(file, args), options, std::move(callback));
  return operation->start(file, args, spawn_options_for(options));
}

}  // namespace forkd::process
