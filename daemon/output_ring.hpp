// The last lines each worker slot wrote to a captured stdout/stderr, for `forkctl logs`: bounded
// by a line count and by bytes, so a flooding worker costs the master a fixed amount whatever
// it writes. Lines are kept escaped, as the log shows them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace forkd::daemon {

struct CapturedLine {
  std::uint64_t seq = 0;  // order across slots
  unsigned worker = 0;
  pid_t pid = 0;
  bool is_stderr = false;
  std::chrono::system_clock::time_point at;
  std::string text;
};

// {"seq", "worker", "pid", "stream", "at", "text"}: the text escaped as the log escapes it.
[[nodiscard]] nlohmann::json to_json(const CapturedLine& line);

class OutputRing {
 public:
  static constexpr std::size_t kMaxBytes = std::size_t{1} << 20;  // 1 MiB a slot

  explicit OutputRing(std::size_t max_lines = 1000, std::size_t max_bytes = kMaxBytes)
      : max_lines_(max_lines), max_bytes_(max_bytes) {}

  void push(CapturedLine line);
  // A reload's log.worker_lines: the oldest lines beyond it go.
  void set_max_lines(std::size_t max_lines);
  // The last `n` lines, oldest first.
  [[nodiscard]] std::vector<CapturedLine> last(std::size_t n) const;
  [[nodiscard]] std::size_t size() const noexcept { return lines_.size(); }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::size_t max_lines_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::deque<CapturedLine> lines_;
};

}  // namespace forkd::daemon
