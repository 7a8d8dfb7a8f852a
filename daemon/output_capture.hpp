// `stdout: log` / `stderr: log`: one worker stream read line by line into the master's log.
// Lines longer than kMaxLine are split, never buffered without limit; each wake-up reads a
// bounded amount, so a flooding worker cannot starve the master's loop. Only an unfinished line
// is kept between wake-ups: a quiet worker costs the master no buffer. Lines are escaped
// (common/text_escape.hpp) and limited per worker (daemon/limited_log.hpp): a worker cannot write
// terminal controls into the log, nor flood it.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "daemon/limited_log.hpp"

namespace forkd::daemon {

class OutputCapture : public std::enable_shared_from_this<OutputCapture> {
 public:
  static constexpr std::size_t kMaxLine = std::size_t{16} * 1024;

  // Sees every line, also those the log's limit leaves out (raw, unescaped).
  using Keep = std::function<void(std::string_view line)>;

  // `tag` prefixes every line, e.g. "worker 0 (pid 4242) stdout"; `log` is the worker's
  // output limit, shared by its two streams; `keep` (may be empty) is given every line.
  static std::shared_ptr<OutputCapture> open(asio::io_context& io, common::UniqueFd read_end,
                                             std::string tag, bool is_stderr,
                                             std::shared_ptr<LimitedLog> log, Keep keep = {});
  OutputCapture(asio::io_context& io, common::UniqueFd read_end, std::string tag, bool is_stderr,
                std::shared_ptr<LimitedLog> log, Keep keep = {});
  void close();
  [[nodiscard]] bool closed() const noexcept { return closed_; }
  // Bytes reserved for an unfinished line: an empty std::string's once none is pending.
  [[nodiscard]] std::size_t buffer_capacity() const noexcept { return partial_.capacity(); }

  // The most one wake-up reads, into a buffer on the stack.
  static constexpr std::size_t kReadChunk = std::size_t{16} * 1024;

 private:
  void read_next();
  void read_available();
  void take(std::string_view data);
  void emit(std::string_view line);

  asio::posix::stream_descriptor stream_;
  std::string tag_;
  bool is_stderr_;
  std::shared_ptr<LimitedLog> log_;
  Keep keep_;
  std::string partial_;  // an unfinished line, shorter than kMaxLine
  bool closed_ = false;
};

}  // namespace forkd::daemon
