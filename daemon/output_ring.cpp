#include "daemon/output_ring.hpp"

#include <algorithm>

namespace forkd::daemon {

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

std::vector<CapturedLine> OutputRing::last(std::size_t n) const {
  const std::size_t count = std::min(n, lines_.size());
  return {lines_.end() - static_cast<std::ptrdiff_t>(count), lines_.end()};
}

}  // namespace forkd::daemon
