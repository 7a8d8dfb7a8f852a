// The operator's side of the master: control socket commands, status, events.
// Each command is one entry of kCommands (name -> handler, and whether it changes anything,
// which is what puts it in the audit trail); every handler answers through `respond` once.
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/logger.h>
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "common/control_paths.hpp"
#include "common/log.hpp"
#include "common/plural.hpp"
#include "common/text_escape.hpp"
#include "daemon/master.hpp"
#include "daemon/output_capture.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/request_fields.hpp"

namespace forkd::daemon {

namespace {

// CPU% with one decimal: what a person reads, and stable in JSON.
double rounded(double percent) {
  return std::round(percent * 10) / 10;
}

// The most of a worker's command line status shows.
constexpr std::size_t kShownCommand = 512;

using common::count_of;

using nlohmann::json;

struct CommandSpec {
  std::string_view name;
  bool changes_something;
  void (Master::*run)(const json&, const ControlCaller&, Respond&);
};

json error_reply(const std::string& why) {
  return {{"ok", false}, {"error", why}};
}

// A worker id from a request: a non-negative integer that fits, nothing else (no wrapping).
std::optional<unsigned> worker_id(const json& value) {
  if (!value.is_number_unsigned()) return std::nullopt;
  const auto id = value.get<std::uint64_t>();
  if (id >= common::kMaxWorkers) return std::nullopt;
  return static_cast<unsigned>(id);
}

// What a request named, for an error reply: short, never a re-serialised deep structure.
std::string shown(const json& value) {
  if (value.is_number() || value.is_boolean() || value.is_null()) return value.dump();
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    return "\"" + text.substr(0, 64) + (text.size() > 64 ? "...\"" : "\"");
  }
  return value.is_array() ? "an array" : "an object";
}

double seconds_since(TimePoint start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The wall-clock time of a steady-clock instant in the past.
std::chrono::system_clock::time_point wall_time(TimePoint at) {
  return std::chrono::system_clock::now() -
         std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - at);
}

json exit_json(const Slot& slot) {
  if (!slot.last_exit) return nullptr;
  json j = {{"at", common::log::format_time(wall_time(slot.last_exit_at))}};
  if (slot.last_exit->code) j["code"] = *slot.last_exit->code;
  if (slot.last_exit->signal) j["signal"] = *slot.last_exit->signal;
  return j;
}

}  // namespace

void Master::open_control_socket(common::UniqueFd adopted) {
  ControlServerOptions options;
  options.path =
      config_.control.socket.empty() ? common::default_control_socket() : config_.control.socket;
  options.mode = config_.control.mode;
  options.group = config_.control.group;
  options.max_message = config_.ipc.max_message;
  (void)common::log::get("control");  // the server logs through this component's logger
  auto handler = [this](const json& request, const ControlCaller& caller, Respond respond) {
    // One answer per request, even when its handler throws: the client is not left waiting.
    auto answered = std::make_shared<bool>(false);
    Respond once = [answered, respond = std::move(respond)](json reply) {
      if (*answered) return;
      *answered = true;
      respond(std::move(reply));
    };
    if (!guarded("control request", [&] { on_control_request(request, caller, once); })) {
      once(error_reply(request.value("cmd", "") + ": failed inside forkd (see its log)"));
    }
  };
  options.client_closed = [this](std::uint64_t client) {
    guarded("control client closed", [&] { on_control_client_closed(client); });
  };
  if (adopted) {
    control_ = std::make_unique<ControlServer>(io_, std::move(options), std::move(handler),
                                               std::move(adopted));
    return;
  }
  common::prepare_control_socket_dir(options.path);
  control_ = std::make_unique<ControlServer>(io_, std::move(options), std::move(handler));
}

void Master::open_metrics(common::UniqueFd adopted) {
  if (config_.metrics.listen.empty() && !adopted) return;
  auto snapshot = [this] { return metrics_snapshot(); };
  // /readyz: a worker serves and the master is not stopping, nor waiting out stop.delay (a
  // load balancer stops sending).
  auto ready = [this] { return any_worker_ready() && !pool_.stopping() && !stop_delaying_; };
  if (adopted) {
    metrics_ = std::make_unique<MetricsServer>(io_, std::move(adopted), snapshot, ready);
  } else {
    metrics_ = std::make_unique<MetricsServer>(
        io_, common::parse_listen_address(config_.metrics.listen), snapshot, ready);
  }
  log_->info("metrics on http://{}/metrics", metrics_->bound_address());
}

bool Master::any_worker_ready() const {
  return pool_.ready_count() > 0;
}

MetricsSnapshot Master::metrics_snapshot() const {
  MetricsSnapshot m;
  pool_.for_each_process([&](const Slot& slot, const Lane& lane) {
    ++m.workers_by_state[to_string(lane.state)];
    const auto owner = this->owner(lane.pid);
    m.memory.push_back(
        {slot.id, lane.pid, read_pss_bytes(lane.pid, owner), read_rss_bytes(lane.pid, owner)});
    if (const auto steering = steering_->state_of(lane)) {
      m.steering.push_back({slot.id, to_string(*steering)});
    }
    if (const auto io = workers_.find(lane.pid); io != workers_.end() && io->second.accepted) {
      m.connections.push_back({slot.id, *io->second.accepted, io->second.open_connections});
    }
  });
  for (const auto& [slot, accepted] : accepted_by_exited_) {
    m.connections.push_back({slot, accepted, std::nullopt});
  }
  for (const auto& slot : pool_.slots()) {
    if (slot.current.pid <= 0 && !slot.incoming && slot.id < pool_.target()) {
      ++m.workers_by_state[to_string(slot.current.state)];
    }
    for (const auto& [reason, count] : slot.restarts_by_reason)
      m.restarts.push_back({slot.id, reason, count});
  }
  m.reloads_ok = reloads_ok_;
  m.reloads_failed = reloads_failed_;
  m.ipc_to_worker = ipc_to_worker_;
  m.ipc_from_worker = ipc_from_worker_;
  m.master_uptime_seconds = seconds_since(started_at_);
  m.generation = pool_.generation();
  m.target_workers = pool_.target();
  if (limits_.cpu_quota) m.cpu_quota = limits_.cpu_quota->cpus;
  if (limits_.memory_limit) m.memory_limit_bytes = limits_.memory_limit->bytes;
  m.worker_max_memory_bytes = effective_max_memory().value;
  return m;
}

void Master::on_control_request(const json& request, const ControlCaller& caller, Respond respond) {
  static constexpr std::array<CommandSpec, 10> kCommands = {{
      {"status", false, &Master::cmd_status},
      {"version", false, &Master::cmd_version},
      {"logs", false, &Master::cmd_logs},
      {"reload", true, &Master::cmd_reload},
      {"restart", true, &Master::cmd_restart},
      {"scale", true, &Master::cmd_scale},
      {"stop", true, &Master::cmd_stop},
      {"send", true, &Master::cmd_send},
      {"broadcast", true, &Master::cmd_broadcast},
      {"reopen-logs", true, &Master::cmd_reopen_logs},
  }};
  const std::string name = request.value("cmd", "");
  const auto* spec = std::find_if(kCommands.begin(), kCommands.end(),
                                  [&](const CommandSpec& c) { return c.name == name; });
  if (spec == kCommands.end()) {
    respond(error_reply("unknown command \"" + name + "\""));
    return;
  }
  if (!spec->changes_something) {
    run_command(request, caller, respond, spec->run);
    return;
  }
  audit_.command(name, request, caller.peer, std::move(respond),
                 [&](Respond& recorded) { run_command(request, caller, recorded, spec->run); });
}

void Master::run_command(const json& request, const ControlCaller& caller, Respond& respond,
                         void (Master::*command)(const json&, const ControlCaller&, Respond&)) {
  try {
    (this->*command)(request, caller, respond);
  } catch (const std::exception& e) {
    // Malformed fields (wrong JSON types) end here: an error reply, never a master crash. A
    // handler that had taken the reply over has answered or will answer it itself.
    if (respond) respond(error_reply(request.value("cmd", "") + ": " + e.what()));
  }
}

void Master::on_control_client_closed(std::uint64_t client) {
  std::vector<ReplyWaiter> dropped;
  std::erase_if(reply_waiters_, [&](ReplyWaiter& w) {
    if (w.client != client) return false;
    dropped.push_back(std::move(w));
    return true;
  });
  // Answered for the audit trail's sake; the server has nobody to send it to.
  for (auto& w : dropped) w.respond(error_reply("abandoned: the client closed the connection"));
}

void Master::cmd_status(const json& /*request*/, const ControlCaller& /*caller*/,
                        Respond& respond) {
  json reply = status_json();
  reply["ok"] = true;
  respond(std::move(reply));
}

// A member like every entry of the command table, though it needs nothing of the master.
// NOLINTNEXTLINE(readability-convert-member-functions-to-static)
void Master::cmd_version(const json& /*request*/, const ControlCaller& /*caller*/,
                         Respond& respond) {
  respond({{"ok", true}, {"version", FORKD_VERSION}});
}

void Master::cmd_logs(const json& request, const ControlCaller& /*caller*/, Respond& respond) {
  constexpr std::uint64_t kDefaultLines = 20;
  constexpr std::uint64_t kMostLines = 100000;
  std::uint64_t wanted = kDefaultLines;
  if (request.contains("lines")) {
    const json& lines = request["lines"];
    if (!lines.is_number_unsigned() || lines.get<std::uint64_t>() == 0 ||
        lines.get<std::uint64_t>() > kMostLines) {
      respond(error_reply("logs: lines must be 1.." + std::to_string(kMostLines) + ", got " +
                          shown(lines)));
      return;
    }
    wanted = lines.get<std::uint64_t>();
  }
  std::optional<unsigned> only;
  if (request.contains("worker") && !request["worker"].is_null()) {
    only = worker_id(request["worker"]);
    // A slot scaled away keeps its lines; one that never was is a mistake worth saying.
    if (!only || (*only >= pool_.target() && !output_rings_.contains(*only))) {
      respond(error_reply("logs: no worker " + shown(request["worker"])));
      return;
    }
  }
  // The last `wanted` lines over the chosen slots, oldest first.
  std::vector<CapturedLine> picked;
  for (const auto& [slot, ring] : output_rings_) {
    if (only && slot != *only) continue;
    auto lines = ring.last(wanted);
    picked.insert(picked.end(), std::make_move_iterator(lines.begin()),
                  std::make_move_iterator(lines.end()));
  }
  std::sort(picked.begin(), picked.end(),
            [](const CapturedLine& a, const CapturedLine& b) { return a.seq < b.seq; });
  if (picked.size() > wanted)
    picked.erase(picked.begin(), picked.end() - static_cast<std::ptrdiff_t>(wanted));
  // The reply is one line to the client, within what the control server lets a client owe:
  // the newest lines that fit.
  constexpr std::size_t kReplyBudget = std::size_t{512} * 1024;
  std::vector<json> newest;
  std::size_t bytes = 0;
  for (std::size_t i = picked.size(); i-- > 0;) {
    json line = to_json(picked[i]);
    bytes += line.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1;
    if (bytes > kReplyBudget && !newest.empty()) break;
    newest.push_back(std::move(line));
  }
  const bool truncated = newest.size() < picked.size();
  json lines = json::array();
  for (std::size_t i = newest.size(); i-- > 0;) lines.push_back(std::move(newest[i]));
  respond({{"ok", true}, {"lines", std::move(lines)}, {"truncated", truncated}});
}

void Master::cmd_reopen_logs(const json& /*request*/, const ControlCaller& /*caller*/,
                             Respond& respond) {
  reopen_logs();
  respond({{"ok", true}, {"message", "log files reopened"}});
}

void Master::cmd_stop(const json& request, const ControlCaller& /*caller*/, Respond& respond) {
  const bool fast = flag_field(request, "fast");
  respond({{"ok", true}, {"message", fast ? "fast stop started" : "graceful stop started"}});
  handle(fast ? MasterEvent::fast_stop : MasterEvent::graceful_stop);
}

void Master::cmd_scale(const json& request, const ControlCaller& /*caller*/, Respond& respond) {
  const json& value = request.contains("value") ? request["value"] : json();
  std::string text = value.is_string()           ? value.get<std::string>()
                     : value.is_number_integer() ? value.dump()
                                                 : "";
  if (text.empty()) {
    respond(error_reply("scale needs a value: N, +N, -N or auto"));
    return;
  }
  if (text == "auto") {
    // What `workers: auto` would start now: the limits are read anew (a pod resized in place).
    limits_ = read_resource_limits();
    const Derived automatic = auto_workers(limits_);
    const unsigned from = pool_.target();
    if (const auto error = request_scale(static_cast<long long>(automatic.value)); !error.empty()) {
      respond(error_reply(error));
      return;
    }
    respond({{"ok", true},
             {"workers", pool_.target()},
             {"message", "scaling from " + std::to_string(from) + " to " +
                             count_of(pool_.target(), "worker") + " (" + automatic.reason + ")"}});
    return;
  }
  const bool relative = text.front() == '+' || text.front() == '-';
  long long n = 0;
  const char* begin = text.data() + (text.front() == '+' ? 1 : 0);
  const auto [ptr, ec] = std::from_chars(begin, text.data() + text.size(), n);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    respond(error_reply("scale: \"" + text + "\" is not N, +N, -N or auto"));
    return;
  }
  // Bounded first, so the sum cannot overflow.
  const long long step = std::clamp<long long>(n, -100000, 100000);
  const unsigned from = pool_.target();
  const long long wanted = relative ? static_cast<long long>(from) + step : step;
  if (const auto error = request_scale(wanted); !error.empty()) {
    respond(error_reply(error));
    return;
  }
  respond({{"ok", true},
           {"workers", pool_.target()},
           {"message",
            "scaling from " + std::to_string(from) + " to " + count_of(pool_.target(), "worker")}});
}

void Master::cmd_restart(const json& request, const ControlCaller& /*caller*/, Respond& respond) {
  const json& which = request.contains("worker") ? request["worker"] : json();
  std::vector<unsigned> ids;
  const unsigned target = pool_.target();
  if (which.is_string() && which.get<std::string>() == "all") {
    for (const auto& slot : pool_.slots()) {
      if (slot.id < target) ids.push_back(slot.id);
    }
  } else if (const auto id = worker_id(which); id && *id < target) {
    ids.push_back(*id);
  } else {
    respond(error_reply("restart: no worker " + shown(which) + " (0.." +
                        std::to_string(target - 1) + " or \"all\")"));
    return;
  }
  if (pool_.stopping()) {
    respond(error_reply("forkd is stopping"));
    return;
  }
  if (pool_.rollout_active()) {
    respond(error_reply("a rolling restart is already in progress"));
    return;
  }
  const std::string what = ids.size() == 1 && !which.is_string()
                               ? "worker " + std::to_string(ids.front())
                               : "all workers";
  start_rollout(std::move(ids),
                [what, respond = std::move(respond)](bool ok, const std::string& error) {
                  respond(ok ? json{{"ok", true}, {"message", what + " restarted"}}
                             : error_reply("restart of " + what + " failed: " + error));
                });
}

void Master::cmd_send(const json& request, const ControlCaller& caller, Respond& respond) {
  const json& id = request.contains("worker") ? request["worker"] : json();
  const auto slot_id = worker_id(id);
  const auto pid = slot_id ? pool_.serving(*slot_id) : std::nullopt;
  if (!pid) {
    respond(error_reply("send: no running worker " + shown(id)));
    return;
  }
  if (!request.contains("data")) {
    respond(error_reply("send: no \"data\" to deliver"));
    return;
  }
  if (!deliver(*pid, request["data"])) {
    respond(error_reply("send: worker " + shown(id) + " is not reading its IPC channel"));
    return;
  }
  const json& wait = request.contains("wait_ms") ? request["wait_ms"] : json(0);
  // At most a day: a deadline further out would overflow the clock's arithmetic.
  const long wait_ms =
      wait.is_number_unsigned()
          ? static_cast<long>(std::min<std::uint64_t>(wait.get<std::uint64_t>(), 86'400'000))
          : 0L;
  if (wait_ms <= 0) {
    respond({{"ok", true},
             {"worker", *slot_id},
             {"pid", *pid},
             {"message", "delivered to worker " + std::to_string(*slot_id) + " (pid " +
                             std::to_string(*pid) + ")"}});
    return;
  }
  reply_waiters_.push_back(
      {*pid, Clock::now() + std::chrono::milliseconds(wait_ms), caller.client, std::move(respond)});
}

void Master::cmd_broadcast(const json& request, const ControlCaller& /*caller*/, Respond& respond) {
  if (!request.contains("data")) {
    respond(error_reply("broadcast: no \"data\" to deliver"));
    return;
  }
  unsigned delivered = 0;
  for (const auto& slot : pool_.slots()) {
    if (slot.current.pid > 0 && deliver(slot.current.pid, request["data"])) ++delivered;
  }
  respond({{"ok", true},
           {"delivered", delivered},
           {"message", "delivered to " + count_of(delivered, "worker")}});
}

void Master::expire_reply_waiters(TimePoint now) {
  std::vector<ReplyWaiter> expired;
  std::erase_if(reply_waiters_, [&](ReplyWaiter& w) {
    const bool gone = workers_.find(w.pid) == workers_.end();
    if (now < w.deadline && !gone) return false;
    expired.push_back(std::move(w));
    return true;
  });
  for (auto& w : expired) {
    const bool gone = workers_.find(w.pid) == workers_.end();
    w.respond(
        error_reply(gone ? "worker (pid " + std::to_string(w.pid) + ") exited before it replied"
                         : "no reply from worker (pid " + std::to_string(w.pid) + ") in time"));
  }
}

std::optional<ProcOwner> Master::owner(pid_t pid) const {
  const auto io = workers_.find(pid);
  return io != workers_.end() ? io->second.owner : std::nullopt;
}

void Master::publish(json event) {
  if (!control_) return;
  event["at"] = common::log::format_time(std::chrono::system_clock::now());
  control_->publish_event(event);
}

std::string Master::workers_from() const {
  if (pool_.target() != target_for(config_, limits_)) {
    return "scaled to " + std::to_string(pool_.target()) + " (forkctl scale or SIGTTIN/SIGTTOU)";
  }
  if (config_.workers == 0) return auto_workers(limits_).reason;
  return "workers: " + std::to_string(config_.workers) + " in the configuration";
}

json Master::limits_json() const {
  json limits = {{"affinity_cpus", limits_.affinity_cpus},
                 {"cpu_quota", nullptr},
                 {"cpu_quota_from", nullptr},
                 {"memory_bytes", nullptr},
                 {"memory_from", nullptr},
                 {"host_memory_bytes", limits_.host_memory}};
  if (limits_.cpu_quota) {
    limits["cpu_quota"] = limits_.cpu_quota->cpus;
    limits["cpu_quota_from"] = limits_.cpu_quota->where;
  }
  if (limits_.memory_limit) {
    limits["memory_bytes"] = limits_.memory_limit->bytes;
    limits["memory_from"] = limits_.memory_limit->where;
  }
  return limits;
}

std::string Master::command_of(pid_t pid, const std::optional<std::string>& own) const {
  // A built-in app is forked without exec: its command line is the master's own.
  const auto line = read_command_line(pid, owner(pid));
  if (!line) return {};
  if (!exec_mode() && line == own) return "app " + config_.worker.app;
  // A worker writes its own argv (setproctitle): printed by forkctl to a terminal, so escaped.
  return common::escape_text_within(*line, kShownCommand);
}

json Master::status_json() const {
  const TimePoint now = Clock::now();
  const auto own_command = read_command_line(::getpid());
  std::set<pid_t> live;
  json workers = json::array();
  const auto entry = [&](const Slot& slot, const Lane* lane, SlotState state) {
    json w = {{"id", slot.id},
              {"pid", lane != nullptr ? json(lane->pid) : json(nullptr)},
              {"state", to_string(state)},
              {"generation", lane != nullptr ? lane->generation : pool_.generation()},
              {"uptime_s", lane != nullptr ? json(seconds_since(lane->started_at)) : json(nullptr)},
              {"restarts", slot.restarts},
              // Failed starts in a row: a slot given up after 5 shows 5 here, beside its 4
              // restarts (the first start was not one).
              {"failed_starts", slot.backoff.failures()},
              {"last_exit", exit_json(slot)},
              {"rss_bytes", nullptr}};
    w["cpu_percent"] = nullptr;
    // reuseport only: whether new connections may reach its socket.
    w["steering"] = nullptr;
    if (lane != nullptr) {
      if (const auto steering = steering_->state_of(*lane)) w["steering"] = to_string(*steering);
    }
    w["command"] = nullptr;
    // What the worker said of its connections (built-in and library workers; others: null).
    w["accepted"] = nullptr;
    w["connections"] = nullptr;
    if (lane != nullptr) {
      const auto who = owner(lane->pid);
      if (const auto rss = read_rss_bytes(lane->pid, who)) w["rss_bytes"] = *rss;
      if (const auto cpu = read_cpu_seconds(lane->pid, who)) {
        w["cpu_percent"] = rounded(cpu_meter_.percent(lane->pid, *cpu, now, lane->started_at));
        live.insert(lane->pid);
      }
      w["command"] = command_of(lane->pid, own_command);
      if (const auto io = workers_.find(lane->pid); io != workers_.end()) {
        if (!io->second.status_text.empty()) w["status"] = io->second.status_text;
        if (io->second.accepted) w["accepted"] = *io->second.accepted;
        if (io->second.open_connections) w["connections"] = *io->second.open_connections;
      }
    }
    workers.push_back(std::move(w));
  };
  for (const auto& slot : pool_.slots()) {
    if (slot.current.pid <= 0 && !slot.incoming && slot.id < pool_.target()) {
      entry(slot, nullptr, slot.current.state);
    }
  }
  pool_.for_each_process(
      [&](const Slot& slot, const Lane& lane) { entry(slot, &lane, lane.state); });
  std::stable_sort(workers.begin(), workers.end(),
                   [](const json& a, const json& b) { return a["id"] < b["id"]; });
  json last_reload = nullptr;
  if (last_reload_) {
    last_reload = {{"ok", last_reload_->ok},
                   {"error", last_reload_->ok ? json(nullptr) : json(last_reload_->error)},
                   {"at", common::log::format_time(last_reload_->at)}};
  }
  json master_cpu = nullptr;
  if (const auto cpu = read_cpu_seconds(::getpid())) {
    master_cpu = rounded(cpu_meter_.percent(::getpid(), *cpu, now, started_at_));
    live.insert(::getpid());
  }
  cpu_meter_.keep_only(live);
  json listeners = json::array();
  for (const auto& l : listeners_.listeners()) {
    listeners.push_back({{"name", l.config.name}, {"address", l.config.address}});
  }
  // Slots that serve: one whose replacement is already ready counts once.
  unsigned serving = 0;
  for (const auto& slot : pool_.slots()) {
    const bool ready = (slot.current.pid > 0 && slot.current.state == SlotState::ready) ||
                       (slot.incoming && slot.incoming->state == SlotState::ready);
    if (slot.id < pool_.target() && ready) ++serving;
  }
  const auto master_rss = read_rss_bytes(::getpid());
  const Derived max_memory = effective_max_memory();
  return {{"master",
           {{"pid", ::getpid()},
            {"version", FORKD_VERSION},
            {"uptime_s", seconds_since(started_at_)},
            {"config", config_path_.empty() ? config_.source : config_path_},
            {"generation", pool_.generation()},
            {"workers_target", pool_.target()},
            {"workers_ready", serving},
            {"workers_from", workers_from()},
            {"rss_bytes", master_rss ? json(*master_rss) : json(nullptr)},
            {"cpu_percent", master_cpu},
            {"listeners", listeners},
            {"limits", limits_json()},
            {"max_memory",
             {{"bytes", max_memory.value},
              {"from", max_memory.reason.empty() ? json(nullptr) : json(max_memory.reason)}}},
            {"stopping", pool_.stopping()},
            {"last_reload", last_reload}}},
          {"workers", workers}};
}

}  // namespace forkd::daemon
