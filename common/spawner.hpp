// Starting one worker process: the single fork path of the master (STYLE: one function, one
// checklist). Builds the child's plan before fork, forks, and learns through a close-on-exec
// error pipe whether the child got as far as exec or app entry ("spawn ENOENT", not a crash).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "common/child_setup.hpp"

namespace forkd::common {

struct SpawnSpec {
  ChildEntry entry = nullptr;  // an in-process entry (built-in app), or else:
  const void* entry_arg = nullptr;
  std::string program;  // absolute or PATH-resolved program to exec
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // the complete environment of the child
  bool listen_pid = false;                 // add LISTEN_PID=<the child's own pid>
  std::vector<int> fds;                    // fds[i] becomes fd i in the child; -1 = as is,
                                           // kCloseFd = closed
  std::string cwd;
  std::uint64_t rlimit_nofile = 0;
  std::optional<int> cpu;  // pin to this CPU
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::vector<gid_t> groups;
  bool die_with_master = true;
  bool ignore_sigint = true;  // false: the child gets SIGINT's default action (library children)
  bool new_session = false;   // setsid() in the child
  // A process group of its own (ChildPlan), set on both sides of the fork: a signal to the
  // group sent as soon as spawn_process returns cannot miss it.
  bool own_process_group = false;
  bool drop_capabilities = false;  // a non-root child keeps no capability (ChildPlan)
  // Exec children without uid/gid: clone(CLONE_VM | CLONE_VFORK) instead of fork(), as
  // posix_spawn does, so no page tables are copied (fork's cost grows with our memory).
  // Ignored for in-process entries and privilege drops, which need a real fork.
  bool vfork = false;
};

struct SpawnResult {
  pid_t pid = -1;  // > 0 whenever fork() succeeded, even when the set-up then failed
  std::optional<ChildFailure> failure;
  std::error_code fork_error;
  // "fork: Resource temporarily unavailable", "exec /x: No such file or directory", ...
  [[nodiscard]] std::string describe(const SpawnSpec& spec) const;
};

// Forks and sets up the child; blocks only until the child has exec'd or entered its app.
[[nodiscard]] SpawnResult spawn_process(const SpawnSpec& spec);

// execvp's search, done in the parent: the path to run, or ENOENT/EACCES.
[[nodiscard]] std::optional<std::string> find_program(const std::string& name, int& error);
// The same search through `search_path` (a PATH value, e.g. the one the child will get).
[[nodiscard]] std::optional<std::string> find_program(const std::string& name,
                                                      const std::string& search_path, int& error);

}  // namespace forkd::common
