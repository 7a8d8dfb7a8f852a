#include "daemon/output_capture.hpp"

#include <algorithm>
#include <array>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <cstdint>

#include "common/ndjson.hpp"
#include "common/text_escape.hpp"

namespace forkd::daemon {

std::shared_ptr<OutputCapture> OutputCapture::open(asio::io_context& io, common::UniqueFd read_end,
                                                   std::string tag, bool is_stderr,
                                                   std::shared_ptr<LimitedLog> log, Keep keep) {
  auto capture = std::make_shared<OutputCapture>(io, std::move(read_end), std::move(tag), is_stderr,
                                                 std::move(log), std::move(keep));
  capture->read_next();
  return capture;
}

OutputCapture::OutputCapture(asio::io_context& io, common::UniqueFd read_end, std::string tag,
                             bool is_stderr, std::shared_ptr<LimitedLog> log, Keep keep)
    : stream_(io),
      tag_(std::move(tag)),
      is_stderr_(is_stderr),
      log_(std::move(log)),
      keep_(std::move(keep)) {
  stream_.assign(read_end.release());
  stream_.non_blocking(true);
}

void OutputCapture::close() {
  if (closed_) return;
  if (!partial_.empty()) emit(partial_);
  common::release(partial_);
  closed_ = true;
  std::error_code ignored;
  stream_.close(ignored);
}

// A line costs one more per KiB, so that the limit bounds the bytes a worker puts in the log
// too. Escaped only once it is known to be written: a flood costs a counter per line.
void OutputCapture::emit(std::string_view line) {
  if (keep_) keep_(line);
  const auto level = is_stderr_ ? spdlog::level::warn : spdlog::level::info;
  if (!log_->admit(level, static_cast<std::uint32_t>(1 + line.size() / 1024))) return;
  log_->logger().log(level, "{}: {}", tag_, common::escape_text_within(line, kMaxLine));
}

// Waits for readability instead of reading into a buffer of the capture's: a pending read
// would need its buffer for as long as the worker stays quiet.
void OutputCapture::read_next() {
  stream_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this()](std::error_code ec) {
                       if (self->closed_) return;
                       if (ec) {
                         self->close();
                         return;
                       }
                       self->read_available();
                     });
}

void OutputCapture::read_available() {
  // Not zeroed: read_some() fills what is used.
  std::array<char, kReadChunk> buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  std::error_code ec;
  const std::size_t n = stream_.read_some(asio::buffer(buffer), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    read_next();  // woken for nothing
    return;
  }
  if (ec) {  // EOF included: the unfinished line goes out as it is
    close();
    return;
  }
  take(std::string_view(buffer.data(), n));
  read_next();
}

// Emits every complete line of `data` straight from it, and every kMaxLine bytes of a longer
// one; keeps only what remains of an unfinished line.
void OutputCapture::take(std::string_view data) {
  while (!data.empty()) {
    const auto nl = data.find('\n');
    const auto line_end = nl == std::string_view::npos ? data.size() : nl;
    const auto piece = std::min(line_end, kMaxLine - partial_.size());
    const bool ends_line = nl != std::string_view::npos && piece == nl;
    if (!ends_line && partial_.size() + piece < kMaxLine) {
      partial_.append(data.substr(0, piece));  // unfinished: wait for more
      return;
    }
    if (partial_.empty()) {
      emit(data.substr(0, piece));
    } else {
      partial_.append(data.substr(0, piece));
      emit(partial_);
      common::release(partial_);
    }
    data.remove_prefix(ends_line ? piece + 1 : piece);
  }
}

}  // namespace forkd::daemon
