// FORKD_TEST_THROW, a testing aid: one guarded handler of the master throws, so that a test can
// show, on the real binary, that the master logs it and goes on. Pure: parsing and counting; the
// master reads the variable once at start and asks on_call() at the top of every guarded handler.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace forkd::daemon {

class FaultInjection {
 public:
  // "HANDLER[:N]": the Nth call (the first by default) of the handler named HANDLER, that is of
  // one whose name is HANDLER or starts with HANDLER and a space ("IPC from worker" names
  // "IPC from worker pid 42"). Throws std::invalid_argument on an empty name or a bad N.
  [[nodiscard]] static FaultInjection parse(std::string_view spec);

  // Counts a call of `handler`; throws std::runtime_error when it is the chosen one (once).
  void on_call(std::string_view handler);

  [[nodiscard]] const std::string& handler() const noexcept { return handler_; }
  [[nodiscard]] unsigned nth() const noexcept { return nth_; }

 private:
  FaultInjection(std::string handler, unsigned nth) : handler_(std::move(handler)), nth_(nth) {}

  std::string handler_;
  unsigned nth_;
  unsigned calls_ = 0;
};

}  // namespace forkd::daemon
