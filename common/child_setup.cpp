// Post-fork, pre-exec code. Everything here must be async-signal-safe (signal-safety(7)):
// no malloc, no stdio, no logging, no exceptions, no locks. The plan was built by the parent.
#include "common/child_setup.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace forkd::common {

const char* to_string(ChildStep step) noexcept {
  switch (step) {
    case ChildStep::pdeathsig:
      return "watch the master";
    case ChildStep::fds:
      return "set up file descriptors";
    case ChildStep::rlimit:
      return "set rlimit_nofile";
    case ChildStep::affinity:
      return "set cpu affinity";
    case ChildStep::chdir:
      return "chdir";
    case ChildStep::groups:
      return "setgroups";
    case ChildStep::setgid:
      return "setgid";
    case ChildStep::setuid:
      return "setuid";
    case ChildStep::capabilities:
      return "drop capabilities";
    case ChildStep::exec:
      return "exec";
    case ChildStep::session:
      return "setsid";
    case ChildStep::process_group:
      return "setpgid";
  }
  return "start";
}

namespace {

[[noreturn]] void die(const ChildPlan& plan, ChildStep step, int error) noexcept {
  const ChildFailure failure{step, error};
  // Best effort: if the parent cannot read it, it still sees exit code 127.
  [[maybe_unused]] const ssize_t n = ::write(plan.error_pipe, &failure, sizeof(failure));
  ::_exit(127);
}

void reset_signals(const ChildPlan& plan) noexcept {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    ::sigaction(signo, &dfl, nullptr);  // fails harmlessly for the glibc-reserved ones
  }
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ::sigemptyset(&ign.sa_mask);
  if (plan.ignore_sigint) ::sigaction(SIGINT, &ign, nullptr);  // the master's to handle
  if (plan.ignore_sigpipe) ::sigaction(SIGPIPE, &ign, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void close_from(int first) noexcept {
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
  rlimit lim{};
  const rlim_t top =
      ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY ? lim.rlim_cur : 65536;
  for (auto fd = static_cast<rlim_t>(first); fd < top; ++fd) ::close(static_cast<int>(fd));
}

// Moves every source above the target range first, so no dup2 overwrites a source still
// needed; then places them, keeps the error pipe right after, and closes everything else.
void arrange_fds(ChildPlan& plan) noexcept {
  const int count = static_cast<int>(plan.fd_sources.size());
  const int high = count + 1;  // the error pipe will sit at `count`
  int moved[256];
  if (count > 255) die(plan, ChildStep::fds, EMFILE);
  for (int i = 0; i < count; ++i) {
    moved[i] = -1;
    const int src = plan.fd_sources[static_cast<std::size_t>(i)];
    if (src < 0) continue;
    moved[i] = ::fcntl(src, F_DUPFD_CLOEXEC, high);
    if (moved[i] < 0) die(plan, ChildStep::fds, errno);
  }
  const int err_fd = ::fcntl(plan.error_pipe, F_DUPFD_CLOEXEC, high);
  if (err_fd < 0) die(plan, ChildStep::fds, errno);
  plan.error_pipe = err_fd;
  for (int i = 0; i < count; ++i) {
    if (plan.fd_sources[static_cast<std::size_t>(i)] == kCloseFd) ::close(i);
    if (moved[i] < 0) continue;
    if (::dup2(moved[i], i) < 0) die(plan, ChildStep::fds, errno);  // dup2 clears CLOEXEC
  }
  if (::dup3(err_fd, count, O_CLOEXEC) < 0) die(plan, ChildStep::fds, errno);
  plan.error_pipe = count;
  close_from(count + 1);
}

// Ambient first (EINVAL: a kernel without ambient capabilities has none to clear), then the
// permitted, effective and inheritable sets; lowering them needs no privilege.
void drop_all_capabilities(const ChildPlan& plan) noexcept {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    die(plan, ChildStep::capabilities, errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> none{};
  if (::syscall(SYS_capset, &header, none.data()) != 0) die(plan, ChildStep::capabilities, errno);
}

void write_decimal(char* out, long value) noexcept {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < 20);
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
}

}  // namespace

void run_child(ChildPlan& plan) noexcept {
  reset_signals(plan);
  // The master may die between fork() and prctl(): then our parent is already someone else.
  if (plan.die_with_master) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die(plan, ChildStep::pdeathsig, errno);
    if (::getppid() != plan.master_pid) ::_exit(1);
  }
  if (plan.new_session && ::setsid() < 0) die(plan, ChildStep::session, errno);
  if (plan.own_process_group && !plan.new_session && ::setpgid(0, 0) != 0) {
    die(plan, ChildStep::process_group, errno);
  }
  arrange_fds(plan);
  if (plan.rlimit_nofile != 0) {
    const rlimit lim{plan.rlimit_nofile, plan.rlimit_nofile};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) die(plan, ChildStep::rlimit, errno);
  }
  if (plan.pin_cpu && ::sched_setaffinity(0, sizeof(plan.cpu), &plan.cpu) != 0) {
    die(plan, ChildStep::affinity, errno);
  }
  if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) die(plan, ChildStep::chdir, errno);
  if (plan.set_ids) {
    if (::setgroups(plan.groups.size(), plan.groups.data()) != 0)
      die(plan, ChildStep::groups, errno);
    if (::setgid(plan.gid) != 0) die(plan, ChildStep::setgid, errno);
    if (::setuid(plan.uid) != 0) die(plan, ChildStep::setuid, errno);
    // A dropped process must not be able to get root back.
    if (plan.uid != 0 && (::setuid(0) == 0 || ::getuid() != plan.uid || ::geteuid() != plan.uid)) {
      die(plan, ChildStep::setuid, EPERM);
    }
    // Nor through a setuid binary it execs.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(plan, ChildStep::setuid, errno);
    // setuid() made us non-dumpable, which exec would undo but an in-process app never gets:
    // its master could not read its /proc files (max_memory) without CAP_SYS_PTRACE.
    if (plan.uid != 0 && ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
      die(plan, ChildStep::setuid, errno);
    }
  }
  if (plan.drop_capabilities && ::geteuid() != 0) drop_all_capabilities(plan);
  if (plan.listen_pid_digits != nullptr) write_decimal(plan.listen_pid_digits, ::getpid());
  if (plan.entry != nullptr) {
    // environ is not const-qualified, but nothing in the child writes through it.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
    environ = const_cast<char**>(plan.envp);
    ::close(plan.error_pipe);  // EOF tells the parent the set-up succeeded
    plan.entry(plan.entry_arg);
  }
  ::execve(plan.path, plan.argv, plan.envp);
  die(plan, ChildStep::exec, errno);
}

}  // namespace forkd::common
