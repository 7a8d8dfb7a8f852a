#include "worker/channel.hpp"

#include <fcntl.h>

#include <cerrno>

#include <algorithm>
#include <asio/buffer.hpp>
#include <asio/write.hpp>
#include <string>

#include "common/fd_passing.hpp"
#include "worker/report.hpp"

namespace forkd::worker {

namespace {

common::UniqueFd dup_cloexec(int fd) {
  common::UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) throw common::system_error_from_errno("dup IPC socket");
  return copy;
}

}  // namespace

Channel::Channel(asio::io_context& io, common::UniqueFd fd, std::size_t max_message)
    : max_message_(max_message),
      writer_(io),
      reader_(io),
      decoder_(max_message),
      // Room for a burst of replies without letting a stalled master grow us without bound.
      queue_(std::max<std::size_t>(std::size_t{64} * 1024 * 1024, 4 * max_message)) {
  common::UniqueFd read_fd = dup_cloexec(fd.get());
  writer_.assign(asio::local::stream_protocol(), fd.release());
  reader_.assign(asio::local::stream_protocol(), read_fd.release());
}

void Channel::start_reading(MessageHandler on_message, EofHandler on_eof) {
  on_message_ = std::move(on_message);
  on_eof_ = std::move(on_eof);
  if (reading_ || !reader_.is_open()) return;
  reading_ = true;
  read_next();
}

void Channel::stop_reading() {
  reading_ = false;
  std::error_code ignored;
  reader_.close(ignored);
}

// recvmsg, not read: the master may pass a descriptor with a line (a stalled worker's listening
// socket, see Worker::on_queued_connections), and read() would close it unseen.
void Channel::read_next() {
  reader_.async_wait(asio::socket_base::wait_read, [this](std::error_code ec) {
    if (!reading_) return;
    ssize_t n = -1;
    if (!ec) {
      n = common::receive_with_fds(reader_.native_handle(), read_buffer_, passed_,
                                   kMaxPassedAtOnce);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        read_next();  // woken for nothing
        return;
      }
      if (n < 0) ec = common::last_error();
    }
    if (ec || n == 0) {
      if (ec && ec != asio::error::connection_reset) {
        report("ipc: read from master failed: " + ec.message());
      }
      stop_reading();
      if (on_eof_) on_eof_();
      return;
    }
    decoder_.feed(
        std::string_view(read_buffer_.data(), static_cast<std::size_t>(n)),
        [this](common::LineDecoder::Event event, std::string_view line) { on_line(event, line); });
    if (reading_) read_next();
  });
}

common::UniqueFd Channel::take_passed() {
  if (passed_.empty()) return {};
  common::UniqueFd fd = std::move(passed_.front());
  passed_.erase(passed_.begin());
  return fd;
}

void Channel::on_line(common::LineDecoder::Event event, std::string_view line) {
  // A handler may stop the worker in the middle of a batch: later lines are not delivered.
  if (!reading_) return;
  if (event == common::LineDecoder::Event::oversized) {
    report("ipc: message from master longer than " + std::to_string(max_message_) +
           " bytes skipped");
    return;
  }
  auto parsed = common::parse_json_line(line);
  switch (parsed.status) {
    case common::ParsedLine::Status::value:
      if (on_message_) on_message_(parsed.value);
      break;
    case common::ParsedLine::Status::too_deep:
      report("ipc: message from master nested deeper than " +
             std::to_string(common::kMaxJsonDepth) + " levels skipped");
      break;
    case common::ParsedLine::Status::malformed:
      report("ipc: malformed JSON message from master skipped (" + std::to_string(line.size()) +
             " bytes)");
      break;
    case common::ParsedLine::Status::blank:
      break;
  }
}

void Channel::post(const nlohmann::json& message) {
  if (broken_) return;
  const std::string line = common::to_json_line(message);
  if (line.size() - 1 > max_message_) {
    report("ipc: message of " + std::to_string(line.size() - 1) + " bytes exceeds the " +
           std::to_string(max_message_) + "-byte limit, not sent");
    return;
  }
  if (!queue_.push(line)) {
    if (!dropped_reported_) {
      report("ipc: master is not reading (" + std::to_string(queued_bytes()) +
             " bytes queued), dropping messages");
      dropped_reported_ = true;
    }
    return;
  }
  dropped_reported_ = false;
  write_next();
}

void Channel::write_next() {
  if (broken_ || !queue_.start_batch()) return;
  asio::async_write(writer_, asio::buffer(queue_.batch()), [this](std::error_code ec, std::size_t) {
    queue_.batch_written();
    if (ec) {
      // The master is gone (EPIPE): nothing queued can be delivered any more.
      broken_ = true;
      queue_.clear();
      return;
    }
    write_next();
  });
}

}  // namespace forkd::worker
