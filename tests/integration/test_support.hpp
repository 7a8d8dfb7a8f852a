// What every forkd integration test repeats: a temp dir, a pre-bound listener passed the
// systemd way, a config written around it, and forkd started and awaited until ready.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "tests/integration/harness.hpp"

namespace forkd::test {

using namespace std::chrono_literals;

// The control socket a config names (control.socket, block or flow style); "" when it names none.
std::string control_socket_in(const std::string& config_yaml);

// The parsed reply of `status` on a control socket; nullopt when nothing (valid) answered.
std::optional<nlohmann::json> control_status(const std::string& socket_path,
                                             std::chrono::milliseconds timeout = 10s);

// Polls `status` on a control socket ("" = the one forkd's config file names), with a backoff,
// until the master's generation is `generation` (its current one when nullopt) and n are ready.
// Returns forkd's log length up to its last complete line at that moment (a from_offset for
// wait_for_log), or nullopt, with *why saying what status showed last, after `timeout` or once
// the master has exited and nothing answers. The test connects as itself (root is always served),
// so a master running as another user, with its socket anywhere, is awaited the same way.
std::optional<std::size_t> wait_workers_ready(ForkdProcess& forkd, const std::string& socket_path,
                                              unsigned n,
                                              std::optional<unsigned> generation = std::nullopt,
                                              std::chrono::milliseconds timeout = 30s,
                                              std::string* why = nullptr);

// A running forkd serving on one passed 127.0.0.1 listener.
struct Cluster {
  TempDir dir;
  Listener listener = Listener::tcp_v4();
  ForkdProcess forkd;
  std::string cgroup;          // when set, forkd starts in this cgroup directory
  std::string control_socket;  // set by start(); "" = the one forkd's config file names

  // `body` is YAML appended after the listen/control keys (workers, worker, restart...); `env`
  // is added to forkd's environment.
  void start(const std::string& body, const std::vector<std::string>& extra_args = {},
             const std::map<std::string, std::string>& env = {}) {
    ForkdOptions options;
    // A body with its own control: section names the socket itself (at dir/forkd.sock).
    const bool own_control =
        body.rfind("control:", 0) == 0 || body.find("\ncontrol:") != std::string::npos;
    options.config_yaml =
        "listen:\n  - " + listener.address() + "\n" +
        (own_control ? "" : "control:\n  socket: " + dir.file("forkd.sock") + "\n") + body;
    options.listen_fds = {listener.fd()};
    options.extra_args = extra_args;
    options.cgroup = cgroup;
    options.env = env;
    control_socket = own_control ? control_socket_in(body) : dir.file("forkd.sock");
    forkd.start(dir, options);
  }

  // Waits (status on the control socket) until n workers of the current generation are ready;
  // returns the log offset at that moment (see wait_workers_ready), or 0 after a failure.
  std::size_t wait_all_ready(unsigned n, std::chrono::milliseconds timeout = 30s) {
    return wait_ready(n, std::nullopt, timeout);
  }
  // Same once the master has reached `generation` (a reload applied) and n of its workers are
  // ready.
  std::size_t wait_generation_ready(unsigned generation, unsigned n,
                                    std::chrono::milliseconds timeout = 30s) {
    return wait_ready(n, generation, timeout);
  }
  std::size_t wait_ready(unsigned n, std::optional<unsigned> generation,
                         std::chrono::milliseconds timeout) {
    std::string why;
    const auto at = wait_workers_ready(forkd, control_socket, n, generation, timeout, &why);
    EXPECT_TRUE(at.has_value()) << "forkd did not get " << n << " workers ready"
                                << (generation ? " in generation " + std::to_string(*generation)
                                               : std::string())
                                << ": " << why;
    return at.value_or(0);
  }

  std::optional<HttpResponse> get(const std::string& path,
                                  std::chrono::milliseconds timeout = 10s) {
    return http_get(listener, path, timeout);
  }

  // Rewrites the config file for a reload: the same listener and control socket, a new body.
  void rewrite_config(const std::string& body) {
    (void)dir.write_file("forkd.yaml", "listen:\n  - " + listener.address() +
                                           "\ncontrol:\n  socket: " + dir.file("forkd.sock") +
                                           "\n" + body);
  }
};

// tests/fixtures/<name>, found from this source file's place in the repository.
inline std::string fixture(const std::string& name) {
  const std::string here = __FILE__;
  return here.substr(0, here.rfind("/integration/")) + "/fixtures/" + name;
}

// forkctl against a cluster's control socket.
inline RunResult forkctl(Cluster& c, std::vector<std::string> args,
                         std::chrono::milliseconds timeout = 30s) {
  std::vector<std::string> argv = {forkctl_bin(), "-s", c.dir.file("forkd.sock")};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

// forkd with one reuseport listener on 127.0.0.1 that it binds itself (SO_REUSEPORT sockets must
// all be created with the option, so none is passed in), in a network namespace of its own when
// running as root (see private_network_when_root).
struct ReuseportCluster {
  std::unique_ptr<PrivateNetwork> net = private_network_when_root();
  TempDir dir;
  std::uint16_t port = free_tcp_port();
  ForkdProcess forkd;

  void start(unsigned workers) {
    ForkdOptions options;
    options.config_yaml =
        "workers: " + std::to_string(workers) + "\nlisten:\n  - address: " + address() +
        "\n    reuseport: true\ncontrol: {socket: " + dir.file("forkd.sock") + "}\n";
    forkd.start(dir, options);
    std::string why;
    ASSERT_TRUE(wait_workers_ready(forkd, dir.file("forkd.sock"), workers, std::nullopt, 30s, &why))
        << why;
  }
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  [[nodiscard]] RunResult forkctl(std::vector<std::string> args) const {
    args.insert(args.begin(), {forkctl_bin(), "-s", dir.file("forkd.sock")});
    return run_command(std::move(args), 60s);
  }
  // `forkctl --json status`, or null when it failed.
  [[nodiscard]] nlohmann::json status() const {
    const auto st = forkctl({"--json", "status"});
    return st.exit_code() == 0 ? nlohmann::json::parse(st.out) : nlohmann::json();
  }
  // The pid status lists for worker `id`, or 0.
  [[nodiscard]] pid_t worker_pid(unsigned id) const {
    const nlohmann::json s = status();
    if (!s.is_object()) return 0;
    for (const auto& w : s["workers"]) {
      if (w["id"] == id && w["pid"].is_number()) return w["pid"].get<pid_t>();
    }
    return 0;
  }
  // `clients` threads opening a connection per request, each waiting `timeout` at most for its
  // answer: the load the stall tests put some of on a stopped worker's queue.
  [[nodiscard]] LoadOptions fresh_connections(std::size_t clients,
                                              std::chrono::milliseconds timeout) const {
    LoadOptions lo;
    lo.address = address();
    lo.keepalive_clients = 0;
    lo.fresh_clients = clients;
    lo.request_timeout = timeout;
    return lo;
  }
};

// One request line on a fresh control connection; the reply line, or "" on timeout/close.
std::string control_request(const std::string& socket_path, const std::string& line,
                            std::chrono::milliseconds timeout = 10s);

// `forkctl events` running in the background, its stdout one JSON event per line.
struct EventStream {
  ForkdProcess process;
  void start(Cluster& c) {
    ForkdOptions options;
    options.binary = forkctl_bin();
    options.use_config_flag = false;
    options.extra_args = {"-s", c.dir.file("forkd.sock"), "events"};
    process.start(c.dir, options);
  }
  std::optional<LogMatch> wait_for(const std::string& regex, std::size_t from = 0,
                                   std::chrono::milliseconds timeout = 20s) {
    return process.wait_for_stdout(regex, timeout, from);
  }
};

// A directory `uid` owns (0700) inside `dir`, for the control socket of a forkd running as that
// uid: forkctl refuses a socket directory that another user owns or can write, so the test's
// forkctl then runs as `uid` too (forkctl_as). Needs root.
std::string socket_dir_for(const TempDir& dir, uid_t uid);
// forkctl run as `uid` (through setpriv) with these arguments.
RunResult forkctl_as(uid_t uid, const std::vector<std::string>& args,
                     std::chrono::milliseconds timeout = 30s);

// The "Key:\tvalue" line of /proc/PID/status, or "" (gone, or no such key).
inline std::string proc_status_line(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return line;
  }
  return "";
}

inline std::string test_worker_command(const std::string& flags) {
  return "  command: [" + test_worker_bin() + (flags.empty() ? "" : ", " + flags) + "]\n";
}

}  // namespace forkd::test
