#include "common/ndjson.hpp"

namespace forkd::common {

void release(std::string& buffer) noexcept {
  std::string().swap(buffer);
}

void LineDecoder::feed(std::string_view bytes, const Sink& sink) {
  while (!bytes.empty()) {
    const std::size_t nl = bytes.find('\n');
    const std::string_view chunk = bytes.substr(0, nl);
    if (discarding_) {
      if (nl == std::string_view::npos) return;
      discarding_ = false;
    } else if (partial_.size() + chunk.size() > max_line_) {
      release(partial_);
      sink(Event::oversized, {});
      if (nl == std::string_view::npos) {
        discarding_ = true;
        return;
      }
    } else if (nl == std::string_view::npos) {
      partial_.append(chunk);
      return;
    } else {
      std::string_view line = chunk;
      if (!partial_.empty()) {
        partial_.append(chunk);
        line = partial_;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      sink(Event::line, line);
      release(partial_);
    }
    bytes.remove_prefix(nl + 1);
  }
}

bool nesting_within(std::string_view json, std::size_t max_depth) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : json) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace forkd::common
