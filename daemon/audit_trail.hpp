// AuditTrail: who changed the running service, how, and with what outcome, written whatever
// log.level says (to log.audit, or the main log). Control commands are recorded with their
// arguments (a payload by its size only), the caller's uid and pid and the outcome; signals
// with their sender. It decides nothing and never makes the command it records fail.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "common/signal_source.hpp"
#include "daemon/control_server.hpp"

namespace spdlog {
class logger;
}

namespace forkd::daemon {

// "scale value=3", "send worker=0 bytes=17 wait_ms=5000": a command and the arguments it was
// given, as the trail writes them; strings are JSON-quoted (control characters escaped) and
// cut short, payloads counted in bytes, unknown members left out.
[[nodiscard]] std::string describe_command(std::string_view name, const nlohmann::json& request);
// "ok", "ok: scaling from 2 to 3 workers", "failed: scale: 0 workers is out of range (1..1024)".
[[nodiscard]] std::string describe_outcome(const nlohmann::json& reply);
// "SIGHUP from uid 0 pid 4242", "SIGINT from the kernel".
[[nodiscard]] std::string describe_signal(const common::SignalInfo& signal);

class AuditTrail {
 public:
  AuditTrail();

  // Runs `run` with a reply that records the outcome as it goes to the caller. A command
  // still unanswered when `run` returns (reload, restart, send --wait) is recorded as
  // started too, so a long one leaves a trace before its end.
  void command(std::string_view name, const nlohmann::json& request, const PeerCredentials& peer,
               Respond respond, const std::function<void(Respond&)>& run) const;
  void signal(const common::SignalInfo& signal) const;

 private:
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace forkd::daemon
