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

#include "tests/unit/process_test_support.hpp"

namespace {

using forkd::common::make_pipe;
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
  struct Sink final : spdlog::sinks::base_sink<spdlog::details::null_mutex> {
    std::vector<std::string> lines;
    void sink_it_(const spdlog::details::log_msg& msg) override {
      const auto level = spdlog::level::to_string_view(msg.level);
      lines.push_back(std::string(level.data(), level.size()) + " " +
                      std::string(msg.payload.data(), msg.payload.size()));
    }
    void flush_() override {}
  };

  std::shared_ptr<spdlog::logger> logger_;
  std::vector<spdlog::sink_ptr> saved_;
  std::shared_ptr<Sink> sink_;
};

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
  auto capture = OutputCapture::open(io, std::move(read_end), "w0 stderr", true);
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
  auto capture = OutputCapture::open(io, std::move(read_end), "w0 stdout", false);
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

}  // namespace
