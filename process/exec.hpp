// exec() and exec_file(): Node's buffered forms on an asio loop. Output is collected up to
// max_buffer per stream; the child gets kill_signal on timeout or overflow; anything but a
// clean exit 0 reaches the callback as an ExecError, with the captured output either way.
#pragma once

#include <sys/types.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "process/options.hpp"
#include "process/pid_handle.hpp"

namespace forkd::process {

struct ExecError {
  enum class Kind { spawn_failed, exit_status, timed_out, max_buffer };
  Kind kind = Kind::exit_status;
  // "Command failed: false (exited with code 1)\n<stderr>",
  // "Command timed out after 100 ms: sleep 5 (killed by signal 15 (SIGTERM))",
  // "stdout maxBuffer exceeded (1048576 bytes): yes", "spawn /nope ENOENT: No such file ..."
  std::string message;
  std::string command;      // the command line, as Node's error.cmd
  std::error_code error;    // spawn_failed: its errno; timed_out: ETIMEDOUT; max_buffer: ENOBUFS
  common::ExitStatus exit;  // how the child ended; empty when it never started
  bool killed = false;      // we signalled it (timeout or max_buffer)
};

using ExecCallback = std::function<void(const std::optional<ExecError>& error,
                                        std::string stdout_data, std::string stderr_data)>;

// Runs `command` through `options.shell -c`. The callback runs once, in the loop, never from
// within this call, after the exit and EOF on both streams (Node's 'close'); after a timeout
// or an overflow, at the exit. A child that ignores kill_signal is waited for, as in Node.
// The operation owns the child until then: destroying the io_context first kills and reaps
// it. Returns the child's pid, or -1 when it could not be started.
pid_t exec(asio::io_context& io, const std::string& command, const ExecOptions& options,
           ExecCallback callback);
// Runs `file` with `args` as they are, no shell: spaces, quotes and ';' are not interpreted.
pid_t exec_file(asio::io_context& io, const std::string& file, const std::vector<std::string>& args,
                const ExecOptions& options, ExecCallback callback);

// How a buffered run ended, judged the same way by exec() and the Sync forms.
struct ExecRun {
  std::string command;
  common::ExitStatus exit;
  bool timed_out = false;
  std::chrono::milliseconds timeout{0};
  int overflowed_fd = 0;  // 1 or 2: that stream passed max_buffer
  std::size_t max_buffer = 0;
  bool killed = false;
  std::string_view stderr_data;
};
// nullopt for a clean exit 0 that was neither timed out nor overflowed.
[[nodiscard]] std::optional<ExecError> judge_exec_run(const ExecRun& run);

}  // namespace forkd::process
