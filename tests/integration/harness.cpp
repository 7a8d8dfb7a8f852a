#include "tests/integration/harness.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in a header

namespace forkd::test {
namespace {

using Clock = std::chrono::steady_clock;
using common::UniqueFd;

constexpr std::chrono::milliseconds kTeardownTimeout{5000};
constexpr std::chrono::milliseconds kOutputPoll{5};

[[noreturn]] void throw_errno(const std::string& what) {
  throw common::system_error_from_errno(what);
}

int remaining_ms(Clock::time_point deadline) {
  // Rounded up: a poll that wakes a fraction of a millisecond early must not end the wait.
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, 1'000'000));
}

// ---- /proc ---------------------------------------------------------------------------------

struct ProcStat {
  pid_t pid = 0;
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
  unsigned long long start_time = 0;
};

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// /proc/PID/stat: "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
// cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...". comm may
// hold spaces and parentheses, so fields are counted from the last ')'.
std::optional<ProcStat> read_stat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const auto text = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  const auto close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text->substr(close + 1));
  ProcStat stat;
  stat.pid = pid;
  std::string skip;
  fields >> stat.state >> stat.ppid >> stat.pgrp;
  for (int i = 0; i < 15 && fields; ++i) fields >> skip;  // session .. itrealvalue
  fields >> stat.start_time;
  if (!fields) return std::nullopt;
  return stat;
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) != 0;
        })) {
      continue;
    }
    pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

std::vector<ProcStat> all_processes() {
  std::vector<ProcStat> procs;
  for (const pid_t pid : all_pids()) {
    if (auto stat = read_stat(pid)) procs.push_back(*stat);
  }
  return procs;
}

// ---- spawning --------------------------------------------------------------------------------

// Keys the test runner's own environment may carry that would change how forkd behaves.
constexpr std::array<std::string_view, 7> kStrippedEnv = {
    "LISTEN_FDS",     "LISTEN_PID",    "LISTEN_FDNAMES", "NOTIFY_SOCKET",
    "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID"};

std::vector<std::string> build_environment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view kv(*entry);
    const auto key = kv.substr(0, kv.find('='));
    if (std::find(kStrippedEnv.begin(), kStrippedEnv.end(), key) != kStrippedEnv.end()) continue;
    if (overrides.contains(std::string(key))) continue;
    env.emplace_back(kv);
  }
  for (const auto& [key, value] : overrides)
    env.push_back(std::string(key).append("=").append(value));
  return env;
}

enum class SpawnStage : int { kSetup = 1, kCredentials = 2, kExec = 3 };

struct SpawnSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE"
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::vector<int> listen_fds;  // become 3, 4, ...
  bool set_listen_pid = false;  // adds LISTEN_PID=<the child's own pid>
  std::optional<Credentials> as_user;
  std::string join_cgroup;  // a cgroup directory the child moves itself into before exec
};

// Writes the decimal value of n at out (which has room for 24 chars), NUL-terminated.
// Async-signal-safe: used between fork and exec.
void format_pid(char* out, pid_t n) noexcept {
  char digits[24];
  int count = 0;
  auto value = static_cast<unsigned long>(n);
  do {
    digits[count++] = static_cast<char>('0' + static_cast<int>(value % 10));
    value /= 10;
  } while (value != 0 && count < 23);
  for (int i = 0; i < count; ++i) out[i] = digits[count - 1 - i];
  out[count] = '\0';
}

[[noreturn]] void child_fail(int error_fd, SpawnStage stage) noexcept {
  const std::array<int, 2> report = {static_cast<int>(stage), errno};
  [[maybe_unused]] const auto written = ::write(error_fd, report.data(), sizeof(report));
  ::_exit(127);
}

// Between fork and exec: only async-signal-safe calls, no allocation (the test process may have
// threads, e.g. a LoadGenerator). Every buffer was prepared by the parent.
[[noreturn]] void exec_child(const SpawnSpec& spec, char* const* argv, char* const* envp,
                             char* listen_pid_value, std::vector<int>& moved, int error_fd,
                             pid_t parent) noexcept {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &default_action, nullptr);
  }
  ::setpgid(0, 0);
  // If the test binary dies (crash, abort), so does everything it started.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);

  // Move every source above the target range first, so that dup2 onto 0.. never clobbers a
  // source still to be copied (a listener may already sit at fd 3, the error pipe at fd 4).
  const int base = 3 + static_cast<int>(spec.listen_fds.size());
  const int error_high = ::fcntl(error_fd, F_DUPFD_CLOEXEC, base);
  if (error_high < 0) child_fail(error_fd, SpawnStage::kSetup);
  const std::array<int, 3> stdio = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  for (std::size_t i = 0; i < moved.size(); ++i) {
    const int source = i < 3 ? stdio[i] : spec.listen_fds[i - 3];
    moved[i] = ::fcntl(source, F_DUPFD_CLOEXEC, base);
    if (moved[i] < 0) child_fail(error_high, SpawnStage::kSetup);
  }
  for (std::size_t i = 0; i < moved.size(); ++i) {
    if (::dup2(moved[i], static_cast<int>(i)) < 0) child_fail(error_high, SpawnStage::kSetup);
  }
  // Whatever else the test process has open (accepted sockets, other listeners) must not leak.
  ::close_range(static_cast<unsigned>(base), ~0U, CLOSE_RANGE_CLOEXEC);

  if (!spec.join_cgroup.empty()) {
    // "0" written to cgroup.procs moves the writer itself (v1 and v2 alike).
    const int procs = ::open(spec.join_cgroup.c_str(), O_WRONLY | O_CLOEXEC);
    if (procs < 0 || ::write(procs, "0", 1) != 1) child_fail(error_high, SpawnStage::kSetup);
    ::close(procs);
  }
  if (spec.as_user) {
    const gid_t gid = spec.as_user->gid;
    if (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 || ::setuid(spec.as_user->uid) != 0) {
      child_fail(error_high, SpawnStage::kCredentials);
    }
  }
  if (listen_pid_value != nullptr) format_pid(listen_pid_value, ::getpid());
  ::execve(argv[0], argv, envp);
  child_fail(error_high, SpawnStage::kExec);
}

// fork + exec with the checklist above; returns the child's pid, which leads its own process
// group. Throws std::system_error naming the stage and program when the child could not exec.
pid_t spawn(SpawnSpec spec) {
  if (spec.argv.empty()) throw std::invalid_argument("spawn: empty argv");
  std::size_t listen_pid_index = spec.env.size();
  if (spec.set_listen_pid) {
    spec.env.push_back("LISTEN_PID=" + std::string(24, '\0'));
  }
  std::vector<char*> argv;
  for (auto& arg : spec.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& entry : spec.env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  char* listen_pid_value = spec.set_listen_pid
                               ? spec.env[listen_pid_index].data() + std::strlen("LISTEN_PID=")
                               : nullptr;
  std::vector<int> moved(3 + spec.listen_fds.size(), -1);
  auto error_pipe = common::make_pipe();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork for " + spec.argv[0]);
  if (pid == 0) {
    exec_child(spec, argv.data(), envp.data(), listen_pid_value, moved, error_pipe.second.get(),
               parent);
  }
  // Both sides set the group, so the parent may signal the group as soon as spawn returns.
  ::setpgid(pid, pid);
  error_pipe.second.reset();
  std::array<int, 2> report = {0, 0};
  ssize_t got = 0;
  do {
    got = ::read(error_pipe.first.get(), report.data(), sizeof(report));
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof(report))) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const char* stage = report[0] == static_cast<int>(SpawnStage::kExec)          ? "exec"
                        : report[0] == static_cast<int>(SpawnStage::kCredentials) ? "setuid/setgid"
                                                                                  : "fd setup";
    throw std::system_error(report[1], std::system_category(),
                            std::string(stage) + " for " + spec.argv[0]);
  }
  return pid;
}

// Processes orphaned by a killed master must be reparented to us, not to a PID 1 that may never
// reap them, so teardown can reap them by pid and kill(pid, 0) then says they are gone.
void become_subreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) throw_errno("prctl(PR_SET_CHILD_SUBREAPER)");
}

// One pass of teardown over the processes `is_ours` selects: SIGKILLs the live ones and reaps
// those that are our zombies. True when none is left to wait for; a zombie whose parent is still
// alive is waited for, since that parent is being killed and it will be reparented to us.
bool sweep(const std::function<bool(const ProcStat&)>& is_ours) {
  bool pending = false;
  const pid_t self = ::getpid();
  for (const auto& proc : all_processes()) {
    if (!is_ours(proc)) continue;
    if (proc.state != 'Z') {
      ::kill(proc.pid, SIGKILL);
      pending = true;
    } else if (proc.ppid == self) {
      int status = 0;
      ::waitpid(proc.pid, &status, WNOHANG);
      pending = true;
    } else if (proc.ppid != 1 && process_alive(proc.ppid)) {
      pending = true;
    }
  }
  return !pending;
}

// Repeats sweep() until nothing is left or the teardown timeout passes; false on timeout.
bool sweep_until_gone(const std::function<bool(const ProcStat&)>& is_ours) {
  const auto deadline = Clock::now() + kTeardownTimeout;
  while (!sweep(is_ours)) {
    if (Clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 2);
  }
  return true;
}

UniqueFd open_output(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) throw_errno("open " + path);
  return fd;
}

UniqueFd open_dev_null() {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open /dev/null");
  return fd;
}

// ---- log matching -----------------------------------------------------------------------------

std::size_t line_begin_of(const std::string& text, std::size_t pos) {
  if (pos == 0) return 0;
  const auto nl = text.rfind('\n', pos - 1);
  return nl == std::string::npos ? 0 : nl + 1;
}

// Calls visit(begin, end, flags) for each complete line (without '\n') from offset on; a first
// partial line is searched from offset with the previous character visible to ^ and \b.
template <typename Visit>
void for_each_complete_line(const std::string& text, std::size_t offset, Visit&& visit) {
  const auto last_nl = text.rfind('\n');
  if (last_nl == std::string::npos || offset > last_nl) return;
  std::size_t pos = offset;
  while (pos <= last_nl) {
    const std::size_t eol = text.find('\n', pos);
    auto flags = std::regex_constants::match_default;
    if (pos > line_begin_of(text, pos)) flags |= std::regex_constants::match_prev_avail;
    if (!visit(pos, eol, flags)) return;
    pos = eol + 1;
  }
}

std::optional<LogMatch> search_lines(const std::string& text, const std::regex& re,
                                     std::size_t offset) {
  std::optional<LogMatch> found;
  for_each_complete_line(text, offset, [&](std::size_t begin, std::size_t end, auto flags) {
    std::smatch m;
    const auto first = text.cbegin() + static_cast<std::ptrdiff_t>(begin);
    const auto last = text.cbegin() + static_cast<std::ptrdiff_t>(end);
    if (!std::regex_search(first, last, m, re, flags)) return true;
    LogMatch match;
    match.text = m.str(0);
    for (const auto& group : m) match.groups.push_back(group.matched ? group.str() : std::string());
    const auto line_start = line_begin_of(text, begin);
    match.line = text.substr(line_start, end - line_start);
    const auto match_end = static_cast<std::size_t>(m[0].second - text.cbegin());
    // An empty match would be found again at the same offset forever.
    match.end_offset = m[0].length() == 0 ? match_end + 1 : match_end;
    found = std::move(match);
    return false;
  });
  return found;
}

std::size_t count_lines_matching(const std::string& text, const std::regex& re,
                                 std::size_t offset) {
  std::size_t count = 0;
  for_each_complete_line(text, offset, [&](std::size_t begin, std::size_t end, auto flags) {
    const auto first = text.cbegin() + static_cast<std::ptrdiff_t>(begin);
    const auto last = text.cbegin() + static_cast<std::ptrdiff_t>(end);
    count += static_cast<std::size_t>(
        std::distance(std::sregex_iterator(first, last, re, flags), std::sregex_iterator()));
    return true;
  });
  return count;
}

// ---- sockets ------------------------------------------------------------------------------

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
};

std::optional<SocketAddress> resolve(const std::string& host_or_unix, std::uint16_t port,
                                     std::string& error) {
  SocketAddress address;
  if (host_or_unix.rfind("unix:", 0) == 0) {
    const std::string path = host_or_unix.substr(5);
    sockaddr_un un{};
    if (path.size() >= sizeof(un.sun_path)) {
      error = "unix socket path too long: " + path;
      return std::nullopt;
    }
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.data(), path.size());
    std::memcpy(&address.storage, &un, sizeof(un));
    address.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    address.family = AF_UNIX;
    return address;
  }
  std::string host = host_or_unix;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* results = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &results);
  if (rc != 0 || results == nullptr) {
    error = "resolve " + host + ": " + ::gai_strerror(rc);
    return std::nullopt;
  }
  std::memcpy(&address.storage, results->ai_addr, results->ai_addrlen);
  address.length = results->ai_addrlen;
  address.family = results->ai_family;
  ::freeaddrinfo(results);
  return address;
}

std::string describe_endpoint(const std::string& host, std::uint16_t port) {
  if (host.rfind("unix:", 0) == 0) return host;
  if (!host.empty() && host.find(':') != std::string::npos && host.front() != '[') {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

std::string errno_text(const std::string& what, int error) {
  return what + ": " + std::generic_category().message(error);
}

enum class Wait { kReady, kTimeout, kCancelled, kError };

// poll() in slices so that a stop request ends a blocked client promptly.
Wait wait_fd(int fd, short events, Clock::time_point deadline, const std::stop_token& stop) {
  while (true) {
    if (stop.stop_requested()) return Wait::kCancelled;
    const int left = remaining_ms(deadline);
    if (left <= 0) return Wait::kTimeout;
    pollfd pfd{fd, events, 0};
    const int rc = ::poll(&pfd, 1, std::min(left, 50));
    if (rc > 0) return Wait::kReady;
    if (rc < 0 && errno != EINTR) return Wait::kError;
  }
}

struct IoError {
  std::string text;
  bool cancelled = false;
};

std::optional<UniqueFd> connect_to(const std::string& host, std::uint16_t port,
                                   Clock::time_point deadline, const std::stop_token& stop,
                                   IoError& error) {
  const auto address = resolve(host, port, error.text);
  if (!address) return std::nullopt;
  const std::string name = describe_endpoint(host, port);
  while (true) {
    UniqueFd fd(::socket(address->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      error.text = errno_text("socket", errno);
      return std::nullopt;
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address->storage),
                  address->length) == 0) {
      return fd;
    }
    const int connect_error = errno;
    if (connect_error == EAGAIN && address->family == AF_UNIX) {
      // A unix listener's backlog is full: retry, like a TCP SYN would be retried.
      if (remaining_ms(deadline) <= 0) {
        error.text = "connect " + name + ": backlog full until timeout";
        return std::nullopt;
      }
      if (stop.stop_requested()) {
        error.cancelled = true;
        return std::nullopt;
      }
      ::poll(nullptr, 0, 5);
      continue;
    }
    if (connect_error != EINPROGRESS) {
      error.text = errno_text("connect " + name, connect_error);
      return std::nullopt;
    }
    switch (wait_fd(fd.get(), POLLOUT, deadline, stop)) {
      case Wait::kReady:
        break;
      case Wait::kTimeout:
        error.text = "connect " + name + ": timeout";
        return std::nullopt;
      case Wait::kCancelled:
        error.cancelled = true;
        return std::nullopt;
      case Wait::kError:
        error.text = errno_text("poll", errno);
        return std::nullopt;
    }
    int so_error = 0;
    socklen_t length = sizeof(so_error);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &length);
    if (so_error != 0) {
      error.text = errno_text("connect " + name, so_error);
      return std::nullopt;
    }
    return fd;
  }
}

bool send_all(int fd, std::string_view data, Clock::time_point deadline,
              const std::stop_token& stop, IoError& error) {
  while (!data.empty()) {
    const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      data.remove_prefix(static_cast<std::size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto waited = wait_fd(fd, POLLOUT, deadline, stop);
      if (waited == Wait::kReady) continue;
      error.cancelled = waited == Wait::kCancelled;
      error.text = waited == Wait::kTimeout ? "send: timeout" : "send: poll failed";
      return false;
    }
    error.text = errno_text("send", errno);
    return false;
  }
  return true;
}

// Reads one response from fd; buffer carries bytes across responses on a keep-alive connection.
class ResponseReader {
 public:
  ResponseReader(int fd, std::string& buffer, Clock::time_point deadline,
                 const std::stop_token& stop)
      : fd_(fd), buffer_(buffer), deadline_(deadline), stop_(stop), initial_(buffer.size()) {}

  // nullopt on failure (error() says why); keep_alive() tells whether the connection may be
  // reused afterwards.
  std::optional<HttpResponse> read() {
    HttpResponse response;
    std::string version;
    while (true) {
      const auto header_end = find_or_fill("\r\n\r\n", kMaxHeader);
      if (!header_end) return std::nullopt;
      const std::string head = buffer_.substr(0, *header_end);
      buffer_.erase(0, *header_end + 4);
      if (!parse_head(head, response, version)) return std::nullopt;
      if (response.status >= 100 && response.status < 200 && response.status != 101) {
        response = HttpResponse{};  // interim response (100 Continue): the real one follows
        continue;
      }
      break;
    }
    keep_alive_ = version == "HTTP/1.1";
    const std::string connection = lower(response.header("connection"));
    if (connection.find("close") != std::string::npos) keep_alive_ = false;
    if (connection.find("keep-alive") != std::string::npos && version == "HTTP/1.0") {
      keep_alive_ = true;
    }
    if (lower(response.header("transfer-encoding")).find("chunked") != std::string::npos) {
      if (!read_chunked(response.body)) return std::nullopt;
    } else if (const auto length = response.headers.find("content-length");
               length != response.headers.end()) {
      std::size_t size = 0;
      try {
        size = static_cast<std::size_t>(std::stoull(length->second));
      } catch (const std::exception&) {
        error_ = "bad Content-Length: " + length->second;
        return std::nullopt;
      }
      if (!fill_to(size)) return std::nullopt;
      response.body = buffer_.substr(0, size);
      buffer_.erase(0, size);
    } else if (response.status == 204 || response.status == 304) {
      // No body by definition.
    } else {
      while (fill()) {
      }
      if (!eof_) return std::nullopt;
      response.body = std::move(buffer_);
      buffer_.clear();
      keep_alive_ = false;
    }
    return response;
  }

  [[nodiscard]] bool keep_alive() const noexcept { return keep_alive_; }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
  // Bytes of this response seen so far (0: the peer closed or reset before answering at all).
  [[nodiscard]] std::size_t received() const noexcept { return initial_ + received_; }

 private:
  static constexpr std::size_t kMaxHeader = std::size_t{64} * 1024;

  static std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
  }
  static std::string trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
      text.remove_suffix(1);
    }
    return std::string(text);
  }

  bool parse_head(const std::string& head, HttpResponse& response, std::string& version) {
    std::istringstream lines(head);
    std::string status_line;
    std::getline(lines, status_line);
    if (!status_line.empty() && status_line.back() == '\r') status_line.pop_back();
    std::istringstream status(status_line);
    std::string code;
    status >> version >> code;
    if (version.rfind("HTTP/", 0) != 0 || code.size() != 3 ||
        !std::all_of(code.begin(), code.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; })) {
      error_ = "bad status line: " + status_line.substr(0, 80);
      return false;
    }
    response.status = std::stoi(code);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const auto colon = line.find(':');
      if (colon == std::string::npos) {
        error_ = "bad header line: " + line.substr(0, 80);
        return false;
      }
      const std::string name = lower(line.substr(0, colon));
      const std::string value = trim(std::string_view(line).substr(colon + 1));
      auto [it, inserted] = response.headers.emplace(name, value);
      if (!inserted) it->second += ", " + value;
    }
    return true;
  }

  bool read_chunked(std::string& body) {
    while (true) {
      const auto line_end = find_or_fill("\r\n", kMaxHeader);
      if (!line_end) return false;
      const std::string size_text = buffer_.substr(0, *line_end);
      buffer_.erase(0, *line_end + 2);
      std::size_t size = 0;
      try {
        size = static_cast<std::size_t>(std::stoull(size_text, nullptr, 16));
      } catch (const std::exception&) {
        error_ = "bad chunk size: " + size_text.substr(0, 40);
        return false;
      }
      if (size == 0) {
        // Trailer fields, then the empty line.
        while (true) {
          const auto trailer_end = find_or_fill("\r\n", kMaxHeader);
          if (!trailer_end) return false;
          buffer_.erase(0, *trailer_end + 2);
          if (*trailer_end == 0) return true;
        }
      }
      if (!fill_to(size + 2)) return false;
      body.append(buffer_, 0, size);
      buffer_.erase(0, size + 2);
    }
  }

  std::optional<std::size_t> find_or_fill(std::string_view needle, std::size_t limit) {
    while (true) {
      const auto at = buffer_.find(needle);
      if (at != std::string::npos) return at;
      if (buffer_.size() > limit) {
        error_ = "response header too large";
        return std::nullopt;
      }
      if (!fill()) {
        if (eof_) {
          error_ = received() == 0 ? "connection closed before any response byte"
                                   : "connection closed in the middle of the response";
        }
        return std::nullopt;
      }
    }
  }

  bool fill_to(std::size_t size) {
    while (buffer_.size() < size) {
      if (!fill()) {
        if (eof_) error_ = "connection closed in the middle of the body";
        return false;
      }
    }
    return true;
  }

  // Appends what the socket has; false on EOF (eof_ set), error, timeout or cancel.
  bool fill() {
    std::array<char, std::size_t{16} * 1024> chunk{};
    while (true) {
      const ssize_t got = ::recv(fd_, chunk.data(), chunk.size(), 0);
      if (got > 0) {
        buffer_.append(chunk.data(), static_cast<std::size_t>(got));
        received_ += static_cast<std::size_t>(got);
        return true;
      }
      if (got == 0) {
        eof_ = true;
        return false;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error_ = errno_text(received() == 0 ? "recv before any response byte" : "recv", errno);
        return false;
      }
      switch (wait_fd(fd_, POLLIN, deadline_, stop_)) {
        case Wait::kReady:
          continue;
        case Wait::kTimeout:
          error_ = "timeout waiting for the response";
          return false;
        case Wait::kCancelled:
          cancelled_ = true;
          error_ = "cancelled";
          return false;
        case Wait::kError:
          error_ = errno_text("poll", errno);
          return false;
      }
    }
  }

  int fd_;
  std::string& buffer_;
  Clock::time_point deadline_;
  const std::stop_token& stop_;
  std::size_t initial_;
  std::size_t received_ = 0;
  bool eof_ = false;
  bool cancelled_ = false;
  bool keep_alive_ = false;
  std::string error_;
};

std::string host_header(const std::string& host, std::uint16_t port) {
  if (host.rfind("unix:", 0) == 0) return "localhost";
  return describe_endpoint(host, port);
}

std::string get_request(const std::string& path, const std::string& host, bool close) {
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (close) request += "Connection: close\r\n";
  request += "\r\n";
  return request;
}

struct Exchange {
  std::optional<HttpResponse> response;
  std::string error;
  bool cancelled = false;
  bool keep_alive = false;
  std::size_t received = 0;
};

Exchange exchange(int fd, std::string& buffer, std::string_view raw, Clock::time_point deadline,
                  const std::stop_token& stop) {
  Exchange result;
  IoError io;
  if (!send_all(fd, raw, deadline, stop, io)) {
    result.error = io.text;
    result.cancelled = io.cancelled;
    return result;
  }
  ResponseReader reader(fd, buffer, deadline, stop);
  result.response = reader.read();
  result.error = reader.error();
  result.cancelled = reader.cancelled();
  result.keep_alive = reader.keep_alive();
  result.received = reader.received();
  return result;
}

Exchange fresh_get(const std::string& host, std::uint16_t port, const std::string& path,
                   std::chrono::milliseconds timeout, const std::stop_token& stop) {
  const auto deadline = Clock::now() + timeout;
  IoError io;
  auto fd = connect_to(host, port, deadline, stop, io);
  if (!fd) {
    Exchange failed;
    failed.error = io.text;
    failed.cancelled = io.cancelled;
    return failed;
  }
  std::string buffer;
  return exchange(fd->get(), buffer, get_request(path, host_header(host, port), true), deadline,
                  stop);
}

}  // namespace

// ---- binaries -----------------------------------------------------------------------------

std::string forkd_bin() {
#ifdef FORKD_BIN
  return FORKD_BIN;
#else
  return "forkd";
#endif
}

std::string forkctl_bin() {
#ifdef FORKCTL_BIN
  return FORKCTL_BIN;
#else
  return "forkctl";
#endif
}

std::string test_worker_bin() {
#ifdef TEST_WORKER_BIN
  return TEST_WORKER_BIN;
#else
  return "test_worker";
#endif
}

// ---- TempDir ------------------------------------------------------------------------------

TempDir::TempDir() {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string pattern = base + "/forkd-test.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp " + pattern);
  path_ = std::move(pattern);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  // Tests may leave read-only directories behind; make them writable so removal succeeds.
  for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
    }
  }
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(std::string_view name) const {
  return path_ + "/" + std::string(name);
}

std::string TempDir::write_file(std::string_view name, std::string_view text) const {
  std::string full = file(name);
  const auto parent = std::filesystem::path(full).parent_path();
  std::filesystem::create_directories(parent);
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + full);
  return full;
}

// ---- Listener -----------------------------------------------------------------------------

Listener::Listener(UniqueFd fd, std::uint16_t port, std::string host, std::string address)
    : fd_(std::move(fd)), port_(port), host_(std::move(host)), address_(std::move(address)) {}

namespace {

UniqueFd bind_loopback(int family, int backlog) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno(family == AF_INET ? "socket AF_INET" : "socket AF_INET6");
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (family == AF_INET) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&storage, &in, sizeof(in));
    length = sizeof(in);
  } else {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    std::memcpy(&storage, &in6, sizeof(in6));
    length = sizeof(in6);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
    throw_errno(family == AF_INET ? "bind 127.0.0.1:0" : "bind [::1]:0");
  }
  if (::listen(fd.get(), backlog) != 0) throw_errno("listen");
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    throw_errno("getsockname");
  }
  if (storage.ss_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, &storage, sizeof(in));
    return ntohs(in.sin_port);
  }
  sockaddr_in6 in6{};
  std::memcpy(&in6, &storage, sizeof(in6));
  return ntohs(in6.sin6_port);
}

}  // namespace

Listener Listener::tcp_v4(int backlog) {
  auto fd = bind_loopback(AF_INET, backlog);
  const auto port = bound_port(fd.get());
  return {std::move(fd), port, "127.0.0.1", "127.0.0.1:" + std::to_string(port)};
}

Listener Listener::tcp_v6(int backlog) {
  auto fd = bind_loopback(AF_INET6, backlog);
  const auto port = bound_port(fd.get());
  return {std::move(fd), port, "::1", "[::1]:" + std::to_string(port)};
}

Listener Listener::unix_socket(const std::string& path, int backlog) {
  sockaddr_un un{};
  if (path.size() >= sizeof(un.sun_path)) {
    throw std::invalid_argument("unix socket path too long (" + std::to_string(path.size()) +
                                " bytes): " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket AF_UNIX");
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  ::unlink(path.c_str());  // a stale socket file from an earlier run would make bind fail
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&un), sizeof(un)) != 0) {
    throw_errno("bind unix:" + path);
  }
  if (::listen(fd.get(), backlog) != 0) throw_errno("listen unix:" + path);
  return {std::move(fd), 0, "unix:" + path, "unix:" + path};
}

bool ipv6_loopback_available() {
  try {
    [[maybe_unused]] const auto probe = Listener::tcp_v6();
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

Endpoint parse_endpoint(std::string_view address) {
  if (address.rfind("unix:", 0) == 0) return Endpoint{std::string(address), 0};
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) {
    throw std::invalid_argument("address without port: " + std::string(address));
  }
  std::string host(address.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text(address.substr(colon + 1));
  if (!std::all_of(port_text.begin(), port_text.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }) ||
      port_text.size() > 5 || std::stoul(port_text) > 65535) {
    throw std::invalid_argument("bad port in address: " + std::string(address));
  }
  return Endpoint{host, static_cast<std::uint16_t>(std::stoul(port_text))};
}

// ---- run_command --------------------------------------------------------------------------

bool RunResult::exited() const noexcept {
  return WIFEXITED(status);
}
int RunResult::exit_code() const noexcept {
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
int RunResult::term_signal() const noexcept {
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

RunResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                      const std::map<std::string, std::string>& env,
                      std::optional<Credentials> as_user) {
  become_subreaper();
  auto out_pipe = common::make_pipe();
  auto err_pipe = common::make_pipe();
  const auto dev_null = open_dev_null();
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.env = build_environment(env);
  spec.stdin_fd = dev_null.get();
  spec.stdout_fd = out_pipe.second.get();
  spec.stderr_fd = err_pipe.second.get();
  spec.as_user = as_user;
  const pid_t pid = spawn(std::move(spec));
  out_pipe.second.reset();
  err_pipe.second.reset();

  RunResult result;
  auto deadline = Clock::now() + timeout;
  std::array<pollfd, 2> fds = {pollfd{out_pipe.first.get(), POLLIN, 0},
                               pollfd{err_pipe.first.get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&result.out, &result.err};
  std::array<char, std::size_t{16} * 1024> chunk{};
  bool killed = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const int left = remaining_ms(deadline);
    if (left <= 0) {
      if (killed) break;  // something outside the group still holds the pipes
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      killed = true;
      result.timed_out = true;
      deadline = Clock::now() + std::chrono::seconds(2);
      continue;
    }
    const int rc = ::poll(fds.data(), fds.size(), left);
    if (rc < 0 && errno != EINTR) throw_errno("poll");
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, chunk.data(), chunk.size());
      if (got > 0) {
        sinks[i]->append(chunk.data(), static_cast<std::size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
      }
    }
  }
  // Its pipes close before it has exited (coreutils close stdout and stderr in an atexit
  // handler): let it finish, as a zombie not reaped yet, before its group is killed, or the
  // SIGKILL meant for leftovers lands on the command itself and becomes its status.
  while (!result.timed_out) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) == 0 &&
        info.si_pid == pid) {
      break;
    }
    if (remaining_ms(deadline) <= 0) {
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Anything the command left behind in its group goes too. While the command itself is an
  // unreaped zombie its pid, the group id, cannot be recycled, so this kills nothing foreign.
  ::kill(-pid, SIGKILL);
  if (!sweep_until_gone([pid](const ProcStat& p) { return p.pgrp == pid && p.pid != pid; })) {
    std::cerr << "run_command: processes of group " << pid << " still present after "
              << kTeardownTimeout.count() << " ms\n";
  }
  while (::waitpid(pid, &result.status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  return result;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

std::string last_lines(std::string_view text, std::size_t n) {
  if (n == 0) return {};
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;  // the final newline ends the last line
  std::size_t seen = 0;
  while (pos > 0) {
    const auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string_view::npos) return std::string(text);
    if (++seen == n) return std::string(text.substr(nl + 1));
    pos = nl;
  }
  return std::string(text);
}

// ---- ForkdProcess -------------------------------------------------------------------------

const std::string& ForkdProcess::OutputFile::refresh() const {
  if (path.empty()) return text;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return text;
  std::array<char, std::size_t{64} * 1024> chunk{};
  while (true) {
    const ssize_t got =
        ::pread(fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(text.size()));
    if (got <= 0) break;
    text.append(chunk.data(), static_cast<std::size_t>(got));
  }
  return text;
}

ForkdProcess::~ForkdProcess() {
  try {
    kill_all();
    if (::testing::Test::HasFailure()) print_failure_log();
  } catch (const std::exception& e) {
    std::cerr << "ForkdProcess teardown: " << e.what() << '\n';
  }
}

PrivateNetwork::PrivateNetwork()
    : original_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
  if (!original_.valid()) throw common::system_error_from_errno("open /proc/thread-self/ns/net");
  if (::unshare(CLONE_NEWNET) != 0) throw common::system_error_from_errno("unshare(CLONE_NEWNET)");
  const auto fail = [this](const char* what) {
    const auto error = common::system_error_from_errno(what);
    (void)::setns(original_.get(), CLONE_NEWNET);
    throw std::system_error(error);
  };
  const common::UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (!probe.valid() || ::ioctl(probe.get(), SIOCGIFFLAGS, &request) != 0) fail("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(probe.get(), SIOCSIFFLAGS, &request) != 0) fail("SIOCSIFFLAGS lo up");
}

std::unique_ptr<PrivateNetwork> private_network_when_root() {
  return ::geteuid() == 0 ? std::make_unique<PrivateNetwork>() : nullptr;
}

PrivateNetwork::~PrivateNetwork() {
  if (::setns(original_.get(), CLONE_NEWNET) != 0) std::perror("setns back to the test's network");
}

void ForkdProcess::start(TempDir& dir, ForkdOptions options) {
  if (pid_ > 0) throw std::logic_error("ForkdProcess::start called twice");
  become_subreaper();
  binary_ = options.binary.empty() ? forkd_bin() : options.binary;
  // Several processes may share one temp dir (e.g. two masters): give each its own files.
  std::string stem = "forkd";
  for (int n = 2; std::filesystem::exists(dir.file(stem + ".yaml")) ||
                  std::filesystem::exists(dir.file(stem + ".stderr"));
       ++n) {
    stem = "forkd-" + std::to_string(n);
  }
  config_path_ = dir.write_file(stem + ".yaml", options.config_yaml);
  stdout_.path = dir.file(stem + ".stdout");
  stderr_.path = dir.file(stem + ".stderr");
  const auto out = open_output(stdout_.path);
  const auto err = open_output(stderr_.path);
  const auto dev_null = open_dev_null();

  SpawnSpec spec;
  spec.argv.push_back(binary_);
  if (options.use_config_flag) {
    spec.argv.emplace_back("-c");
    spec.argv.push_back(config_path_);
  }
  for (auto& arg : options.extra_args) spec.argv.push_back(std::move(arg));
  auto env = options.env;
  if (!options.listen_fds.empty()) {
    env["LISTEN_FDS"] = std::to_string(options.listen_fds.size());
    if (!options.listen_fdnames.empty()) env["LISTEN_FDNAMES"] = options.listen_fdnames;
    spec.set_listen_pid = true;
  }
  spec.env = build_environment(env);
  spec.stdin_fd = dev_null.get();
  spec.stdout_fd = out.get();
  spec.stderr_fd = err.get();
  spec.listen_fds = options.listen_fds;
  spec.as_user = options.as_user;
  if (!options.cgroup.empty()) spec.join_cgroup = options.cgroup + "/cgroup.procs";
  pid_ = spawn(std::move(spec));
}

std::string ForkdProcess::log() const {
  return stderr_.refresh();
}

std::string ForkdProcess::stdout_text() const {
  return stdout_.refresh();
}

std::optional<LogMatch> ForkdProcess::wait_for_log(const std::string& ecmascript_regex,
                                                   std::chrono::milliseconds timeout,
                                                   std::size_t from_offset) const {
  return wait_for(stderr_, ecmascript_regex, timeout, from_offset);
}

std::optional<LogMatch> ForkdProcess::wait_for_stdout(const std::string& ecmascript_regex,
                                                      std::chrono::milliseconds timeout,
                                                      std::size_t from_offset) const {
  return wait_for(stdout_, ecmascript_regex, timeout, from_offset);
}

std::size_t ForkdProcess::count_log(const std::string& ecmascript_regex,
                                    std::size_t from_offset) const {
  const std::regex re(ecmascript_regex, std::regex::ECMAScript);
  return count_lines_matching(stderr_.refresh(), re, from_offset);
}

std::optional<LogMatch> ForkdProcess::wait_for(const OutputFile& file, const std::string& re_text,
                                               std::chrono::milliseconds timeout,
                                               std::size_t from_offset) const {
  const std::regex re(re_text, std::regex::ECMAScript);
  const auto deadline = Clock::now() + timeout;
  std::size_t scan_from = from_offset;
  auto next_liveness_check = Clock::now();
  while (true) {
    const auto& text = file.refresh();
    if (auto match = search_lines(text, re, scan_from)) return match;
    // Lines already scanned are complete and did not match: skip them next time.
    const auto last_nl = text.rfind('\n');
    if (last_nl != std::string::npos && last_nl + 1 > scan_from) scan_from = last_nl + 1;
    if (Clock::now() >= deadline) return std::nullopt;
    // Nobody left to write: fail now instead of at the timeout. The group may outlive the master
    // (a hot upgrade hands over to a child), so only an empty group ends the wait.
    if (Clock::now() >= next_liveness_check) {
      next_liveness_check = Clock::now() + std::chrono::milliseconds(100);
      if (!group_has_members()) {
        return search_lines(file.refresh(), re, scan_from);
      }
    }
    std::this_thread::sleep_for(kOutputPoll);
  }
}

bool ForkdProcess::group_has_members() const {
  if (pid_ <= 0) return false;
  if (!reaped_) {
    siginfo_t info{};
    // Peek without reaping: the status stays for wait_exit().
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid != pid_) {
      return true;
    }
  }
  return std::ranges::any_of(all_processes(), [this](const ProcStat& proc) {
    return proc.pgrp == pid_ && proc.state != 'Z' && proc.pid != pid_;
  });
}

bool ForkdProcess::signal(int sig) const {
  if (pid_ <= 0 || reaped_) return false;
  return ::kill(pid_, sig) == 0;
}

std::optional<int> ForkdProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (!running()) return status_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kOutputPoll);
  }
}

bool ForkdProcess::running() {
  if (pid_ <= 0 || reaped_) return false;
  int status = 0;
  const pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got == pid_) {
    status_ = status;
    reaped_ = true;
    return false;
  }
  return true;
}

std::vector<pid_t> ForkdProcess::children() {
  if (pid_ <= 0 || reaped_) return {};
  auto pids = child_pids(pid_);
  for (const pid_t pid : pids) track(pid);
  return pids;
}

std::uint16_t free_tcp_port() {
  return Listener::tcp_v4().port();
}

std::vector<std::string> setpriv_as(uid_t uid) {
  const auto setpriv = find_tool("setpriv");
  if (!setpriv) throw std::runtime_error("setpriv (util-linux) is missing");
  const std::string id = std::to_string(uid);
  return {*setpriv, "--reuid=" + id, "--regid=" + id, "--clear-groups"};
}

uid_t spare_uid() {
  return 60000 + static_cast<uid_t>(::getpid() % 5000);
}

std::optional<LogMatch> ForkdProcess::hot_upgrade(std::size_t from,
                                                  std::chrono::milliseconds timeout) {
  if (!signal(SIGUSR2)) return std::nullopt;
  auto ready = wait_for_log(R"(hot upgrade: new master \(pid (\d+)\) is ready)", timeout, from);
  if (ready) track(std::stoi((*ready)[1]));
  return ready;
}

void ForkdProcess::track(pid_t pid) {
  if (pid <= 1) return;
  const auto start = process_start_time(pid);
  if (!start) return;  // already gone
  const bool known = std::any_of(tracked_.begin(), tracked_.end(), [&](const Tracked& t) {
    return t.pid == pid && t.start_time == *start;
  });
  if (!known) tracked_.push_back(Tracked{pid, *start});
}

void ForkdProcess::kill_all() {
  if (pid_ <= 0 || torn_down_) return;
  torn_down_ = true;
  if (!reaped_) {
    for (const pid_t pid : descendant_pids(pid_)) track(pid);
  }
  // Once reaped, pid_ may name a foreign group only if the number was recycled, and then a
  // process with that pid exists; while no such process exists the group can only be ours.
  const auto group_is_ours = [this] { return !reaped_ || !process_start_time(pid_).has_value(); };
  if (group_is_ours()) ::kill(-pid_, SIGKILL);
  if (!reaped_) ::kill(pid_, SIGKILL);
  for (const auto& t : tracked_) {
    if (process_start_time(t.pid) == t.start_time) ::kill(t.pid, SIGKILL);
  }
  if (!reaped_) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
    reaped_ = true;
  }
  // Killed workers are reparented to us (subreaper) as the master dies: reap them by pid, and
  // wait until every tracked process and group member is gone or is someone else's zombie.
  const bool group_ours = group_is_ours();
  const auto is_ours = [&](const ProcStat& p) {
    return (group_ours && p.pgrp == pid_) ||
           std::any_of(tracked_.begin(), tracked_.end(), [&](const Tracked& t) {
             return t.pid == p.pid && t.start_time == p.start_time;
           });
  };
  if (!sweep_until_gone(is_ours)) {
    std::cerr << "ForkdProcess teardown: processes of " << binary_ << " (pid " << pid_
              << ") still present after " << kTeardownTimeout.count() << " ms\n";
  }
}

void ForkdProcess::print_failure_log() const {
  if (pid_ <= 0) return;
  std::cerr << "---- " << binary_ << " (pid " << pid_ << ") "
            << (status_ ? describe_status(*status_) : std::string("still running"))
            << "; last 60 lines of " << stderr_.path << " ----\n"
            << last_lines(stderr_.refresh(), 60);
  const auto& out = stdout_.refresh();
  if (!out.empty()) {
    std::cerr << "---- last 20 lines of " << stdout_.path << " ----\n" << last_lines(out, 20);
  }
  std::cerr << "---- end of " << binary_ << " output ----\n";
}

// ---- waiting ------------------------------------------------------------------------------

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(poll, deadline - now));
  }
}

// ---- /proc --------------------------------------------------------------------------------

std::vector<pid_t> child_pids(pid_t pid) {
  std::vector<pid_t> children;
  const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  bool have_children_files = false;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
    const auto text = read_small_file(task.path().string() + "/children");
    if (!text) continue;
    have_children_files = true;
    std::istringstream in(*text);
    pid_t child = 0;
    while (in >> child) children.push_back(child);
  }
  if (!have_children_files && !ec) {
    // Kernels without CONFIG_PROC_CHILDREN: find the children by their parent pid.
    for (const auto& proc : all_processes()) {
      if (proc.ppid == pid) children.push_back(proc.pid);
    }
  }
  std::sort(children.begin(), children.end());
  children.erase(std::unique(children.begin(), children.end()), children.end());
  return children;
}

std::vector<pid_t> descendant_pids(pid_t pid) {
  std::multimap<pid_t, pid_t> by_parent;
  for (const auto& proc : all_processes()) by_parent.emplace(proc.ppid, proc.pid);
  std::vector<pid_t> result;
  std::vector<pid_t> queue = {pid};
  while (!queue.empty()) {
    const pid_t parent = queue.back();
    queue.pop_back();
    const auto [first, last] = by_parent.equal_range(parent);
    for (auto it = first; it != last; ++it) {
      result.push_back(it->second);
      queue.push_back(it->second);
    }
  }
  std::sort(result.begin(), result.end());
  return result;
}

std::optional<char> process_state(pid_t pid) {
  const auto stat = read_stat(pid);
  if (!stat) return std::nullopt;
  return stat->state;
}

bool process_alive(pid_t pid) {
  const auto state = process_state(pid);
  return state && *state != 'Z' && *state != 'X' && *state != 'x';
}

bool is_zombie(pid_t pid) {
  return process_state(pid) == 'Z';
}

std::optional<pid_t> parent_pid(pid_t pid) {
  const auto stat = read_stat(pid);
  if (!stat) return std::nullopt;
  return stat->ppid;
}

std::optional<unsigned long long> process_start_time(pid_t pid) {
  const auto stat = read_stat(pid);
  if (!stat) return std::nullopt;
  return stat->start_time;
}

long cpu_ticks(pid_t pid) {
  const std::string text = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stol(field);
  }
  return ticks;
}

std::vector<std::string> open_fds(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  std::vector<std::pair<int, std::string>> fds;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code link_ec;
    const auto target = std::filesystem::read_symlink(entry.path(), link_ec);
    if (link_ec) continue;  // closed while we were listing
    fds.emplace_back(std::stoi(name), target.string());
  }
  std::sort(fds.begin(), fds.end());
  std::vector<std::string> result;
  result.reserve(fds.size());
  for (const auto& [fd, target] : fds) result.push_back(std::to_string(fd) + " -> " + target);
  return result;
}

std::string fd_link_target(int fd) {
  std::error_code ec;
  const auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
  return ec ? std::string() : target.string();
}

// ---- HTTP ---------------------------------------------------------------------------------

std::string HttpResponse::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::optional<HttpResponse> http_get(const std::string& host_or_unix, std::uint16_t port,
                                     const std::string& path, std::chrono::milliseconds timeout,
                                     std::string* error) {
  auto result = fresh_get(host_or_unix, port, path, timeout, std::stop_token());
  if (!result.response && error != nullptr) *error = result.error;
  return std::move(result.response);
}

std::optional<HttpResponse> http_get(const Listener& listener, const std::string& path,
                                     std::chrono::milliseconds timeout, std::string* error) {
  return http_get(listener.host(), listener.port(), path, timeout, error);
}

HttpConnection::HttpConnection(const std::string& host_or_unix, std::uint16_t port,
                               std::chrono::milliseconds timeout)
    : host_header_(host_header(host_or_unix, port)), timeout_(timeout) {
  IoError io;
  if (auto fd = connect_to(host_or_unix, port, Clock::now() + timeout, std::stop_token(), io)) {
    fd_ = std::move(*fd);
  } else {
    error_ = io.text;
  }
}

HttpConnection::HttpConnection(const Listener& listener, std::chrono::milliseconds timeout)
    : HttpConnection(listener.host(), listener.port(), timeout) {}

std::optional<HttpResponse> HttpConnection::get(const std::string& path) {
  return request(get_request(path, host_header_, false));
}

std::optional<HttpResponse> HttpConnection::request(std::string_view raw) {
  if (!fd_) {
    if (error_.empty()) error_ = "connection is closed";
    return std::nullopt;
  }
  auto result = exchange(fd_.get(), pending_, raw, Clock::now() + timeout_, std::stop_token());
  if (!result.response) {
    error_ = result.error;
    failure_bytes_ = result.received;
    fd_.reset();
    return std::nullopt;
  }
  ++completed_;
  if (!result.keep_alive) {
    error_ = "server closed the connection (Connection: close)";
    fd_.reset();
  }
  return std::move(result.response);
}

bool HttpConnection::closed_by_peer() const {
  if (!fd_) return true;
  char byte = 0;
  const ssize_t got = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (got == 0) return true;
  return got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// ---- LoadGenerator ------------------------------------------------------------------------

LoadGenerator::LoadGenerator(LoadOptions options)
    : options_(std::move(options)), endpoint_(parse_endpoint(options_.address)) {}

LoadGenerator::~LoadGenerator() {
  stop();
}

void LoadGenerator::start() {
  if (!threads_.empty()) throw std::logic_error("LoadGenerator::start called twice");
  for (std::size_t i = 0; i < options_.keepalive_clients + options_.fresh_clients; ++i) {
    const bool keepalive = i < options_.keepalive_clients;
    threads_.emplace_back(
        [this, keepalive](const std::stop_token& stop) { run_client(stop, keepalive); });
  }
}

void LoadGenerator::stop() {
  for (auto& thread : threads_) thread.request_stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

std::vector<std::string> LoadGenerator::failures() const {
  const std::lock_guard lock(mutex_);
  return failures_;
}

std::map<std::string, std::uint64_t> LoadGenerator::tally() const {
  const std::lock_guard lock(mutex_);
  return tally_;
}

bool LoadGenerator::wait_for_ok(std::uint64_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return ok_.load() >= n; }, timeout, std::chrono::milliseconds(5));
}

void LoadGenerator::record_ok(const HttpResponse& response) {
  ok_.fetch_add(1);
  if (options_.tally_header.empty()) return;
  const std::lock_guard lock(mutex_);
  ++tally_[response.header(options_.tally_header)];
}

void LoadGenerator::record_failure(std::string reason) {
  failed_.fetch_add(1);
  const std::lock_guard lock(mutex_);
  if (failures_.size() < kMaxFailures) failures_.push_back(std::move(reason));
}

void LoadGenerator::run_client(const std::stop_token& stop, bool keepalive) {
  const std::string& host = endpoint_.host;
  const std::uint16_t port = endpoint_.port;
  const std::string what = (keepalive ? "keep-alive " : "fresh ") + options_.path + ": ";
  std::optional<UniqueFd> connection;
  std::string buffer;
  bool reused = false;  // the connection has already served a request
  while (!stop.stop_requested()) {
    Exchange result;
    if (!keepalive) {
      result = fresh_get(host, port, options_.path, options_.request_timeout, stop);
    } else {
      const auto deadline = Clock::now() + options_.request_timeout;
      if (!connection) {
        IoError io;
        connection = connect_to(host, port, deadline, stop, io);
        buffer.clear();
        reused = false;
        if (!connection) {
          result.error = io.text;
          result.cancelled = io.cancelled;
        }
      }
      if (connection) {
        result =
            exchange(connection->get(), buffer,
                     get_request(options_.path, host_header(host, port), false), deadline, stop);
        const bool stale = !result.response && !result.cancelled && reused && result.received == 0;
        if (stale && options_.retry_stale_keepalive) {
          stale_retries_.fetch_add(1);
          result = fresh_get(host, port, options_.path, options_.request_timeout, stop);
          connection.reset();
        } else if (!result.response || !result.keep_alive) {
          connection.reset();
        } else {
          reused = true;
        }
      }
    }
    if (result.cancelled || stop.stop_requested()) break;
    if (!result.response) {
      record_failure(what + result.error);
    } else if (result.response->status < 200 || result.response->status > 299) {
      record_failure(what + "status " + std::to_string(result.response->status));
    } else {
      record_ok(*result.response);
    }
    if (options_.pause.count() > 0) std::this_thread::sleep_for(options_.pause);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::optional<std::string> find_tool(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin"}) {
    const std::string candidate = std::string(dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::filesystem::path source_dir() {
  const std::filesystem::path build =
      std::filesystem::path(forkd_bin()).parent_path().parent_path();
  const std::regex line("^forkd_SOURCE_DIR:STATIC=(.*)$");
  std::istringstream cache(read_text((build / "CMakeCache.txt").string()));
  for (std::string text; std::getline(cache, text);) {
    std::smatch m;
    if (std::regex_match(text, m, line)) return {m[1].str()};
  }
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

}  // namespace forkd::test
