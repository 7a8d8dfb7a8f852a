// forkctl's end of the control socket: connect, send one request line, read reply lines with a
// deadline and an optional interrupt descriptor. Blocking and single-threaded on purpose: a
// command-line client has nothing else to do while it waits. Knows nothing of commands.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "common/fd.hpp"

namespace forkd::ctl {

// The socket could not be reached at all (forkctl exits 2).
class UnreachableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reached, but the exchange broke (forkctl exits 1).
class ExchangeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ControlClient {
 public:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  enum class ReadStatus { line, eof, timeout, interrupted };

  // Connects to the Unix socket at `path`. Throws UnreachableError naming the path and errno.
  explicit ControlClient(std::string path);

  // Writes `line` plus '\n'. The error is returned, not thrown: a daemon that refused us may
  // have closed already, yet its refusal is still there to read.
  [[nodiscard]] std::error_code send_line(std::string_view line);

  // The next line (without '\n') into `line`. `eof` once the daemon closed (a last line
  // without its newline is still returned first); `interrupted` when `interrupt_fd` became
  // readable; `timeout` past `deadline`. Throws ExchangeError on a read error or a line over
  // the size cap.
  [[nodiscard]] ReadStatus read_line(std::string& line, Deadline deadline, int interrupt_fd = -1);

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  common::UniqueFd fd_;
  std::string buffer_;
  bool eof_ = false;
};

}  // namespace forkd::ctl
