// Finding worker.command's program the one way that both the configuration check and every
// spawn use: through the PATH the worker will get, relative to the directory it will run in,
// so the file that passed --check-config is the file that is exec'd. Looks only: never execs.
#pragma once

#include <string>

#include "common/config.hpp"

namespace forkd::common {

// Searched when neither worker.env nor the master's environment has a PATH.
inline constexpr const char* kDefaultWorkerPath = "/usr/local/bin:/usr/bin:/bin";

struct WorkerProgram {
  std::string path;     // what to execve; "" when not found
  std::string problem;  // "" when found; else why not, e.g. "\"app\": not found in PATH (...)"
  [[nodiscard]] bool found() const noexcept { return problem.empty(); }
};

// The PATH the worker will get: worker.env's, else this process's (workers inherit it), else
// kDefaultWorkerPath.
[[nodiscard]] std::string worker_search_path(const WorkerConfig& worker);

// worker.command.front(): a name without '/' is searched in worker_search_path(); a relative
// path (and a relative PATH entry) is taken from worker.cwd, and made absolute then, so that it
// names the same file after the child's chdir. Found means a regular file this process may
// execute.
[[nodiscard]] WorkerProgram resolve_worker_program(const WorkerConfig& worker);

}  // namespace forkd::common
