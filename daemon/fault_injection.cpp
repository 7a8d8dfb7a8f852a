#include "daemon/fault_injection.hpp"

#include <stdexcept>

#include "common/decimal.hpp"

namespace forkd::daemon {

FaultInjection FaultInjection::parse(std::string_view spec) {
  const auto colon = spec.rfind(':');
  const std::string_view name = spec.substr(0, colon);
  unsigned nth = 1;
  if (colon != std::string_view::npos) {
    const auto parsed = common::parse_decimal<unsigned>(spec.substr(colon + 1));
    if (!parsed || *parsed == 0) {
      throw std::invalid_argument("FORKD_TEST_THROW=" + std::string(spec) +
                                  ": the call number after ':' must be a whole number from 1");
    }
    nth = *parsed;
  }
  if (name.empty()) {
    throw std::invalid_argument("FORKD_TEST_THROW=" + std::string(spec) +
                                ": names no handler (e.g. SIGHUP, or \"IPC from worker:2\")");
  }
  return {std::string(name), nth};
}

void FaultInjection::on_call(std::string_view handler) {
  const bool named = handler.starts_with(handler_) &&
                     (handler.size() == handler_.size() || handler[handler_.size()] == ' ');
  if (!named || calls_ >= nth_) return;
  if (++calls_ == nth_) {
    throw std::runtime_error("exception injected by FORKD_TEST_THROW=" + handler_ + ":" +
                             std::to_string(nth_));
  }
}

}  // namespace forkd::daemon
