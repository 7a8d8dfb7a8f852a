// The options of the process library (process.hpp, exec.hpp, sync.hpp): Node's
// child_process options as plain C++ values. No behaviour here; launch.cpp decides.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace forkd::process {

inline constexpr std::size_t kDefaultMaxBuffer = std::size_t{1024} * 1024;  // Node's maxBuffer

// One entry of Node's `stdio` array: entry i decides what the child has at fd i.
struct StdioSpec {
  enum class Kind {
    pipe,     // a pipe to us (fd 0: we write; others: we read; fds >= 3: a duplex socketpair)
    ignore,   // /dev/null for fds 0-2; nothing at all (closed) from fd 3 on
    inherit,  // our own fd of the same number
    fd,       // the descriptor `fd` of ours, placed at this number (it stays ours)
    ipc,      // a socketpair carrying newline-delimited JSON; NODE_CHANNEL_FD names it
  };
  Kind kind = Kind::pipe;
  int fd = -1;

  [[nodiscard]] static StdioSpec pipe() noexcept { return {Kind::pipe, -1}; }
  [[nodiscard]] static StdioSpec ignore() noexcept { return {Kind::ignore, -1}; }
  [[nodiscard]] static StdioSpec inherit() noexcept { return {Kind::inherit, -1}; }
  [[nodiscard]] static StdioSpec pass(int parent_fd) noexcept { return {Kind::fd, parent_fd}; }
  [[nodiscard]] static StdioSpec ipc() noexcept { return {Kind::ipc, -1}; }
};

struct SpawnOptions {
  std::string cwd;                         // "" = ours; a relative program path resolves in it
  std::map<std::string, std::string> env;  // added to our environment (overriding) ...
  bool replace_env = false;                // ... or, when true, the child's whole environment
  // Missing entries up to fd 2 are pipes, as in Node.
  std::vector<StdioSpec> stdio = {StdioSpec::pipe(), StdioSpec::pipe(), StdioSpec::pipe()};
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  bool detached = false;  // setsid(): the child leads a new session and process group
  bool shell = false;     // run "/bin/sh -c '<file> <args...>'" (joined with spaces, like Node)
  std::optional<std::string> argv0;             // argv[0] when not the file itself
  bool die_with_parent = false;                 // PR_SET_PDEATHSIG=SIGKILL, as forkd's workers have
  std::size_t max_message = kDefaultMaxBuffer;  // ipc: the longest line accepted or sent
};

// exec(), exec_file() and their Sync forms. stdio is always pipe, pipe, pipe.
struct ExecOptions {
  std::string cwd;
  std::map<std::string, std::string> env;
  bool replace_env = false;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::string input;                           // written to the child's stdin, which is then closed
  std::chrono::milliseconds timeout{0};        // 0 = none; else the child gets kill_signal
  int kill_signal = SIGTERM;                   // for timeout and max_buffer
  std::size_t max_buffer = kDefaultMaxBuffer;  // per stream; beyond it the child is killed
  std::string shell = "/bin/sh";               // exec() and exec_sync() only
};

// The spawn options an exec()/exec_file() (and their Sync forms) start their child with.
[[nodiscard]] inline SpawnOptions spawn_options_for(const ExecOptions& options) {
  SpawnOptions spawn_options;
  spawn_options.cwd = options.cwd;
  spawn_options.env = options.env;
  spawn_options.replace_env = options.replace_env;
  spawn_options.uid = options.uid;
  spawn_options.gid = options.gid;
  return spawn_options;
}

// spawn_sync(): spawn's options plus what a blocking run needs. Pipes are allowed at fds 0-2
// only, and no ipc.
struct SpawnSyncOptions : SpawnOptions {
  std::string input;
  std::chrono::milliseconds timeout{0};
  int kill_signal = SIGTERM;
  std::size_t max_buffer = kDefaultMaxBuffer;
};

}  // namespace forkd::process
