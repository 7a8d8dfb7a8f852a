// The properties each fuzz target checks, one check per target, shared by the libFuzzer entries
// and tests/unit/fuzz_regressions_test.cpp: "" when every property held, else the broken one.
// Checks never abort; `skip_known_bugs` passes over inputs of bugs already reported (so the
// fuzzer keeps looking for new ones), and the regression tests replay with it off.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/http.hpp"
#include "common/ipc_protocol.hpp"
#include "common/json_lines.hpp"
#include "common/ndjson.hpp"
#include "common/sd_notify.hpp"
#include "common/units.hpp"
#include "daemon/forkctl/args.hpp"
#include "daemon/forkctl/format.hpp"

namespace forkd::fuzz {

// Takes parameters (sizes, chunkings) from the front of the input; 0 once it is used up.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  std::uint8_t take_byte() {
    if (data_.empty()) return 0;
    const auto byte = static_cast<std::uint8_t>(data_.front());
    data_.remove_prefix(1);
    return byte;
  }
  std::uint64_t take_u64() {
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = (value << 8) | take_byte();
    return value;
  }
  [[nodiscard]] std::string_view rest() const { return data_; }

 private:
  std::string_view data_;
};

// Deterministic chunk sizes (xorshift), so a finding replays exactly.
class Chunker {
 public:
  Chunker(std::uint8_t seed, std::size_t max_chunk)
      : state_(0x9e3779b97f4a7c15ULL ^ seed), max_chunk_(std::max<std::size_t>(max_chunk, 1)) {}
  std::size_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return 1 + static_cast<std::size_t>(state_ % max_chunk_);
  }

 private:
  std::uint64_t state_;
  std::size_t max_chunk_;
};

inline std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

// ---- config: common::load_config_string ------------------------------------------------------

// Loading either succeeds or throws ConfigError (any other exception escapes and is a finding,
// since forkd maps only ConfigError to exit 78). What loads must print and load back equal.
inline std::string check_config(std::string_view data, bool /*skip_known_bugs*/ = true) {
  const std::string yaml(data);
  common::Config config;
  try {
    config = common::load_config_string(yaml, "fuzz.yaml");
  } catch (const common::ConfigError& error) {
    if (error.issues().empty()) return "ConfigError without any issue";
    for (const auto& issue : error.issues()) {
      if (issue.message.empty()) return "ConfigError issue without a message";
    }
    return {};
  }
  const std::string printed = common::to_yaml(config);
  common::Config again;
  try {
    again = common::load_config_string(printed, "printed.yaml");
  } catch (const common::ConfigError& error) {
    return "to_yaml output does not load back: " + std::string(error.what()) + "\n" + printed;
  }
  again.source = config.source;
  if (!(again == config)) return "to_yaml round trip changed the config:\n" + printed;
  for (const auto& listen : config.listen) {
    std::string why;
    const auto parsed = common::try_parse_listen_address(listen.address, why);
    if (!parsed) return "a loaded listen address does not parse again: " + listen.address;
  }
  return {};
}

// ---- units: durations and sizes --------------------------------------------------------------

inline std::string check_units(std::string_view data, bool /*skip_known_bugs*/ = true) {
  // The header's promise: parse(format(x)) == x for every non-negative x.
  {
    ByteReader reader(data);
    const std::uint64_t raw = reader.take_u64();
    const auto ms = std::chrono::milliseconds(static_cast<std::int64_t>(
        raw & static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())));
    std::string why;
    const std::string text = common::format_duration(ms);
    const auto back = common::try_parse_duration(text, why);
    if (!back || *back != ms) return "duration " + text + " does not parse back: " + why;
    const std::string size_text = common::format_size(raw);
    const auto size_back = common::try_parse_size(size_text, why);
    if (!size_back || *size_back != raw) return "size " + size_text + " does not parse back";
  }

  const std::string_view text = data;
  std::string why;
  const auto duration = common::try_parse_duration(text, why);
  if (duration) {
    if (duration->count() < 0) return "negative duration parsed";
    const auto again = common::try_parse_duration(common::format_duration(*duration), why);
    if (!again || *again != *duration) return "parsed duration does not print and parse back";
  } else if (why.empty()) {
    return "duration refused without a reason";
  }
  try {
    const auto thrown = common::parse_duration(text);
    if (!duration || thrown != *duration) return "parse_duration disagrees with try_parse_duration";
  } catch (const common::UnitError&) {
    if (duration) return "parse_duration threw where try_parse_duration succeeded";
  }

  why.clear();
  const auto size = common::try_parse_size(text, why);
  if (size) {
    const auto again = common::try_parse_size(common::format_size(*size), why);
    if (!again || *again != *size) return "parsed size does not print and parse back";
  } else if (why.empty()) {
    return "size refused without a reason";
  }
  try {
    const auto thrown = common::parse_size(text);
    if (!size || thrown != *size) return "parse_size disagrees with try_parse_size";
  } catch (const common::UnitError&) {
    if (size) return "parse_size threw where try_parse_size succeeded";
  }

  // forkctl's own reading of --timeout / --wait.
  try {
    const auto ctl = ctl::parse_duration(text);
    if (ctl.count() < 0 || ctl.count() > (std::int64_t{1} << 40)) {
      return "forkctl duration out of its documented range";
    }
  } catch (const ctl::UsageError&) {
  }
  return {};
}

// ---- ndjson: common::LineDecoder under any chunking ------------------------------------------

struct DecodedEvent {
  common::LineDecoder::Event event;
  std::string line;
  bool operator==(const DecodedEvent&) const = default;
};

// What the decoder must report for `stream`, written from the header's contract: every
// '\n'-terminated line, its '\r' dropped, or `oversized` when longer than max_line; an
// unterminated tail longer than max_line is reported oversized at once.
inline std::vector<DecodedEvent> expected_lines(std::string_view stream, std::size_t max_line,
                                                std::size_t& tail_buffered) {
  std::vector<DecodedEvent> events;
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = stream.find('\n', start);
    std::string_view raw = stream.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (nl == std::string_view::npos) {
      if (raw.size() > max_line) {
        events.push_back({common::LineDecoder::Event::oversized, {}});
        tail_buffered = 0;
      } else {
        tail_buffered = raw.size();
      }
      return events;
    }
    if (raw.size() > max_line) {
      events.push_back({common::LineDecoder::Event::oversized, {}});
    } else {
      if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
      events.push_back({common::LineDecoder::Event::line, std::string(raw)});
    }
    start = nl + 1;
  }
}

inline std::string check_ndjson(std::string_view data, bool /*skip_known_bugs*/ = true) {
  ByteReader reader(data);
  const std::size_t max_line = 1 + reader.take_byte() % 64;
  Chunker chunker(reader.take_byte(), 1 + reader.take_byte() % 32);
  const std::string_view stream = reader.rest();

  common::LineDecoder decoder(max_line);
  std::vector<DecodedEvent> got;
  std::string broken;
  const common::LineDecoder::Sink sink = [&](common::LineDecoder::Event event,
                                             std::string_view line) {
    if (line.find('\n') != std::string_view::npos) broken = "a line holds a newline";
    if (line.size() > max_line) broken = "a line longer than max_line was delivered";
    got.push_back({event, std::string(line)});
  };
  std::string_view left = stream;
  while (!left.empty()) {
    const std::size_t n = std::min(left.size(), chunker.next());
    decoder.feed(left.substr(0, n), sink);
    if (decoder.buffered() > max_line) return "decoder holds more than max_line bytes";
    left.remove_prefix(n);
  }
  if (!broken.empty()) return broken;
  std::size_t tail = 0;
  const auto want = expected_lines(stream, max_line, tail);
  if (got != want) {
    return "events differ from the contract: got " + std::to_string(got.size()) + ", want " +
           std::to_string(want.size());
  }
  if (decoder.buffered() != tail) return "buffered() disagrees with the unterminated tail";
  // Every line then meets the checks the channels apply; a value survives being written back.
  for (const auto& decoded : got) {
    if (decoded.event != common::LineDecoder::Event::line) continue;
    const auto parsed = common::parse_json_line(decoded.line);
    if (parsed.status != common::ParsedLine::Status::value) continue;
    const std::string again = common::to_json_line(parsed.value);
    if (again.find('\n') != again.size() - 1) return "a value was written as more than one line";
    const auto back = common::parse_json_line(std::string_view(again).substr(0, again.size() - 1));
    if (back.status != common::ParsedLine::Status::value || back.value != parsed.value) {
      return "a value did not survive being written and read back";
    }
  }
  return {};
}

// ---- control: request lines as the control socket frames and validates them ----------------

// The command's request must be one JSON object line naming the command, as the server wants.
inline std::string check_ctl_request(const nlohmann::json& request, ctl::Command command) {
  const std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (line.find('\n') != std::string::npos) return "a request line holds a newline";
  const auto parsed = nlohmann::json::parse(line, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return "a request does not parse back";
  const auto cmd = parsed.find("cmd");
  if (cmd == parsed.end() || !cmd->is_string() || *cmd != ctl::command_name(command)) {
    return "a request names another command";
  }
  return {};
}

// A reply line rendered as forkctl renders it for one command (`pick` chooses which, and
// --json or not): no throw, an exit code in range, a reason whenever it fails.
inline std::string check_ctl_rendering(std::string_view line, std::uint8_t pick) {
  constexpr ctl::Command kCommands[] = {ctl::Command::status,    ctl::Command::reload,
                                        ctl::Command::restart,   ctl::Command::send,
                                        ctl::Command::broadcast, ctl::Command::stop};
  ctl::Invocation invocation;
  invocation.command = kCommands[pick % std::size(kCommands)];
  invocation.json = (pick & 0x80) != 0;
  invocation.request = {{"cmd", ctl::command_name(invocation.command)}, {"dry_run", true}};
  invocation.wait = std::chrono::milliseconds((pick & 0x40) != 0 ? 100 : 0);
  const ctl::Rendered rendered = ctl::render_reply(invocation, line);
  if (rendered.exit_code != ctl::kExitOk && rendered.exit_code != ctl::kExitFailed) {
    return "render_reply exit code out of range";
  }
  if (rendered.exit_code == ctl::kExitFailed && rendered.err.empty()) {
    return "render_reply failed without saying why";
  }
  const ctl::Rendered version =
      ctl::render_version(invocation, "0.0.0", std::optional<std::string>(line));
  if (version.out.empty()) return "render_version printed nothing";
  const auto reply = nlohmann::json::parse(line, nullptr, false);
  if (!reply.is_discarded()) {
    (void)ctl::format_status(reply);
    (void)ctl::status_document(reply);
    if (reply.is_object()) {
      if (const auto exit = reply.find("last_exit"); exit != reply.end()) {
        (void)ctl::format_last_exit(*exit);
      }
    }
  }
  return {};
}

// Inputs that reach a bug already reported and kept as a failing regression test
// (tests/unit/fuzz_regressions_test.cpp), skipped so the fuzzer keeps looking for new ones.
// Each entry goes when its bug is fixed.
inline bool hits_known_ctl_bug(const std::vector<std::string>& args) {
  // `forkctl scale ""`: build_request calls front() on the empty value (daemon/forkctl/args.cpp).
  const bool scale = std::find(args.begin(), args.end(), "scale") != args.end();
  return scale && std::find(args.begin(), args.end(), "") != args.end();
}

// Bytes a client sends: framed by LineDecoder in arbitrary chunks, each line parsed and checked
// as the control server does, rendered as a reply, and split into words as forkctl's argv.
inline std::string check_control(std::string_view data, bool skip_known_bugs = true) {
  ByteReader reader(data);
  const std::size_t max_line = 1 + reader.take_byte() * std::size_t{16};
  const std::uint8_t pick = reader.take_byte();
  Chunker chunker(reader.take_byte(), 64);
  std::string_view left = reader.rest();

  common::LineDecoder decoder(max_line);
  std::vector<std::string> lines;
  std::size_t oversized = 0;
  const common::LineDecoder::Sink sink = [&](common::LineDecoder::Event event,
                                             std::string_view line) {
    if (event == common::LineDecoder::Event::oversized) {
      ++oversized;
    } else {
      lines.emplace_back(line);
    }
  };
  while (!left.empty()) {
    const std::size_t n = std::min(left.size(), chunker.next());
    decoder.feed(left.substr(0, n), sink);
    left.remove_prefix(n);
  }

  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.size() > max_line) return "a control line over the cap was delivered";
    const auto request = nlohmann::json::parse(line, nullptr, false);
    if (!request.is_discarded() && request.is_object()) {
      const auto cmd = request.find("cmd");
      if (cmd != request.end() && cmd->is_string()) {
        // The daemon logs requests and echoes fields back in replies: dumping must not throw.
        (void)request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
    }
    if (auto broken = check_ctl_rendering(line, static_cast<std::uint8_t>(pick + i));
        !broken.empty()) {
      return broken;
    }

    std::vector<std::string> args;
    for (const std::string_view word : split(line, ' ')) args.emplace_back(word);
    if (skip_known_bugs && hits_known_ctl_bug(args)) continue;
    try {
      const ctl::Invocation invocation = ctl::parse_args(args);
      if (!invocation.help && !invocation.show_version) {
        if (auto broken = check_ctl_request(invocation.request, invocation.command);
            !broken.empty()) {
          return broken;
        }
        (void)ctl::reply_timeout(invocation);
      }
    } catch (const ctl::UsageError& error) {
      if (std::string_view(error.what()).empty()) return "UsageError without a reason";
    }
  }
  return {};
}

// ---- sd_notify: common::parse_notify_message ------------------------------------------------

inline bool notify_key_ok(std::string_view key) {
  const auto start = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  };
  const auto rest = [&](char c) { return start(c) || (c >= '0' && c <= '9'); };
  return !key.empty() && start(key.front()) && std::all_of(key.begin(), key.end(), rest);
}

inline std::string check_sd_notify(std::string_view data, bool /*skip_known_bugs*/ = true) {
  const auto fields = common::parse_notify_message(data);
  const std::size_t lines =
      static_cast<std::size_t>(std::count(data.begin(), data.end(), '\n')) + 1;
  if (fields.size() > lines) return "more fields than lines";
  std::size_t next = 0;  // fields come in order: each is a whole line of the datagram
  for (const auto& [key, value] : fields) {
    if (!notify_key_ok(key)) return "a field with an invalid key: " + key;
    if (value.find('\n') != std::string::npos || value.find('\0') != std::string::npos) {
      return "a value holds a newline or NUL";
    }
    const std::string line = key + "=" + value;
    const std::size_t at = data.find(line, next);
    if (at == std::string_view::npos) return "a field that is not a line of the datagram";
    next = at + line.size();
    const auto interval = common::watchdog_interval_from(value.c_str(), nullptr, 1);
    if (interval && interval->count() <= 0) return "a non-positive watchdog interval";
    if (common::watchdog_interval_from(value.c_str(), "2", 1)) {
      return "WATCHDOG_PID of another process accepted";
    }
  }
  return {};
}

// ---- http: common::parse_request, as http-hello's server feeds it ---------------------------

inline bool same_request(const common::HttpRequest& a, const common::HttpRequest& b) {
  if (a.method != b.method || a.target != b.target || a.path != b.path || a.query != b.query ||
      a.version_minor != b.version_minor || a.body != b.body || a.keep_alive != b.keep_alive ||
      a.headers.size() != b.headers.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

// Known bug (reported; failing regression test): parse_request checks the head cap only after
// skipping every leading blank line, so blank lines past the cap followed by a stray CR answer
// 400 when they arrive at once and 431 when they arrive in pieces (common/http.cpp).
inline bool hits_known_http_bug(std::string_view buffer, const common::HttpLimits& limits) {
  const std::size_t blank = buffer.find_first_not_of("\r\n");
  return (blank == std::string_view::npos ? buffer.size() : blank) > limits.max_head_bytes;
}

inline std::string check_one_request(std::string_view buffer, const common::HttpLimits& limits,
                                     Chunker& chunker, std::size_t& consumed,
                                     bool skip_known_bugs) {
  using common::ParseStatus;
  common::HttpRequest whole;
  const common::ParseResult result = common::parse_request(buffer, limits, whole);
  consumed = 0;
  // The metrics endpoint reads the head alone: it must agree with the whole request's parse.
  common::HttpRequest head_only;
  const common::ParseResult head = common::parse_request_head(buffer, limits, head_only);
  if (head.status == ParseStatus::error &&
      (result.status != ParseStatus::error || result.error_status != head.error_status)) {
    return "the head alone failed where the whole request did not fail the same way";
  }
  if (result.status == ParseStatus::complete &&
      (head.status != ParseStatus::complete || head.consumed > result.consumed ||
       head_only.method != whole.method || head_only.target != whole.target ||
       head_only.headers.size() != whole.headers.size())) {
    return "the head alone parses differently from the whole request";
  }
  switch (result.status) {
    case ParseStatus::incomplete:
      break;
    case ParseStatus::error: {
      constexpr int kStatuses[] = {400, 413, 431, 501, 505};
      if (std::find(std::begin(kStatuses), std::end(kStatuses), result.error_status) ==
          std::end(kStatuses)) {
        return "an error status the parser does not document: " +
               std::to_string(result.error_status);
      }
      if (result.error.empty()) return "an error without a reason";
      break;
    }
    case ParseStatus::complete:
      if (result.consumed == 0 || result.consumed > buffer.size()) return "consumed out of range";
      if (whole.method.empty() || whole.target.empty()) return "a request without method/target";
      if (whole.body.size() > limits.max_body_bytes) return "a body over the cap";
      if (whole.version_minor > 9) return "a minor version over 9";
      consumed = result.consumed;
      break;
  }

  // The server calls again as bytes arrive: every prefix must say "incomplete" until the
  // request is whole, and an error seen early must be the error of the whole buffer.
  std::size_t end = 0;
  const std::size_t stop = result.status == ParseStatus::complete ? consumed : buffer.size();
  while (end < stop) {
    end = std::min(stop, end + chunker.next());
    common::HttpRequest partial;
    const common::ParseResult r = common::parse_request(buffer.substr(0, end), limits, partial);
    if (end < stop || result.status != ParseStatus::complete) {
      if (r.status == ParseStatus::complete) {
        return "a prefix parsed complete where the whole buffer did not stop there";
      }
      if (r.status == ParseStatus::error && result.status != ParseStatus::error) {
        return "a prefix failed where the whole buffer does not";
      }
      if (r.status == ParseStatus::error && r.error_status != result.error_status &&
          !(skip_known_bugs && hits_known_http_bug(buffer, limits))) {
        return "a prefix failed with another status than the whole buffer";
      }
    } else {
      if (r.status != ParseStatus::complete || r.consumed != consumed) {
        return "the request alone does not parse as it did inside the buffer";
      }
      if (!same_request(partial, whole)) return "the request alone parses differently";
    }
  }

  if (result.status == ParseStatus::complete) {
    (void)common::query_param(whole.query, "n");
    (void)common::query_param(whole.query, "ms");
    common::HttpResponse response;
    response.status = 200;
    response.body = whole.body;
    response.set_header("X-Worker-Id", "0");
    const std::string out = common::serialize_response(response, whole.method == "HEAD",
                                                       whole.keep_alive, whole.version_minor);
    if (out.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) return "a response without its status line";
  }
  return {};
}

inline std::string check_http(std::string_view data, bool skip_known_bugs = true) {
  ByteReader reader(data);
  common::HttpLimits limits;
  limits.max_head_bytes = 16 + std::size_t{reader.take_byte()} * 16;
  limits.max_body_bytes = std::size_t{reader.take_byte()} * 4;
  Chunker chunker(reader.take_byte(), 1 + reader.take_byte() % 64);
  std::string_view buffer = reader.rest();
  // Pipelined requests, as a keep-alive connection delivers them.
  for (int i = 0; i < 16 && !buffer.empty(); ++i) {
    std::size_t consumed = 0;
    if (auto broken = check_one_request(buffer, limits, chunker, consumed, skip_known_bugs);
        !broken.empty()) {
      return broken;
    }
    if (consumed == 0) break;
    buffer.remove_prefix(consumed);
  }
  return {};
}

// ---- ipc_protocol: the "forkd" envelope a worker writes ---------------------------------------

// Any JSON value decodes without throwing; a daemon message encodes and decodes back to itself;
// a send names a worker only within the cap.
inline std::string check_ipc_protocol(std::string_view data, bool /*skip_known_bugs*/ = true) {
  nlohmann::json value = nlohmann::json::parse(data, nullptr, false);
  if (value.is_discarded()) return "";
  const common::ipc::Message first = common::ipc::decode(value);
  if (const auto* send = std::get_if<common::ipc::Send>(&first)) {
    if (send->to && *send->to >= common::kMaxWorkers) return "send to a worker past the cap";
    if (send->to_shown.size() > 80) return "send: the shown \"to\" is not short";
  }
  if (std::holds_alternative<common::ipc::Application>(first)) return "";
  const common::ipc::Message again = common::ipc::decode(common::ipc::encode(first));
  if (first.index() != again.index()) return "decode(encode(m)) changed the kind";
  if (const auto* send = std::get_if<common::ipc::Send>(&first)) {
    const auto& back = std::get<common::ipc::Send>(again);
    if (back.to != send->to || back.data != send->data) return "send changed in a round trip";
  }
  if (const auto* all = std::get_if<common::ipc::Broadcast>(&first)) {
    if (std::get<common::ipc::Broadcast>(again).data != all->data) {
      return "broadcast changed in a round trip";
    }
  }
  return "";
}

}  // namespace forkd::fuzz
