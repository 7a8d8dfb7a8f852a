#include "common/spawner.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/fd.hpp"

namespace forkd::common {

namespace {

// Owns the strings of an argv/envp and the pointer arrays execve wants.
class CStringArray {
 public:
  void add(std::string s) { strings_.push_back(std::move(s)); }
  std::string& back() { return strings_.back(); }
  char* const* finish() {
    pointers_.clear();
    for (auto& s : strings_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
    return pointers_.data();
  }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

// The vfork child's own stack: it runs while we are suspended, then execs or _exits.
// run_child needs about 2 KiB of it.
constexpr std::size_t kVforkStackSize = std::size_t{64} * 1024;

int enter_vfork_child(void* plan) {
  run_child(*static_cast<ChildPlan*>(plan));
}

// The child shares our memory until it execs, so none of our signal handlers may run in it:
// every signal stays blocked until run_child has reset the dispositions (it then unblocks).
pid_t clone_vfork(ChildPlan& plan, std::vector<char>& stack) {
  sigset_t all;
  sigset_t previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  const pid_t pid = ::clone(enter_vfork_child, stack.data() + stack.size(),
                            CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  const int error = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  errno = error;
  return pid;
}

// AddressSanitizer would leave the child's stack poisoning behind in memory we share.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kVforkAllowed = false;
#else
constexpr bool kVforkAllowed = true;
#endif

}  // namespace

std::optional<std::string> find_program(const std::string& name, int& error) {
  const char* path_env = std::getenv("PATH");
  return find_program(name, path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin", error);
}

std::optional<std::string> find_program(const std::string& name, const std::string& search_path,
                                        int& error) {
  const std::string& path = search_path;
  error = 0;
  if (name.empty()) {
    error = ENOENT;
    return std::nullopt;
  }
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    error = errno;
    return std::nullopt;
  }
  error = ENOENT;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto colon = path.find(':', start);
    std::string candidate =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (candidate.empty()) candidate = ".";
    candidate.append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) {
      error = 0;
      return candidate;
    }
    if (errno == EACCES) error = EACCES;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return std::nullopt;
}

std::string SpawnResult::describe(const SpawnSpec& spec) const {
  if (fork_error == std::errc::resource_unavailable_try_again) {
    return "fork: " + fork_error.message() +
           " (process limit reached: RLIMIT_NPROC of the user, or pids.max of the cgroup)";
  }
  if (fork_error) return "fork: " + fork_error.message();
  if (!failure) return "ok";
  std::string what = to_string(failure->step);
  if (failure->step == ChildStep::exec) what += " " + spec.program;
  if (failure->step == ChildStep::chdir) what += " " + spec.cwd;
  return what + ": " + std::strerror(failure->error);
}

SpawnResult spawn_process(const SpawnSpec& spec) {
  SpawnResult result;
  // Everything the child touches is built here, before fork: it may not allocate.
  CStringArray argv;
  for (const auto& a : spec.argv) argv.add(a);
  CStringArray envp;
  for (const auto& [k, v] : spec.env) envp.add(std::string(k).append("=").append(v));
  ChildPlan plan;
  if (spec.listen_pid) {
    envp.add("LISTEN_PID=" + std::string(21, '\0'));
  }
  plan.argv = argv.finish();
  plan.envp = envp.finish();
  if (spec.listen_pid) plan.listen_pid_digits = envp.back().data() + std::strlen("LISTEN_PID=");
  plan.entry = spec.entry;
  plan.entry_arg = spec.entry_arg;
  plan.path = spec.program.c_str();
  plan.fd_sources = spec.fds;
  plan.master_pid = ::getpid();
  plan.die_with_master = spec.die_with_master;
  plan.ignore_sigpipe = spec.entry != nullptr;
  plan.ignore_sigint = spec.ignore_sigint;
  plan.new_session = spec.new_session;
  plan.own_process_group = spec.own_process_group && !spec.new_session;
  plan.drop_capabilities = spec.drop_capabilities;
  plan.rlimit_nofile = spec.rlimit_nofile;
  if (spec.cpu) {
    plan.pin_cpu = true;
    CPU_ZERO(&plan.cpu);
    CPU_SET(static_cast<std::size_t>(*spec.cpu), &plan.cpu);
  }
  plan.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  if (spec.uid || spec.gid) {
    plan.set_ids = true;
    plan.uid = spec.uid.value_or(::getuid());
    plan.gid = spec.gid.value_or(::getgid());
    plan.groups = spec.groups.empty() ? std::vector<gid_t>{plan.gid} : spec.groups;
  }

  FdPair error_pipe;
  try {
    error_pipe = make_pipe();
  } catch (const std::system_error& e) {
    result.fork_error = e.code();
    return result;
  }
  plan.error_pipe = error_pipe.second.get();

  const bool share_memory = kVforkAllowed && spec.vfork && spec.entry == nullptr && !plan.set_ids;
  std::vector<char> vfork_stack(share_memory ? kVforkStackSize : 0);
  const pid_t pid = share_memory ? clone_vfork(plan, vfork_stack) : ::fork();
  if (pid < 0) {
    result.fork_error = last_error();
    return result;
  }
  if (pid == 0) run_child(plan);

  result.pid = pid;
  // The child does it too; whichever comes second fails harmlessly (EACCES once it has
  // exec'd, as after a vfork, or ESRCH once it is gone).
  if (plan.own_process_group) (void)::setpgid(pid, pid);
  error_pipe.second.reset();
  ChildFailure failure{};
  std::size_t got = 0;
  auto* bytes = reinterpret_cast<char*>(&failure);
  for (;;) {
    const ssize_t n = ::read(error_pipe.first.get(), bytes + got, sizeof(failure) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
    if (got == sizeof(failure)) break;
  }
  if (got == sizeof(failure)) result.failure = failure;
  return result;
}

}  // namespace forkd::common
