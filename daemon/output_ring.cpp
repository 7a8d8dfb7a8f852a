#include "daemon/output_ring.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/text_escape.hpp"
#include "daemon/output_capture.hpp"

namespace forkd::daemon {

nlohmann::json to_json(const CapturedLine& line) {
  return {{"seq", line.seq},
          {"worker", line.worker},
          {"pid", line.pid},
          {"stream", line.is_stderr ? "stderr" : "stdout"},
          {"at", common::log::format_time(line.at)},
          {"text", common::escape_text_within(line.text, OutputCapture::kMaxLine)}};
}

void OutputRing::push(CapturedLine line) {
  if (max_lines_ == 0) return;
  // A single line above the byte cap keeps its head: the ring never holds more than the cap.
  if (line.text.size() > max_bytes_) line.text.resize(max_bytes_);
  bytes_ += line.text.size();
  lines_.push_back(std::move(line));
  while (lines_.size() > max_lines_ || bytes_ > max_bytes_) {
    bytes_ -= lines_.front().text.size();
    lines_.pop_front();
  }
}

void OutputRing::set_max_lines(std::size_t max_lines) {
  max_lines_ = max_lines;
  while (lines_.size() > max_lines_) {
    bytes_ -= lines_.front().text.size();
    lines_.pop_front();
  }
}

std::vector<CapturedLine> OutputRing::last(std::size_t n) const {
  const std::size_t count = std::min(n, lines_.size());
  return {lines_.end() - static_cast<std::ptrdiff_t>(count), lines_.end()};
}

}  // namespace forkd::daemon
