#include "worker/shared_accept.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "worker/port_load.hpp"
#include "worker/report.hpp"

namespace forkd::worker {

namespace {

std::uint16_t local_port(int fd, int family) {
  sockaddr_storage address{};
  socklen_t len = sizeof(address);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) return 0;
  return ntohs(family == AF_INET ? reinterpret_cast<const sockaddr_in&>(address).sin_port
                                 : reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
}

}  // namespace

std::shared_ptr<SharedAccept> SharedAccept::start(asio::io_context& io,
                                                  std::vector<Listener> listeners, Options options,
                                                  Adopt adopt, OpenCount open_count) {
  auto self = std::make_shared<SharedAccept>(io, std::move(listeners), options, std::move(adopt),
                                             std::move(open_count));
  self->start_waiter();
  return self;
}

SharedAccept::SharedAccept(asio::io_context& io, std::vector<Listener> listeners, Options options,
                           Adopt adopt, OpenCount open_count)
    : io_(io),
      listeners_(std::move(listeners)),
      failing_(listeners_.size(), false),
      options_(options),
      adopt_(std::move(adopt)),
      open_count_(std::move(open_count)),
      pause_(io),
      rotation_(options_.policy.rotate_every) {
  if (listeners_.size() == 1 && options_.workers >= 2 &&
      (listeners_[0].family == AF_INET || listeners_[0].family == AF_INET6)) {
    share_port_ = local_port(listeners_[0].fd.get(), listeners_[0].family);
  }
}

void SharedAccept::start_waiter() {
  std::vector<int> fds;
  fds.reserve(listeners_.size());
  for (const Listener& l : listeners_) fds.push_back(l.fd.get());
  waiter_ = std::make_unique<AcceptWaiter>(io_, fds, [weak = weak_from_this()](std::error_code ec) {
    if (auto self = weak.lock()) self->on_ready(ec);
  });
}

void SharedAccept::stop() {
  if (stopped_) return;
  stopped_ = true;
  // Before the listeners close: the private epoll would go on watching sockets that the other
  // workers keep open.
  if (waiter_) waiter_->stop();
  pause_.cancel();
  // What the kernel has already completed is taken and answered during the drain (see
  // HttpServer::stop). Bounded by the kernel's default cap on a listen backlog.
  constexpr std::size_t kMaxTaken = 4096;
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    std::size_t taken = 0;
    (void)accept_batch(i, kMaxTaken, taken);
    listeners_[i].fd.reset();
  }
}

void SharedAccept::on_ready(std::error_code ec) {
  if (stopped_) return;
  if (ec) {
    // The waiter's thread could not go on (epoll_ctl: ENOMEM, ENOSPC): start a new one later.
    report("http: waiting for connections failed: " + ec.message() + "; retrying in " +
           std::to_string(options_.accept_backoff.count()) + " ms");
    waiter_->stop();
    resume_after(options_.accept_backoff, true);
    return;
  }
  if (share_ != Share::draining) {
    const bool back_from_yield = share_ == Share::yielding;
    share_ = Share::normal;
    if (over_share()) {
      const std::size_t others = others_held();
      if (!AcceptPolicy::yield_now(others, others_at_yield_, back_from_yield)) {
        share_ = Share::draining;
      } else {
        // Let the others accept first: the kernel wakes them while we do not wait.
        share_ = Share::yielding;
        others_at_yield_ = others;
        resume_after(options_.policy.yield_for);
        return;
      }
    }
  }
  constexpr std::size_t kDrainBatch = 64;
  const std::size_t batch = share_ == Share::draining ? kDrainBatch : options_.policy.batch;
  std::size_t accepted = 0;
  bool failed = false;
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    if (!accept_batch(i, batch, accepted)) failed = true;
  }
  if (failed) {
    resume_after(options_.accept_backoff);
    return;
  }
  waiter_->resume(rotation_.rotate_after(accepted));
}

void SharedAccept::resume_after(std::chrono::milliseconds pause, bool restart_waiter) {
  pause_.expires_after(pause);
  pause_.async_wait([weak = weak_from_this(), restart_waiter](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->stopped_) return;
    if (!restart_waiter) {
      self->waiter_->resume(true);
      return;
    }
    try {
      self->start_waiter();
    } catch (const std::system_error& e) {
      report(std::string("http: waiting for connections failed: ") + e.what());
      self->resume_after(self->options_.accept_backoff, true);
    }
  });
}

bool SharedAccept::accept_batch(std::size_t index, std::size_t batch, std::size_t& accepted) {
  Listener& l = listeners_[index];
  if (!l.fd) return true;
  for (std::size_t i = 0; i < batch; ++i) {
    common::UniqueFd connection(
        ::accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (connection) {
      failing_[index] = false;
      adopt_(index, std::move(connection));
      ++accepted;
      continue;
    }
    const int error = errno;
    if (error == EAGAIN || error == EWOULDBLOCK) {
      if (share_ == Share::draining) share_ = Share::normal;  // the queue is empty
      return true;
    }
    if (is_transient_accept_error(error)) continue;
    // Out of fds (EMFILE/ENFILE) or memory (ENOBUFS/ENOMEM), or anything unexpected: the
    // pending connection stays queued and would wake us at once, so the caller pauses before
    // retrying and keeps serving the connections we have meanwhile.
    if (!failing_[index]) {
      report("http: accept on " + l.name +
             " failed: " + std::error_code(error, std::system_category()).message() +
             "; retrying every " + std::to_string(options_.accept_backoff.count()) + " ms");
      failing_[index] = true;
    }
    return false;
  }
  return true;
}

bool SharedAccept::over_share() {
  if (share_port_ == 0) return false;
  const std::size_t own = open_count_() + 1;
  if (!options_.policy.could_hold_too_much(own, options_.workers)) return false;
  const auto now = std::chrono::steady_clock::now();
  const auto holds_too_much = [&] {
    return options_.policy.holds_too_much(own, std::max(total_, own), options_.workers);
  };
  // The kernel is asked only when the cached total is old or says "over": a total that has
  // grown since must not make us yield.
  if (now - total_asked_ < options_.policy.total_refresh && !holds_too_much()) return false;
  const auto fresh = established_on_port(listeners_[0].family, share_port_);
  if (!fresh) {
    share_port_ = 0;  // the kernel cannot tell: the rule is off for good
    return false;
  }
  total_ = *fresh;
  total_asked_ = now;
  return holds_too_much();
}

std::size_t SharedAccept::others_held() {
  tcp_info info{};
  socklen_t len = sizeof(info);
  // On a listening socket tcpi_unacked is the accept queue's length.
  const std::size_t queued =
      ::getsockopt(listeners_[0].fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0
          ? std::size_t{info.tcpi_unacked}
          : 0;
  const std::size_t ours = open_count_() + queued;
  return total_ > ours ? total_ - ours : 0;
}

}  // namespace forkd::worker
