// What the master's servers (control socket, metrics) do when accept() fails for lack of
// descriptors or memory: the pending connection stays queued and would fail the next accept()
// at once, so retrying immediately would spin the loop. They wait a little on a timer instead.
#pragma once

#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <system_error>
#include <utility>

namespace forkd::daemon {

inline constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

// Calls `again` after kAcceptRetryDelay, unless the server (whose liveness `alive` tracks) is
// gone by then or the timer was cancelled.
template <typename Again>
void retry_accept_later(asio::steady_timer& timer, std::weak_ptr<const bool> alive, Again again) {
  timer.expires_after(kAcceptRetryDelay);
  timer.async_wait(
      [alive = std::move(alive), again = std::move(again)](std::error_code error) mutable {
        if (alive.expired() || error) return;
        again();
      });
}

}  // namespace forkd::daemon
