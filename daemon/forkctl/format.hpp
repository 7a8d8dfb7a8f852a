// forkctl's output: a reply line -> what goes to stdout and stderr and the exit code; the
// status table and its human units. Pure: no I/O, so every rendering is unit-tested.
// It must not guess at fields it does not know: missing or odd values print as "-".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/forkctl/args.hpp"

namespace forkd::ctl {

struct Rendered {
  std::string out;  // for stdout
  std::string err;  // for stderr
  int exit_code = kExitOk;
};

// 512 -> "512B", 12900000 -> "12.3MiB".
[[nodiscard]] std::string format_bytes(std::uint64_t bytes);
// 45 -> "45s", 192 -> "3m12s", 7500 -> "2h5m", 277200 -> "3d5h".
[[nodiscard]] std::string format_uptime(double seconds);
// {"code":3} -> "code 3", {"signal":9} -> "signal 9", null -> "-".
[[nodiscard]] std::string format_last_exit(const nlohmann::json& last_exit);
// The master lines and the aligned worker table (ID PID STATE GEN UPTIME RESTARTS LAST-EXIT RSS).
// One captured line as `forkctl logs` prints it: "[ID pid PID stdout|stderr] line".
[[nodiscard]] std::string format_log_line(const nlohmann::json& line);
// `forkctl logs`: format_log_line for each of the reply's lines, oldest first.
[[nodiscard]] std::string format_logs(const nlohmann::json& reply);
[[nodiscard]] std::string format_status(const nlohmann::json& reply);
// The documented `status --json` object: the reply without "ok".
[[nodiscard]] nlohmann::json status_document(const nlohmann::json& reply);

// What forkctl prints for the reply line to invocation.request (every command but events'
// stream and version).
[[nodiscard]] Rendered render_reply(const Invocation& invocation, std::string_view reply_line);

// `forkctl version`: its own version and, when the daemon answered, the daemon's.
// `reply_line` is nullopt when the daemon could not be reached (the caller reports that and
// exits 2); a refusal or a malformed reply exits 1.
[[nodiscard]] Rendered render_version(const Invocation& invocation, std::string_view own_version,
                                      const std::optional<std::string>& reply_line);

}  // namespace forkd::ctl
