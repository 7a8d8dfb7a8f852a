#include "daemon/forkctl/format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace forkd::ctl {
namespace {

using Json = nlohmann::json;

std::string compact(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto found = object.find(key);
  if (found == object.end() || found->is_null()) return nullptr;
  return &*found;
}

// A scalar as the table shows it: strings bare, numbers as written, anything else "-".
std::string cell(const Json& object, const char* key) {
  const Json* value = member(object, key);
  if (value == nullptr) return "-";
  if (value->is_string()) return value->get<std::string>();
  if (value->is_number_integer()) return compact(*value);
  if (value->is_number_float()) return compact(*value);
  if (value->is_boolean()) return value->get<bool>() ? "yes" : "no";
  return "-";
}

std::optional<double> number(const Json& object, const char* key) {
  const Json* value = member(object, key);
  if (value == nullptr || !value->is_number()) return std::nullopt;
  return value->get<double>();
}

std::string uptime_cell(const Json& object) {
  const auto seconds = number(object, "uptime_s");
  return seconds ? format_uptime(*seconds) : "-";
}

std::string rss_cell(const Json& object) {
  const auto bytes = number(object, "rss_bytes");
  if (!bytes || *bytes <= 0) return "-";
  // A reply is input like any other: past what uint64 holds the cast is undefined.
  if (*bytes >= 1.8e19) return ">16EiB";
  return format_bytes(static_cast<std::uint64_t>(*bytes));
}

std::string last_reload_text(const Json& master) {
  const Json* reload = member(master, "last_reload");
  if (reload == nullptr || !reload->is_object()) return "none";
  const Json* ok = member(*reload, "ok");
  const bool succeeded = ok != nullptr && ok->is_boolean() && ok->get<bool>();
  std::string text = succeeded ? "ok" : "failed";
  if (member(*reload, "at") != nullptr) text += " at " + cell(*reload, "at");
  if (!succeeded && member(*reload, "error") != nullptr) text += ": " + cell(*reload, "error");
  return text;
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string error_text(const Json& reply) {
  const Json* error = member(reply, "error");
  if (error == nullptr) return "failed (no reason given)";
  return error->is_string() ? error->get<std::string>() : compact(*error);
}

std::string message_or_ok(const Json& reply) {
  const Json* message = member(reply, "message");
  if (message == nullptr) return "ok\n";
  return (message->is_string() ? message->get<std::string>() : compact(*message)) + "\n";
}

std::string lines_of(const Json& list) {
  std::string out;
  for (const auto& item : list)
    out += (item.is_string() ? item.get<std::string>() : compact(item)) + "\n";
  return out;
}

std::string render_reload(const Json& reply, bool dry_run) {
  std::string out;
  if (const Json* message = member(reply, "message")) {
    out += (message->is_string() ? message->get<std::string>() : compact(*message)) + "\n";
  }
  const Json* changes = member(reply, "changes");
  if (changes != nullptr && changes->is_array()) {
    out += lines_of(*changes);
    if (changes->empty() && out.empty()) out = "no changes\n";
  }
  if (out.empty()) out = dry_run ? "no changes\n" : "reloaded\n";
  return out;
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 5> kUnits{"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  // Round first, so 1023.96KiB prints as 1.0MiB rather than 1024.0KiB.
  while (std::round(value * 10.0) / 10.0 >= 1024.0 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f}{}", value, kUnits[unit]);
}

std::string format_uptime(double seconds) {
  if (!(seconds > 0)) return "0s";
  if (seconds >= 1e15) return ">31My";  // beyond any real uptime; the cast would be undefined
  const auto total = static_cast<std::uint64_t>(seconds);
  const std::uint64_t days = total / 86400;
  const std::uint64_t hours = total % 86400 / 3600;
  const std::uint64_t minutes = total % 3600 / 60;
  const std::uint64_t secs = total % 60;
  if (days > 0) return std::to_string(days) + "d" + std::to_string(hours) + "h";
  if (hours > 0) return std::to_string(hours) + "h" + std::to_string(minutes) + "m";
  if (minutes > 0) return std::to_string(minutes) + "m" + std::to_string(secs) + "s";
  return std::to_string(secs) + "s";
}

std::string format_last_exit(const Json& last_exit) {
  if (!last_exit.is_object()) return "-";
  if (member(last_exit, "signal") != nullptr) return "signal " + cell(last_exit, "signal");
  if (member(last_exit, "code") != nullptr) return "code " + cell(last_exit, "code");
  return "-";
}

Json status_document(const Json& reply) {
  Json document = reply;
  if (document.is_object()) document.erase("ok");
  return document;
}

namespace {

std::string cpu_cell(const Json& object) {
  const auto percent = number(object, "cpu_percent");
  if (!percent || *percent < 0 || *percent > 1e6) return "-";
  return fmt::format("{:.1f}%", *percent);
}

// "failed (5 failed starts)", "backoff (2 failed starts)": the streak behind a vacancy;
// "ready (stalled)": a reuseport worker left out of the new connections.
std::string state_cell(const Json& object) {
  std::string state = cell(object, "state");
  const auto failures = number(object, "failed_starts");
  if (failures && *failures >= 1 && *failures < 1e9 && (state == "failed" || state == "backoff")) {
    const auto n = static_cast<std::uint64_t>(*failures);
    state += fmt::format(" ({} failed start{})", n, n == 1 ? "" : "s");
  }
  // reuseport: a ready worker left out of the new connections says so ("ready (stalled)").
  if (const Json* steering = member(object, "steering");
      state == "ready" && steering != nullptr && steering->is_string() && *steering != "in") {
    state += " (" + steering->get<std::string>() + ")";
  }
  return state;
}

std::string plural(const std::string& count, const char* noun) {
  return count + " " + noun + (count == "1" ? "" : "s");
}

// The line `pm2 ls` users look for first: how many serve, the master's own cost, where it listens.
// "forkd 0.1.0, pid 4242: 2/2 workers ready, generation 3, up 3m12s, master 4.3MiB 0.1% CPU"
std::string summary_text(const Json& master, const Json* workers) {
  std::string out = "forkd " + cell(master, "version") + ", pid " + cell(master, "pid") + ": ";
  const Json* target = member(master, "workers_target");
  if (member(master, "workers_ready") != nullptr && target != nullptr) {
    out += cell(master, "workers_ready") + "/" + plural(cell(master, "workers_target"), "worker") +
           " ready";
  } else {
    out += plural(workers != nullptr && workers->is_array() ? std::to_string(workers->size()) : "0",
                  "worker");
  }
  out += ", generation " + cell(master, "generation") + ", up " + uptime_cell(master);
  if (const std::string rss = rss_cell(master); rss != "-") {
    out += ", master " + rss;
    if (const std::string cpu = cpu_cell(master); cpu != "-") out += " " + cpu + " CPU";
  }
  out += "\n";
  if (const Json* listeners = member(master, "listeners");
      listeners != nullptr && listeners->is_array() && !listeners->empty()) {
    out += "listening on ";
    bool first = true;
    for (const Json& l : *listeners) {
      out += (first ? "" : ", ") + cell(l, "address") + " (" + cell(l, "name") + ")";
      first = false;
    }
    out += "\n";
  }
  return out;
}

// "command node server.js": what the workers run (two during a rollout to a new command).
std::string commands_text(const Json* workers) {
  if (workers == nullptr || !workers->is_array()) return {};
  std::vector<std::string> commands;
  for (const Json& worker : *workers) {
    const Json* command = member(worker, "command");
    if (command == nullptr || !command->is_string() || command->get<std::string>().empty())
      continue;
    const auto text = command->get<std::string>();
    if (std::find(commands.begin(), commands.end(), text) == commands.end())
      commands.push_back(text);
  }
  std::string out;
  for (const auto& command : commands) out += "command " + command + "\n";
  return out;
}

// "workers: 2 (auto: 2 = cgroup CPU quota ...)", the cgroup limits and max_memory, each line
// only when the master says something about it.
std::string limits_text(const Json& master) {
  std::string out;
  if (const Json* from = member(master, "workers_from"); from != nullptr && from->is_string())
    out += "workers: " + cell(master, "workers_target") + " (" + from->get<std::string>() + ")\n";
  if (const Json* limits = member(master, "limits"); limits != nullptr) {
    std::vector<std::string> parts;
    if (const auto cpus = number(*limits, "cpu_quota")) {
      parts.push_back(fmt::format("CPU quota {:g} ({})", *cpus, cell(*limits, "cpu_quota_from")));
    }
    if (const auto bytes = number(*limits, "memory_bytes");
        bytes && *bytes > 0 && *bytes < 1.8e19) {
      parts.push_back("memory " + format_bytes(static_cast<std::uint64_t>(*bytes)) + " (" +
                      cell(*limits, "memory_from") + ")");
    }
    if (!parts.empty()) {
      out += "cgroup limits: ";
      for (std::size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : ", ") + parts[i];
      out += "\n";
    }
  }
  if (const Json* max_memory = member(master, "max_memory"); max_memory != nullptr) {
    if (const Json* from = member(*max_memory, "from"); from != nullptr && from->is_string()) {
      out += "max_memory: " + from->get<std::string>() + "\n";
    }
  }
  return out;
}

}  // namespace

std::string format_status(const Json& reply) {
  std::string out;
  const Json* master = member(reply, "master");
  const Json empty = Json::object();
  const Json& m = master != nullptr ? *master : empty;
  out += summary_text(m, member(reply, "workers"));
  out += commands_text(member(reply, "workers"));
  out += "config " + cell(m, "config") + "\n";
  out += "last reload: " + last_reload_text(m) + "\n";
  out += limits_text(m);

  const Json* workers = member(reply, "workers");
  if (workers == nullptr || !workers->is_array() || workers->empty()) {
    return out + "no workers\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "PID", "STATE", "GEN", "UPTIME", "RESTARTS", "LAST-EXIT", "CPU", "RSS",
                  "CONNS", "ACCEPTED"});
  for (const Json& worker : *workers) {
    const Json* last_exit = member(worker, "last_exit");
    rows.push_back({cell(worker, "id"), cell(worker, "pid"), state_cell(worker),
                    cell(worker, "generation"), uptime_cell(worker), cell(worker, "restarts"),
                    last_exit != nullptr ? format_last_exit(*last_exit) : "-", cpu_cell(worker),
                    rss_cell(worker), cell(worker, "connections"), cell(worker, "accepted")});
  }
  return out + "\n" + table(rows);
}

std::string format_log_line(const Json& line) {
  return "[" + cell(line, "worker") + " pid " + cell(line, "pid") + " " + cell(line, "stream") +
         "] " + cell(line, "text") + "\n";
}

std::string format_logs(const Json& reply) {
  std::string out;
  const Json* lines = member(reply, "lines");
  if (lines == nullptr || !lines->is_array()) return out;
  for (const Json& line : *lines) out += format_log_line(line);
  return out;
}

Rendered render_reply(const Invocation& invocation, std::string_view reply_line) {
  Rendered rendered;
  Json reply;
  try {
    reply = Json::parse(reply_line);
  } catch (const Json::exception&) {
    reply = nullptr;
  }
  const Json* ok = member(reply, "ok");
  if (ok == nullptr || !ok->is_boolean()) {
    rendered.err = "forkctl: malformed reply from forkd: " + std::string(reply_line) + "\n";
    rendered.exit_code = kExitFailed;
    return rendered;
  }
  const std::string raw = std::string(reply_line) + "\n";
  if (!ok->get<bool>()) {
    if (invocation.json) rendered.out = raw;
    const std::string what = invocation.command == Command::reload ? "reload failed: " : "";
    rendered.err = "forkctl: " + what + error_text(reply) + "\n";
    rendered.exit_code = kExitFailed;
    return rendered;
  }
  switch (invocation.command) {
    case Command::status:
      rendered.out =
          invocation.json ? compact(status_document(reply)) + "\n" : format_status(reply);
      break;
    case Command::reload:
      rendered.out =
          invocation.json ? raw : render_reload(reply, invocation.request.value("dry_run", false));
      break;
    case Command::logs:
      rendered.out = invocation.json ? raw : format_logs(reply);
      break;
    case Command::send:
      if (invocation.json) {
        rendered.out = raw;
      } else if (const Json* answer = member(reply, "reply");
                 answer != nullptr && invocation.wait.count() > 0) {
        rendered.out = compact(*answer) + "\n";
      } else {
        rendered.out = message_or_ok(reply);
      }
      break;
    default:
      rendered.out = invocation.json ? raw : message_or_ok(reply);
      break;
  }
  return rendered;
}

Rendered render_version(const Invocation& invocation, std::string_view own_version,
                        const std::optional<std::string>& reply_line) {
  Rendered rendered;
  std::optional<std::string> daemon_version;
  if (reply_line) {
    Json reply;
    try {
      reply = Json::parse(*reply_line);
    } catch (const Json::exception&) {
      reply = nullptr;
    }
    const Json* ok = member(reply, "ok");
    if (ok != nullptr && ok->is_boolean() && ok->get<bool>() &&
        member(reply, "version") != nullptr) {
      daemon_version = cell(reply, "version");
    } else if (ok != nullptr && ok->is_boolean() && !ok->get<bool>()) {
      rendered.err = "forkctl: forkd: " + error_text(reply) + "\n";
      rendered.exit_code = kExitFailed;
    } else {
      rendered.err = "forkctl: malformed reply from forkd: " + *reply_line + "\n";
      rendered.exit_code = kExitFailed;
    }
  }
  if (invocation.json) {
    Json document{{"forkctl", own_version}, {"forkd", nullptr}};
    if (daemon_version) document["forkd"] = *daemon_version;
    rendered.out = compact(document) + "\n";
  } else {
    rendered.out = "forkctl " + std::string(own_version) + "\n";
    if (daemon_version) rendered.out += "forkd " + *daemon_version + "\n";
  }
  return rendered;
}

}  // namespace forkd::ctl
