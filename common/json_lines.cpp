#include "common/json_lines.hpp"

#include <utility>

#include "common/ndjson.hpp"

namespace forkd::common {

std::string to_json_line(const nlohmann::json& value) {
  std::string line = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  return line;
}

ParsedLine parse_json_line(std::string_view line) {
  ParsedLine parsed;
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return parsed;
  if (!nesting_within(line, kMaxJsonDepth)) {
    parsed.status = ParsedLine::Status::too_deep;
    return parsed;
  }
  parsed.value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  parsed.status =
      parsed.value.is_discarded() ? ParsedLine::Status::malformed : ParsedLine::Status::value;
  return parsed;
}

bool LineQueue::push(std::string_view line) {
  if (bytes() + line.size() > max_bytes_) return false;
  pending_ += line;
  return true;
}

bool LineQueue::start_batch() {
  if (writing() || pending_.empty()) return false;
  in_flight_ = std::exchange(pending_, {});
  return true;
}

}  // namespace forkd::common
