// Log lines a worker or a local user can cause, at flood rates: the master's log stays bounded,
// says how much it left out, carries no raw terminal control, and the master keeps answering.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>

#include "tests/integration/test_support.hpp"

namespace {

using namespace forkd::test;

// Lines of `text` that contain `needle`.
std::size_t count_lines_with(std::string_view text, std::string_view needle) {
  std::size_t count = 0;
  for (std::size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at)) {
    ++count;
    const std::size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  return count;
}

// Bytes a terminal would obey: C0 controls but tab and newline, and DEL.
std::size_t raw_controls(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return (b < 0x20 && c != '\n' && c != '\t') || b == 0x7f;
  }));
}

// Stops forkd gracefully: each worker's "N lines suppressed" still owed is said as it goes.
std::string stop_and_read_log(Cluster& c) {
  EXPECT_TRUE(c.forkd.signal(SIGTERM));
  EXPECT_TRUE(c.forkd.wait_exit(60s));
  return read_text(c.forkd.log_path());
}

TEST(LogFloodTest, AWorkerFloodingStdoutWithTerminalControlsIsEscapedAndLimited) {
  Cluster c;
  // 20 MB of "ESC[31m red CR line", then 2 MB of random bytes, then serving.
  const std::string script =
      c.dir.write_file("flood.sh",
                       "echo before the flood\n"
                       "yes \"$(printf '\\033[31mred\\rline')\" | head -c 20000000\n"
                       "head -c 2000000 /dev/urandom\n"
                       "echo\n"
                       "exec " +
                           test_worker_bin() + " --serve\n");
  c.start("workers: 1\nworker:\n  command: [/bin/sh, " + script + "]\n  ready: message\n");
  c.wait_all_ready(1, 120s);
  EXPECT_EQ(forkctl(c, {"status"}).exit_code(), 0);
  const std::string log = stop_and_read_log(c);

  const std::size_t lines = count_lines_with(log, ") stdout: ");
  std::printf("[ figures  ] 22 MB of output -> %zu lines, %zu bytes of log\n", lines, log.size());
  EXPECT_NE(log.find(") stdout: before the flood\n"), std::string::npos);  // ordinary: as it was
  EXPECT_NE(log.find(") stdout: \\x1b[31mred\\rline\n"), std::string::npos);
  EXPECT_EQ(raw_controls(log), 0U) << "a raw terminal control reached the log";
  // The burst (1000 lines) and 100 a second while the master drained the pipe.
  EXPECT_LE(lines, 4000U);
  EXPECT_LE(log.size(), std::size_t{4} << 20);
  EXPECT_NE(log.find(") output: "), std::string::npos) << last_lines(log, 10);
  EXPECT_NE(log.find(" lines suppressed"), std::string::npos) << last_lines(log, 10);
}

TEST(LogFloodTest, AWorkerFloodingItsIpcChannelWithBadLinesGetsAFewLogLines) {
  Cluster c;
  // Malformed lines, then forkd messages of an unknown kind made of terminal controls.
  const std::string script =
      c.dir.write_file("flood.sh",
                       "yes '{not json' | head -n 100000 >&\"$FORKD_IPC_FD\"\n"
                       "yes '{\"forkd\":\"\\u001b]0;owned\\u0007\\r\"}' | head -n 100000 "
                       ">&\"$FORKD_IPC_FD\"\n"
                       "exec " +
                           test_worker_bin() + " --serve\n");
  c.start("workers: 1\nworker:\n  command: [/bin/sh, " + script + "]\n  ready: message\n");
  c.wait_all_ready(1, 120s);
  EXPECT_EQ(forkctl(c, {"status"}).exit_code(), 0);
  const std::string log = stop_and_read_log(c);

  const std::size_t malformed = count_lines_with(log, "IPC: malformed JSON line dropped");
  const std::size_t unknown = count_lines_with(log, "sent unknown forkd message");
  std::printf("[ figures  ] 200000 bad IPC lines -> %zu + %zu log lines\n", malformed, unknown);
  EXPECT_GE(malformed, 1U);
  EXPECT_LE(malformed + unknown, 100U);
  EXPECT_EQ(raw_controls(log), 0U) << "a raw terminal control reached the log";
  EXPECT_NE(log.find(") messages: "), std::string::npos) << last_lines(log, 10);
  EXPECT_NE(log.find(" lines suppressed"), std::string::npos) << last_lines(log, 10);
}

TEST(LogFloodTest, RefusedControlClientsAtFloodRateGetAFewLogLines) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  Cluster c;
  ::chmod(c.dir.path().c_str(), 0755);
  c.start("workers: 1\ncontrol:\n  socket: " + c.dir.file("forkd.sock") + "\n  mode: \"0666\"\n");
  const std::size_t from = c.wait_all_ready(1);
  const uid_t uid = spare_uid();
  constexpr int kClients = 20000;
  const auto flood = run_command({"/usr/bin/python3", fixture("hostile_user.py"), "connect-flood",
                                  c.dir.file("forkd.sock"), std::to_string(kClients)},
                                 150s, {}, Credentials{uid, uid});
  ASSERT_EQ(flood.exit_code(), 0) << flood.out << flood.err;
  EXPECT_EQ(forkctl(c, {"status"}).exit_code(), 0);
  const std::size_t refused = c.forkd.count_log("refused control client uid", from);
  std::printf("[ figures  ] %d refused clients (%s) -> %zu log lines\n", kClients,
              flood.out.substr(0, flood.out.find('\n')).c_str(), refused);
  EXPECT_GE(refused, 1U);
  EXPECT_LE(refused, 200U);
  // The count comes with the uid's next line that passes.
  const std::string summary =
      "refused control clients of uid " + std::to_string(uid) + ": \\d+ lines suppressed";
  EXPECT_TRUE(wait_until(
      [&] {
        (void)run_command({"/usr/bin/python3", fixture("hostile_user.py"), "connect-flood",
                           c.dir.file("forkd.sock"), "1"},
                          20s, {}, Credentials{uid, uid});
        return c.forkd.count_log(summary, from) > 0;
      },
      20s, 200ms))
      << last_lines(c.forkd.log(), 10);
}

}  // namespace
