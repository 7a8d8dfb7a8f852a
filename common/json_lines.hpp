// JSON values as newline-delimited lines, the one way every channel (master<->worker IPC, the
// process library's Node-style IPC, the control socket) reads and writes them.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/ndjson.hpp"

namespace forkd::common {

// A value as one line, '\n' included. Invalid UTF-8 in a string is replaced rather than
// thrown: a message must never take a loop down.
[[nodiscard]] std::string to_json_line(const nlohmann::json& value);

// One received line (without its '\n'), checked before it is used: blank lines are nothing,
// lines nested deeper than kMaxJsonDepth are refused before parsing (see nesting_within), and
// what is not JSON is malformed.
// NOLINTNEXTLINE(bugprone-exception-escape): its implicit moves are nlohmann::json's, noexcept
struct ParsedLine {
  enum class Status { value, blank, too_deep, malformed };
  Status status = Status::blank;
  nlohmann::json value;  // when status == value
};
[[nodiscard]] ParsedLine parse_json_line(std::string_view line);

// The lines waiting to go out on one stream: they gather in a pending batch while the previous
// batch is being written, so a burst costs one write, and the total is capped, so a peer that
// does not read costs at most `max_bytes`. Once written or dropped, a batch's memory is given
// back: a drained queue holds no buffer.
class LineQueue {
 public:
  explicit LineQueue(std::size_t max_bytes) : max_bytes_(max_bytes) {}

  // Queues a line (its '\n' included); false, and nothing queued, past max_bytes.
  [[nodiscard]] bool push(std::string_view line);
  // Makes the pending lines the batch in flight; false when a batch is already in flight or
  // nothing is pending. Write batch(), then call batch_written().
  [[nodiscard]] bool start_batch();
  [[nodiscard]] const std::string& batch() const noexcept { return in_flight_; }
  void batch_written() noexcept { release(in_flight_); }
  // Drops the pending lines; a batch in flight stays valid until batch_written().
  void clear() noexcept { release(pending_); }
  [[nodiscard]] std::size_t bytes() const noexcept { return pending_.size() + in_flight_.size(); }
  // Bytes reserved for both: no more than two empty std::strings' once drained.
  [[nodiscard]] std::size_t capacity() const noexcept {
    return pending_.capacity() + in_flight_.capacity();
  }
  [[nodiscard]] bool writing() const noexcept { return !in_flight_.empty(); }

 private:
  std::size_t max_bytes_;
  std::string pending_;
  std::string in_flight_;
};

}  // namespace forkd::common
