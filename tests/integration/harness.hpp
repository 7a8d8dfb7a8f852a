// Integration-test harness: temp dirs, pre-bound listeners, spawning forkd (or any program) in its
// own process group with sockets passed the systemd way, log waiting, HTTP clients, load and /proc.
// It owns every process it starts and kills and reaps them by pid on teardown; it never signals a
// pid it has not seen as a descendant of a process it started, and never sleeps to synchronise.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/fd.hpp"

namespace forkd::test {

// Absolute paths of the built binaries (compile definitions of the integration_tests target).
[[nodiscard]] std::string forkd_bin();
[[nodiscard]] std::string forkctl_bin();
[[nodiscard]] std::string test_worker_bin();

// ---------------------------------------------------------------------------------------------
// Temporary directory under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // path() + "/" + name.
  [[nodiscard]] std::string file(std::string_view name) const;
  // Writes text to path()/name (parent directories created), returns the full path. Throws.
  std::string write_file(std::string_view name, std::string_view text) const;

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// The calling thread in a network namespace of its own, loopback up, until destruction puts it
// back; threads and processes it starts meanwhile are born in it. Its sysctls start at their
// defaults (net.ipv4.tcp_migrate_req = 0) and what forkd changes there stays there. Needs root;
// throws std::system_error.
class PrivateNetwork {
 public:
  PrivateNetwork();
  PrivateNetwork(const PrivateNetwork&) = delete;
  PrivateNetwork& operator=(const PrivateNetwork&) = delete;
  ~PrivateNetwork();

 private:
  common::UniqueFd original_;
};

// For tests where forkd, as root, turns tcp_migrate_req on (reuseport): a PrivateNetwork when
// running as root, so that the change does not leak into the machine; else nothing.
[[nodiscard]] std::unique_ptr<PrivateNetwork> private_network_when_root();

// ---------------------------------------------------------------------------------------------
// A bound, listening socket the test keeps (so the port stays reserved) and hands to forkd.
class Listener {
 public:
  [[nodiscard]] static Listener tcp_v4(int backlog = 128);  // 127.0.0.1:0
  [[nodiscard]] static Listener tcp_v6(int backlog = 128);  // [::1]:0
  [[nodiscard]] static Listener unix_socket(const std::string& path, int backlog = 128);

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }  // 0 for unix sockets
  // forkd config syntax: "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path".
  [[nodiscard]] const std::string& address() const noexcept { return address_; }
  // The host part for http_get/HttpConnection: "127.0.0.1", "::1" or "unix:/path".
  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  // Drops the test's copy so that, once forkd is gone too, connecting is refused instead of
  // queueing in the backlog.
  void close() noexcept { fd_.reset(); }

 private:
  Listener(common::UniqueFd fd, std::uint16_t port, std::string host, std::string address);
  common::UniqueFd fd_;
  std::uint16_t port_ = 0;
  std::string host_;
  std::string address_;
};

// True when [::1] can be bound here (IPv6 may be disabled in containers).
[[nodiscard]] bool ipv6_loopback_available();

// host ("127.0.0.1", "::1", "localhost", or "unix:/path") and port, as the HTTP helpers take them.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};
// Parses forkd address syntax ("127.0.0.1:80", "[::1]:80", "unix:/p"); throws on bad input.
[[nodiscard]] Endpoint parse_endpoint(std::string_view address);

// ---------------------------------------------------------------------------------------------
// Running programs.

// Identity to switch to in the child before exec (needs root).
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct RunResult {
  int status = 0;          // raw wait status
  bool timed_out = false;  // killed (with its process group) because the timeout expired
  std::string out;
  std::string err;
  [[nodiscard]] bool exited() const noexcept;
  [[nodiscard]] int exit_code() const noexcept;    // -1 unless exited()
  [[nodiscard]] int term_signal() const noexcept;  // 0 unless killed by a signal
};

// A 127.0.0.1 port the kernel just handed out and that is free again, for a daemon that must
// bind it itself (reuseport sockets, metrics, socket activation).
[[nodiscard]] std::uint16_t free_tcp_port();

// The start of an argv that runs the rest as `uid` (group `uid`, no supplementary groups)
// through setpriv, which keeps the pid, so LISTEN_PID still holds. Needs root; throws
// std::runtime_error when setpriv is missing.
[[nodiscard]] std::vector<std::string> setpriv_as(uid_t uid);
// A uid no account has, different for each test process: nothing else counts against its
// process limit.
[[nodiscard]] uid_t spare_uid();

// Runs argv[0] (a path, no PATH search) with the test's environment plus env, stdin /dev/null, in
// its own process group; captures stdout and stderr. On timeout SIGKILLs the group. Throws
// std::system_error when the program cannot be started (exec or setuid failed).
[[nodiscard]] RunResult run_command(std::vector<std::string> argv,
                                    std::chrono::milliseconds timeout,
                                    const std::map<std::string, std::string>& env = {},
                                    std::optional<Credentials> as_user = std::nullopt);

// "exited 3", "killed by signal 9 (Killed)", ...
[[nodiscard]] std::string describe_status(int status);
// The last n lines of text (all of it when it has fewer).
[[nodiscard]] std::string last_lines(std::string_view text, std::size_t n);

// A regex match in a process's output. Matching is per complete line (a line still being
// written is never matched), so ^ and $ anchor at line boundaries.
struct LogMatch {
  std::string text;                 // the whole match
  std::vector<std::string> groups;  // groups[0] == text; groups[i] = capture i ("" if unmatched)
  std::string line;                 // the complete line that matched
  std::size_t end_offset = 0;       // just past the match: from_offset for the next occurrence
  [[nodiscard]] const std::string& operator[](std::size_t i) const { return groups.at(i); }
};

struct ForkdOptions {
  std::string config_yaml;                 // written to the temp dir as forkd[-N].yaml
  std::vector<std::string> extra_args;     // after "-c FILE"
  std::vector<int> listen_fds;             // dup'ed to 3, 4, ... with LISTEN_FDS / LISTEN_PID
  std::string listen_fdnames;              // LISTEN_FDNAMES, only if non-empty
  std::map<std::string, std::string> env;  // added to (overriding) the test's environment
  bool use_config_flag = true;             // false: no "-c FILE" (the file is still written)
  std::string binary;                      // empty = FORKD_BIN; e.g. "/bin/sh" for stand-ins
  std::optional<Credentials> as_user;      // setgid/setuid before exec (needs root)
  std::string cgroup;                      // a cgroup directory to start in (needs root)
};

// One forkd master (or stand-in) started in its own process group, stdout and stderr to files in
// the temp dir. The destructor SIGKILLs the group, every descendant and every pid it has seen
// (children(), track()), reaps them, and prints the log tail if the current test failed.
// Call start() from the test's main thread: the child asks for SIGKILL when that thread exits.
// start() makes the test process a child subreaper, so processes orphaned by a killed master are
// reparented to the test and reaped by pid here rather than left as zombies.
class ForkdProcess {
 public:
  ForkdProcess() = default;
  ForkdProcess(const ForkdProcess&) = delete;
  ForkdProcess& operator=(const ForkdProcess&) = delete;
  ForkdProcess(ForkdProcess&&) = delete;
  ForkdProcess& operator=(ForkdProcess&&) = delete;
  ~ForkdProcess();

  // Throws std::system_error if the binary cannot be exec'd, std::logic_error if already running.
  void start(TempDir& dir, ForkdOptions options);

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::string& config_path() const noexcept { return config_path_; }
  [[nodiscard]] const std::string& log_path() const noexcept { return stderr_.path; }
  [[nodiscard]] const std::string& stdout_path() const noexcept { return stdout_.path; }

  [[nodiscard]] std::string log() const;  // stderr so far (also of descendants sharing it)
  [[nodiscard]] std::string stdout_text() const;

  // Polls stderr every few ms for the ECMAScript regex in complete lines at or after from_offset.
  [[nodiscard]] std::optional<LogMatch> wait_for_log(const std::string& ecmascript_regex,
                                                     std::chrono::milliseconds timeout,
                                                     std::size_t from_offset = 0) const;
  // Same on stdout (for forkctl events and other streaming stand-ins).
  [[nodiscard]] std::optional<LogMatch> wait_for_stdout(const std::string& ecmascript_regex,
                                                        std::chrono::milliseconds timeout,
                                                        std::size_t from_offset = 0) const;
  // Number of matches in complete stderr lines at or after from_offset.
  [[nodiscard]] std::size_t count_log(const std::string& ecmascript_regex,
                                      std::size_t from_offset = 0) const;

  // kill(pid, sig); false (and no signal) once the process has been reaped.
  bool signal(int sig) const;
  // Raw wait status once the master exits within timeout (polls waitpid WNOHANG).
  [[nodiscard]] std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  [[nodiscard]] bool running();  // reaps (and keeps the status) if it has exited
  [[nodiscard]] std::optional<int> exit_status() const noexcept { return status_; }

  // Direct children of the master, now (zombies it has not reaped yet included); each is tracked
  // for teardown.
  [[nodiscard]] std::vector<pid_t> children();
  // Remember pid (if it exists) so teardown kills it even after the master is gone.
  void track(pid_t pid);
  // SIGUSR2, then waits (past log offset `from`) until the new master says it is ready; tracks
  // it and returns its log match (pid in [1]), or nullopt.
  [[nodiscard]] std::optional<LogMatch> hot_upgrade(
      std::size_t from = 0, std::chrono::milliseconds timeout = std::chrono::seconds{30});
  // Teardown now (what the destructor does, minus the failure log). Idempotent.
  void kill_all();

 private:
  struct OutputFile {
    std::string path;
    mutable std::string text;  // cache: files only grow, so only the new bytes are read
    const std::string& refresh() const;
  };
  struct Tracked {
    pid_t pid;
    unsigned long long start_time;  // guards against signalling a recycled pid
  };
  [[nodiscard]] std::optional<LogMatch> wait_for(const OutputFile& file, const std::string& re,
                                                 std::chrono::milliseconds timeout,
                                                 std::size_t from_offset) const;
  [[nodiscard]] bool group_has_members() const;
  void print_failure_log() const;

  pid_t pid_ = -1;
  bool reaped_ = false;
  bool torn_down_ = false;
  std::optional<int> status_;
  std::string binary_;
  std::string config_path_;
  OutputFile stdout_;
  OutputFile stderr_;
  std::vector<Tracked> tracked_;
};

// The whole text of a file ("" when it cannot be read).
[[nodiscard]] std::string read_text(const std::string& path);
// A system program in /usr/bin, /bin or /usr/local/bin, as tests call them by absolute path.
[[nodiscard]] std::optional<std::string> find_tool(const std::string& name);
// The source tree, as recorded in the build directory's CMake cache (FORKD_BIN is
// <build>/bin/forkd); the place of the harness's source file as a fallback.
[[nodiscard]] std::filesystem::path source_dir();

// ---------------------------------------------------------------------------------------------
// Waiting.

// Polls pred until it is true (returns true) or timeout passes (returns false, after one last
// evaluation at the deadline).
[[nodiscard]] bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                              std::chrono::milliseconds poll = std::chrono::milliseconds{10});

// ---------------------------------------------------------------------------------------------
// /proc helpers (Linux).

[[nodiscard]] std::vector<pid_t> child_pids(pid_t pid);       // direct children, sorted
[[nodiscard]] std::vector<pid_t> descendant_pids(pid_t pid);  // children, grandchildren, ...
[[nodiscard]] bool process_alive(pid_t pid);                  // exists and is not a zombie
[[nodiscard]] bool is_zombie(pid_t pid);
[[nodiscard]] std::optional<char> process_state(pid_t pid);  // 'R', 'S', 'Z', ... from stat
[[nodiscard]] std::optional<pid_t> parent_pid(pid_t pid);
[[nodiscard]] std::optional<unsigned long long> process_start_time(pid_t pid);  // clock ticks
// "N -> target" per open fd, sorted by fd number, e.g. "3 -> socket:[123]".
[[nodiscard]] std::vector<std::string> open_fds(pid_t pid);
// utime + stime of a process so far, in clock ticks (sysconf(_SC_CLK_TCK) per second).
[[nodiscard]] long cpu_ticks(pid_t pid);
// The "socket:[inode]" text a /proc fd link shows for one of our own fds.
[[nodiscard]] std::string fd_link_target(int fd);

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client helpers (Content-Length, chunked and read-until-close bodies).

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; repeated ones joined by ", "
  std::string body;
  [[nodiscard]] std::string header(const std::string& lower_name) const;  // "" if absent
};

// One GET on a fresh connection with "Connection: close". host: "127.0.0.1", "::1", "[::1]",
// "localhost" or "unix:/path" (port ignored). nullopt on any failure or timeout; *error says why.
[[nodiscard]] std::optional<HttpResponse> http_get(const std::string& host_or_unix,
                                                   std::uint16_t port, const std::string& path,
                                                   std::chrono::milliseconds timeout,
                                                   std::string* error = nullptr);
[[nodiscard]] std::optional<HttpResponse> http_get(const Listener& listener,
                                                   const std::string& path,
                                                   std::chrono::milliseconds timeout,
                                                   std::string* error = nullptr);

// A keep-alive connection: connects once (in the constructor), then any number of requests.
// After a failure, or a response that closes the connection, is_open() is false and every
// further request fails: it never reconnects behind the caller's back.
class HttpConnection {
 public:
  HttpConnection(const std::string& host_or_unix, std::uint16_t port,
                 std::chrono::milliseconds timeout = std::chrono::seconds{5});
  explicit HttpConnection(const Listener& listener,
                          std::chrono::milliseconds timeout = std::chrono::seconds{5});

  [[nodiscard]] bool is_open() const noexcept { return fd_.valid(); }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] std::optional<HttpResponse> get(const std::string& path);
  // Sends raw bytes as they are (e.g. a malformed request) and reads one response.
  [[nodiscard]] std::optional<HttpResponse> request(std::string_view raw);
  // Requests answered on this connection so far.
  [[nodiscard]] std::size_t completed() const noexcept { return completed_; }
  // Non-blocking: true if the server has closed (or reset) the idle connection.
  [[nodiscard]] bool closed_by_peer() const;
  // Bytes of the last failed response received before the failure (0 = nothing came back).
  [[nodiscard]] std::size_t last_failure_bytes() const noexcept { return failure_bytes_; }

 private:
  std::string host_header_;
  std::chrono::milliseconds timeout_;
  common::UniqueFd fd_;
  std::string pending_;  // bytes received beyond the last response
  std::string error_;
  std::size_t completed_ = 0;
  std::size_t failure_bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Load for zero-downtime tests.

struct LoadOptions {
  std::string address;  // forkd syntax: "127.0.0.1:PORT", "[::1]:PORT", "unix:/path"
  std::string path = "/";
  std::size_t keepalive_clients = 2;  // threads reusing one connection
  std::size_t fresh_clients = 2;      // threads opening a connection per request
  std::chrono::milliseconds request_timeout = std::chrono::seconds{5};
  std::chrono::milliseconds pause{0};  // between two requests of one client
  // A reused keep-alive connection that the server closed while idle (no byte of the response
  // came back) is retried once on a fresh connection, as browsers and HTTP libraries do
  // (RFC 9112 9.3.1); counted in stale_retries(), and as failed only if the retry fails.
  bool retry_stale_keepalive = true;
  std::string tally_header = "x-worker-pid";  // values counted per response, see tally()
};

// N client threads sending GETs in a loop; any connect error, reset, timeout or non-2xx counts as
// failed, and the first 20 failure reasons are kept. Requests cut short by stop() are not counted.
class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions options);
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;
  LoadGenerator(LoadGenerator&&) = delete;
  LoadGenerator& operator=(LoadGenerator&&) = delete;
  ~LoadGenerator();

  void start();
  void stop();  // joins the threads; idempotent

  [[nodiscard]] std::uint64_t ok() const noexcept { return ok_.load(); }
  [[nodiscard]] std::uint64_t failed() const noexcept { return failed_.load(); }
  [[nodiscard]] std::uint64_t stale_retries() const noexcept { return stale_retries_.load(); }
  [[nodiscard]] std::vector<std::string> failures() const;
  // Responses per value of options.tally_header (e.g. which worker pids answered).
  [[nodiscard]] std::map<std::string, std::uint64_t> tally() const;
  // Waits until at least n requests succeeded in total.
  [[nodiscard]] bool wait_for_ok(std::uint64_t n, std::chrono::milliseconds timeout) const;

 private:
  void run_client(const std::stop_token& stop, bool keepalive);
  void record_ok(const HttpResponse& response);
  void record_failure(std::string reason);

  static constexpr std::size_t kMaxFailures = 20;
  LoadOptions options_;
  Endpoint endpoint_;
  std::atomic<std::uint64_t> ok_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> stale_retries_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> failures_;
  std::map<std::string, std::uint64_t> tally_;
  std::vector<std::jthread> threads_;
};

}  // namespace forkd::test
