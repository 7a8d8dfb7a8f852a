#include "daemon/output_capture.hpp"

#include <asio/buffer.hpp>

#include "common/log.hpp"

namespace forkd::daemon {

std::shared_ptr<OutputCapture> OutputCapture::open(asio::io_context& io, common::UniqueFd read_end,
                                                   std::string tag, bool is_stderr) {
  auto capture =
      std::make_shared<OutputCapture>(io, std::move(read_end), std::move(tag), is_stderr);
  capture->read_next();
  return capture;
}

OutputCapture::OutputCapture(asio::io_context& io, common::UniqueFd read_end, std::string tag,
                             bool is_stderr)
    : stream_(io), tag_(std::move(tag)), is_stderr_(is_stderr) {
  stream_.assign(read_end.release());
  stream_.non_blocking(true);
}

void OutputCapture::close() {
  if (closed_) return;
  if (!partial_.empty()) emit(partial_);
  partial_.clear();
  closed_ = true;
  std::error_code ignored;
  stream_.close(ignored);
}

void OutputCapture::emit(std::string_view line) {
  static const auto logger = common::log::get("worker");
  if (is_stderr_) {
    logger->warn("{}: {}", tag_, line);
  } else {
    logger->info("{}: {}", tag_, line);
  }
}

void OutputCapture::read_next() {
  stream_.async_read_some(
      asio::buffer(buffer_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
        if (self->closed_) return;
        std::string_view data(self->buffer_.data(), ec ? 0 : n);
        while (!data.empty()) {
          const auto nl = data.find('\n');
          const auto room = kMaxLine - self->partial_.size();
          const auto take = std::min({nl == std::string_view::npos ? data.size() : nl, room});
          self->partial_.append(data.substr(0, take));
          data.remove_prefix(take);
          if (!data.empty() && data.front() == '\n') {
            data.remove_prefix(1);
          } else if (self->partial_.size() < kMaxLine) {
            break;  // an unfinished line: wait for more
          }
          self->emit(self->partial_);
          self->partial_.clear();
        }
        if (ec) {
          self->close();
          return;
        }
        self->read_next();
      });
}

}  // namespace forkd::daemon
