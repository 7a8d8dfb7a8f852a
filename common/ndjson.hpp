// Newline-delimited framing, as Node's `json` IPC channel and the control socket use it:
// one message per '\n'-terminated line. The decoder caps a line's size before anything is
// parsed, so a peer can never make us buffer more than `max_line` bytes, and it holds memory
// only while a line is unfinished: an idle peer costs no buffer.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace forkd::common {

class LineDecoder {
 public:
  enum class Event { line, oversized };
  // `line` receives a complete line without its '\n' (and without a trailing '\r').
  // `oversized` is reported once per line that exceeded max_line; its bytes are discarded up
  // to and including the next '\n'.
  using Sink = std::function<void(Event, std::string_view line)>;

  explicit LineDecoder(std::size_t max_line) : max_line_(max_line) {}

  // Feeds bytes as they arrive; calls `sink` for each complete line.
  void feed(std::string_view bytes, const Sink& sink);
  // Bytes of an unfinished line currently held.
  [[nodiscard]] std::size_t buffered() const noexcept { return partial_.size(); }
  // Bytes reserved for it: no more than an empty std::string's once no line is unfinished.
  [[nodiscard]] std::size_t capacity() const noexcept { return partial_.capacity(); }

 private:
  std::size_t max_line_;
  std::string partial_;
  bool discarding_ = false;
};

// Empties `buffer` and gives its memory back. clear() keeps the capacity, and so does
// assigning an empty string (it is copied into the buffer already there): a buffer that a burst
// grew would stay that size for as long as its owner lives.
void release(std::string& buffer) noexcept;

// True when no array or object in `json` nests deeper than `max_depth` (strings and escapes are
// skipped). Checked before parsing a peer's line: the library's dump() and comparisons recurse,
// so a 400000-deep array would overflow the stack of whoever re-serialises it.
[[nodiscard]] bool nesting_within(std::string_view json, std::size_t max_depth) noexcept;

// How deep a message may nest: far beyond any real message, far below the stack's limit.
inline constexpr std::size_t kMaxJsonDepth = 128;

}  // namespace forkd::common
