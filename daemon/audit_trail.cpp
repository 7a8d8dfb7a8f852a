#include "daemon/audit_trail.hpp"

#include <spdlog/logger.h>

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/exit_status.hpp"
#include "common/log.hpp"

namespace forkd::daemon {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxShownText = 64;
constexpr std::size_t kMaxOutcomeText = 200;

// A string as JSON writes it (quotes, control characters and bad UTF-8 escaped), cut short.
std::string quoted(const std::string& text, std::size_t limit) {
  const bool cut = text.size() > limit;
  std::string shown =
      json(cut ? text.substr(0, limit) : text).dump(-1, ' ', false, json::error_handler_t::replace);
  if (cut) shown.insert(shown.size() - 1, "...");
  return shown;
}

std::string shown(const json& value) {
  if (value.is_string()) return quoted(value.get_ref<const std::string&>(), kMaxShownText);
  if (value.is_array()) return "(an array)";
  if (value.is_object()) return "(an object)";
  return value.dump();
}

// Like quoted(), without the quotes: an outcome is our own text, perhaps quoting the caller's.
std::string plain(const std::string& text) {
  std::string shown = quoted(text, kMaxOutcomeText);
  return shown.substr(1, shown.size() - 2);
}

}  // namespace

std::string describe_command(std::string_view name, const json& request) {
  std::string text(name);
  // The arguments commands take, in a fixed order; `data` (a payload) only by its size.
  static constexpr std::array<std::string_view, 6> kArguments{"worker", "value",   "dry_run",
                                                              "fast",   "wait_ms", "data"};
  if (!request.is_object()) return text;
  for (const std::string_view key : kArguments) {
    const auto member = request.find(key);
    if (member == request.end()) continue;
    text += ' ';
    if (key == "data") {
      text += "bytes=" +
              std::to_string(member->dump(-1, ' ', false, json::error_handler_t::replace).size());
    } else {
      text += std::string(key) + "=" + shown(*member);
    }
  }
  return text;
}

std::string describe_outcome(const json& reply) {
  const bool ok = reply.is_object() && reply.value("ok", false);
  const char* field = ok ? "message" : "error";
  const auto detail = reply.is_object() ? reply.find(field) : reply.end();
  std::string text = ok ? "ok" : "failed";
  if (detail != reply.end() && detail->is_string()) {
    text += ": " + plain(detail->get_ref<const std::string&>());
  }
  return text;
}

std::string describe_signal(const common::SignalInfo& signal) {
  std::string text = common::signal_name(signal.signo);
  if (!signal.from_process) return text + " from the kernel";
  return text + " from uid " + std::to_string(signal.sender_uid) + " pid " +
         std::to_string(signal.sender_pid);
}

AuditTrail::AuditTrail() : log_(common::log::audit()) {}

void AuditTrail::command(std::string_view name, const json& request, const PeerCredentials& peer,
                         Respond respond, const std::function<void(Respond&)>& run) const {
  struct Record {
    std::string what;
    bool answered = false;
  };
  auto record = std::make_shared<Record>(
      Record{describe_command(name, request) + " by " + describe_peer(peer), false});
  Respond recorded = [log = log_, record, respond = std::move(respond)](json reply) {
    if (!record->answered) {
      record->answered = true;
      log->info("{}: {}", record->what, describe_outcome(reply));
    }
    respond(std::move(reply));
  };
  run(recorded);
  if (!record->answered) log_->info("{}: started", record->what);
}

void AuditTrail::signal(const common::SignalInfo& signal) const {
  log_->info("signal {}", describe_signal(signal));
}

}  // namespace forkd::daemon
