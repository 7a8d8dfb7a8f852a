#include "daemon/notify_receiver.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "common/decimal.hpp"
#include "common/fd.hpp"
#include "common/unix_socket.hpp"

namespace forkd::daemon {

namespace {

constexpr int kMaxAncestry = 16;

common::UniqueFd make_notify_socket() {
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw common::system_error_from_errno("notify socket");
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
    throw common::system_error_from_errno("SO_PASSCRED on notify socket");
  }
  return fd;
}

pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 4 > text.size()) return 0;
  // "pid (comm) S ppid ..."
  const std::string_view rest = std::string_view(text).substr(close + 4);
  return common::parse_decimal<pid_t>(rest.substr(0, rest.find(' '))).value_or(0);
}

}  // namespace

bool is_same_or_descendant(pid_t pid, pid_t ancestor) {
  for (int i = 0; i < kMaxAncestry && pid > 1; ++i) {
    if (pid == ancestor) return true;
    pid = parent_of(pid);
  }
  return false;
}

std::string random_notify_name() {
  std::array<unsigned char, 16> bits{};
  std::size_t filled = 0;
  while (filled < bits.size()) {
    const ssize_t n = ::getrandom(bits.data() + filled, bits.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw common::system_error_from_errno("getrandom for a notify socket name");
    }
    filled += static_cast<std::size_t>(n);
  }
  std::string name = "forkd-";
  for (const unsigned char b : bits) name += fmt::format("{:02x}", b);
  return name;
}

std::shared_ptr<NotifyReceiver> NotifyReceiver::open(asio::io_context& io,
                                                     const NameSource& next_name, Handler handler,
                                                     Rejected rejected) {
  common::UniqueFd fd = make_notify_socket();
  std::string address;
  for (int attempt = 1;; ++attempt) {
    address = "@" + next_name();
    const common::UnixAddress bound(address);
    if (::bind(fd.get(), bound.get(), bound.size()) == 0) break;
    if (errno != EADDRINUSE || attempt == kBindAttempts) {
      throw common::system_error_from_errno("bind notify socket " + address);
    }
  }
  auto receiver = std::make_shared<NotifyReceiver>(io, std::move(fd), std::move(address),
                                                   std::move(handler), std::move(rejected));
  receiver->read_next();
  return receiver;
}

NotifyReceiver::NotifyReceiver(asio::io_context& io, common::UniqueFd bound, std::string address,
                               Handler handler, Rejected rejected)
    : socket_(io),
      address_(std::move(address)),
      handler_(std::move(handler)),
      rejected_(std::move(rejected)) {
  socket_.assign(bound.release());
}

void NotifyReceiver::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  socket_.close(ignored);
}

bool NotifyReceiver::from_worker(pid_t sender) const {
  return worker_pid_ > 0 && is_same_or_descendant(sender, worker_pid_);
}

void NotifyReceiver::read_next() {
  socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this()](std::error_code ec) {
                       if (ec || self->closed_) return;
                       self->drain();
                     });
}

// Drains what is queued, a bounded number per wake-up so a flood cannot starve the loop.
void NotifyReceiver::drain() {
  std::array<char, common::kNotifyMessageMax> buffer{};
  for (int i = 0; i < 64; ++i) {
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred))> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) break;
    pid_t sender = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
        sender = cred.pid;
      }
    }
    if (!from_worker(sender)) {
      if (rejected_) rejected_(worker_pid_, sender);
      continue;
    }
    handler_(worker_pid_, common::parse_notify_message(
                              std::string_view(buffer.data(), static_cast<std::size_t>(n))));
    if (closed_) return;
  }
  read_next();
}

}  // namespace forkd::daemon
