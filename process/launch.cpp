#include "process/launch.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "common/spawner.hpp"

namespace forkd::process {

using common::ChildStep;
using common::find_program;
using common::kCloseFd;
using common::make_pipe;
using common::make_socketpair;
using common::spawn_process;
using common::SpawnResult;
using common::SpawnSpec;
using common::system_error_from_errno;
using common::UniqueFd;

namespace {

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

std::string errno_name(int error) {
  const char* name = ::strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

std::map<std::string, std::string> compose_environment(const SpawnOptions& options, int ipc_index) {
  std::map<std::string, std::string> env;
  if (!options.replace_env) {
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
      const std::string_view pair(*entry);
      const auto eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      env.emplace(pair.substr(0, eq), pair.substr(eq + 1));
    }
    // A channel we were given ourselves is not the child's: its fd is closed over there, and
    // a Node child would die trying to open it (Node strips these from its children too).
    env.erase("NODE_CHANNEL_FD");
    env.erase("NODE_CHANNEL_SERIALIZATION_MODE");
  }
  for (const auto& [key, value] : options.env) env[key] = value;
  if (ipc_index >= 0) {
    env["NODE_CHANNEL_FD"] = std::to_string(ipc_index);
    env["NODE_CHANNEL_SERIALIZATION_MODE"] = "json";
  }
  return env;
}

// The child's fd table and our ends of it; the child's ends close when this goes away.
struct FdTable {
  std::vector<int> sources;
  std::vector<UniqueFd> child_ends;
  std::vector<UniqueFd> parent_ends;
  UniqueFd devnull;
  int ipc_index = -1;

  int null_device() {
    if (!devnull) {
      devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!devnull) throw system_error_from_errno("open /dev/null");
    }
    return devnull.get();
  }
  void add_child_end(std::size_t index, UniqueFd child, UniqueFd parent) {
    sources[index] = child.get();
    child_ends.push_back(std::move(child));
    parent_ends[index] = std::move(parent);
  }
};

FdTable build_fd_table(const std::vector<StdioSpec>& requested) {
  std::vector<StdioSpec> stdio = requested;
  while (stdio.size() < 3) stdio.push_back(StdioSpec::pipe());
  FdTable table;
  table.sources.assign(stdio.size(), kCloseFd);
  table.parent_ends.resize(stdio.size());
  for (std::size_t i = 0; i < stdio.size(); ++i) {
    const int number = static_cast<int>(i);
    switch (stdio[i].kind) {
      case StdioSpec::Kind::pipe:
        if (i == 0) {
          auto [read_end, write_end] = make_pipe();
          table.add_child_end(i, std::move(read_end), std::move(write_end));
        } else if (i <= 2) {
          auto [read_end, write_end] = make_pipe();
          table.add_child_end(i, std::move(write_end), std::move(read_end));
        } else {
          auto [ours, theirs] = make_socketpair(SOCK_STREAM);
          table.add_child_end(i, std::move(theirs), std::move(ours));
        }
        break;
      case StdioSpec::Kind::ignore:
        if (i <= 2) table.sources[i] = table.null_device();
        break;
      case StdioSpec::Kind::inherit:
        if (::fcntl(number, F_GETFD) >= 0) {
          table.sources[i] = number;
        } else if (i <= 2) {
          table.sources[i] = table.null_device();  // we have none to give: libuv does the same
        }
        break;
      case StdioSpec::Kind::fd:
        if (stdio[i].fd < 0) {
          throw std::invalid_argument("stdio[" + std::to_string(i) + "]: no fd to pass");
        }
        table.sources[i] = stdio[i].fd;
        break;
      case StdioSpec::Kind::ipc: {
        if (table.ipc_index >= 0) throw std::invalid_argument("stdio: more than one ipc entry");
        auto [ours, theirs] = make_socketpair(SOCK_STREAM);
        table.add_child_end(i, std::move(theirs), std::move(ours));
        table.ipc_index = number;
        break;
      }
    }
  }
  return table;
}

void wait_for_failed_child(pid_t pid) noexcept {
  int status = 0;
  // It wrote its failure and is in _exit(): this cannot block for long.
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

std::string join_command(const std::string& file, const std::vector<std::string>& args) {
  std::string command = file;
  for (const auto& arg : args) command += " " + arg;
  return command;
}

SpawnError::SpawnError(std::error_code code, std::string path, const std::string& step)
    : std::system_error(code, "spawn " + path + " " + errno_name(code.value()) +
                                  (step.empty() ? "" : " (" + step + ")")),
      path_(std::move(path)) {}

StartedChild start_child(const std::string& file, const std::vector<std::string>& args,
                         const SpawnOptions& options, PidHandle::Wait wait) {
  SpawnSpec spec;
  if (options.shell) {
    spec.program = "/bin/sh";
    spec.argv = {options.argv0.value_or("/bin/sh"), "-c", join_command(file, args)};
  } else {
    spec.program = file;
    spec.argv.reserve(args.size() + 1);
    spec.argv.push_back(options.argv0.value_or(file));
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  }
  const std::string path = options.shell ? spec.program : file;  // as errors name it

  FdTable fds;
  try {
    fds = build_fd_table(options.stdio);
  } catch (const std::system_error& e) {
    throw SpawnError(e.code(), path, "create its stdio");
  }
  spec.env = compose_environment(options, fds.ipc_index);

  // A bare name is searched in the child's PATH here (no fork for a missing program); a path
  // goes to execve as is, after chdir, so "./tool" is relative to cwd as in Node.
  if (spec.program.find('/') == std::string::npos) {
    const auto search = spec.env.find("PATH");
    int error = 0;
    const auto found =
        find_program(spec.program, search != spec.env.end() ? search->second : kDefaultPath, error);
    if (!found) throw SpawnError({error, std::system_category()}, path);
    spec.program = *found;
  }

  spec.fds = fds.sources;
  spec.cwd = options.cwd;
  const bool same_ids = (!options.uid || *options.uid == ::geteuid()) &&
                        (!options.gid || *options.gid == ::getegid());
  if (!same_ids) {
    spec.uid = options.uid;
    spec.gid = options.gid;
  }
  spec.die_with_master = options.die_with_parent;
  spec.ignore_sigint = false;
  spec.new_session = options.detached;
  spec.vfork = true;

  const SpawnResult result = spawn_process(spec);
  if (result.pid < 0) throw SpawnError(result.fork_error, path, "fork");
  if (result.failure) {
    wait_for_failed_child(result.pid);
    std::string step;
    if (result.failure->step != ChildStep::exec) {
      step = to_string(result.failure->step);
      if (result.failure->step == ChildStep::chdir) step += " " + spec.cwd;
    }
    throw SpawnError({result.failure->error, std::system_category()}, path, step);
  }
  return StartedChild{PidHandle(result.pid, wait), std::move(fds.parent_ends), fds.ipc_index};
}

}  // namespace forkd::process
