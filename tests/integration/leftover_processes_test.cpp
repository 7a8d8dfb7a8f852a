// What a worker leaves behind: a process it started that outlives it, still holding the
// listener on fd 3. Each worker runs in a process group of its own, and what is left in that
// group when the worker exits is stopped with it: SIGTERM, then SIGKILL after shutdown_timeout.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

// The pid a worker script wrote to `path`, once the file is complete.
std::optional<pid_t> read_pid_file(const std::string& path) {
  std::optional<pid_t> pid;
  if (!wait_until(
          [&] {
            const std::string text = read_text(path);
            if (text.empty() || text.back() != '\n') return false;
            pid = std::stoi(text);
            return true;
          },
          20s)) {
    return std::nullopt;
  }
  return pid;
}

// A worker shell script. The first time it runs it starts `leftover` in the background (it
// inherits fd 3, the listener) and writes its pid to leftover.pid; then it runs `then`.
std::string worker_script(const TempDir& dir, const std::string& leftover,
                          const std::string& then) {
  const std::string marker = dir.file("started-once");
  const std::string pid_file = dir.file("leftover.pid");
  std::string text = "#!/bin/sh\n";
  text += "if [ ! -e " + marker + " ]; then\n";
  text += "  : > " + marker + "\n";
  text += "  " + leftover + " &\n";
  text += "  echo $! > " + pid_file + ".tmp && mv " + pid_file + ".tmp " + pid_file + "\n";
  text += then + "\nfi\n";
  text += "exec " + test_worker_bin() + " --serve\n";
  std::string path = dir.write_file("worker.sh", text);
  ::chmod(path.c_str(), 0755);
  return path;
}

TEST(LeftoverProcessesTest, EachWorkerLeadsAGroupOfItsOwnInTheMastersSession) {
  Cluster c;
  c.start("workers: 2\n");
  c.wait_all_ready(2);
  const auto workers = c.forkd.children();
  ASSERT_EQ(workers.size(), 2U);
  for (const pid_t worker : workers) {
    EXPECT_EQ(::getpgid(worker), worker);
    EXPECT_EQ(::getsid(worker), ::getsid(c.forkd.pid()));  // the terminal's, if it has one
  }
  // The terminal's Ctrl-C goes to the master's group: the master alone, which stops gracefully.
  ASSERT_EQ(::kill(-::getpgid(c.forkd.pid()), SIGINT), 0);
  const auto status = c.forkd.wait_exit(30s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
}

TEST(LeftoverProcessesTest, WhatAnExitedWorkerLeftIsStoppedWhenItIsReplaced) {
  Cluster c;
  // The first worker starts the leftover and exits at once; its replacement serves.
  const std::string script = worker_script(c.dir, "sleep 1000", "  exit 0");
  c.start("workers: 1\nrestart: {delay: 50ms}\nworker:\n  command: [" + script +
          "]\n  ready: message\n  shutdown_timeout: 5s\n");
  const auto leftover = read_pid_file(c.dir.file("leftover.pid"));
  ASSERT_TRUE(leftover) << c.forkd.log();
  c.forkd.track(*leftover);  // killed and reaped by teardown if forkd leaves it
  c.wait_all_ready(1);
  EXPECT_TRUE(wait_until([&] { return !process_alive(*leftover); }, 10s))
      << "pid " << *leftover << " left by the first worker still runs, fds: "
      << ::testing::PrintToString(open_fds(*leftover));
  // Reaped by the master, not left a zombie.
  EXPECT_TRUE(wait_until([&] { return !process_start_time(*leftover).has_value(); }, 10s));
  auto r = c.get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(LeftoverProcessesTest, StopWaitsForWhatAWorkerLeftSoTheNextStartCanBind) {
  TempDir dir;
  const std::uint16_t port = free_tcp_port();
  // The leftover is a child of the running worker, in its group, holding the listener.
  const std::string script = worker_script(dir, "sleep 1000", "");
  const std::string config = "listen: [127.0.0.1:" + std::to_string(port) +
                             "]\ncontrol: {socket: " + dir.file("forkd.sock") +
                             "}\nworkers: 1\nworker:\n  command: [" + script +
                             "]\n  ready: message\n  shutdown_timeout: 5s\n";
  ForkdOptions options;
  options.config_yaml = config;
  ForkdProcess first;
  first.start(dir, options);
  std::string why;
  ASSERT_TRUE(wait_workers_ready(first, dir.file("forkd.sock"), 1, std::nullopt, 30s, &why)) << why;
  const auto leftover = read_pid_file(dir.file("leftover.pid"));
  ASSERT_TRUE(leftover);
  first.track(*leftover);
  ASSERT_TRUE(process_alive(*leftover));
  ASSERT_TRUE(first.signal(SIGTERM));
  const auto status = first.wait_exit(30s);
  ASSERT_TRUE(status) << "forkd did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
  EXPECT_FALSE(process_alive(*leftover))
      << "forkd exited while pid " << *leftover
      << " its worker left still runs, fds: " << ::testing::PrintToString(open_fds(*leftover));

  ForkdProcess second;
  second.start(dir, options);
  EXPECT_TRUE(wait_workers_ready(second, dir.file("forkd.sock"), 1, std::nullopt, 30s, &why))
      << why;
  EXPECT_EQ(second.log().find("in use"), std::string::npos) << second.log();
}

TEST(LeftoverProcessesTest, ALeftoverThatIgnoresSigtermIsKilledAfterShutdownTimeout) {
  Cluster c;
  const std::string script = worker_script(c.dir, "(trap '' TERM; exec sleep 1000)", "");
  c.start("workers: 1\nworker:\n  command: [" + script +
          "]\n  ready: message\n  shutdown_timeout: 1s\n");
  auto from = c.wait_all_ready(1);
  const auto leftover = read_pid_file(c.dir.file("leftover.pid"));
  ASSERT_TRUE(leftover);
  c.forkd.track(*leftover);
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string ignored = proc_status_line(*leftover, "SigIgn");
        return !ignored.empty() &&
               (std::stoull(ignored.substr(7), nullptr, 16) & (1ULL << (SIGTERM - 1))) != 0;
      },
      10s))
      << "the leftover does not ignore SIGTERM";

  auto restart = forkctl(c, {"restart", "0"});
  ASSERT_EQ(restart.exit_code(), 0) << restart.err;
  auto termed = c.forkd.wait_for_log("left processes behind", 20s, from);
  ASSERT_TRUE(termed) << "no SIGTERM for what the worker left";
  EXPECT_TRUE(process_alive(*leftover)) << "killed before its grace period";
  EXPECT_TRUE(
      c.forkd.wait_for_log("sending SIGKILL to its process group", 10s, termed->end_offset));
  EXPECT_TRUE(wait_until([&] { return !process_alive(*leftover); }, 10s))
      << "pid " << *leftover << " ignores SIGTERM and was never killed";
}

}  // namespace
