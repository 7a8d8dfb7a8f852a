// The Sync forms of the process library: spawn_sync(), exec_sync(), exec_file_sync(), Node's
// blocking runs. One thread, one poll() over the child's pipes and its pidfd: no threads, no
// SIGCHLD handler, EINTR-safe, and no deadlock however much the child writes to both streams.
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "process/exec.hpp"
#include "process/options.hpp"
#include "process/pid_handle.hpp"

namespace forkd::process {

struct SpawnSyncResult {
  pid_t pid = -1;  // -1 when it never started
  common::ExitStatus exit;
  std::string stdout_data;
  std::string stderr_data;
  // Node's result.error: the spawn errno, ETIMEDOUT, or ENOBUFS (max_buffer); a non-zero exit
  // is not an error here.
  std::error_code error;
  std::string error_message;  // "spawn /nope ENOENT: ...", "spawnSync sleep timed out ..."
};

// Runs the child to its end. stdio pipes at fds 0-2 are fed from `input` and captured; other
// kinds work as in spawn(); an ipc entry or a pipe beyond fd 2 throws std::invalid_argument.
// On timeout the child gets kill_signal and is then waited for, as in Node.
[[nodiscard]] SpawnSyncResult spawn_sync(const std::string& file,
                                         const std::vector<std::string>& args = {},
                                         const SpawnSyncOptions& options = {});

// Thrown by exec_sync() and exec_file_sync() for anything but a clean exit 0.
class ExecSyncError : public std::runtime_error {
 public:
  ExecSyncError(ExecError detail, pid_t pid, std::string stdout_data, std::string stderr_data);
  [[nodiscard]] const ExecError& detail() const noexcept { return detail_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::string& stdout_data() const noexcept { return stdout_; }
  [[nodiscard]] const std::string& stderr_data() const noexcept { return stderr_; }

 private:
  ExecError detail_;
  pid_t pid_;
  std::string stdout_;
  std::string stderr_;
};

// `options.shell -c command`; returns its stdout. Its stderr is captured (into the exception),
// not copied to ours as Node does: a daemon's stderr is its log.
[[nodiscard]] std::string exec_sync(const std::string& command, const ExecOptions& options = {});
[[nodiscard]] std::string exec_file_sync(const std::string& file,
                                         const std::vector<std::string>& args = {},
                                         const ExecOptions& options = {});

}  // namespace forkd::process
