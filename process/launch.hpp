// Starting a child for the process library: resolving the program, composing its environment
// and fd table (pipes, /dev/null, passed fds, the IPC socketpair), then the one fork path of
// spawner.hpp. Shared by the async and the Sync forms; no io_context here.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "common/fd.hpp"
#include "process/options.hpp"
#include "process/pid_handle.hpp"

namespace forkd::process {

// The program could not be started. what(): "spawn /nope ENOENT: No such file or directory",
// with the failed step when it was not exec: "spawn ls ENOENT (chdir /gone): No such file...".
class SpawnError : public std::system_error {
 public:
  SpawnError(std::error_code code, std::string path, const std::string& step = {});
  // The program as given (or the shell when options.shell was set).
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

struct StartedChild {
  PidHandle handle;
  std::vector<common::UniqueFd> parent_ends;  // by child fd number; valid for pipe and ipc entries
  int ipc_index = -1;
};

// "file arg1 arg2": what shell:true hands to /bin/sh -c (as Node joins it), and Node's cmd.
[[nodiscard]] std::string join_command(const std::string& file,
                                       const std::vector<std::string>& args);

// Throws SpawnError when the program cannot be started (a child that got as far as fork is
// reaped first), std::invalid_argument for impossible options (two ipc entries).
[[nodiscard]] StartedChild start_child(const std::string& file,
                                       const std::vector<std::string>& args,
                                       const SpawnOptions& options,
                                       PidHandle::Wait wait = PidHandle::Wait::pidfd);

}  // namespace forkd::process
