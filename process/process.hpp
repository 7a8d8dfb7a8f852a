// The process library (forkd_process), Node's child_process for programs that start children
// of their own: spawn() here, exec()/exec_file() in exec.hpp, the Sync forms in sync.hpp, all
// on the one fork path (common/spawner.hpp). A ChildProcess owns its child: destroying it kills
// and reaps the child unless disown()ed.
// Reaping model: each child is reaped by its own PidHandle (pid_handle.hpp: through its pidfd,
// else by its pid); the library never calls waitpid(-1) and installs no SIGCHLD handler. It is
// not for use inside the forkd master, whose single reaper calls waitpid(-1) and would take
// these children's exits from them (the master does not link this library).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "process/ipc.hpp"
#include "process/launch.hpp"
#include "process/options.hpp"
#include "process/pid_handle.hpp"

namespace forkd::process {

class ExitWatcher;

class ChildProcess {
 public:
  using ExitHandler = std::function<void(const common::ExitStatus&)>;

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Closes our stdio ends and the IPC channel; a child still running gets SIGKILL and is reaped
  // (waiting at most PidHandle::kReapOnDestroyLimit; past that the loop reaps it once it dies).
  // Pending async_wait handlers are dropped, not called. Must not outlive its io_context.
  ~ChildProcess();

  [[nodiscard]] pid_t pid() const noexcept;
  // Our end of stdio entry `index` when it is a pipe, else nullptr. stdin is writable, the
  // others readable (and writable too from fd 3 on). Writing to a pipe whose child is gone
  // raises SIGPIPE unless the process ignores it, as forkd's processes and Node do.
  [[nodiscard]] asio::posix::stream_descriptor* stdio(std::size_t index) noexcept;
  [[nodiscard]] asio::posix::stream_descriptor* stdin_pipe() noexcept { return stdio(0); }
  [[nodiscard]] asio::posix::stream_descriptor* stdout_pipe() noexcept { return stdio(1); }
  [[nodiscard]] asio::posix::stream_descriptor* stderr_pipe() noexcept { return stdio(2); }
  // The channel of the `ipc` stdio entry, else nullptr.
  [[nodiscard]] IpcChannel* ipc() noexcept;

  // ESRCH once the child has been reaped: a recycled pid is never signalled.
  [[nodiscard]] std::error_code kill(int signo = SIGTERM) noexcept;
  // Runs `handler` in the loop once the child has exited and been reaped; posted at once when
  // that already happened. Any number of handlers.
  void async_wait(ExitHandler handler);
  [[nodiscard]] std::optional<common::ExitStatus> exit_status() const;
  [[nodiscard]] bool running() const { return !exit_status().has_value(); }
  // Destruction will no longer kill the child (our pipe ends still close with us); the loop
  // reaps it when it exits. If the io_context goes first, it is left running, unwatched.
  void disown() noexcept;

 private:
  struct Impl;
  explicit ChildProcess(std::unique_ptr<Impl> impl) noexcept;
  friend ChildProcess spawn(asio::io_context& io, const std::string& file,
                            const std::vector<std::string>& args, const SpawnOptions& options);
  std::unique_ptr<Impl> impl_;
};

// Starts `file` (searched in PATH when it has no '/') with `args` (argv[1...]). Throws
// SpawnError ("spawn /nope ENOENT: ...") when it cannot be started: the errno comes from the
// child through a close-on-exec pipe, never guessed from exit code 127.
[[nodiscard]] ChildProcess spawn(asio::io_context& io, const std::string& file,
                                 const std::vector<std::string>& args = {},
                                 const SpawnOptions& options = {});

}  // namespace forkd::process
