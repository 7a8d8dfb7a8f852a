#include "daemon/forkctl/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/control_paths.hpp"
#include "common/unix_socket.hpp"

namespace forkd::ctl {
namespace {

// Replies are small except status with thousands of workers; this only stops a runaway peer.
constexpr std::size_t kMaxReplyLine = std::size_t{64} << 20;

std::string errno_text(int error) {
  return std::strerror(error);
}

}  // namespace

ControlClient::ControlClient(std::string path) : path_(std::move(path)) {
  const common::UnixAddress address = [this] {
    try {
      return common::UnixAddress(path_);
    } catch (const common::UnixAddressError& error) {
      throw UnreachableError(std::string("cannot connect: ") + error.what());
    }
  }();
  if (const std::string why = common::untrusted_socket_dir(path_); !why.empty()) {
    throw UnreachableError("cannot connect to " + path_ + ": " + why);
  }
  std::error_code error;
  fd_ = common::connect_unix(address, SOCK_STREAM, error);
  if (!fd_) {
    const bool absent =
        error == std::errc::no_such_file_or_directory || error == std::errc::connection_refused;
    throw UnreachableError("cannot connect to " + path_ + ": " + error.message() +
                           (absent ? " (is forkd running?)" : ""));
  }
  if (address.abstract()) {
    ucred server{};
    socklen_t length = sizeof(server);
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &server, &length) != 0 ||
        !common::trusted_server_uid(server.uid)) {
      throw UnreachableError("cannot connect to " + path_ + ": the server there runs as uid " +
                             std::to_string(server.uid) +
                             ", neither root nor us; refusing to talk to it");
    }
  }
}

std::error_code ControlClient::send_line(std::string_view line) {
  std::string framed(line);
  framed.push_back('\n');
  std::string_view rest = framed;
  while (!rest.empty()) {
    const ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return common::last_error();
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

ControlClient::ReadStatus ControlClient::read_line(std::string& line, Deadline deadline,
                                                   int interrupt_fd) {
  std::array<char, 65536> chunk{};
  for (;;) {
    if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
      line.assign(buffer_, 0, nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      buffer_.erase(0, nl + 1);
      return ReadStatus::line;
    }
    if (buffer_.size() > kMaxReplyLine) {
      throw ExchangeError("reply from forkd on " + path_ + " exceeds " +
                          std::to_string(kMaxReplyLine) + " bytes");
    }
    if (eof_) {
      if (buffer_.empty()) return ReadStatus::eof;
      line = std::exchange(buffer_, {});
      return ReadStatus::line;
    }

    int wait_ms = -1;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return ReadStatus::timeout;
      // Rounded up, so we never wake a hair early and spin.
      wait_ms =
          static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count() + 1, 1'000'000));
    }
    std::array<pollfd, 2> fds{{{fd_.get(), POLLIN, 0}, {interrupt_fd, POLLIN, 0}}};
    const nfds_t count = interrupt_fd >= 0 ? 2 : 1;
    const int ready = ::poll(fds.data(), count, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw ExchangeError("poll: " + errno_text(errno));
    }
    if (ready == 0) continue;  // the deadline check above decides
    if (count == 2 && (fds[1].revents & POLLIN) != 0) return ReadStatus::interrupted;
    if (fds[0].revents == 0) continue;

    const ssize_t n = ::recv(fd_.get(), chunk.data(), chunk.size(), 0);
    if (n > 0) {
      buffer_.append(chunk.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno == ECONNRESET) {
      // ECONNRESET: the daemon closed with our unread request bytes still queued (it cut an
      // oversized request off); everything it wrote before was already delivered.
      eof_ = true;
    } else if (errno != EINTR && errno != EAGAIN) {
      throw ExchangeError("reading from " + path_ + ": " + errno_text(errno));
    }
  }
}

}  // namespace forkd::ctl
