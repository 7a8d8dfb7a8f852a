// A worker's stdout/stderr read into the master's log line by line: lines split at kMaxLine,
// an unfinished line kept until its end (or EOF), and no buffer held once the worker is quiet.
#include "daemon/output_capture.hpp"

#include <gtest/gtest.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "daemon/master.hpp"

#include "tests/unit/process_test_support.hpp"
#include "tests/unit/recording_sink.hpp"

namespace {

using forkd::common::make_pipe;
using forkd::daemon::LimitedLog;
using forkd::daemon::OutputCapture;
using forkd::test::run_until;

// Records what the "worker" logger writes while it exists, in place of its usual sink.
class RecordedLog {
 public:
  RecordedLog()
      : logger_(forkd::common::log::get("worker")),
        saved_(logger_->sinks()),
        sink_(std::make_shared<Sink>()) {
    logger_->sinks() = {sink_};
  }
  RecordedLog(const RecordedLog&) = delete;
  RecordedLog& operator=(const RecordedLog&) = delete;
  RecordedLog(RecordedLog&&) = delete;
  RecordedLog& operator=(RecordedLog&&) = delete;
  ~RecordedLog() { logger_->sinks() = saved_; }

  [[nodiscard]] const std::vector<std::string>& lines() const { return sink_->lines; }

 private:
  using Sink = forkd::test::RecordingSink;

  std::shared_ptr<spdlog::logger> logger_;
  std::vector<spdlog::sink_ptr> saved_;
  std::shared_ptr<Sink> sink_;
};

// The worker's output limit as the master sets it.
std::shared_ptr<LimitedLog> worker_output_log() {
  return std::make_shared<LimitedLog>(forkd::common::log::get("worker"), "w0 output",
                                      forkd::daemon::WorkerLogs::kOutputRate);
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    ASSERT_GT(n, 0);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

TEST(OutputCaptureTest, LogsLineByLineSplitsLongLinesAndFlushesTheLastAtEof) {
  const RecordedLog log;
  asio::io_context io;
  auto [read_end, write_end] = make_pipe();
  auto capture =
      OutputCapture::open(io, std::move(read_end), "w0 stderr", true, worker_output_log());
  write_all(write_end.get(), "hello\n\nwor");
  ASSERT_TRUE(run_until(io, [&] { return log.lines().size() == 2; }));
  write_all(write_end.get(), "ld\n" + std::string(OutputCapture::kMaxLine + 10, 'x') + "\ntail");
  ASSERT_TRUE(run_until(io, [&] { return log.lines().size() == 5; }));
  write_end.reset();
  ASSERT_TRUE(run_until(io, [&] { return log.lines().size() == 6; }));
  const std::string w = "warning w0 stderr: ";
  EXPECT_EQ(log.lines(), (std::vector<std::string>{w + "hello", w, w + "world",
                                                   w + std::string(OutputCapture::kMaxLine, 'x'),
                                                   w + std::string(10, 'x'), w + "tail"}));
}

TEST(OutputCaptureTest, HoldsNoBufferOnceABurstIsLoggedAndTheWorkerIsQuiet) {
  // No read buffer inside the capture: it reads into one on the stack when data is there.
  EXPECT_LT(sizeof(OutputCapture), 1024U);

  const RecordedLog log;
  asio::io_context io;
  auto [read_end, write_end] = make_pipe();
  auto capture =
      OutputCapture::open(io, std::move(read_end), "w0 stdout", false, worker_output_log());
  // Lines of 1000 bytes written in pieces of 777: most are unfinished at the end of a read.
  std::string burst;
  constexpr int kLines = 500;
  for (int i = 0; i < kLines; ++i)
    burst += std::string(999, static_cast<char>('a' + i % 26)) + "\n";
  std::thread worker([fd = write_end.get(), &burst] {
    for (std::size_t at = 0; at < burst.size(); at += 777) {
      write_all(fd, std::string_view(burst).substr(at, 777));
    }
  });
  const bool logged = run_until(io, [&] { return log.lines().size() == kLines; });
  worker.join();
  ASSERT_TRUE(logged);
  EXPECT_EQ(log.lines().back(), "info w0 stdout: " + std::string(999, 'a' + (kLines - 1) % 26));
  EXPECT_LE(capture->buffer_capacity(), std::string().capacity());
  capture->close();
}

TEST(OutputCaptureTest, EscapesControlCharactersAndKeepsPrintableTextAndUtf8) {
  const RecordedLog log;
  asio::io_context io;
  auto [read_end, write_end] = make_pipe();
  auto capture =
      OutputCapture::open(io, std::move(read_end), "w0 stdout", false, worker_output_log());
  write_all(write_end.get(),
            "plain text, tabs\tand UTF-8: caf\xc3\xa9 \xe2\x9c\x93\n"
            "\x1b[2J\x1b]0;owned\x07progress 10%\rprogress 20%\r\n");
  ASSERT_TRUE(run_until(io, [&] { return log.lines().size() == 2; }));
  EXPECT_EQ(log.lines()[0],
            "info w0 stdout: plain text, tabs\tand UTF-8: caf\xc3\xa9 \xe2\x9c\x93");
  EXPECT_EQ(log.lines()[1],
            "info w0 stdout: \\x1b[2J\\x1b]0;owned\\x07progress 10%\\rprogress 20%\\r");
  capture->close();
}

// A worker writing as fast as it can: what reaches the log is bounded in lines and bytes, and
// says how much it left out.
TEST(OutputCaptureTest, AFloodIsCutToTheWorkersLimitAndCounted) {
  const RecordedLog log;
  asio::io_context io;
  auto [read_end, write_end] = make_pipe();
  const auto limit = worker_output_log();
  auto capture = OutputCapture::open(io, std::move(read_end), "w0 stdout", false, limit);
  constexpr int kLines = 100000;
  std::thread worker([write_end = std::move(write_end)]() mutable {
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += "\x1b[31mred\rline\n";
    for (int i = 0; i < kLines / 1000; ++i) write_all(write_end.get(), chunk);
    write_end.reset();  // EOF: the capture closes
  });
  const bool drained = run_until(io, [&] { return capture->closed(); });
  worker.join();
  ASSERT_TRUE(drained);
  limit->flush();
  const auto& lines = log.lines();
  // The burst, what refilled meanwhile (a fraction of a second here), and the summary.
  EXPECT_GE(lines.size(), 1000U);
  EXPECT_LT(lines.size(), 2000U);
  EXPECT_EQ(lines.front(), "info w0 stdout: \\x1b[31mred\\rline");
  EXPECT_NE(lines.back().find("w0 output: "), std::string::npos) << lines.back();
  EXPECT_NE(lines.back().find(" lines suppressed"), std::string::npos) << lines.back();
  for (const auto& line : lines) ASSERT_EQ(line.find('\x1b'), std::string::npos) << line;
}

}  // namespace
