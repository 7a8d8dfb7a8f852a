#include "common/worker_program.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <system_error>

#include "common/units.hpp"

namespace forkd::common {

namespace {

// "" when `path` names something execve() can run, else why not (errno text).
std::string why_not_executable(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::generic_category().message(errno);
  if (S_ISDIR(info.st_mode)) return std::generic_category().message(EISDIR);
  if (!S_ISREG(info.st_mode)) return "not a regular file";
  if (::access(path.c_str(), X_OK) != 0) return std::generic_category().message(errno);
  return "";
}

// A relative path as the worker will see it from its working directory.
std::string in_worker_dir(const std::string& path, const std::string& cwd) {
  if (path.starts_with('/') || cwd.empty()) return path;
  std::error_code ec;
  std::filesystem::path base = std::filesystem::absolute(cwd, ec);
  if (ec) base = cwd;
  return (base / path).string();
}

}  // namespace

std::string worker_search_path(const WorkerConfig& worker) {
  if (const auto it = worker.env.find("PATH"); it != worker.env.end()) return it->second;
  if (const char* inherited = std::getenv("PATH"); inherited != nullptr) return inherited;
  return kDefaultWorkerPath;
}

WorkerProgram resolve_worker_program(const WorkerConfig& worker) {
  WorkerProgram out;
  const std::string program = worker.command.empty() ? "" : worker.command.front();
  if (program.empty()) {
    out.problem = "the program name is empty";
    return out;
  }
  if (program.find('/') != std::string::npos) {
    const std::string path = in_worker_dir(program, worker.cwd);
    const std::string why = why_not_executable(path);
    if (why.empty()) {
      out.path = path;
      return out;
    }
    out.problem = quote(program) + ": " + why;
    if (!program.starts_with('/') && !worker.cwd.empty()) {
      out.problem += " (relative to worker.cwd " + quote(worker.cwd) + ")";
    }
    return out;
  }
  // execvp's search, done where the worker will do it.
  const std::string search_path = worker_search_path(worker);
  const std::string_view entries(search_path);
  std::size_t start = 0;
  while (start <= entries.size()) {
    std::size_t end = entries.find(':', start);
    if (end == std::string_view::npos) end = entries.size();
    std::string dir(entries.substr(start, end - start));
    if (dir.empty()) dir = ".";
    const std::string candidate = in_worker_dir(dir.append("/").append(program), worker.cwd);
    if (why_not_executable(candidate).empty()) {
      out.path = candidate;
      return out;
    }
    start = end + 1;
  }
  out.problem = quote(program) + ": not found in PATH (" + search_path + ")";
  return out;
}

}  // namespace forkd::common
